//! The built-in detections, one file each. Every rule has an id (its alert's `rule`),
//! a severity and its own settings under `[rules.<id>]` in the detections file; the
//! rationale of each, and what it cannot see, is in docs/hub-detections.md.
pub mod failures;
pub mod integrity;
pub mod new_source;
pub mod off_hours;
pub mod privilege;
pub mod scraping;
pub mod sensitive;
pub mod sharing;
pub mod volume;

use serde::{Deserialize, Serialize};

use super::{
    Finding, Listed, Observation,
    calendar::Calendar,
    settings::{Detections, Span},
    tracker::Persist,
};

/// What every rule may read besides the record.
pub struct Context {
    pub learning: Span,
    pub calendar: Calendar,
}

pub trait Rule: Send {
    fn observe(&mut self, context: &Context, obs: &Observation<'_>, out: &mut Vec<Finding>);
    /// The per-entity state to save and restore.
    fn trackers(&mut self) -> Vec<&mut dyn Persist>;
}

/// `[rules.*]`: one table per rule.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    off_hours: off_hours::Settings,
    #[serde(default)]
    new_source: new_source::Settings,
    #[serde(default)]
    volume: volume::Settings,
    #[serde(default)]
    scraping: scraping::Settings,
    #[serde(default)]
    auth_failures: failures::AuthSettings,
    #[serde(default)]
    credential_stuffing: failures::StuffingSettings,
    #[serde(default)]
    scanning: failures::ScanSettings,
    #[serde(default)]
    server_errors: failures::ServerErrorSettings,
    #[serde(default)]
    restricted_access: sensitive::RestrictedSettings,
    #[serde(default)]
    first_confidential: sensitive::FirstSettings,
    #[serde(default)]
    least_privilege: privilege::LeastSettings,
    #[serde(default)]
    broken_auth: privilege::BrokenSettings,
    #[serde(default)]
    disabled_user: privilege::DisabledSettings,
    #[serde(default)]
    credential_sharing: sharing::Settings,
    #[serde(default)]
    integrity: integrity::Settings,
}

impl Settings {
    /// Each rule under its alert id, from its resolved settings: the table key is the
    /// id, and every table has `enabled` and, but for integrity's, `severity`.
    pub fn listing(&self) -> anyhow::Result<Vec<Listed>> {
        let serde_json::Value::Object(tables) = serde_json::to_value(self)? else {
            anyhow::bail!("the rules' settings are not a table");
        };
        let mut listed = Vec::new();
        for (id, table) in tables {
            let serde_json::Value::Object(mut table) = table else {
                anyhow::bail!("the settings of {id} are not a table");
            };
            let runs = table
                .remove("enabled")
                .and_then(|v| v.as_bool())
                .unwrap_or(true);
            if id == "integrity" {
                for (rule, severity) in integrity::RULES {
                    listed.push(Listed {
                        rule: rule.to_owned(),
                        source: "integrity".to_owned(),
                        runs,
                        severity,
                        settings: serde_json::Value::Object(table.clone()),
                    });
                }
                continue;
            }
            let severity = table
                .remove("severity")
                .ok_or_else(|| anyhow::anyhow!("{id} has no severity"))?;
            listed.push(Listed {
                severity: serde_json::from_value(severity)?,
                rule: id,
                source: "built-in".to_owned(),
                runs,
                settings: serde_json::Value::Object(table),
            });
        }
        Ok(listed)
    }
}

/// The enabled rules, the integrity rules (which also see verification events and
/// the clock) and the shared context.
pub fn build(d: Detections) -> (Vec<Box<dyn Rule>>, integrity::Integrity, Context) {
    let s = d.rules;
    let max = d.max_entities;
    let mut rules: Vec<Box<dyn Rule>> = Vec::new();
    let mut add = |enabled: bool, rule: Box<dyn Rule>| {
        if enabled {
            rules.push(rule);
        }
    };
    add(
        s.off_hours.enabled,
        Box::new(off_hours::OffHours::new(s.off_hours)),
    );
    add(
        s.new_source.enabled,
        Box::new(new_source::NewSource::new(s.new_source, max)),
    );
    add(
        s.volume.enabled,
        Box::new(volume::Volume::new(s.volume, max)),
    );
    add(
        s.scraping.enabled,
        Box::new(scraping::Scraping::new(s.scraping, max)),
    );
    add(
        s.auth_failures.enabled,
        Box::new(failures::AuthFailures::new(s.auth_failures, max)),
    );
    add(
        s.credential_stuffing.enabled,
        Box::new(failures::Stuffing::new(s.credential_stuffing, max)),
    );
    add(
        s.scanning.enabled,
        Box::new(failures::Scanning::new(s.scanning, max)),
    );
    add(
        s.server_errors.enabled,
        Box::new(failures::ServerErrors::new(s.server_errors, max)),
    );
    add(
        s.restricted_access.enabled,
        Box::new(sensitive::Restricted::new(s.restricted_access)),
    );
    add(
        s.first_confidential.enabled,
        Box::new(sensitive::FirstConfidential::new(s.first_confidential, max)),
    );
    add(
        s.least_privilege.enabled,
        Box::new(privilege::LeastPrivilege::new(s.least_privilege)),
    );
    add(
        s.broken_auth.enabled,
        Box::new(privilege::BrokenAuth::new(s.broken_auth)),
    );
    add(
        s.disabled_user.enabled,
        Box::new(privilege::DisabledUser::new(s.disabled_user)),
    );
    add(
        s.credential_sharing.enabled,
        Box::new(sharing::Sharing::new(s.credential_sharing, max)),
    );
    let integrity = integrity::Integrity::new(s.integrity);
    let context = Context {
        learning: d.learning,
        calendar: d.calendar,
    };
    (rules, integrity, context)
}

fn enabled() -> bool {
    true
}

/// The sensitive assets raise a finding's severity one step.
pub fn raised_on_sensitive(
    severity: crate::store::alerts::Severity,
    obs: &Observation<'_>,
) -> crate::store::alerts::Severity {
    use crate::enrich::Sensitivity;
    match obs.enrichment.asset.as_ref().map(|a| a.sensitivity) {
        Some(Sensitivity::Confidential | Sensitivity::Restricted) => severity.raised(),
        _ => severity,
    }
}
