//! The sealed stream: every line goes through the chain, then to all sinks. Owns when
//! checkpoints are written, the seq reservations and the state file.
//!
//! Over 400 lines: the chain, the checkpoint schedule, seq reservations and the state
//! file change together on every line; one owner keeps their order visible.
use std::{
    io,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use tracer_audit::{
    chain::{Chain, Head, Kind},
    checkpoint::{Checkpointer, Reason},
    key::{AuditKey, KeyError},
    loss::{self, LossSnapshot, LossWatch},
    start::{self, Start},
    state::{Saved, StateError, StateFile},
    stream::StreamId,
    timestamp::format_rfc3339_ns,
};

/// Where the sealed lines go, in order. The sink layer implements it for all the
/// configured sinks at once, so the chain never depends on what the sinks are.
pub trait SealedLines {
    /// Takes one sealed line, newline included.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()>;
    /// End of a batch: what was written becomes visible to readers.
    fn flush(&mut self) -> io::Result<()>;
    /// A sink wants a new file: the chain first ends the old one with a checkpoint.
    fn rotation_due(&self) -> bool;
    fn rotate(&mut self) -> io::Result<()>;
    /// The last line was written: close, waiting a bounded time for remote ends.
    fn shutdown(&mut self) -> io::Result<()>;
}

/// Seqs reserved in the state file at a time: a durable write once per this many lines
/// keeps seqs unique across a crash; at most this many are skipped after one.
pub const RESERVED_SEQS: u64 = 100_000;
/// After a failed state write, the next attempt waits this long.
const SAVE_RETRY: Duration = Duration::from_secs(1);
/// An idle sensor still checkpoints this often (at the next periodic tick), so its trail
/// shows it kept running: the hub's `sensor_silent` rule (default 5 minutes) hears it.
const HEARTBEAT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("audit state file {path}: {reason}")]
    WrongStream { path: PathBuf, reason: String },
    #[error("audit state file {path}: writing it: {source}")]
    Save { path: PathBuf, source: io::Error },
}

/// Where the chain lives and how often it is checkpointed (config `[audit]`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub stream: StreamId,
    pub state_file: PathBuf,
    pub key_file: PathBuf,
    pub checkpoint_records: u64,
    pub checkpoint_interval: Duration,
}

/// Lines written, by kind, for the summary.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counts {
    pub access: u64,
    pub loss: u64,
    pub checkpoint: u64,
    pub start: u64,
}

pub struct Output<S> {
    chain: Chain,
    checkpoints: Checkpointer,
    state: StateFile,
    losses: LossWatch,
    sinks: S,
    /// The line being built and sealed.
    line: Vec<u8>,
    start: Start,
    checkpoint_records: u64,
    /// Lines since the last checkpoint of this run (or since its start line).
    since_checkpoint: u64,
    reserved_until: u64,
    /// The head once the sinks last flushed: what the state file may claim was written.
    flushed: Head,
    /// The head the state file holds.
    saved_head: Head,
    durable_save_due: bool,
    save_failed_at: Option<Instant>,
    /// When this run last wrote a checkpoint (or started).
    last_checkpoint: Instant,
    counts: Counts,
}

impl<S: SealedLines> Output<S> {
    /// Loads the key (creating it), locks and reads the state, and reserves the first
    /// seqs durably: a path that cannot be written fails here, before tracing starts.
    pub fn open(settings: &Settings, sinks: S) -> Result<Self, AuditError> {
        let key = AuditKey::load_or_create(&settings.key_file)?;
        let (state, saved) = StateFile::open(&settings.state_file)?;
        let resume = start::resume(settings.stream.clone(), saved).map_err(|reason| {
            AuditError::WrongStream {
                path: settings.state_file.clone(),
                reason,
            }
        })?;
        // Until this run's first line is flushed, the state keeps naming the last real
        // line, and the reservation covers the previous run's range and this one's.
        let last = resume.last;
        let reserved_until = resume.chain.next_seq() - 1 + RESERVED_SEQS;
        let output = Self {
            chain: resume.chain,
            checkpoints: Checkpointer::new(key, resume.checkpoint),
            state,
            losses: LossWatch::new(now_ns()),
            sinks,
            line: Vec::with_capacity(2048),
            start: resume.start,
            checkpoint_records: settings.checkpoint_records.max(1),
            since_checkpoint: 0,
            reserved_until,
            flushed: last,
            saved_head: last,
            durable_save_due: false,
            save_failed_at: None,
            last_checkpoint: Instant::now(),
            counts: Counts::default(),
        };
        output
            .state
            .save(&output.saved(false), true)
            .map_err(|source| AuditError::Save {
                path: settings.state_file.clone(),
                source,
            })?;
        Ok(output)
    }

    pub fn stream(&self) -> &StreamId {
        self.chain.stream()
    }

    /// Whether this run begins a new chain at seq 1 (there was no state file).
    pub fn starts_new_chain(&self) -> bool {
        self.start == Start::New
    }

    pub fn sinks(&self) -> &S {
        &self.sinks
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    pub fn head(&self) -> Head {
        self.chain.head()
    }

    /// Writes the start line (the first of every run) and flushes it.
    pub fn write_start(&mut self) -> io::Result<()> {
        self.line.clear();
        let now = format_rfc3339_ns(now_ns());
        start::write_record(
            self.start,
            &now,
            self.checkpoints.fingerprint(),
            &mut self.line,
        )
        .map_err(io::Error::other)?;
        self.commit(Kind::Start)?;
        self.end_batch()
    }

    /// The emptied line buffer: serialize one JSON object into it, then [`Output::commit`].
    pub fn line(&mut self) -> &mut Vec<u8> {
        self.line.clear();
        &mut self.line
    }

    /// Seals the line as `kind`, hands it to the sinks, and writes a checkpoint when
    /// `checkpoint_records` lines have passed since the last one.
    pub fn commit(&mut self, kind: Kind) -> io::Result<()> {
        self.reserve();
        self.chain.seal(&mut self.line, kind);
        self.sinks.write_line(&self.line)?;
        self.since_checkpoint += 1;
        match kind {
            Kind::Access => self.counts.access += 1,
            Kind::Loss => self.counts.loss += 1,
            Kind::Start => self.counts.start += 1,
            Kind::Checkpoint => {}
        }
        if self.since_checkpoint >= self.checkpoint_records {
            self.checkpoint(Reason::Records)?;
        }
        Ok(())
    }

    pub fn checkpoint(&mut self, reason: Reason) -> io::Result<()> {
        self.reserve();
        let now = format_rfc3339_ns(now_ns());
        self.checkpoints
            .write(
                &mut self.chain,
                reason,
                self.since_checkpoint,
                &now,
                &mut self.line,
            )
            .map_err(io::Error::other)?;
        self.sinks.write_line(&self.line)?;
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        self.counts.checkpoint += 1;
        self.durable_save_due = true;
        Ok(())
    }

    /// The periodic checkpoint: when something was written since the last one, or as
    /// a heartbeat when nothing was for [`HEARTBEAT`].
    pub fn periodic_checkpoint(&mut self) -> io::Result<()> {
        if self.since_checkpoint == 0 && self.last_checkpoint.elapsed() < HEARTBEAT {
            return Ok(());
        }
        self.checkpoint(Reason::Interval)?;
        self.end_batch()
    }

    /// Makes the last checkpoint look `HEARTBEAT` old, so the next periodic one is due.
    #[cfg(test)]
    pub(crate) fn heartbeat_due(&mut self) {
        self.last_checkpoint = Instant::now().checked_sub(HEARTBEAT).expect("uptime");
    }

    /// Writes a loss line for every counter that grew since the last check.
    pub fn check_losses(&mut self, now: &LossSnapshot) -> io::Result<()> {
        for loss in self.losses.changes(now, now_ns()) {
            loss::write_record(&loss, self.line()).map_err(io::Error::other)?;
            self.commit(Kind::Loss)?;
        }
        Ok(())
    }

    /// End of a batch: flush the sinks; if one wants a new file, end the old one with a
    /// checkpoint and rotate; save the state durably after a checkpoint.
    pub fn end_batch(&mut self) -> io::Result<()> {
        self.sinks.flush()?;
        if self.sinks.rotation_due() {
            self.checkpoint(Reason::Rotation)?;
            self.sinks.flush()?;
            self.sinks.rotate()?;
        }
        self.flushed = self.chain.head();
        if self.durable_save_due {
            self.durable_save_due = !self.save(false, true);
        }
        Ok(())
    }

    /// About once a second: keep the state file's head close to what was written, so
    /// that after a crash the new run links to a recent line.
    pub fn save_head(&mut self) {
        if self.saved_head != self.flushed {
            self.save(false, false);
        }
    }

    /// The last line of the run: a checkpoint; then the sinks close and the state is
    /// saved as a clean stop, so the next run continues at the next seq.
    pub fn shutdown(&mut self) -> io::Result<()> {
        let closed = self
            .checkpoint(Reason::Shutdown)
            .and_then(|()| self.sinks.flush())
            .and_then(|()| self.sinks.shutdown());
        if closed.is_ok() {
            self.flushed = self.chain.head();
            self.reserved_until = self.flushed.seq;
        }
        self.save(closed.is_ok(), true);
        closed
    }

    fn saved(&self, clean: bool) -> Saved {
        Saved {
            stream: self.chain.stream().to_string(),
            head: self.flushed,
            reserved_until: self.reserved_until,
            clean,
            checkpoint: self.checkpoints.last(),
        }
    }

    /// Extends the reservation before a seq beyond it is used.
    fn reserve(&mut self) {
        if self.chain.next_seq() <= self.reserved_until || !self.may_retry_save() {
            return;
        }
        let before = self.reserved_until;
        self.reserved_until = self.chain.next_seq() - 1 + RESERVED_SEQS;
        if !self.save(false, true) {
            self.reserved_until = before;
        }
    }

    fn may_retry_save(&self) -> bool {
        self.save_failed_at
            .is_none_or(|at| at.elapsed() >= SAVE_RETRY)
    }

    /// Saves the state; a failure is reported on stderr (once until a save succeeds
    /// again) and tracing goes on. Returns whether it was saved.
    fn save(&mut self, clean: bool, durable: bool) -> bool {
        match self.state.save(&self.saved(clean), durable) {
            Ok(()) => {
                if self.save_failed_at.take().is_some() {
                    eprintln!(
                        "tracer: audit state file {} written again",
                        self.state.path().display()
                    );
                }
                self.saved_head = self.flushed;
                true
            }
            Err(e) => {
                if self.save_failed_at.is_none() {
                    eprintln!(
                        "tracer: audit state file {} cannot be written ({e}); tracing goes on, retrying; \
                         if the tracer crashes before it can be written, the next run cannot link to this one",
                        self.state.path().display()
                    );
                }
                self.save_failed_at = Some(Instant::now());
                false
            }
        }
    }
}

/// Wall-clock nanoseconds since the Unix epoch.
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, rc::Rc};

    use super::*;
    use tracer_audit::loss::{Counter, LossSource};

    /// A file-like sink: asks to rotate after `every` lines; keeps each "file".
    struct Rotating {
        files: Rc<RefCell<Vec<Vec<String>>>>,
        every: usize,
    }

    impl SealedLines for Rotating {
        fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
            let mut files = self.files.borrow_mut();
            if files.is_empty() {
                files.push(Vec::new());
            }
            let text = String::from_utf8_lossy(line).into_owned();
            if let Some(file) = files.last_mut() {
                file.push(text);
            }
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn rotation_due(&self) -> bool {
            self.files
                .borrow()
                .last()
                .is_some_and(|f| f.len() >= self.every)
        }
        fn rotate(&mut self) -> io::Result<()> {
            self.files.borrow_mut().push(Vec::new());
            Ok(())
        }
        fn shutdown(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn settings(dir: &std::path::Path) -> Settings {
        Settings {
            stream: "h".parse().unwrap(),
            state_file: dir.join("state"),
            key_file: dir.join("key"),
            checkpoint_records: 1000,
            checkpoint_interval: Duration::from_secs(60),
        }
    }

    fn kind(line: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["audit.kind"].as_str().unwrap().to_owned()
    }

    #[test]
    fn every_rotated_file_ends_with_a_checkpoint_and_losses_are_lines() {
        let dir = tempfile::tempdir().unwrap();
        let files = Rc::new(RefCell::new(Vec::new()));
        let sink = Rotating {
            files: Rc::clone(&files),
            every: 3,
        };
        let settings = settings(dir.path());
        let mut output = Output::open(&settings, sink).unwrap();
        output.write_start().unwrap();
        for _ in 0..5 {
            output.line().extend_from_slice(b"{\"a\":1}");
            output.commit(Kind::Access).unwrap();
            output.end_batch().unwrap();
        }
        let snapshot = LossSnapshot::new(vec![Counter {
            source: LossSource::Sink,
            reason: "discarded_records",
            total: 2,
        }]);
        output.check_losses(&snapshot).unwrap();
        // Unchanged counters: no second loss line.
        output.check_losses(&snapshot).unwrap();
        output.shutdown().unwrap();

        let files = files.borrow();
        assert!(files.len() >= 2, "{files:#?}");
        for file in files.iter().filter(|f| !f.is_empty()) {
            assert_eq!(kind(file.last().unwrap()), "checkpoint", "{file:#?}");
        }
        let all: Vec<String> = files.iter().flatten().map(|l| kind(l)).collect();
        assert_eq!(all.iter().filter(|k| *k == "loss").count(), 1, "{all:?}");
        assert_eq!(output.counts().access, 5);
        assert_eq!(output.counts().loss, 1);
    }

    #[test]
    fn the_interval_checkpoint_needs_something_written_or_a_heartbeat_due() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let sink = Rotating {
            files: Rc::default(),
            every: usize::MAX,
        };
        let mut output = Output::open(&settings, sink).unwrap();
        output.write_start().unwrap();
        output.periodic_checkpoint().unwrap();
        assert_eq!(output.counts().checkpoint, 1);
        output.periodic_checkpoint().unwrap();
        assert_eq!(output.counts().checkpoint, 1, "nothing new to commit to");
        output.heartbeat_due();
        output.periodic_checkpoint().unwrap();
        assert_eq!(output.counts().checkpoint, 2, "an idle sensor's heartbeat");
    }
}
