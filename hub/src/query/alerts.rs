//! Alerts as the CLI and the API show them.
use serde_json::{Value, json};

use super::format;
use crate::{store::alerts::Alert, when::format_ns};

pub fn json(alert: &Alert) -> Value {
    json!({
        "id": alert.id,
        "rule": alert.rule,
        "severity": alert.severity.as_str(),
        "entity": alert.entity,
        "first_seen": format_ns(alert.first_ns),
        "last_seen": format_ns(alert.last_ns),
        "count": alert.count,
        "summary": alert.summary,
        "records": alert.records.iter()
            .map(|(stream, seq)| json!({ "stream": stream, "seq": seq }))
            .collect::<Vec<_>>(),
    })
}

pub fn table(alerts: &[Alert]) -> String {
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                format_ns(a.last_ns),
                a.severity.as_str().to_owned(),
                format::cell(&a.rule, 40),
                format::cell(&a.entity, 60),
                a.count.to_string(),
                format::cell(&a.summary, 400),
            ]
        })
        .collect();
    format::table(
        &[
            "id",
            "last seen",
            "severity",
            "rule",
            "entity",
            "count",
            "summary",
        ],
        &rows,
    )
}
