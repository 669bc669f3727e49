//! A generic JSON webhook: `POST {"alerts": [...]}`; any 2xx is delivered.
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::{Target, payload::alert_json};
use crate::store::alerts::Alert;

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Webhook {
    url: String,
    dashboard: String,
    agent: ureq::Agent,
}

impl Webhook {
    pub fn new(url: String, dashboard: String) -> Self {
        Self {
            url,
            dashboard,
            agent: agent(),
        }
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .build()
        .into()
}

/// The URL without its user info, for logs and cursor names.
pub fn shown(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

pub fn post(agent: &ureq::Agent, url: &str, body: &serde_json::Value) -> anyhow::Result<()> {
    agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .with_context(|| format!("POST {}", shown(url)))?;
    Ok(())
}

impl Target for Webhook {
    fn name(&self) -> String {
        format!("webhook {}", shown(&self.url))
    }

    fn send(&mut self, alerts: &[Alert]) -> anyhow::Result<()> {
        let body = json!({
            "alerts": alerts.iter().map(|a| alert_json(a, &self.dashboard)).collect::<Vec<_>>()
        });
        post(&self.agent, &self.url, &body)
    }
}
