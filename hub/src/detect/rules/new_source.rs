//! `new_source`: after its learning period, a user or credential seen from a new
//! address, network (/24 for IPv4, /48 for IPv6), country, ASN or device (the user
//! agent without its version numbers). Stolen credentials are used from somewhere
//! their owner never is. Only identities the server accepted are learned and judged,
//! so spraying a name from somewhere new neither alerts nor pollutes what is known.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Context, Rule, enabled, raised_on_sensitive};
use crate::{
    detect::{
        Finding, Note, Observation,
        settings::Span,
        tracker::{Persist, Tracker},
    },
    store::alerts::Severity,
};

/// Values remembered per kind and actor; the least recently seen goes first.
const MAX_VALUES: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Address,
    Net,
    Country,
    Asn,
    Device,
}

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Address => "address",
            Kind::Net => "network",
            Kind::Country => "country",
            Kind::Asn => "ASN",
            Kind::Device => "device",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// For a new address, network or device; a new country or ASN is one step higher.
    pub severity: Severity,
    pub kinds: Vec<Kind>,
    pub window: Span,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::Low,
            kinds: vec![
                Kind::Address,
                Kind::Net,
                Kind::Country,
                Kind::Asn,
                Kind::Device,
            ],
            window: Span::hours(24),
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Seen {
    first_ns: i64,
    values: [Vec<(String, i64)>; 5],
}

pub struct NewSource {
    settings: Settings,
    actors: Tracker<Seen>,
}

impl NewSource {
    pub fn new(settings: Settings, max: usize) -> Self {
        Self {
            settings,
            actors: Tracker::new("new_source", max),
        }
    }
}

/// `203.0.113.0/24` or `2001:db8:1::/48`.
pub fn network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// The user agent without version numbers, so an upgrade is not a new device.
pub fn device(user_agent: &str) -> String {
    user_agent
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(160)
        .collect()
}

fn values(obs: &Observation<'_>, kind: Kind) -> Option<String> {
    let geo = obs.enrichment.place.as_ref().map(|p| &p.geo);
    match kind {
        Kind::Address => obs.client().map(|c| c.to_string()),
        Kind::Net => obs.client().map(network),
        Kind::Country => geo?.country.clone(),
        Kind::Asn => geo?.asn.map(|a| format!("AS{a}")),
        Kind::Device => obs.fields.user_agent.as_deref().map(device),
    }
}

impl Rule for NewSource {
    fn observe(&mut self, context: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        // Failed attempts neither teach nor alert: anyone can claim a name.
        let Some(actor) = obs.accepted_actor() else {
            return;
        };
        let ts = obs.ts_ns();
        let seen = self.actors.entry(&actor, ts);
        if seen.first_ns == 0 {
            seen.first_ns = ts;
        }
        let learned = ts.saturating_sub(seen.first_ns) >= context.learning.0;
        let mut news = Vec::new();
        let mut severity = self.settings.severity;
        for &kind in &self.settings.kinds {
            let Some(value) = values(obs, kind) else {
                continue;
            };
            let known = &mut seen.values[kind.index()];
            match known.iter_mut().find(|(v, _)| *v == value) {
                Some((_, last)) => *last = (*last).max(ts),
                None => {
                    if known.len() >= MAX_VALUES
                        && let Some(oldest) = known
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, (_, t))| *t)
                            .map(|(i, _)| i)
                    {
                        known.swap_remove(oldest);
                    }
                    known.push((value.clone(), ts));
                    if learned {
                        if matches!(kind, Kind::Country | Kind::Asn) {
                            severity = self.settings.severity.raised();
                        }
                        news.push(format!("new {} {value}", kind.name()));
                    }
                }
            }
        }
        if news.is_empty() {
            return;
        }
        out.push(Finding {
            rule: "new_source".to_owned(),
            severity: raised_on_sensitive(severity, obs),
            entity: actor,
            ts_ns: ts,
            window_ns: self.settings.window.0,
            record: Some(obs.record()),
            note: Note::Access(news.join(", ")),
        });
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        vec![&mut self.actors]
    }
}
