//! The one place where defaults are applied: a [`Config`] (the file, with the flags
//! laid over it by `cli`) becomes the typed settings `tracer run` works with. Each
//! default is written once, here or as a constant the flags' help shows.
use std::{num::NonZeroU64, time::Duration};

use super::{Config, ConfigError, IdentityConfig, PathRedactionConfig};
use crate::{
    audit::Settings as AuditSettings,
    sink::{OutputSettings, nats::NatsConfig},
};

pub const DEFAULT_RINGBUF_BYTES: u32 = 16 << 20;
pub const DEFAULT_STATS_INTERVAL_SECONDS: u64 = 10;

/// What `tracer run` does, with every default resolved.
#[derive(Debug)]
pub struct RunSettings {
    /// Sorted, without repeats, never empty.
    pub ports: Vec<u16>,
    pub ringbuf_bytes: u32,
    /// How often health lines go to stderr, and how often NATS reports a backlog.
    pub stats_interval: Duration,
    /// Query parameter names whose values are written as `REDACTED` besides those the
    /// built-in pattern catches: the configured names and the parameters that carry
    /// API keys.
    pub redact_query_params: Vec<String>,
    pub bpf_stats: bool,
    pub path_redaction: PathRedactionConfig,
    pub identity: IdentityConfig,
    pub output: OutputSettings,
    pub nats: NatsConfig,
    pub audit: AuditSettings,
}

impl RunSettings {
    pub fn resolve(config: Config) -> Result<Self, ConfigError> {
        let mut ports: Vec<u16> = config.ports.iter().map(|p| p.get()).collect();
        ports.sort_unstable();
        ports.dedup();
        if ports.is_empty() {
            return Err(ConfigError::NoPorts);
        }
        let mut redact_query_params: Vec<String> = config
            .redact_query_params
            .iter()
            .cloned()
            // A query parameter that carries an API key is a credential too.
            .chain(config.identity.api_key_query_params.iter().cloned())
            .collect();
        redact_query_params.dedup();
        Ok(Self {
            ports,
            ringbuf_bytes: config.ringbuf_bytes.unwrap_or(DEFAULT_RINGBUF_BYTES),
            stats_interval: Duration::from_secs(
                config
                    .stats_interval
                    .map_or(DEFAULT_STATS_INTERVAL_SECONDS, NonZeroU64::get),
            ),
            redact_query_params,
            bpf_stats: config.bpf_stats,
            path_redaction: config.path_redaction,
            audit: config.audit.settings(),
            identity: config.identity,
            output: config.output,
            nats: config.nats,
        })
    }
}

/// The kernel ring buffer's size must be a power of two of at least one page; the
/// flag and the file check it here alike.
pub fn check_ringbuf_bytes(n: u32) -> Result<u32, String> {
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two >= 4096"));
    }
    Ok(n)
}
