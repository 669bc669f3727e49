//! Verification on ingest, per stream: the hash chain must continue, checkpoint
//! signatures must verify with the stream's key, and what does not is an integrity
//! event. The same line parser as `tracer verify` (tracer-audit) takes each line apart.
//!
//! Lines arrive in chain order (one JetStream subject per host, files sorted by seq),
//! so the state per stream is its last line; lines already stored are recognised by
//! their hash through [`Stored`], which makes redelivery harmless.
mod chain;
mod gaps;
pub mod keys;

pub use chain::{Chains, Event, EventKind, Link, Restoration, StoredLink, StreamState, Verdict};

use tracer_audit::{
    chain::Hash,
    verify::parse::{Sealed, parse},
};

/// Takes a line of `stream` apart and checks its own hash, and a checkpoint's signature
/// with the stream's key. It needs no chain state, so ingest runs it ahead of the
/// writer, on another thread. `Err(reason)`: it is not a sealed line at all.
pub fn seal(line: &[u8], stream: &str, keys: &keys::Keys) -> Result<Sealed, String> {
    parse(line, keys.get(stream))
}

/// What the store already holds, as far as verification needs to know.
pub trait Stored {
    /// The hash of the stored line (`stream`, `seq`), if there is one.
    fn stored_hash(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<Hash>>;

    /// The `audit.prev_hash` of the stored line (`stream`, `seq`), if there is one.
    fn stored_prev_hash(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<Hash>>;

    /// The stored line (`stream`, `seq`) as the sensor wrote it, if there is one.
    fn stored_line(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<Vec<u8>>>;

    /// The hashes and chain position of the stored line (`stream`, `seq`), if there is one.
    fn stored_link(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<StoredLink>>;

    /// The line refused as a conflict at (`stream`, `seq`) with `hash`, if it is kept.
    fn kept_conflict_line(
        &mut self,
        stream: &str,
        seq: u64,
        hash: &Hash,
    ) -> anyhow::Result<Option<Vec<u8>>>;
}
