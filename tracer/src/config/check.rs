//! `tracer config check FILE`: what a file configures, for a person to read.
use std::{fmt, path::Path};

use super::{Config, ConfigError};
use crate::identity::Fingerprinter;

/// What `tracer config check` found, for a person to read.
pub struct CheckReport {
    lines: Vec<String>,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Parses `path` and reads every file it names, without starting anything and without
/// creating the fingerprint secret.
pub fn check(path: &Path) -> Result<CheckReport, ConfigError> {
    let config = Config::load(path)?;
    let id = &config.identity;
    let keys = id.jwt.fixed_keys()?;
    if id.fingerprint_secret_file.exists() {
        Fingerprinter::load_or_create(&id.fingerprint_secret_file)?;
    }
    let mut lines = vec![format!("{}: ok", path.display())];
    lines.push(if config.ports.is_empty() {
        "ports: none in the file (give --port)".to_owned()
    } else {
        format!(
            "ports: {}",
            config
                .ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let verification = match (&id.jwt.oidc_issuer, keys.len()) {
        (Some(issuer), n) => format!("OIDC discovery from {issuer} plus {n} fixed key(s)"),
        (None, 0) => "off: bearer tokens are reported unverified".to_owned(),
        (None, n) => format!("{n} fixed key(s)"),
    };
    lines.push(format!("jwt verification: {verification}"));
    lines.push(format!(
        "trusted proxies: {}",
        if id.proxy.trusted_cidrs.is_empty() {
            "none (identity and forwarding headers are never trusted)".to_owned()
        } else {
            id.proxy
                .trusted_cidrs
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    let paths = &config.path_redaction;
    lines.push(format!(
        "path redaction: built-in rules {}, {} more rule(s)",
        if paths.defaults { "on" } else { "off" },
        paths.rules.len()
    ));
    if let Some(file) = &config.output.file {
        lines.push(format!("output file: {file}"));
    }
    lines.push(format!(
        "fingerprint secret: {}{}",
        id.fingerprint_secret_file.display(),
        if id.fingerprint_secret_file.exists() {
            ""
        } else {
            " (created on first run)"
        }
    ));
    let audit = config.audit.settings();
    lines.push(format!(
        "audit: stream {}, state {}, key {}, checkpoint every {} records or {} s",
        audit.stream,
        audit.state_file.display(),
        audit.key_file.display(),
        audit.checkpoint_records,
        audit.checkpoint_interval.as_secs()
    ));
    let nats = &config.nats;
    lines.push(match nats.servers().map_err(ConfigError::Nats)? {
        Some(url) => format!(
            "nats: {url}, stream {}{}, subject {}, spool {} (at most {} bytes)",
            nats.stream,
            if nats.create_stream {
                " (created if missing)"
            } else {
                ""
            },
            nats.subject,
            nats.spool_dir.display(),
            nats.spool_max_bytes
        ),
        None => "nats: off".to_owned(),
    });
    Ok(CheckReport { lines })
}
