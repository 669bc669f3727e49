//! Bursts of failures:
//! - `auth_failures`: 401/403 from one client or against one user (brute force);
//! - `credential_stuffing`: failed logins for many distinct users from one client;
//! - `scanning`: 404s from one client (content discovery, vulnerability scanners);
//! - `server_errors`: 5xx on one endpoint (an outage, or an attack that breaks it).
use serde::{Deserialize, Serialize};

use super::{Context, Rule, enabled};
use crate::{
    detect::{
        Finding, Note, Observation,
        settings::Span,
        tracker::{Burst, Distinct, Persist, Tracker},
    },
    store::alerts::Severity,
};

macro_rules! burst_settings {
    ($name:ident, $severity:expr, $window:expr, $threshold:expr) => {
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            #[serde(default = "enabled")]
            pub enabled: bool,
            pub severity: Severity,
            pub window: Span,
            pub threshold: usize,
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    enabled: true,
                    severity: $severity,
                    window: $window,
                    threshold: $threshold,
                }
            }
        }
    };
}

burst_settings!(AuthSettings, Severity::High, Span::minutes(5), 20);
burst_settings!(StuffingSettings, Severity::High, Span::minutes(10), 5);
burst_settings!(ScanSettings, Severity::Medium, Span::minutes(5), 30);
burst_settings!(ServerErrorSettings, Severity::Medium, Span::minutes(5), 20);

fn denied(obs: &Observation<'_>) -> bool {
    matches!(obs.status(), 401 | 403)
}

/// A burst rule: `threshold` events of one entity within `window`.
struct Spec<'a> {
    rule: &'a str,
    severity: Severity,
    window: Span,
    threshold: usize,
    what: &'a str,
}

/// Counts one event of `entity`; a finding when the burst reaches the threshold.
fn burst(
    spec: &Spec<'_>,
    tracker: &mut Tracker<Burst>,
    entity: String,
    obs: &Observation<'_>,
    out: &mut Vec<Finding>,
) {
    let Spec {
        rule,
        severity,
        window,
        threshold,
        what,
    } = *spec;
    let count = tracker
        .entry(&entity, obs.ts_ns())
        .add(obs.ts_ns(), window.0, threshold);
    if count < threshold {
        return;
    }
    out.push(Finding {
        rule: rule.to_owned(),
        severity,
        entity: entity.clone(),
        ts_ns: obs.ts_ns(),
        window_ns: window.0,
        record: Some(obs.record()),
        note: Note::Aggregate(format!(
            "{entity}: {threshold} or more {what} within {window}, last {} {} -> {}",
            obs.fields.method.as_deref().unwrap_or("-"),
            obs.fields.path.as_deref().unwrap_or("-"),
            obs.status()
        )),
    });
}

pub struct AuthFailures {
    settings: AuthSettings,
    counts: Tracker<Burst>,
}

impl AuthFailures {
    pub fn new(settings: AuthSettings, max: usize) -> Self {
        Self {
            settings,
            counts: Tracker::new("auth_failures", max),
        }
    }
}

impl Rule for AuthFailures {
    fn observe(&mut self, _: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        if !denied(obs) {
            return;
        }
        let s = &self.settings;
        let entities = [
            obs.client().map(|c| format!("client:{c}")),
            obs.user().map(|u| format!("user:{u}")),
        ];
        for entity in entities.into_iter().flatten() {
            burst(
                &Spec {
                    rule: "auth_failures",
                    severity: s.severity,
                    window: s.window,
                    threshold: s.threshold,
                    what: "denied requests (401/403)",
                },
                &mut self.counts,
                entity,
                obs,
                out,
            );
        }
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        vec![&mut self.counts]
    }
}

pub struct Stuffing {
    settings: StuffingSettings,
    users: Tracker<Distinct>,
}

impl Stuffing {
    pub fn new(settings: StuffingSettings, max: usize) -> Self {
        Self {
            settings,
            users: Tracker::new("credential_stuffing", max),
        }
    }
}

impl Rule for Stuffing {
    fn observe(&mut self, _: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        let (Some(client), Some(user)) = (obs.client(), obs.user()) else {
            return;
        };
        if !denied(obs) {
            return;
        }
        let s = &self.settings;
        let entity = format!("client:{client}");
        let users = self.users.entry(&entity, obs.ts_ns());
        let distinct = users.add(user, obs.ts_ns(), s.window.0, s.threshold);
        if distinct < s.threshold {
            return;
        }
        let names: Vec<&str> = users.values().take(5).collect();
        out.push(Finding {
            rule: "credential_stuffing".to_owned(),
            severity: s.severity,
            entity: entity.clone(),
            ts_ns: obs.ts_ns(),
            window_ns: s.window.0,
            record: Some(obs.record()),
            note: Note::Aggregate(format!(
                "{entity}: failed logins for {distinct} or more users within {} ({}, ...)",
                s.window,
                names.join(", ")
            )),
        });
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        vec![&mut self.users]
    }
}

pub struct Scanning {
    settings: ScanSettings,
    counts: Tracker<Burst>,
}

impl Scanning {
    pub fn new(settings: ScanSettings, max: usize) -> Self {
        Self {
            settings,
            counts: Tracker::new("scanning", max),
        }
    }
}

impl Rule for Scanning {
    fn observe(&mut self, _: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        let Some(client) = obs.client() else { return };
        if obs.status() != 404 {
            return;
        }
        let s = &self.settings;
        burst(
            &Spec {
                rule: "scanning",
                severity: s.severity,
                window: s.window,
                threshold: s.threshold,
                what: "not-found responses (404)",
            },
            &mut self.counts,
            format!("client:{client}"),
            obs,
            out,
        );
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        vec![&mut self.counts]
    }
}

pub struct ServerErrors {
    settings: ServerErrorSettings,
    counts: Tracker<Burst>,
}

impl ServerErrors {
    pub fn new(settings: ServerErrorSettings, max: usize) -> Self {
        Self {
            settings,
            counts: Tracker::new("server_errors", max),
        }
    }
}

impl Rule for ServerErrors {
    fn observe(&mut self, _: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        if !(500..600).contains(&obs.status()) {
            return;
        }
        let s = &self.settings;
        burst(
            &Spec {
                rule: "server_errors",
                severity: s.severity,
                window: s.window,
                threshold: s.threshold,
                what: "server errors (5xx)",
            },
            &mut self.counts,
            format!("endpoint:{}", obs.endpoint()),
            obs,
            out,
        );
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        vec![&mut self.counts]
    }
}
