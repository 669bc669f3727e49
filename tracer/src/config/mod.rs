//! The TOML configuration file (`tracer run --config FILE`, `tracer config check FILE`),
//! documented key by key in docs/config.md. Every key has a default, so no file at all
//! is a valid configuration; values are checked while parsing, so an error names the
//! line and column it comes from. `resolve` lays the flags over the file and the
//! defaults, once; `identity` builds the identifier the file describes; `check` is
//! `tracer config check`.
//!
//! Over 400 lines: the file's schema is one serde tree; splitting it would split the
//! place each option is documented from the place its default is resolved.
use std::{
    fs, io,
    num::{NonZeroU16, NonZeroU64},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, de::Error as _};

use tracer_audit::{StreamId, key::DEFAULT_KEY_FILE, state::DEFAULT_STATE_FILE};

use crate::{
    audit::Settings as AuditSettings,
    enrich::PathRule,
    identity::{fingerprint::SecretError, keys::KeyError},
    sink::{OutputSettings, nats::NatsConfig},
};

mod check;
mod identity;
mod resolve;

pub use check::check;
pub use resolve::{
    DEFAULT_RINGBUF_BYTES, DEFAULT_STATS_INTERVAL_SECONDS, RunSettings, check_ringbuf_bytes,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// toml's message names the line and column and quotes the line.
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("identity.jwt: {0}")]
    Keys(#[from] KeyError),
    #[error("identity.fingerprint_secret_file: {0}")]
    Secret(#[from] SecretError),
    #[error("starting the OIDC key fetcher: {0}")]
    Fetcher(io::Error),
    #[error("{0}")]
    Nats(String),
    #[error("no port to watch: give --port or `ports` in the config file")]
    NoPorts,
}

pub const DEFAULT_CHECKPOINT_RECORDS: u64 = 10_000;
pub const DEFAULT_CHECKPOINT_SECONDS: u64 = 60;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `--port`; the flags' ports replace these.
    pub ports: Vec<NonZeroU16>,
    /// `--ringbuf-bytes`.
    #[serde(deserialize_with = "ringbuf_bytes")]
    pub ringbuf_bytes: Option<u32>,
    /// `--stats-interval`, seconds.
    pub stats_interval: Option<NonZeroU64>,
    /// `--redact-query-param`; the flags' names are added to these.
    pub redact_query_params: Vec<String>,
    /// `--bpf-stats`.
    pub bpf_stats: bool,
    pub path_redaction: PathRedactionConfig,
    pub identity: IdentityConfig,
    pub output: OutputSettings,
    pub audit: AuditConfig,
    /// The NATS JetStream sink (`--nats*`).
    pub nats: NatsConfig,
}

/// `[path_redaction]`: path segments that hold secrets (docs/config.md). Secret
/// `;name=value` path parameters are redacted whatever this says.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathRedactionConfig {
    /// The built-in rules (`DEFAULT_PATH_RULES`), on unless turned off.
    pub defaults: bool,
    /// More rules, checked when the file is parsed.
    pub rules: Vec<PathRule>,
}

impl Default for PathRedactionConfig {
    fn default() -> Self {
        Self {
            defaults: true,
            rules: Vec::new(),
        }
    }
}

/// `[audit]`: the hash chain and its checkpoints (docs/audit.md). Unset keys take the
/// defaults in [`AuditConfig::settings`]; flags override them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `--stream-id`; default: the host name.
    pub stream_id: Option<StreamId>,
    /// `--audit-state`.
    pub state_file: Option<PathBuf>,
    /// `--audit-key`.
    pub key_file: Option<PathBuf>,
    /// `--checkpoint-records`.
    pub checkpoint_records: Option<NonZeroU64>,
    /// `--checkpoint-seconds`.
    pub checkpoint_seconds: Option<NonZeroU64>,
}

impl AuditConfig {
    pub fn settings(&self) -> AuditSettings {
        AuditSettings {
            stream: self
                .stream_id
                .clone()
                .unwrap_or_else(StreamId::from_host_name),
            state_file: self
                .state_file
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_FILE)),
            key_file: self
                .key_file
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_FILE)),
            checkpoint_records: self
                .checkpoint_records
                .map_or(DEFAULT_CHECKPOINT_RECORDS, NonZeroU64::get),
            checkpoint_interval: Duration::from_secs(
                self.checkpoint_seconds
                    .map_or(DEFAULT_CHECKPOINT_SECONDS, NonZeroU64::get),
            ),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Key of every fingerprint; created (0600) on first run.
    pub fingerprint_secret_file: PathBuf,
    pub api_key_headers: Vec<String>,
    pub api_key_query_params: Vec<String>,
    pub session_cookies: Vec<String>,
    pub jwt: JwtConfig,
    pub proxy: ProxyConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Dotted claim paths whose values are `user.roles`.
    pub role_claims: Vec<String>,
    pub jwks_file: Option<PathBuf>,
    pub hmac_secret_file: Option<PathBuf>,
    #[serde(deserialize_with = "http_url")]
    pub oidc_issuer: Option<String>,
    /// Accepted `iss` values (the OIDC issuer is always accepted); empty: any.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty: any.
    pub audiences: Vec<String>,
    pub leeway_seconds: u32,
    pub oidc_timeout_ms: NonZeroU64,
    pub oidc_refresh_seconds: NonZeroU64,
    pub oidc_min_refetch_seconds: u64,
    pub oidc_max_backoff_seconds: NonZeroU64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    pub trusted_cidrs: Vec<IpNet>,
    pub user_headers: Vec<String>,
    pub email_headers: Vec<String>,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            fingerprint_secret_file: PathBuf::from("/var/lib/tracer/fingerprint.key"),
            api_key_headers: strings(&["X-API-Key"]),
            api_key_query_params: strings(&["api_key", "apikey", "key"]),
            session_cookies: strings(&[
                "session",
                "sessionid",
                "JSESSIONID",
                "PHPSESSID",
                "connect.sid",
                "_oauth2_proxy",
            ]),
            jwt: JwtConfig::default(),
            proxy: ProxyConfig::default(),
        }
    }
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            role_claims: strings(&["roles", "groups", "realm_access.roles"]),
            jwks_file: None,
            hmac_secret_file: None,
            oidc_issuer: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_seconds: 60,
            oidc_timeout_ms: NonZeroU64::new(3000).unwrap_or(NonZeroU64::MIN),
            oidc_refresh_seconds: NonZeroU64::new(3600).unwrap_or(NonZeroU64::MIN),
            oidc_min_refetch_seconds: 10,
            oidc_max_backoff_seconds: NonZeroU64::new(300).unwrap_or(NonZeroU64::MIN),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            trusted_cidrs: Vec::new(),
            user_headers: strings(&["X-Forwarded-User", "X-Auth-Request-User", "X-Remote-User"]),
            email_headers: strings(&["X-Forwarded-Email", "X-Auth-Request-Email"]),
        }
    }
}

fn ringbuf_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    check_ringbuf_bytes(u32::deserialize(d)?)
        .map(Some)
        .map_err(D::Error::custom)
}

fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let url = String::deserialize(d)?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(D::Error::custom(format!(
            "{url:?} is not an http:// or https:// URL"
        )));
    }
    Ok(Some(url))
}

impl Config {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"))
    }

    #[test]
    fn empty_file_means_defaults() {
        let c = parse("").unwrap();
        assert!(c.ports.is_empty());
        assert_eq!(c.identity.api_key_headers, ["X-API-Key"]);
        assert_eq!(c.identity.jwt.leeway_seconds, 60);
        assert!(c.identity.proxy.trusted_cidrs.is_empty());
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
ports = [8080, 8443]
ringbuf_bytes = 8388608
stats_interval = 5
redact_query_params = ["otp"]

[path_redaction]
rules = ["/share/{secret}", "**/keys/*/{secret}"]

[identity]
fingerprint_secret_file = "/tmp/k"
api_key_headers = ["X-Api-Key", "X-Key"]
session_cookies = ["sid"]

[identity.jwt]
role_claims = ["scope"]
jwks_file = "/etc/tracer/jwks.json"
oidc_issuer = "https://idp.example.com/realms/main"
audiences = ["api"]

[identity.proxy]
trusted_cidrs = ["10.0.0.0/8", "::1/128"]

[output]
stdout = true

[output.file]
path = "/var/log/tracer/access.jsonl"
rotate_size = "100M"
rotate_interval = "1h"
compress = "zstd"
keep = 30

[audit]
stream_id = "web-01"
state_file = "/tmp/audit.state"
checkpoint_records = 500
"#,
        )
        .unwrap();
        assert!(c.output.stdout);
        assert!(c.path_redaction.defaults, "on unless turned off");
        assert_eq!(c.path_redaction.rules.len(), 2);
        let file = c.output.file.as_ref().unwrap();
        assert_eq!(file.keep.map(|k| k.get()), Some(30));
        assert_eq!(file.mode.bits(), 0o600, "unset keys keep defaults");
        let audit = c.audit.settings();
        assert_eq!(audit.stream.as_str(), "web-01");
        assert_eq!(audit.checkpoint_records, 500);
        assert_eq!(audit.checkpoint_interval, Duration::from_secs(60));
        assert_eq!(audit.key_file, PathBuf::from(DEFAULT_KEY_FILE));
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.ringbuf_bytes, Some(8 << 20));
        assert_eq!(c.identity.proxy.trusted_cidrs.len(), 2);
        assert_eq!(
            c.identity.proxy.user_headers[0], "X-Forwarded-User",
            "unset keys keep defaults"
        );
    }

    #[test]
    fn nats_table_parses_and_checks_its_values() {
        let c = parse(
            "[nats]\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"audit.{host}.http\"\n\
             create_stream = true\nspool_max_bytes = 65536\n",
        )
        .unwrap();
        assert_eq!(
            c.nats.servers().unwrap().map(|u| u.to_string()).as_deref(),
            Some("nats://127.0.0.1:4222")
        );
        let bad = parse("[nats]\nurl = \"http://u:hunter2@x\"\n").unwrap();
        let message = bad.nats.servers().unwrap_err();
        assert!(
            message.contains("nats.url")
                && message.contains("invalid scheme")
                && !message.contains("hunter2"),
            "{message}"
        );
        assert_eq!(c.nats.subject.stream_subject(), "audit.*.http");
        assert!(c.nats.create_stream);
        assert_eq!(c.nats.spool_max_bytes.get(), 65536);
        assert_eq!(c.nats.stream.as_str(), "TRACER", "unset keys keep defaults");
        assert!(parse("").unwrap().nats.url.is_none(), "off by default");
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, needle) in [
            ("ports = [8080]\nringbuf_bytes = 5000\n", 2, "power of two"),
            (
                "\n[identity.proxy]\ntrusted_cidrs = [\"10.0.0.300/8\"]\n",
                3,
                "invalid",
            ),
            ("[identity]\nfingerprint_secret = 1\n", 2, "unknown field"),
            ("[identity.jwt]\noidc_issuer = \"idp\"\n", 2, "http"),
            ("ports = [0]\n", 1, "nonzero"),
            (
                "[output.file]\npath = \"a\"\nrotate_size = \"10X\"\n",
                3,
                "unit",
            ),
            (
                "[output.file]\npath = \"a\"\ncompress = \"lz4\"\n",
                3,
                "unknown variant",
            ),
            (
                "[output.file]\nmode = \"0600\"\n",
                1,
                "missing field `path`",
            ),
            ("[audit]\nstream_id = \"a b\"\n", 2, "not a stream id"),
            ("[audit]\ncheckpoint_records = 0\n", 2, "nonzero"),
            ("[nats]\nsubject = \"a.{hostname}\"\n", 2, "placeholder"),
            ("[nats]\nstream = \"a.b\"\n", 2, "stream name"),
            (
                "[path_redaction]\nrules = [\"/reset\"]\n",
                2,
                "no segment to redact",
            ),
        ] {
            let message = parse(text).err().unwrap().to_string();
            assert!(
                message.contains(&format!("line {line}")) && message.contains(needle),
                "{text:?} -> {message}"
            );
        }
    }
}
