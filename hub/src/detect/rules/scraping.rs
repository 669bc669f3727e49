//! `scraping`: one actor (user, credential, else client) touching many distinct
//! resources under one URL template within a window: `/customers/{id}` walked id by id
//! is what scraping and exfiltration look like, while normal use revisits a few.
use serde::{Deserialize, Serialize};

use super::{Context, Rule, enabled, raised_on_sensitive};
use crate::{
    detect::{
        Finding, Note, Observation,
        settings::Span,
        tracker::{Distinct, Persist, Tracker},
    },
    store::alerts::Severity,
};

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub severity: Severity,
    pub window: Span,
    /// Distinct paths under one template within the window.
    pub distinct: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::High,
            window: Span::minutes(10),
            distinct: 100,
        }
    }
}

pub struct Scraping {
    settings: Settings,
    walks: Tracker<Distinct>,
}

impl Scraping {
    pub fn new(settings: Settings, max: usize) -> Self {
        Self {
            settings,
            walks: Tracker::new("scraping", max),
        }
    }
}

impl Rule for Scraping {
    fn observe(&mut self, _: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        let template = &obs.enrichment.template;
        let Some(path) = obs.fields.path.as_deref() else {
            return;
        };
        // A template without a placeholder names one resource.
        if !template.contains('{') || !obs.succeeded() {
            return;
        }
        let Some(actor) = obs
            .actor()
            .or_else(|| obs.client().map(|c| format!("client:{c}")))
        else {
            return;
        };
        let s = &self.settings;
        let key = format!("{actor} {template}");
        let walk = self.walks.entry(&key, obs.ts_ns());
        let distinct = walk.add(path, obs.ts_ns(), s.window.0, s.distinct);
        if distinct < s.distinct {
            return;
        }
        out.push(Finding {
            rule: "scraping".to_owned(),
            severity: raised_on_sensitive(s.severity, obs),
            entity: actor.clone(),
            ts_ns: obs.ts_ns(),
            window_ns: s.window.0,
            record: Some(obs.record()),
            note: Note::Aggregate(format!(
                "{actor} read {distinct} or more distinct {template} within {}",
                s.window
            )),
        });
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        vec![&mut self.walks]
    }
}
