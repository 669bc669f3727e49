//! Where the workspace and the tracer binary are.

use anyhow::{Context, Result, anyhow, bail};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// `TRACER_BIN` if set, else the release build in the workspace's target dir, built
/// first so that the suite never runs a stale binary.
pub fn tracer_bin() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    binary("TRACER_BIN", "tracer", &BUILT)
}

/// `HUB_BIN` if set, else the release `tracer-hub`, built first like the tracer.
pub fn hub_bin() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    binary("HUB_BIN", "tracer-hub", &BUILT)
}

/// The binary `var` names, or `cargo build --release -p package`'s,
/// built once per test process (cargo makes that a quick no-op when it is fresh).
fn binary(var: &str, package: &str, built: &OnceLock<Result<PathBuf, String>>) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{var} names {}, which is not a file", path.display());
        }
        return Ok(path);
    }
    built
        .get_or_init(|| build(package).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("{e}"))
}

/// Packages and their binaries share names here. Both packages are always built
/// together, as `cargo xtask` builds them: built alone, each unifies its dependencies'
/// features differently, and every switch recompiled rustls, ring and async-nats (half a
/// minute, which a bench once timed as ingest).
fn build(package: &str) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args = [
        "build",
        "--release",
        "--quiet",
        "-p",
        "tracer",
        "-p",
        "tracer-hub",
    ];
    let status = Command::new(cargo)
        .current_dir(root())
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    let path = root().join("target/release").join(package);
    if !path.is_file() {
        bail!("cargo built {package}, but {} is missing", path.display());
    }
    Ok(path)
}
