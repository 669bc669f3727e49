//! Least privilege and broken authentication: the server said yes (2xx) when it
//! should not have.
//! - `least_privilege`: an asset with `allowed_roles` served to an identity that holds
//!   none of them and is not in its `allowed_users`;
//! - `broken_auth`: a bearer token that failed verification (expired, bad signature,
//!   unknown key, untrusted issuer, wrong audience, not yet valid) was accepted;
//! - `disabled_user`: a user the directory marks disabled still gets 2xx.
use serde::{Deserialize, Serialize};

use super::{Context, Rule, enabled, sensitive::allowed};
use crate::{
    detect::{Finding, Note, Observation, settings::Span, tracker::Persist},
    enrich::Status,
    store::alerts::Severity,
};

/// Failure reasons that mean the token must not have been accepted. `unverified`
/// (the sensor has no keys) and `malformed` (an opaque token the server may check
/// itself) say nothing about the server.
const REJECTABLE: &[&str] = &[
    "expired",
    "bad_signature",
    "unknown_key",
    "untrusted_issuer",
    "wrong_audience",
    "not_yet_valid",
];

macro_rules! simple_settings {
    ($name:ident, $severity:expr) => {
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            #[serde(default = "enabled")]
            pub enabled: bool,
            pub severity: Severity,
            pub window: Span,
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    enabled: true,
                    severity: $severity,
                    window: Span::hours(1),
                }
            }
        }
    };
}

simple_settings!(LeastSettings, Severity::High);
simple_settings!(BrokenSettings, Severity::Critical);
simple_settings!(DisabledSettings, Severity::High);

fn finding(
    rule: &str,
    severity: Severity,
    window: Span,
    obs: &Observation<'_>,
    note: String,
) -> Finding {
    Finding {
        rule: rule.to_owned(),
        severity,
        entity: obs
            .actor()
            .or_else(|| obs.client().map(|c| format!("client:{c}")))
            .unwrap_or_else(|| "unknown".to_owned()),
        ts_ns: obs.ts_ns(),
        window_ns: window.0,
        record: Some(obs.record()),
        note: Note::Access(note),
    }
}

pub struct LeastPrivilege {
    settings: LeastSettings,
}

impl LeastPrivilege {
    pub fn new(settings: LeastSettings) -> Self {
        Self { settings }
    }
}

impl Rule for LeastPrivilege {
    fn observe(&mut self, _: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        let Some(asset) = &obs.enrichment.asset else {
            return;
        };
        if asset.allowed_roles.is_empty() || !obs.succeeded() || allowed(asset, obs) {
            return;
        }
        let s = &self.settings;
        let held = if obs.fields.roles.is_empty() {
            "no roles".to_owned()
        } else {
            format!("roles {}", obs.fields.roles.join(","))
        };
        out.push(finding(
            "least_privilege",
            s.severity,
            s.window,
            obs,
            format!(
                "served {} with {held}; it needs one of {}",
                asset.name,
                asset.allowed_roles.join(",")
            ),
        ));
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        Vec::new()
    }
}

pub struct BrokenAuth {
    settings: BrokenSettings,
}

impl BrokenAuth {
    pub fn new(settings: BrokenSettings) -> Self {
        Self { settings }
    }
}

impl Rule for BrokenAuth {
    fn observe(&mut self, _: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        let f = obs.fields;
        let Some(reason) = f.token_failure.as_deref() else {
            return;
        };
        if f.token_verified != Some(false) || !obs.succeeded() || !REJECTABLE.contains(&reason) {
            return;
        }
        let s = &self.settings;
        out.push(finding(
            "broken_auth",
            s.severity,
            s.window,
            obs,
            format!("accepted a bearer token that failed verification ({reason})"),
        ));
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        Vec::new()
    }
}

pub struct DisabledUser {
    settings: DisabledSettings,
}

impl DisabledUser {
    pub fn new(settings: DisabledSettings) -> Self {
        Self { settings }
    }
}

impl Rule for DisabledUser {
    fn observe(&mut self, _: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        let disabled = obs
            .enrichment
            .person
            .as_ref()
            .is_some_and(|p| p.status == Status::Disabled);
        if !disabled || !obs.succeeded() {
            return;
        }
        let s = &self.settings;
        out.push(finding(
            "disabled_user",
            s.severity,
            s.window,
            obs,
            "served a user the directory marks disabled".to_owned(),
        ));
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        Vec::new()
    }
}
