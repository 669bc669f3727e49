//! Sensitive assets:
//! - `restricted_access`: any request (whatever its status: trying counts) for a
//!   restricted asset by someone neither listed in its `allowed_users` nor holding
//!   one of its `allowed_roles`;
//! - `first_confidential`: a user's first access to a confidential asset, once the
//!   user is past the learning period (before it, everything is first).
use serde::{Deserialize, Serialize};

use super::{Context, Rule, enabled};
use crate::{
    detect::{
        Finding, Note, Observation,
        settings::Span,
        tracker::{Persist, Tracker},
    },
    enrich::{Asset, Sensitivity},
    store::alerts::Severity,
};

/// Confidential assets remembered per user.
const MAX_ASSETS: usize = 64;

/// Whether the request's identity is one the asset lists, by name or by role.
pub fn allowed(asset: &Asset, obs: &Observation<'_>) -> bool {
    let f = obs.fields;
    let named = [f.user_id.as_deref(), f.user_name.as_deref()]
        .into_iter()
        .flatten()
        .any(|u| asset.allowed_users.iter().any(|a| a == u));
    named || f.roles.iter().any(|r| asset.allowed_roles.contains(r))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestrictedSettings {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub severity: Severity,
    pub window: Span,
}

impl Default for RestrictedSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::High,
            window: Span::hours(1),
        }
    }
}

pub struct Restricted {
    settings: RestrictedSettings,
}

impl Restricted {
    pub fn new(settings: RestrictedSettings) -> Self {
        Self { settings }
    }
}

impl Rule for Restricted {
    fn observe(&mut self, _: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        let Some(asset) = &obs.enrichment.asset else {
            return;
        };
        if asset.sensitivity != Sensitivity::Restricted || allowed(asset, obs) {
            return;
        }
        let entity = obs
            .actor()
            .or_else(|| obs.client().map(|c| format!("client:{c}")))
            .unwrap_or_else(|| "unknown".to_owned());
        out.push(Finding {
            rule: "restricted_access".to_owned(),
            severity: self.settings.severity,
            entity,
            ts_ns: obs.ts_ns(),
            window_ns: self.settings.window.0,
            record: Some(obs.record()),
            note: Note::Access(format!("not allowed on restricted asset {}", asset.name)),
        });
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        Vec::new()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirstSettings {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub severity: Severity,
    pub window: Span,
}

impl Default for FirstSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::Low,
            window: Span::hours(24),
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Touched {
    first_ns: i64,
    assets: Vec<String>,
}

pub struct FirstConfidential {
    settings: FirstSettings,
    users: Tracker<Touched>,
}

impl FirstConfidential {
    pub fn new(settings: FirstSettings, max: usize) -> Self {
        Self {
            settings,
            users: Tracker::new("first_confidential", max),
        }
    }
}

impl Rule for FirstConfidential {
    fn observe(&mut self, context: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        // The learning period starts at the first accepted request, not at a failed
        // attempt under the user's name.
        let Some(user) = obs.accepted_user() else {
            return;
        };
        let ts = obs.ts_ns();
        let touched = self.users.entry(&format!("user:{user}"), ts);
        if touched.first_ns == 0 {
            touched.first_ns = ts;
        }
        let Some(asset) = &obs.enrichment.asset else {
            return;
        };
        if asset.sensitivity != Sensitivity::Confidential
            || !obs.succeeded()
            || touched.assets.contains(&asset.name)
        {
            return;
        }
        if touched.assets.len() >= MAX_ASSETS {
            touched.assets.remove(0);
        }
        touched.assets.push(asset.name.clone());
        if ts.saturating_sub(touched.first_ns) < context.learning.0 {
            return;
        }
        out.push(Finding {
            rule: "first_confidential".to_owned(),
            severity: self.settings.severity,
            entity: format!("user:{user}"),
            ts_ns: ts,
            window_ns: self.settings.window.0,
            record: Some(obs.record()),
            note: Note::Access(format!("first access to confidential asset {}", asset.name)),
        });
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        vec![&mut self.users]
    }
}
