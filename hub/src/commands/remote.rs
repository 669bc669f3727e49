//! `query --hub`, `top --hub` and `integrity --hub`: a running hub's JSON API (the one the dashboard uses),
//! read with its bearer token, so the questions can be asked from any machine that
//! reaches the hub rather than only where its data directory is.
use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use serde::de::DeserializeOwned;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

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
        let client = args.hub_cert.as_deref().zip(args.hub_key.as_deref());
        Self::new(url, token_file, args.hub_ca.as_deref(), client).map(Some)
    }

    fn new(
        url: &str,
        token_file: &Path,
        ca: Option<&Path>,
        client: Option<(&Path, &Path)>,
    ) -> anyhow::Result<Self> {
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
        let mut tls = TlsConfig::builder();
        if let Some(ca) = ca {
            let pem =
                std::fs::read(ca).with_context(|| format!("reading --hub-ca {}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .with_context(|| format!("--hub-ca {}: not a PEM certificate", ca.display()))?;
            tls = tls.root_certs(RootCerts::new_with_certs(&[cert]));
        }
        if let Some((cert, key)) = client {
            tls = tls.client_cert(Some(client_cert(cert, key)?));
        }
        config = config.tls_config(tls.build());
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
            .map_err(|e| explain_tls(e, &url))?;
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

/// A failed request, with what to do when the hub's mutual TLS is why: rustls names
/// the alert the hub sent. A certificate from an unknown CA named like a trusted one
/// fails its signature check, which the hub reports as `DecryptError`.
fn explain_tls(error: ureq::Error, url: &str) -> anyhow::Error {
    let text = error.to_string();
    let hint = if text.contains("CertificateRequired") {
        "the hub asks for a client certificate (serve --tls-client-ca): give --hub-cert and --hub-key"
    } else if [
        "UnknownCA",
        "BadCertificate",
        "DecryptError",
        "CertificateUnknown",
    ]
    .iter()
    .any(|alert| text.contains(alert))
    {
        "the hub refused the client certificate of --hub-cert: is it issued by a CA of the hub's --tls-client-ca, and is --hub-key its key?"
    } else {
        "is the hub running there?"
    };
    anyhow::Error::new(error).context(format!("GET {url}: {hint}"))
}

/// `--hub-cert` and `--hub-key`: the chain (leaf first) and its key, for mutual TLS.
fn client_cert(cert: &Path, key: &Path) -> anyhow::Result<ClientCert> {
    let pem =
        std::fs::read(cert).with_context(|| format!("reading --hub-cert {}", cert.display()))?;
    let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()
        .with_context(|| format!("--hub-cert {}: not PEM", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "--hub-cert {}: no certificate in it",
        cert.display()
    );
    let key_pem =
        std::fs::read(key).with_context(|| format!("reading --hub-key {}", key.display()))?;
    let private = PrivateKey::from_pem(&key_pem)
        .with_context(|| format!("--hub-key {}: not a PEM private key", key.display()))?;
    Ok(ClientCert::new_with_certs(&chain, private))
}
