//! Real-time detections on the hub's stream of records.
//!
//! Rules see each access record after it is verified, enriched and stored, in the same
//! transaction: their findings become alerts and what they learned is saved with the
//! batch, so a restarted hub resumes from exactly what its store holds. Time is the
//! records' own (`timestamp`), never the wall clock, so a recorded or generated
//! scenario plays the same at any hour; the one exception is a silent sensor, which
//! sends no records to carry time (see [`Detector::tick`]).
//!
//! Built-in rules live in [`rules`], one file each; custom rules are Sigma detection
//! and correlation rules ([`sigma`]).
mod calendar;
mod rules;
mod settings;
pub mod sigma;
mod tracker;

use std::net::IpAddr;

pub use settings::Detections;

/// A rule as configured, for `tracer-hub rules`.
#[derive(Debug, serde::Serialize)]
pub struct Listed {
    /// The id its alerts carry.
    pub rule: String,
    /// `built-in`, `integrity`, or the Sigma rules file.
    pub source: String,
    pub runs: bool,
    pub severity: crate::store::alerts::Severity,
    /// A built-in rule's other settings, as resolved; a Sigma rule's title and kind.
    pub settings: serde_json::Value,
}

/// What the detections file and the Sigma files configure, for `tracer-hub rules`.
#[derive(Debug, serde::Serialize)]
pub struct Listing {
    /// How long an entity is watched before what is new for it is news.
    pub learning: String,
    pub max_entities: usize,
    /// The working calendar `off_hours` reads: the default and each override.
    pub calendar: serde_json::Value,
    pub rules: Vec<Listed>,
}

/// Every rule the detections file and the Sigma files give, and the settings they
/// share, checked as `serve` checks them: an invalid file is the same error.
pub fn listing(
    detections: Option<&std::path::Path>,
    sigma_files: &[std::path::PathBuf],
) -> anyhow::Result<Listing> {
    let settings = Detections::load(detections)?;
    let mut rules = settings.rules.listing()?;
    rules.extend(sigma::listing(sigma_files)?);
    Ok(Listing {
        learning: settings.learning.to_string(),
        max_entities: settings.max_entities,
        calendar: settings.calendar.listing(),
        rules,
    })
}

use self::{rules::Rule, sigma::Sigma, tracker::Persist};
use crate::{
    enrich::Enrichment,
    ingest::record::Fields,
    store::{
        Batch, Learned,
        alerts::{NewAlert, Severity},
    },
    verify::{Event, Link},
    when::format_ns,
};

/// One access record as the rules see it.
pub struct Observation<'a> {
    pub fields: &'a Fields,
    pub enrichment: &'a Enrichment,
    pub link: Link,
}

impl Observation<'_> {
    pub fn ts_ns(&self) -> i64 {
        self.fields.ts_ns
    }

    pub fn user(&self) -> Option<&str> {
        self.fields.user()
    }

    pub fn client(&self) -> Option<IpAddr> {
        self.fields.client
    }

    pub fn status(&self) -> u16 {
        self.fields.status.unwrap_or(0)
    }

    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status())
    }

    /// Whether the server accepted the identity the request claims. The sensor records
    /// a Basic user name whether or not the password was right, and a JWT's claims
    /// whether or not the token verified, so the name alone proves nothing. It counts
    /// when:
    /// - there was a response, and it was not 401 or 403 (a denial: wrong password,
    ///   refused token, or an identity the server would not serve);
    /// - and, for a bearer token, the sensor did not find its claims forged or
    ///   unprovable (`bad_signature`, `unknown_key`, `untrusted_issuer`). An expired,
    ///   not yet valid or wrong-audience token still carries claims a trusted issuer
    ///   signed, so if the server served it, that identity acted (and `broken_auth`
    ///   says the server should not have).
    ///
    /// The identity rules (`off_hours`, `new_source`, `volume`, `credential_sharing`,
    /// `first_confidential`) learn from and alert on accepted identities only; the
    /// failure rules see every request.
    pub fn identity_accepted(&self) -> bool {
        let answered = !matches!(self.status(), 0 | 401 | 403);
        let forged = self.fields.token_verified == Some(false)
            && matches!(
                self.fields.token_failure.as_deref(),
                Some("bad_signature" | "unknown_key" | "untrusted_issuer")
            );
        answered && !forged
    }

    /// The user, when the server accepted the identity ([`Self::identity_accepted`]).
    pub fn accepted_user(&self) -> Option<&str> {
        self.user().filter(|_| self.identity_accepted())
    }

    /// The actor, when the server accepted the identity ([`Self::identity_accepted`]).
    pub fn accepted_actor(&self) -> Option<String> {
        self.actor().filter(|_| self.identity_accepted())
    }

    /// Who acted: the user, else the API credential's fingerprint.
    pub fn actor(&self) -> Option<String> {
        self.user().map(|u| format!("user:{u}")).or_else(|| {
            self.fields
                .credential
                .as_ref()
                .map(|c| format!("credential:{c}"))
        })
    }

    pub fn record(&self) -> (String, u64) {
        (self.fields.stream.clone(), self.fields.seq)
    }

    /// `GET /orders/{id}`: the endpoint as the template names it.
    pub fn endpoint(&self) -> String {
        format!(
            "{} {}",
            self.fields.method.as_deref().unwrap_or("-"),
            self.enrichment.template
        )
    }

    pub fn department(&self) -> Option<&str> {
        self.enrichment.person.as_ref()?.department.as_deref()
    }
}

/// What a finding says.
#[derive(Clone, Debug, PartialEq)]
pub enum Note {
    /// About the record itself ("outside working hours"): the summary describes the
    /// request and joins every note the record drew.
    Access(String),
    /// About many records ("25 failed logins in 5m"): the summary is this text.
    Aggregate(String),
}

/// One rule's verdict on one record (or stream).
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    pub entity: String,
    pub ts_ns: i64,
    /// Findings of this rule and entity within this span group into one alert.
    pub window_ns: i64,
    pub record: Option<(String, u64)>,
    pub note: Note,
}

/// A finding with its summary, ready to store.
#[derive(Clone, Debug, PartialEq)]
pub struct Alerting {
    pub finding: Finding,
    pub summary: String,
}

impl Alerting {
    pub fn new_alert(&self) -> NewAlert<'_> {
        let f = &self.finding;
        NewAlert {
            rule: &f.rule,
            severity: f.severity,
            entity: &f.entity,
            ts_ns: f.ts_ns,
            window_ns: f.window_ns,
            summary: &self.summary,
            record: f.record.as_ref().map(|(s, q)| (s.as_str(), *q)),
        }
    }
}

pub struct Detector {
    rules: Vec<Box<dyn Rule>>,
    integrity: rules::integrity::Integrity,
    sigma: Option<Sigma>,
    context: rules::Context,
}

impl Detector {
    /// The rules `settings` enable, plus `sigma`'s, resuming from `stored` state
    /// (tracker, key, JSON). Rows this version cannot read are skipped and counted.
    pub fn new(
        settings: Detections,
        sigma: Option<Sigma>,
        stored: Vec<(String, String, String)>,
    ) -> Self {
        let (rules, integrity, context) = rules::build(settings);
        let mut detector = Self {
            rules,
            integrity,
            sigma,
            context,
        };
        let mut unreadable = 0;
        for (tracker, key, state) in &stored {
            let restored = detector
                .trackers()
                .into_iter()
                .find(|t| t.name() == tracker)
                .map(|t| t.restore(key, state));
            if !matches!(restored, Some(Ok(()))) {
                unreadable += 1;
            }
        }
        if unreadable > 0 {
            eprintln!(
                "tracer-hub: {unreadable} stored detection states were not restored (rules changed or disabled); those entities start learning again"
            );
        }
        detector
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        let mut all: Vec<&mut dyn Persist> = Vec::new();
        for rule in &mut self.rules {
            all.extend(rule.trackers());
        }
        all.extend(self.integrity.trackers());
        if let Some(sigma) = &mut self.sigma {
            all.push(sigma);
        }
        all
    }

    /// Runs every rule on one access record.
    pub fn observe(&mut self, obs: &Observation<'_>) -> Vec<Alerting> {
        let mut findings = Vec::new();
        for rule in &mut self.rules {
            rule.observe(&self.context, obs, &mut findings);
        }
        self.integrity.observe(obs, &mut findings);
        if let Some(sigma) = &mut self.sigma {
            sigma.observe(obs, &mut findings);
        }
        summarise(obs, findings)
    }

    /// A line of `stream` written at `ts_ns` that says its sensor runs, for
    /// `sensor_silent` (which lines do, the pipeline decides: with a key, only signed
    /// checkpoints). An idle host's sensor writes only checkpoints.
    pub fn heard(&mut self, stream: &str, ts_ns: i64) {
        self.integrity.heard(stream, ts_ns);
    }

    /// A stored line of `stream` that does not say its sensor runs: the stream is
    /// watched from then on.
    pub fn seen(&mut self, stream: &str, ts_ns: i64) {
        self.integrity.seen(stream, ts_ns);
    }

    /// Every gap of `stream` is filled: the (rule, entity) of the alerts that are over.
    pub fn gaps_filled(&self, stream: &str) -> Option<(&'static str, String)> {
        self.integrity.gaps_filled(stream)
    }

    /// Streams that spoke again after they were found silent: the (rule, entity) of the
    /// alerts that are over.
    pub fn revived(&mut self) -> Vec<(&'static str, String)> {
        self.integrity.revived()
    }

    /// An integrity event from verification.
    pub fn event(&mut self, event: &Event, ts_ns: i64) -> Vec<Alerting> {
        let mut findings = Vec::new();
        self.integrity.event(event, ts_ns, &mut findings);
        findings.into_iter().map(aggregate).collect()
    }

    /// Sensors silent at `now_ns`. Serve calls it with the wall clock (a silent sensor
    /// sends nothing that carries time); import with the newest record's time.
    pub fn tick(&mut self, now_ns: i64) -> Vec<Alerting> {
        let mut findings = Vec::new();
        self.integrity.tick(now_ns, &mut findings);
        findings.into_iter().map(aggregate).collect()
    }

    /// Saves what changed since the last save into `batch`.
    pub fn save(&mut self, batch: &mut Batch<'_>) -> anyhow::Result<()> {
        batch.learn(self.learned()?)
    }

    /// What changed since the last save, as rows to store: each entity's state as JSON,
    /// or `None` to forget it. Serialising is most of saving, so the detection thread
    /// does it and the writer only stores the rows.
    pub fn learned(&mut self) -> anyhow::Result<Learned> {
        let mut rows = Vec::new();
        for tracker in self.trackers() {
            tracker.changes(&mut |name, key, state| {
                rows.push((name.to_owned(), key.to_owned(), state.map(str::to_owned)));
                Ok(())
            })?;
        }
        Ok(rows)
    }
}

fn aggregate(finding: Finding) -> Alerting {
    let summary = match &finding.note {
        Note::Access(note) | Note::Aggregate(note) => note.clone(),
    };
    Alerting { finding, summary }
}

/// Record findings share one description of the request and every note it drew:
/// "alice GET /hr/salaries (asset payroll, restricted) at 02:14 UTC from 200.1.2.3
/// (BR): outside working hours; new country BR".
fn summarise(obs: &Observation<'_>, findings: Vec<Finding>) -> Vec<Alerting> {
    let notes: Vec<&str> = findings
        .iter()
        .filter_map(|f| match &f.note {
            Note::Access(note) => Some(note.as_str()),
            Note::Aggregate(_) => None,
        })
        .collect();
    let described = (!notes.is_empty()).then(|| format!("{}: {}", describe(obs), notes.join("; ")));
    findings
        .into_iter()
        .map(|finding| {
            let summary = match (&finding.note, &described) {
                (Note::Access(_), Some(described)) => described.clone(),
                (Note::Access(note) | Note::Aggregate(note), _) => note.clone(),
            };
            Alerting { finding, summary }
        })
        .collect()
}

fn describe(obs: &Observation<'_>) -> String {
    let f = obs.fields;
    let who = match (obs.user(), &f.credential) {
        (Some(user), _) => user.to_owned(),
        (None, Some(credential)) => format!("credential {credential}"),
        (None, None) => "an anonymous client".to_owned(),
    };
    let asset = obs
        .enrichment
        .asset
        .as_ref()
        .map(|a| format!(" (asset {}, {})", a.name, a.sensitivity.as_str()))
        .unwrap_or_default();
    let time = format_ns(f.ts_ns);
    let hhmm = time.get(11..16).unwrap_or("");
    let from = match obs.client() {
        Some(client) => {
            let country = obs
                .enrichment
                .place
                .as_ref()
                .and_then(|p| p.geo.country.as_deref())
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            format!(" from {client}{country}")
        }
        None => String::new(),
    };
    format!(
        "{who} {} {}{asset} -> {} at {hhmm} UTC{from}",
        f.method.as_deref().unwrap_or("-"),
        f.path.as_deref().unwrap_or("-"),
        obs.status()
    )
}

#[cfg(test)]
mod tests;
