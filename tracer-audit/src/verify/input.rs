//! The lines of the files given to `tracer verify`, in order, as one sequence. Each
//! file is plain, gzip (possibly several members, as appended rotations produce) or
//! zstd, told apart by its first bytes, not by its name.
use std::{
    collections::VecDeque,
    fmt,
    fs::File,
    io::{self, BufRead, BufReader, Read as _, Seek as _},
    path::{Path, PathBuf},
    rc::Rc,
};

use flate2::read::MultiGzDecoder;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Where a line is: file and 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: Rc<Path>,
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.file.display(), self.line)
    }
}

pub struct RawLine {
    pub at: Location,
    /// Without the newline.
    pub bytes: Vec<u8>,
    /// It ended with a newline (a cut file's last line does not).
    pub complete: bool,
}

/// The lines of several files with lookahead.
pub struct Lines {
    files: VecDeque<PathBuf>,
    current: Option<(Rc<Path>, Box<dyn BufRead>, u64)>,
    ahead: VecDeque<RawLine>,
    pub files_read: usize,
}

impl Lines {
    pub fn new(files: &[PathBuf]) -> Self {
        Self {
            files: files.iter().cloned().collect(),
            current: None,
            ahead: VecDeque::new(),
            files_read: 0,
        }
    }

    pub fn next_line(&mut self) -> io::Result<Option<RawLine>> {
        if let Some(line) = self.ahead.pop_front() {
            return Ok(Some(line));
        }
        self.read()
    }

    /// The line `n` places after the one `next_line` returned last (0: the next one).
    pub fn peek(&mut self, n: usize) -> io::Result<Option<&RawLine>> {
        while self.ahead.len() <= n {
            match self.read()? {
                Some(line) => self.ahead.push_back(line),
                None => return Ok(None),
            }
        }
        Ok(self.ahead.get(n))
    }

    fn read(&mut self) -> io::Result<Option<RawLine>> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.files.pop_front() else {
                    return Ok(None);
                };
                let reader = open(&path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                self.files_read += 1;
                self.current = Some((Rc::from(path.as_path()), reader, 0));
            }
            let Some((path, reader, line_no)) = self.current.as_mut() else {
                continue;
            };
            let mut bytes = Vec::with_capacity(1024);
            let n = reader
                .read_until(b'\n', &mut bytes)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            if n == 0 {
                self.current = None;
                continue;
            }
            *line_no += 1;
            let complete = bytes.last() == Some(&b'\n');
            if complete {
                bytes.pop();
            }
            return Ok(Some(RawLine {
                at: Location {
                    file: Rc::clone(path),
                    line: *line_no,
                },
                bytes,
                complete,
            }));
        }
    }
}

/// `path` as a reader of its plain bytes: gzip and zstd are told apart by their first
/// bytes and decompressed. The hub imports files with it.
pub fn open(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..])? {
            0 => break,
            n => got += n,
        }
    }
    file.rewind()?;
    Ok(if magic[..got].starts_with(&GZIP_MAGIC) {
        Box::new(BufReader::new(MultiGzDecoder::new(file)))
    } else if got == 4 && magic == ZSTD_MAGIC {
        Box::new(BufReader::new(zstd::stream::read::Decoder::new(file)?))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, file))
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn plain_gzip_and_zstd_read_as_one_sequence_with_lookahead() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.jsonl");
        std::fs::write(&plain, b"1\n2\n").unwrap();
        let gz = dir.path().join("b.log");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"3\n").unwrap();
        let mut bytes = enc.finish().unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"4\n").unwrap();
        bytes.extend(enc.finish().unwrap());
        std::fs::write(&gz, bytes).unwrap();
        let zst = dir.path().join("c");
        std::fs::write(&zst, zstd::encode_all(&b"5\n6"[..], 1).unwrap()).unwrap();

        let mut lines = Lines::new(&[plain, gz.clone(), zst]);
        assert_eq!(lines.peek(2).unwrap().unwrap().bytes, b"3");
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().unwrap() {
            seen.push((
                String::from_utf8(line.bytes).unwrap(),
                line.at.line,
                line.complete,
            ));
        }
        let expected = [
            ("1", 1, true),
            ("2", 2, true),
            ("3", 1, true),
            ("4", 2, true),
            ("5", 1, true),
            ("6", 2, false),
        ];
        assert_eq!(seen, expected.map(|(s, n, c)| (s.to_owned(), n, c)));
        assert_eq!(lines.files_read, 3);
        assert!(
            Lines::new(&[dir.path().join("missing")])
                .next_line()
                .is_err()
        );
        let _ = gz;
    }
}
