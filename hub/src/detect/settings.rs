//! The detections file (TOML): the working calendar, the learning period, the bound on
//! remembered entities, and per rule whether it runs, its severity and its thresholds.
//! Every key has a default, so no file at all runs every built-in rule.
use std::{fmt, path::Path, time::Duration};

use anyhow::Context as _;
use serde::{Deserialize, Deserializer};

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
                toml::from_str(&text)
                    .with_context(|| format!("the detections file {}", path.display()))?
            }
            None => RawDetections::default(),
        };
        Self::resolve(raw)
    }

    fn resolve(raw: RawDetections) -> anyhow::Result<Self> {
        Ok(Self {
            max_entities: raw.max_entities.unwrap_or(DEFAULT_MAX_ENTITIES),
            learning: raw.learning.unwrap_or(Span::days(7)),
            calendar: Calendar::resolve(&raw.calendar).context("[calendar]")?,
            rules: raw.rules,
        })
    }

    #[cfg(test)]
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Self::resolve(toml::from_str(text)?)
    }
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
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("threshold"), "{error}");
        std::fs::write(&path, "[rules.no_such_rule]\n").unwrap();
        let error = format!("{:#}", Detections::load(Some(&path)).err().unwrap());
        assert!(error.contains("no_such_rule"), "{error}");
        std::fs::write(&path, "learning = \"soon\"\n").unwrap();
        let error = format!("{:#}", Detections::load(Some(&path)).err().unwrap());
        assert!(error.contains("soon"), "{error}");
    }
}
