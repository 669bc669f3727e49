//! JSON lines on standard output, buffered and flushed once per batch of kernel events.
use std::io::{self, BufWriter, Stdout, Write as _};

pub struct StdoutSink {
    out: BufWriter<Stdout>,
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
            records: 0,
        }
    }

    /// Writes one record, a JSON object ending in a newline (serde_json escapes CR/LF,
    /// so a record never spans lines).
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)?;
        self.records += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
