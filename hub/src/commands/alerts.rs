//! `tracer-hub alerts`: what the detections raised, from the store or (`--hub`) through
//! a running hub's API, printed the same either way.
use std::io::Write as _;

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::remote::RemoteHub;
use crate::{
    cli::{AlertFormat, AlertsArgs},
    query::{
        alerts::{json, table},
        filter::parse_duration,
    },
    serve::MAX_LIMIT,
    store::alerts::{AlertFilter, Severity, list},
    when::{format_ns, now_ns, parse_rfc3339_ns},
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
    let alerts = match RemoteHub::from_args(&args.source)? {
        Some(hub) => remote(&hub, args, since_ns)?,
        None => {
            let mut conn = args.source.store.at()?.open_reader()?;
            let filter = AlertFilter {
                since_ns,
                rule: args.rule.clone(),
                min_severity,
                limit: args.limit,
            };
            list(&mut conn, &filter)?.iter().map(json).collect()
        }
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        AlertFormat::Jsonl => {
            for alert in &alerts {
                serde_json::to_writer(&mut out, alert)?;
                out.write_all(b"\n")?;
            }
        }
        AlertFormat::Table => out.write_all(table(&alerts).as_bytes())?,
    }
    Ok(())
}

/// The hub's `/api/alerts` answer, as `alerts --data` would print it. The start of the
/// range is computed here, from this machine's clock, as the store path does; without
/// `--since`, every alert (the API's own default is 7 days).
fn remote(hub: &RemoteHub, args: &AlertsArgs, since_ns: Option<i64>) -> anyhow::Result<Vec<Value>> {
    if args.limit > MAX_LIMIT as u32 {
        bail!(
            "--limit {}: a hub answers at most {MAX_LIMIT} alerts",
            args.limit
        );
    }
    let from = format_ns(since_ns.unwrap_or(0));
    let limit = args.limit.to_string();
    let mut params = vec![("from", from.as_str()), ("limit", limit.as_str())];
    if let Some(rule) = &args.rule {
        params.push(("rule", rule));
    }
    if let Some(severity) = &args.severity {
        params.push(("severity", severity));
    }
    let mut page: Value = hub.json("/api/alerts", &params)?;
    let Some(Value::Array(alerts)) = page.get_mut("alerts").map(Value::take) else {
        bail!("GET /api/alerts: the answer has no alerts list");
    };
    Ok(alerts
        .into_iter()
        .map(|mut alert| {
            // What the list adds to what `alerts` prints.
            if let Value::Object(map) = &mut alert {
                map.remove("revision");
                map.remove("window_seconds");
            }
            alert
        })
        .collect())
}
