//! Prometheus Alertmanager's v2 API: `POST /api/v2/alerts` with labels that route
//! (alertname = the rule, severity, entity) and annotations that explain (summary,
//! the records). `endsAt` is the end of the alert's grouping window after its last
//! finding, so Alertmanager resolves it when the behaviour stops, or the time the hub
//! resolved it (a chain gap that filled).
use serde_json::{Value, json};

use super::{
    Target,
    payload::record_url,
    webhook::{agent, post, shown},
};
use crate::{store::alerts::Alert, when::format_ns};

pub struct Alertmanager {
    url: String,
    dashboard: String,
    agent: ureq::Agent,
}

impl Alertmanager {
    /// `base` is Alertmanager's root URL (`http://localhost:9093`).
    pub fn new(base: &str, dashboard: String) -> Self {
        Self {
            url: format!("{}/api/v2/alerts", base.trim_end_matches('/')),
            dashboard,
            agent: agent(),
        }
    }

    fn alert(&self, a: &Alert) -> Value {
        let records: Vec<String> = a
            .records
            .iter()
            .map(|(s, q)| record_url(&self.dashboard, s, *q))
            .collect();
        json!({
            "labels": {
                "alertname": a.rule,
                "severity": a.severity.as_str(),
                "entity": a.entity,
                "source": "tracer-hub",
            },
            "annotations": {
                "summary": a.summary,
                "count": a.count.to_string(),
                "records": records.join(" "),
            },
            "startsAt": format_ns(a.first_ns),
            "endsAt": format_ns(
                a.resolved_ns
                    .unwrap_or_else(|| a.last_ns.saturating_add(a.window_ns))
            ),
            "generatorURL": format!("{}#/alerts/{}", self.dashboard, a.id),
        })
    }
}

impl Target for Alertmanager {
    fn name(&self) -> String {
        format!("alertmanager {}", shown(&self.url))
    }

    fn send(&mut self, alerts: &[Alert]) -> anyhow::Result<()> {
        let body = Value::Array(alerts.iter().map(|a| self.alert(a)).collect());
        post(&self.agent, &self.url, &body)
    }
}
