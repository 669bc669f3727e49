//! `tracer-hub alerts`: what the detections raised, from the store.
use std::io::Write as _;

use anyhow::Context as _;

use crate::{
    cli::{AlertFormat, AlertsArgs},
    query::{alerts::table, filter::parse_duration},
    store::{
        StoreAt,
        alerts::{AlertFilter, Severity, list},
    },
    when::{now_ns, parse_rfc3339_ns},
};

pub fn run(args: &AlertsArgs) -> anyhow::Result<()> {
    let since_ns = match &args.since {
        None => None,
        Some(text) => Some(match parse_duration(text) {
            Some(d) => now_ns() - i64::try_from(d.as_nanos()).unwrap_or(i64::MAX / 2),
            None => parse_rfc3339_ns(text).with_context(|| {
                format!("--since {text:?} is neither a duration (24h) nor an RFC 3339 time")
            })?,
        }),
    };
    let min_severity = match &args.severity {
        None => None,
        Some(text) => Some(
            Severity::parse(text)
                .with_context(|| format!("--severity {text:?}: low, medium, high or critical"))?,
        ),
    };
    let conn = StoreAt {
        data: args.store.data.clone(),
    }
    .open_reader()?;
    let alerts = list(
        &conn,
        &AlertFilter {
            since_ns,
            rule: args.rule.clone(),
            min_severity,
            limit: args.limit,
        },
    )?;
    let mut out = std::io::stdout().lock();
    match args.format {
        AlertFormat::Jsonl => {
            for alert in &alerts {
                serde_json::to_writer(&mut out, &crate::query::alerts::json(alert))?;
                out.write_all(b"\n")?;
            }
        }
        AlertFormat::Table => out.write_all(table(&alerts).as_bytes())?,
    }
    Ok(())
}
