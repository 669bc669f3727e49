//! Alert delivery: NATS (`alerts.<rule>`), Prometheus Alertmanager's v2 API and a
//! generic JSON webhook. Each target keeps in the store the last alert revision it
//! delivered, so a target that is down gets every change once it is back (with
//! backoff between tries), a restarted hub does not send twice what was delivered,
//! and a storm of updates to one alert reaches a slow target as its latest state.
mod alertmanager;
mod nats;
mod payload;
mod webhook;

use std::{
    sync::mpsc::{Receiver, RecvTimeoutError},
    time::{Duration, Instant},
};

use anyhow::Context as _;

pub use self::{alertmanager::Alertmanager, nats::NatsAlerts, webhook::Webhook};

use crate::store::{
    Db, StoreAt,
    alerts::{self, Alert},
};

/// Alerts sent per request.
const BATCH: u32 = 200;
const POLL: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Somewhere alerts go.
pub trait Target: Send {
    /// Names the target in the store and in logs; never holds credentials.
    fn name(&self) -> String;
    fn send(&mut self, alerts: &[Alert]) -> anyhow::Result<()>;
}

struct Tracked {
    target: Box<dyn Target>,
    /// This hub holds the target's lock on the connection (see [`alerts::lead`]).
    leads: bool,
    next_try: Instant,
    backoff: Duration,
    last_error: Option<String>,
}

/// Delivers until `changed` is closed (the hub stops): after every batch that changed
/// alerts, and every couple of seconds for retries.
pub fn run(
    store: &StoreAt,
    targets: Vec<Box<dyn Target>>,
    changed: &Receiver<()>,
) -> anyhow::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let mut conn = store.open_deliveries()?;
    let mut tracked: Vec<Tracked> = targets
        .into_iter()
        .map(|target| Tracked {
            target,
            leads: false,
            next_try: Instant::now(),
            backoff: FIRST_BACKOFF,
            last_error: None,
        })
        .collect();
    loop {
        if conn.is_closed() {
            // The server went away (PostgreSQL restarted): connect again, and until
            // that works, try again at the next poll.
            match store.open_deliveries() {
                Ok(fresh) => {
                    conn = fresh;
                    // The locks went with the old connection.
                    for t in &mut tracked {
                        t.leads = false;
                    }
                }
                Err(e) => eprintln!("tracer-hub: alert deliveries: {e:#}; retrying"),
            }
        }
        for t in &mut tracked {
            if Instant::now() >= t.next_try {
                deliver(&mut conn, t);
            }
        }
        match changed.recv_timeout(POLL) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// Sends what `t` has not delivered yet, a batch at a time, if this hub delivers to
/// it; another hub sharing the store may (then this one tries again at each poll).
fn deliver(conn: &mut Db, t: &mut Tracked) {
    let name = t.target.name();
    if !t.leads {
        match alerts::lead(conn, &name) {
            Ok(leads) => t.leads = leads,
            Err(e) => eprintln!("tracer-hub: alert delivery to {name}: the store: {e:#}"),
        }
        if !t.leads {
            return;
        }
    }
    loop {
        let result = (|| {
            // Store errors say so: the target is not what failed.
            let done = alerts::delivered(conn, &name).context("reading the store")?;
            let pending = alerts::changed_after(conn, done, BATCH).context("reading the store")?;
            let Some(last) = pending.last().map(|a| a.revision) else {
                return Ok(false);
            };
            // Alerts of one revision may span batches: deliver up to the last whole one.
            let whole = if pending.len() as u32 == BATCH
                && pending.first().map(|a| a.revision) != Some(last)
            {
                last - 1
            } else {
                last
            };
            let send: Vec<Alert> = pending
                .into_iter()
                .filter(|a| a.revision <= whole)
                .collect();
            t.target.send(&send)?;
            alerts::mark_delivered(conn, &name, whole, None).context("writing the store")?;
            Ok::<_, anyhow::Error>(true)
        })();
        match result {
            Ok(true) => {
                if t.last_error.take().is_some() {
                    eprintln!("tracer-hub: alert delivery to {name} works again");
                }
                t.backoff = FIRST_BACKOFF;
            }
            Ok(false) => return,
            Err(e) => {
                let error = format!("{e:#}");
                if t.last_error.as_deref() != Some(error.as_str()) {
                    eprintln!(
                        "tracer-hub: alert delivery to {name} failed: {error}; retrying with backoff"
                    );
                }
                if let Ok(done) = alerts::delivered(conn, &name) {
                    let _ = alerts::mark_delivered(conn, &name, done, Some(&error));
                }
                t.last_error = Some(error);
                t.next_try = Instant::now() + t.backoff;
                t.backoff = (t.backoff * 2).min(MAX_BACKOFF);
                return;
            }
        }
    }
}

/// Several hubs on one PostgreSQL store (a throwaway cluster), each with the same
/// target configured.
#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, mpsc};

    use super::*;
    use crate::store::{
        PgTls,
        alerts::{NewAlert, Severity},
    };

    /// Remembers the ids it was sent, in a log shared by every hub's copy; the first
    /// send may be held until the test lets it finish.
    struct Receiver {
        log: Arc<Mutex<Vec<i64>>>,
        hold: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
    }

    impl Target for Receiver {
        fn name(&self) -> String {
            "receiver".to_owned()
        }

        fn send(&mut self, alerts: &[Alert]) -> anyhow::Result<()> {
            if let Some((entered, release)) = self.hold.take() {
                entered.send(()).unwrap();
                release.recv().unwrap();
            }
            self.log.lock().unwrap().extend(alerts.iter().map(|a| a.id));
            Ok(())
        }
    }

    fn tracked(target: Receiver) -> Tracked {
        Tracked {
            target: Box::new(target),
            leads: false,
            next_try: Instant::now(),
            backoff: FIRST_BACKOFF,
            last_error: None,
        }
    }

    fn finding(entity: &str, ts_ns: i64) -> NewAlert<'_> {
        NewAlert {
            rule: "burst",
            severity: Severity::Low,
            entity,
            ts_ns,
            window_ns: 10,
            summary: "s",
            record: None,
        }
    }

    fn postgres_store(postgres: &::tests::servers::Postgres) -> StoreAt {
        StoreAt::Postgres {
            url: postgres.url(),
            tls: PgTls::new(None, None).unwrap(),
        }
    }

    #[test]
    fn hubs_sharing_a_store_deliver_each_alert_once() {
        let postgres = ::tests::servers::Postgres::start().unwrap();
        let store = postgres_store(&postgres);
        let mut writer = store.open_writer().unwrap();
        let mut batch = writer.batch().unwrap();
        let raised: Vec<i64> = ["user:a", "user:b", "user:c"]
            .iter()
            .map(|e| batch.alert(&finding(e, 100)).unwrap())
            .collect();
        batch.commit(std::iter::empty()).unwrap();

        let log = Arc::new(Mutex::new(Vec::new()));
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let mut first = tracked(Receiver {
            log: log.clone(),
            hold: Some((entered_tx, release_rx)),
        });
        let mut second = tracked(Receiver {
            log: log.clone(),
            hold: None,
        });
        let mut first_conn = store.open_deliveries().unwrap();
        let mut second_conn = store.open_deliveries().unwrap();
        let sent_meanwhile = std::thread::scope(|scope| {
            let delivering = scope.spawn(|| deliver(&mut first_conn, &mut first));
            // The first hub is sending and has not moved its cursor yet: the second
            // must not send the same alerts meanwhile.
            entered.recv().unwrap();
            deliver(&mut second_conn, &mut second);
            let sent = log.lock().unwrap().clone();
            release.send(()).unwrap();
            delivering.join().unwrap();
            sent
        });
        assert_eq!(
            sent_meanwhile,
            Vec::<i64>::new(),
            "the second hub sent while the first did"
        );
        assert!(first.leads && !second.leads);
        assert_eq!(*log.lock().unwrap(), raised);

        // The first hub goes; the second takes the target over from where it was.
        drop(first_conn);
        let mut batch = writer.batch().unwrap();
        let later = batch.alert(&finding("user:d", 200)).unwrap();
        batch.commit(std::iter::empty()).unwrap();
        deliver(&mut second_conn, &mut second);
        assert!(second.leads);
        let mut expected = raised.clone();
        expected.push(later);
        assert_eq!(*log.lock().unwrap(), expected);
    }

    /// Two hubs' batches that change alerts at once get revisions in their commit
    /// order: a delivery that sent the first can never skip the second.
    #[test]
    fn concurrent_batches_get_alert_revisions_in_commit_order() {
        let postgres = ::tests::servers::Postgres::start().unwrap();
        let store = postgres_store(&postgres);
        let mut one = store.open_writer().unwrap();
        let mut other = store.open_writer().unwrap();
        let mut first = one.batch().unwrap();
        let a = first.alert(&finding("user:a", 100)).unwrap();
        let b = std::thread::scope(|scope| {
            let second = scope.spawn(|| {
                let mut batch = other.batch().unwrap();
                let b = batch.alert(&finding("user:b", 100)).unwrap();
                batch.commit(std::iter::empty()).unwrap();
                b
            });
            // Gives the other batch time to read a revision before this one commits,
            // which it could without the lock.
            std::thread::sleep(Duration::from_millis(300));
            first.commit(std::iter::empty()).unwrap();
            second.join().unwrap()
        });
        let mut conn = store.open_reader().unwrap();
        let revision = |conn: &mut Db, id| alerts::get(conn, id).unwrap().unwrap().revision;
        assert!(revision(&mut conn, b) > revision(&mut conn, a));
    }
}
