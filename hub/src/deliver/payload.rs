//! The JSON an alert is delivered as, to NATS and webhooks alike.
use serde_json::{Value, json};

use crate::{store::alerts::Alert, when::format_ns};

/// The alert with its records as (stream, seq) and as dashboard links.
pub fn alert_json(alert: &Alert, dashboard: &str) -> Value {
    json!({
        "id": alert.id,
        "rule": alert.rule,
        "severity": alert.severity.as_str(),
        "entity": alert.entity,
        "first_seen": format_ns(alert.first_ns),
        "last_seen": format_ns(alert.last_ns),
        "count": alert.count,
        "summary": alert.summary,
        "resolved": alert.resolved_ns.map(format_ns),
        "raised": alert.raised_ns.map(format_ns),
        "revision": alert.revision,
        "records": alert.records.iter().map(|(stream, seq)| json!({
            "stream": stream,
            "seq": seq,
            "url": record_url(dashboard, stream, *seq),
        })).collect::<Vec<_>>(),
        "url": format!("{dashboard}#/alerts/{}", alert.id),
    })
}

pub fn record_url(dashboard: &str, stream: &str, seq: u64) -> String {
    format!("{dashboard}#/record/{}/{seq}", percent(stream))
}

/// Percent-encodes everything but unreserved characters, as the dashboard's routes
/// expect.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
