//! Alerts published on NATS as `alerts.<rule>`, one JSON message per alert change;
//! a JetStream stream on `alerts.>` keeps them if the operator wants history.
use anyhow::Context as _;

use super::{Target, payload::alert_json};
use crate::store::alerts::Alert;

const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct NatsAlerts {
    runtime: tokio::runtime::Runtime,
    client: async_nats::Client,
    shown: String,
    dashboard: String,
}

impl NatsAlerts {
    pub fn connect(url: &str, shown: String, dashboard: String) -> anyhow::Result<Self> {
        // One worker thread of its own: the client's connection task (connect, pings,
        // reconnects) must run between sends, which a current-thread runtime only
        // drives inside `block_on`.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("alerts-nats")
            .enable_all()
            .build()
            .context("starting the alert publisher's runtime")?;
        // Connects in the background and retries; publishing fails until it is up.
        let client = runtime.block_on(async {
            async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect(url)
                .await
        })?;
        Ok(Self {
            runtime,
            client,
            shown,
            dashboard,
        })
    }
}

impl Target for NatsAlerts {
    fn name(&self) -> String {
        format!("nats {}", self.shown)
    }

    fn send(&mut self, alerts: &[Alert]) -> anyhow::Result<()> {
        self.runtime.block_on(async {
            anyhow::ensure!(
                self.client.connection_state() == async_nats::connection::State::Connected,
                "not connected to the broker"
            );
            for alert in alerts {
                let body = alert_json(alert, &self.dashboard).to_string();
                self.client
                    .publish(format!("alerts.{}", alert.rule), body.into())
                    .await?;
            }
            // A broker that vanished mid-send must not hold the delivery thread forever.
            tokio::time::timeout(FLUSH_TIMEOUT, self.client.flush())
                .await
                .context("the broker did not acknowledge the alerts in time")??;
            Ok(())
        })
    }
}
