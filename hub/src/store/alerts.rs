//! Alerts as the store keeps them: grouped per rule and entity over the rule's window,
//! with the first records that triggered them, and the per-target delivery cursors.
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};
use serde::{Deserialize, Serialize};

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

fn alert(row: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
    let records: String = row.get(8)?;
    Ok(Alert {
        id: row.get(0)?,
        rule: row.get(1)?,
        severity: Severity::from_rank(row.get(2)?),
        entity: row.get(3)?,
        first_ns: row.get(4)?,
        last_ns: row.get(5)?,
        count: row.get::<_, i64>(6)? as u64,
        summary: row.get(7)?,
        records: serde_json::from_str(&records).unwrap_or_default(),
        revision: row.get(9)?,
        window_ns: row.get(10)?,
        resolved_ns: row.get(11)?,
        raised_ns: row.get(12)?,
    })
}

/// Groups `new` into the open alert of its rule and entity, or opens one; returns the
/// alert's id.
pub(super) fn upsert(
    tx: &Transaction<'_>,
    new: &NewAlert<'_>,
    revision: i64,
) -> anyhow::Result<i64> {
    let open: Option<(i64, i64, i64, String)> = tx
        .prepare_cached(
            "SELECT id, severity, last_ns, records FROM alerts
             WHERE rule = ?1 AND entity = ?2 AND resolved_ns IS NULL
                AND last_ns >= ?3 - window_ns AND first_ns <= ?3 + window_ns
             ORDER BY last_ns DESC LIMIT 1",
        )?
        .query_row(params![new.rule, new.entity, new.ts_ns], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let link = new.record.map(|(s, q)| (s.to_owned(), q));
    match open {
        Some((id, severity, last_ns, records)) => {
            let mut linked: Vec<(String, u64)> = serde_json::from_str(&records).unwrap_or_default();
            if let Some(link) = link
                && linked.len() < MAX_LINKED_RECORDS
                && !linked.contains(&link)
            {
                linked.push(link);
            }
            let severity = Severity::from_rank(severity).max(new.severity);
            // The summary follows the latest finding: it says what is happening now.
            let summary_changes = new.ts_ns >= last_ns;
            tx.prepare_cached(
                "UPDATE alerts SET severity = ?2, first_ns = MIN(first_ns, ?3),
                    last_ns = MAX(last_ns, ?3), count = count + 1,
                    summary = CASE WHEN ?4 THEN ?5 ELSE summary END, records = ?6, revision = ?7
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                severity as i64,
                new.ts_ns,
                summary_changes,
                new.summary,
                serde_json::to_string(&linked)?,
                revision
            ])?;
            Ok(id)
        }
        None => {
            let linked: Vec<(String, u64)> = link.into_iter().collect();
            tx.prepare_cached(
                "INSERT INTO alerts (rule, severity, entity, first_ns, last_ns, window_ns, count,
                    summary, records, revision, raised_ns)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, 1, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                new.rule,
                new.severity as i64,
                new.entity,
                new.ts_ns,
                new.window_ns,
                new.summary,
                serde_json::to_string(&linked)?,
                revision,
                crate::when::now_ns()
            ])?;
            Ok(tx.last_insert_rowid())
        }
    }
}

/// Resolves the open alerts of `rule` on `entity` at `ts_ns`; returns their ids.
pub(super) fn resolve(
    tx: &Transaction<'_>,
    rule: &str,
    entity: &str,
    ts_ns: i64,
    revision: i64,
) -> anyhow::Result<Vec<i64>> {
    let mut stmt = tx.prepare_cached(
        "UPDATE alerts SET resolved_ns = MAX(?3, last_ns), revision = ?4
         WHERE rule = ?1 AND entity = ?2 AND resolved_ns IS NULL RETURNING id",
    )?;
    let ids = stmt.query_map(params![rule, entity, ts_ns, revision], |r| r.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
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
pub fn list(conn: &Connection, filter: &AlertFilter) -> anyhow::Result<Vec<Alert>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM alerts
         WHERE last_ns >= ?1 AND (?2 IS NULL OR rule = ?2) AND severity >= ?3
         ORDER BY last_ns DESC, id DESC LIMIT ?4"
    ))?;
    let rows = stmt.query_map(
        params![
            filter.since_ns.unwrap_or(i64::MIN),
            filter.rule,
            filter.min_severity.map_or(0, |s| s as i64),
            filter.limit
        ],
        alert,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One alert by id.
pub fn get(conn: &Connection, id: i64) -> anyhow::Result<Option<Alert>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM alerts WHERE id = ?1"),
            [id],
            alert,
        )
        .optional()?)
}

/// Alerts changed after `revision`, oldest change first.
pub fn changed_after(conn: &Connection, revision: i64, limit: u32) -> anyhow::Result<Vec<Alert>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM alerts WHERE revision > ?1 ORDER BY revision, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![revision, limit], alert)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The revision `target` delivered last; 0 before its first delivery.
pub fn delivered(conn: &Connection, target: &str) -> anyhow::Result<i64> {
    Ok(conn
        .query_row(
            "SELECT revision FROM deliveries WHERE target = ?1",
            [target],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Records how far `target` got, and its last error, if the last try failed.
pub fn mark_delivered(
    conn: &Connection,
    target: &str,
    revision: i64,
    error: Option<&str>,
) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT INTO deliveries (target, revision, failures, last_error) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (target) DO UPDATE SET revision = excluded.revision,
            failures = CASE WHEN excluded.last_error IS NULL THEN 0 ELSE failures + 1 END,
            last_error = excluded.last_error",
    )?
    .execute(params![target, revision, i64::from(error.is_some()), error])?;
    Ok(())
}
