//! The hash chain: every line of the stream is sealed with its kind, the stream id, a
//! sequence number, the previous line's hash and its own hash.
//!
//! A record arrives as one serialized JSON object (`{...}`, no newline). Sealing removes
//! the closing `}` and appends
//! `,"audit.kind":"K","audit.stream":"S","audit.seq":N,"audit.prev_hash":"P"`, then
//! (checkpoints only) `,"audit.signature":"..."`; the bytes so far are the record's
//! canonical bytes. `hash = SHA-256(P as 32 raw bytes || canonical bytes)` is appended as
//! `,"audit.hash":"H"}` and a newline. No re-serialization, one SHA-256 per line.
use std::io::Write as _;

use sha2::{Digest as _, Sha256};

use super::stream::StreamId;

/// A SHA-256 value: a line's hash, or the all-zero hash before the first line.
pub type Hash = [u8; 32];

pub const ZERO_HASH: Hash = [0; 32];

/// The highest seq a line may carry; seqs start at 1. A sensor writing ten million
/// lines a second reaches it after 14,000 years, so a line above it was made up, and
/// the bound leaves every seq and its neighbours (`seq + 1`, a checkpoint's head) well
/// inside the signed 64-bit integers stores keep them in.
pub const MAX_SEQ: u64 = 1 << 62;

/// The bytes that end every sealed line after the canonical bytes, up to the hex hash.
pub const HASH_FIELD: &[u8] = b",\"audit.hash\":\"";
/// `,"audit.hash":"` + 64 hex digits + `"}` + newline.
pub const HASH_SUFFIX_LEN: usize = HASH_FIELD.len() + 64 + 3;

/// What a line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One HTTP request.
    Access,
    /// Events, bytes or records the tracer could not turn into access records.
    Loss,
    /// A signed commitment to the chain head.
    Checkpoint,
    /// The tracer started: a new chain, or where an existing one resumes.
    Start,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Loss => "loss",
            Kind::Checkpoint => "checkpoint",
            Kind::Start => "start",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Kind::Access, Kind::Loss, Kind::Checkpoint, Kind::Start]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// The last sealed line: its sequence number (0 before the first) and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Hash,
}

impl Head {
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: ZERO_HASH,
    };
}

pub struct Chain {
    stream: StreamId,
    head: Head,
}

impl Chain {
    /// A chain whose next line gets `next_seq` and links to `prev_hash`.
    pub fn new(stream: StreamId, next_seq: u64, prev_hash: Hash) -> Self {
        Self {
            stream,
            head: Head {
                seq: next_seq - 1,
                hash: prev_hash,
            },
        }
    }

    pub fn head(&self) -> Head {
        self.head
    }

    pub fn next_seq(&self) -> u64 {
        self.head.seq + 1
    }

    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// Seals `line`, which holds one JSON object; it then ends with a newline.
    pub fn seal(&mut self, line: &mut Vec<u8>, kind: Kind) -> Head {
        self.seal_with(line, kind, |_| ())
    }

    /// Seals `line`, letting `extra` append fields after `audit.prev_hash` (they are
    /// part of the canonical bytes).
    pub fn seal_with(
        &mut self,
        line: &mut Vec<u8>,
        kind: Kind,
        extra: impl FnOnce(&mut Vec<u8>),
    ) -> Head {
        debug_assert_eq!(line.last(), Some(&b'}'), "not a JSON object");
        line.pop();
        if line.len() > 1 {
            line.push(b',');
        }
        let seq = self.head.seq + 1;
        line.extend_from_slice(b"\"audit.kind\":\"");
        line.extend_from_slice(kind.as_str().as_bytes());
        line.extend_from_slice(b"\",\"audit.stream\":\"");
        line.extend_from_slice(self.stream.as_str().as_bytes());
        line.extend_from_slice(b"\",\"audit.seq\":");
        // Formatted in place: a String per line showed among the sensor's allocations.
        // Writing to a Vec cannot fail.
        let _ = write!(line, "{seq}");
        line.extend_from_slice(b",\"audit.prev_hash\":\"");
        push_hex(line, &self.head.hash);
        line.push(b'"');
        extra(line);
        let hash = link_hash(&self.head.hash, line);
        line.extend_from_slice(HASH_FIELD);
        push_hex(line, &hash);
        line.extend_from_slice(b"\"}\n");
        self.head = Head { seq, hash };
        self.head
    }
}

/// `SHA-256(prev_hash || canonical)`.
pub fn link_hash(prev_hash: &Hash, canonical: &[u8]) -> Hash {
    Sha256::new()
        .chain_update(prev_hash)
        .chain_update(canonical)
        .finalize()
        .into()
}

pub fn push_hex(line: &mut Vec<u8>, hash: &Hash) {
    let mut hex = [0u8; 64];
    // 64 bytes of output for 32 of input: cannot fail.
    let _ = hex::encode_to_slice(hash, &mut hex);
    line.extend_from_slice(&hex);
}

pub fn to_hex(hash: &Hash) -> String {
    hex::encode(hash)
}

/// A 64-digit hex hash.
pub fn parse_hex(text: &str) -> Option<Hash> {
    let mut hash = ZERO_HASH;
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> StreamId {
        "host-1".parse().unwrap()
    }

    #[test]
    fn sealed_line_is_json_with_the_documented_canonical_bytes() {
        let mut chain = Chain::new(stream(), 1, ZERO_HASH);
        let mut line = br#"{"timestamp":"t","url.path":"/a"}"#.to_vec();
        let head = chain.seal(&mut line, Kind::Access);
        assert_eq!(head.seq, 1);
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.ends_with("\"}\n"));
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["audit.kind"], "access");
        assert_eq!(value["audit.stream"], "host-1");
        assert_eq!(value["audit.seq"], 1);
        assert_eq!(value["audit.prev_hash"], "0".repeat(64));
        let canonical_end = text.find(",\"audit.hash\":").unwrap();
        let expected = link_hash(&ZERO_HASH, &line[..canonical_end]);
        assert_eq!(value["audit.hash"], to_hex(&expected));
        assert_eq!(line.len() - canonical_end, HASH_SUFFIX_LEN);
        // Independent of this module: SHA-256 over the zero hash and the prefix.
        let mut input = vec![0u8; 32];
        input.extend_from_slice(
            br#"{"timestamp":"t","url.path":"/a","audit.kind":"access","audit.stream":"host-1","audit.seq":1,"audit.prev_hash":"0000000000000000000000000000000000000000000000000000000000000000""#,
        );
        assert_eq!(to_hex(&Sha256::digest(&input).into()), value["audit.hash"]);
    }

    #[test]
    fn lines_link_and_count() {
        let mut chain = Chain::new(stream(), 41, [7; 32]);
        let mut a = b"{}".to_vec();
        let first = chain.seal(&mut a, Kind::Loss);
        assert!(a.starts_with(b"{\"audit.kind\":\"loss\""), "{a:?}");
        let mut b = br#"{"x":1}"#.to_vec();
        let second = chain.seal(&mut b, Kind::Checkpoint);
        assert_eq!((first.seq, second.seq), (41, 42));
        let b: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(b["audit.prev_hash"], to_hex(&first.hash));
        assert_eq!(chain.head(), second);
    }

    #[test]
    fn extra_fields_are_inside_the_canonical_bytes() {
        let mut chain = Chain::new(stream(), 1, ZERO_HASH);
        let mut line = br#"{"a":1}"#.to_vec();
        let head = chain.seal_with(&mut line, Kind::Checkpoint, |l| {
            l.extend_from_slice(b",\"audit.signature\":\"x\"")
        });
        let end = line.len() - HASH_SUFFIX_LEN;
        assert!(line[..end].ends_with(b",\"audit.signature\":\"x\""));
        assert_eq!(head.hash, link_hash(&ZERO_HASH, &line[..end]));
    }

    /// Not a pass/fail test: prints what sealing costs per record, for docs/audit.md.
    /// `cargo test --release -p tracer-audit seal_cost -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn seal_cost() {
        const RECORDS: u32 = 200_000;
        let record = format!(r#"{{"timestamp":"t","url.path":"/{}"}}"#, "x".repeat(1000));
        let mut chain = Chain::new(stream(), 1, ZERO_HASH);
        let mut line = Vec::with_capacity(2048);
        let started = std::time::Instant::now();
        for _ in 0..RECORDS {
            line.clear();
            line.extend_from_slice(record.as_bytes());
            chain.seal(&mut line, Kind::Access);
        }
        let per_record = started.elapsed() / RECORDS;
        println!("sealing a {}-byte record: {per_record:?}", record.len());
    }
}
