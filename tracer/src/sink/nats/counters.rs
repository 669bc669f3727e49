//! Numbers shared by the pipeline thread (spool writer) and the publisher thread, read
//! for the stderr reports and the summary.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

#[derive(Debug, Default)]
pub struct Counters {
    /// Records (and their bytes) put in the spool since start, the replayed backlog of
    /// the previous run included.
    pub spooled_records: AtomicU64,
    pub spooled_bytes: AtomicU64,
    /// Of those, acknowledged by JetStream.
    pub acked_records: AtomicU64,
    pub acked_bytes: AtomicU64,
    /// Size of the spool's segment files.
    pub disk_bytes: AtomicU64,
    /// Publishes sent, first tries and retries.
    pub published: AtomicU64,
    /// Acknowledgements that said JetStream already had the message (a retry after a
    /// lost acknowledgement, or a replay after a restart).
    pub duplicates: AtomicU64,
    /// Records sent again because a connection failed before their acknowledgement.
    pub retries: AtomicU64,
    /// Connections that failed or were refused.
    pub failures: AtomicU64,
    /// Records dropped: spool full, a spool write failure, a record the server refuses
    /// as too large, a record cut short by a crash of the previous run.
    pub discarded: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    pub fn backlog(&self) -> Backlog {
        let records = Self::get(&self.spooled_records);
        let bytes = Self::get(&self.spooled_bytes);
        Backlog {
            records: records.saturating_sub(Self::get(&self.acked_records)),
            bytes: bytes.saturating_sub(Self::get(&self.acked_bytes)),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let backlog = self.backlog();
        Snapshot {
            published: Self::get(&self.published),
            acked: Self::get(&self.acked_records),
            duplicates: Self::get(&self.duplicates),
            retries: Self::get(&self.retries),
            failures: Self::get(&self.failures),
            backlog_records: backlog.records,
            backlog_bytes: backlog.bytes,
            discarded: Self::get(&self.discarded),
        }
    }
}

/// Records in the spool not yet acknowledged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    pub records: u64,
    pub bytes: u64,
}

impl std::fmt::Display for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} records ({} bytes)", self.records, self.bytes)
    }
}

/// The sink's part of `tracer: summary {json}`.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub published: u64,
    pub acked: u64,
    pub duplicates: u64,
    pub retries: u64,
    pub failures: u64,
    pub backlog_records: u64,
    pub backlog_bytes: u64,
    pub discarded: u64,
}
