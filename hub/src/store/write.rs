//! One ingest batch as one transaction: records, their integrity events, coverage by
//! checkpoints, rejected lines, rollups and the chain state commit together, so a
//! crash leaves the store at a batch boundary and redelivery finds what is stored.
use anyhow::Context as _;

use hashbrown::{HashMap, HashSet};

use sha2::{Digest as _, Sha256};
use tracer_audit::{Kind, chain::Hash};

use super::{
    alerts::{self, NewAlert},
    columns::{Derived, columns},
    days::{self, Part},
    db::{Db, Dialect, Row, SqlType, ToArg, Tx, Value, args, sqlite_insert},
    lines::Originals,
    postgres,
    rollups::RollupRows,
    schema::{self, Dim},
    window::{FORGED, Known, Window},
};
use crate::{
    enrich::Enrichment,
    ingest::{Origin, record::Fields},
    verify::{Event, Stored, StoredLink, StreamState, Verdict},
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
    pub derived: &'a Derived,
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

/// The day tables (SQLite) or partitions (PostgreSQL) the writer knows exist, and
/// SQLite's insert statement of each, built once.
pub struct Parts {
    known: std::collections::HashSet<Part>,
    inserts: HashMap<Part, String>,
}

impl Parts {
    pub fn new(known: std::collections::HashSet<Part>) -> Self {
        Self {
            known,
            inserts: HashMap::new(),
        }
    }
}

/// The seqs of each stream a batch stored in each part (SQLite): `record_days` takes
/// them at commit, and lookups in the batch see them before.
#[derive(Default)]
struct Ranges(HashMap<String, Vec<(Part, u64, u64)>>);

impl Ranges {
    fn note(&mut self, stream: &str, part: Part, seq: u64) {
        let parts = match self.0.get_mut(stream) {
            Some(parts) => parts,
            None => self.0.entry(stream.to_owned()).or_default(),
        };
        match parts.iter_mut().find(|(p, ..)| *p == part) {
            Some((_, first, last)) => (*first, *last) = ((*first).min(seq), (*last).max(seq)),
            None => parts.push((part, seq, seq)),
        }
    }

    /// The parts holding seqs of `from..=to` of `stream` stored by this batch.
    fn meeting(&self, stream: &str, (from, to): (u64, u64)) -> impl Iterator<Item = Part> {
        self.0
            .get(stream)
            .into_iter()
            .flatten()
            .filter(move |(_, first, last)| *first <= to && *last >= from)
            .map(|(part, ..)| *part)
    }
}

pub struct Batch<'c> {
    pub(super) tx: Tx<'c>,
    /// Open alerts this batch changed, written at commit.
    alerts: alerts::Held,
    /// What detections learned this batch, by (tracker, key), written at commit in
    /// one statement (PostgreSQL takes each row once per statement).
    learned: HashMap<(String, String), String>,
    /// The writer's known day parts; those this batch created or dropped join or leave
    /// them when it commits.
    parts: &'c mut Parts,
    created: Vec<Part>,
    /// Partitions this batch made (PostgreSQL).
    partitions_made: usize,
    dropped: Vec<Part>,
    ranges: Ranges,
    /// Streams whose chain state this batch locked (PostgreSQL).
    claimed: HashSet<String>,
    rollups: RollupRows,
    /// Users of forged access records this batch took out ([`Batch::take_forged`]).
    retracted: Vec<Retracted>,
    names: HashSet<(String, String)>,
    revision: Option<i64>,
    /// Stored lines the chain check asked about, read a run of seqs at once.
    window: Option<Window>,
    /// What this batch appends to the detection feed ([`super::feed`]).
    pub(super) feed: Option<Vec<u8>>,
    pub stored: u64,
}

impl<'c> Batch<'c> {
    pub(super) fn begin(db: &'c mut Db, parts: &'c mut Parts) -> anyhow::Result<Self> {
        Ok(Self {
            tx: db.begin()?,
            parts,
            created: Vec::new(),
            partitions_made: 0,
            dropped: Vec::new(),
            ranges: Ranges::default(),
            claimed: HashSet::new(),
            learned: HashMap::new(),
            alerts: alerts::Held::default(),
            rollups: RollupRows::default(),
            retracted: Vec::new(),
            names: HashSet::new(),
            revision: None,
            window: None,
            feed: None,
            stored: 0,
        })
    }

    pub fn insert(&mut self, entry: &Entry<'_>) -> anyhow::Result<()> {
        let f = entry.fields;
        let e = entry.enrichment;
        let sealed = &entry.verdict.sealed;
        let kind = f.kind.map_or("unknown", Kind::as_str);
        let derived = entry.derived;
        let part = Part::of(f.ts_ns);
        self.part_for(part)?;
        let columns = columns(e);
        // In RECORD_COLUMNS' order.
        self.put_record(
            part,
            args![
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
                derived.client,
                derived.client_key,
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
                derived.added,
                entry.line,
            ],
        )?;
        if self.tx.dialect() == Dialect::Sqlite {
            self.ranges.note(&f.stream, part, f.seq);
        }
        if let Some(window) = &mut self.window {
            let link = entry.verdict.link.as_str();
            let known = Known::new(sealed.hash, sealed.prev_hash, link, None);
            window.stored(&f.stream, f.seq, known);
        }
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
        for table in self.tables_of(stream, (from, to))? {
            self.tx.execute(
                &format!(
                    "UPDATE {table} SET checkpoint = ?3
                     WHERE stream = ?1 AND seq BETWEEN ?2 AND ?3 AND link NOT IN ('break', '{FORGED}')"
                ),
                args![stream, from as i64, to as i64],
            )?;
        }
        if let Some(window) = &mut self.window {
            window.covered(stream, (from, to), to as i64);
        }
        Ok(())
    }

    /// Marks the stored line `seq` of `stream` as one the sensor did not write (a
    /// checkpoint signed with the stream's key names another line there): its chain
    /// position reads `forged`, and no checkpoint covers it, now or later.
    pub fn disown(&mut self, stream: &str, seq: u64) -> anyhow::Result<()> {
        self.window = None;
        if let Some((table, _)) = self.find("seq", stream, seq)? {
            self.tx.execute(
                &format!(
                    "UPDATE {table} SET link = '{FORGED}', checkpoint = NULL WHERE stream = ?1 AND seq = ?2"
                ),
                args![stream, seq as i64],
            )?;
        }
        Ok(())
    }

    /// Takes the stored line `seq` of `stream` out of the records, to be replaced by the
    /// sensor's own (a restoration): it is kept among the conflicts byte for byte, with
    /// its loss total if it was a loss line. Returns it as it came.
    pub fn take_forged(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<Vec<u8>>> {
        self.window = None;
        let Some((table, row)) = self.find(
            "hash, line, ts, kind, user, template, asset, client",
            stream,
            seq,
        )?
        else {
            return Ok(None);
        };
        if row.get::<String>(3)? == Kind::Access.as_str()
            && let Some(user) = row.get::<Option<String>>(4)?
        {
            let ts: i64 = row.get(2)?;
            let minute = ts.div_euclid(schema::NANOS_PER_MINUTE);
            self.retracted.push(Retracted {
                table: table.clone(),
                hour: minute - minute.rem_euclid(schema::USERS_BUCKET_MINUTES),
                user,
                keys: [
                    (Dim::All, None, Some(String::new())),
                    (Dim::Template, Some("template"), row.get(5)?),
                    (Dim::Asset, Some("asset"), row.get(6)?),
                    (Dim::Client, Some("client"), row.get(7)?),
                ]
                .into_iter()
                .filter_map(|(dim, column, key)| Some((dim, column, key?)))
                .collect(),
            });
        }
        let hash: Vec<u8> = row.get(0)?;
        let hash: Hash = hash
            .try_into()
            .map_err(|_| anyhow::anyhow!("a stored hash that is not 32 bytes"))?;
        let line = Originals::default().original(&mut self.tx, row.get(1)?)?;
        self.keep_conflict(stream, seq, &hash, &line, row.get(2)?)?;
        for table in [table.as_str(), "losses"] {
            self.tx.execute(
                &format!("DELETE FROM {table} WHERE stream = ?1 AND seq = ?2"),
                args![stream, seq as i64],
            )?;
        }
        Ok(Some(line))
    }

    /// The kept conflict (`stream`, `seq`, `hash`) is stored as a record now.
    pub fn unkeep_conflict(&mut self, stream: &str, seq: u64, hash: &Hash) -> anyhow::Result<()> {
        self.tx.execute(
            "DELETE FROM conflicts WHERE stream = ?1 AND seq = ?2 AND hash = ?3",
            args![stream, seq as i64, &hash[..]],
        )?;
        Ok(())
    }

    /// The stored line `seq` of `stream`, marked broken because a forged line stood
    /// before it, links to the sensor's own line restored there.
    pub fn relink(&mut self, stream: &str, seq: u64) -> anyhow::Result<()> {
        self.window = None;
        if let Some((table, _)) = self.find("seq", stream, seq)? {
            self.tx.execute(
                &format!("UPDATE {table} SET link = 'linked' WHERE stream = ?1 AND seq = ?2"),
                args![stream, seq as i64],
            )?;
        }
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

    /// Keeps a line refused because its seq is stored with another hash (its own
    /// `audit.hash`, which an altered copy shares with the stored line), at its time.
    pub fn keep_conflict(
        &mut self,
        stream: &str,
        seq: u64,
        hash: &Hash,
        line: &[u8],
        ts_ns: i64,
    ) -> anyhow::Result<()> {
        self.tx.execute(
            "INSERT INTO conflicts (stream, seq, hash, line, ts) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
            args![stream, seq as i64, &hash[..], line, ts_ns],
        )?;
        Ok(())
    }

    /// Reads at once the stored alerts that `findings` may be grouped into, which
    /// [`Batch::alert`] would otherwise read one finding at a time.
    pub fn prefetch_alerts(&mut self, findings: &[NewAlert<'_>]) -> anyhow::Result<()> {
        if findings.is_empty() {
            return Ok(());
        }
        // Under the revision's lock, as each finding's own read would be.
        self.revision()?;
        alerts::prefetch(&mut self.tx, &mut self.alerts, findings)
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
        alerts::resolve(
            &mut self.tx,
            &mut self.alerts,
            rule,
            entity,
            ts_ns,
            revision,
        )
    }

    /// The revision of every alert this batch changes: one above the highest stored.
    ///
    /// Deliveries send what changed after the last revision they sent, so revisions
    /// must become visible in their order. With several hubs on one PostgreSQL store,
    /// two batches could each read the same highest revision, or commit out of order,
    /// and a delivery that had moved past a revision would never send the alerts
    /// committed with it later. So a batch that changes alerts holds a lock from
    /// reading the revision until it commits: the next one reads the revision it wrote.
    /// It is the last lock a batch takes, after its streams' and the schema's.
    fn revision(&mut self) -> anyhow::Result<i64> {
        Ok(match self.revision {
            Some(revision) => revision,
            None => {
                if self.tx.dialect() == Dialect::Postgres {
                    self.tx.execute(
                        "SELECT pg_advisory_xact_lock(?1)",
                        args![postgres::ALERTS_LOCK],
                    )?;
                }
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

    /// Keeps the dictionary this batch's lines are compressed with.
    pub fn save_dictionary(
        &mut self,
        dictionary: &super::lines::Dictionary,
        created_ns: i64,
    ) -> anyhow::Result<()> {
        super::lines::save(&mut self.tx, dictionary, created_ns)
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
        for retracted in std::mem::take(&mut self.retracted) {
            retracted.forget(&mut self.tx)?;
        }
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
        if self.tx.dialect() == Dialect::Sqlite {
            let mut ranges: Vec<(String, String, u64, u64)> = self
                .ranges
                .0
                .drain()
                .flat_map(|(stream, parts)| {
                    parts
                        .into_iter()
                        .map(move |(part, first, last)| (stream.clone(), part.table(), first, last))
                })
                .collect();
            ranges.sort_unstable();
            let days: Vec<Vec<Value>> = ranges
                .into_iter()
                .map(|(stream, table, first, last)| {
                    vec![
                        Value::Text(stream),
                        Value::Text(table),
                        Value::Integer(first as i64),
                        Value::Integer(last as i64),
                    ]
                })
                .collect();
            self.tx.insert_rows(
                "record_days",
                &[
                    ("stream", SqlType::Text),
                    ("tbl", SqlType::Text),
                    ("first_seq", SqlType::Integer),
                    ("last_seq", SqlType::Integer),
                ],
                &days,
                "ON CONFLICT (stream, tbl) DO UPDATE SET
                    first_seq = min(first_seq, excluded.first_seq),
                    last_seq = max(last_seq, excluded.last_seq)",
            )?;
        }
        if let Some(body) = self.feed.take() {
            super::feed::append(&mut self.tx, &body)?;
        }
        let stored = self.stored;
        self.tx.commit()?;
        self.parts.known.extend(self.created);
        for part in self.dropped {
            self.parts.known.remove(&part);
            self.parts.inserts.remove(&part);
        }
        Ok(stored)
    }
}

impl Batch<'_> {
    /// The tables that may hold seqs `from..=to` of `stream`, this batch's first.
    fn tables_of(&mut self, stream: &str, seqs: (u64, u64)) -> anyhow::Result<Vec<String>> {
        let mut tables: Vec<String> = self.ranges.meeting(stream, seqs).map(Part::table).collect();
        for table in days::locate(&mut self.tx, stream, seqs)? {
            if !tables.contains(&table) {
                tables.push(table);
            }
        }
        Ok(tables)
    }

    /// `columns` of the stored line `seq` of `stream`, and the table that holds it.
    fn find(
        &mut self,
        columns: &str,
        stream: &str,
        seq: u64,
    ) -> anyhow::Result<Option<(String, Row)>> {
        for table in self.tables_of(stream, (seq, seq))? {
            let found = self.tx.query_opt(
                &format!("SELECT {columns} FROM {table} WHERE stream = ?1 AND seq = ?2"),
                args![stream, seq as i64],
            )?;
            if let Some(row) = found {
                return Ok(Some((table, row)));
            }
        }
        Ok(None)
    }

    /// The stored line `seq` of `stream` as the chain check sees it, from the window,
    /// which is read anew around `seq` when it does not hold it.
    fn known(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<Known>> {
        if let Some(known) = self.window.as_ref().and_then(|w| w.get(stream, seq)) {
            return Ok(known);
        }
        let (from, to) = Window::around(seq);
        let mut lines = HashMap::new();
        for table in self.tables_of(stream, (from, to))? {
            let rows = self.tx.query(
                &format!(
                    "SELECT seq, hash, prev_hash, link, checkpoint FROM {table}
                     WHERE stream = ?1 AND seq BETWEEN ?2 AND ?3"
                ),
                args![stream, from as i64, to as i64],
            )?;
            for row in rows {
                let hash = |at: usize| -> anyhow::Result<Hash> {
                    let bytes: Vec<u8> = row.get(at)?;
                    bytes
                        .try_into()
                        .map_err(|_| anyhow::anyhow!("a stored hash that is not 32 bytes"))
                };
                let known = Known::new(hash(1)?, hash(2)?, &row.get::<String>(3)?, row.get(4)?);
                lines.insert(row.get::<i64>(0)? as u64, known);
            }
        }
        let known = lines.get(&seq).copied();
        self.window = Some(Window::new(stream, (from, to), lines));
        Ok(known)
    }

    /// A late line that filled a gap is proven by the checkpoint that covers the line
    /// after it, when that line links to it; and so on backwards, through the lines
    /// that waited for the gap to fill, until one is covered already or does not link.
    /// The walk reads the window; the lines it proves are updated in one statement.
    pub fn carry_cover_back(&mut self, stream: &str, seq: u64) -> anyhow::Result<()> {
        let Some(next) = self.known(stream, seq + 1)? else {
            return Ok(());
        };
        let Some(checkpoint) = next.checkpoint else {
            return Ok(());
        };
        // The hash the line at `at` must have to link to the proven line after it.
        let mut links_to = next.prev_hash;
        let mut lowest = None;
        let mut at = seq;
        while at > 0 {
            match self.known(stream, at)? {
                Some(this)
                    if this.checkpoint.is_none() && this.provable() && this.hash == links_to =>
                {
                    if let Some(window) = &mut self.window {
                        window.covered(stream, (at, at), checkpoint);
                    }
                    links_to = this.prev_hash;
                    lowest = Some(at);
                    at -= 1;
                }
                _ => break,
            }
        }
        let Some(lowest) = lowest else {
            return Ok(());
        };
        for table in self.tables_of(stream, (lowest, seq))? {
            self.tx.execute(
                &format!(
                    "UPDATE {table} SET checkpoint = ?4 WHERE stream = ?1 AND seq BETWEEN ?2 AND ?3"
                ),
                args![stream, lowest as i64, seq as i64, checkpoint],
            )?;
        }
        Ok(())
    }
}

impl Batch<'_> {
    /// Stores one record's values, in RECORD_COLUMNS' order: SQLite in process, into
    /// its day's table, PostgreSQL into the open COPY, which the next other statement
    /// completes (the partitioned table routes each row to its day).
    fn put_record(&mut self, part: Part, values: &[&dyn ToArg]) -> anyhow::Result<()> {
        match self.tx.dialect() {
            Dialect::Sqlite => {
                let sql = self
                    .parts
                    .inserts
                    .entry(part)
                    .or_insert_with(|| sqlite_insert(&part.table(), &RECORD_COLUMNS, ""));
                self.tx.insert_row(sql, values)
            }
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
        // A row lock, kept in the row itself: every advisory lock a transaction holds
        // takes a slot of the server's shared lock table (64 per connection by
        // default), and a batch of lines naming 20,000 stream ids, which anyone who
        // can publish to the stream can send, failed with "out of shared memory", came
        // again and failed again, stalling the stream behind it. The upsert makes the
        // row of a stream new to the store, or locks the existing one, waiting while
        // another hub's batch holds it.
        self.tx.execute(
            "INSERT INTO stream_locks (stream) VALUES (?1)
             ON CONFLICT (stream) DO UPDATE SET stream = excluded.stream",
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

    /// Retention dropped `part`: a late line of its day must create it again.
    pub(super) fn forget_part(&mut self, part: Part) {
        self.dropped.push(part);
    }

    /// Creates the table (SQLite) or partition (PostgreSQL) of `part` unless it exists.
    fn part_for(&mut self, part: Part) -> anyhow::Result<()> {
        if self.parts.known.contains(&part) || self.created.contains(&part) {
            return Ok(());
        }
        match (self.tx.dialect(), part) {
            (Dialect::Sqlite, _) => self
                .tx
                .batch(&schema::records_table(&part.table()))
                .with_context(|| format!("creating the records table {}", part.table()))?,
            (Dialect::Postgres, Part::Day(day)) => {
                let made = self.partitions_made < postgres::NEW_PARTITIONS_PER_BATCH
                    && postgres::create_partition(
                        &mut self.tx,
                        day,
                        now_ns().div_euclid(days::NANOS_PER_DAY),
                    )?;
                self.partitions_made += usize::from(made);
            }
            // The default partition holds them.
            (Dialect::Postgres, Part::Early | Part::Late) => return Ok(()),
        }
        // For PostgreSQL, known: the day's records have their place, a partition of
        // their own or the default one.
        self.created.push(part);
        Ok(())
    }
}

/// The user of a forged access record taken out: it stays among its hour's distinct
/// users (`rollup_users`) per dimension key only while another stored record of that
/// hour has it.
struct Retracted {
    /// The records table of its day (SQLite) or the partitioned table (PostgreSQL).
    table: String,
    hour: i64,
    user: String,
    /// (dimension, the records column its key is, the key).
    keys: Vec<(Dim, Option<&'static str>, String)>,
}

impl Retracted {
    fn forget(self, tx: &mut Tx<'_>) -> anyhow::Result<()> {
        let from = self.hour * schema::NANOS_PER_MINUTE;
        let to = from + schema::USERS_BUCKET_MINUTES * schema::NANOS_PER_MINUTE;
        for (dim, column, key) in &self.keys {
            let same_key = column.map_or(String::new(), |c| format!(" AND {c} = ?2"));
            tx.execute(
                &format!(
                    "DELETE FROM rollup_users
                     WHERE dim = ?1 AND key = ?2 AND minute = ?3 AND user = ?4
                     AND NOT EXISTS (SELECT 1 FROM {table}
                        WHERE user = ?4 AND kind = 'access' AND ts >= ?5 AND ts < ?6{same_key})",
                    table = self.table
                ),
                args![*dim as i64, key, self.hour, self.user, from, to],
            )?;
        }
        Ok(())
    }
}

impl Stored for Batch<'_> {
    fn stored_hash(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<Hash>> {
        Ok(self.known(stream, seq)?.map(|k| k.hash))
    }

    fn stored_prev_hash(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<Hash>> {
        Ok(self.known(stream, seq)?.map(|k| k.prev_hash))
    }

    fn stored_line(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<Vec<u8>>> {
        let Some((_, row)) = self.find("line", stream, seq)? else {
            return Ok(None);
        };
        // Rare (a line that fails its own hash, given again): the dictionaries are
        // loaded for it alone.
        Originals::default()
            .original(&mut self.tx, row.get(0)?)
            .map(Some)
    }

    fn stored_link(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<StoredLink>> {
        Ok(self.known(stream, seq)?.map(|k| StoredLink {
            hash: k.hash,
            prev_hash: k.prev_hash,
            broken: k.broken,
        }))
    }

    fn kept_conflict_line(
        &mut self,
        stream: &str,
        seq: u64,
        hash: &Hash,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        match self.tx.query_opt(
            "SELECT line FROM conflicts WHERE stream = ?1 AND seq = ?2 AND hash = ?3",
            args![stream, seq as i64, &hash[..]],
        )? {
            Some(row) => Ok(Some(row.get(0)?)),
            None => Ok(None),
        }
    }
}
