//! The current key set, and the OIDC discovery fetcher that keeps it fresh.
//!
//! The fetcher is a std thread: the pipeline thread only clones an `Arc` under a read
//! lock that is never held across I/O, and asks for a refetch with a `try_send` that
//! cannot block. A slow or dead issuer therefore costs the pipeline nothing; tokens
//! signed by keys not yet fetched are reported `unknown_key` until they arrive.
use std::{
    sync::{
        Arc, PoisonError, RwLock,
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender},
    },
    time::{Duration, Instant},
};

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use super::keys::{KeySet, VerifyKey};
use crate::diagnostics::sanitize_for_log;

/// Largest discovery or JWKS document read.
const MAX_DOCUMENT_BYTES: u64 = 1 << 20;
/// First retry delay after a failed fetch; doubled per failure up to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// Issuer URL; `/.well-known/openid-configuration` is appended.
    pub issuer: String,
    /// Bound on one HTTP exchange with the issuer (connect to last byte).
    pub timeout: Duration,
    /// Keys are refetched this often even when nothing asks.
    pub refresh: Duration,
    /// A token with an unknown `kid` triggers a refetch at most this often.
    pub min_refetch: Duration,
    pub max_backoff: Duration,
}

/// The shared, swappable key set.
pub struct Keys {
    current: Arc<RwLock<Arc<KeySet>>>,
    /// Present when an OIDC fetcher runs; dropping it stops the fetcher.
    refetch: Option<SyncSender<()>>,
}

impl Keys {
    pub fn fixed(keys: Vec<VerifyKey>) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(KeySet {
                keys,
                generation: 1,
            }))),
            refetch: None,
        }
    }

    /// Starts the fetcher, waiting at most one `timeout` (plus a little) for its first
    /// answer so that tokens seen right after start can already be verified.
    pub fn with_oidc(fixed: Vec<VerifyKey>, settings: OidcSettings) -> std::io::Result<Self> {
        let keys = Self::fixed(fixed.clone());
        let (tx, rx) = mpsc::sync_channel(1);
        let (first_tx, first_rx) = mpsc::channel();
        let current = Arc::clone(&keys.current);
        let wait = settings.timeout.saturating_mul(2) + Duration::from_millis(500);
        std::thread::Builder::new()
            .name("tracer-oidc".into())
            .spawn(move || Fetcher::new(settings, fixed, current).run(&rx, first_tx))?;
        let _ = first_rx.recv_timeout(wait);
        Ok(Self {
            refetch: Some(tx),
            ..keys
        })
    }

    pub fn snapshot(&self) -> Arc<KeySet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Asks the fetcher for fresh keys (a token named a `kid` it does not know).
    pub fn request_refetch(&self) {
        if let Some(tx) = &self.refetch {
            // Full: a refetch is already pending. Disconnected: the fetcher is gone.
            let _ = tx.try_send(());
        }
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{url}: {source}")]
    Http { url: String, source: ureq::Error },
    #[error("{url}: not a JSON {what}: {source}")]
    Json {
        url: String,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("discovery names issuer {found:?}, not the configured {expected:?}")]
    IssuerMismatch { found: String, expected: String },
}

struct Fetcher {
    settings: OidcSettings,
    fixed: Vec<VerifyKey>,
    current: Arc<RwLock<Arc<KeySet>>>,
    agent: ureq::Agent,
    generation: u64,
}

impl Fetcher {
    fn new(
        settings: OidcSettings,
        fixed: Vec<VerifyKey>,
        current: Arc<RwLock<Arc<KeySet>>>,
    ) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .build()
            .into();
        Self {
            settings,
            fixed,
            current,
            agent,
            generation: 1,
        }
    }

    fn run(mut self, requests: &Receiver<()>, first: mpsc::Sender<()>) {
        let mut backoff = FIRST_BACKOFF;
        let mut first = Some(first);
        let mut known: Option<usize> = None;
        loop {
            let started = Instant::now();
            let result = self.fetch();
            let ok = result.is_ok();
            match result {
                Ok(fetched) => {
                    if known != Some(fetched.len()) {
                        eprintln!(
                            "tracer: {} verification key(s) from OIDC issuer {}",
                            fetched.len(),
                            sanitize_for_log(&self.settings.issuer, 200)
                        );
                    }
                    known = Some(fetched.len());
                    self.publish(fetched);
                    backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    eprintln!(
                        "tracer: fetching OIDC keys failed ({}); retrying in {}s",
                        sanitize_for_log(&e.to_string(), 400),
                        backoff.as_secs()
                    );
                }
            }
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
            let next = if ok {
                started + self.settings.refresh
            } else {
                let at = started + backoff;
                backoff = (backoff * 2).min(self.settings.max_backoff);
                at
            };
            // A refetch request is honoured, but never sooner than `min_refetch` after
            // the last fetch and never inside a failure backoff.
            let earliest = if ok {
                started + self.settings.min_refetch
            } else {
                next
            };
            if !wait(requests, next, earliest) {
                return;
            }
        }
    }

    fn fetch(&self) -> Result<Vec<VerifyKey>, FetchError> {
        let base = self.settings.issuer.trim_end_matches('/');
        let discovery_url = format!("{base}/.well-known/openid-configuration");
        let discovery: Discovery = self.get_json(&discovery_url, "discovery document")?;
        if discovery.issuer.trim_end_matches('/') != base {
            return Err(FetchError::IssuerMismatch {
                found: discovery.issuer,
                expected: self.settings.issuer.clone(),
            });
        }
        let set: JwkSet = self.get_json(&discovery.jwks_uri, "JWKS")?;
        Ok(KeySet::from_jwks(&set))
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &'static str,
    ) -> Result<T, FetchError> {
        let http = |source| FetchError::Http {
            url: url.to_owned(),
            source,
        };
        let text = self
            .agent
            .get(url)
            .call()
            .map_err(http)?
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT_BYTES)
            .read_to_string()
            .map_err(http)?;
        serde_json::from_str(&text).map_err(|source| FetchError::Json {
            url: url.to_owned(),
            what,
            source,
        })
    }

    fn publish(&mut self, fetched: Vec<VerifyKey>) {
        self.generation += 1;
        let mut keys = self.fixed.clone();
        keys.extend(fetched);
        let set = Arc::new(KeySet {
            keys,
            generation: self.generation,
        });
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = set;
    }
}

/// Sleeps until `next`, or until a request arrives at or after `earliest`. False when
/// the pipeline is gone.
fn wait(requests: &Receiver<()>, next: Instant, earliest: Instant) -> bool {
    let mut requested = false;
    loop {
        let now = Instant::now();
        let until = if requested { earliest.min(next) } else { next };
        if now >= until {
            return true;
        }
        match requests.recv_timeout(until - now) {
            Ok(()) => requested = true,
            Err(RecvTimeoutError::Timeout) => return true,
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}
