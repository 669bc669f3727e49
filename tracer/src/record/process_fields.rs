//! The serving process's part of a record, serialized once per process instance.
//!
//! Executable path, command line and cgroup are the longest strings of a record and the
//! same for every request a process serves; escaping them per record was the largest
//! single cost of writing records.
use std::collections::HashMap;

use serde::Serialize;

use crate::enrich::ProcessInfo;

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Fields<'a> {
    #[serde(rename = "process.executable.name")]
    executable_name: Option<&'a str>,
    #[serde(rename = "process.executable.path")]
    executable_path: Option<&'a str>,
    #[serde(rename = "process.command_line")]
    command_line: Option<&'a str>,
    #[serde(rename = "process.owner")]
    owner: Option<&'a str>,
    #[serde(rename = "process.user.id")]
    uid: u32,
    #[serde(rename = "process.linux.cgroup")]
    cgroup: Option<&'a str>,
    #[serde(rename = "container.id")]
    container_id: Option<&'a str>,
}

/// Bound on cached fragments; the cache is simply cleared when it is reached.
const MAX_CACHED: usize = 4096;

#[derive(Default)]
pub struct ProcessFields {
    /// Keyed by (pid, start time): a reused pid is a different process.
    cache: HashMap<(u32, u64), Vec<u8>>,
}

impl ProcessFields {
    /// `,"process.executable.name":...` ready to splice before a record's closing brace.
    pub fn json(&mut self, p: &ProcessInfo) -> serde_json::Result<&[u8]> {
        let key = (p.pid, p.start_time);
        if !self.cache.contains_key(&key) {
            if self.cache.len() >= MAX_CACHED {
                self.cache.clear();
            }
            let mut fragment = serde_json::to_vec(&Fields {
                executable_name: p.executable_name.as_deref(),
                executable_path: p.executable_path.as_deref(),
                command_line: p.command_line.as_deref(),
                owner: p.owner.as_deref(),
                uid: p.uid,
                cgroup: p.cgroup_path.as_deref(),
                container_id: p.container_id.as_deref(),
            })?;
            // `{...}` -> `,...`: uid is always present, so the object is never empty.
            fragment[0] = b',';
            fragment.pop();
            self.cache.insert(key, fragment);
        }
        Ok(&self.cache[&key])
    }
}
