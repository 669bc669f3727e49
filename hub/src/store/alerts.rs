//! Alerts as the store keeps them: grouped per rule and entity over the rule's window,
//! with the first records that triggered them, and the per-target delivery cursors.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::db::{Db, Dialect, Row, args};

/// How urgent an alert is; ordered, so an update can only raise it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low = 1,
    Medium = 2,
    High = 3,
    Critical = 4,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "low" | "informational" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// One step up, for a finding on a sensitive asset.
    pub fn raised(self) -> Self {
        match self {
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        }
    }

    fn from_rank(rank: i64) -> Self {
        match rank {
            i64::MIN..=1 => Severity::Low,
            2 => Severity::Medium,
            3 => Severity::High,
            _ => Severity::Critical,
        }
    }
}

/// Records linked from one alert; the count keeps going past it.
pub const MAX_LINKED_RECORDS: usize = 20;

/// One finding, to be grouped into an alert.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlert<'a> {
    pub rule: &'a str,
    pub severity: Severity,
    pub entity: &'a str,
    pub ts_ns: i64,
    /// Findings of the same rule and entity within this span of the alert's last one
    /// update it.
    pub window_ns: i64,
    pub summary: &'a str,
    pub record: Option<(&'a str, u64)>,
}

/// A stored alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub id: i64,
    pub rule: String,
    pub severity: Severity,
    pub entity: String,
    pub first_ns: i64,
    pub last_ns: i64,
    /// The grouping window: findings within it of `last_ns` update this alert.
    pub window_ns: i64,
    pub count: u64,
    pub summary: String,
    /// (stream, seq) of the first records.
    pub records: Vec<(String, u64)>,
    pub revision: i64,
    /// When what raised it was shown to be over; a later finding opens a new alert.
    pub resolved_ns: Option<i64>,
    /// When the hub raised it, on its own clock (None for alerts older than the column).
    pub raised_ns: Option<i64>,
}

const COLUMNS: &str = "id, rule, severity, entity, first_ns, last_ns, count, summary, records, \
     revision, window_ns, resolved_ns, raised_ns";

fn alert(row: &Row) -> anyhow::Result<Alert> {
    let records: String = row.get(8)?;
    Ok(Alert {
        id: row.get(0)?,
        rule: row.get(1)?,
        severity: Severity::from_rank(row.get(2)?),
        entity: row.get(3)?,
        first_ns: row.get(4)?,
        last_ns: row.get(5)?,
        count: row.get(6)?,
        summary: row.get(7)?,
        records: serde_json::from_str(&records).unwrap_or_default(),
        revision: row.get(9)?,
        window_ns: row.get(10)?,
        resolved_ns: row.get(11)?,
        raised_ns: row.get(12)?,
    })
}

/// Open alerts a batch grouped findings into, held until it commits: a burst of
/// findings on one alert is one write, not one per finding (on 200,000 synthetic
/// records, 112,000 updates of 7,000 alerts).
#[derive(Default)]
pub(super) struct Held {
    open: HashMap<(String, String), Grouped>,
    /// The stored open alerts of the rules and entities a batch's findings name, read
    /// in one query per rule ([`prefetch`]) instead of one per finding: on PostgreSQL
    /// each statement is a round trip. A key present here lists every open alert that
    /// may take the batch's findings, less those in `open`.
    stored: HashMap<(String, String), Vec<Grouped>>,
}

/// One open alert as the batch changed it: the changes are written relative to the
/// stored row (count added, bounds widened, severity raised).
struct Grouped {
    id: i64,
    severity: Severity,
    first_ns: i64,
    last_ns: i64,
    window_ns: i64,
    added: i64,
    summary: Option<String>,
    records: Vec<(String, u64)>,
    changed: bool,
}

impl Grouped {
    /// A stored alert, from a row of `id, severity, first_ns, last_ns, window_ns,
    /// records`.
    fn stored(row: &Row) -> anyhow::Result<Self> {
        Ok(Grouped {
            id: row.get(0)?,
            severity: Severity::from_rank(row.get(1)?),
            first_ns: row.get(2)?,
            last_ns: row.get(3)?,
            window_ns: row.get(4)?,
            added: 0,
            summary: None,
            records: serde_json::from_str(&row.get::<String>(5)?).unwrap_or_default(),
            changed: false,
        })
    }

    fn takes(&self, ts_ns: i64) -> bool {
        self.last_ns >= ts_ns - self.window_ns && self.first_ns <= ts_ns + self.window_ns
    }

    fn add(&mut self, new: &NewAlert<'_>) {
        if let Some((stream, seq)) = new.record
            && self.records.len() < MAX_LINKED_RECORDS
            && !self.records.iter().any(|(s, q)| s == stream && *q == seq)
        {
            self.records.push((stream.to_owned(), seq));
        }
        self.severity = self.severity.max(new.severity);
        // The summary follows the latest finding: it says what is happening now.
        if new.ts_ns >= self.last_ns {
            self.summary = Some(new.summary.to_owned());
        }
        self.first_ns = self.first_ns.min(new.ts_ns);
        self.last_ns = self.last_ns.max(new.ts_ns);
        self.added += 1;
        self.changed = true;
    }

    /// Writes the changes, if any.
    fn update(&self, db: &mut Db, revision: i64) -> anyhow::Result<()> {
        if !self.changed {
            return Ok(());
        }
        db.execute(
            "UPDATE alerts SET severity = CASE WHEN severity > ?2 THEN severity ELSE ?2 END,
                first_ns = CASE WHEN first_ns < ?3 THEN first_ns ELSE ?3 END,
                last_ns = CASE WHEN last_ns > ?4 THEN last_ns ELSE ?4 END,
                count = count + ?5, summary = COALESCE(?6, summary), records = ?7,
                revision = ?8
             WHERE id = ?1",
            args![
                self.id,
                self.severity as i64,
                self.first_ns,
                self.last_ns,
                self.added,
                self.summary,
                serde_json::to_string(&self.records)?,
                revision
            ],
        )?;
        Ok(())
    }

    /// The alert as stored once its changes are written.
    fn written(&mut self) {
        self.added = 0;
        self.summary = None;
        self.changed = false;
    }
}

impl Held {
    /// Writes every alert held.
    pub(super) fn write(&mut self, db: &mut Db, revision: i64) -> anyhow::Result<()> {
        let held: Vec<_> = self.open.drain().collect();
        let changed: Vec<&Grouped> = held.iter().map(|(_, g)| g).filter(|g| g.changed).collect();
        match db.dialect() {
            Dialect::Postgres => {
                for chunk in changed.chunks(WRITE_CHUNK) {
                    write_together(db, chunk, revision)?;
                }
            }
            // In process, the one cached statement per alert costs no round trip, and
            // the joined statement measured no faster (import of 200,000 synthetic
            // records: 5.1-5.6 s against 4.9-5.3 s, three interleaved rounds).
            Dialect::Sqlite => {
                for grouped in changed {
                    grouped.update(db, revision)?;
                }
            }
        }
        for (key, grouped) in held {
            self.keep_written(&key, grouped);
        }
        Ok(())
    }

    /// An alert whose changes were just written: when its key was read ahead, it goes
    /// back among the stored alerts later findings of the batch may join.
    fn keep_written(&mut self, key: &(String, String), mut grouped: Grouped) {
        if let Some(candidates) = self.stored.get_mut(key) {
            grouped.written();
            candidates.push(grouped);
        }
    }
}

/// Alerts changed per statement at commit.
const WRITE_CHUNK: usize = 500;

/// [`Grouped::update`] for many alerts in one statement, for PostgreSQL, where each
/// statement is a round trip (on 200,000 synthetic records, 6,020 at commit). The rows'
/// values are cast so that PostgreSQL types them as SQLite takes them.
fn write_together(db: &mut Db, changed: &[&Grouped], revision: i64) -> anyhow::Result<()> {
    if changed.is_empty() {
        return Ok(());
    }
    let records = changed
        .iter()
        .map(|g| serde_json::to_string(&g.records))
        .collect::<Result<Vec<_>, _>>()?;
    let row = "SELECT CAST(? AS BIGINT) AS id, CAST(? AS BIGINT) AS severity, \
               CAST(? AS BIGINT) AS first_ns, CAST(? AS BIGINT) AS last_ns, \
               CAST(? AS BIGINT) AS added, CAST(? AS TEXT) AS summary, CAST(? AS TEXT) AS records";
    let sql = format!(
        "UPDATE alerts SET
            severity = CASE WHEN alerts.severity > v.severity THEN alerts.severity ELSE v.severity END,
            first_ns = CASE WHEN alerts.first_ns < v.first_ns THEN alerts.first_ns ELSE v.first_ns END,
            last_ns = CASE WHEN alerts.last_ns > v.last_ns THEN alerts.last_ns ELSE v.last_ns END,
            count = alerts.count + v.added, summary = COALESCE(v.summary, alerts.summary),
            records = v.records, revision = ?
         FROM ({}) AS v WHERE alerts.id = v.id",
        vec![row; changed.len()].join(" UNION ALL ")
    );
    let severities: Vec<i64> = changed.iter().map(|g| g.severity as i64).collect();
    // `?` are numbered in the text's order: the revision comes first.
    let mut args: Vec<&dyn super::db::ToArg> = Vec::with_capacity(changed.len() * 7 + 1);
    args.push(&revision);
    for ((grouped, severity), records) in changed.iter().zip(&severities).zip(&records) {
        args.extend([
            &grouped.id as &dyn super::db::ToArg,
            severity,
            &grouped.first_ns,
            &grouped.last_ns,
            &grouped.added,
            &grouped.summary,
            records,
        ]);
    }
    db.execute(&sql, &args)?;
    Ok(())
}

/// Entities per prefetch query: well under either engine's bound on parameters.
const PREFETCH_CHUNK: usize = 500;

/// Reads the stored open alerts that `findings` may be grouped into, one query per rule
/// and [`PREFETCH_CHUNK`] entities, so that [`upsert`] needs no query of its own.
pub(super) fn prefetch(
    db: &mut Db,
    held: &mut Held,
    findings: &[NewAlert<'_>],
) -> anyhow::Result<()> {
    let Some(from_ns) = findings.iter().map(|f| f.ts_ns).min() else {
        return Ok(());
    };
    let to_ns = findings.iter().map(|f| f.ts_ns).max().unwrap_or(from_ns);
    let mut by_rule: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        Default::default();
    for finding in findings {
        let key = (finding.rule.to_owned(), finding.entity.to_owned());
        if !held.open.contains_key(&key) && !held.stored.contains_key(&key) {
            by_rule
                .entry(finding.rule)
                .or_default()
                .insert(finding.entity);
        }
    }
    for (rule, entities) in by_rule {
        let entities: Vec<&str> = entities.into_iter().collect();
        for chunk in entities.chunks(PREFETCH_CHUNK) {
            let sql = format!(
                "SELECT id, severity, first_ns, last_ns, window_ns, records, entity FROM alerts
                 WHERE rule = ? AND resolved_ns IS NULL
                    AND last_ns >= ? - window_ns AND first_ns <= ? + window_ns
                    AND entity IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut args: Vec<&dyn super::db::ToArg> = vec![&rule, &from_ns, &to_ns];
            args.extend(chunk.iter().map(|e| e as &dyn super::db::ToArg));
            for entity in chunk {
                held.stored
                    .insert((rule.to_owned(), (*entity).to_owned()), Vec::new());
            }
            for row in db.query(&sql, &args)? {
                let entity: String = row.get(6)?;
                let grouped = Grouped::stored(&row)?;
                held.stored
                    .entry((rule.to_owned(), entity))
                    .or_default()
                    .push(grouped);
            }
        }
    }
    Ok(())
}

/// Groups `new` into the open alert of its rule and entity, or opens one; returns the
/// alert's id.
pub(super) fn upsert(
    db: &mut Db,
    held: &mut Held,
    new: &NewAlert<'_>,
    revision: i64,
) -> anyhow::Result<i64> {
    let key = (new.rule.to_owned(), new.entity.to_owned());
    if let Some(grouped) = held.open.get_mut(&key) {
        if grouped.takes(new.ts_ns) {
            grouped.add(new);
            return Ok(grouped.id);
        }
        // Out of its window: stored as it is, and the store says what comes next.
        if let Some(grouped) = held.open.remove(&key) {
            grouped.update(db, revision)?;
            held.keep_written(&key, grouped);
        }
    }
    let open = match held.stored.get_mut(&key) {
        // As the query below: the open alert last seen among those that take it.
        Some(candidates) => candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.takes(new.ts_ns))
            .max_by_key(|(_, c)| c.last_ns)
            .map(|(at, _)| at)
            .map(|at| candidates.swap_remove(at)),
        None => db
            .query_opt(
                "SELECT id, severity, first_ns, last_ns, window_ns, records FROM alerts
                 WHERE rule = ?1 AND entity = ?2 AND resolved_ns IS NULL
                    AND last_ns >= ?3 - window_ns AND first_ns <= ?3 + window_ns
                 ORDER BY last_ns DESC LIMIT 1",
                args![new.rule, new.entity, new.ts_ns],
            )?
            .as_ref()
            .map(Grouped::stored)
            .transpose()?,
    };
    let grouped = match open {
        Some(mut grouped) => {
            grouped.add(new);
            grouped
        }
        None => {
            let records: Vec<(String, u64)> = new
                .record
                .map(|(s, q)| (s.to_owned(), q))
                .into_iter()
                .collect();
            let id = db
                .query_row(
                    "INSERT INTO alerts (rule, severity, entity, first_ns, last_ns, window_ns,
                        count, summary, records, revision, raised_ns)
                     VALUES (?1, ?2, ?3, ?4, ?4, ?5, 1, ?6, ?7, ?8, ?9) RETURNING id",
                    args![
                        new.rule,
                        new.severity as i64,
                        new.entity,
                        new.ts_ns,
                        new.window_ns,
                        new.summary,
                        serde_json::to_string(&records)?,
                        revision,
                        crate::when::now_ns()
                    ],
                )?
                .get(0)?;
            Grouped {
                id,
                severity: new.severity,
                first_ns: new.ts_ns,
                last_ns: new.ts_ns,
                window_ns: new.window_ns,
                added: 0,
                summary: None,
                records,
                changed: false,
            }
        }
    };
    let id = grouped.id;
    held.open.insert(key, grouped);
    Ok(id)
}

/// Resolves the open alerts of `rule` on `entity` at `ts_ns`; returns their ids.
pub(super) fn resolve(
    db: &mut Db,
    held: &mut Held,
    rule: &str,
    entity: &str,
    ts_ns: i64,
    revision: i64,
) -> anyhow::Result<Vec<i64>> {
    // Resolved alerts take no more findings: the store says what is open after this.
    held.stored.remove(&(rule.to_owned(), entity.to_owned()));
    db.query(
        "UPDATE alerts SET resolved_ns = CASE WHEN last_ns > ?3 THEN last_ns ELSE ?3 END,
            revision = ?4
         WHERE rule = ?1 AND entity = ?2 AND resolved_ns IS NULL RETURNING id",
        args![rule, entity, ts_ns, revision],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// What `alerts` lists.
#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    pub since_ns: Option<i64>,
    pub rule: Option<String>,
    pub min_severity: Option<Severity>,
    pub limit: u32,
}

/// Alerts last seen at or after `since`, newest first.
pub fn list(db: &mut Db, filter: &AlertFilter) -> anyhow::Result<Vec<Alert>> {
    db.query(
        &format!(
            "SELECT {COLUMNS} FROM alerts
             WHERE last_ns >= ?1 AND (CAST(?2 AS TEXT) IS NULL OR rule = ?2) AND severity >= ?3
             ORDER BY last_ns DESC, id DESC LIMIT ?4"
        ),
        args![
            filter.since_ns.unwrap_or(i64::MIN),
            filter.rule,
            filter.min_severity.map_or(0, |s| s as i64),
            filter.limit
        ],
    )?
    .iter()
    .map(alert)
    .collect()
}

/// One alert by id.
pub fn get(db: &mut Db, id: i64) -> anyhow::Result<Option<Alert>> {
    db.query_opt(
        &format!("SELECT {COLUMNS} FROM alerts WHERE id = ?1"),
        args![id],
    )?
    .as_ref()
    .map(alert)
    .transpose()
}

/// Alerts changed after `revision`, oldest change first.
pub fn changed_after(db: &mut Db, revision: i64, limit: u32) -> anyhow::Result<Vec<Alert>> {
    db.query(
        &format!("SELECT {COLUMNS} FROM alerts WHERE revision > ?1 ORDER BY revision, id LIMIT ?2"),
        args![revision, limit],
    )?
    .iter()
    .map(alert)
    .collect()
}

/// Whether this connection delivers to `target`. SQLite's store has one hub, which
/// does. On PostgreSQL several hubs may share the store and each may have the target
/// configured: the one whose connection holds the target's lock delivers, so a change
/// is sent once, not once per hub. The lock is the session's: it lasts until the
/// connection closes (the hub stops or dies), and then another hub takes over.
pub fn lead(db: &mut Db, target: &str) -> anyhow::Result<bool> {
    if db.dialect() == Dialect::Sqlite {
        return Ok(true);
    }
    db.query_row(
        "SELECT pg_try_advisory_lock(hashtextextended(?1, 0))",
        args![format!("tracer-hub delivers to {target}")],
    )?
    .get(0)
}

/// The revision `target` delivered last; 0 before its first delivery.
pub fn delivered(db: &mut Db, target: &str) -> anyhow::Result<i64> {
    match db.query_opt(
        "SELECT revision FROM deliveries WHERE target = ?1",
        args![target],
    )? {
        Some(row) => row.get(0),
        None => Ok(0),
    }
}

/// Records how far `target` got, and its last error, if the last try failed.
pub fn mark_delivered(
    db: &mut Db,
    target: &str,
    revision: i64,
    error: Option<&str>,
) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO deliveries (target, revision, failures, last_error) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (target) DO UPDATE SET revision = excluded.revision,
            failures = CASE WHEN excluded.last_error IS NULL THEN 0 ELSE deliveries.failures + 1 END,
            last_error = excluded.last_error",
        args![target, revision, i64::from(error.is_some()), error],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreAt;

    const SEC: i64 = 1_000_000_000;
    const T0: i64 = 1_800_000_000 * SEC;
    const WINDOW: i64 = 60 * SEC;

    fn finding(entity: &str, ts_ns: i64, seq: u64) -> NewAlert<'_> {
        NewAlert {
            rule: "auth_failures",
            severity: if seq.is_multiple_of(7) {
                Severity::High
            } else {
                Severity::Medium
            },
            entity,
            ts_ns,
            window_ns: WINDOW,
            summary: "failures",
            record: Some(("web1", seq)),
        }
    }

    /// Every alert as stored, ids left out.
    fn stored(store: &StoreAt) -> Vec<String> {
        let mut db = store.open_reader().unwrap();
        db.query(
            "SELECT rule, entity, severity, first_ns, last_ns, count, summary, records, revision,
                resolved_ns FROM alerts ORDER BY entity, first_ns",
            args![],
        )
        .unwrap()
        .iter()
        .map(|r| format!("{r:?}"))
        .collect()
    }

    /// Three batches over 600 entities (more than a prefetch query or a commit's
    /// statement takes): findings inside a stored alert's window, past it, and past an
    /// alert the same batch opened; a resolve of one entity halfway through a batch
    /// (which writes every alert held, before the rest of the batch's findings).
    fn run(prefetch: bool) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreAt::Sqlite {
            data: dir.path().to_owned(),
        };
        let mut writer = store.open_writer().unwrap();
        let entities: Vec<String> = (0..600)
            .map(|i| format!("client:10.0.{}.{}", i / 256, i % 256))
            .collect();
        let mut seq = 0;
        for (batch_no, offsets) in [
            vec![0],
            vec![10 * SEC, 200 * SEC, 230 * SEC],
            vec![240 * SEC, 1000 * SEC, 1010 * SEC, 30 * SEC],
        ]
        .into_iter()
        .enumerate()
        {
            let mut findings = Vec::new();
            for offset in &offsets {
                for entity in &entities {
                    seq += 1;
                    findings.push(finding(entity, T0 + offset, seq));
                }
            }
            let mut batch = writer.batch().unwrap();
            if prefetch {
                batch.prefetch_alerts(&findings).unwrap();
            }
            let half = findings.len() / 2;
            for new in &findings[..half] {
                batch.alert(new).unwrap();
            }
            if batch_no == 2 {
                batch
                    .resolve_alerts("auth_failures", &entities[599], T0 + 900 * SEC)
                    .unwrap();
            }
            for new in &findings[half..] {
                batch.alert(new).unwrap();
            }
            batch.commit(std::iter::empty()).unwrap();
        }
        stored(&store)
    }

    #[test]
    fn alerts_read_ahead_and_written_together_are_the_alerts_grouped_one_at_a_time() {
        let one_at_a_time = run(false);
        // Three alerts per entity (0-30 s, 200-240 s, 1000-1010 s), and two more for
        // the entity resolved halfway (its 1010 s and 30 s findings open alerts anew).
        assert_eq!(one_at_a_time.len(), 600 * 3 + 2);
        let read_ahead = run(true);
        assert_eq!(read_ahead.len(), one_at_a_time.len());
        let differing = read_ahead.iter().zip(&one_at_a_time).find(|(a, b)| a != b);
        assert!(differing.is_none(), "first difference: {differing:?}");
    }
}
