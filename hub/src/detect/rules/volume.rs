//! `volume`: requests per user, credential or client far above that entity's own
//! baseline. The baseline is an exponentially weighted mean and variance of the
//! request count per bucket (an hour by default); a bucket that passes
//! `mean + deviations * stddev` (and `min_requests`) alerts once. Scraping, bulk
//! export and a stolen key driven by a script look like this. Users and credentials
//! count only requests whose identity the server accepted; clients count every
//! request.
use serde::{Deserialize, Serialize};

use super::{Context, Rule, enabled};
use crate::{
    detect::{
        Finding, Note, Observation,
        settings::Span,
        tracker::{Persist, Tracker},
    },
    store::alerts::Severity,
    when::format_ns,
};

/// Empty buckets folded into the baseline at most, after a long silence.
const MAX_EMPTY_BUCKETS: i64 = 168;

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub severity: Severity,
    pub bucket: Span,
    /// Weight of the newest bucket in the baseline.
    pub alpha: f64,
    pub deviations: f64,
    /// Fewer requests than this in a bucket never alert.
    pub min_requests: u64,
    /// Buckets of history before the baseline is trusted.
    pub warmup: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::Medium,
            bucket: Span::hours(1),
            alpha: 0.2,
            deviations: 4.0,
            min_requests: 100,
            warmup: 24,
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Baseline {
    bucket: i64,
    count: u64,
    mean: f64,
    var: f64,
    buckets: u32,
    fired: bool,
}

impl Baseline {
    fn fold(&mut self, x: f64, alpha: f64) {
        if self.buckets == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let diff = x - self.mean;
            let incr = alpha * diff;
            self.mean += incr;
            self.var = (1.0 - alpha) * (self.var + diff * incr);
        }
        self.buckets = self.buckets.saturating_add(1);
    }
}

pub struct Volume {
    settings: Settings,
    entities: Tracker<Baseline>,
}

impl Volume {
    pub fn new(settings: Settings, max: usize) -> Self {
        Self {
            settings,
            entities: Tracker::new("volume", max),
        }
    }

    fn count(&mut self, entity: String, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        let s = &self.settings;
        let ts = obs.ts_ns();
        let bucket = ts - ts.rem_euclid(s.bucket.0);
        let b = self.entities.entry(&entity, ts);
        if b.buckets == 0 && b.count == 0 {
            b.bucket = bucket;
        }
        if bucket > b.bucket {
            let count = b.count as f64;
            b.fold(count, s.alpha);
            let empty = ((bucket - b.bucket) / s.bucket.0 - 1).clamp(0, MAX_EMPTY_BUCKETS);
            for _ in 0..empty {
                b.fold(0.0, s.alpha);
            }
            b.bucket = bucket;
            b.count = 0;
            b.fired = false;
        }
        b.count += 1;
        let limit = b.mean + s.deviations * b.var.sqrt();
        if b.fired || b.buckets < s.warmup || b.count < s.min_requests || (b.count as f64) <= limit
        {
            return;
        }
        b.fired = true;
        let note = format!(
            "{entity}: {} requests in the {} from {}, baseline {:.0} ± {:.0}",
            b.count,
            s.bucket,
            format_ns(bucket),
            b.mean,
            b.var.sqrt()
        );
        out.push(Finding {
            rule: "volume".to_owned(),
            severity: s.severity,
            entity,
            ts_ns: ts,
            window_ns: s.bucket.0,
            record: Some(obs.record()),
            note: Note::Aggregate(note),
        });
    }
}

impl Rule for Volume {
    fn observe(&mut self, _: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        // A user or credential is counted only when the server accepted it; a client
        // counts every request it sends.
        if obs.identity_accepted() {
            if let Some(user) = obs.user() {
                self.count(format!("user:{user}"), obs, out);
            }
            if let Some(credential) = &obs.fields.credential {
                self.count(format!("credential:{credential}"), obs, out);
            }
        }
        if let Some(client) = obs.client() {
            self.count(format!("client:{client}"), obs, out);
        }
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        vec![&mut self.entities]
    }
}
