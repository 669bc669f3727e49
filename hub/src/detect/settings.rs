//! The detections file (TOML): the working calendar, the learning period, the bound on
//! remembered entities, and per rule whether it runs, its severity and its thresholds.
//! Every key has a default, so no file at all runs every built-in rule.
use std::{fmt, path::Path, time::Duration};

use anyhow::Context as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    calendar::{Calendar, RawCalendar},
    rules,
    tracker::DEFAULT_MAX_ENTITIES,
};

/// A span of time written as humantime (`90s`, `10m`, `7d`), in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub i64);

impl Span {
    pub const fn minutes(m: i64) -> Self {
        Span(m * 60_000_000_000)
    }

    pub const fn hours(h: i64) -> Self {
        Span(h * 3_600_000_000_000)
    }

    pub const fn days(d: i64) -> Self {
        Span(d * 86_400_000_000_000)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Duration::from_nanos(self.0.max(0) as u64);
        write!(f, "{}", humantime::format_duration(d))
    }
}

/// Written back as the detections file takes it (`10m`, `7days`).
impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let duration = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration like 90s, 10m or 7d: {e}"
            ))
        })?;
        let ns = i64::try_from(duration.as_nanos())
            .ok()
            .filter(|&ns| ns > 0)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is out of range")))?;
        Ok(Span(ns))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetections {
    max_entities: Option<usize>,
    learning: Option<Span>,
    #[serde(default)]
    calendar: RawCalendar,
    #[serde(default)]
    rules: rules::Settings,
}

/// The detections' settings, resolved once.
pub struct Detections {
    pub max_entities: usize,
    /// How long an entity is watched before what is new for it is news.
    pub learning: Span,
    pub calendar: Calendar,
    pub rules: rules::Settings,
}

impl Detections {
    /// Reads `path`; without one, every default.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let raw: RawDetections = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the detections file {}", path.display()))?;
                toml::from_str(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "the detections file {}",
                        located(&path.display().to_string(), &text, &e)
                    )
                })?
            }
            None => RawDetections::default(),
        };
        Ok(Self::resolve(raw))
    }

    fn resolve(raw: RawDetections) -> Self {
        Self {
            max_entities: raw.max_entities.unwrap_or(DEFAULT_MAX_ENTITIES),
            learning: raw.learning.unwrap_or(Span::days(7)),
            calendar: Calendar::resolve(&raw.calendar),
            rules: raw.rules,
        }
    }

    #[cfg(test)]
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(Self::resolve(toml::from_str(text)?))
    }
}

/// `FILE:LINE:COLUMN: key.path: message`, then the line itself, for an error the TOML
/// parser or a value's own check raised. Every value (durations, time zones, days,
/// hours) is checked while it is read, so every error has a place; one without
/// (none known) names the file only.
fn located(file: &str, text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return format!("{file}: {message}");
    };
    let at = span.start.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..at].chars().count() + 1;
    let content = text[line_start..].lines().next().unwrap_or("");
    let key = key_at(text, at)
        .map(|k| format!(" {k}:"))
        .unwrap_or_default();
    format!("{file}:{line}:{column}:{key} {message}\n{line:>5} | {content}")
}

/// The dotted key whose key or value covers byte `at` (`rules.auth_failures.threshold`).
fn key_at(text: &str, at: usize) -> Option<String> {
    fn walk(table: &toml::de::DeTable<'_>, at: usize, path: &mut Vec<String>) -> bool {
        for (key, value) in table {
            path.push(key.get_ref().to_string());
            if let toml::de::DeValue::Table(inner) = value.get_ref()
                && walk(inner, at, path)
            {
                return true;
            }
            if key.span().contains(&at) || value.span().contains(&at) {
                return true;
            }
            path.pop();
        }
        false
    }
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    walk(root.get_ref(), at, &mut path).then(|| path.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.toml");
        std::fs::write(
            &path,
            "learning = \"1d\"\n[rules.auth_failures]\nthreshold = \"many\"\n",
        )
        .unwrap();
        let error = format!("{:#}", Detections::load(Some(&path)).err().unwrap());
        assert!(error.contains("d.toml:3:"), "{error}");
        assert!(error.contains("threshold"), "{error}");
        std::fs::write(&path, "[rules.no_such_rule]\n").unwrap();
        let error = format!("{:#}", Detections::load(Some(&path)).err().unwrap());
        assert!(error.contains("no_such_rule"), "{error}");
        std::fs::write(&path, "learning = \"soon\"\n").unwrap();
        let error = format!("{:#}", Detections::load(Some(&path)).err().unwrap());
        assert!(error.contains("soon"), "{error}");
    }

    #[test]
    fn errors_name_the_file_line_and_dotted_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.toml");
        let file = path.display().to_string();
        let error = |text: &str| {
            std::fs::write(&path, text).unwrap();
            format!("{:#}", Detections::load(Some(&path)).err().unwrap())
        };
        let e = error("learning = \"1d\"\n[rules.auth_failures]\nthreshold = \"many\"\n");
        assert!(
            e.starts_with(&format!(
                "the detections file {file}:3:13: rules.auth_failures.threshold: invalid type"
            )),
            "{e}"
        );
        assert!(e.contains("3 | threshold = \"many\""), "{e}");
        let e = error("[rules.volume]\nbucket = \"soon\"\n");
        assert!(
            e.contains(&format!(
                "{file}:2:10: rules.volume.bucket: \"soon\" is not a duration"
            )),
            "{e}"
        );
        let e = error("[rules.no_such_rule]\nenabled = true\n");
        assert!(e.contains(&format!("{file}:1:")), "{e}");
        assert!(e.contains("no_such_rule"), "{e}");
    }

    #[test]
    fn calendar_errors_name_the_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.toml");
        let file = path.display().to_string();
        for (text, at, expected) in [
            (
                "[calendar]\ntimezone = \"Mars/Olympus\"\n",
                "2:12: calendar.timezone:",
                "unknown time zone \"Mars/Olympus\"",
            ),
            (
                "[calendar]\nhours = \"09:00-17:00\"\n\n[calendar.users.bob]\nhours = \"22-06\"\n",
                "5:9: calendar.users.bob.hours:",
                "hours \"22-06\" are not HH:MM-HH:MM",
            ),
            (
                "[calendar.departments.ops]\ndays = [\"mon\", \"funday\"]\n",
                "2:8: calendar.departments.ops.days:",
                "unknown day \"funday\"",
            ),
            (
                "[calendar]\nholidays = []\n",
                "2:1: calendar.holidays:",
                "unknown field `holidays`",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = format!("{:#}", Detections::load(Some(&path)).err().unwrap());
            assert!(e.contains(&format!("{file}:{at} {expected}")), "{e}");
        }
    }
}
