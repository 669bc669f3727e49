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
                Ok(fresh) => conn = fresh,
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

/// Sends what `t` has not delivered yet, a batch at a time.
fn deliver(conn: &mut Db, t: &mut Tracked) {
    let name = t.target.name();
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
