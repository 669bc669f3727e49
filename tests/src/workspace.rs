//! Where the workspace and the tracer binary are.

use anyhow::{Result, bail};
use std::path::PathBuf;

pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// `TRACER_BIN` if set, else the release build in the workspace's target dir.
pub fn tracer_bin() -> Result<PathBuf> {
    let path = match std::env::var_os("TRACER_BIN") {
        Some(path) => PathBuf::from(path),
        None => root().join("target/release/tracer"),
    };
    if !path.is_file() {
        bail!(
            "tracer binary not found at {}: build it with `cargo build --release -p tracer` \
             or point TRACER_BIN at it",
            path.display()
        );
    }
    Ok(path)
}

/// `HUB_BIN` if set, else the release `tracer-hub` in the workspace's target dir.
pub fn hub_bin() -> Result<PathBuf> {
    let path = match std::env::var_os("HUB_BIN") {
        Some(path) => PathBuf::from(path),
        None => root().join("target/release/tracer-hub"),
    };
    if !path.is_file() {
        bail!(
            "tracer-hub binary not found at {}: build it with `cargo build --release -p tracer-hub` \
             or point HUB_BIN at it",
            path.display()
        );
    }
    Ok(path)
}
