//! The fields of a sealed line that the store keeps in typed columns. Parsing checks
//! types (a status that is a string is a rejected line, not a zero) and keeps the
//! original bytes for drill-down and re-verification.
use std::net::IpAddr;

use serde::Deserialize;
use tracer_audit::{Kind, chain::MAX_SEQ};

use crate::when::parse_rfc3339_ns;

/// A line that is not a record the hub can store, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not UTF-8 JSON: {0}")]
    NotJson(String),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("bad {field}: {detail}")]
    Bad { field: &'static str, detail: String },
}

/// The typed fields of one sealed line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields {
    pub kind: Option<Kind>,
    pub stream: String,
    pub seq: u64,
    pub ts_ns: i64,
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    pub status: Option<u16>,
    pub request_bytes: Option<u64>,
    pub response_bytes: Option<u64>,
    pub duration_ns: Option<u64>,
    pub client: Option<IpAddr>,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub roles: Vec<String>,
    pub auth_method: Option<String>,
    /// `audit.auth.verified`: bearer tokens only.
    pub token_verified: Option<bool>,
    pub token_failure: Option<String>,
    pub credential: Option<String>,
    pub process: Option<String>,
    pub pid: Option<u32>,
    pub user_agent: Option<String>,
    pub outcome: Option<String>,
    pub loss: Option<Loss>,
}

/// The counted part of a sensor's loss line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    pub source: String,
    pub reason: String,
    pub count: u64,
}

impl Fields {
    /// The user the record names: `user.id`, else `user.name`.
    pub fn user(&self) -> Option<&str> {
        self.user_id.as_deref().or(self.user_name.as_deref())
    }
}

/// The keys read, with their JSON types; serde rejects a key given twice and a value
/// of the wrong type.
#[derive(Deserialize)]
struct Raw {
    timestamp: Option<String>,
    #[serde(rename = "audit.kind")]
    kind: Option<String>,
    #[serde(rename = "audit.stream")]
    stream: Option<String>,
    #[serde(rename = "audit.seq")]
    seq: Option<u64>,
    #[serde(rename = "http.request.method")]
    method: Option<String>,
    #[serde(rename = "server.address")]
    host: Option<String>,
    #[serde(rename = "url.path")]
    path: Option<String>,
    #[serde(rename = "url.query")]
    query: Option<String>,
    #[serde(rename = "http.response.status_code")]
    status: Option<u16>,
    #[serde(rename = "http.request.body.size")]
    request_bytes: Option<u64>,
    #[serde(rename = "http.response.body.size")]
    response_bytes: Option<u64>,
    #[serde(rename = "event.duration")]
    duration_ns: Option<u64>,
    #[serde(rename = "client.address")]
    client: Option<IpAddr>,
    #[serde(rename = "user.id")]
    user_id: Option<String>,
    #[serde(rename = "user.name")]
    user_name: Option<String>,
    #[serde(rename = "user.roles")]
    roles: Option<Vec<String>>,
    #[serde(rename = "audit.auth.method")]
    auth_method: Option<String>,
    #[serde(rename = "audit.auth.verified")]
    token_verified: Option<bool>,
    #[serde(rename = "audit.auth.failure_reason")]
    token_failure: Option<String>,
    #[serde(rename = "audit.credential.fingerprint")]
    credential: Option<String>,
    #[serde(rename = "process.executable.name")]
    process: Option<String>,
    #[serde(rename = "process.pid")]
    pid: Option<u32>,
    #[serde(rename = "user_agent.original")]
    user_agent: Option<String>,
    #[serde(rename = "tracer.outcome")]
    outcome: Option<String>,
    #[serde(rename = "audit.loss.source")]
    loss_source: Option<String>,
    #[serde(rename = "audit.loss.reason")]
    loss_reason: Option<String>,
    #[serde(rename = "audit.loss.count")]
    loss_count: Option<u64>,
}

/// The store's integers are signed 64-bit: a larger size, duration or count is no
/// sensor's, and stored it would read back negative (a loss line could lower the
/// stream's loss total).
const MAX_STORED: u64 = i64::MAX as u64;

/// Parses one line. `kind` is `None` for an `audit.kind` this hub does not know; the
/// line is still stored and chained.
pub fn parse(line: &[u8]) -> Result<Fields, Malformed> {
    let raw: Raw = serde_json::from_slice(line).map_err(|e| {
        if e.is_data() {
            Malformed::Bad {
                field: "a field",
                detail: without_values(&e.to_string()),
            }
        } else {
            Malformed::NotJson(e.to_string())
        }
    })?;
    let stream = raw.stream.ok_or(Malformed::Missing("audit.stream"))?;
    let seq = raw.seq.ok_or(Malformed::Missing("audit.seq"))?;
    if !(1..=MAX_SEQ).contains(&seq) {
        return Err(Malformed::Bad {
            field: "audit.seq",
            detail: format!("outside 1..={MAX_SEQ}"),
        });
    }
    for (field, value) in [
        ("http.request.body.size", raw.request_bytes),
        ("http.response.body.size", raw.response_bytes),
        ("event.duration", raw.duration_ns),
        ("audit.loss.count", raw.loss_count),
    ] {
        if value.is_some_and(|v| v > MAX_STORED) {
            return Err(Malformed::Bad {
                field,
                detail: format!("above {MAX_STORED}"),
            });
        }
    }
    let kind = raw.kind.ok_or(Malformed::Missing("audit.kind"))?;
    let timestamp = raw.timestamp.ok_or(Malformed::Missing("timestamp"))?;
    let ts_ns = parse_rfc3339_ns(&timestamp).ok_or_else(|| Malformed::Bad {
        field: "timestamp",
        detail: "not an RFC 3339 time".to_owned(),
    })?;
    if stream.is_empty() || stream.len() > 128 || stream.contains('\0') {
        return Err(Malformed::Bad {
            field: "audit.stream",
            detail: "empty, longer than 128 bytes, or holding a NUL".to_owned(),
        });
    }
    let loss = match (raw.loss_source, raw.loss_reason, raw.loss_count) {
        (Some(source), Some(reason), Some(count)) => Some(Loss {
            source: as_stored(source),
            reason: as_stored(reason),
            count,
        }),
        _ => None,
    };
    let text = |value: Option<String>| value.map(as_stored);
    let as_stored_key = |value: Option<String>| value.map(as_stored_key);
    Ok(Fields {
        kind: Kind::parse(&kind),
        stream,
        seq,
        ts_ns,
        method: text(raw.method),
        host: text(raw.host),
        path: text(raw.path),
        query: text(raw.query),
        status: raw.status,
        request_bytes: raw.request_bytes,
        response_bytes: raw.response_bytes,
        duration_ns: raw.duration_ns,
        client: raw.client,
        user_id: as_stored_key(raw.user_id),
        user_name: as_stored_key(raw.user_name),
        roles: raw
            .roles
            .unwrap_or_default()
            .into_iter()
            .map(as_stored)
            .collect(),
        auth_method: text(raw.auth_method),
        token_verified: raw.token_verified,
        token_failure: text(raw.token_failure),
        credential: as_stored_key(raw.credential),
        process: text(raw.process),
        pid: raw.pid,
        user_agent: text(raw.user_agent),
        outcome: text(raw.outcome),
        loss,
    })
}

/// `value` as the stores can hold it: PostgreSQL's text has no NUL, so each becomes
/// U+FFFD, on both stores alike. A client can put a NUL in what the sensor records (a
/// Basic user name is any bytes), and one such line failed every batch it was in on
/// PostgreSQL: the stream behind it stalled, and the line's request never reached the
/// store. The stored line keeps its `\u0000` as it was sealed.
pub fn as_stored(value: String) -> String {
    if value.contains('\0') {
        value.replace('\0', "\u{FFFD}")
    } else {
        value
    }
}

/// The most of a user or credential the typed columns keep. They are index and
/// primary keys (the records' indexes, the rollups, the detections' state), and a
/// PostgreSQL b-tree entry holds at most 2,704 bytes: one longer value failed every
/// batch it was in, as a NUL did. A sensor writes at most 512 characters of a claim
/// and 256 of a Basic user; past this bound the stored line still holds all of it.
const MAX_KEY_BYTES: usize = 1_024;

/// `value` as the stores hold a user or credential: [`as_stored`], cut to
/// [`MAX_KEY_BYTES`] at a character boundary.
pub fn as_stored_key(value: String) -> String {
    let mut value = as_stored(value);
    if value.len() > MAX_KEY_BYTES {
        let end = value.floor_char_boundary(MAX_KEY_BYTES);
        value.truncate(end);
    }
    value
}

/// How far after the hub's clock a line may be dated. Each day a stored line names gets
/// a table (SQLite) or partition (PostgreSQL) of its own, so a line dated years ahead,
/// which no sensor with a working clock writes and anyone who can publish to the
/// stream can, would make one per forged day: up to 63,000 of them until 2199. Lines
/// up to a day ahead are stored, so sensors whose clock runs a little fast lose
/// nothing; later ones are rejected (counted and kept visible, never stored) and
/// break the chain where they stood.
pub const MAX_AHEAD_NS: i64 = 24 * 60 * 60 * 1_000_000_000;

/// `fields`, unless they are dated more than [`MAX_AHEAD_NS`] after `now_ns`.
pub fn not_ahead(fields: Fields, now_ns: i64) -> Result<Fields, Malformed> {
    if fields.ts_ns > now_ns.saturating_add(MAX_AHEAD_NS) {
        // No times in the reason: rejects are counted per reason.
        return Err(Malformed::Bad {
            field: "timestamp",
            detail: "more than a day after the hub's clock".to_owned(),
        });
    }
    Ok(fields)
}

/// serde's message without the offending value, which may be anything a client sent:
/// `invalid type: string "...", expected u16 at line 1 column 9` keeps `invalid type`.
fn without_values(message: &str) -> String {
    let end = message.find(" at line ").unwrap_or(message.len());
    let message = &message[..end];
    if message.starts_with("duplicate field") || message.starts_with("missing field") {
        return message.to_owned();
    }
    message.split(':').next().unwrap_or(message).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"timestamp":"2026-11-22T19:27:50.000002000Z","http.request.method":"GET","url.path":"/orders/42","http.response.status_code":200,"client.address":"203.0.113.5","user.name":"alice","audit.kind":"access","audit.stream":"web1","audit.seq":7,"audit.prev_hash":"00","audit.hash":"00"}"#;

    #[test]
    fn an_access_line_gives_its_typed_fields() {
        let fields = parse(LINE.as_bytes()).unwrap();
        assert_eq!(fields.kind, Some(Kind::Access));
        assert_eq!((fields.stream.as_str(), fields.seq), ("web1", 7));
        assert_eq!(fields.ts_ns, 1_795_375_670_000_002_000);
        assert_eq!(fields.status, Some(200));
        assert_eq!(fields.user(), Some("alice"));
        assert_eq!(fields.client, Some("203.0.113.5".parse().unwrap()));
    }

    #[test]
    fn lines_dated_more_than_a_day_ahead_of_the_clock_are_refused() {
        let fields = parse(LINE.as_bytes()).unwrap();
        let ts = fields.ts_ns;
        assert_eq!(
            not_ahead(fields.clone(), ts - MAX_AHEAD_NS),
            Ok(fields.clone())
        );
        assert_eq!(
            not_ahead(fields.clone(), ts - MAX_AHEAD_NS - 1),
            Err(Malformed::Bad {
                field: "timestamp",
                detail: "more than a day after the hub's clock".to_owned()
            })
        );
        // A clock at the end of time refuses nothing, rather than overflowing.
        assert_eq!(not_ahead(fields.clone(), i64::MAX), Ok(fields));
    }

    #[test]
    fn wrong_types_missing_keys_and_junk_are_told_apart() {
        let wrong = LINE.replace(":200,", ":\"200\",");
        assert!(matches!(
            parse(wrong.as_bytes()),
            Err(Malformed::Bad { .. })
        ));
        let missing = LINE.replace("\"audit.seq\":7,", "");
        assert_eq!(
            parse(missing.as_bytes()),
            Err(Malformed::Missing("audit.seq"))
        );
        assert!(matches!(
            parse(b"GET / HTTP/1.1"),
            Err(Malformed::NotJson(_))
        ));
        let twice = LINE.replace("\"audit.seq\":7", "\"audit.seq\":7,\"audit.seq\":8");
        assert!(parse(twice.as_bytes()).is_err());
    }

    #[test]
    fn seqs_and_counts_beyond_the_stores_integers_are_refused() {
        let field = |line: &str| match parse(line.as_bytes()) {
            Err(Malformed::Bad { field, .. }) => Some(field),
            _ => None,
        };
        let seq = |n: u64| LINE.replace("\"audit.seq\":7", &format!("\"audit.seq\":{n}"));
        assert_eq!(field(&seq(0)), Some("audit.seq"));
        assert_eq!(field(&seq(MAX_SEQ + 1)), Some("audit.seq"));
        assert_eq!(field(&seq(u64::MAX)), Some("audit.seq"));
        assert_eq!(parse(seq(MAX_SEQ).as_bytes()).unwrap().seq, MAX_SEQ);
        let sized = |n: u64| LINE.replace("}", &format!(",\"http.response.body.size\":{n}}}"));
        assert_eq!(
            field(&sized(MAX_STORED + 1)),
            Some("http.response.body.size")
        );
        assert_eq!(
            parse(sized(MAX_STORED).as_bytes()).unwrap().response_bytes,
            Some(MAX_STORED)
        );
        let lost = LINE.replace(
            "}",
            &format!(",\"audit.loss.source\":\"kernel\",\"audit.loss.reason\":\"ring_full\",\"audit.loss.count\":{}}}", u64::MAX),
        );
        assert_eq!(field(&lost), Some("audit.loss.count"));
    }
}
