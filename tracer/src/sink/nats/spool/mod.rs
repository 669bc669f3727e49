//! The on-disk spool between the pipeline and the broker: every record is appended here
//! first (write-ahead), the publisher reads it back in order and a cursor file remembers
//! how far JetStream has acknowledged it, so records survive a broker outage and a
//! tracer restart.
//!
//! Layout of the directory (mode 0700, files 0600):
//! - `00000000000000000001.seg`, ...: segments, one JSON record per line, numbered
//!   consecutively; a run starts a new one after the last, and a segment is deleted once
//!   all of its records are acknowledged;
//! - `cursor`: `SEGMENT OFFSET`, the end of the acknowledged prefix, replaced by rename;
//! - `lock`: held (flock) by the running tracer, so two never share a spool.
//!
//! Durability: records reach the segment file (the page cache) once per batch, so a
//! crash of the tracer loses none that were flushed; the file is synced at shutdown
//! only (an fsync on the pipeline thread would stall tracing), so an operating-system
//! crash or power loss can lose what the kernel had not written back yet.
mod reader;
mod recovery;
mod writer;

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::{
        fd::AsRawFd as _,
        unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::Notify;

pub use reader::{Record, SpoolReader};
pub use recovery::Recovered;
pub use writer::{Appended, SpoolWriter};

use super::counters::Counters;

/// A byte position in the spool: segment number and offset in it. Records end at
/// positions; the order of positions is the order of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is in use by another running tracer (it holds {}/lock)", .0.display(), .0.display())]
    InUse(PathBuf),
}

impl SpoolError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// What the writer (pipeline thread) and the reader (publisher thread) share.
pub struct Shared {
    dir: PathBuf,
    /// Held open for the spool's lifetime: the flock on it is the "in use" mark.
    _lock: File,
    /// End of what the writer has written completely: the reader never reads past it,
    /// so it never sees half a batch.
    readable: Mutex<Position>,
    /// Wakes the publisher when `readable` moved.
    pub data: Notify,
    pub counters: Counters,
}

impl Shared {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn readable(&self) -> Position {
        *self.readable.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_readable(&self, position: Position) {
        *self.readable.lock().unwrap_or_else(PoisonError::into_inner) = position;
        self.data.notify_one();
    }
}

/// Opens (creating if needed) the spool in `dir`, bounded to `max_bytes` of segment files.
pub fn open(
    dir: &Path,
    max_bytes: u64,
) -> Result<(SpoolWriter, SpoolReader, Recovered), SpoolError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(SpoolError::io(dir))?;
    let lock = lock(dir)?;
    let recovered = recovery::recover(dir)?;
    let writer_segment = recovered.next_segment;
    let shared = Arc::new(Shared {
        dir: dir.to_owned(),
        _lock: lock,
        readable: Mutex::new(Position {
            segment: writer_segment,
            offset: 0,
        }),
        data: Notify::new(),
        counters: Counters::default(),
    });
    let counters = &shared.counters;
    Counters::add(&counters.spooled_records, recovered.backlog.records);
    Counters::add(&counters.spooled_bytes, recovered.backlog.bytes);
    Counters::add(&counters.disk_bytes, recovered.disk_bytes);
    Counters::add(&counters.discarded, u64::from(recovered.cut_bytes > 0));
    let writer = SpoolWriter::create(Arc::clone(&shared), writer_segment, max_bytes)?;
    let reader = SpoolReader::new(shared, recovered.start);
    Ok((writer, reader, recovered))
}

fn lock(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(SpoolError::io(&path))?;
    // SAFETY: flock on an fd this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.kind() == io::ErrorKind::WouldBlock {
            SpoolError::InUse(dir.to_owned())
        } else {
            SpoolError::Io { path, source: e }
        });
    }
    Ok(file)
}

const SEGMENT_SUFFIX: &str = ".seg";

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}{SEGMENT_SUFFIX}"))
}

fn segment_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The segments in `dir` with their sizes, in order.
fn list_segments(dir: &Path) -> io::Result<Vec<(u64, u64)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(number) = entry.file_name().to_str().and_then(segment_number) {
            segments.push((number, entry.metadata()?.len()));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

const CURSOR: &str = "cursor";

fn read_cursor(dir: &Path) -> Result<Option<Position>, String> {
    let path = dir.join(CURSOR);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next(), fields.next()) {
        (Some(Ok(segment)), Some(Ok(offset)), None) => Ok(Some(Position { segment, offset })),
        _ => Err(format!(
            "{}: not `SEGMENT OFFSET`: {text:?}",
            path.display()
        )),
    }
}

fn write_cursor(dir: &Path, position: Position) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    fs::write(&tmp, format!("{} {}\n", position.segment, position.offset))?;
    fs::rename(&tmp, dir.join(CURSOR))
}

#[cfg(test)]
mod tests;
