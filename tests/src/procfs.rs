//! What procfs says about a process, to compare with the tracer's answer.

use anyhow::{Context, Result};
use std::path::PathBuf;

pub fn exe_path(pid: u32) -> Result<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).with_context(|| format!("exe of pid {pid}"))
}

/// Whether `value` names one of the process's cgroups: either a whole line of
/// /proc/PID/cgroup (`0::/path`) or the path of one (hosts may mix v1 and v2).
pub fn is_cgroup_of(pid: u32, value: &str) -> Result<bool> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .with_context(|| format!("cgroup of pid {pid}"))?;
    Ok(text
        .lines()
        .any(|line| line == value || line.rsplit_once(':').is_some_and(|(_, path)| path == value)))
}
