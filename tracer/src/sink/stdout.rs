//! JSON lines on standard output, buffered and flushed once per batch of kernel events.
use std::io::{self, BufWriter, Stdout, Write as _};

use serde::Serialize;

pub struct StdoutSink {
    out: BufWriter<Stdout>,
    line: Vec<u8>,
    pub records: u64,
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl StdoutSink {
    pub fn new() -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 16, io::stdout()),
            line: Vec::with_capacity(1024),
            records: 0,
        }
    }

    /// Writes one record as one line; serde_json escapes CR/LF so a record never spans lines.
    pub fn write<T: Serialize>(&mut self, record: &T) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.records += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
