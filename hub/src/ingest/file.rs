//! `tracer-hub import FILE...`: lines of plain, gzip or zstd files (told apart by their
//! first bytes). A rotated set is read in chain order whatever order the names come
//! in: files are sorted by the seq of their first record.
use std::{
    io::{self, BufRead},
    path::{Path, PathBuf},
    sync::Arc,
};

use tracer_audit::verify::input::open;

use super::{Line, MAX_LINE_BYTES, Origin, TooLong, record};

/// The files in the order their records were written: by (stream, first seq); a file
/// whose first line is not a record keeps its place after those that are.
pub fn chain_order(files: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut keyed = Vec::with_capacity(files.len());
    for (n, path) in files.iter().enumerate() {
        let mut reader = open(path).map_err(|e| with_path(path, e))?;
        let mut first = Vec::new();
        let key = match read_bounded(&mut reader, &mut first).map_err(|e| with_path(path, e))? {
            Some(Ok(())) => record::parse(&first)
                .ok()
                .map(|fields| (fields.stream, fields.seq)),
            _ => None,
        };
        keyed.push((key.is_none(), key, n, path.clone()));
    }
    keyed.sort();
    Ok(keyed.into_iter().map(|(_, _, _, path)| path).collect())
}

/// The lines of one file.
pub struct FileLines {
    path: Arc<Path>,
    reader: Box<dyn BufRead + Send>,
    line: u64,
}

impl FileLines {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            path: Arc::from(path),
            reader: open(path).map_err(|e| with_path(path, e))?,
            line: 0,
        })
    }

    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        let mut bytes = Vec::new();
        let read =
            read_bounded(&mut self.reader, &mut bytes).map_err(|e| with_path(&self.path, e))?;
        let Some(read) = read else {
            return Ok(None);
        };
        self.line += 1;
        Ok(Some(Line {
            origin: Origin::File {
                path: Arc::clone(&self.path),
                line: self.line,
            },
            bytes: read.map(|()| bytes),
        }))
    }
}

/// Reads one line into `bytes` (without its newline); past [`MAX_LINE_BYTES`] the rest
/// of the line is skipped, not kept. `None` at the end of input.
fn read_bounded(
    reader: &mut dyn BufRead,
    bytes: &mut Vec<u8>,
) -> io::Result<Option<Result<(), TooLong>>> {
    let mut total: u64 = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok((total > 0).then(|| verdict(total)));
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], Some(end + 1)),
            None => (available, None),
        };
        total += chunk.len() as u64;
        if total <= MAX_LINE_BYTES as u64 {
            bytes.extend_from_slice(chunk);
        } else {
            bytes.clear();
        }
        let consumed = done.unwrap_or(available.len());
        reader.consume(consumed);
        if done.is_some() {
            return Ok(Some(verdict(total)));
        }
    }
}

fn verdict(total: u64) -> Result<(), TooLong> {
    if total <= MAX_LINE_BYTES as u64 {
        Ok(())
    } else {
        Err(TooLong { bytes: total })
    }
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<Result<Vec<u8>, u64>> {
        let mut file = FileLines::open(path).unwrap();
        let mut out = Vec::new();
        while let Some(line) = file.next_line().unwrap() {
            out.push(line.bytes.map_err(|t| t.bytes));
        }
        out
    }

    #[test]
    fn a_huge_line_is_rejected_by_length_and_the_next_one_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let mut content = b"first\n".to_vec();
        content.extend(std::iter::repeat_n(b'x', 10 << 20));
        content.extend(b"\nlast");
        std::fs::write(&path, content).unwrap();
        assert_eq!(
            lines(&path),
            vec![Ok(b"first".to_vec()), Err(10 << 20), Ok(b"last".to_vec())]
        );
    }

    #[test]
    fn rotated_files_are_ordered_by_their_first_seq() {
        let dir = tempfile::tempdir().unwrap();
        let line = |seq: u64| {
            format!(
                "{{\"timestamp\":\"2026-11-22T19:27:50Z\",\"audit.kind\":\"access\",\"audit.stream\":\"w\",\"audit.seq\":{seq}}}\n"
            )
        };
        let a = dir.path().join("access.jsonl");
        let b = dir.path().join("access.jsonl.1.zst");
        let junk = dir.path().join("junk");
        std::fs::write(&a, line(20)).unwrap();
        std::fs::write(&b, zstd::encode_all(line(3).as_bytes(), 1).unwrap()).unwrap();
        std::fs::write(&junk, "junk\n").unwrap();
        let ordered = chain_order(&[junk.clone(), a.clone(), b.clone()]).unwrap();
        assert_eq!(ordered, vec![b, a, junk]);
    }
}
