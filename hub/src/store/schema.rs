//! The SQLite schema. Typed columns for every field people filter or group on, the
//! original line for drill-down and re-verification, and per-minute rollups kept at
//! ingest so top-N and time series over any range never scan raw rows.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
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
-- scanning the table, 8 ms on the index). Stores made before it had (ts) alone.
CREATE INDEX IF NOT EXISTS records_ts_kind ON records (ts, kind);
DROP INDEX IF EXISTS records_ts;
CREATE INDEX IF NOT EXISTS records_user_ts ON records (user, ts) WHERE user IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_credential_ts ON records (credential, ts) WHERE credential IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_client_ts ON records (client_key, ts);
CREATE INDEX IF NOT EXISTS records_asset_ts ON records (asset, ts) WHERE asset IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_template_ts ON records (template, ts);

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
";

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

/// Rollup buckets are named by minutes since the Unix epoch.
pub const NANOS_PER_MINUTE: i64 = 60_000_000_000;

/// What a rollup row counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
