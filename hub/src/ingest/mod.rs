//! Where lines come from: JetStream (`nats`) or files (`file`), and what a line holds
//! (`record`). Nothing here trusts a line: `record::parse` says what is wrong with one.
mod delivered;
pub mod file;
pub mod nats;
pub mod record;

use std::{fmt, path::Path, sync::Arc};

/// A line longer than this is rejected unread: the tracer's records are a few KiB, and
/// one hostile line must not make the hub hold gigabytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Where one line was read.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// The JetStream stream sequence of the message, and for a message of several
    /// records (`tracer run --nats-records-per-message`) which line of it, from 1.
    Nats {
        stream_seq: u64,
        line: Option<u32>,
    },
    File {
        path: Arc<Path>,
        line: u64,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Nats {
                stream_seq,
                line: None,
            } => write!(f, "nats message {stream_seq}"),
            Origin::Nats {
                stream_seq,
                line: Some(line),
            } => write!(f, "nats message {stream_seq} line {line}"),
            Origin::File { path, line } => write!(f, "{} line {line}", path.display()),
        }
    }
}

/// One line as read, without its newline, or why it could not be taken whole.
#[derive(Debug)]
pub struct Line {
    pub origin: Origin,
    pub bytes: Result<Vec<u8>, TooLong>,
}

/// A line over [`MAX_LINE_BYTES`]; only its length is kept.
#[derive(Clone, Copy, Debug)]
pub struct TooLong {
    pub bytes: u64,
}
