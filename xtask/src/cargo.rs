//! Running cargo and scripts from the workspace root.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

pub fn workspace_root() -> PathBuf {
    tests::workspace::root()
}

/// Runs `command` in the workspace root, failing on a non-zero exit.
pub fn run(command: &mut Command) -> Result<()> {
    command.current_dir(workspace_root());
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    // The cargo that runs xtask, so the pinned toolchain carries over.
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub fn setup() -> Result<()> {
    run(Command::new("bash").arg("scripts/setup.sh"))
}

/// The release binaries the e2e tests and the demo run.
pub struct Binaries {
    pub tracer: PathBuf,
    pub hub: PathBuf,
}

/// `cargo build --release -p tracer -p tracer-hub`, returning the binaries' paths.
pub fn build_release() -> Result<Binaries> {
    run(cargo().args(["build", "--release", "-p", "tracer", "-p", "tracer-hub"]))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let release = workspace_root().join(target_dir).join("release");
    let binaries = Binaries {
        tracer: release.join("tracer"),
        hub: release.join("tracer-hub"),
    };
    for bin in [&binaries.tracer, &binaries.hub] {
        if !bin.is_file() {
            bail!("the build succeeded but {} is missing", bin.display());
        }
    }
    Ok(binaries)
}

/// [`build_release`], and the binaries named for the test harness this process drives
/// (the demo and the benches), so it never builds them again inside a timed stretch.
pub fn build_release_for_harness() -> Result<Binaries> {
    let bins = build_release()?;
    // SAFETY: called first in a single-threaded xtask; the harness reads these to find
    // the binaries.
    unsafe {
        std::env::set_var("TRACER_BIN", &bins.tracer);
        std::env::set_var("HUB_BIN", &bins.hub);
    }
    Ok(bins)
}

pub fn test(args: &[String]) -> Result<()> {
    let bins = build_release()?;
    // Two threads: each e2e test runs a tracer, servers and clients, and the
    // machines this runs on have two cores. No fail-fast: one run shows every
    // failing test binary, not just the first.
    run(cargo()
        .args([
            "test",
            "--workspace",
            "--exclude",
            "tracer-ebpf",
            "--no-fail-fast",
            "--",
        ])
        .arg("--test-threads=2")
        .args(args)
        .env("TRACER_BIN", &bins.tracer)
        .env("HUB_BIN", &bins.hub))
}
