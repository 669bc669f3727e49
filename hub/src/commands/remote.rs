//! `query --hub`, `top --hub` and `integrity --hub`: a running hub's JSON API (the one the dashboard uses),
//! read with its bearer token, so the questions can be asked from any machine that
//! reaches the hub rather than only where its data directory is.
use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use serde::de::DeserializeOwned;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::cli::ReadArgs;

/// A large export takes a while to write and send; a hub that answers nothing in this
/// long is stuck.
const TIMEOUT: Duration = Duration::from_secs(300);
/// The largest answer read: the API's largest export (100,000 lines) with room.
const MAX_BODY: u64 = 1 << 30;

pub struct RemoteHub {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl RemoteHub {
    /// The hub `--hub` names, if it is given.
    pub fn from_args(args: &ReadArgs) -> anyhow::Result<Option<Self>> {
        let Some(url) = &args.hub else {
            return Ok(None);
        };
        let token_file = args
            .token_file
            .as_deref()
            .context("--hub needs --token-file")?;
        Self::new(url, token_file, args.hub_ca.as_deref()).map(Some)
    }

    fn new(url: &str, token_file: &Path, ca: Option<&Path>) -> anyhow::Result<Self> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--hub {url:?}: expected http://HOST:PORT or https://HOST:PORT");
        }
        let token = std::fs::read_to_string(token_file)
            .with_context(|| format!("reading --token-file {}", token_file.display()))?
            .trim()
            .to_owned();
        if token.is_empty() {
            bail!(
                "--token-file {} is empty: it must hold the hub's API token",
                token_file.display()
            );
        }
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false);
        if let Some(ca) = ca {
            let pem =
                std::fs::read(ca).with_context(|| format!("reading --hub-ca {}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .with_context(|| format!("--hub-ca {}: not a PEM certificate", ca.display()))?;
            config = config.tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::new_with_certs(&[cert]))
                    .build(),
            );
        }
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            token,
            agent: config.build().into(),
        })
    }

    /// GET `path` with `params`: the answer's bytes, or an error with the hub's reason.
    pub fn get(&self, path: &str, params: &[(&str, &str)]) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let mut response = self
            .agent
            .get(&url)
            .query_pairs(params.iter().copied())
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .with_context(|| format!("GET {url}: is the hub running there?"))?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .with_context(|| format!("GET {url}: reading the answer"))?;
        if status == 401 {
            bail!("GET {url}: the hub refused the token in --token-file (401)");
        }
        if !status.is_success() {
            let reason = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
            bail!("GET {url}: {status}: {reason}");
        }
        Ok(body)
    }

    /// GET `path` with `params`, read as JSON.
    pub fn json<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<T> {
        let body = self.get(path, params)?;
        serde_json::from_slice(&body).with_context(|| {
            format!(
                "GET {}{path}: the answer is not the JSON expected",
                self.base
            )
        })
    }
}
