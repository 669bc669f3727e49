//! `credential_sharing`: one API key or one user active from distant sources at once:
//! two addresses more than `distance_km` apart (GeoIP locations), or in different
//! countries when a location is unknown, within `window`. One person cannot be in
//! both places; a shared or stolen credential can. Only identities the server
//! accepted count: a failed login from afar is someone trying, not someone there.
use serde::{Deserialize, Serialize};

use super::{Context, Rule, enabled};
use crate::{
    detect::{
        Finding, Note, Observation,
        settings::Span,
        tracker::{Persist, Tracker},
    },
    store::alerts::Severity,
};

/// Recent sources remembered per actor.
const MAX_SOURCES: usize = 8;

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub severity: Severity,
    pub window: Span,
    pub distance_km: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::High,
            window: Span::minutes(10),
            distance_km: 500.0,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Source {
    address: String,
    location: Option<(f64, f64)>,
    country: Option<String>,
    ts_ns: i64,
}

#[derive(Default, Serialize, Deserialize)]
struct Recent {
    sources: Vec<Source>,
}

pub struct Sharing {
    settings: Settings,
    actors: Tracker<Recent>,
}

impl Sharing {
    pub fn new(settings: Settings, max: usize) -> Self {
        Self {
            settings,
            actors: Tracker::new("credential_sharing", max),
        }
    }
}

/// Great-circle distance in km.
pub fn distance_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().asin()
}

impl Rule for Sharing {
    fn observe(&mut self, _: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>) {
        let (Some(actor), Some(client)) = (obs.accepted_actor(), obs.client()) else {
            return;
        };
        let geo = obs.enrichment.place.as_ref().map(|p| &p.geo);
        let here = Source {
            address: client.to_string(),
            location: geo.and_then(|g| g.location),
            country: geo.and_then(|g| g.country.clone()),
            ts_ns: obs.ts_ns(),
        };
        let s = &self.settings;
        let recent = self.actors.entry(&actor, obs.ts_ns());
        recent
            .sources
            .retain(|o| (o.ts_ns - here.ts_ns).abs() <= s.window.0);
        let far = recent.sources.iter().find_map(|other| {
            if other.address == here.address {
                return None;
            }
            match (other.location, here.location) {
                (Some(a), Some(b)) => {
                    let km = distance_km(a, b);
                    (km > s.distance_km).then(|| (other.clone(), format!("{km:.0} km apart")))
                }
                _ => match (&other.country, &here.country) {
                    (Some(a), Some(b)) if a != b => {
                        Some((other.clone(), "in different countries".to_owned()))
                    }
                    _ => None,
                },
            }
        });
        match recent
            .sources
            .iter_mut()
            .find(|o| o.address == here.address)
        {
            Some(same) => same.ts_ns = same.ts_ns.max(here.ts_ns),
            None => {
                if recent.sources.len() >= MAX_SOURCES {
                    recent.sources.remove(0);
                }
                recent.sources.push(here.clone());
            }
        }
        let Some((other, apart)) = far else { return };
        let place = |s: &Source| match &s.country {
            Some(c) => format!("{} ({c})", s.address),
            None => s.address.clone(),
        };
        out.push(Finding {
            rule: "credential_sharing".to_owned(),
            severity: s.severity,
            entity: actor,
            ts_ns: obs.ts_ns(),
            window_ns: s.window.0,
            record: Some(obs.record()),
            note: Note::Access(format!(
                "also active from {} within {}, {apart}",
                place(&other),
                s.window
            )),
        });
    }

    fn trackers(&mut self) -> Vec<&mut dyn Persist> {
        vec![&mut self.actors]
    }
}
