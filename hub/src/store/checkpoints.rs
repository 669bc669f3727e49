//! SQLite's WAL checkpoints on a thread of their own. A checkpoint copies what the WAL
//! holds into the database file and syncs it; run by the writer at a commit, it was
//! time ingest waited on (`import` of 200,000 records: about 8% faster without it).
//! On a connection of its own, a passive checkpoint runs beside the writer's next
//! batch, and the writer's next commit starts the WAL over from its beginning.
use std::{
    path::Path,
    sync::mpsc::{self, RecvTimeoutError},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;
use rusqlite::Connection;

/// How often the thread checkpoints: a batch of 50,000 records commits every 1-2 s.
const EVERY: Duration = Duration::from_millis(250);

/// Pages of WAL past which the writer checkpoints at a commit itself, should this
/// thread fall behind (400 MiB with 4 KiB pages), so the WAL stays bounded.
pub const WRITER_FALLBACK_PAGES: i64 = 100_000;

/// The checkpointing thread; stopped and joined when dropped, before the writer's
/// connection closes (the last connection to close checkpoints what is left).
pub struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(file: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(file)
            .with_context(|| format!("opening {} to checkpoint it", file.display()))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let name = file.display().to_string();
        let thread = std::thread::Builder::new()
            .name("checkpoints".into())
            .spawn(move || {
                let mut last_error = String::new();
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    // PASSIVE: copies what no reader still needs, never waits for one.
                    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    match result {
                        Ok(()) => last_error.clear(),
                        Err(e) => {
                            let message = e.to_string();
                            if message != last_error {
                                eprintln!("tracer-hub: checkpointing the WAL of {name}: {message}");
                                last_error = message;
                            }
                        }
                    }
                }
            })
            .context("starting the checkpoint thread")?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
