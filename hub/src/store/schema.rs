//! The SQLite schema. Typed columns for every field people filter or group on, the
//! original line for drill-down and re-verification, a table of them per day (days.rs),
//! and per-minute rollups kept at ingest so top-N and time series over any range never
//! scan raw rows.
use super::days::Part;
pub const SCHEMA: &str = "
-- Each stream's seq range per day table, so a line is found by (stream, seq) in the
-- one or two days that may hold it (days.rs).
CREATE TABLE IF NOT EXISTS record_days (
    stream TEXT NOT NULL,
    tbl TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (stream, tbl)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rollup (
    dim INTEGER NOT NULL,
    key TEXT NOT NULL,
    minute INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    PRIMARY KEY (dim, minute, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_users (
    dim INTEGER NOT NULL,
    key TEXT NOT NULL,
    minute INTEGER NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (dim, key, minute, user)
) WITHOUT ROWID;
-- Every name a user goes by (user.name, the directory's full name) -> the user column,
-- so `--user NAME` is an index lookup on records, not a scan.
CREATE TABLE IF NOT EXISTS user_names (
    name TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (name, user)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS streams (
    stream TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    is_break INTEGER NOT NULL,
    detail TEXT NOT NULL,
    ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_stream ON events (stream, seq);
CREATE TABLE IF NOT EXISTS losses (
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (stream, seq)
);
-- Lines refused because their seq is stored with another hash (the sensor's own line
-- after one forged ahead of it, a new chain over stored seqs, an altered copy), kept
-- byte for byte: a conflict is named in `integrity` and its line is not lost.
CREATE TABLE IF NOT EXISTS conflicts (
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    line BLOB NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (stream, seq, hash)
);
CREATE TABLE IF NOT EXISTS rejects (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL UNIQUE,
    reason TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    ts INTEGER NOT NULL
);

-- One row per rule and entity per grouping window: later findings update it (count,
-- last seen, the first record links), so an attack is one alert, not a storm.
-- `revision` rises with every batch that changes an alert; each delivery target keeps
-- the last revision it delivered.
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    severity INTEGER NOT NULL,
    entity TEXT NOT NULL,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    window_ns INTEGER NOT NULL,
    count INTEGER NOT NULL,
    summary TEXT NOT NULL,
    records TEXT NOT NULL,
    revision INTEGER NOT NULL,
    -- When what raised it was shown to be over (a chain gap that filled); open if NULL.
    resolved_ns INTEGER,
    -- When the hub raised it (its clock; first_ns and last_ns are record times). NULL
    -- for alerts stored before the column existed.
    raised_ns INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_group ON alerts (rule, entity, last_ns);
CREATE INDEX IF NOT EXISTS alerts_last ON alerts (last_ns);
CREATE INDEX IF NOT EXISTS alerts_revision ON alerts (revision);
-- What the detections learned, per rule table and entity, written in the batch that
-- taught it, so a restarted hub resumes exactly where its store is.
CREATE TABLE IF NOT EXISTS detect_state (
    tracker TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (tracker, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    target TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    last_error TEXT
);
-- The dictionaries stored lines are compressed with (store::lines), by zstd's id.
CREATE TABLE IF NOT EXISTS line_dictionaries (
    id INTEGER PRIMARY KEY,
    created_ns INTEGER NOT NULL,
    dict BLOB NOT NULL
);
-- Where a NATS consumer being deleted and created again starts (ingest::nats::Restart).
CREATE TABLE IF NOT EXISTS nats_restarts (
    stream TEXT NOT NULL,
    consumer TEXT NOT NULL,
    stream_created_ns INTEGER NOT NULL,
    start_sequence INTEGER NOT NULL,
    PRIMARY KEY (stream, consumer)
);
-- The message after the last one a hub reading its consumer alone committed, where a
-- consumer an operator deleted is created again (ingest::nats).
CREATE TABLE IF NOT EXISTS nats_committed (
    stream TEXT NOT NULL,
    consumer TEXT NOT NULL,
    stream_created_ns INTEGER NOT NULL,
    start_sequence INTEGER NOT NULL,
    PRIMARY KEY (stream, consumer)
);
-- The messages hubs sharing a consumer (or acknowledging each message) committed, as
-- runs of stream sequences, where a consumer an operator deleted is created again
-- (ingest::nats).
CREATE TABLE IF NOT EXISTS nats_committed_runs (
    stream TEXT NOT NULL,
    consumer TEXT NOT NULL,
    stream_created_ns INTEGER NOT NULL,
    first_sequence INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL,
    PRIMARY KEY (stream, consumer, first_sequence)
);
";

/// One day's records (days.rs): the table and its indexes, named after it.
pub fn records_table(t: &str) -> String {
    format!(
        "
CREATE TABLE IF NOT EXISTS {t} (
    id INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    method TEXT,
    host TEXT,
    path TEXT,
    template TEXT,
    status INTEGER,
    req_bytes INTEGER,
    resp_bytes INTEGER,
    duration INTEGER,
    client TEXT,
    client_key BLOB,
    user TEXT,
    user_name TEXT,
    auth TEXT,
    credential TEXT,
    process TEXT,
    pid INTEGER,
    user_agent TEXT,
    outcome TEXT,
    asset TEXT,
    sensitivity TEXT,
    country TEXT,
    asn INTEGER,
    as_org TEXT,
    full_name TEXT,
    department TEXT,
    user_status TEXT,
    hash BLOB NOT NULL,
    prev_hash BLOB NOT NULL,
    link TEXT NOT NULL,
    checkpoint INTEGER,
    enrichment TEXT NOT NULL,
    line BLOB NOT NULL,
    UNIQUE (stream, seq)
);
-- Time, and the kind beside it: lists and their counts filter on kind = 'access', which
-- this index answers without reading the rows (a count over 100,000 records: 100 ms
-- scanning the table, 8 ms on the index).
CREATE INDEX IF NOT EXISTS {t}_ts_kind ON {t} (ts, kind);
CREATE INDEX IF NOT EXISTS {t}_user_ts ON {t} (user, ts) WHERE user IS NOT NULL;
CREATE INDEX IF NOT EXISTS {t}_credential_ts ON {t} (credential, ts) WHERE credential IS NOT NULL;
CREATE INDEX IF NOT EXISTS {t}_client_ts ON {t} (client_key, ts);
CREATE INDEX IF NOT EXISTS {t}_asset_ts ON {t} (asset, ts) WHERE asset IS NOT NULL;
CREATE INDEX IF NOT EXISTS {t}_template_ts ON {t} (template, ts);
"
    )
}

/// Columns added since stores were first created: `CREATE TABLE IF NOT EXISTS` leaves an
/// older table as it was.
pub fn upgrade(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    for column in ["resolved_ns", "raised_ns"] {
        let present: i64 = conn.query_row(
            "SELECT count(*) FROM pragma_table_info('alerts') WHERE name = ?1",
            [column],
            |r| r.get(0),
        )?;
        if present == 0 {
            conn.execute_batch(&format!("ALTER TABLE alerts ADD COLUMN {column} INTEGER"))?;
        }
    }
    Ok(())
}

/// The store was made before records were kept by day: they are all in `records`.
pub fn undivided(conn: &rusqlite::Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'records'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )
}

/// Moves the records of a store made before they were kept by day, all in one table
/// `records`, into day tables, in one transaction: a crash leaves them where they were.
pub fn divide_records(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    if !undivided(conn)? {
        return Ok(());
    }
    let lines: i64 = conn.query_row("SELECT count(*) FROM records", [], |r| r.get(0))?;
    eprintln!("tracer-hub: moving {lines} stored line(s) into a table per day, once");
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let moved = (|| {
        let mut next: Option<i64> =
            conn.query_row("SELECT min(ts) FROM records", [], |r| r.get(0))?;
        while let Some(ts) = next {
            let part = Part::of(ts);
            let (start, end) = part.span();
            let table = part.table();
            conn.execute_batch(&records_table(&table))?;
            conn.execute(
                &format!("INSERT INTO {table} SELECT * FROM records WHERE ts >= ?1 AND ts < ?2"),
                [start, end],
            )?;
            conn.execute(
                &format!(
                    "INSERT INTO record_days (stream, tbl, first_seq, last_seq)
                     SELECT stream, ?1, min(seq), max(seq) FROM {table} GROUP BY stream"
                ),
                [&table],
            )?;
            next = if end == i64::MAX {
                None
            } else {
                conn.query_row("SELECT min(ts) FROM records WHERE ts >= ?1", [end], |r| {
                    r.get(0)
                })?
            };
        }
        conn.execute_batch("DROP TABLE records")
    })();
    match moved {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Rollup buckets are named by minutes since the Unix epoch.
pub const NANOS_PER_MINUTE: i64 = 60_000_000_000;

/// What a rollup row counts by; ordered as its stored number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dim {
    All = 0,
    Template = 1,
    Asset = 2,
    User = 3,
    Client = 4,
    Credential = 5,
    StatusClass = 6,
    Stream = 7,
}

impl Dim {
    /// Minutes per rollup bucket. Dimensions with thousands of keys (users, clients,
    /// credentials) count per hour, so a busy minute does not write a row per record;
    /// the rest count per minute for the time series. Distinct users are hourly.
    pub fn bucket_minutes(self) -> i64 {
        match self {
            Dim::User | Dim::Client | Dim::Credential => 60,
            Dim::All | Dim::Template | Dim::Asset | Dim::StatusClass | Dim::Stream => 1,
        }
    }

    /// The bucket holding `minute`, named by its first minute.
    pub fn bucket(self, minute: i64) -> i64 {
        minute - minute.rem_euclid(self.bucket_minutes())
    }
}

/// Distinct users are counted per hour (`rollup_users`): exact for whole hours, the
/// first and last hour of a range count whole.
pub const USERS_BUCKET_MINUTES: i64 = 60;
