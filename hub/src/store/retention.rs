//! Retention: what is older than a cutoff leaves the store in bounded chunks, each its
//! own transaction, so ingest keeps its turn between them. SQLite reuses the freed
//! pages; the file does not shrink.
use super::{
    db::{Dialect, args},
    postgres,
    schema::{Dim, NANOS_PER_MINUTE},
    write::Batch,
};

/// A stored line that retention deleted.
pub struct ExpiredLine {
    pub stream: String,
    pub seq: u64,
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
    /// Deletes at most `limit` lines (records of every kind) older than `cutoff_ns`,
    /// oldest first, through the time index.
    pub fn expire_lines(
        &mut self,
        cutoff_ns: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<ExpiredLine>> {
        // By (stream, seq), which both stores index: PostgreSQL's partitioned records
        // have no row id of their own.
        self.tx
            .query(
                "DELETE FROM records WHERE (stream, seq) IN
                    (SELECT stream, seq FROM records WHERE ts < ?1 ORDER BY ts LIMIT ?2)
                 RETURNING stream, seq",
                args![cutoff_ns, limit as i64],
            )?
            .iter()
            .map(|r| {
                Ok(ExpiredLine {
                    stream: r.get(0)?,
                    seq: r.get(1)?,
                })
            })
            .collect()
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
        for table in ["events", "losses", "rejects"] {
            deleted += self.tx.execute(
                &format!("DELETE FROM {table} WHERE ts < ?1"),
                args![cutoff_ns],
            )?;
        }
        if self.tx.dialect() == Dialect::Postgres {
            // Empty by now: the lines went first, in chunks.
            for day in postgres::drop_partitions_before(&mut self.tx, cutoff_ns)? {
                self.forget_partition(day);
            }
        }
        Ok(deleted)
    }
}
