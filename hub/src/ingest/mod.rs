//! Where lines come from: JetStream (`nats`) or files (`file`), and what a line holds
//! (`record`). Nothing here trusts a line: `record::parse` says what is wrong with one.
mod delivered;
pub mod file;
pub mod nats;
pub mod record;
mod working;

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

/// Where the lines of the batch after the one being stored come from, as they come:
/// the file being imported, the messages NATS delivered meanwhile.
pub trait Next: Send {
    /// Hands `take` the next lines, in order. They stay with their owner, who gives
    /// them to the call that stores them, first.
    fn pull(&mut self, take: &mut dyn FnMut(&Line)) -> Pulled;
}

pub enum Pulled {
    /// Lines were handed over; more may follow.
    Lines,
    /// None came yet; some may.
    NotYet,
    /// No more before the next batch.
    Done,
}

/// Lines handed over per pull: few, so a pull ends soon after it is asked to stop.
const FOLLOWING_CHUNK: usize = 256;

/// The lines of a slice, a chunk at a time.
pub struct Following<'a>(pub &'a [Line]);

impl Next for Following<'_> {
    fn pull(&mut self, take: &mut dyn FnMut(&Line)) -> Pulled {
        if self.0.is_empty() {
            return Pulled::Done;
        }
        let (chunk, rest) = self.0.split_at(self.0.len().min(FOLLOWING_CHUNK));
        chunk.iter().for_each(take);
        self.0 = rest;
        Pulled::Lines
    }
}
