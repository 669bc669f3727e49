//! Where records go. Every sink receives the same sealed JSON lines in the same order
//! (the hash chain in `audit` covers the stream, whichever sinks carry it).
pub mod file;
mod lines;
pub mod nats;
mod stdout;

use std::{collections::BTreeMap, io, time::Duration};

use anyhow::{Context as _, Result};
use serde::Deserialize;

use self::{file::FileSettings, nats::NatsConfig};
use crate::audit::SealedLines;

pub use file::FileSink;
pub use nats::NatsSink;
pub use stdout::StdoutSink;

/// Where records go (`[output]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSettings {
    /// `--stdout`: write stdout as well as the other sinks (with none, stdout is used anyway).
    pub stdout: bool,
    /// `--output FILE` and its flags (`[output.file]`).
    pub file: Option<FileSettings>,
}

/// The sinks the configuration asks for: the file, NATS, and stdout when no other is
/// configured or `--stdout` is given. `report_every`: how often NATS reports a backlog.
pub fn open(output: &OutputSettings, nats: &NatsConfig, report_every: Duration) -> Result<Sinks> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(file) = &output.file {
        sinks.push(Box::new(
            FileSink::open(file.clone()).context("opening the output file")?,
        ));
    }
    if let Some(nats) = NatsSink::from_config(nats, report_every)? {
        sinks.push(Box::new(nats));
    }
    if output.stdout || sinks.is_empty() {
        sinks.insert(0, Box::new(StdoutSink::new()));
    }
    Ok(Sinks::new(sinks))
}

/// One destination of the record stream.
///
/// A sink deals with its own transient trouble (a full disk, an unreachable broker) by
/// retrying, buffering or spooling, and reports it on stderr; an `Err` from it stops the
/// tracer, so it is kept for failures that retrying cannot cure.
pub trait Sink {
    /// Short name for messages and counters ("stdout", "file", "nats").
    fn name(&self) -> &'static str;

    /// Takes one record: a JSON object followed by a newline.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()>;

    /// End of a batch: make what was written so far visible to readers.
    fn flush(&mut self) -> io::Result<()>;

    /// The sink wants to start a new file before the next record. The pipeline first
    /// writes a checkpoint (so it ends the old file), then calls [`Sink::rotate`].
    fn rotation_due(&self) -> bool {
        false
    }

    fn rotate(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Records this sink had to drop since start (a full spool, say); the pipeline turns
    /// growth of this number into a loss record.
    fn discarded(&self) -> u64 {
        0
    }

    /// The tracer is stopping: flush and close, waiting a bounded time for remote ends.
    fn shutdown(&mut self) -> io::Result<()> {
        self.flush()
    }

    /// Named counters for the summary line (bytes written, errors, ...).
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// All configured sinks, written in turn.
#[derive(Default)]
pub struct Sinks {
    sinks: Vec<Box<dyn Sink>>,
    /// Lines handed to the sinks (each sink got every one of them).
    pub records: u64,
}

impl Sinks {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        Self { sinks, records: 0 }
    }

    /// The sinks' names, in writing order.
    pub fn names(&self) -> Vec<&'static str> {
        self.sinks.iter().map(|s| s.name()).collect()
    }

    pub fn discarded(&self) -> u64 {
        self.sinks.iter().map(|s| s.discarded()).sum()
    }

    /// Each sink's counters by sink name; sinks without counters are left out.
    pub fn counters(&self) -> BTreeMap<&'static str, BTreeMap<&'static str, u64>> {
        self.sinks
            .iter()
            .map(|s| {
                (
                    s.name(),
                    s.counters().into_iter().collect::<BTreeMap<_, _>>(),
                )
            })
            .filter(|(_, counters)| !counters.is_empty())
            .collect()
    }
}

impl SealedLines for Sinks {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        for sink in &mut self.sinks {
            sink.write_line(line)
                .map_err(|e| with_sink_name(sink.name(), e))?;
        }
        self.records += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        for sink in &mut self.sinks {
            sink.flush().map_err(|e| with_sink_name(sink.name(), e))?;
        }
        Ok(())
    }

    fn rotation_due(&self) -> bool {
        self.sinks.iter().any(|s| s.rotation_due())
    }

    /// Rotates every sink that asked for it.
    fn rotate(&mut self) -> io::Result<()> {
        for sink in &mut self.sinks {
            if sink.rotation_due() {
                sink.rotate().map_err(|e| with_sink_name(sink.name(), e))?;
            }
        }
        Ok(())
    }

    fn shutdown(&mut self) -> io::Result<()> {
        for sink in &mut self.sinks {
            sink.shutdown()
                .map_err(|e| with_sink_name(sink.name(), e))?;
        }
        Ok(())
    }
}

/// Keeps the error kind (a closed stdout is recognised by it) and adds the sink's name.
fn with_sink_name(name: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{name} sink: {e}"))
}
