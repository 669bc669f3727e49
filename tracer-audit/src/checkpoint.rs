//! Signed checkpoints: a line that commits to the chain head with an Ed25519 signature
//! and links to the previous checkpoint, so checkpoints form their own chain across
//! rotated files and restarts (like CloudTrail digest files).
//!
//! The checkpoint is itself a chain line. Its signature covers the line's bytes up to
//! and excluding `,"audit.signature":"`, which include its `audit.seq` and
//! `audit.prev_hash` (the head's hash); the signature is then inside the bytes the
//! line's own hash covers.
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use serde::Serialize;

use super::{
    chain::{Chain, Head, Kind, ZERO_HASH, to_hex},
    key::AuditKey,
};

pub const SIGNATURE_FIELD: &[u8] = b",\"audit.signature\":\"";

/// Why a checkpoint was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `checkpoint_records` lines since the previous one.
    Records,
    /// `checkpoint_seconds` passed with lines written.
    Interval,
    /// A sink starts a new file: the checkpoint ends the old one.
    Rotation,
    /// The tracer stops: the last line of the run.
    Shutdown,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Records => "records",
            Reason::Interval => "interval",
            Reason::Rotation => "rotation",
            Reason::Shutdown => "shutdown",
        }
    }
}

#[derive(Serialize)]
struct CheckpointRecord<'a> {
    timestamp: &'a str,
    #[serde(rename = "audit.checkpoint.reason")]
    reason: &'static str,
    #[serde(rename = "audit.checkpoint.head_seq")]
    head_seq: u64,
    #[serde(rename = "audit.checkpoint.head_hash")]
    head_hash: String,
    #[serde(rename = "audit.checkpoint.records")]
    records: u64,
    #[serde(
        rename = "audit.checkpoint.prev_seq",
        skip_serializing_if = "Option::is_none"
    )]
    prev_seq: Option<u64>,
    #[serde(rename = "audit.checkpoint.prev_hash")]
    prev_hash: String,
    #[serde(rename = "audit.key.fingerprint")]
    fingerprint: &'a str,
}

pub struct Checkpointer {
    key: AuditKey,
    fingerprint: String,
    last: Option<Head>,
}

impl Checkpointer {
    /// `last`: the previous checkpoint of this stream, from the state file.
    pub fn new(key: AuditKey, last: Option<Head>) -> Self {
        let fingerprint = key.public().fingerprint();
        Self {
            key,
            fingerprint,
            last,
        }
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn last(&self) -> Option<Head> {
        self.last
    }

    /// Writes the sealed checkpoint line into `line` (emptied first); `records` is the
    /// number of lines since the previous checkpoint of this run, or since its start.
    pub fn write(
        &mut self,
        chain: &mut Chain,
        reason: Reason,
        records: u64,
        timestamp: &str,
        line: &mut Vec<u8>,
    ) -> serde_json::Result<Head> {
        let head = chain.head();
        line.clear();
        serde_json::to_writer(
            &mut *line,
            &CheckpointRecord {
                timestamp,
                reason: reason.as_str(),
                head_seq: head.seq,
                head_hash: to_hex(&head.hash),
                records,
                prev_seq: self.last.map(|c| c.seq),
                prev_hash: to_hex(&self.last.map_or(ZERO_HASH, |c| c.hash)),
                fingerprint: &self.fingerprint,
            },
        )?;
        let key = &self.key;
        let sealed = chain.seal_with(line, Kind::Checkpoint, |line| {
            let signature = key.sign(line);
            line.extend_from_slice(SIGNATURE_FIELD);
            line.extend_from_slice(BASE64.encode(signature).as_bytes());
            line.push(b'"');
        });
        self.last = Some(sealed);
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::HASH_SUFFIX_LEN;

    #[test]
    fn checkpoint_commits_to_the_head_and_links_to_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = AuditKey::load_or_create(&dir.path().join("k")).unwrap();
        let public = key.public();
        let mut chain = Chain::new("h".parse().unwrap(), 1, ZERO_HASH);
        let mut line = b"{}".to_vec();
        let head = chain.seal(&mut line, Kind::Start);
        let mut checkpoints = Checkpointer::new(key, None);
        let first = checkpoints
            .write(&mut chain, Reason::Records, 1, "t", &mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["audit.checkpoint.head_seq"], head.seq);
        assert_eq!(v["audit.checkpoint.head_hash"], to_hex(&head.hash));
        assert_eq!(v["audit.prev_hash"], to_hex(&head.hash));
        assert_eq!(v["audit.checkpoint.prev_hash"], "0".repeat(64));
        assert!(v.get("audit.checkpoint.prev_seq").is_none());
        let signed_end = line
            .windows(SIGNATURE_FIELD.len())
            .position(|w| w == SIGNATURE_FIELD)
            .unwrap();
        let signature = BASE64
            .decode(v["audit.signature"].as_str().unwrap())
            .unwrap();
        assert!(public.verifies(&line[..signed_end], &signature));
        assert!(line.len() - HASH_SUFFIX_LEN > signed_end);

        checkpoints
            .write(&mut chain, Reason::Shutdown, 0, "t", &mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["audit.checkpoint.prev_seq"], first.seq);
        assert_eq!(v["audit.checkpoint.prev_hash"], to_hex(&first.hash));
        assert_eq!(v["audit.checkpoint.reason"], "shutdown");
    }
}
