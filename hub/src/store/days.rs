//! Records by day. Each UTC day's records live in a table of their own, `records_d{N}`
//! (N days since the epoch): in SQLite a table of the store's file, in PostgreSQL a
//! partition of `records`. Retention then drops a whole day at once instead of deleting
//! its rows, and their entries in seven indexes, one by one.
//!
//! Record times outside 2000-2199 get no day of their own: a sensor's clock, or a forged
//! line, must not make the hub create a table per absurd day. SQLite keeps them in
//! `records_early` and `records_late`, PostgreSQL in its default partition. Lines
//! dated more than a day after the hub's clock never get here (`record::not_ahead`
//! rejects them), so forged lines can make no day after the day after tomorrow.
//!
//! SQLite's questions read the day tables themselves: [`tables`] names those a time
//! range needs, newest first, and [`source`] joins them into one for a question that
//! reads every matching row anyway. PostgreSQL prunes its partitions by itself, so
//! there both are `records`.
use super::db::{Db, Dialect, args};

pub const NANOS_PER_DAY: i64 = 86_400_000_000_000;
const FIRST_DAY: i64 = 10_957; // 2000-01-01
const LAST_DAY: i64 = 84_006; // 2199-12-31

/// Where a record is kept, in time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// Before 2000.
    Early,
    /// One UTC day, by days since the epoch.
    Day(i64),
    /// After 2199.
    Late,
}

impl Part {
    pub fn of(ts_ns: i64) -> Part {
        match ts_ns.div_euclid(NANOS_PER_DAY) {
            day if day < FIRST_DAY => Part::Early,
            day if day > LAST_DAY => Part::Late,
            day => Part::Day(day),
        }
    }

    pub fn table(self) -> String {
        match self {
            Part::Early => "records_early".to_owned(),
            Part::Day(day) => format!("records_d{day}"),
            Part::Late => "records_late".to_owned(),
        }
    }

    /// The part a table holds, if it is one of them.
    pub fn from_table(name: &str) -> Option<Part> {
        match name {
            "records_early" => Some(Part::Early),
            "records_late" => Some(Part::Late),
            _ => name
                .strip_prefix("records_d")
                .and_then(|d| d.parse().ok())
                .filter(|d| (FIRST_DAY..=LAST_DAY).contains(d))
                .map(Part::Day),
        }
    }

    /// The record times it holds: `start..end`.
    pub fn span(self) -> (i64, i64) {
        match self {
            Part::Early => (i64::MIN, FIRST_DAY * NANOS_PER_DAY),
            Part::Day(day) => (day * NANOS_PER_DAY, (day + 1) * NANOS_PER_DAY),
            Part::Late => ((LAST_DAY + 1) * NANOS_PER_DAY, i64::MAX),
        }
    }

    /// It may hold records of `from_ns..=to_ns` (open ends: unbounded).
    fn meets(self, from_ns: Option<i64>, to_ns: Option<i64>) -> bool {
        let (start, end) = self.span();
        from_ns.is_none_or(|from| from < end) && to_ns.is_none_or(|to| to >= start)
    }
}

/// The record tables of a SQLite store, in time order.
pub fn sqlite_parts(db: &mut Db) -> anyhow::Result<Vec<Part>> {
    let mut parts = db
        .query(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name GLOB 'records_*'",
            args![],
        )?
        .iter()
        .map(|row| row.get::<String>(0))
        .collect::<anyhow::Result<Vec<_>>>()?
        .iter()
        .filter_map(|name| Part::from_table(name))
        .collect::<Vec<_>>();
    parts.sort_unstable();
    Ok(parts)
}

/// The tables a question over `from_ns..=to_ns` reads, newest first: their record
/// times do not overlap, so reading them in turn reads the records newest first.
pub fn tables(
    db: &mut Db,
    from_ns: Option<i64>,
    to_ns: Option<i64>,
) -> anyhow::Result<Vec<String>> {
    if db.dialect() == Dialect::Postgres {
        return Ok(vec!["records".to_owned()]);
    }
    Ok(sqlite_parts(db)?
        .into_iter()
        .rev()
        .filter(|p| p.meets(from_ns, to_ns))
        .map(Part::table)
        .collect())
}

/// Compound SELECTs SQLite takes at most (`SQLITE_MAX_COMPOUND_SELECT`, 500).
const MAX_ARMS: usize = 400;

/// One FROM source over the tables of `from_ns..=to_ns`, named `records`, for questions
/// that read every matching row (counts, groups). SQLite pushes the question's WHERE
/// into each arm of the UNION ALL, so each day answers from its own indexes.
pub fn source(db: &mut Db, from_ns: Option<i64>, to_ns: Option<i64>) -> anyhow::Result<String> {
    let tables = tables(db, from_ns, to_ns)?;
    Ok(match tables.as_slice() {
        [] => "(SELECT * FROM records_early WHERE 0) AS records".to_owned(),
        [one] => format!("{one} AS records"),
        many => format!("({}) AS records", union(many)),
    })
}

/// `SELECT * FROM a UNION ALL SELECT * FROM b ...`, nested beyond [`MAX_ARMS`] tables.
fn union(tables: &[String]) -> String {
    if tables.len() <= MAX_ARMS {
        return tables
            .iter()
            .map(|t| format!("SELECT * FROM {t}"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
    }
    tables
        .chunks(MAX_ARMS)
        .map(|chunk| format!("SELECT * FROM ({})", union(chunk)))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// Runs `read(db, table, wanted)` on the tables of `from_ns..=to_ns`, newest first,
/// until `wanted` rows came back: a newest-first list reads only the days it shows.
pub fn newest_first<T>(
    db: &mut Db,
    (from_ns, to_ns): (Option<i64>, Option<i64>),
    wanted: u64,
    mut read: impl FnMut(&mut Db, &str, u64) -> anyhow::Result<Vec<T>>,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    for table in tables(db, from_ns, to_ns)? {
        let left = wanted - out.len() as u64;
        if left == 0 {
            break;
        }
        out.extend(read(db, &table, left)?);
    }
    Ok(out)
}

/// The tables that may hold seqs `from..=to` of `stream`, newest first: SQLite's
/// `record_days` keeps each stream's seq range per day table.
pub fn locate(db: &mut Db, stream: &str, (from, to): (u64, u64)) -> anyhow::Result<Vec<String>> {
    if db.dialect() == Dialect::Postgres {
        return Ok(vec!["records".to_owned()]);
    }
    db.query(
        "SELECT tbl FROM record_days WHERE stream = ?1 AND first_seq <= ?3 AND last_seq >= ?2
         ORDER BY tbl DESC",
        args![stream, from as i64, to as i64],
    )?
    .iter()
    .map(|row| row.get(0))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_time_and_name_their_tables() {
        let day = 20_425; // 2025-12-04
        let noon = day * NANOS_PER_DAY + NANOS_PER_DAY / 2;
        assert_eq!(Part::of(noon), Part::Day(day));
        assert_eq!(Part::of(day * NANOS_PER_DAY), Part::Day(day));
        assert_eq!(Part::of(day * NANOS_PER_DAY - 1), Part::Day(day - 1));
        assert_eq!(Part::of(0), Part::Early);
        assert_eq!(Part::of(-5), Part::Early);
        assert_eq!(Part::of(i64::MAX), Part::Late);
        for part in [Part::Early, Part::Day(day), Part::Late] {
            assert_eq!(Part::from_table(&part.table()), Some(part));
            let (start, end) = part.span();
            assert!(start < end);
        }
        assert!(Part::Early < Part::Day(FIRST_DAY) && Part::Day(LAST_DAY) < Part::Late);
        // Days beyond the range are no table's: the hub never made them.
        assert_eq!(Part::from_table("records_d5"), None);
        assert_eq!(Part::from_table("records_default"), None);
        assert_eq!(Part::from_table("records"), None);
    }

    #[test]
    fn a_part_meets_the_ranges_it_overlaps() {
        let day = Part::Day(20_000);
        let (start, end) = day.span();
        assert!(day.meets(None, None));
        assert!(day.meets(Some(end - 1), None));
        assert!(!day.meets(Some(end), None));
        assert!(day.meets(None, Some(start)));
        assert!(!day.meets(None, Some(start - 1)));
    }

    #[test]
    fn many_tables_nest_within_sqlites_compound_limit() {
        let tables: Vec<String> = (0..1000).map(|d| format!("t{d}")).collect();
        let sql = union(&tables);
        assert_eq!(sql.matches("SELECT * FROM t").count(), 1000);
        assert_eq!(sql.matches("SELECT * FROM (").count(), 3);
    }
}
