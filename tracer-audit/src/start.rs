//! Where the chain resumes when the tracer starts, and the `start` line that says so.
//!
//! After a clean stop the chain continues at the next seq. After an unclean one (a
//! crash, SIGKILL, power loss) the state file is behind what may have been written:
//! the new run starts after the whole reserved range, so no seq is ever used twice, and
//! links to the last head the state file knew. Its start line names both, so
//! `tracer verify` reports the gap as a restart gap rather than as deleted records.
use serde::Serialize;

use super::{
    chain::{Chain, Head, ZERO_HASH},
    state::Saved,
    stream::StreamId,
};

pub const NEW_STREAM: &str = "new_stream";
pub const RESUMED: &str = "resumed";
pub const UNCLEAN_STOP: &str = "unclean_stop";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// No state file: seq 1, previous hash all zeros.
    New,
    /// A clean stop at `after`: the chain goes on at `after + 1`.
    Resumed { after: Head },
    /// An unclean stop: the state knew `after`, the stopped tracer may have used seqs
    /// up to `reserved_until`; the chain goes on at `reserved_until + 1`, linked to `after`.
    AfterUncleanStop { after: Head, reserved_until: u64 },
}

pub struct Resume {
    pub chain: Chain,
    pub start: Start,
    /// The last line known to be written (seq 0: none). After an unclean stop the
    /// chain's own head is (`reserved_until`, this line's hash): not a real line.
    pub last: Head,
    /// The last checkpoint of the previous runs, which the next one links to.
    pub checkpoint: Option<Head>,
}

/// Continues the chain `saved` describes, or starts a new one.
pub fn resume(stream: StreamId, saved: Option<Saved>) -> Result<Resume, String> {
    let Some(saved) = saved else {
        return Ok(Resume {
            chain: Chain::new(stream, 1, ZERO_HASH),
            start: Start::New,
            last: Head::EMPTY,
            checkpoint: None,
        });
    };
    if saved.stream != stream.as_str() {
        return Err(format!(
            "it belongs to stream {:?}, not {:?}: give this stream its own state file",
            saved.stream,
            stream.as_str()
        ));
    }
    let (next_seq, start) = if saved.clean {
        (saved.head.seq + 1, Start::Resumed { after: saved.head })
    } else {
        (
            saved.reserved_until + 1,
            Start::AfterUncleanStop {
                after: saved.head,
                reserved_until: saved.reserved_until,
            },
        )
    };
    Ok(Resume {
        chain: Chain::new(stream, next_seq, saved.head.hash),
        start,
        last: saved.head,
        checkpoint: saved.checkpoint,
    })
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct StartRecord<'a> {
    timestamp: &'a str,
    #[serde(rename = "audit.start.reason")]
    reason: &'static str,
    /// The seq the new line links to (its `audit.prev_hash` is that line's hash).
    #[serde(rename = "audit.start.previous_seq")]
    previous_seq: Option<u64>,
    /// Seqs after `previous_seq` that this line skips: lines the stopped tracer may
    /// have written after its state was last saved, and seqs it reserved but never used.
    #[serde(rename = "audit.start.skipped_seqs")]
    skipped_seqs: Option<u64>,
    #[serde(rename = "tracer.version")]
    version: &'static str,
    #[serde(rename = "audit.key.fingerprint")]
    fingerprint: &'a str,
}

/// The unsealed start line.
pub fn write_record(
    start: Start,
    timestamp: &str,
    fingerprint: &str,
    line: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let (reason, previous_seq, skipped_seqs) = match start {
        Start::New => (NEW_STREAM, None, None),
        Start::Resumed { after } => (RESUMED, Some(after.seq), Some(0)),
        Start::AfterUncleanStop {
            after,
            reserved_until,
        } => (
            UNCLEAN_STOP,
            Some(after.seq),
            Some(reserved_until - after.seq),
        ),
    };
    serde_json::to_writer(
        line,
        &StartRecord {
            timestamp,
            reason,
            previous_seq,
            skipped_seqs,
            version: env!("CARGO_PKG_VERSION"),
            fingerprint,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> StreamId {
        "h".parse().unwrap()
    }

    fn saved(clean: bool) -> Saved {
        Saved {
            stream: "h".to_owned(),
            head: Head {
                seq: 50,
                hash: [9; 32],
            },
            reserved_until: 1000,
            clean,
            checkpoint: None,
        }
    }

    #[test]
    fn clean_stop_continues_at_the_next_seq() {
        let r = resume(stream(), Some(saved(true))).unwrap();
        assert_eq!(r.chain.next_seq(), 51);
        assert_eq!(r.chain.head().hash, [9; 32]);
    }

    #[test]
    fn unclean_stop_skips_the_reserved_range() {
        let r = resume(stream(), Some(saved(false))).unwrap();
        assert_eq!(r.chain.next_seq(), 1001);
        assert_eq!(r.last.seq, 50);
        assert_eq!(r.chain.head().hash, [9; 32]);
        let mut line = Vec::new();
        write_record(r.start, "t", "fp", &mut line).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["audit.start.reason"], UNCLEAN_STOP);
        assert_eq!(v["audit.start.previous_seq"], 50);
        assert_eq!(v["audit.start.skipped_seqs"], 950);
    }

    #[test]
    fn another_streams_state_is_refused() {
        let mut other = saved(true);
        other.stream = "other".to_owned();
        assert!(resume(stream(), Some(other)).is_err());
        assert_eq!(resume(stream(), None).unwrap().chain.next_seq(), 1);
    }
}
