//! What `verify` concludes: the damage it found first, or what an intact set of
//! files proves, each as the line `tracer verify` prints.
use std::fmt;

use super::input::Location;

/// What is wrong with the first bad record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Its bytes do not match its hash, or it was altered and re-hashed so that the
    /// next record no longer links to it.
    Modified,
    /// Seqs are missing: the records before it are not the ones it links to.
    Deleted,
    /// It does not belong: without it the chain is whole, or its seq was already used.
    Inserted,
    /// The records are there but out of order.
    Reordered,
    /// The last line is cut, or the stream ends without a closing checkpoint.
    Truncated,
    /// A checkpoint's signature does not verify with the given key.
    SignatureMismatch,
    /// A new chain (seq 1) starts in the middle of the stream.
    Reset,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Damage::Modified => "modified",
            Damage::Deleted => "deleted",
            Damage::Inserted => "inserted",
            Damage::Reordered => "reordered",
            Damage::Truncated => "truncated",
            Damage::SignatureMismatch => "signature mismatch",
            Damage::Reset => "chain reset",
        })
    }
}

#[derive(Debug)]
pub struct Failure {
    pub damage: Damage,
    pub at: Option<Location>,
    pub seq: Option<u64>,
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.damage)?;
        if let Some(at) = &self.at {
            write!(f, "{at}")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// What an intact set of files proves: the chain from `first_seq` to `last_seq`, and
/// whether it is the whole stream at either end. A slice cut out of a stream at two
/// checkpoints verifies too; these fields say it is a slice.
#[derive(Debug)]
pub struct Intact {
    pub files: usize,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The first line is the stream's first (seq 1, a new stream's start line).
    pub start_seen: bool,
    /// The last line is the checkpoint of a clean stop; other checkpoints end a file or
    /// an interval, and the tracer may have written more after them.
    pub shutdown_seen: bool,
    /// Timestamp and seq of the last checkpoint.
    pub last_checkpoint: (String, u64),
    pub notes: Vec<String>,
}

impl fmt::Display for Intact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} file{}, {} records, seq {}..{}, chain intact, last checkpoint {} (seq {})",
            self.files,
            if self.files == 1 { "" } else { "s" },
            thousands(self.records),
            self.first_seq,
            self.last_seq,
            self.last_checkpoint.0,
            self.last_checkpoint.1
        )?;
        if self.start_seen {
            write!(f, "\nstart: the stream's first record (seq 1) is included")?;
        } else {
            write!(
                f,
                "\nstart: NOT seen: records before seq {} were not given and are not proven (--expect-start requires them)",
                self.first_seq
            )?;
        }
        if self.shutdown_seen {
            write!(
                f,
                "\nend: the tracer's shutdown checkpoint is the last record"
            )?;
        } else {
            write!(
                f,
                "\nend: NOT a shutdown checkpoint: the tracer may have written records after seq {} (--expect-end-seq N proves the end)",
                self.last_seq
            )?;
        }
        for note in &self.notes {
            write!(f, "\nnote: {note}")?;
        }
        Ok(())
    }
}

/// `1234567` -> `1,234,567`.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
