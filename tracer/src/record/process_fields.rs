//! The serving process's part of a record, serialized once per process instance.
//!
//! Executable path, command line and cgroup are the longest strings of a record and the
//! same for every request a process serves; escaping them per record was the largest
//! single cost of writing records.
use foldhash::HashMap;

use crate::{enrich::ProcessInfo, json::Fields};

/// Bound on cached fragments; the cache is simply cleared when it is reached.
const MAX_CACHED: usize = 4096;

#[derive(Default)]
pub struct ProcessFields {
    /// Keyed by (pid, start time): a reused pid is a different process.
    cache: HashMap<(u32, u64), Vec<u8>>,
}

impl ProcessFields {
    /// `,"process.executable.name":...` ready to splice before a record's closing brace.
    pub fn json(&mut self, p: &ProcessInfo) -> &[u8] {
        let key = (p.pid, p.start_time);
        if self.cache.len() >= MAX_CACHED && !self.cache.contains_key(&key) {
            self.cache.clear();
        }
        self.cache.entry(key).or_insert_with(|| {
            let mut fragment = Vec::new();
            let mut f = Fields::open(&mut fragment);
            f.opt_str(
                key!("process.executable.name"),
                p.executable_name.as_deref(),
            );
            f.opt_str(
                key!("process.executable.path"),
                p.executable_path.as_deref(),
            );
            f.opt_str(key!("process.command_line"), p.command_line.as_deref());
            f.opt_str(key!("process.owner"), p.owner.as_deref());
            f.uint(key!("process.user.id"), p.uid);
            f.opt_str(key!("process.linux.cgroup"), p.cgroup_path.as_deref());
            f.opt_str(key!("container.id"), p.container_id.as_deref());
            // Spliced after the record's fields: every key already has its comma.
            fragment
        })
    }
}
