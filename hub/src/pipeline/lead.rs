//! The fleet's detections: one hub among those sharing a PostgreSQL store runs them
//! over every hub's batches, in commit order, from the store's detection feed.
//!
//! Whichever hub holds the leader's lock leads; the others try at each step, so when
//! the leader stops or dies, another takes over where the store says the detections
//! got to. What the leader found, learned and read through is committed together, so a
//! batch's records are counted once however leadership moves.
use super::{DetectorFromStore, Found, conclude, feed, observe};
use crate::{detect::Detector, enrich::Enricher, store::Writer, when::now_ns};

/// Batches of the feed read per transaction.
const FEED_BATCHES: i64 = 4;

pub struct Leader {
    writer: Writer,
    enricher: Enricher,
    detector_from_store: DetectorFromStore,
    /// While this hub leads: the detections and the feed id they saw through.
    leading: Option<Leading>,
}

struct Leading {
    detector: Detector,
    position: i64,
    /// The writer's reconnects when the lock was taken: after another, the lock is
    /// gone with the old connection.
    reconnects: u64,
    /// The newest record time the detections met; resolutions are dated by it.
    newest_ns: i64,
}

/// What one [`Leader::step`] did.
#[derive(Debug, Default)]
pub struct Stepped {
    /// This hub leads the detections.
    pub leads: bool,
    /// Alerts opened, changed or resolved.
    pub alerts: Vec<i64>,
    /// More of the feed waits: step again at once.
    pub more: bool,
    /// Access records whose lines did not parse (left out).
    pub unreadable: usize,
    /// Feed entries that could not be read at all, each with why (left out: reading
    /// one again would fail again, and stop the detections for good).
    pub damaged: Vec<String>,
}

impl Leader {
    pub fn new(writer: Writer, enricher: Enricher, detector_from_store: DetectorFromStore) -> Self {
        Self {
            writer,
            enricher,
            detector_from_store,
            leading: None,
        }
    }

    /// Reloads the enrichment's files that changed, as ingest does with its own.
    pub fn refresh_enrichment(&mut self) {
        self.enricher.refresh();
    }

    /// While this hub leads: how many batches of the feed wait for the detections.
    /// (Ingest does not wait for them, so this is how far the alerts lag.)
    pub fn backlog(&mut self) -> anyhow::Result<Option<i64>> {
        let Some(leading) = &self.leading else {
            return Ok(None);
        };
        self.writer.feed_waiting(leading.position).map(Some)
    }

    /// Takes the lead if no hub holds it; while leading, runs the detections over the
    /// next batches of the feed, and with `clock` (now) the clock-driven ones, and commits
    /// what they found with how far they got. After an error the next step starts again
    /// from what the store holds.
    pub fn step(&mut self, clock: Option<i64>) -> anyhow::Result<Stepped> {
        if self
            .leading
            .as_ref()
            .is_some_and(|l| l.reconnects != self.writer.reconnects())
        {
            self.leading = None;
        }
        if self.leading.is_none() {
            if !self.writer.lead_detections()? {
                return Ok(Stepped::default());
            }
            self.leading = Some(Leading {
                detector: (self.detector_from_store)(&mut self.writer)?,
                position: self.writer.feed_position()?,
                reconnects: self.writer.reconnects(),
                newest_ns: 0,
            });
        }
        let result = self.run(clock);
        if result.is_err() {
            self.leading = None;
        }
        result
    }

    fn run(&mut self, clock: Option<i64>) -> anyhow::Result<Stepped> {
        let Some(leading) = &mut self.leading else {
            return Ok(Stepped::default());
        };
        let fed = self.writer.feed_after(leading.position, FEED_BATCHES)?;
        let ticked = clock.map_or_else(Vec::new, |now| leading.detector.tick(now));
        let mut stepped = Stepped {
            leads: true,
            more: fed.len() as i64 == FEED_BATCHES,
            ..Stepped::default()
        };
        if fed.is_empty() && ticked.is_empty() {
            return Ok(stepped);
        }
        let mut batch = self.writer.batch()?;
        let Leading {
            detector,
            position,
            newest_ns,
            ..
        } = leading;
        let mut through = *position;
        stepped.alerts = conclude(&mut batch, detector, &ticked, &[], *newest_ns)?;
        for (id, body) in fed {
            let (messages, unreadable) = match feed::decode(&body, &self.enricher) {
                Ok(decoded) => decoded,
                Err(e) => {
                    stepped.damaged.push(format!("feed entry {id}: {e:#}"));
                    through = id;
                    continue;
                }
            };
            stepped.unreadable += unreadable;
            let mut alertings = Vec::new();
            let mut closed = Vec::new();
            for message in messages {
                match message {
                    feed::Fed::Found(found) => {
                        if let Some(ts_ns) = time_of(&found) {
                            *newest_ns = (*newest_ns).max(ts_ns);
                        }
                        observe(detector, &found, &mut alertings);
                    }
                    feed::Fed::GapsClosed(stream) => closed.push(stream),
                }
            }
            let closed: Vec<&str> = closed.iter().map(String::as_str).collect();
            let dated = if *newest_ns > 0 {
                *newest_ns
            } else {
                clock.unwrap_or_else(now_ns)
            };
            stepped
                .alerts
                .extend(conclude(&mut batch, detector, &alertings, &closed, dated)?);
            through = id;
        }
        batch.fed_through(*position, through)?;
        batch.commit(std::iter::empty())?;
        *position = through;
        stepped.alerts.sort_unstable();
        stepped.alerts.dedup();
        Ok(stepped)
    }
}

/// The record time a message carries.
fn time_of(found: &Found) -> Option<i64> {
    match found {
        Found::Access { access, .. } => Some(access.fields.ts_ns),
        Found::Event(_, ts_ns) | Found::Heard(_, ts_ns) | Found::Seen(_, ts_ns) => Some(*ts_ns),
        Found::Retract(_) => None,
    }
}
