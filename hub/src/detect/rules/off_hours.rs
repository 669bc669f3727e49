//! `off_hours`: a user or credential active outside its working hours. Stolen
//! credentials are often used when their owner is asleep; so is an insider's
//! after-hours download. Severity rises on confidential and restricted assets. Only
//! identities the server accepted count (see `Observation::identity_accepted`).
use serde::{Deserialize, Serialize};

use super::{Context, Rule, enabled, raised_on_sensitive};
use crate::{
    detect::{Finding, Note, Observation, settings::Span, tracker::Persist},
    store::alerts::Severity,
};

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub severity: Severity,
    /// One alert per actor per this span.
    pub window: Span,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::Medium,
            window: Span::hours(8),
        }
    }
}

pub struct OffHours {
    settings: Settings,
}

impl OffHours {
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }
}

impl Rule for OffHours {
    fn observe(&mut self, context: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        // A denied attempt is not the actor being active: auth_failures counts those.
        let Some(actor) = obs.accepted_actor() else {
            return;
        };
        let schedule = context.calendar.schedule(obs.user(), obs.department());
        if schedule.is_working(obs.ts_ns()) {
            return;
        }
        out.push(Finding {
            rule: "off_hours".to_owned(),
            severity: raised_on_sensitive(self.settings.severity, obs),
            entity: actor,
            ts_ns: obs.ts_ns(),
            window_ns: self.settings.window.0,
            record: Some(obs.record()),
            note: Note::Access(format!("outside working hours ({})", schedule.describe())),
        });
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        Vec::new()
    }
}
