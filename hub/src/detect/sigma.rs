//! Custom rules in Sigma's format: detection rules, and correlation rules
//! (`event_count`, `value_count`, ... per `group-by` over a `timespan`), evaluated by
//! the maintained `rsigma-eval` engine on each record with the record's own time.
//!
//! Each record is shown to the engine under its own keys (`url.path`,
//! `http.response.status_code`, ...) and under Sigma's webserver names (`cs-method`,
//! `cs-uri-stem`, `cs-uri-query`, `sc-status`, `c-ip`, ...), so SigmaHQ's public
//! `category: webserver` rules load unchanged.
use std::{
    ops::Range,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use rsigma_eval::{
    CorrelationConfig, CorrelationEngine, CorrelationEventMode, Engine, EvalError, JsonEvent,
    TimestampFallback, compile_rule, correlation::compile_correlation,
};
use rsigma_parser::{
    CollectionDiagnostic, CorrelationRule, DiagnosticKind, Level, SigmaCollection,
    SigmaParserErrorKind, parse_sigma_yaml,
};
use serde_json::{Map, Value, json};

use super::{
    Finding, Listed, Note, Observation,
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
    /// Loads every rule file. An invalid rule is an error naming the file, the line
    /// (of the bad key when it can be found, else of the rule's YAML document), and
    /// the rule's title and id.
    pub fn load(paths: &[PathBuf]) -> anyhow::Result<Option<Self>> {
        Self::load_each(paths, |_, _| ())
    }

    /// [`Sigma::load`], showing `each` every file's parsed rules once they compiled.
    fn load_each(
        paths: &[PathBuf],
        mut each: impl FnMut(&Path, &SigmaCollection),
    ) -> anyhow::Result<Option<Self>> {
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
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the Sigma rules {}", path.display()))?;
            let source = Source::new(path, &text);
            let collection = source.parse()?;
            if let Err(error) = engine.add_collection(&collection) {
                bail!(
                    "invalid Sigma rules:\n{}",
                    source.compile_error(&collection, &error)
                );
            }
            each(path, &collection);
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
            let rule = rule_id(header.rule_id.as_deref(), &header.rule_title);
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

/// The id a Sigma rule's alerts carry: `sigma.` and its id, or else its title, made
/// a slug.
fn rule_id(id: Option<&str>, title: &str) -> String {
    format!("sigma.{}", slug(id.unwrap_or(title)))
}

/// Each rule of `paths`, after checking them as [`Sigma::load`] does.
pub fn listing(paths: &[PathBuf]) -> anyhow::Result<Vec<Listed>> {
    let mut listed = Vec::new();
    Sigma::load_each(paths, |path, collection| {
        let mut add = |id: Option<&str>, title: &str, level: Option<Level>, kind: &str| {
            listed.push(Listed {
                rule: rule_id(id, title),
                source: path.display().to_string(),
                runs: true,
                severity: severity(level),
                settings: json!({"title": title, "kind": kind}),
            });
        };
        for rule in &collection.rules {
            add(rule.id.as_deref(), &rule.title, rule.level, "detection");
        }
        for rule in &collection.correlations {
            let kind = format!("correlation: {}", rule.correlation_type.as_str());
            add(rule.id.as_deref(), &rule.title, rule.level, &kind);
        }
    })?;
    Ok(listed)
}

/// One rules file, split into its YAML documents, to say where a problem is.
struct Source<'a> {
    path: String,
    text: &'a str,
    lines: Vec<&'a str>,
    /// Each document's lines (0-based, end exclusive), in order.
    documents: Vec<Range<usize>>,
}

/// What is wrong, and where: `file:line: message (rule "title", id x, ...)`.
struct Located {
    line: Option<usize>,
    message: String,
    document: Option<usize>,
}

impl<'a> Source<'a> {
    fn new(path: &Path, text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let mut documents = Vec::new();
        let mut start = 0;
        for (i, line) in lines.iter().enumerate() {
            if is_separator(line) {
                if i > 0 {
                    documents.push(start..i);
                }
                start = i + 1;
            }
        }
        if start < lines.len() {
            documents.push(start..lines.len());
        }
        Self {
            path: path.display().to_string(),
            text,
            lines,
            documents,
        }
    }

    /// Parses and validates the file: every error at once.
    fn parse(&self) -> anyhow::Result<SigmaCollection> {
        let collection =
            parse_sigma_yaml(self.text).map_err(|e| anyhow::anyhow!("{}: {e}", self.path))?;
        let errors: Vec<String> = collection
            .errors()
            .filter(|d| !(d.kind == DiagnosticKind::NotAMapping && self.blank(d.document)))
            .map(|d| self.diagnostic(d))
            .map(|located| self.render(&located))
            .collect();
        if !errors.is_empty() {
            bail!("invalid Sigma rules:\n{}", errors.join("\n"));
        }
        if collection.rules.is_empty() && collection.correlations.is_empty() {
            bail!("{}: no Sigma rules in the file", self.path);
        }
        Ok(collection)
    }

    fn diagnostic(&self, d: &CollectionDiagnostic) -> Located {
        let message = d.message.clone();
        if d.kind == DiagnosticKind::YamlSyntax {
            // The YAML parser's position counts from the start of the file.
            return Located {
                line: d.location.map(|at| at.line as usize),
                message,
                document: d.document.filter(|&doc| doc < self.documents.len()),
            };
        }
        let document = d.document.filter(|&doc| doc < self.documents.len());
        let needles = match d.kind {
            DiagnosticKind::Document(
                SigmaParserErrorKind::UnknownModifier | SigmaParserErrorKind::DuplicateModifier,
            ) => quoted(&message).map(|m| format!("|{m}")).collect(),
            DiagnosticKind::Document(SigmaParserErrorKind::NotIsNotAModifier) => {
                vec!["|not".to_owned()]
            }
            DiagnosticKind::Document(
                SigmaParserErrorKind::Condition | SigmaParserErrorKind::ConditionTooLong,
            ) => vec!["condition:".to_owned()],
            DiagnosticKind::Document(SigmaParserErrorKind::MissingField) => Vec::new(),
            _ => {
                let mut needles: Vec<String> = quoted(&message).map(str::to_owned).collect();
                if message.contains("condition") {
                    needles.push("condition:".to_owned());
                }
                needles
            }
        };
        Located {
            line: document.and_then(|doc| self.find(doc, &needles)),
            message,
            document,
        }
    }

    /// A compile error (the rules parsed, the engine refused them), put on the rule
    /// that causes it: each rule is compiled alone to find it.
    fn compile_error(&self, collection: &SigmaCollection, error: &EvalError) -> String {
        let at = |id: Option<&str>, name: Option<&str>, title: &str, message: String| {
            let document = self.document_of(id, name, title);
            // A missing reference is named bare; other messages quote what is wrong.
            let needles: Vec<String> = match error {
                EvalError::UnknownRuleRef(missing) if message == error.to_string() => {
                    vec![missing.clone()]
                }
                _ => quoted(&message).map(str::to_owned).collect(),
            };
            Located {
                line: document.and_then(|doc| self.find(doc, &needles)),
                message,
                document,
            }
        };
        let found = collection
            .rules
            .iter()
            .find_map(|r| {
                let e = compile_rule(r).err()?;
                Some(at(
                    r.id.as_deref(),
                    r.name.as_deref(),
                    &r.title,
                    e.to_string(),
                ))
            })
            .or_else(|| {
                collection.filters.iter().find_map(|f| {
                    let e = Engine::new().apply_filter(f).err()?;
                    Some(at(
                        f.id.as_deref(),
                        f.name.as_deref(),
                        &f.title,
                        e.to_string(),
                    ))
                })
            })
            .or_else(|| {
                collection.correlations.iter().find_map(|c| {
                    let e = compile_correlation(c).err()?;
                    Some(at(
                        c.id.as_deref(),
                        c.name.as_deref(),
                        &c.title,
                        e.to_string(),
                    ))
                })
            })
            .or_else(|| {
                let names = |c: &&CorrelationRule| {
                    [c.id.as_deref(), c.name.as_deref(), Some(c.title.as_str())]
                        .into_iter()
                        .flatten()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                };
                let culprit = match error {
                    EvalError::UnknownRuleRef(missing) => collection
                        .correlations
                        .iter()
                        .find(|c| c.rules.contains(missing)),
                    EvalError::CorrelationCycle(cycle) => {
                        let first = cycle.split(" -> ").next().unwrap_or_default();
                        collection
                            .correlations
                            .iter()
                            .find(|c| names(c).iter().any(|n| n == first))
                    }
                    _ => None,
                }?;
                Some(at(
                    culprit.id.as_deref(),
                    culprit.name.as_deref(),
                    &culprit.title,
                    error.to_string(),
                ))
            })
            .unwrap_or(Located {
                line: None,
                message: error.to_string(),
                document: None,
            });
        self.render(&found)
    }

    /// `rules.yml:14: Unknown modifier 'x' (rule "Title", id y, document from line 9)`.
    fn render(&self, located: &Located) -> String {
        let document_line = located.document.map(|doc| self.documents[doc].start + 1);
        let line = located.line.or(document_line);
        let mut about = Vec::new();
        if let Some(doc) = located.document {
            if let Some(title) = self.top_level(doc, "title") {
                about.push(format!("rule {title:?}"));
            }
            if let Some(id) = self.top_level(doc, "id") {
                about.push(format!("id {id}"));
            }
        }
        if let Some(start) = document_line {
            about.push(format!("document from line {start}"));
        }
        let place = match line {
            Some(line) => format!("{}:{line}", self.path),
            None => self.path.clone(),
        };
        if about.is_empty() {
            format!("{place}: {}", located.message)
        } else {
            format!("{place}: {} ({})", located.message, about.join(", "))
        }
    }

    /// Whether document `doc` holds nothing but blank lines and comments (a file with
    /// no rules yet, a trailing `---`).
    fn blank(&self, doc: Option<usize>) -> bool {
        // Past the documents split here: what follows the last one.
        let after_last = self.documents.last().map_or(0, |last| last.end);
        let range = doc
            .and_then(|doc| self.documents.get(doc).cloned())
            .unwrap_or(after_last..self.lines.len());
        self.lines[range].iter().all(|line| {
            let line = line.trim();
            line.is_empty() || line.starts_with('#') || is_separator(line)
        })
    }

    /// The first line (1-based) of document `doc` holding any of `needles`.
    fn find(&self, doc: usize, needles: &[String]) -> Option<usize> {
        let range = self.documents[doc].clone();
        needles.iter().find_map(|needle| {
            range
                .clone()
                .find(|&i| self.lines[i].contains(needle.as_str()))
                .map(|i| i + 1)
        })
    }

    /// A top-level `key: value` of document `doc`, unquoted.
    fn top_level(&self, doc: usize, key: &str) -> Option<String> {
        self.lines[self.documents[doc].clone()]
            .iter()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
            .map(|value| {
                value
                    .trim()
                    .trim_matches(|c| c == '\'' || c == '"')
                    .to_owned()
            })
            .filter(|value| !value.is_empty())
    }

    /// The document of a parsed rule: the one whose top-level id, name or title is
    /// the rule's, in that order of preference.
    fn document_of(&self, id: Option<&str>, name: Option<&str>, title: &str) -> Option<usize> {
        let by = |key: &str, value: Option<&str>| {
            let value = value?;
            (0..self.documents.len())
                .find(|&doc| self.top_level(doc, key).as_deref() == Some(value))
        };
        by("id", id)
            .or_else(|| by("name", name))
            .or_else(|| by("title", Some(title)))
    }
}

/// `---`, optionally followed by a comment.
fn is_separator(line: &str) -> bool {
    let line = line.trim_end();
    line == "---"
        || line
            .strip_prefix("---")
            .is_some_and(|rest| rest.trim_start().starts_with('#'))
}

/// The values quoted in a message: `Unknown modifier 'x'` gives `x`.
fn quoted(message: &str) -> impl Iterator<Item = &str> {
    message
        .split(['\'', '`'])
        .skip(1)
        .step_by(2)
        .filter(|s| !s.is_empty())
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

    /// The error `Sigma::load` gives for a file holding `text`, and the file's name.
    fn load_error(text: &str) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yml");
        std::fs::write(&path, text).unwrap();
        let error = format!(
            "{:#}",
            Sigma::load(std::slice::from_ref(&path)).err().unwrap()
        );
        (error, path.display().to_string())
    }

    const GOOD: &str = "title: ok\nlogsource:\n  category: webserver\ndetection:\n  sel:\n    cs-method: POST\n  condition: sel\n";

    #[test]
    fn invalid_rules_name_the_file_the_bad_key_and_the_rule() {
        let (error, file) = load_error(&format!(
            "{GOOD}---\ntitle: broken\nid: broken-1\nlogsource:\n  category: webserver\ndetection:\n  sel:\n    cs-uri-stem|nosuchmodifier: /x\n  condition: sel\n---\ntitle: 'bad condition'\nlogsource:\n  category: webserver\ndetection:\n  sel:\n    cs-method: GET\n  condition: sel and nothere\n---\ntitle: no detection\nlogsource:\n  category: webserver\n"
        ));
        // Every error at once, each on the line of its key.
        assert!(
            error.contains(&format!(
                "{file}:15: Unknown modifier 'nosuchmodifier' (rule \"broken\", id broken-1, document from line 9)"
            )),
            "{error}"
        );
        assert!(
            error.contains(&format!(
                "{file}:24: Invalid detection: condition references unknown detection identifier 'nothere' (rule \"bad condition\", document from line 18)"
            )),
            "{error}"
        );
        // No key to point at: the document's line.
        assert!(
            error.contains(&format!(
                "{file}:26: Missing required field 'detection' (rule \"no detection\", document from line 26)"
            )),
            "{error}"
        );
    }

    #[test]
    fn a_trailing_separator_is_not_a_rule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yml");
        std::fs::write(&path, format!("---\n{GOOD}---\n")).unwrap();
        assert!(Sigma::load(&[path]).unwrap().is_some());
    }

    #[test]
    fn yaml_syntax_errors_give_the_line_in_the_file() {
        let (error, file) = load_error(&format!(
            "{GOOD}---\ntitle: second\nlogsource:\n  category: webserver\ndetection:\n  sel: [unclosed\n  condition: sel\n"
        ));
        assert!(
            error.contains(&format!("{file}:14: YAML parse error")),
            "{error}"
        );
        assert!(
            error.contains("(rule \"second\", document from line 9)"),
            "{error}"
        );
    }

    #[test]
    fn compile_errors_name_the_rule_and_its_line() {
        let (error, file) = load_error(
            "title: Not found\nid: not-found\nlogsource:\n  category: webserver\ndetection:\n  sel:\n    sc-status: 404\n  condition: sel\n---\ntitle: Many 404\nid: many-404\ncorrelation:\n  type: event_count\n  rules:\n    - not-found\n    - missing_rule\n  group-by:\n    - c-ip\n  timespan: 1m\n  condition:\n    gte: 3\n",
        );
        assert!(
            error.contains(&format!(
                "{file}:16: unknown rule reference: missing_rule (rule \"Many 404\", id many-404, document from line 10)"
            )),
            "{error}"
        );
        let correlation = |id: &str, other: &str| {
            format!(
                "title: {id}\nid: {id}\ncorrelation:\n  type: event_count\n  rules:\n    - {other}\n  group-by:\n    - c-ip\n  timespan: 1m\n  condition:\n    gte: 3\n"
            )
        };
        let (error, file) = load_error(&format!(
            "{}---\n{}",
            correlation("corr-a", "corr-b"),
            correlation("corr-b", "corr-a")
        ));
        assert!(
            error.contains(&format!(
                "{file}:1: correlation cycle detected: corr-a -> corr-b -> corr-a (rule \"corr-a\", id corr-a, document from line 1)"
            )),
            "{error}"
        );
    }

    #[test]
    fn a_file_without_rules_is_named() {
        for text in ["", "# nothing yet\n", "---\n# later\n", "---\n"] {
            let (error, file) = load_error(text);
            assert!(
                error.contains(&format!("{file}: no Sigma rules in the file")),
                "{text:?}: {error}"
            );
        }
    }
}
