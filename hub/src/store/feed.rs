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

    /// Connections made again since this writer was opened (the server closed one):
    /// a session lock taken before is not held now.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
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

    /// The detections saw the feed after id `from` through id `to`: that is kept with
    /// what they found, and what they saw goes. Fails if the stored position is not
    /// `from`: another hub ran them meanwhile. (The leader's lock is its session's, and
    /// a connection made again after the server dropped it no longer holds it: the
    /// check keeps a batch from being counted twice whatever the lock did.)
    pub fn fed_through(&mut self, from: i64, to: i64) -> anyhow::Result<()> {
        self.tx.execute(
            "INSERT INTO detect_feed_read (one, position) VALUES (TRUE, 0)
             ON CONFLICT (one) DO NOTHING",
            args![],
        )?;
        let moved = self.tx.execute(
            "UPDATE detect_feed_read SET position = ?2 WHERE position = ?1",
            args![from, to],
        )?;
        anyhow::ensure!(
            moved == 1,
            "another hub ran the detections past feed entry {from} meanwhile"
        );
        self.tx
            .execute("DELETE FROM detect_feed WHERE id <= ?1", args![to])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PgTls, StoreAt};

    /// Ids follow commit order, and the position moves only from where it stands: a
    /// leader that lost its lock with its connection, and ran on from an older
    /// position, fails instead of counting batches again.
    #[test]
    fn the_feed_is_read_once_in_commit_order_postgres() {
        let postgres = ::tests::servers::Postgres::start().unwrap();
        let store = StoreAt::Postgres {
            url: postgres.url(),
            tls: PgTls::new(None, None).unwrap(),
        };
        // A batch that took its id and has not committed yet holds back the next one,
        // which would otherwise take a later id, commit first, and be read (and the
        // position moved past the earlier id) before the earlier batch was visible.
        let mut second = store.open_writer().unwrap();
        let mut holding = store.open_deliveries().unwrap();
        let mut tx = holding.begin().unwrap();
        super::append(&mut tx, b"first").unwrap();
        std::thread::scope(|scope| {
            let next = scope.spawn(|| {
                let mut batch = second.batch().unwrap();
                batch.feed(b"second".to_vec());
                batch.commit(std::iter::empty()).unwrap();
            });
            std::thread::sleep(std::time::Duration::from_millis(500));
            assert!(!next.is_finished(), "the next batch did not wait");
            tx.commit().unwrap();
            next.join().unwrap();
        });
        let mut reader = store.open_writer().unwrap();
        let fed: Vec<Vec<u8>> = reader
            .feed_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|(_, body)| body)
            .collect();
        assert_eq!(fed, [b"first".to_vec(), b"second".to_vec()]);

        let ids: Vec<i64> = reader
            .feed_after(0, 10)
            .unwrap()
            .iter()
            .map(|f| f.0)
            .collect();
        let mut batch = reader.batch().unwrap();
        batch.fed_through(0, ids[0]).unwrap();
        batch.commit(std::iter::empty()).unwrap();
        assert_eq!(reader.feed_position().unwrap(), ids[0]);
        assert_eq!(reader.feed_waiting(ids[0]).unwrap(), 1);
        let mut stale = reader.batch().unwrap();
        let again = stale.fed_through(0, ids[1]).unwrap_err().to_string();
        assert!(again.contains("another hub ran the detections"), "{again}");
    }
}
