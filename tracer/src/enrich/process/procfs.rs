//! Reading one process's identity from /proc/PID.
use std::{borrow::Cow, io::Read as _, path::Path};

use anyhow::Context as _;
use procfs::process::Process;

use super::{
    ProcessInfo,
    cmdline::redact_args,
    container::{cgroup_v2_path, container_id},
    passwd::UserNames,
};

fn open_process(pid: u32) -> anyhow::Result<Process> {
    let pid = i32::try_from(pid).context("pid out of range")?;
    Process::new(pid).context("opening /proc/PID")
}

pub(super) fn read_start_time(pid: u32) -> anyhow::Result<u64> {
    Ok(open_process(pid)?.stat().context("reading stat")?.starttime)
}

/// Reads everything through one /proc/PID directory handle: once the process is reaped, reads
/// through it fail instead of describing a new process that reused the pid.
pub(super) fn read_process_info(pid: u32, users: &mut UserNames) -> anyhow::Result<ProcessInfo> {
    let process = open_process(pid)?;
    let stat = process.stat().context("reading stat")?;
    let status = process.status().context("reading status")?;
    let executable_path = process
        .exe()
        .ok()
        .map(|path| path.to_string_lossy().into_owned());
    let executable_name = executable_path.as_deref().and_then(file_name);
    let cgroup = read_lossy(&process, "cgroup").ok();
    Ok(ProcessInfo {
        pid,
        name: stat.comm.trim().to_owned(),
        executable_path,
        executable_name,
        command_line: read_command_line(&process),
        uid: status.ruid,
        owner: users.lookup(status.ruid),
        container_id: cgroup.as_deref().and_then(container_id),
        cgroup_path: cgroup.as_deref().and_then(cgroup_v2_path),
        start_time: stat.starttime,
    })
}

fn read_bytes(process: &Process, file: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    process
        .open_relative(file)?
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {file}"))?;
    Ok(bytes)
}

/// Paths and arguments are bytes; a stray non-UTF-8 byte should not lose the whole field.
fn read_lossy(process: &Process, file: &str) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&read_bytes(process, file)?).into_owned())
}

fn file_name(path: &str) -> Option<String> {
    Some(Path::new(path).file_name()?.to_string_lossy().into_owned())
}

/// Empty arguments are dropped: setproctitle-style rewrites pad the argument area with NULs.
fn read_command_line(process: &Process) -> Option<String> {
    let raw = read_bytes(process, "cmdline").ok()?;
    let args: Vec<Cow<str>> = raw
        .split(|&byte| byte == 0)
        .filter(|arg| !arg.is_empty())
        .map(String::from_utf8_lossy)
        .collect();
    if args.is_empty() {
        return None;
    }
    Some(redact_args(args.iter().map(|arg| arg.as_ref())))
}
