//! One ingest batch as one transaction: records, their integrity events, coverage by
//! checkpoints, rejected lines, rollups and the chain state commit together, so a
//! crash leaves the store at a batch boundary and redelivery finds what is stored.
use std::net::IpAddr;

use hashbrown::{HashMap, HashSet};

use sha2::{Digest as _, Sha256};
use tracer_audit::{Kind, chain::Hash};

use super::{
    alerts::{self, NewAlert},
    columns::{added_fields, columns},
    db::{Db, Dialect, SqlType, ToArg, Tx, Value, args, sqlite_insert},
    postgres,
    rollups::RollupRows,
};
use crate::{
    enrich::Enrichment,
    ingest::{Origin, record::Fields},
    verify::{Event, Stored, StreamState, Verdict},
    when::now_ns,
};

/// What the detections learned, as rows of `detect_state`: (tracker, entity, its state
/// as JSON, or `None` to forget it).
pub type Learned = Vec<(String, String, Option<String>)>;

/// A verified, enriched line ready to store.
pub struct Entry<'a> {
    pub fields: &'a Fields,
    pub verdict: &'a Verdict,
    pub enrichment: &'a Enrichment,
    pub line: &'a [u8],
}

/// The records table's columns as ingest writes them.
const RECORD_COLUMNS: [(&str, SqlType); 35] = {
    use SqlType::{Blob, Integer as Int, Text};
    [
        ("stream", Text),
        ("seq", Int),
        ("kind", Text),
        ("ts", Int),
        ("method", Text),
        ("host", Text),
        ("path", Text),
        ("template", Text),
        ("status", Int),
        ("req_bytes", Int),
        ("resp_bytes", Int),
        ("duration", Int),
        ("client", Text),
        ("client_key", Blob),
        ("user", Text),
        ("user_name", Text),
        ("auth", Text),
        ("credential", Text),
        ("process", Text),
        ("pid", Int),
        ("user_agent", Text),
        ("outcome", Text),
        ("asset", Text),
        ("sensitivity", Text),
        ("country", Text),
        ("asn", Int),
        ("as_org", Text),
        ("full_name", Text),
        ("department", Text),
        ("user_status", Text),
        ("hash", Blob),
        ("prev_hash", Blob),
        ("link", Text),
        ("enrichment", Text),
        ("line", Blob),
    ]
};

/// SQLite's statement for one record, built once.
static RECORDS_INSERT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| sqlite_insert("records", &RECORD_COLUMNS, ""));

pub struct Batch<'c> {
    pub(super) tx: Tx<'c>,
    /// Open alerts this batch changed, written at commit.
    alerts: alerts::Held,
    /// What detections learned this batch, by (tracker, key), written at commit in
    /// one statement (PostgreSQL takes each row once per statement).
    learned: HashMap<(String, String), String>,
    /// The writer's known day partitions (PostgreSQL), and those this batch created:
    /// they exist once it commits.
    partitions: &'c mut std::collections::HashSet<i64>,
    created: Vec<i64>,
    /// Streams whose chain state this batch locked (PostgreSQL).
    claimed: HashSet<String>,
    rollups: RollupRows,
    names: HashSet<(String, String)>,
    revision: Option<i64>,
    pub stored: u64,
}

impl<'c> Batch<'c> {
    pub(super) fn begin(
        db: &'c mut Db,
        partitions: &'c mut std::collections::HashSet<i64>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            tx: db.begin()?,
            partitions,
            created: Vec::new(),
            claimed: HashSet::new(),
            learned: HashMap::new(),
            alerts: alerts::Held::default(),
            rollups: RollupRows::default(),
            names: HashSet::new(),
            revision: None,
            stored: 0,
        })
    }

    pub fn insert(&mut self, entry: &Entry<'_>) -> anyhow::Result<()> {
        let f = entry.fields;
        let e = entry.enrichment;
        let sealed = &entry.verdict.sealed;
        let kind = f.kind.map_or("unknown", Kind::as_str);
        let enrichment = added_fields(e);
        if self.tx.dialect() == Dialect::Postgres {
            self.partition_for(f.ts_ns)?;
        }
        let columns = columns(e);
        // In RECORD_COLUMNS' order.
        self.put_record(args![
            f.stream,
            f.seq as i64,
            kind,
            f.ts_ns,
            f.method,
            f.host,
            f.path,
            (f.kind == Some(Kind::Access)).then_some(&e.template),
            f.status,
            f.request_bytes.map(|b| b as i64),
            f.response_bytes.map(|b| b as i64),
            f.duration_ns.map(|d| d as i64),
            f.client.map(|c| c.to_string()),
            f.client.map(|c| client_key(c).to_vec()),
            f.user(),
            f.user_name,
            f.auth_method,
            f.credential,
            f.process,
            f.pid,
            f.user_agent,
            f.outcome,
            columns.asset,
            columns.sensitivity,
            columns.country,
            columns.asn,
            columns.as_org,
            columns.full_name,
            columns.department,
            columns.user_status,
            &sealed.hash[..],
            &sealed.prev_hash[..],
            entry.verdict.link.as_str(),
            enrichment,
            entry.line,
        ])?;
        self.stored += 1;
        if let Some(loss) = &f.loss {
            self.tx.execute(
                "INSERT INTO losses (stream, seq, source, reason, count, ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                args![
                    f.stream,
                    f.seq as i64,
                    loss.source,
                    loss.reason,
                    loss.count as i64,
                    f.ts_ns
                ],
            )?;
        }
        // The names a user goes by, for `--user NAME`; the rollups are counted on the
        // detection thread (`Rollups`).
        if f.kind == Some(Kind::Access)
            && let Some(user) = f.user()
        {
            for name in [f.user_name.as_deref(), columns.full_name]
                .into_iter()
                .flatten()
            {
                if name != user {
                    self.names.insert((name.to_owned(), user.to_owned()));
                }
            }
        }
        Ok(())
    }

    pub fn event(&mut self, event: &Event, ts_ns: i64) -> anyhow::Result<()> {
        self.tx.execute(
            "INSERT INTO events (stream, seq, kind, is_break, detail, ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![
                event.stream,
                event.seq as i64,
                event.kind.as_str(),
                event.kind.is_break(),
                event.detail,
                ts_ns
            ],
        )?;
        Ok(())
    }

    /// Marks the stored lines `from..=to` of `stream` as covered by the checkpoint at `to`.
    pub fn cover(&mut self, stream: &str, (from, to): (u64, u64)) -> anyhow::Result<()> {
        self.tx.execute(
            "UPDATE records SET checkpoint = ?3
             WHERE stream = ?1 AND seq BETWEEN ?2 AND ?3 AND link != 'break'",
            args![stream, from as i64, to as i64],
        )?;
        Ok(())
    }

    /// Keeps a line that could not be stored visible: where it was, why, its size and
    /// its digest; never its bytes, which may be anything.
    pub fn reject(
        &mut self,
        origin: &Origin,
        reason: &str,
        bytes: &[u8],
        len: u64,
    ) -> anyhow::Result<()> {
        self.tx.execute(
            "INSERT INTO rejects (origin, reason, bytes, sha256, ts) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
            args![
                origin.to_string(),
                reason,
                len as i64,
                hex::encode(Sha256::digest(bytes)),
                now_ns()
            ],
        )?;
        Ok(())
    }

    /// Groups a finding into its alert; returns the alert's id.
    pub fn alert(&mut self, new: &NewAlert<'_>) -> anyhow::Result<i64> {
        let revision = self.revision()?;
        alerts::upsert(&mut self.tx, &mut self.alerts, new, revision)
    }

    /// Resolves the open alerts of `rule` on `entity`; returns their ids.
    pub fn resolve_alerts(
        &mut self,
        rule: &str,
        entity: &str,
        ts_ns: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let revision = self.revision()?;
        self.alerts.write(&mut self.tx, revision)?;
        alerts::resolve(&mut self.tx, rule, entity, ts_ns, revision)
    }

    /// The revision of every alert this batch changes: one above the highest stored.
    fn revision(&mut self) -> anyhow::Result<i64> {
        Ok(match self.revision {
            Some(revision) => revision,
            None => {
                let next: i64 = self
                    .tx
                    .query_row("SELECT COALESCE(MAX(revision), 0) + 1 FROM alerts", args![])?
                    .get(0)?;
                *self.revision.insert(next)
            }
        })
    }

    /// Keeps (`Some`) or forgets (`None`) what the detections learned about entities.
    pub fn learn(&mut self, rows: Learned) -> anyhow::Result<()> {
        for (tracker, key, state) in rows {
            match state {
                Some(state) => {
                    self.learned.insert((tracker, key), state);
                }
                None => {
                    self.tx.execute(
                        "DELETE FROM detect_state WHERE tracker = ?1 AND key = ?2",
                        args![tracker, key],
                    )?;
                    self.learned.remove(&(tracker, key));
                }
            }
        }
        Ok(())
    }

    /// The rollups of the access records this batch stored, written at commit.
    pub fn rollups(&mut self, rows: RollupRows) {
        self.rollups = rows;
    }

    /// Writes the rollups and the chain state of `streams`, and commits.
    pub fn commit<'s>(
        mut self,
        streams: impl IntoIterator<Item = (&'s String, &'s StreamState)>,
    ) -> anyhow::Result<u64> {
        if let Some(revision) = self.revision {
            self.alerts.write(&mut self.tx, revision)?;
        }
        // Every table below is taken in its primary key's order: each insert then
        // lands beside the last in the b-tree instead of on a random page.
        let mut learned: Vec<_> = self.learned.drain().collect();
        learned.sort_unstable();
        let learned: Vec<Vec<Value>> = learned
            .into_iter()
            .map(|((tracker, key), state)| {
                vec![Value::Text(tracker), Value::Text(key), Value::Text(state)]
            })
            .collect();
        self.tx.insert_rows(
            "detect_state",
            &[
                ("tracker", SqlType::Text),
                ("key", SqlType::Text),
                ("state", SqlType::Text),
            ],
            &learned,
            "ON CONFLICT (tracker, key) DO UPDATE SET state = excluded.state",
        )?;
        self.tx.insert_rows(
            "rollup",
            &[
                ("dim", SqlType::Integer),
                ("key", SqlType::Text),
                ("minute", SqlType::Integer),
                ("requests", SqlType::Integer),
                ("failures", SqlType::Integer),
            ],
            &self.rollups.counts,
            "ON CONFLICT (dim, minute, key) DO UPDATE SET
                requests = rollup.requests + excluded.requests,
                failures = rollup.failures + excluded.failures",
        )?;
        self.tx.insert_rows(
            "rollup_users",
            &[
                ("dim", SqlType::Integer),
                ("key", SqlType::Text),
                ("minute", SqlType::Integer),
                ("user", SqlType::Text),
            ],
            &self.rollups.users,
            "ON CONFLICT DO NOTHING",
        )?;
        let mut names: Vec<_> = self.names.drain().collect();
        names.sort_unstable();
        let names: Vec<Vec<Value>> = names
            .into_iter()
            .map(|(name, user)| vec![Value::Text(name), Value::Text(user)])
            .collect();
        self.tx.insert_rows(
            "user_names",
            &[("name", SqlType::Text), ("user", SqlType::Text)],
            &names,
            "ON CONFLICT DO NOTHING",
        )?;
        for (stream, s) in streams {
            self.tx.execute(
                "INSERT INTO streams (stream, state) VALUES (?1, ?2)
                 ON CONFLICT (stream) DO UPDATE SET state = excluded.state",
                args![stream, serde_json::to_string(s)?],
            )?;
        }
        let stored = self.stored;
        self.tx.commit()?;
        self.partitions.extend(self.created);
        Ok(stored)
    }
}

impl Batch<'_> {
    fn stored(&mut self, column: &str, stream: &str, seq: u64) -> anyhow::Result<Option<Hash>> {
        let hash: Option<Vec<u8>> = match self.tx.query_opt(
            &format!("SELECT {column} FROM records WHERE stream = ?1 AND seq = ?2"),
            args![stream, seq as i64],
        )? {
            Some(row) => row.get(0)?,
            None => None,
        };
        Ok(hash.and_then(|h| h.try_into().ok()))
    }

    /// A late line that filled a gap is proven by the checkpoint that covers the line
    /// after it, when that line links to it; and so on backwards, through the lines
    /// that waited for the gap to fill, until one is covered already or does not link.
    pub fn carry_cover_back(&mut self, stream: &str, seq: u64) -> anyhow::Result<()> {
        let mut seq = seq as i64;
        loop {
            let next = self.tx.query_opt(
                "SELECT checkpoint, prev_hash FROM records WHERE stream = ?1 AND seq = ?2",
                args![stream, seq + 1],
            )?;
            let Some(next) = next else { return Ok(()) };
            let (Some(checkpoint), next_prev) =
                (next.get::<Option<i64>>(0)?, next.get::<Vec<u8>>(1)?)
            else {
                return Ok(());
            };
            let this = self.tx.query_opt(
                "SELECT checkpoint, hash, link FROM records WHERE stream = ?1 AND seq = ?2",
                args![stream, seq],
            )?;
            let this = match this {
                Some(r) => Some((
                    r.get::<Option<i64>>(0)?,
                    r.get::<Vec<u8>>(1)?,
                    r.get::<String>(2)?,
                )),
                None => None,
            };
            match this {
                Some((None, hash, link)) if hash == next_prev && link != "break" => {
                    self.tx.execute(
                        "UPDATE records SET checkpoint = ?3 WHERE stream = ?1 AND seq = ?2",
                        args![stream, seq, checkpoint],
                    )?;
                    seq -= 1;
                }
                _ => return Ok(()),
            }
        }
    }
}

impl Batch<'_> {
    /// Stores one record's values, in RECORD_COLUMNS' order: SQLite in process,
    /// PostgreSQL into the open COPY, which the next other statement completes.
    fn put_record(&mut self, values: &[&dyn ToArg]) -> anyhow::Result<()> {
        match self.tx.dialect() {
            Dialect::Sqlite => self.tx.insert_row(&RECORDS_INSERT, values),
            Dialect::Postgres => self.tx.copy_row("records", &RECORD_COLUMNS, values),
        }
    }

    /// Locks `stream`'s chain state until this batch ends, and reads it, the first
    /// time the batch meets the stream, when other hubs may write the store too
    /// (PostgreSQL): they take turns per stream, each continuing the chain from what
    /// the last one committed. `None`: nothing to reload (SQLite has one writer, whose
    /// state in memory is the store's); `Some(None)`: the store has not seen it.
    pub fn claim_stream(&mut self, stream: &str) -> anyhow::Result<Option<Option<StreamState>>> {
        if self.tx.dialect() != Dialect::Postgres || self.claimed.contains(stream) {
            return Ok(None);
        }
        // An advisory lock, not a row lock: a stream new to the store has no row yet.
        self.tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))",
            args![stream],
        )?;
        let state =
            match self
                .tx
                .query_opt("SELECT state FROM streams WHERE stream = ?1", args![stream])?
            {
                Some(row) => Some(serde_json::from_str(&row.get::<String>(0)?).map_err(|e| {
                    anyhow::anyhow!("the stored chain state of stream {stream}: {e}")
                })?),
                None => None,
            };
        self.claimed.insert(stream.to_owned());
        Ok(Some(state))
    }

    /// A partition retention dropped: a late line of its day must create it again.
    pub(super) fn forget_partition(&mut self, day: i64) {
        self.partitions.remove(&day);
    }

    /// Creates the day partition of a record at `ts_ns` unless it exists (PostgreSQL).
    fn partition_for(&mut self, ts_ns: i64) -> anyhow::Result<()> {
        let Some(day) = postgres::day_of(ts_ns) else {
            return Ok(());
        };
        if !self.partitions.contains(&day) && !self.created.contains(&day) {
            postgres::create_partition(&mut self.tx, day)?;
            self.created.push(day);
        }
        Ok(())
    }
}

impl Stored for Batch<'_> {
    fn stored_hash(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<Hash>> {
        self.stored("hash", stream, seq)
    }

    fn stored_prev_hash(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<Hash>> {
        self.stored("prev_hash", stream, seq)
    }
}

/// An address as 16 bytes (IPv4 mapped into IPv6), so a CIDR is a byte range.
pub fn client_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}
