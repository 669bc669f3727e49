//! One batch of lines through verify, enrich and store, committed as one transaction.
//! Both `import` and `serve` drive it; the live feed and the counters read its outcome.
use std::net::IpAddr;

use crate::{
    detect::{Detector, Observation},
    enrich::{Enricher, Enrichment, RequestView},
    ingest::{Line, record},
    query::records::Row,
    store::{Entry, Writer},
    verify::{Chains, Event, EventKind, Link, keys::Keys},
    when::format_ns,
};

/// What one batch did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stored: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    /// Lines older than the retention that were deleted already: not stored again.
    pub expired: u64,
    pub rejected: u64,
    pub events: Vec<Event>,
    /// Ids of the alerts opened or updated.
    pub alerts: Vec<i64>,
    /// The access records stored, as lists show them, for the live feed.
    pub rows: Vec<Row>,
}

impl Outcome {
    pub fn add(&mut self, other: Outcome) {
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.conflicts += other.conflicts;
        self.expired += other.expired;
        self.rejected += other.rejected;
        self.events.extend(other.events);
        self.alerts.extend(other.alerts);
        self.rows.extend(other.rows);
    }
}

/// What one retention step deleted.
#[derive(Debug, Default)]
pub struct Expiry {
    pub lines: u64,
    /// Rollup buckets, alerts, integrity events, loss totals and rejected-line notes.
    pub other_rows: u64,
    /// Nothing older than the cutoff is left.
    pub done: bool,
}

/// Builds the detector from what the store holds.
pub type DetectorFromStore = Box<dyn Fn(&mut Writer) -> anyhow::Result<Detector> + Send>;

pub struct Pipeline {
    keys: Keys,
    chains: Chains,
    enricher: Enricher,
    writer: Writer,
    detector: Detector,
    /// The newest record time ingested.
    newest_ns: i64,
    /// Rebuilds the detector from the store after a failed batch.
    detector_from_store: DetectorFromStore,
}

impl Pipeline {
    /// `detector` is called now and after a failed batch, to resume from what the
    /// store holds.
    pub fn new(
        keys: Keys,
        enricher: Enricher,
        mut writer: Writer,
        detector: DetectorFromStore,
    ) -> anyhow::Result<Self> {
        let chains = Chains::new(keys.clone(), writer.streams()?);
        Ok(Self {
            keys,
            chains,
            enricher,
            detector: detector(&mut writer)?,
            newest_ns: 0,
            detector_from_store: detector,
            writer,
        })
    }

    /// See [`Writer::analyze`].
    pub fn analyze(&mut self) -> anyhow::Result<()> {
        self.writer.analyze()
    }

    pub fn enricher(&mut self) -> &mut Enricher {
        &mut self.enricher
    }

    /// Verifies, enriches and stores `lines` in one transaction. On error nothing of
    /// the batch is stored and the chain state is read back from the store, so the
    /// same lines can be given again.
    pub fn ingest<'a>(
        &mut self,
        lines: impl IntoIterator<Item = &'a Line>,
    ) -> anyhow::Result<Outcome> {
        let result = self.try_ingest(lines);
        if result.is_err() {
            self.resume_from_store()?;
        }
        result
    }

    pub fn newest_ns(&self) -> i64 {
        self.newest_ns
    }

    fn resume_from_store(&mut self) -> anyhow::Result<()> {
        self.chains = Chains::new(self.keys.clone(), self.writer.streams()?);
        self.detector = (self.detector_from_store)(&mut self.writer)?;
        Ok(())
    }

    /// Runs the clock-driven detections (silent sensors) at `now_ns` and stores what
    /// they find; returns the alerts opened or updated.
    pub fn tick(&mut self, now_ns: i64) -> anyhow::Result<Vec<i64>> {
        let alertings = self.detector.tick(now_ns);
        if alertings.is_empty() {
            return Ok(Vec::new());
        }
        let result = (|| {
            let mut batch = self.writer.batch()?;
            let mut ids = Vec::new();
            for alerting in &alertings {
                ids.push(batch.alert(&alerting.new_alert())?);
            }
            self.detector.save(&mut batch)?;
            batch.commit(std::iter::empty())?;
            Ok(ids)
        })();
        if result.is_err() {
            self.resume_from_store()?;
        }
        result
    }

    /// One retention step: deletes at most `limit` lines older than `cutoff_ns` in one
    /// transaction, and, once none are left, the older rollups, alerts and notes. The
    /// chain state remembers what went, so those lines are not stored again. Call it
    /// until [`Expiry::done`].
    pub fn expire(&mut self, cutoff_ns: i64, limit: usize) -> anyhow::Result<Expiry> {
        let result = (|| {
            let mut batch = self.writer.batch()?;
            let lines = batch.expire_lines(cutoff_ns, limit)?;
            let done = lines.len() < limit;
            let other_rows = if done {
                batch.expire_rest(cutoff_ns)?
            } else {
                0
            };
            let mut touched = Vec::new();
            for line in &lines {
                if let Some(state) = batch.claim_stream(&line.stream)? {
                    self.chains.reload(&line.stream, state);
                }
                self.chains.expire(&line.stream, line.seq, cutoff_ns);
                touched.push(line.stream.as_str());
            }
            touched.sort_unstable();
            touched.dedup();
            let streams = self.chains.streams();
            batch.commit(touched.iter().filter_map(|s| streams.get_key_value(*s)))?;
            Ok(Expiry {
                lines: lines.len() as u64,
                other_rows,
                done,
            })
        })();
        if result.is_err() {
            self.resume_from_store()?;
        }
        result
    }

    fn try_ingest<'a>(
        &mut self,
        lines: impl IntoIterator<Item = &'a Line>,
    ) -> anyhow::Result<Outcome> {
        let mut outcome = Outcome::default();
        let mut batch = self.writer.batch()?;
        let mut touched = Vec::new();
        let mut filled = Vec::new();
        for line in lines {
            let bytes = match &line.bytes {
                Ok(bytes) => bytes,
                Err(too_long) => {
                    batch.reject(
                        &line.origin,
                        "longer than the hub accepts (1 MiB)",
                        &[],
                        too_long.bytes,
                    )?;
                    outcome.rejected += 1;
                    continue;
                }
            };
            let fields = match record::parse(bytes) {
                Ok(fields) => fields,
                Err(malformed) => {
                    batch.reject(
                        &line.origin,
                        &malformed.to_string(),
                        bytes,
                        bytes.len() as u64,
                    )?;
                    outcome.rejected += 1;
                    continue;
                }
            };
            if let Some(state) = batch.claim_stream(&fields.stream)? {
                self.chains.reload(&fields.stream, state);
            }
            let verdict =
                match self
                    .chains
                    .check(bytes, &fields.stream, fields.ts_ns, &mut batch)?
                {
                    Ok(verdict) => verdict,
                    Err(reason) => {
                        let event = Event {
                            stream: fields.stream.clone(),
                            seq: fields.seq,
                            kind: EventKind::Unsealed,
                            detail: format!("{} is not a sealed line: {reason}", line.origin),
                        };
                        batch.event(&event, fields.ts_ns)?;
                        for alerting in self.detector.event(&event, fields.ts_ns) {
                            outcome.alerts.push(batch.alert(&alerting.new_alert())?);
                        }
                        batch.reject(
                            &line.origin,
                            "not a sealed line",
                            bytes,
                            bytes.len() as u64,
                        )?;
                        outcome.events.push(event);
                        outcome.rejected += 1;
                        continue;
                    }
                };
            for event in &verdict.events {
                batch.event(event, fields.ts_ns)?;
                for alerting in self.detector.event(event, fields.ts_ns) {
                    outcome.alerts.push(batch.alert(&alerting.new_alert())?);
                }
            }
            outcome.events.extend(verdict.events.iter().cloned());
            match verdict.link {
                Link::Duplicate => {
                    outcome.duplicates += 1;
                    continue;
                }
                Link::Conflict => {
                    outcome.conflicts += 1;
                    continue;
                }
                Link::Expired => {
                    outcome.expired += 1;
                    continue;
                }
                Link::Linked
                | Link::Joined
                | Link::AfterGap
                | Link::Filled
                | Link::Restart
                | Link::Broken => {}
            }
            let enrichment = self.enricher.enrich(&view(&fields));
            batch.insert(&Entry {
                fields: &fields,
                verdict: &verdict,
                enrichment: &enrichment,
                line: bytes,
            })?;
            if let Some(loss) = &fields.loss {
                let event = Event {
                    stream: fields.stream.clone(),
                    seq: fields.seq,
                    kind: EventKind::Loss,
                    detail: format!("{} {}: {}", loss.source, loss.reason, loss.count),
                };
                batch.event(&event, fields.ts_ns)?;
                for alerting in self.detector.event(&event, fields.ts_ns) {
                    outcome.alerts.push(batch.alert(&alerting.new_alert())?);
                }
                outcome.events.push(event);
            }
            if let Some(range) = verdict.covers {
                batch.cover(&fields.stream, range)?;
            }
            // Any verified line the sensor wrote says it runs, a checkpoint of an idle
            // host's sensor included; one that failed verification proves nothing.
            let forged = verdict.link == Link::Broken
                || verdict.events.iter().any(|e| e.kind.discredits_line());
            if fields.kind != Some(tracer_audit::Kind::Access) && !forged {
                self.detector.heard(&fields.stream, fields.ts_ns);
            }
            if verdict.link == Link::Filled {
                filled.push((fields.stream.clone(), fields.seq));
            }
            self.newest_ns = self.newest_ns.max(fields.ts_ns);
            if fields.kind == Some(tracer_audit::Kind::Access) {
                let observation = Observation {
                    fields: &fields,
                    enrichment: &enrichment,
                    link: verdict.link,
                };
                for alerting in self.detector.observe(&observation) {
                    outcome.alerts.push(batch.alert(&alerting.new_alert())?);
                }
                outcome.rows.push(row(&fields, &enrichment, verdict.link));
            }
            touched.push(fields.stream);
        }
        // Late lines take the proof of the line after them, so the last goes first.
        filled.sort_by(|a, b| b.cmp(a));
        for (stream, seq) in &filled {
            batch.carry_cover_back(stream, *seq)?;
        }
        // A stream whose every gap is now filled lost nothing: its gap alert is over
        // (JetStream redelivering a killed hub's batch late raises one).
        filled.dedup_by(|a, b| a.0 == b.0);
        for (stream, _) in &filled {
            let closed = self
                .chains
                .streams()
                .get(stream)
                .is_some_and(|s| s.gaps.is_empty() && !s.gaps_truncated);
            if let Some((rule, entity)) = self.detector.gaps_filled(stream).filter(|_| closed) {
                outcome
                    .alerts
                    .extend(batch.resolve_alerts(rule, &entity, self.newest_ns)?);
            }
        }
        // A silent sensor that speaks again is no longer silent.
        for (rule, entity) in self.detector.revived() {
            outcome
                .alerts
                .extend(batch.resolve_alerts(rule, &entity, self.newest_ns)?);
        }
        self.detector.save(&mut batch)?;
        outcome.alerts.sort_unstable();
        outcome.alerts.dedup();
        touched.sort();
        touched.dedup();
        let streams = self.chains.streams();
        outcome.stored = batch.commit(touched.iter().filter_map(|s| streams.get_key_value(s)))?;
        Ok(outcome)
    }
}

fn view(fields: &record::Fields) -> RequestView<'_> {
    RequestView {
        host: fields.host.as_deref(),
        method: fields.method.as_deref(),
        path: fields.path.as_deref(),
        client: fields.client,
        user: fields.user(),
    }
}

fn row(fields: &record::Fields, enrichment: &Enrichment, link: Link) -> Row {
    Row {
        stream: fields.stream.clone(),
        seq: fields.seq,
        ts: format_ns(fields.ts_ns),
        method: fields.method.clone(),
        host: fields.host.clone(),
        path: fields.path.clone(),
        template: Some(enrichment.template.clone()),
        status: fields.status,
        user: fields.user().map(str::to_owned),
        credential: fields.credential.clone(),
        client: fields.client.as_ref().map(IpAddr::to_string),
        country: enrichment
            .place
            .as_ref()
            .and_then(|p| p.geo.country.clone()),
        asset: enrichment.asset.as_ref().map(|a| a.name.clone()),
        duration_ns: fields.duration_ns,
        covered: false,
        chain: link.as_str().to_owned(),
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
