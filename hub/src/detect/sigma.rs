//! Custom rules in Sigma's format: detection rules, and correlation rules
//! (`event_count`, `value_count`, ... per `group-by` over a `timespan`), evaluated by
//! the maintained `rsigma-eval` engine on each record with the record's own time.
//!
//! Each record is shown to the engine under its own keys (`url.path`,
//! `http.response.status_code`, ...) and under Sigma's webserver names (`cs-method`,
//! `cs-uri-stem`, `cs-uri-query`, `sc-status`, `c-ip`, ...), so SigmaHQ's public
//! `category: webserver` rules load unchanged.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rsigma_eval::{
    CorrelationConfig, CorrelationEngine, CorrelationEventMode, JsonEvent, TimestampFallback,
};
use rsigma_parser::{Level, SigmaCollection, parse_sigma_yaml};
use serde_json::{Map, Value, json};

use super::{
    Finding, Note, Observation,
    tracker::{Persist, RowSink},
};
use crate::store::alerts::Severity;

/// Correlation windows and groups kept at most, across all rules.
const MAX_STATE: usize = 100_000;
/// Alerts of one Sigma rule and entity group within this span.
const WINDOW_NS: i64 = 3_600_000_000_000;

pub struct Sigma {
    engine: CorrelationEngine,
    changed: bool,
}

impl Sigma {
    /// Loads every rule file; an invalid rule is an error naming the file and line.
    pub fn load(paths: &[PathBuf]) -> anyhow::Result<Option<Self>> {
        if paths.is_empty() {
            return Ok(None);
        }
        let config = CorrelationConfig {
            timestamp_fallback: TimestampFallback::Skip,
            max_state_entries: MAX_STATE,
            correlation_event_mode: CorrelationEventMode::Refs,
            max_correlation_events: crate::store::alerts::MAX_LINKED_RECORDS,
            ..CorrelationConfig::default()
        };
        let mut engine = CorrelationEngine::new(config);
        for path in paths {
            let collection = read(path)?;
            engine
                .add_collection(&collection)
                .with_context(|| format!("compiling the Sigma rules in {}", path.display()))?;
        }
        Ok(Some(Self {
            engine,
            changed: false,
        }))
    }

    pub fn observe(&mut self, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        let event = event(obs);
        let secs = obs.ts_ns().div_euclid(1_000_000_000);
        let results = self
            .engine
            .process_event_at(&JsonEvent::borrow(&event), secs);
        self.changed = true;
        for result in results {
            let header = &result.header;
            let name = header.rule_id.as_deref().unwrap_or(&header.rule_title);
            let rule = format!("sigma.{}", slug(name));
            let severity = severity(header.level);
            let (entity, note, record) = match result.as_correlation() {
                Some(c) => {
                    let group: Vec<String> = c
                        .group_key
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let entity = if group.is_empty() {
                        "all".to_owned()
                    } else {
                        group.join(",")
                    };
                    let note = format!(
                        "{}: {} ({}) over {}s for {entity}",
                        header.rule_title,
                        c.aggregated_value,
                        format!("{:?}", c.correlation_type).to_lowercase(),
                        c.timespan_secs
                    );
                    (entity, Note::Aggregate(note), Some(obs.record()))
                }
                None => (
                    obs.actor()
                        .or_else(|| obs.client().map(|c| format!("client:{c}")))
                        .unwrap_or_else(|| "unknown".to_owned()),
                    Note::Access(format!("Sigma rule \"{}\"", header.rule_title)),
                    Some(obs.record()),
                ),
            };
            out.push(Finding {
                rule,
                severity,
                entity,
                ts_ns: obs.ts_ns(),
                window_ns: WINDOW_NS,
                record,
                note,
            });
        }
    }
}

fn read(path: &Path) -> anyhow::Result<SigmaCollection> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the Sigma rules {}", path.display()))?;
    let collection =
        parse_sigma_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let starts = document_lines(&text);
    let errors: Vec<String> = collection
        .errors()
        .map(|d| {
            let line = match (&d.location, d.document) {
                (Some(at), Some(doc)) => {
                    starts.get(doc).copied().unwrap_or(1) + at.line as usize - 1
                }
                (None, Some(doc)) => starts.get(doc).copied().unwrap_or(1),
                (Some(at), None) => at.line as usize,
                (None, None) => 1,
            };
            format!("{}:{line}: {}", path.display(), d.message)
        })
        .collect();
    if !errors.is_empty() {
        bail!("invalid Sigma rules:\n{}", errors.join("\n"));
    }
    if collection.rules.is_empty() && collection.correlations.is_empty() {
        bail!("{}: no Sigma rules in the file", path.display());
    }
    Ok(collection)
}

/// The first line (1-based) of each YAML document: documents after the first start
/// after a `---` line.
fn document_lines(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" && i > 0 {
            starts.push(i + 2);
        } else if line.trim_end() == "---" && i == 0 {
            starts[0] = 2;
        }
    }
    starts
}

fn severity(level: Option<Level>) -> Severity {
    match level {
        Some(Level::Critical) => Severity::Critical,
        Some(Level::High) => Severity::High,
        Some(Level::Medium) | None => Severity::Medium,
        Some(Level::Low | Level::Informational) => Severity::Low,
    }
}

/// A rule name usable in a NATS subject and a label: lowercase ASCII letters,
/// digits, `_` and `-`.
fn slug(name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .take(64)
        .collect();
    if slug.is_empty() {
        "rule".to_owned()
    } else {
        slug
    }
}

/// The record under its own keys and Sigma's webserver names.
fn event(obs: &Observation<'_>) -> Value {
    let f = obs.fields;
    let mut m = Map::new();
    let mut put = |keys: &[&str], value: Value| {
        if !value.is_null() {
            for key in keys {
                m.insert((*key).to_owned(), value.clone());
            }
        }
    };
    put(&["id"], json!(format!("{}:{}", f.stream, f.seq)));
    put(&["http.request.method", "cs-method"], json!(f.method));
    put(&["url.path", "cs-uri-stem"], json!(f.path));
    put(&["url.query", "cs-uri-query"], json!(f.query));
    put(&["server.address", "cs-host"], json!(f.host));
    put(&["http.response.status_code", "sc-status"], json!(f.status));
    put(
        &["http.request.body.size", "cs-bytes"],
        json!(f.request_bytes),
    );
    put(
        &["http.response.body.size", "sc-bytes"],
        json!(f.response_bytes),
    );
    put(
        &["client.address", "c-ip"],
        json!(f.client.map(|c| c.to_string())),
    );
    put(
        &["user.name", "cs-username"],
        json!(f.user_name.as_deref().or(f.user_id.as_deref())),
    );
    put(&["user.id"], json!(f.user_id));
    put(&["user.roles"], json!(f.roles));
    put(
        &["user_agent.original", "cs-user-agent"],
        json!(f.user_agent),
    );
    put(&["audit.auth.method"], json!(f.auth_method));
    put(&["audit.credential.fingerprint"], json!(f.credential));
    put(&["process.executable.name"], json!(f.process));
    put(&["audit.stream"], json!(f.stream));
    for (key, value) in obs.enrichment.fields() {
        put(&[key], value);
    }
    Value::Object(m)
}

impl Persist for Sigma {
    fn name(&self) -> &'static str {
        "sigma"
    }

    fn restore(&mut self, _key: &str, state: &str) -> Result<(), serde_json::Error> {
        let snapshot = serde_json::from_str(state)?;
        // A snapshot of other rules is dropped by the engine, which starts afresh.
        self.engine.import_state(snapshot);
        Ok(())
    }

    fn changes(&mut self, out: &mut RowSink<'_>) -> anyhow::Result<()> {
        if !std::mem::take(&mut self.changed) || self.engine.correlation_rule_count() == 0 {
            return Ok(());
        }
        let snapshot = serde_json::to_string(&self.engine.export_state())?;
        out("sigma", "engine", Some(&snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_rules_are_named_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yml");
        std::fs::write(
            &path,
            "title: ok\nlogsource:\n  category: webserver\ndetection:\n  sel:\n    cs-method: POST\n  condition: sel\n---\ntitle: broken\nlogsource:\n  category: webserver\ndetection:\n  sel:\n    cs-uri-stem|nosuchmodifier: /x\n  condition: sel\n",
        )
        .unwrap();
        let error = format!(
            "{:#}",
            Sigma::load(std::slice::from_ref(&path)).err().unwrap()
        );
        assert!(error.contains("rules.yml:9"), "{error}");
        std::fs::write(&path, "title: [unclosed\n").unwrap();
        let error = format!("{:#}", Sigma::load(&[path]).err().unwrap());
        assert!(error.contains("line") || error.contains(":1"), "{error}");
    }
}
