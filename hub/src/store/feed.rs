//! The detection feed of a PostgreSQL store, which several hubs may share.
//!
//! Hubs that share a consumer each ingest a share of every stream, so rules that count
//! (bursts, volumes, Sigma correlations) would count per hub. Instead each batch
//! appends what its detections would have met to this feed, in its own transaction,
//! and one hub, the leader, runs the detections over the feed in commit order and
//! saves how far it got with what they found and learned.
//!
//! Ids follow commit order: a batch takes its id under a transaction lock
//! ([`FEED_LOCK`]) that it holds until it commits, so an id taken later belongs to a
//! batch that commits later, and a reader that sees an id has seen every committed one
//! before it (a rolled-back batch's id is never seen, and none waits behind it).
use super::{
    Batch, Writer,
    db::{Tx, args},
    postgres::{DETECT_LEADER_LOCK, FEED_LOCK},
};

/// Appends `body` to the feed; last in a batch, since the lock waits for the commit.
pub(super) fn append(tx: &mut Tx<'_>, body: &[u8]) -> anyhow::Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock(?1)", args![FEED_LOCK])?;
    tx.execute(
        "INSERT INTO detect_feed (id, body) VALUES (nextval('detect_feed_ids'), ?1)",
        args![body],
    )?;
    Ok(())
}

impl Writer {
    /// Whether this connection runs the fleet's detections: the one that holds the
    /// leader's lock does. The lock is the session's, so it lasts until the connection
    /// closes (the hub stops or dies, or the server restarts), and then another hub's
    /// next try takes it.
    pub fn lead_detections(&mut self) -> anyhow::Result<bool> {
        self.db()?
            .query_row("SELECT pg_try_advisory_lock(?1)", args![DETECT_LEADER_LOCK])?
            .get(0)
    }

    /// The last feed id whose batch the detections saw; 0 before any.
    pub fn feed_position(&mut self) -> anyhow::Result<i64> {
        match self
            .db()?
            .query_opt("SELECT position FROM detect_feed_read", args![])?
        {
            Some(row) => row.get(0),
            None => Ok(0),
        }
    }

    /// How many batches' feed is stored after id `after`.
    pub fn feed_waiting(&mut self, after: i64) -> anyhow::Result<i64> {
        self.db()?
            .query_row(
                "SELECT count(*) FROM detect_feed WHERE id > ?1",
                args![after],
            )?
            .get(0)
    }

    /// At most `limit` batches' feed after id `after`, in commit order.
    pub fn feed_after(&mut self, after: i64, limit: i64) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
        self.db()?
            .query(
                "SELECT id, body FROM detect_feed WHERE id > ?1 ORDER BY id LIMIT ?2",
                args![after, limit],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect()
    }
}

impl Batch<'_> {
    /// This batch's feed, appended when it commits.
    pub fn feed(&mut self, body: Vec<u8>) {
        self.feed = Some(body);
    }

    /// The detections saw the feed through id `position`: it is kept with what they
    /// found, and what they saw goes.
    pub fn fed_through(&mut self, position: i64) -> anyhow::Result<()> {
        self.tx.execute(
            "INSERT INTO detect_feed_read (one, position) VALUES (TRUE, ?1)
             ON CONFLICT (one) DO UPDATE SET position = excluded.position",
            args![position],
        )?;
        self.tx
            .execute("DELETE FROM detect_feed WHERE id <= ?1", args![position])?;
        Ok(())
    }
}
