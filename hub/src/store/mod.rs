//! The hub's store: SQLite in the data directory, one writer (ingest) and any number
//! of readers (query, serve) through WAL.
pub mod alerts;
mod columns;
mod retention;
mod schema;
mod write;

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::Context as _;
use rusqlite::{Connection, OpenFlags};

pub use schema::{Dim, NANOS_PER_MINUTE, USERS_BUCKET_MINUTES};
pub use write::{Batch, Entry, client_key};

use crate::verify::StreamState;

const DB_FILE: &str = "hub.sqlite";

/// Where the store lives.
#[derive(Clone, Debug)]
pub struct StoreAt {
    pub data: PathBuf,
}

impl StoreAt {
    fn file(&self) -> PathBuf {
        self.data.join(DB_FILE)
    }

    /// The writer's connection; creates the directory and the schema.
    pub fn open_writer(&self) -> anyhow::Result<Writer> {
        std::fs::create_dir_all(&self.data)
            .with_context(|| format!("creating the data directory {}", self.data.display()))?;
        let conn = Connection::open(self.file())
            .with_context(|| format!("opening {}", self.file().display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A commit survives a crash of the hub (WAL); NORMAL leaves only the last
        // transactions open to a power loss, and those were not acknowledged yet.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Ingest writes several indexes per record: a 64 MiB page cache keeps their
        // upper levels in memory, and checkpointing the WAL every 40 MB instead of 4 MB
        // amortises it (measured: `cargo xtask bench --hub`).
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(schema::SCHEMA)
            .with_context(|| format!("creating the schema in {}", self.file().display()))?;
        schema::upgrade(&conn)
            .with_context(|| format!("upgrading the schema in {}", self.file().display()))?;
        Ok(Writer { conn })
    }

    /// A connection of its own for the alert deliveries: it reads alerts and writes
    /// only the delivery cursors, beside the ingest writer (WAL allows it; SQLite
    /// serialises the short cursor writes with the batches).
    pub fn open_deliveries(&self) -> anyhow::Result<Connection> {
        let conn = Connection::open(self.file())
            .with_context(|| format!("opening {}", self.file().display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        Ok(conn)
    }

    /// A read-only connection; the store must exist.
    pub fn open_reader(&self) -> anyhow::Result<Connection> {
        let file = self.file();
        let conn = Connection::open_with_flags(
            &file,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| {
            format!(
                "opening {} (is --data the hub's data directory? nothing was ingested there yet)",
                file.display()
            )
        })?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(conn)
    }
}

pub struct Writer {
    conn: Connection,
}

impl Writer {
    /// The chain state of every stream, as last committed.
    pub fn streams(&self) -> anyhow::Result<HashMap<String, StreamState>> {
        let mut stmt = self.conn.prepare("SELECT stream, state FROM streams")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut streams = HashMap::new();
        for row in rows {
            let (stream, state) = row?;
            let state = serde_json::from_str(&state)
                .with_context(|| format!("the stored chain state of stream {stream}"))?;
            streams.insert(stream, state);
        }
        Ok(streams)
    }

    /// Refreshes the query planner's statistics, sampling a bounded number of rows per
    /// index: without them SQLite may scan by time where an index on user or client
    /// answers in milliseconds.
    pub fn analyze(&self) -> anyhow::Result<()> {
        self.conn
            .execute_batch("PRAGMA analysis_limit = 1000; ANALYZE;")
            .context("refreshing the planner's statistics")?;
        Ok(())
    }

    /// What the detections learned: (tracker, key, state) of every entity.
    pub fn detect_state(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT tracker, key, state FROM detect_state")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn batch(&mut self) -> anyhow::Result<Batch<'_>> {
        Batch::begin(&mut self.conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch holds the write lock from its start, so a delivery cursor written
    /// meanwhile waits for it; with a deferred start the delivery got in between the
    /// batch's first read and first write, and the batch failed (SQLITE_BUSY_SNAPSHOT).
    #[test]
    fn a_batch_takes_the_write_lock_when_it_begins() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreAt {
            data: dir.path().to_owned(),
        };
        let mut writer = store.open_writer().unwrap();
        let deliveries = store.open_deliveries().unwrap();
        deliveries.busy_timeout(Duration::ZERO).unwrap();
        let batch = writer.batch().unwrap();
        let write = deliveries.execute("DELETE FROM deliveries", []);
        assert!(
            matches!(write, Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy),
            "{write:?}"
        );
        drop(batch);
        deliveries.execute("DELETE FROM deliveries", []).unwrap();
    }

    #[test]
    fn a_store_from_before_resolved_alerts_gets_the_columns_and_keeps_its_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreAt {
            data: dir.path().to_owned(),
        };
        std::fs::create_dir_all(&store.data).unwrap();
        let old = Connection::open(store.file()).unwrap();
        old.execute_batch(
            "CREATE TABLE alerts (id INTEGER PRIMARY KEY, rule TEXT NOT NULL,
                severity INTEGER NOT NULL, entity TEXT NOT NULL, first_ns INTEGER NOT NULL,
                last_ns INTEGER NOT NULL, window_ns INTEGER NOT NULL, count INTEGER NOT NULL,
                summary TEXT NOT NULL, records TEXT NOT NULL, revision INTEGER NOT NULL);
             INSERT INTO alerts VALUES (1, 'chain_gap', 3, 'stream:a', 5, 5, 9, 1, 's', '[]', 1);",
        )
        .unwrap();
        drop(old);
        store.open_writer().unwrap();
        let conn = store.open_reader().unwrap();
        let kept = alerts::get(&conn, 1).unwrap().expect("the alert survives");
        assert_eq!(
            (kept.rule.as_str(), kept.resolved_ns, kept.raised_ns),
            ("chain_gap", None, None)
        );
        // Opening again finds the column there.
        store.open_writer().unwrap();
    }
}
