//! The hub's store: SQLite in the data directory (one writer, ingest, and any number
//! of readers through WAL), or PostgreSQL for a fleet. Both hold the same schema and
//! answer the same statements through [`db::Db`].
pub mod alerts;
mod columns;
pub mod days;
pub mod db;
mod feed;
pub mod lines;
mod pg_client;
mod pg_tls;
mod postgres;
mod readers;
mod retention;
mod rollups;
mod schema;
mod window;
mod write;

use std::{collections::HashMap, fmt, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use rusqlite::{Connection, OpenFlags};

pub use columns::{Derived, client_key};
pub use db::{Db, Dialect};
pub use pg_client::Refused;
pub use pg_tls::PgTls;
pub use readers::Readers;
pub use rollups::{RollupRows, Rollups};
pub use schema::{Dim, NANOS_PER_MINUTE, USERS_BUCKET_MINUTES};
use write::Parts;
pub use write::{Batch, Entry, Learned};

use crate::verify::StreamState;
use db::args;

const DB_FILE: &str = "hub.sqlite";

/// Where the store lives.
#[derive(Clone)]
pub enum StoreAt {
    /// SQLite in the hub's data directory.
    Sqlite { data: PathBuf },
    /// A PostgreSQL database, by connection URL, and how its connections are encrypted.
    Postgres { url: String, tls: PgTls },
}

/// Shows where, never the PostgreSQL URL's password.
impl fmt::Debug for StoreAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for StoreAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreAt::Sqlite { data } => write!(f, "{}", data.join(DB_FILE).display()),
            StoreAt::Postgres { url, .. } => write!(f, "postgres {}", db::redact(url)),
        }
    }
}

impl StoreAt {
    /// The writer's connection; creates the directory and the schema.
    pub fn open_writer(&self) -> anyhow::Result<Writer> {
        let (db, known) = match self {
            StoreAt::Sqlite { data } => {
                let mut db = sqlite_writer(data)?;
                let known = days::sqlite_parts(&mut db)?.into_iter().collect();
                (db, known)
            }
            StoreAt::Postgres { url, tls } => {
                let mut db = Db::postgres(url, tls)?;
                postgres::create(&mut db)
                    .with_context(|| format!("creating the schema in {self}"))?;
                let known = postgres::partitions(&mut db)?;
                (db, known)
            }
        };
        let mut db = db;
        let dictionary = lines::newest(&mut db)
            .with_context(|| format!("reading the stored lines' dictionary in {self}"))?;
        Ok(Writer {
            at: self.clone(),
            db,
            parts: Parts::new(known),
            dictionary,
            reconnects: 0,
        })
    }

    /// A connection of its own for the alert deliveries: it reads alerts and writes
    /// only the delivery cursors, beside the ingest writer (WAL allows it; SQLite
    /// serialises the short cursor writes with the batches).
    pub fn open_deliveries(&self) -> anyhow::Result<Db> {
        match self {
            StoreAt::Sqlite { data } => {
                let file = data.join(DB_FILE);
                let conn = Connection::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                conn.busy_timeout(Duration::from_secs(30))?;
                Ok(Db::sqlite(conn))
            }
            StoreAt::Postgres { url, tls } => Db::postgres(url, tls),
        }
    }

    /// A read-only connection; the store must exist.
    pub fn open_reader(&self) -> anyhow::Result<Db> {
        match self {
            StoreAt::Sqlite { data } => {
                let file = data.join(DB_FILE);
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
                anyhow::ensure!(
                    !schema::undivided(&conn)?,
                    "{} was made by an older tracer-hub, with all records in one table; \
                     `tracer-hub serve` or `import` on it moves them into a table per day \
                     (once), then questions can read it",
                    file.display()
                );
                Ok(Db::sqlite(conn))
            }
            StoreAt::Postgres { url, tls } => {
                let mut db = Db::postgres(url, tls)?;
                // Readers never write; a statement that tried would fail here.
                db.batch("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")?;
                Ok(db)
            }
        }
    }
}

fn sqlite_writer(data: &std::path::Path) -> anyhow::Result<Db> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating the data directory {}", data.display()))?;
    let file = data.join(DB_FILE);
    let conn = Connection::open(&file).with_context(|| format!("opening {}", file.display()))?;
    // SQLite's default 4 KiB pages. 16 KiB pages took records in faster (import of
    // 200,000 records 10.8 s -> 9.3 s), but each row a question reads costs a whole
    // page: one template's 4,155 records read in 28 ms with 4 KiB pages, 37 ms with
    // 8 KiB and 45 ms with 16 KiB. The questions matter more.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // A batch is acknowledged to JetStream once its commit returns, and the broker
    // then forgets it: the commit must be on disk by then. FULL syncs the log at
    // every commit; NORMAL synced it only at checkpoints, so a power loss or kernel
    // crash could take batches already acknowledged, and nothing would send them again.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Ingest writes several indexes per record: a 64 MiB page cache keeps their
    // upper levels in memory, and checkpointing the WAL every 40 MB instead of 4 MB
    // amortises it (measured: `cargo xtask bench --hub`). The writer checkpoints at
    // its commits: a thread of its own was tried three times (docs/hub.md), and the
    // log then never starts over, since SQLite restarts it only for a transaction that
    // begins with every frame copied, and the next batch begins at once.
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(schema::SCHEMA)
        .with_context(|| format!("creating the schema in {}", file.display()))?;
    // Always there, so a question over no day at all still has a table to read.
    conn.execute_batch(&schema::records_table(&days::Part::Early.table()))?;
    schema::upgrade(&conn)
        .with_context(|| format!("upgrading the schema in {}", file.display()))?;
    schema::divide_records(&conn)
        .with_context(|| format!("moving the records of {} into day tables", file.display()))?;
    Ok(Db::sqlite(conn))
}

/// A point in a JetStream stream the store keeps per consumer (`ingest::nats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatsPoint {
    /// Where a consumer being deleted and created again starts, until it exists.
    Restart,
    /// The message after the last one a hub reading its consumer alone committed.
    Committed,
}

impl NatsPoint {
    fn table(self) -> &'static str {
        match self {
            NatsPoint::Restart => "nats_restarts",
            NatsPoint::Committed => "nats_committed",
        }
    }
}

pub struct Writer {
    at: StoreAt,
    db: Db,
    /// The day tables or partitions of the records that exist.
    parts: Parts,
    /// What lines are compressed with (`lines`); none until enough came to train one.
    dictionary: Option<Arc<lines::Dictionary>>,
    /// Connections made again since this writer was opened: a session's locks went
    /// with each.
    reconnects: u64,
}

impl Writer {
    /// The connection, made again if the server closed it (a PostgreSQL restart):
    /// the failed batch comes again and finds the store as it was committed.
    fn db(&mut self) -> anyhow::Result<&mut Db> {
        if self.db.is_closed() {
            eprintln!(
                "tracer-hub: the connection to {} closed; connecting again",
                self.at
            );
            let reconnects = self.reconnects + 1;
            *self = self.at.open_writer()?;
            self.reconnects = reconnects;
        }
        Ok(&mut self.db)
    }

    /// The chain state of every stream, as last committed.
    pub fn streams(&mut self) -> anyhow::Result<HashMap<String, StreamState>> {
        let rows = self
            .db()?
            .query("SELECT stream, state FROM streams", args![])?;
        let mut streams = HashMap::new();
        for row in rows {
            let (stream, state): (String, String) = (row.get(0)?, row.get(1)?);
            let state = serde_json::from_str(&state)
                .with_context(|| format!("the stored chain state of stream {stream}"))?;
            streams.insert(stream, state);
        }
        Ok(streams)
    }

    /// Refreshes the query planner's statistics. SQLite samples a bounded number of
    /// rows per index: without them it may scan by time where an index on user or
    /// client answers in milliseconds.
    pub fn analyze(&mut self) -> anyhow::Result<()> {
        let sql = match self.db.dialect() {
            Dialect::Sqlite => "PRAGMA analysis_limit = 1000; ANALYZE;",
            Dialect::Postgres => postgres::ANALYZE,
        };
        self.db()?
            .batch(sql)
            .context("refreshing the planner's statistics")?;
        Ok(())
    }

    /// What the detections learned: (tracker, key, state) of every entity.
    pub fn detect_state(&mut self) -> anyhow::Result<Vec<(String, String, String)>> {
        self.db()?
            .query("SELECT tracker, key, state FROM detect_state", args![])?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect()
    }

    /// A NATS consumer restart begun and not finished: (stream created, start sequence).
    /// The `point` kept for a JetStream consumer: (the stream's creation time, the
    /// start sequence).
    pub fn nats_point(
        &mut self,
        point: NatsPoint,
        stream: &str,
        consumer: &str,
    ) -> anyhow::Result<Option<(i64, u64)>> {
        let row = self.db()?.query_opt(
            &format!(
                "SELECT stream_created_ns, start_sequence FROM {}
                 WHERE stream = ?1 AND consumer = ?2",
                point.table()
            ),
            args![stream, consumer],
        )?;
        row.map(|r| Ok((r.get(0)?, r.get::<i64>(1)? as u64)))
            .transpose()
    }

    pub fn save_nats_point(
        &mut self,
        point: NatsPoint,
        stream: &str,
        consumer: &str,
        stream_created_ns: i64,
        start_sequence: u64,
    ) -> anyhow::Result<()> {
        self.db()?.execute(
            &format!(
                "INSERT INTO {} (stream, consumer, stream_created_ns, start_sequence)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (stream, consumer) DO UPDATE SET
                    stream_created_ns = excluded.stream_created_ns,
                    start_sequence = excluded.start_sequence",
                point.table()
            ),
            args![stream, consumer, stream_created_ns, start_sequence as i64],
        )?;
        Ok(())
    }

    pub fn clear_nats_point(
        &mut self,
        point: NatsPoint,
        stream: &str,
        consumer: &str,
    ) -> anyhow::Result<()> {
        self.db()?.execute(
            &format!(
                "DELETE FROM {} WHERE stream = ?1 AND consumer = ?2",
                point.table()
            ),
            args![stream, consumer],
        )?;
        Ok(())
    }

    /// The runs of stream sequences (first, last) committed from `consumer` of the
    /// stream created at `stream_created_ns`, in order.
    pub fn committed_runs(
        &mut self,
        stream: &str,
        consumer: &str,
        stream_created_ns: i64,
    ) -> anyhow::Result<Vec<(u64, u64)>> {
        runs(self.db()?, stream, consumer, stream_created_ns)
    }

    /// Adds the stream sequences of a committed batch to the runs kept for `consumer`,
    /// and forgets those of an earlier stream of the same name. Hubs sharing the
    /// consumer add theirs at once: PostgreSQL takes a lock per consumer for the
    /// read, merge and write.
    pub fn save_committed(
        &mut self,
        stream: &str,
        consumer: &str,
        stream_created_ns: i64,
        sequences: &[u64],
    ) -> anyhow::Result<()> {
        let mut tx = self.db()?.begin()?;
        if tx.dialect() == Dialect::Postgres {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))",
                args![format!("nats_committed_runs {stream} {consumer}")],
            )?;
        }
        let kept = runs(&mut tx, stream, consumer, stream_created_ns)?;
        let merged = coalesce(
            kept.iter()
                .copied()
                .chain(sequences.iter().map(|&s| (s, s))),
        );
        if merged != kept {
            tx.execute(
                "DELETE FROM nats_committed_runs WHERE stream = ?1 AND consumer = ?2",
                args![stream, consumer],
            )?;
            for (first, last) in merged {
                tx.execute(
                    "INSERT INTO nats_committed_runs
                        (stream, consumer, stream_created_ns, first_sequence, last_sequence)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    args![
                        stream,
                        consumer,
                        stream_created_ns,
                        first as i64,
                        last as i64
                    ],
                )?;
            }
        }
        tx.commit()
    }

    pub fn dictionary(&self) -> Option<Arc<lines::Dictionary>> {
        self.dictionary.clone()
    }

    /// Compresses lines with `dictionary` from now on: a batch that saved it committed.
    pub fn adopt(&mut self, dictionary: Arc<lines::Dictionary>) {
        self.dictionary = Some(dictionary);
    }

    pub fn batch(&mut self) -> anyhow::Result<Batch<'_>> {
        self.db()?;
        Batch::begin(&mut self.db, &mut self.parts)
    }
}

fn runs(
    db: &mut Db,
    stream: &str,
    consumer: &str,
    stream_created_ns: i64,
) -> anyhow::Result<Vec<(u64, u64)>> {
    db.query(
        "SELECT first_sequence, last_sequence FROM nats_committed_runs
         WHERE stream = ?1 AND consumer = ?2 AND stream_created_ns = ?3
         ORDER BY first_sequence",
        args![stream, consumer, stream_created_ns],
    )?
    .iter()
    .map(|r| Ok((r.get::<i64>(0)? as u64, r.get::<i64>(1)? as u64)))
    .collect()
}

/// `runs` (first, last) in order, adjacent and overlapping ones joined: what is left
/// apart is a gap of messages not committed yet (another hub's batch in flight, or
/// one that failed and comes again), so the kept rows stay few.
fn coalesce(runs: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut runs: Vec<_> = runs.into_iter().collect();
    runs.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for (first, last) in runs {
        match merged.last_mut() {
            Some(run) if first <= run.1.saturating_add(1) => run.1 = run.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SQLite store in a new temp dir, which lives as long as the returned guard.
    fn temp_store() -> (tempfile::TempDir, StoreAt) {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreAt::Sqlite {
            data: dir.path().to_owned(),
        };
        (dir, store)
    }

    /// A batch holds the write lock from its start, so a delivery cursor written
    /// meanwhile waits for it; with a deferred start the delivery got in between the
    /// batch's first read and first write, and the batch failed (SQLITE_BUSY_SNAPSHOT).
    #[test]
    fn a_batch_takes_the_write_lock_when_it_begins() {
        let (dir, store) = temp_store();
        let mut writer = store.open_writer().unwrap();
        let deliveries = Connection::open(dir.path().join(DB_FILE)).unwrap();
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

    /// A batch is acknowledged to JetStream when its commit returns, so the commit
    /// must sync the log: `synchronous` FULL (2), not NORMAL (1).
    #[test]
    fn a_commit_is_synced_before_it_returns() {
        let (_dir, store) = temp_store();
        let mut writer = store.open_writer().unwrap();
        let level: i64 = writer
            .db()
            .unwrap()
            .query_row("PRAGMA synchronous", args![])
            .unwrap()
            .get(0)
            .unwrap();
        assert_eq!(level, 2);
    }

    #[test]
    fn committed_messages_are_kept_as_few_runs_of_their_stream_only() {
        assert_eq!(
            coalesce([
                (7, 9),
                (1, 3),
                (4, 4),
                (12, 12),
                (8, 10),
                (u64::MAX, u64::MAX)
            ]),
            [(1, 4), (7, 10), (12, 12), (u64::MAX, u64::MAX)]
        );
        let (_dir, store) = temp_store();
        let mut writer = store.open_writer().unwrap();
        // Two hubs' batches, one not committed yet (7..=9).
        writer
            .save_committed("S", "c", 5, &[1, 2, 3, 4, 5, 6])
            .unwrap();
        writer.save_committed("S", "c", 5, &[12, 10, 11]).unwrap();
        assert_eq!(
            writer.committed_runs("S", "c", 5).unwrap(),
            [(1, 6), (10, 12)]
        );
        writer.save_committed("S", "c", 5, &[8, 9, 7]).unwrap();
        assert_eq!(writer.committed_runs("S", "c", 5).unwrap(), [(1, 12)]);
        // Another consumer, and a stream of the same name created again, begin apart.
        assert_eq!(writer.committed_runs("S", "other", 5).unwrap(), []);
        writer.save_committed("S", "c", 9, &[1]).unwrap();
        assert_eq!(writer.committed_runs("S", "c", 9).unwrap(), [(1, 1)]);
        assert_eq!(writer.committed_runs("S", "c", 5).unwrap(), []);
    }

    #[test]
    fn a_store_from_before_resolved_alerts_gets_the_columns_and_keeps_its_alerts() {
        let (dir, store) = temp_store();
        std::fs::create_dir_all(dir.path()).unwrap();
        let old = Connection::open(dir.path().join(DB_FILE)).unwrap();
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
        let mut conn = store.open_reader().unwrap();
        let kept = alerts::get(&mut conn, 1)
            .unwrap()
            .expect("the alert survives");
        assert_eq!(
            (kept.rule.as_str(), kept.resolved_ns, kept.raised_ns),
            ("chain_gap", None, None)
        );
        // Opening again finds the column there.
        store.open_writer().unwrap();
    }

    /// A store from before records were kept by day: at open, its one `records` table
    /// becomes a table per day, and every line is found where it went.
    #[test]
    fn a_store_with_one_records_table_is_divided_by_day_when_opened() {
        let (dir, store) = temp_store();
        std::fs::create_dir_all(dir.path()).unwrap();
        let old = Connection::open(dir.path().join(DB_FILE)).unwrap();
        old.execute_batch(&schema::records_table("records"))
            .unwrap();
        let day = 20_790 * days::NANOS_PER_DAY;
        for (seq, ts) in [
            (1, 7),
            (2, day),
            (3, day + 5),
            (4, day + days::NANOS_PER_DAY),
        ] {
            old.execute(
                "INSERT INTO records (stream, seq, kind, ts, hash, prev_hash, link, enrichment, line)
                 VALUES ('web1', ?1, 'access', ?2, x'00', x'00', 'linked', '{}', x'7b7d')",
                [seq, ts],
            )
            .unwrap();
        }
        drop(old);
        // Questions wait for a writer to divide it, and say so.
        let early = store.open_reader().unwrap_err();
        assert!(
            format!("{early:#}").contains("serve` or `import`"),
            "{early:#}"
        );
        store.open_writer().unwrap();
        let mut conn = store.open_reader().unwrap();
        assert_eq!(
            days::tables(&mut conn, None, None).unwrap(),
            ["records_d20791", "records_d20790", "records_early"]
        );
        let found: Vec<Vec<String>> = (1..=4)
            .map(|seq| days::locate(&mut conn, "web1", (seq, seq)).unwrap())
            .collect();
        assert_eq!(
            found,
            [
                vec!["records_early"],
                vec!["records_d20790"],
                vec!["records_d20790"],
                vec!["records_d20791"]
            ]
        );
        let undivided = conn
            .query_opt(
                "SELECT name FROM sqlite_schema WHERE name = 'records'",
                args![],
            )
            .unwrap();
        assert!(undivided.is_none());
        drop(conn);
        // Opening it again finds nothing left to divide.
        store.open_writer().unwrap();
    }

    /// Findings held in a batch group as they would one statement each: within the
    /// window into one alert (count, bounds, severity, summary, links), beyond it into
    /// a new one, and across batches into what the store holds.
    #[test]
    fn findings_held_in_a_batch_group_as_the_store_would() {
        use alerts::{AlertFilter, NewAlert, Severity};
        let (_dir, store) = temp_store();
        let mut writer = store.open_writer().unwrap();
        let finding = |ts_ns: i64, severity: Severity, summary: &'static str, seq: u64| NewAlert {
            rule: "burst",
            severity,
            entity: "user:alice",
            ts_ns,
            window_ns: 10,
            summary,
            record: Some(("s", seq)),
        };
        let mut batch = writer.batch().unwrap();
        let first = batch.alert(&finding(100, Severity::Low, "a", 1)).unwrap();
        assert_eq!(
            batch.alert(&finding(95, Severity::High, "b", 2)).unwrap(),
            first
        );
        assert_eq!(
            batch.alert(&finding(108, Severity::Low, "c", 2)).unwrap(),
            first
        );
        let second = batch
            .alert(&finding(500, Severity::Medium, "d", 3))
            .unwrap();
        assert_ne!(second, first);
        batch.commit(std::iter::empty()).unwrap();
        let mut batch = writer.batch().unwrap();
        assert_eq!(
            batch.alert(&finding(505, Severity::Low, "e", 4)).unwrap(),
            second
        );
        batch.commit(std::iter::empty()).unwrap();

        let mut conn = store.open_reader().unwrap();
        let filter = AlertFilter {
            limit: 10,
            ..AlertFilter::default()
        };
        let mut stored = alerts::list(&mut conn, &filter).unwrap();
        stored.sort_by_key(|a| a.id);
        let shape: Vec<_> = stored
            .iter()
            .map(|a| {
                (
                    a.count,
                    a.first_ns,
                    a.last_ns,
                    a.severity,
                    a.summary.as_str(),
                    a.records.iter().map(|r| r.1).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (3, 95, 108, Severity::High, "c", vec![1, 2]),
                (2, 500, 505, Severity::Medium, "e", vec![3, 4]),
            ]
        );
    }
}
