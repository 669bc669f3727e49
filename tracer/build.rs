//! Builds the eBPF crate with the pinned nightly (its LLVM must match bpf-linker's) and
//! leaves the object in OUT_DIR, from where `src/kernel/loader.rs` embeds it.
use std::{env, fs, path::PathBuf};

use anyhow::Context as _;

/// rustc 1.99.0-nightly on LLVM 22, the LLVM that bpf-linker 0.13 is built against.
const EBPF_TOOLCHAIN: &str = "nightly-2026-07-15";

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join("tracer");
    if env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v == "true") {
        // Unit tests and docs do not need the kernel object; the loader refuses an empty one.
        if !object.exists() {
            fs::write(&object, b"").context("writing placeholder eBPF object")?;
        }
    }
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../tracer-ebpf");
    let root = root.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "tracer-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
