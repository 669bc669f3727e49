//! JSON lines on standard output, one write per batch of kernel events, written by a
//! thread of its own.
//!
//! Whoever reads stdout may stop reading (a stalled pipe) or go away. Neither may
//! stall the tracer: a blocked write would stop the event loop, the kernel ring would
//! overflow, and SIGTERM would go unanswered. So the tracing thread only queues each
//! batch; a writer thread does the blocking writes. The queue is bounded: batches that
//! would grow it beyond [`MAX_BACKLOG_BYTES`] are discarded and counted (the pipeline
//! turns the count into a loss record). At shutdown the writer gets
//! [`SHUTDOWN_WAIT`] to finish; what is still queued then is counted as discarded too.
use std::{
    collections::VecDeque,
    io,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use super::Sink;

/// Batches waiting for a slow reader, at most.
const MAX_BACKLOG_BYTES: usize = 64 << 20;
/// How long shutdown waits for a slow reader to take what is queued.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

pub struct StdoutSink {
    /// The batch being assembled.
    batch: Vec<u8>,
    batch_lines: u64,
    shared: Arc<Shared>,
    /// The backlog was full: reported once per episode.
    overflowing: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a batch is queued, taken, or the writer stops.
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    batches: VecDeque<(Vec<u8>, u64)>,
    bytes: usize,
    /// A batch taken by the writer and not yet written.
    writing: bool,
    /// Why the writer stopped (the reader went away); nothing is written after it.
    failed: Option<io::ErrorKind>,
    discarded: u64,
    bytes_written: u64,
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl StdoutSink {
    pub fn new() -> Self {
        let shared = Arc::new(Shared::default());
        let writer = Arc::clone(&shared);
        // Detached: at exit a writer still blocked on a stalled reader must not hold
        // the process.
        thread::Builder::new()
            .name("stdout".to_owned())
            .spawn(move || writer.write_all(&mut io::stdout()))
            .expect("spawning the stdout writer thread");
        Self {
            batch: Vec::with_capacity(1 << 16),
            batch_lines: 0,
            shared,
            overflowing: false,
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue inconsistent: every
        // update is a few field assignments.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer thread: takes batches in order and writes them.
    fn write_all(&self, out: &mut impl io::Write) {
        loop {
            let (batch, lines) = {
                let mut queue = self.lock();
                loop {
                    if let Some(next) = queue.batches.pop_front() {
                        queue.bytes -= next.0.len();
                        queue.writing = true;
                        break next;
                    }
                    queue = self.changed.wait(queue).unwrap_or_else(|e| e.into_inner());
                }
            };
            let written = out.write_all(&batch).and_then(|()| out.flush());
            let mut queue = self.lock();
            queue.writing = false;
            match written {
                Ok(()) => queue.bytes_written += batch.len() as u64,
                Err(e) => {
                    let queued: u64 = queue.batches.iter().map(|(_, n)| n).sum();
                    queue.discarded += lines + queued;
                    queue.batches.clear();
                    queue.bytes = 0;
                    queue.failed = Some(e.kind());
                    self.changed.notify_all();
                    return;
                }
            }
            self.changed.notify_all();
        }
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.batch.extend_from_slice(line);
        self.batch_lines += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(1 << 16));
        let lines = std::mem::take(&mut self.batch_lines);
        let mut queue = self.shared.lock();
        if let Some(kind) = queue.failed {
            queue.discarded += lines;
            return Err(io::Error::new(kind, "the reader of stdout went away"));
        }
        if queue.bytes + batch.len() > MAX_BACKLOG_BYTES {
            queue.discarded += lines;
            if !self.overflowing {
                self.overflowing = true;
                eprintln!(
                    "tracer: stdout sink: the reader of stdout is not keeping up; {} MiB queued, discarding records (counted as loss records) until it catches up",
                    MAX_BACKLOG_BYTES >> 20
                );
            }
            return Ok(());
        }
        if self.overflowing {
            self.overflowing = false;
            eprintln!("tracer: stdout sink: the reader of stdout caught up");
        }
        queue.bytes += batch.len();
        queue.batches.push_back((batch, lines));
        self.shared.changed.notify_all();
        Ok(())
    }

    fn discarded(&self) -> u64 {
        self.shared.lock().discarded
    }

    fn shutdown(&mut self) -> io::Result<()> {
        let flushed = self.flush();
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        let mut queue = self.shared.lock();
        while (queue.writing || !queue.batches.is_empty()) && queue.failed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let queued: u64 = queue.batches.iter().map(|(_, n)| n).sum();
                queue.discarded += queued;
                queue.batches.clear();
                queue.bytes = 0;
                eprintln!(
                    "tracer: stdout sink: the reader of stdout took nothing for {}s at shutdown; {queued} queued record(s) discarded",
                    SHUTDOWN_WAIT.as_secs()
                );
                break;
            }
            queue = self
                .shared
                .changed
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        flushed
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let queue = self.shared.lock();
        vec![
            ("bytes_written", queue.bytes_written),
            ("discarded", queue.discarded),
        ]
    }
}
