//! Finds the processes that already hold a socket on a watched port when the tracer
//! starts: servers started earlier, their pre-forked workers, and connections accepted
//! before the tracer existed. Later ones are found in the kernel (listen(), accept(), a
//! connection received over a unix socket, and fork).
use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt as _,
};

use anyhow::{Context as _, Result};
use log::debug;
use procfs::{
    net::TcpNetEntry,
    process::{FDTarget, Process, all_processes},
};

/// Pids (thread-group ids) holding a TCP socket whose local port is in `ports`.
///
/// Sockets are listed per network namespace (/proc/PID/net/tcp shows the namespace of
/// PID), so servers inside containers are found too.
pub fn processes_on_ports(ports: &[u16]) -> Result<Vec<u32>> {
    let mut inodes_by_netns: HashMap<u64, HashSet<u64>> = HashMap::new();
    let mut found = Vec::new();
    for process in all_processes().context("listing /proc")? {
        let Ok(process) = process else { continue };
        // Processes exit while we scan; every failure below just skips one.
        let Ok(netns) = netns_inode(&process) else {
            continue;
        };
        let inodes = match inodes_by_netns.get(&netns) {
            Some(inodes) => inodes,
            None => {
                let inodes = watched_socket_inodes(&process, ports).unwrap_or_default();
                inodes_by_netns.entry(netns).or_insert(inodes)
            }
        };
        if inodes.is_empty() {
            continue;
        }
        let Ok(fds) = process.fd() else { continue };
        let holds = fds.flatten().any(|fd| match fd.target {
            FDTarget::Socket(inode) => inodes.contains(&inode),
            _ => false,
        });
        if holds {
            found.push(process.pid as u32);
        }
    }
    debug!("processes on watched ports: {found:?}");
    Ok(found)
}

fn netns_inode(process: &Process) -> Result<u64> {
    let path = format!("/proc/{}/ns/net", process.pid);
    Ok(std::fs::metadata(&path)
        .with_context(|| format!("stat {path}"))?
        .ino())
}

fn watched_socket_inodes(process: &Process, ports: &[u16]) -> Result<HashSet<u64>> {
    let mut entries: Vec<TcpNetEntry> = process.tcp().unwrap_or_default();
    entries.extend(process.tcp6().unwrap_or_default());
    Ok(entries
        .into_iter()
        .filter(|e| ports.contains(&e.local_address.port()))
        .map(|e| e.inode)
        .collect())
}

/// The processes whose parent is `pid` and that run its executable: the workers a
/// server forked before it became watched (the fork hook sees only forks of watched
/// processes). Node's cluster module forks its workers first; the primary listens when
/// they ask it to, and hands them every connection. Children running another program
/// are left alone: a supervisor that listens for its services (systemd's socket
/// activation) would otherwise bring every daemon it started. This kernel lacks
/// `/proc/PID/task/TID/children`, so every process's parent is read.
pub fn workers_of(pid: u32) -> Vec<u32> {
    let Ok(exe) = Process::new(pid as i32).and_then(|p| p.exe()) else {
        return Vec::new();
    };
    let Ok(processes) = all_processes() else {
        return Vec::new();
    };
    processes
        .flatten()
        .filter(|p| p.stat().is_ok_and(|s| s.ppid == pid as i32))
        .filter(|p| p.exe().is_ok_and(|e| e == exe))
        .map(|p| p.pid as u32)
        .collect()
}
