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

/// Walks kept per actor: the templates it read within the window, least recently
/// read dropped first beyond this, so one actor's state stays bounded however many
/// templates it touches.
const MAX_TEMPLATES: usize = 1_024;

/// One actor's walks: per template, when it was last read and the distinct paths
/// read within the window. Kept per actor, not per actor and template: each batch
/// saves every entity it touched, and an actor touches many templates (200,000
/// records imported: 85,562 saved states of scraping alone, against 2,000 actors).
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct Walks {
    templates: Vec<(String, i64, Distinct)>,
}

impl Walks {
    /// The walk under `template` at `ts_ns`, after dropping the walks not read within
    /// the window: they could count nothing any more. Each walk keeps when it was last
    /// read, so this costs one comparison per template, however many paths each holds.
    fn under(&mut self, template: &str, ts_ns: i64, window_ns: i64) -> &mut Distinct {
        self.templates
            .retain(|(t, last_ns, _)| t == template || *last_ns > ts_ns - window_ns);
        let at = match self.templates.iter().position(|(t, ..)| t == template) {
            Some(at) => at,
            None => {
                if self.templates.len() >= MAX_TEMPLATES
                    && let Some(oldest) =
                        (0..self.templates.len()).min_by_key(|&i| self.templates[i].1)
                {
                    self.templates.swap_remove(oldest);
                }
                self.templates
                    .push((template.to_owned(), ts_ns, Distinct::default()));
                self.templates.len() - 1
            }
        };
        let (_, last_ns, walk) = &mut self.templates[at];
        *last_ns = (*last_ns).max(ts_ns);
        walk
    }
}

pub struct Scraping {
    settings: Settings,
    walks: Tracker<Walks>,
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
        let ts = obs.ts_ns();
        let walk = self.walks.entry(&actor, ts).under(template, ts, s.window.0);
        let distinct = walk.add(path, ts, s.window.0, s.distinct);
        if distinct < s.distinct {
            return;
        }
        out.push(Finding {
            rule: "scraping".to_owned(),
            severity: raised_on_sensitive(s.severity, obs),
            entity: actor.clone(),
            ts_ns: ts,
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000_000;

    #[test]
    fn walks_count_per_template_and_forget_what_the_window_left() {
        let mut walks = Walks::default();
        let window = 10 * MINUTE;
        for i in 0..5 {
            walks
                .under("/a/{id}", i, window)
                .add(&format!("/a/{i}"), i, window, 100);
        }
        let b = walks
            .under("/b/{id}", 10, window)
            .add("/b/1", 10, window, 100);
        assert_eq!(b, 1, "another template counts apart");
        assert_eq!(
            walks
                .under("/a/{id}", 11, window)
                .add("/a/4", 11, window, 100),
            5
        );
        // Past the window, /b's walk goes; /a's is read now, so it stays, emptied by add.
        let later = 11 + window;
        assert_eq!(
            walks
                .under("/a/{id}", later, window)
                .add("/a/9", later, window, 100),
            1
        );
        assert_eq!(walks.templates.len(), 1);
    }

    #[test]
    fn an_actor_keeps_at_most_max_templates_dropping_the_least_recent() {
        let mut walks = Walks::default();
        let window = 10 * MINUTE;
        for i in 0..=MAX_TEMPLATES as i64 {
            walks
                .under(&format!("/t{i}/{{id}}"), i, window)
                .add("/x", i, window, 100);
        }
        assert_eq!(walks.templates.len(), MAX_TEMPLATES);
        assert!(walks.templates.iter().all(|(t, ..)| t != "/t0/{id}"));
    }

    #[test]
    fn a_state_saved_per_actor_and_template_restores_as_an_empty_walk() {
        let old = r#"{"seen":[["/api/v0/orders/15496",1796482326885486061]]}"#;
        let walks: Walks = serde_json::from_str(old).unwrap();
        assert!(walks.templates.is_empty());
    }
}
