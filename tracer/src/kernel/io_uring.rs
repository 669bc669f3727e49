//! Watched processes that hold an io_uring. Reads and writes a process submits through
//! a ring never pass the syscalls the capture hooks, so its requests may be missing from
//! the trail: each such process is counted once (`io_uring_processes`, which loss lines
//! carry) and named on stderr, found either when it sets up a ring while watched (the
//! kernel's `IoUring` event) or, when it becomes watched (a server running before the
//! tracer, one that listens or accepts later), by the ring descriptors it holds.
use std::collections::HashSet;

use procfs::process::{FDTarget, Process};

#[derive(Default)]
pub struct IoUringProcesses {
    /// Processes already counted, until they exit (a reused pid is a new process).
    known: HashSet<u32>,
    total: u64,
}

impl IoUringProcesses {
    /// `pid` set up a ring while watched.
    pub fn set_up(&mut self, pid: u32) {
        self.found(pid, "set up an io_uring");
    }

    /// A process that became watched without the kernel seeing it set up a ring (a
    /// server found at start, one that listened or accepted later): counted if it
    /// already holds one.
    pub fn scan(&mut self, pid: u32) {
        let holds = Process::new(pid as i32)
            .and_then(|p| p.fd())
            .map(|fds| {
                fds.flatten().any(
                    |fd| matches!(fd.target, FDTarget::AnonInode(ref kind) if kind == "[io_uring]"),
                )
            })
            .unwrap_or(false);
        if holds {
            self.found(pid, "holds an io_uring");
        }
    }

    pub fn exited(&mut self, pid: u32) {
        self.known.remove(&pid);
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    fn found(&mut self, pid: u32, what: &str) {
        if !self.known.insert(pid) {
            return;
        }
        self.total += 1;
        let name = Process::new(pid as i32)
            .and_then(|p| p.stat())
            .map(|stat| stat.comm)
            .unwrap_or_else(|_| "?".to_owned());
        eprintln!(
            "tracer: pid {pid} ({name}) {what}: reads and writes it submits through a ring \
             are not seen, so its requests may be missing from the trail (io_uring_processes)"
        );
    }
}
