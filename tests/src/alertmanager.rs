//! Debian's `prometheus-alertmanager` on a free loopback port with its data in a temp
//! dir: the real receiver the hub's alerts are checked against.
use std::{
    fs,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{clients::curl, ports::free_port, process::Guarded};

const BIN: &str = "/usr/bin/prometheus-alertmanager";

pub struct Alertmanager {
    // Declared first: the process stops before its directory is removed.
    _child: Guarded,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Alertmanager {
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("alertmanager.yml");
        fs::write(
            &config,
            "route:\n  receiver: 'null'\n  group_wait: 1s\nreceivers:\n  - name: 'null'\n",
        )?;
        let port = free_port();
        let child = Guarded::spawn(
            Command::new(BIN)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // A single instance: no gossip port to collide with other tests.
                .arg("--cluster.listen-address=")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "prometheus-alertmanager",
        )
        .with_context(|| format!("{BIN} (Debian package prometheus-alertmanager)"))?;
        let alertmanager = Self {
            _child: child,
            _dir: dir,
            port,
        };
        let started = Instant::now();
        while curl(&["-sf", &alertmanager.url("/-/ready")]).is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("prometheus-alertmanager not ready on port {port} after 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(alertmanager)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The alerts Alertmanager holds (`GET /api/v2/alerts`).
    pub fn alerts(&self) -> Result<Vec<Value>> {
        let body = curl(&["-sf", &self.url("/api/v2/alerts")])?;
        serde_json::from_str(&body).with_context(|| format!("alertmanager said {body}"))
    }
}
