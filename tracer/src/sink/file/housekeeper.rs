//! A background thread that compresses rotated files and applies retention, so a large
//! file never stalls the tracing thread. Each pass works from the directory listing, not
//! from a queue: the first pass at start finishes whatever a crash left (a rotated file
//! not yet compressed, a half-written `.tmp`, a plain file whose compressed copy was
//! already complete), and a pass that failed (a full disk) is redone after the next
//! rotation.
use std::{
    fs, io,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
    thread::JoinHandle,
};

use super::{
    compress::{compress, sync_directory},
    naming::{self, Kind, Rotated},
    retention,
    settings::FileSettings,
};

/// What the housekeeper did, read by the tracing thread for the summary.
#[derive(Debug, Default)]
pub struct Counters {
    pub compressed: AtomicU64,
    pub compress_errors: AtomicU64,
    pub deleted: AtomicU64,
}

pub struct Housekeeper {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<Counters>,
}

impl Housekeeper {
    /// Starts the thread and runs a first pass.
    pub fn start(settings: &FileSettings) -> io::Result<Self> {
        // One slot: wake-ups while a pass is due anyway are merged into it.
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let counters = Arc::new(Counters::default());
        let shared = Arc::clone(&counters);
        let settings = settings.clone();
        let thread = std::thread::Builder::new()
            .name("tracer-files".to_owned())
            .spawn(move || {
                while woken.recv().is_ok() {
                    pass(&settings, &shared);
                }
            })?;
        let housekeeper = Self {
            wake: Some(wake),
            thread: Some(thread),
            counters,
        };
        housekeeper.wake();
        Ok(housekeeper)
    }

    /// Asks for a pass (after a rotation).
    pub fn wake(&self) {
        if let Some(wake) = &self.wake {
            match wake.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    eprintln!(
                        "tracer: file sink: the compression thread is gone; rotated files stay as they are"
                    );
                }
            }
        }
    }

    /// Lets the pending pass finish, then ends the thread.
    pub fn stop(&mut self) {
        self.wake.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("tracer: file sink: the compression thread panicked");
        }
    }
}

impl Drop for Housekeeper {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pass(settings: &FileSettings, counters: &Counters) {
    let live = &settings.path;
    let rotated = match naming::list(live) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "tracer: file sink: listing rotated files next to {}: {e}",
                live.display()
            );
            return;
        }
    };
    let mut removed_leftovers = false;
    for (index, file) in rotated.iter().enumerate() {
        match file.kind {
            Kind::Partial => {
                remove(&file.path, "an unfinished compression");
                removed_leftovers = true;
            }
            Kind::Plain if compressed_twin(&rotated, index) => {
                // The crash came after the compressed copy was complete.
                remove(&file.path, "a rotated file already compressed");
                removed_leftovers = true;
            }
            Kind::Plain => match compress(&file.path, settings.compress, settings.mode) {
                Ok(true) => {
                    counters.compressed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {}
                Err(e) => {
                    counters.compress_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "tracer: file sink: compressing {}: {e}; kept uncompressed, retried after the next rotation",
                        file.path.display()
                    );
                }
            },
            Kind::Compressed(_) => {}
        }
    }
    let rotated = match naming::list(live) {
        Ok(r) => r,
        Err(_) => return,
    };
    let expired: Vec<PathBuf> = retention::expired(&rotated, settings.keep)
        .into_iter()
        .map(|r| r.path.clone())
        .collect();
    for path in &expired {
        if remove(path, "a rotated file beyond --keep") {
            counters.deleted.fetch_add(1, Ordering::Relaxed);
        }
    }
    if (removed_leftovers || !expired.is_empty())
        && let Err(e) = sync_directory(live)
    {
        eprintln!(
            "tracer: file sink: syncing the directory of {}: {e}",
            live.display()
        );
    }
}

fn compressed_twin(rotated: &[Rotated], index: usize) -> bool {
    let stamp = rotated[index].stamp;
    rotated[index + 1..]
        .iter()
        .take_while(|r| r.stamp == stamp)
        .any(|r| matches!(r.kind, Kind::Compressed(_)))
}

fn remove(path: &std::path::Path, what: &str) -> bool {
    match fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            eprintln!(
                "tracer: file sink: removing {what} ({}): {e}",
                path.display()
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::sink::file::{settings::Compression, tests::names};

    #[test]
    fn first_pass_finishes_what_a_crash_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = FileSettings::new(dir.path().join("a.jsonl"));
        settings.compress = Compression::Zstd;
        for (name, body) in [
            ("a.jsonl", "live\n"),
            // compressed copy complete, plain not yet removed
            ("a.jsonl.20261122T000000.000Z", "one\n"),
            ("a.jsonl.20261122T000000.000Z.zst", ""),
            // compression interrupted
            ("a.jsonl.20261122T010000.000Z", "two\n"),
            ("a.jsonl.20261122T010000.000Z.zst.tmp", "garbage"),
            // rotated, never compressed
            ("a.jsonl.20261122T020000.000Z", "three\n"),
            ("unrelated.txt", "x"),
        ] {
            fs::write(dir.path().join(name), body).unwrap();
        }
        let mut keeper = Housekeeper::start(&settings).unwrap();
        keeper.stop();
        assert_eq!(
            names(dir.path()),
            [
                "a.jsonl",
                "a.jsonl.20261122T000000.000Z.zst",
                "a.jsonl.20261122T010000.000Z.zst",
                "a.jsonl.20261122T020000.000Z.zst",
                "unrelated.txt"
            ]
        );
        let two = fs::read(dir.path().join("a.jsonl.20261122T010000.000Z.zst")).unwrap();
        assert_eq!(zstd::decode_all(&two[..]).unwrap(), b"two\n");
        assert_eq!(keeper.counters.compressed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn retention_keeps_the_newest_and_the_live_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = FileSettings::new(dir.path().join("a.jsonl"));
        settings.compress = Compression::None;
        settings.keep = NonZeroU32::new(2);
        for name in [
            "a.jsonl",
            "a.jsonl.20261122T000000.000Z",
            "a.jsonl.20261122T010000.000Z.gz",
            "a.jsonl.20261122T020000.000Z",
            "a.jsonl.20261122T030000.000Z",
        ] {
            fs::write(dir.path().join(name), "{}\n").unwrap();
        }
        let mut keeper = Housekeeper::start(&settings).unwrap();
        keeper.stop();
        assert_eq!(
            names(dir.path()),
            [
                "a.jsonl",
                "a.jsonl.20261122T020000.000Z",
                "a.jsonl.20261122T030000.000Z"
            ]
        );
        assert_eq!(keeper.counters.deleted.load(Ordering::Relaxed), 2);
    }
}
