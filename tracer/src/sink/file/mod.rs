//! JSON lines appended to a file (`--output FILE`), rotated by size or time when the
//! pipeline asks, rotated files compressed and pruned by a background thread.
//!
//! Write errors (a full disk, EIO) never stop the tracer: the lines that could not be
//! written stay in a bounded memory backlog, retried at every flush; the file always
//! ends with a complete line; the episode is reported once on stderr when it starts and
//! once when it ends. Lines that would overflow the backlog are discarded and counted.
mod compress;
mod housekeeper;
mod live;
mod naming;
mod retention;
mod rotation;
mod settings;

use std::{
    io,
    sync::atomic::Ordering,
    time::{Duration, Instant, SystemTime},
};

pub use live::OpenError;
pub use settings::{ByteSize, Compression, FileSettings, Interval, Mode};

use self::{housekeeper::Housekeeper, live::LiveFile, naming::Stamp, rotation::Policy};
use super::Sink;

/// Lines kept in memory while the file cannot be written.
const BACKLOG_LIMIT: usize = 64 << 20;
/// Within a batch, lines are written once this much has accumulated.
const WRITE_CHUNK: usize = 1 << 20;
/// After a failed rotation, the next attempt waits this long.
const ROTATION_RETRY: Duration = Duration::from_secs(10);

pub struct FileSink {
    settings: FileSettings,
    policy: Policy,
    live: LiveFile,
    /// Lines accepted but not yet in the file: part of a batch, or the backlog.
    pending: Vec<u8>,
    /// Bound of `pending` while the file cannot be written.
    backlog_limit: usize,
    trouble: Option<Trouble>,
    /// When the live file got its first record (its mtime if it existed at start).
    started: SystemTime,
    last_stamp: Option<Stamp>,
    rotation_paused_until: Option<Instant>,
    housekeeper: Housekeeper,
    counters: Counters,
}

/// An ongoing period in which the file cannot be written.
struct Trouble {
    since: Instant,
    discarded_before: u64,
}

#[derive(Default)]
struct Counters {
    bytes_written: u64,
    rotations: u64,
    rotation_errors: u64,
    write_errors: u64,
    discarded: u64,
}

impl FileSink {
    /// Opens (or creates) the live file and finishes work a previous run left undone.
    pub fn open(settings: FileSettings) -> Result<Self, OpenError> {
        let opened = LiveFile::open(&settings.path, settings.mode)?;
        if opened.repaired > 0 {
            eprintln!(
                "tracer: file sink: {} ended in a partial line (an earlier run stopped mid-write); dropped its last {} byte(s)",
                settings.path.display(),
                opened.repaired
            );
        }
        let last_stamp = naming::list(&settings.path)
            .ok()
            .and_then(|rotated| rotated.last().map(|r| r.stamp));
        let housekeeper = Housekeeper::start(&settings).map_err(OpenError::Thread)?;
        let started = if opened.file.len() > 0 {
            opened.modified
        } else {
            SystemTime::now()
        };
        Ok(Self {
            policy: Policy {
                max_bytes: settings.rotate_size,
                interval: settings.rotate_interval,
            },
            settings,
            live: opened.file,
            pending: Vec::with_capacity(WRITE_CHUNK),
            backlog_limit: BACKLOG_LIMIT,
            trouble: None,
            started,
            last_stamp,
            rotation_paused_until: None,
            housekeeper,
            counters: Counters::default(),
        })
    }

    /// Writes what is pending; on failure keeps the rest for the next attempt.
    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self.live.append(&self.pending) {
            Ok(()) => {
                self.counters.bytes_written += self.pending.len() as u64;
                self.pending.clear();
                if let Some(trouble) = self.trouble.take() {
                    self.report_recovery(&trouble);
                }
            }
            Err(failure) => {
                self.counters.bytes_written += failure.committed as u64;
                self.pending.drain(..failure.committed);
                self.counters.write_errors += 1;
                if self.trouble.is_none() {
                    eprintln!(
                        "tracer: file sink: cannot write {}: {}; holding {} record(s) ({} bytes) in memory (at most {} MiB) and retrying at each flush",
                        self.settings.path.display(),
                        failure.error,
                        count_lines(&self.pending),
                        self.pending.len(),
                        self.backlog_limit >> 20
                    );
                    self.trouble = Some(Trouble {
                        since: Instant::now(),
                        discarded_before: self.counters.discarded,
                    });
                }
            }
        }
    }

    fn report_recovery(&self, trouble: &Trouble) {
        eprintln!(
            "tracer: file sink: {} is writable again after {:.1}s; backlog written, {} record(s) discarded meanwhile",
            self.settings.path.display(),
            trouble.since.elapsed().as_secs_f64(),
            self.counters.discarded - trouble.discarded_before
        );
    }

    fn rotation_failed(&mut self, what: &str, e: &io::Error) {
        self.counters.rotation_errors += 1;
        self.rotation_paused_until = Some(Instant::now() + ROTATION_RETRY);
        eprintln!(
            "tracer: file sink: rotating {}: {what}: {e}; still writing to it, retrying in {}s",
            self.settings.path.display(),
            ROTATION_RETRY.as_secs()
        );
    }
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.trouble.is_some() && self.pending.len() + line.len() > self.backlog_limit {
            self.counters.discarded += 1;
            return Ok(());
        }
        self.pending.extend_from_slice(line);
        if self.trouble.is_none() && self.pending.len() >= WRITE_CHUNK {
            self.write_pending();
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending();
        Ok(())
    }

    /// Never while a backlog waits: the backlog belongs at the end of the current file.
    fn rotation_due(&self) -> bool {
        self.trouble.is_none()
            && self
                .rotation_paused_until
                .is_none_or(|until| Instant::now() >= until)
            && self.policy.due(
                self.live.len() + self.pending.len() as u64,
                self.started,
                SystemTime::now(),
            )
    }

    /// Ends the live file (what is pending goes into it first), renames it to its rotated
    /// name, starts a new one and wakes the compression thread. A failure is reported and
    /// retried later; records keep going to the current file meanwhile.
    fn rotate(&mut self) -> io::Result<()> {
        self.write_pending();
        if self.trouble.is_some() {
            return Ok(());
        }
        if let Err(e) = self.live.finish() {
            self.rotation_failed("syncing it", &e);
            return Ok(());
        }
        let path = &self.settings.path;
        let stamp = Stamp::next(SystemTime::now(), self.last_stamp);
        let rotated = naming::rotated_path(path, stamp);
        if let Err(e) = std::fs::rename(path, &rotated) {
            self.rotation_failed("renaming it", &e);
            return Ok(());
        }
        match LiveFile::open(path, self.settings.mode) {
            Ok(opened) => self.live = opened.file,
            Err(e) => {
                let undone = std::fs::rename(&rotated, path);
                let e = io::Error::other(e);
                match undone {
                    Ok(()) => self.rotation_failed("starting a new file", &e),
                    // The old descriptor still writes to the renamed file: nothing is
                    // lost, the records just land in the rotated file.
                    Err(undo) => self.rotation_failed(
                        &format!(
                            "starting a new file, and renaming {} back ({undo})",
                            rotated.display()
                        ),
                        &e,
                    ),
                }
                return Ok(());
            }
        }
        if let Err(e) = compress::sync_directory(path) {
            eprintln!(
                "tracer: file sink: syncing the directory of {}: {e}",
                path.display()
            );
        }
        self.last_stamp = Some(stamp);
        self.started = SystemTime::now();
        self.rotation_paused_until = None;
        self.counters.rotations += 1;
        self.housekeeper.wake();
        Ok(())
    }

    fn discarded(&self) -> u64 {
        self.counters.discarded
    }

    fn shutdown(&mut self) -> io::Result<()> {
        self.write_pending();
        if !self.pending.is_empty() {
            let lost = count_lines(&self.pending);
            self.counters.discarded += lost;
            eprintln!(
                "tracer: file sink: exiting with {lost} record(s) that could not be written to {}",
                self.settings.path.display()
            );
            self.pending.clear();
        }
        if let Err(e) = self.live.finish() {
            eprintln!(
                "tracer: file sink: syncing {} at exit: {e}",
                self.settings.path.display()
            );
        }
        self.housekeeper.stop();
        Ok(())
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let background = &self.housekeeper.counters;
        vec![
            ("bytes_written", self.counters.bytes_written),
            ("rotations", self.counters.rotations),
            ("rotation_errors", self.counters.rotation_errors),
            ("write_errors", self.counters.write_errors),
            ("discarded", self.counters.discarded),
            ("compressed", background.compressed.load(Ordering::Relaxed)),
            (
                "compress_errors",
                background.compress_errors.load(Ordering::Relaxed),
            ),
            ("deleted", background.deleted.load(Ordering::Relaxed)),
        ]
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests;
