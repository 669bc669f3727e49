//! What the NATS sink is told: the `[nats]` table of the config file and the `--nats*`
//! flags (docs/config.md), each value checked where it is parsed so that a bad one is an
//! error before `ready` that names it.
use std::{
    fmt,
    num::{NonZeroU64, NonZeroUsize},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use async_nats::ServerAddr;
use serde::{Deserialize, Deserializer, de::Error as _};

pub const DEFAULT_SUBJECT: &str = "access.{host}";
pub const DEFAULT_STREAM: &str = "TRACER";
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/tracer/spool";
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;

/// The `[nats]` table; the sink is on when `url` is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL(s) as given, checked by [`NatsConfig::servers`] rather than while
    /// parsing: a parse error quotes its line, and with it any password in the URL.
    pub url: Option<String>,
    #[serde(deserialize_with = "from_str")]
    pub subject: SubjectTemplate,
    #[serde(deserialize_with = "from_str")]
    pub stream: StreamName,
    /// Create the stream when it does not exist (subjects: see [`SubjectTemplate::stream_subject`]).
    pub create_stream: bool,
    /// JetStream's de-duplication window of a stream the tracer creates.
    pub duplicate_window_seconds: NonZeroU64,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: NonZeroU64,
    /// At shutdown, how long to wait for the spool to be published before leaving the
    /// rest for the next start.
    pub drain_timeout_ms: u64,
    /// How long one publish waits for its acknowledgement before the connection is
    /// dropped and the unacknowledged records are sent again.
    pub ack_timeout_ms: NonZeroU64,
    /// Publishes sent ahead of the oldest unacknowledged one.
    pub max_in_flight: NonZeroUsize,
    /// Records one JetStream message may carry, one per line (1 to
    /// [`MAX_RECORDS_PER_MESSAGE`]).
    #[serde(deserialize_with = "records_per_message")]
    pub records_per_message: NonZeroUsize,
    /// NATS credentials file (JWT and NKey seed), as `nats context` writes it.
    pub creds_file: Option<PathBuf>,
    /// File holding a connection token (trailing newlines ignored).
    pub token_file: Option<PathBuf>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: None,
            subject: SubjectTemplate::default(),
            stream: StreamName::default(),
            create_stream: false,
            duplicate_window_seconds: NonZeroU64::new(120).unwrap_or(NonZeroU64::MIN),
            spool_dir: PathBuf::from(DEFAULT_SPOOL_DIR),
            spool_max_bytes: NonZeroU64::new(DEFAULT_SPOOL_MAX_BYTES).unwrap_or(NonZeroU64::MIN),
            drain_timeout_ms: 5000,
            ack_timeout_ms: NonZeroU64::new(5000).unwrap_or(NonZeroU64::MIN),
            max_in_flight: NonZeroUsize::new(256).unwrap_or(NonZeroUsize::MIN),
            records_per_message: NonZeroUsize::MIN,
            creds_file: None,
            token_file: None,
        }
    }
}

impl NatsConfig {
    /// The servers `url` names, or `None` when the sink is off.
    pub fn servers(&self) -> Result<Option<Servers>, String> {
        self.url
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| format!("--nats / nats.url: {e}"))
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms.get())
    }

    pub fn duplicate_window(&self) -> Duration {
        Duration::from_secs(self.duplicate_window_seconds.get())
    }
}

/// The most records one message may carry: a message stays far below JetStream's
/// default 1 MiB payload limit for records of a few KiB.
pub const MAX_RECORDS_PER_MESSAGE: usize = 1024;

/// A number of records per message, 1 to [`MAX_RECORDS_PER_MESSAGE`].
pub fn parse_records_per_message(n: u64) -> Result<NonZeroUsize, String> {
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_RECORDS_PER_MESSAGE)
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| {
            format!("records per message must be 1 to {MAX_RECORDS_PER_MESSAGE}, not {n}")
        })
}

fn records_per_message<'de, D: Deserializer<'de>>(d: D) -> Result<NonZeroUsize, D::Error> {
    parse_records_per_message(u64::deserialize(d)?).map_err(D::Error::custom)
}

fn from_str<'de, D: Deserializer<'de>, T>(d: D) -> Result<T, D::Error>
where
    T: FromStr<Err = String>,
{
    String::deserialize(d)?.parse().map_err(D::Error::custom)
}

/// One or more server URLs separated by commas (`nats://host:4222`, `tls://...`; no
/// scheme means `nats://`, no port 4222). Displayed without user, password or token.
#[derive(Debug, Clone)]
pub struct Servers(Vec<ServerAddr>);

impl Servers {
    pub fn addrs(&self) -> Vec<ServerAddr> {
        self.0.clone()
    }
}

impl FromStr for Servers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let addrs = s
            .split(',')
            .map(|one| {
                let one = one.trim();
                let addr: ServerAddr = one
                    .parse()
                    .map_err(|e| format!("{:?}: {e}", redacted(one)))?;
                if addr.host().is_empty() {
                    return Err(format!("{:?}: no host in the NATS URL", redacted(one)));
                }
                Ok(addr)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(addrs))
    }
}

impl fmt::Display for Servers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let host = addr.host();
            if host.contains(':') {
                write!(f, "{sep}{}://[{host}]:{}", addr.scheme(), addr.port())?;
            } else {
                write!(f, "{sep}{}://{host}:{}", addr.scheme(), addr.port())?;
            }
        }
        Ok(())
    }
}

/// A URL as given, for an error message, with any `user:password@` cut out.
fn redacted(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((before, after)) => match before.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***@{after}"),
            None => format!("***@{after}"),
        },
        None => url.to_owned(),
    }
}

/// A subject with placeholders; the only one is `{host}`: this host's name with every
/// character that NATS gives a meaning in subjects (`.`, `*`, `>`, whitespace) replaced
/// by `_`, so it stays one token (`web1.example.com` -> `web1_example_com`).
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectTemplate(String);

const HOST: &str = "{host}";

impl Default for SubjectTemplate {
    fn default() -> Self {
        Self(DEFAULT_SUBJECT.to_owned())
    }
}

impl FromStr for SubjectTemplate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        for token in s.split('.') {
            if token.is_empty() {
                return Err(format!("subject {s:?} has an empty token"));
            }
            if token.contains(|c: char| c.is_whitespace() || c == '*' || c == '>') {
                return Err(format!(
                    "subject {s:?}: a published subject has no wildcards or whitespace"
                ));
            }
            let rest = token.replace(HOST, "");
            if rest.contains(['{', '}']) {
                return Err(format!(
                    "subject {s:?}: unknown placeholder (the only one is {HOST})"
                ));
            }
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for SubjectTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SubjectTemplate {
    /// The subject this host publishes to.
    pub fn expand(&self, host: &str) -> String {
        self.0.replace(HOST, &subject_token(host))
    }

    /// The subject filter of a stream the tracer creates: the template with every token
    /// that holds a placeholder replaced by `*`, so one stream takes every host's records.
    pub fn stream_subject(&self) -> String {
        self.0
            .split('.')
            .map(|token| if token.contains(HOST) { "*" } else { token })
            .collect::<Vec<_>>()
            .join(".")
    }
}

fn subject_token(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// This host's name, as `{host}` uses it.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "unknown-host".to_owned()
    } else {
        name
    }
}

/// Whether the subject filter `pattern` (with `*` and `>` wildcards) matches `subject`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(s)) if literal == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// A JetStream stream name (no whitespace, `.`, `*`, `>`, `/` or `\`).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamName(String);

impl Default for StreamName {
    fn default() -> Self {
        Self(DEFAULT_STREAM.to_owned())
    }
}

impl FromStr for StreamName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty()
            || s.contains(|c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
        {
            return Err(format!(
                "{s:?} is not a stream name (non-empty, no whitespace, '.', '*', '>', '/' or '\\')"
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StreamName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_never_shown_with_credentials() {
        let servers: Servers = "nats://127.0.0.1:4333, tls://u:secret@nats.example.com"
            .parse()
            .unwrap();
        assert_eq!(
            servers.to_string(),
            "nats://127.0.0.1:4333,tls://nats.example.com:4222"
        );
        assert_eq!(
            "localhost".parse::<Servers>().unwrap().to_string(),
            "nats://localhost:4222"
        );
        for bad in [
            "http://localhost:4222",
            "nats://localhost:99999",
            "nats://",
            "nats://a b",
        ] {
            assert!(bad.parse::<Servers>().is_err(), "{bad}");
        }
        let message = "nats://user:hunter2@[::1:4222"
            .parse::<Servers>()
            .unwrap_err();
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn subject_templates_expand_to_one_token_per_host() {
        let template: SubjectTemplate = "access.{host}".parse().unwrap();
        assert_eq!(
            template.expand("web1.example.com"),
            "access.web1_example_com"
        );
        assert_eq!(template.stream_subject(), "access.*");
        let inside: SubjectTemplate = "logs.h-{host}.http".parse().unwrap();
        assert_eq!(inside.expand("a b"), "logs.h-a_b.http");
        assert_eq!(inside.stream_subject(), "logs.*.http");
        for bad in [
            "access..x",
            "access.*",
            "access.>",
            "a.{hostname}",
            "a b",
            "",
        ] {
            assert!(bad.parse::<SubjectTemplate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn subject_filters_match_like_nats() {
        assert!(subject_matches("access.*", "access.web1"));
        assert!(subject_matches("access.>", "access.web1.x"));
        assert!(subject_matches(">", "a"));
        assert!(!subject_matches("access.*", "access.web1.x"));
        assert!(!subject_matches("access.*", "access"));
        assert!(!subject_matches("access.web2", "access.web1"));
        assert!(!subject_matches("access.>", "access"));
    }

    #[test]
    fn stream_names_are_checked() {
        assert!("TRACER".parse::<StreamName>().is_ok());
        for bad in ["", "a.b", "a b", "a*", "a/b"] {
            assert!(bad.parse::<StreamName>().is_err(), "{bad}");
        }
    }
}
