//! The pipeline thread's side of the spool: appends records, bounded in bytes.
use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    sync::Arc,
};

use super::{Position, Shared, SpoolError, segment_path};
use crate::sink::nats::counters::Counters;

/// A batch is written once it is this large, even before the pipeline's flush.
const BATCH_BYTES: usize = 256 << 10;
/// Segment size bounds: small enough that deleting acknowledged segments frees space
/// well before the bound, large enough to keep file churn low.
const MIN_SEGMENT_BYTES: u64 = 4 << 10;
const MAX_SEGMENT_BYTES: u64 = 64 << 20;

pub struct SpoolWriter {
    shared: Arc<Shared>,
    segment: u64,
    file: File,
    /// Bytes of the current segment on disk, all of them whole records.
    len: u64,
    batch: Vec<u8>,
    batch_records: u64,
    segment_bytes: u64,
    max_bytes: u64,
}

/// What became of one record.
#[derive(Debug, PartialEq)]
pub enum Appended {
    Spooled,
    /// The spool is at its bound: the record was discarded (and counted).
    Full,
}

impl SpoolWriter {
    pub(super) fn create(
        shared: Arc<Shared>,
        segment: u64,
        max_bytes: u64,
    ) -> Result<Self, SpoolError> {
        let path = segment_path(&shared.dir, segment);
        let file = create_segment(&shared, segment).map_err(SpoolError::io(&path))?;
        Ok(Self {
            shared,
            segment,
            file,
            len: 0,
            batch: Vec::with_capacity(BATCH_BYTES),
            batch_records: 0,
            segment_bytes: (max_bytes / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
            max_bytes,
        })
    }

    /// Adds one record (a line ending in a newline). An error means the record, or the
    /// batch written with it, was discarded; the count of discarded records says how many.
    pub fn append(&mut self, line: &[u8]) -> io::Result<Appended> {
        let counters = &self.shared.counters;
        let used = Counters::get(&counters.disk_bytes) + self.batch.len() as u64;
        if used + line.len() as u64 > self.max_bytes {
            Counters::add(&counters.discarded, 1);
            return Ok(Appended::Full);
        }
        let segment_end = self.len + self.batch.len() as u64;
        if segment_end > 0
            && segment_end + line.len() as u64 > self.segment_bytes
            && let Err(e) = self.commit().and_then(|()| self.roll())
        {
            Counters::add(&self.shared.counters.discarded, 1);
            return Err(e);
        }
        self.batch.extend_from_slice(line);
        self.batch_records += 1;
        if self.batch.len() >= BATCH_BYTES {
            self.commit()?;
        }
        Ok(Appended::Spooled)
    }

    /// Writes the batch and makes it readable. On failure the segment is cut back to its
    /// last whole record and the batch's records are counted as discarded.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let bytes = self.batch.len() as u64;
        let records = std::mem::take(&mut self.batch_records);
        let written = self.file.write_all(&self.batch);
        self.batch.clear();
        let counters = &self.shared.counters;
        if let Err(e) = written {
            Counters::add(&counters.discarded, records);
            // Never leave half a record: the reader and the next start rely on it.
            return Err(match self.file.set_len(self.len) {
                Ok(()) => e,
                Err(cut) => io::Error::new(e.kind(), format!("{e}; cutting it back: {cut}")),
            });
        }
        self.len += bytes;
        Counters::add(&counters.disk_bytes, bytes);
        Counters::add(&counters.spooled_records, records);
        Counters::add(&counters.spooled_bytes, bytes);
        self.shared.set_readable(Position {
            segment: self.segment,
            offset: self.len,
        });
        Ok(())
    }

    /// Commits and forces the segment to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.commit()?;
        self.file.sync_data()
    }

    fn roll(&mut self) -> io::Result<()> {
        let next = self.segment + 1;
        self.file = create_segment(&self.shared, next)?;
        self.segment = next;
        self.len = 0;
        self.shared.set_readable(Position {
            segment: next,
            offset: 0,
        });
        Ok(())
    }
}

fn create_segment(shared: &Shared, segment: u64) -> io::Result<File> {
    OpenOptions::new()
        .create_new(true)
        .append(true)
        .mode(0o600)
        .open(segment_path(&shared.dir, segment))
}
