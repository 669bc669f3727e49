//! What someone who can write to a stream's file or publish to its subject can do to
//! its lines, for property tests of `verify` here and of the hub's ingest.
use std::path::Path;

use proptest::prelude::*;

use crate::{
    Kind, StreamId,
    chain::{Chain, MAX_SEQ, ZERO_HASH},
    checkpoint::{Checkpointer, Reason},
    key::AuditKey,
    start::{Start, write_record},
};

/// Stream `name` from its start as a sensor writes it, each line with its newline: a
/// start line, then 12 access lines by `mallory` with a checkpoint after every fourth,
/// signed with the key in `dir/NAME.key` (made there), which is returned.
pub fn signed_stream(dir: &Path, name: &str) -> (Vec<Vec<u8>>, AuditKey) {
    let key_file = dir.join(format!("{name}.key"));
    let mut checkpointer = Checkpointer::new(AuditKey::load_or_create(&key_file).unwrap(), None);
    let mut chain = Chain::new(name.parse::<StreamId>().unwrap(), 1, ZERO_HASH);
    let mut start = Vec::new();
    write_record(Start::New, "2026-12-03T02:00:00Z", "fp", &mut start).unwrap();
    chain.seal(&mut start, Kind::Start);
    let mut lines = vec![start];
    for i in 0..12 {
        let mut line = format!(
            r#"{{"timestamp":"2026-12-03T02:00:{i:02}Z","http.request.method":"GET","url.path":"/x/{i}","http.response.status_code":200,"client.address":"203.0.113.9","user.name":"mallory"}}"#
        )
        .into_bytes();
        chain.seal(&mut line, Kind::Access);
        lines.push(line);
        if i % 4 == 3 {
            let mut line = Vec::new();
            // The first counts the start line too.
            let records = if i == 3 { 5 } else { 4 };
            checkpointer
                .write(
                    &mut chain,
                    Reason::Interval,
                    records,
                    "2026-12-03T02:01:00Z",
                    &mut line,
                )
                .unwrap();
            lines.push(line);
        }
    }
    (lines, AuditKey::load_or_create(&key_file).unwrap())
}

#[derive(Clone, Debug)]
pub enum Tamper {
    /// Line `.0`'s `audit.seq` becomes `.1`.
    Seq(usize, u64),
    /// Byte `.1` of line `.0` becomes `.2`.
    Flip(usize, usize, u8),
    /// Line `.0` is cut after byte `.1`.
    Cut(usize, usize),
    Repeat(usize),
    Drop(usize),
    Swap(usize, usize),
}

/// Any tampering, seqs at the ends of the range among them.
pub fn tamper() -> impl Strategy<Value = Tamper> {
    let seq = prop_oneof![
        Just(0),
        1..40u64,
        Just(MAX_SEQ - 1),
        Just(MAX_SEQ),
        Just(MAX_SEQ + 1),
        Just(u64::MAX),
        any::<u64>(),
    ];
    prop_oneof![
        (any::<usize>(), seq).prop_map(|(i, s)| Tamper::Seq(i, s)),
        (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(i, at, b)| Tamper::Flip(i, at, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, at)| Tamper::Cut(i, at)),
        any::<usize>().prop_map(Tamper::Repeat),
        any::<usize>().prop_map(Tamper::Drop),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Tamper::Swap(i, j)),
    ]
}

impl Tamper {
    /// Applies it to `lines` (line indexes are taken modulo their number).
    pub fn apply(&self, lines: &mut Vec<Vec<u8>>) {
        if lines.is_empty() {
            return;
        }
        let n = lines.len();
        match *self {
            Tamper::Seq(i, seq) => lines[i % n] = with_seq(&lines[i % n], &seq.to_string()),
            Tamper::Flip(i, at, byte) => {
                let line = &mut lines[i % n];
                if !line.is_empty() {
                    let at = at % line.len();
                    line[at] = byte;
                }
            }
            Tamper::Cut(i, at) => {
                let line = &mut lines[i % n];
                let at = at % (line.len() + 1);
                line.truncate(at);
            }
            Tamper::Repeat(i) => {
                let line = lines[i % n].clone();
                lines.insert((i / n) % (n + 1), line);
            }
            Tamper::Drop(i) => {
                lines.remove(i % n);
            }
            Tamper::Swap(i, j) => lines.swap(i % n, j % n),
        }
    }
}

/// `line` with its `audit.seq` replaced by `seq` (its hash no longer matches); as it
/// was if it has none.
pub fn with_seq(line: &[u8], seq: &str) -> Vec<u8> {
    const KEY: &[u8] = b"\"audit.seq\":";
    let Some(start) = line.windows(KEY.len()).position(|w| w == KEY) else {
        return line.to_vec();
    };
    let start = start + KEY.len();
    let end = line[start..]
        .iter()
        .position(|&b| b == b',')
        .map_or(line.len(), |e| start + e);
    [&line[..start], seq.as_bytes(), &line[end..]].concat()
}
