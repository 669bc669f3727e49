//! The publisher's side of the spool: reads records in order, remembers what JetStream
//! acknowledged, persists that as the cursor and deletes acknowledged segments.
use std::{
    fs::{self, File},
    io,
    os::unix::fs::FileExt as _,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};

use super::{Position, Shared, segment_path, write_cursor};
use crate::sink::nats::counters::Counters;

const READ_BYTES: usize = 1 << 16;
/// The cursor is written at most this often (and whenever a segment is done): a crash
/// re-sends at most this much, which JetStream's de-duplication then drops.
const PERSIST_EVERY: Duration = Duration::from_millis(100);

/// One record read from the spool, without its newline.
#[derive(Debug)]
pub struct Record {
    pub payload: Bytes,
    /// Where the record ends: acknowledging it moves the cursor here.
    pub end: Position,
}

impl Record {
    /// Bytes the record takes in the spool.
    pub fn spooled_bytes(&self) -> u64 {
        self.payload.len() as u64 + 1
    }
}

pub struct SpoolReader {
    shared: Arc<Shared>,
    /// Start of the first record not yet returned.
    next: Position,
    /// Bytes read from `next` on that hold no whole record yet.
    buf: BytesMut,
    file: Option<(u64, File)>,
    acked: Position,
    persisted: Position,
    persisted_at: Instant,
    /// Segments below this one are deleted.
    kept_from: u64,
}

impl SpoolReader {
    pub(super) fn new(shared: Arc<Shared>, start: Position) -> Self {
        Self {
            shared,
            next: start,
            buf: BytesMut::new(),
            file: None,
            acked: start,
            persisted: start,
            persisted_at: Instant::now(),
            kept_from: start.segment,
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The next record, or `None` when all the writer made readable has been returned.
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            if let Some(newline) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line = self.buf.split_to(newline + 1);
                line.truncate(newline);
                self.next.offset += newline as u64 + 1;
                return Ok(Some(Record {
                    payload: line.freeze(),
                    end: self.next,
                }));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Reads more of the spool; false when there is nothing more to read for now.
    fn fill(&mut self) -> io::Result<bool> {
        let readable = self.shared.readable();
        let at = self.next.offset + self.buf.len() as u64;
        let want = if self.next.segment < readable.segment {
            READ_BYTES
        } else {
            readable.offset.saturating_sub(at).min(READ_BYTES as u64) as usize
        };
        if want == 0 {
            return Ok(false);
        }
        let segment = self.next.segment;
        let file = match &self.file {
            Some((number, file)) if *number == segment => file,
            _ => {
                &self
                    .file
                    .insert((
                        segment,
                        File::open(segment_path(&self.shared.dir, segment))?,
                    ))
                    .1
            }
        };
        let filled = self.buf.len();
        self.buf.resize(filled + want, 0);
        let n = file.read_at(&mut self.buf[filled..], at)?;
        self.buf.truncate(filled + n);
        if n > 0 {
            return Ok(true);
        }
        if segment == readable.segment {
            return Ok(false);
        }
        // The end of a finished segment: the writer ends segments after whole records,
        // and recovery cuts a record the previous run left unfinished.
        if !self.buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("spool segment {segment} ends inside a record"),
            ));
        }
        self.next = Position {
            segment: segment + 1,
            offset: 0,
        };
        self.file = None;
        Ok(true)
    }

    /// Goes back to the oldest unacknowledged record, to send everything after it again.
    pub fn rewind(&mut self) {
        self.next = self.acked;
        self.buf.clear();
    }

    /// JetStream acknowledged the `records` that end at `end`; records must be
    /// acknowledged in order.
    pub fn ack(&mut self, end: Position, records: u64, bytes: u64) {
        self.acked = end;
        let counters = &self.shared.counters;
        Counters::add(&counters.acked_records, records);
        Counters::add(&counters.acked_bytes, bytes);
    }

    /// Writes the cursor (when `force`, when a segment is done, or every 100 ms) and
    /// deletes the segments it has left behind; true if it wrote.
    pub fn persist(&mut self, force: bool) -> io::Result<bool> {
        if self.acked == self.persisted {
            return Ok(false);
        }
        let finished_segment = self.acked.segment > self.persisted.segment;
        if !force && !finished_segment && self.persisted_at.elapsed() < PERSIST_EVERY {
            return Ok(false);
        }
        write_cursor(&self.shared.dir, self.acked)?;
        self.persisted = self.acked;
        self.persisted_at = Instant::now();
        let counters = &self.shared.counters;
        while self.kept_from < self.acked.segment {
            let path = segment_path(&self.shared.dir, self.kept_from);
            match fs::metadata(&path) {
                Ok(meta) => {
                    fs::remove_file(&path)?;
                    Counters::sub(&counters.disk_bytes, meta.len());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.kept_from += 1;
        }
        Ok(true)
    }
}
