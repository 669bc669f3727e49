//! Command-line interface.
//!
//! Over 400 lines: every flag of every command, with its help text; no logic.
use std::{
    num::{NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize},
    path::PathBuf,
};

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use tracer_audit::StreamId;

use crate::{
    config::{
        Config, DEFAULT_CHECKPOINT_RECORDS, DEFAULT_CHECKPOINT_SECONDS, DEFAULT_RINGBUF_BYTES,
        DEFAULT_STATS_INTERVAL_SECONDS, RunSettings, check_ringbuf_bytes,
    },
    kernel::floors::Hook,
    sink::{
        OutputSettings,
        file::{ByteSize, Compression, FileSettings, Interval, Mode},
        nats::{self, NatsConfig, StreamName, SubjectTemplate},
    },
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
    Run(Box<RunArgs>),
    /// Check whether this host can run the tracer; exits non-zero naming what is missing.
    Check,
    /// Work with configuration files (docs/config.md).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The key that signs audit checkpoints (docs/audit.md).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Check the hash chain and checkpoint signatures of record files (plain, gzip or
    /// zstd), given in order; exits non-zero naming the first bad record.
    Verify(VerifyArgs),
    /// Push synthetic records through one sink and time them (`cargo xtask bench`).
    #[command(hide = true)]
    SinkBench(Box<SinkBenchArgs>),
    /// Hold empty programs on one hook set until killed (`cargo xtask bench --floors`).
    #[command(hide = true)]
    Floor {
        #[arg(value_enum)]
        hook: Hook,
        /// For openssl-probes: the port whose serving processes get the probes.
        #[arg(long = "port", value_name = "PORT")]
        ports: Vec<u16>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Print the public key and its fingerprint (creating the key pair if missing).
    Show {
        /// Private key file [default: /var/lib/tracer/audit.key].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Public key: a file (`tracer key show` output, a PEM public or private key) or
    /// the base64 key itself [default: the public half of /var/lib/tracer/audit.key].
    #[arg(long, value_name = "PUBKEY_FILE_OR_STRING")]
    pub key: Option<String>,

    /// Fail unless the files begin at the stream's first record (seq 1): proves no head
    /// was cut off.
    #[arg(long)]
    pub expect_start: bool,

    /// Fail unless the last record has this seq (known from the hub or NATS): proves no
    /// tail was cut off, even at a checkpoint.
    #[arg(long, value_name = "N")]
    pub expect_end_seq: Option<u64>,

    /// Record files, oldest first.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SinkBenchArgs {
    /// Records to push.
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Records per flush, as the pipeline flushes once per drained batch.
    #[arg(long, default_value_t = 64)]
    pub batch: u64,
    /// Write the lines as they are, without the hash chain (the baseline).
    #[arg(long)]
    pub no_chain: bool,
    /// The sinks, as for `run`: stdout unless --output or --nats is given (NATS is
    /// timed until every record is acknowledged).
    #[command(flatten)]
    pub output: OutputArgs,
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

    #[arg(
        long,
        value_parser = parse_ringbuf_size,
        help = format!("Size of the kernel ring buffer in bytes (a power of two, at least one page) [default: {DEFAULT_RINGBUF_BYTES}]")
    )]
    pub ringbuf_bytes: Option<u32>,

    #[arg(
        long,
        help = format!("Seconds between loss/health reports on stderr (only printed when something changed) [default: {DEFAULT_STATS_INTERVAL_SECONDS}]")
    )]
    pub stats_interval: Option<NonZeroU64>,

    /// Extra query (or `;` path) parameter name whose value is written as REDACTED, in
    /// any spelling of its words (the built-in pattern catches names with token,
    /// password, secret, signature, ... in them, api_key, sig, code and more).
    #[arg(long = "redact-query-param", value_name = "NAME")]
    pub redact_query_params: Vec<String>,

    /// Have the kernel time the tracer's eBPF programs (BPF_ENABLE_STATS) and report their
    /// run time in the summary: what the tracer costs the traced processes. Costs two
    /// clock reads per program run while enabled.
    #[arg(long)]
    pub bpf_stats: bool,

    /// Stream id written as `audit.stream` (A-Z a-z 0-9 . _ - :) [default: the host name].
    #[arg(long, value_name = "ID")]
    pub stream_id: Option<StreamId>,

    /// File holding the chain head across restarts [default: /var/lib/tracer/audit.state].
    #[arg(long, value_name = "FILE")]
    pub audit_state: Option<PathBuf>,

    /// Ed25519 private key that signs checkpoints, created (0600) if missing
    /// [default: /var/lib/tracer/audit.key].
    #[arg(long, value_name = "FILE")]
    pub audit_key: Option<PathBuf>,

    #[arg(
        long,
        value_name = "N",
        help = format!("Write a signed checkpoint after this many records [default: {DEFAULT_CHECKPOINT_RECORDS}]")
    )]
    pub checkpoint_records: Option<NonZeroU64>,

    #[arg(
        long,
        value_name = "S",
        help = format!("Write a signed checkpoint after this many seconds when records were written [default: {DEFAULT_CHECKPOINT_SECONDS}]")
    )]
    pub checkpoint_seconds: Option<NonZeroU64>,
    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub nats: NatsArgs,
}

/// Where records go (docs/audit.md, "File sink"); the `[output]` table of the config.
#[derive(Args, Debug, Default)]
pub struct OutputArgs {
    /// Append records to FILE (created with --output-mode) instead of stdout.
    #[arg(long = "output", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Write records to stdout as well as to the other outputs.
    #[arg(long)]
    pub stdout: bool,

    /// Permissions of the output file and its rotated files, in octal [default: 0600].
    #[arg(long, value_name = "MODE")]
    pub output_mode: Option<Mode>,

    /// Rotate the output file once it holds this much: bytes, or with K, M, G (1024-based).
    #[arg(long, value_name = "SIZE")]
    pub rotate_size: Option<ByteSize>,

    /// Rotate the output file on each multiple of this interval (UTC): 1h, 15m, or seconds.
    #[arg(long, value_name = "INTERVAL")]
    pub rotate_interval: Option<Interval>,

    /// Compression of rotated files [default: gzip].
    #[arg(long, value_enum, value_name = "ALGORITHM")]
    pub compress: Option<Compression>,

    /// Keep the newest N rotated files, deleting older ones [default: keep all].
    #[arg(long, value_name = "N")]
    pub keep: Option<NonZeroU32>,
}

impl OutputArgs {
    /// Applies the flags on top of the config file's `[output]` table.
    pub fn apply(&self, output: &mut OutputSettings) -> Result<()> {
        output.stdout |= self.stdout;
        if let Some(path) = &self.file {
            match &mut output.file {
                Some(file) => file.path.clone_from(path),
                None => output.file = Some(FileSettings::new(path.clone())),
            }
        }
        let tuned = self.output_mode.is_some()
            || self.rotate_size.is_some()
            || self.rotate_interval.is_some()
            || self.compress.is_some()
            || self.keep.is_some();
        let Some(file) = &mut output.file else {
            if tuned {
                bail!(
                    "--output-mode, --rotate-size, --rotate-interval, --compress and --keep \
                     need --output FILE (or `[output.file] path` in the config file)"
                );
            }
            return Ok(());
        };
        file.mode = self.output_mode.unwrap_or(file.mode);
        file.rotate_size = self.rotate_size.or(file.rotate_size);
        file.rotate_interval = self.rotate_interval.or(file.rotate_interval);
        file.compress = self.compress.unwrap_or(file.compress);
        file.keep = self.keep.or(file.keep);
        Ok(())
    }
}

impl RunArgs {
    /// The settings of this run: the flags laid over the config file (or an empty
    /// one), then every default applied.
    pub fn resolve(&self) -> Result<RunSettings> {
        Ok(RunSettings::resolve(self.overlay()?)?)
    }

    /// The config file (or an empty one) with the flags laid over it.
    fn overlay(&self) -> Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if !self.ports.is_empty() {
            config.ports.clone_from(&self.ports);
        }
        config.ringbuf_bytes = self.ringbuf_bytes.or(config.ringbuf_bytes);
        config.stats_interval = self.stats_interval.or(config.stats_interval);
        config.bpf_stats |= self.bpf_stats;
        let audit = &mut config.audit;
        audit.stream_id = self.stream_id.clone().or(audit.stream_id.take());
        audit.state_file = self.audit_state.clone().or(audit.state_file.take());
        audit.key_file = self.audit_key.clone().or(audit.key_file.take());
        audit.checkpoint_records = self.checkpoint_records.or(audit.checkpoint_records);
        audit.checkpoint_seconds = self.checkpoint_seconds.or(audit.checkpoint_seconds);
        config
            .redact_query_params
            .extend(self.redact_query_params.iter().cloned());
        self.output.apply(&mut config.output)?;
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

    /// Records one JetStream message carries, one per line, 1 to 1024 [default: 1]. More
    /// than one cuts the broker's and the hub's work per record; a publish that fails and
    /// is sent again may then group records differently, and JetStream keeps both copies
    /// (the hub stores each record once).
    #[arg(long = "nats-records-per-message", value_name = "N", value_parser = parse_records_per_message)]
    pub records_per_message: Option<NonZeroUsize>,

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
        if let Some(n) = self.records_per_message {
            config.records_per_message = n;
        }
        if let Some(file) = &self.creds_file {
            config.creds_file = Some(file.clone());
        }
        if let Some(file) = &self.token_file {
            config.token_file = Some(file.clone());
        }
    }
}

fn parse_records_per_message(s: &str) -> Result<NonZeroUsize, String> {
    nats::parse_records_per_message(s.parse().map_err(|e| format!("{e}"))?)
}

fn parse_ringbuf_size(s: &str) -> Result<u32, String> {
    check_ringbuf_bytes(s.parse().map_err(|e| format!("{e}"))?)
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
        assert!(Cli::try_parse_from(["tracer", "run", "-p", "80", "--stream-id", "a b"]).is_err());
        assert!(
            Cli::try_parse_from(["tracer", "run", "-p", "80", "--checkpoint-records", "0"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["tracer", "verify"]).is_err());
        assert!(Cli::try_parse_from(["tracer", "verify", "--key", "k", "a", "b.gz"]).is_ok());
        assert!(Cli::try_parse_from(["tracer", "key", "show", "--key", "k"]).is_ok());
    }

    #[test]
    fn audit_flags_override_the_config() {
        let cli = Cli::try_parse_from([
            "tracer",
            "run",
            "-p",
            "80",
            "--stream-id",
            "web-1",
            "--checkpoint-seconds",
            "5",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let audit = args.resolve().unwrap().audit;
        assert_eq!(audit.stream.as_str(), "web-1");
        assert_eq!(audit.checkpoint_interval.as_secs(), 5);
        assert_eq!(audit.checkpoint_records, 10_000);
    }

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = Cli::try_parse_from(["tracer", "run", "-p", "80"].iter().chain(args))?;
        match cli.command {
            Command::Run(args) => Ok(*args),
            _ => panic!("not run"),
        }
    }

    #[test]
    fn output_flags() {
        let args = run_args(&[
            "--output",
            "/var/log/a.jsonl",
            "--rotate-size",
            "64k",
            "--rotate-interval",
            "15m",
            "--compress",
            "zstd",
            "--keep",
            "3",
            "--output-mode",
            "0640",
        ])
        .unwrap();
        let config = args.resolve().unwrap();
        let file = config.output.file.unwrap();
        assert_eq!(file.rotate_size.map(ByteSize::bytes), Some(65536));
        assert_eq!(file.rotate_interval.map(Interval::seconds), Some(900));
        assert_eq!(file.compress, Compression::Zstd);
        assert_eq!(file.mode.bits(), 0o640);
        assert!(!config.output.stdout);

        for bad in [
            &["--output", "a", "--rotate-size", "0"][..],
            &["--output", "a", "--compress", "lz4"],
            &["--output", "a", "--output-mode", "999"],
            &["--output", "a", "--keep", "0"],
        ] {
            assert!(run_args(bad).is_err(), "{bad:?}");
        }
        let untied = run_args(&["--keep", "3"]).unwrap().resolve();
        assert!(untied.unwrap_err().to_string().contains("need --output"));
    }

    #[test]
    fn output_flags_override_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[output.file]\npath = \"/x/a.jsonl\"\nkeep = 5\ncompress = \"none\"\n",
        )
        .unwrap();
        let config = run_args(&[
            "--config",
            path.to_str().unwrap(),
            "--keep",
            "2",
            "--stdout",
        ])
        .unwrap()
        .resolve()
        .unwrap();
        let file = config.output.file.unwrap();
        assert_eq!(file.keep.map(NonZeroU32::get), Some(2));
        assert_eq!(file.compress, Compression::None, "kept from the file");
        assert_eq!(file.path, std::path::Path::new("/x/a.jsonl"));
        assert!(config.output.stdout);
    }
}
