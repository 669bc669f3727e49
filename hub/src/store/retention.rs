//! Retention: a day wholly older than the cutoff goes at once, its table (SQLite) or
//! partition (PostgreSQL) dropped; what is older than the cutoff in the day that
//! straddles it, or outside 2000-2199, is deleted in bounded chunks. Each step is its
//! own transaction, so ingest keeps its turn between them.
use hashbrown::HashMap;

use super::{
    days::{self, Part},
    db::{Dialect, args},
    postgres,
    schema::{Dim, NANOS_PER_MINUTE},
    write::Batch,
};

/// Lines of one stream that retention deleted.
pub struct ExpiredLines {
    pub stream: String,
    pub lines: u64,
    /// The highest seq among them.
    pub through_seq: u64,
}

/// Every rollup dimension: each is deleted through its primary key's prefix.
const DIMS: [Dim; 8] = [
    Dim::All,
    Dim::Template,
    Dim::Asset,
    Dim::User,
    Dim::Client,
    Dim::Credential,
    Dim::StatusClass,
    Dim::Stream,
];

impl Batch<'_> {
    /// Drops the oldest day that ends before `cutoff_ns`, if there is one; returns the
    /// lines it held.
    pub fn expire_day(&mut self, cutoff_ns: i64) -> anyhow::Result<Option<Vec<ExpiredLines>>> {
        // The catalog, not the writer's memory: other hubs may have made days too.
        // They make and drop them under the schema lock, and a hub storing a late line
        // in the day holds the day's table until it commits: with both locks, what is
        // counted below is all the day holds.
        let parts = match self.tx.dialect() {
            Dialect::Sqlite => days::sqlite_parts(&mut self.tx)?,
            Dialect::Postgres => {
                self.tx.execute(
                    "SELECT pg_advisory_xact_lock(?1)",
                    args![postgres::SCHEMA_LOCK],
                )?;
                postgres::partitions(&mut self.tx)?.into_iter().collect()
            }
        };
        let Some(part) = parts
            .into_iter()
            .filter(|p| matches!(p, Part::Day(_)) && p.span().1 <= cutoff_ns)
            .min()
        else {
            return Ok(None);
        };
        let table = part.table();
        if self.tx.dialect() == Dialect::Postgres {
            self.tx
                .batch(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))?;
        }
        let held = self
            .tx
            .query(
                &format!("SELECT stream, count(*), max(seq) FROM {table} GROUP BY stream"),
                args![],
            )?
            .iter()
            .map(|r| {
                Ok(ExpiredLines {
                    stream: r.get(0)?,
                    lines: r.get(1)?,
                    through_seq: r.get(2)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.tx.batch(&format!("DROP TABLE IF EXISTS {table}"))?;
        if self.tx.dialect() == Dialect::Sqlite {
            self.tx
                .execute("DELETE FROM record_days WHERE tbl = ?1", args![table])?;
        }
        self.forget_part(part);
        Ok(Some(held))
    }

    /// Deletes at most `limit` lines (records of every kind) older than `cutoff_ns`,
    /// oldest first, through the time index: those of the day the cutoff falls in,
    /// and of times before 2000.
    pub fn expire_lines(
        &mut self,
        cutoff_ns: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<ExpiredLines>> {
        let mut expired: HashMap<String, ExpiredLines> = HashMap::new();
        let mut left = limit;
        let mut tables = days::tables(&mut self.tx, None, Some(cutoff_ns - 1))?;
        tables.reverse();
        for table in tables {
            if left == 0 {
                break;
            }
            // By (stream, seq), which both stores index: PostgreSQL's partitioned
            // records have no row id of their own.
            let gone = self.tx.query(
                &format!(
                    "DELETE FROM {table} WHERE (stream, seq) IN
                        (SELECT stream, seq FROM {table} WHERE ts < ?1 ORDER BY ts LIMIT ?2)
                     RETURNING stream, seq"
                ),
                args![cutoff_ns, left as i64],
            )?;
            left -= gone.len();
            for row in gone {
                let (stream, seq): (String, u64) = (row.get(0)?, row.get(1)?);
                let lines = expired
                    .entry(stream.clone())
                    .or_insert_with(|| ExpiredLines {
                        stream,
                        lines: 0,
                        through_seq: 0,
                    });
                lines.lines += 1;
                lines.through_seq = lines.through_seq.max(seq);
            }
        }
        Ok(expired.into_values().collect())
    }

    /// Deletes the rollup buckets that end before `cutoff_ns`, and the alerts, integrity
    /// events, loss totals and rejected-line notes older than it. Returns the rows
    /// deleted.
    pub fn expire_rest(&mut self, cutoff_ns: i64) -> anyhow::Result<u64> {
        let minute = cutoff_ns.div_euclid(NANOS_PER_MINUTE);
        let mut deleted = 0;
        for dim in DIMS {
            deleted += self.tx.execute(
                "DELETE FROM rollup WHERE dim = ?1 AND minute < ?2",
                args![dim as i64, dim.bucket(minute)],
            )?;
        }
        deleted += self.tx.execute(
            "DELETE FROM rollup_users WHERE minute < ?1",
            args![Dim::User.bucket(minute)],
        )?;
        deleted += self
            .tx
            .execute("DELETE FROM alerts WHERE last_ns < ?1", args![cutoff_ns])?;
        for table in ["events", "losses", "rejects", "conflicts"] {
            deleted += self.tx.execute(
                &format!("DELETE FROM {table} WHERE ts < ?1"),
                args![cutoff_ns],
            )?;
        }
        Ok(deleted)
    }
}
