//! Opening a spool a previous run left behind: where publishing resumes, what is still
//! unacknowledged, and the repair of a record cut short by a crash.
use std::{
    fs::{self, OpenOptions},
    io,
    os::unix::fs::FileExt as _,
    path::Path,
};

use super::{Position, SpoolError, list_segments, read_cursor, segment_path};
use crate::sink::{lines::complete_length, nats::counters::Backlog};

#[derive(Debug)]
pub struct Recovered {
    /// Where publishing resumes: the end of the acknowledged prefix.
    pub start: Position,
    /// Unacknowledged records from before (published first).
    pub backlog: Backlog,
    /// Bytes of a last record that the previous run did not finish writing (cut off).
    pub cut_bytes: u64,
    /// A cursor file that could not be used (publishing then resumes at the oldest segment).
    pub cursor_problem: Option<String>,
    pub disk_bytes: u64,
    /// The first segment of this run.
    pub next_segment: u64,
}

const CHUNK: u64 = 1 << 16;

pub fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    let mut segments = list_segments(dir).map_err(SpoolError::io(dir))?;
    let (cursor, cursor_problem) = match read_cursor(dir) {
        Ok(cursor) => (cursor, None),
        Err(problem) => (None, Some(problem)),
    };
    // Segments wholly before the cursor were acknowledged; only their deletion was missed.
    if let Some(cursor) = cursor {
        for &(number, _) in segments.iter().filter(|(n, _)| *n < cursor.segment) {
            let path = segment_path(dir, number);
            fs::remove_file(&path).map_err(SpoolError::io(&path))?;
        }
        segments.retain(|(n, _)| *n >= cursor.segment);
    }
    let mut cut_bytes = 0;
    if let Some((number, len)) = segments.last_mut() {
        let path = segment_path(dir, *number);
        let complete = cut_partial_record(&path, *len).map_err(SpoolError::io(&path))?;
        cut_bytes = *len - complete;
        *len = complete;
    }
    let start = match (cursor, segments.first()) {
        (Some(cursor), Some(&(first, len))) if cursor.segment == first => Position {
            segment: first,
            offset: cursor.offset.min(len),
        },
        (_, Some(&(first, _))) => Position {
            segment: first,
            offset: 0,
        },
        (cursor, None) => Position {
            segment: cursor.map_or(1, |c| c.segment + 1),
            offset: 0,
        },
    };
    let mut backlog = Backlog {
        records: 0,
        bytes: 0,
    };
    for &(number, len) in &segments {
        let from = if number == start.segment {
            start.offset
        } else {
            0
        };
        let path = segment_path(dir, number);
        backlog.records += count_records(&path, from, len).map_err(SpoolError::io(&path))?;
        backlog.bytes += len - from;
    }
    Ok(Recovered {
        start,
        backlog,
        cut_bytes,
        cursor_problem,
        disk_bytes: segments.iter().map(|(_, len)| len).sum(),
        next_segment: segments.last().map_or(start.segment, |(n, _)| n + 1),
    })
}

/// Truncates the segment after its last newline; returns the new length.
fn cut_partial_record(path: &Path, len: u64) -> io::Result<u64> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let complete = complete_length(&file, len)?;
    if complete < len {
        file.set_len(complete)?;
    }
    Ok(complete)
}

fn count_records(path: &Path, from: u64, len: u64) -> io::Result<u64> {
    let file = fs::File::open(path)?;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut at = from;
    let mut records = 0;
    while at < len {
        let chunk = &mut buf[..(len - at).min(CHUNK) as usize];
        file.read_exact_at(chunk, at)?;
        records += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        at += chunk.len() as u64;
    }
    Ok(records)
}
