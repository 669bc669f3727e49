//! Integrity of the trail itself:
//! - `chain_break`: a modified, conflicting, reset or unsealed line (critical);
//! - `chain_gap`: a record that follows missing seqs (they may still arrive);
//! - `signature`: a checkpoint whose signature fails (critical);
//! - `sensor_loss`: the sensor reported what it could not record;
//! - `sensor_silent`: a stream that sent nothing for longer than `silence`: no verified
//!   line of any kind (access, checkpoint, start, loss), and no line that raised a
//!   restart, reset or unkeyed event. The alert is resolved when the stream speaks
//!   again.
//!
//! An attacker who got onto a host stops or edits its sensor before anything else.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::enabled;
use crate::{
    detect::{
        Finding, Note, Observation,
        settings::Span,
        tracker::{Persist, Tracker},
    },
    store::alerts::Severity,
    verify::{Event, EventKind, Link},
    when::format_ns,
};

/// The integrity rules: one switch (`[rules.integrity]`), fixed severities.
pub const CHAIN_BREAK: (&str, Severity) = ("chain_break", Severity::Critical);
pub const SIGNATURE: (&str, Severity) = ("signature", Severity::Critical);
pub const CHAIN_GAP: (&str, Severity) = ("chain_gap", Severity::High);
pub const SENSOR_LOSS: (&str, Severity) = ("sensor_loss", Severity::Medium);
pub const SENSOR_SILENT: (&str, Severity) = ("sensor_silent", Severity::High);
pub const RULES: [(&str, Severity); 5] = [
    CHAIN_BREAK,
    SIGNATURE,
    CHAIN_GAP,
    SENSOR_LOSS,
    SENSOR_SILENT,
];

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// A stream quiet for longer than this is silent.
    pub silence: Span,
    pub window: Span,
    /// Per stream id, its own silence: a host idle at night, or one that must never
    /// pause (`[rules.integrity.streams.web1] silence = "2h"`).
    pub streams: BTreeMap<String, StreamSettings>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    pub silence: Span,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            silence: Span::minutes(5),
            window: Span::hours(1),
            streams: BTreeMap::new(),
        }
    }
}

impl Settings {
    fn silence(&self, stream: &str) -> Span {
        self.streams.get(stream).map_or(self.silence, |s| s.silence)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Heard {
    last_ns: i64,
    silent: bool,
}

/// Streams are few (one per sensor): the tracker's bound is generous on purpose.
const MAX_STREAMS: usize = 100_000;

pub struct Integrity {
    settings: Settings,
    streams: Tracker<Heard>,
    /// Streams heard again after they were found silent, until [`Integrity::revived`].
    revived: Vec<String>,
}

impl Integrity {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            streams: Tracker::new("integrity", MAX_STREAMS),
            revived: Vec::new(),
        }
    }

    fn finding(
        &self,
        rule: &str,
        severity: Severity,
        stream: &str,
        seq: Option<u64>,
        ts_ns: i64,
        note: String,
    ) -> Finding {
        Finding {
            rule: rule.to_owned(),
            severity,
            entity: format!("stream:{stream}"),
            ts_ns,
            window_ns: self.settings.window.0,
            record: seq.map(|seq| (stream.to_owned(), seq)),
            note: Note::Aggregate(note),
        }
    }

    /// A line of `stream` that does not say its sensor runs (a record of a stream with
    /// a key): the stream is watched from its first line on, but a silence is not
    /// broken by it.
    pub fn seen(&mut self, stream: &str, ts_ns: i64) {
        if !self.settings.enabled {
            return;
        }
        let heard = self.streams.entry(stream, ts_ns);
        if heard.last_ns == 0 {
            heard.last_ns = ts_ns;
        }
    }

    /// A line of `stream` written at `ts_ns` that says its sensor runs.
    pub fn heard(&mut self, stream: &str, ts_ns: i64) {
        if !self.settings.enabled {
            return;
        }
        let heard = self.streams.entry(stream, ts_ns);
        heard.last_ns = heard.last_ns.max(ts_ns);
        if std::mem::take(&mut heard.silent) {
            self.revived.push(stream.to_owned());
        }
    }

    /// The (rule, entity) of the `sensor_silent` alerts that are over: their streams
    /// spoke again since the last call.
    pub fn revived(&mut self) -> Vec<(&'static str, String)> {
        self.revived
            .drain(..)
            .map(|stream| (SENSOR_SILENT.0, format!("stream:{stream}")))
            .collect()
    }

    pub fn observe(&mut self, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        if !self.settings.enabled {
            return;
        }
        let stream = &obs.fields.stream;
        if obs.link == Link::AfterGap {
            out.push(self.finding(
                CHAIN_GAP.0,
                CHAIN_GAP.1,
                stream,
                Some(obs.fields.seq),
                obs.ts_ns(),
                format!(
                    "stream {stream}: seq {} arrived after missing seqs (a gap in the trail until they arrive)",
                    obs.fields.seq
                ),
            ));
        }
    }

    pub fn event(&mut self, event: &Event, ts_ns: i64, out: &mut Vec<Finding>) {
        if !self.settings.enabled {
            return;
        }
        let (rule, severity) = match event.kind {
            EventKind::Modified
            | EventKind::Conflict
            | EventKind::Reset
            | EventKind::Unsealed
            | EventKind::Forged => CHAIN_BREAK,
            EventKind::Signature => SIGNATURE,
            EventKind::Loss => SENSOR_LOSS,
            EventKind::Restart | EventKind::Unkeyed => return,
        };
        out.push(self.finding(
            rule,
            severity,
            &event.stream,
            Some(event.seq),
            ts_ns,
            format!(
                "stream {} seq {}: {} ({})",
                event.stream,
                event.seq,
                event.kind.as_str(),
                event.detail
            ),
        ));
    }

    /// Every gap `stream` had is filled: the open `chain_gap` alert it raised is over.
    /// (rule, entity) to resolve.
    pub fn gaps_filled(&self, stream: &str) -> Option<(&'static str, String)> {
        self.settings
            .enabled
            .then(|| (CHAIN_GAP.0, format!("stream:{stream}")))
    }

    pub fn tick(&mut self, now_ns: i64, out: &mut Vec<Finding>) {
        if !self.settings.enabled {
            return;
        }
        let settings = &self.settings;
        let quiet: Vec<(String, i64, Span)> = self
            .streams
            .iter()
            .map(|(stream, heard)| (stream, heard, settings.silence(stream)))
            .filter(|(_, heard, silence)| !heard.silent && heard.last_ns < now_ns - silence.0)
            .map(|(stream, heard, silence)| (stream.to_owned(), heard.last_ns, silence))
            .collect();
        for (stream, last_ns, silence) in quiet {
            self.streams.entry(&stream, last_ns).silent = true;
            out.push(self.finding(
                SENSOR_SILENT.0,
                SENSOR_SILENT.1,
                &stream,
                None,
                now_ns,
                format!(
                    "stream {stream}: nothing since {} (longer than {silence})",
                    format_ns(last_ns)
                ),
            ));
        }
    }

    pub fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        vec![&mut self.streams]
    }
}
