//! Command-line interface.
use std::{num::NonZeroU16, num::NonZeroU64, path::PathBuf};

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::{
    config::Config,
    sink::nats::{NatsConfig, StreamName, SubjectTemplate},
};

#[derive(Parser, Debug)]
#[command(
    name = "tracer",
    version,
    about = "eBPF host-level HTTP access tracer: who accessed what, when, from where, served by which process"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Trace HTTP requests received on the given local ports; one JSON record per request on stdout.
    Run(RunArgs),
    /// Check whether this host can run the tracer; exits non-zero naming what is missing.
    Check,
    /// Work with configuration files (docs/config.md).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Push synthetic records through one sink and time them (`cargo xtask bench`).
    #[command(hide = true)]
    SinkBench(SinkBenchArgs),
}

#[derive(Args, Debug)]
pub struct SinkBenchArgs {
    /// Records to push.
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Records per flush, as the pipeline flushes once per drained batch.
    #[arg(long, default_value_t = 64)]
    pub batch: u64,
    /// With --nats: the NATS sink alone (timed until every record is acknowledged);
    /// without: stdout.
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a TOML configuration file and read the files it names; errors give the line.
    Check { file: PathBuf },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Local TCP port to watch (IPv4 and IPv6, any local address). Repeat for several ports.
    /// Replaces the config file's `ports`.
    #[arg(
        long = "port",
        short = 'p',
        required_unless_present = "config",
        value_name = "PORT"
    )]
    pub ports: Vec<NonZeroU16>,

    /// TOML configuration file (docs/config.md); flags given as well override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Size of the kernel ring buffer in bytes (a power of two, at least one page) [default: 16777216].
    #[arg(long, value_parser = parse_ringbuf_size)]
    pub ringbuf_bytes: Option<u32>,

    /// Seconds between loss/health reports on stderr (only printed when something changed) [default: 10].
    #[arg(long)]
    pub stats_interval: Option<NonZeroU64>,

    /// Extra query parameter name whose value is written as REDACTED (the built-in list
    /// covers access_token, api_key, password, sig, X-Amz-Signature and more).
    #[arg(long = "redact-query-param", value_name = "NAME")]
    pub redact_query_params: Vec<String>,

    /// Have the kernel time the tracer's eBPF programs (BPF_ENABLE_STATS) and report their
    /// run time in the summary: what the tracer costs the traced processes. Costs two
    /// clock reads per program run while enabled.
    #[arg(long)]
    pub bpf_stats: bool,

    #[command(flatten)]
    pub nats: NatsArgs,
}

impl RunArgs {
    /// The config file (or the defaults) with the flags applied on top.
    pub fn resolve(&self) -> Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if !self.ports.is_empty() {
            config.ports.clone_from(&self.ports);
        }
        if config.ports.is_empty() {
            bail!("no port to watch: give --port or `ports` in the config file");
        }
        config.ringbuf_bytes = self.ringbuf_bytes.or(config.ringbuf_bytes);
        config.stats_interval = self.stats_interval.or(config.stats_interval);
        config.bpf_stats |= self.bpf_stats;
        config
            .redact_query_params
            .extend(self.redact_query_params.iter().cloned());
        self.nats.apply(&mut config.nats);
        Ok(config)
    }
}

/// The NATS JetStream sink (docs/audit.md); each flag overrides its `[nats]` key.
#[derive(Args, Debug)]
pub struct NatsArgs {
    /// Publish every record to NATS JetStream at this URL (`nats://host:4222`, `tls://...`;
    /// several separated by commas). Records go through an on-disk spool first.
    /// Checked when the sink starts, not here: clap's error would print the URL and any
    /// password in it.
    #[arg(long = "nats", value_name = "URL")]
    pub url: Option<String>,

    /// Subject of each record; `{host}` is this host's name (dots made `_`) [default: access.{host}].
    #[arg(long = "nats-subject", value_name = "TEMPLATE")]
    pub subject: Option<SubjectTemplate>,

    /// JetStream stream that must take the subject [default: TRACER].
    #[arg(long = "nats-stream", value_name = "NAME")]
    pub stream: Option<StreamName>,

    /// Create the stream (file storage, subjects from the template) when it does not exist.
    #[arg(long = "nats-create-stream")]
    pub create_stream: bool,

    /// Directory of the spool; one tracer per directory [default: /var/lib/tracer/spool].
    #[arg(long = "nats-spool-dir", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Bound of the spool; when full, new records are discarded and counted [default: 1073741824].
    #[arg(long = "nats-spool-max-bytes", value_name = "BYTES")]
    pub spool_max_bytes: Option<NonZeroU64>,

    /// At shutdown, how long to wait for the spool to be published [default: 5000].
    #[arg(long = "nats-drain-timeout-ms", value_name = "MS")]
    pub drain_timeout_ms: Option<u64>,

    /// NATS credentials file (user JWT and NKey seed).
    #[arg(long = "nats-creds", value_name = "FILE")]
    pub creds_file: Option<PathBuf>,

    /// File holding a NATS token (kept off the command line, where `ps` would show it).
    #[arg(long = "nats-token-file", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl NatsArgs {
    pub fn apply(&self, config: &mut NatsConfig) {
        if let Some(url) = &self.url {
            config.url = Some(url.clone());
        }
        if let Some(subject) = &self.subject {
            config.subject = subject.clone();
        }
        if let Some(stream) = &self.stream {
            config.stream = stream.clone();
        }
        config.create_stream |= self.create_stream;
        if let Some(dir) = &self.spool_dir {
            config.spool_dir.clone_from(dir);
        }
        if let Some(bytes) = self.spool_max_bytes {
            config.spool_max_bytes = bytes;
        }
        if let Some(ms) = self.drain_timeout_ms {
            config.drain_timeout_ms = ms;
        }
        if let Some(file) = &self.creds_file {
            config.creds_file = Some(file.clone());
        }
        if let Some(file) = &self.token_file {
            config.token_file = Some(file.clone());
        }
    }
}

fn parse_ringbuf_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two >= 4096"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_requires_a_port_and_rejects_bad_ones() {
        assert!(Cli::try_parse_from(["tracer", "run"]).is_err());
        assert!(Cli::try_parse_from(["tracer", "run", "--port", "0"]).is_err());
        assert!(Cli::try_parse_from(["tracer", "run", "--port", "70000"]).is_err());
        assert!(
            Cli::try_parse_from(["tracer", "run", "-p", "80", "--ringbuf-bytes", "5000"]).is_err()
        );
        let cli = Cli::try_parse_from(["tracer", "run", "-p", "80", "--port", "8080"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.ports.len(), 2);
        assert!(Cli::try_parse_from(["tracer", "run", "--config", "x.toml"]).is_ok());
        assert!(Cli::try_parse_from(["tracer", "config", "check", "x.toml"]).is_ok());
    }
}
