//! The command line. Defaults are resolved here, once; the commands get settled values.
use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    enrich::EnrichSettings,
    ingest::nats::{DEFAULT_BATCH, DEFAULT_CONSUMER, DEFAULT_STREAM, NatsSettings, Readers},
    query::{filter::FilterArgs, top::TopKind},
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8686";
pub const DEFAULT_DATA: &str = "/var/lib/tracer-hub";

#[derive(Parser)]
#[command(
    name = "tracer-hub",
    version,
    about = "Collects, verifies, enriches and answers queries over every host's tracer records"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Ingest from NATS JetStream and serve the dashboard and its API.
    Serve(ServeArgs),
    /// Ingest files (plain, gz or zst; a rotated set in any order).
    Import(ImportArgs),
    /// Records matching filters, newest first.
    Query(QueryArgs),
    /// The top endpoints, users, clients, credentials, assets, failures or hosts.
    Top(TopArgs),
    /// Per stream: records, seqs, what checkpoints prove, breaks, gaps and losses.
    Integrity(IntegrityArgs),
    /// The lines refused because their seq was stored with another hash, byte for byte,
    /// one per line, by stream and seq: what `tracer verify` reads.
    Conflicts(ConflictsArgs),
    /// Alerts the detections raised, newest first.
    Alerts(AlertsArgs),
    /// Checks the detections file and Sigma rules as `serve` would, and lists every
    /// rule with whether it runs, its severity and its settings.
    Rules(RulesArgs),
    /// Reads a password on stdin and prints its argon2 hash for --password-hash-file.
    PasswordHash,
}

#[derive(Args, Clone)]
pub struct StoreArgs {
    /// The hub's data directory (the SQLite store).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// A PostgreSQL database instead of SQLite (`postgres://USER:PASSWORD@HOST:PORT/DB`):
    /// one store for several hubs. The hub creates its schema there.
    #[arg(long, value_name = "URL", conflicts_with = "data")]
    pub store: Option<String>,
    /// CA certificates (PEM) that PostgreSQL's TLS certificate must chain to, instead of
    /// the system's. The hub uses TLS whenever the server offers it (`sslmode=require`
    /// in the URL insists on it, `sslmode=disable` turns it off) and always verifies.
    #[arg(long, value_name = "FILE", requires = "store")]
    pub store_ca: Option<PathBuf>,
    /// The hub's own certificate chain (PEM) for PostgreSQL servers that authenticate
    /// clients by certificate (`cert` in pg_hba.conf); with --store-key.
    #[arg(long, value_name = "FILE", requires_all = ["store", "store_key"])]
    pub store_cert: Option<PathBuf>,
    /// The private key (PEM) of --store-cert. Keep it readable by the hub's user only.
    #[arg(long, value_name = "FILE", requires = "store_cert")]
    pub store_key: Option<PathBuf>,
}

impl StoreArgs {
    /// Where the store is, resolved once: PostgreSQL if given, else SQLite in --data.
    pub fn at(&self) -> anyhow::Result<crate::store::StoreAt> {
        Ok(match &self.store {
            Some(url) => crate::store::StoreAt::Postgres {
                url: url.clone(),
                tls: crate::store::PgTls::new(
                    self.store_ca.as_deref(),
                    self.store_cert.as_deref().zip(self.store_key.as_deref()),
                )?,
            },
            None => crate::store::StoreAt::Sqlite {
                data: self.data.clone(),
            },
        })
    }
}

/// Where `query`, `top`, `integrity` and `alerts` read: the store, or a running hub's API.
#[derive(Args, Clone)]
pub struct ReadArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Ask a running hub's JSON API (`http://127.0.0.1:8686`) instead of opening the
    /// store: from any machine that reaches the hub, with the same answers.
    #[arg(
        long,
        value_name = "URL",
        requires = "token_file",
        conflicts_with_all = ["data", "store"]
    )]
    pub hub: Option<String>,
    /// With --hub: a file holding the API token (the one given to `serve --token-file`).
    #[arg(long, value_name = "FILE", requires = "hub")]
    pub token_file: Option<PathBuf>,
    /// With --hub over HTTPS: the CA certificate (PEM) the hub's certificate chains to,
    /// when the system does not trust it.
    #[arg(long, value_name = "FILE", requires = "hub")]
    pub hub_ca: Option<PathBuf>,
    /// With --hub over mutual TLS (`serve --tls-client-ca`): this client's certificate
    /// chain (PEM), with --hub-key.
    #[arg(long, value_name = "FILE", requires_all = ["hub", "hub_key"])]
    pub hub_cert: Option<PathBuf>,
    /// The private key (PEM) of --hub-cert.
    #[arg(long, value_name = "FILE", requires = "hub_cert")]
    pub hub_key: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct VerifyArgs {
    /// The public key of a stream's checkpoints: STREAM=KEY, KEY being a file or the
    /// base64 key `tracer key show` prints; repeat for each stream.
    #[arg(long = "key", value_name = "STREAM=KEY")]
    pub keys: Vec<String>,
}

#[derive(Args, Clone)]
pub struct EnrichArgs {
    /// The asset catalog (TOML).
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// A MaxMind-format GeoIP database (.mmdb; DB-IP Lite city or ASN); repeatable.
    #[arg(long, value_name = "FILE")]
    pub geoip: Vec<PathBuf>,
    /// The identity directory (CSV or JSON).
    #[arg(long, value_name = "FILE")]
    pub directory: Option<PathBuf>,
}

impl EnrichArgs {
    pub fn settings(&self) -> EnrichSettings {
        EnrichSettings {
            catalog: self.catalog.clone(),
            geoip: self.geoip.clone(),
            directory: self.directory.clone(),
        }
    }
}

#[derive(Args, Clone)]
pub struct DetectArgs {
    /// The detections file (TOML): working calendar, learning period, and each
    /// built-in rule's settings (docs/hub-detections.md). Without it, every default.
    #[arg(long, value_name = "FILE")]
    pub detections: Option<PathBuf>,
    /// Custom rules in Sigma's format (YAML: detection and correlation rules);
    /// repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
}

/// What ingest needs, from `serve` and `import` alike.
#[derive(Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub verify: VerifyArgs,
    #[command(flatten)]
    pub enrich: EnrichArgs,
    #[command(flatten)]
    pub detect: DetectArgs,
    /// Delete what is older than DURATION (`90d`, `26w`): records, their rollups, alerts
    /// and integrity notes, in chunks between ingest batches. The chain state remembers
    /// what went, so those lines are not stored again. Without it, everything is kept.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub retain: Option<std::time::Duration>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub ingest: IngestArgs,
    /// The NATS server the sensors publish to; without it the hub only serves.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    #[arg(long, value_name = "NAME", default_value = DEFAULT_STREAM)]
    pub nats_stream: String,
    /// The durable consumer; hubs sharing one store share it.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_CONSUMER)]
    pub nats_consumer: String,
    /// The records stored in one transaction (whole NATS messages until they hold this
    /// many); twice this many messages may be unacknowledged at once (the next batch
    /// is taken apart while one commits). Larger batches drain a backlog faster; two
    /// must commit within the 10 s ack wait. Hubs sharing a consumer should give the
    /// same number.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH,
          value_parser = parse_batch)]
    pub nats_batch: usize,
    /// Where the dashboard and API listen. Other addresses than loopback need
    /// --tls-cert and --tls-key, or a TLS-terminating proxy in front.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Serve HTTPS with this PEM certificate chain (leaf first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: every connection must present a client certificate issued by one of
    /// the CAs in this PEM file, before any login (the token is still asked for).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// A file holding the dashboard password's argon2 hash (`tracer-hub password-hash`).
    #[arg(long, value_name = "FILE")]
    pub password_hash_file: Option<PathBuf>,
    /// A file holding a token: the dashboard's password and the API's bearer token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Set the cookie's Secure flag: the dashboard is reached through a TLS proxy
    /// (with --tls-cert the hub sets it itself).
    #[arg(long)]
    pub behind_tls: bool,
    /// Prometheus Alertmanager to POST alerts to (`http://localhost:9093`).
    #[arg(long, value_name = "URL")]
    pub alertmanager: Option<String>,
    /// A URL to POST alerts to as JSON; repeatable.
    #[arg(long, value_name = "URL")]
    pub webhook: Vec<String>,
    /// Do not publish alerts on NATS (`alerts.<rule>`), which --nats otherwise does.
    #[arg(long)]
    pub no_nats_alerts: bool,
    /// The dashboard's URL as people reach it, for links in alerts; default: the
    /// listen address.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

impl ServeArgs {
    pub fn nats(&self) -> Option<NatsSettings> {
        self.nats.as_ref().map(|url| NatsSettings {
            url: url.clone(),
            stream: self.nats_stream.clone(),
            consumer: self.nats_consumer.clone(),
            batch: self.nats_batch,
            // Hubs share a consumer only when they share a store, which only
            // PostgreSQL can be.
            readers: if self.ingest.store.store.is_some() {
                Readers::Shared
            } else {
                Readers::Alone
            },
        })
    }
}

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RowFormat {
    Table,
    Jsonl,
    Csv,
}

#[derive(Args)]
pub struct RulesArgs {
    #[command(flatten)]
    pub detect: DetectArgs,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub source: ReadArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
    /// `jsonl` prints the stored lines byte for byte, so they can be verified again.
    #[arg(long, value_enum, default_value = "table")]
    pub format: RowFormat,
}

#[derive(Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub source: ReadArgs,
    #[arg(value_enum)]
    pub kind: TopKind,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long, default_value_t = 10)]
    pub limit: u64,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,
}

#[derive(Args)]
pub struct ConflictsArgs {
    #[command(flatten)]
    pub source: ReadArgs,
    /// Only this stream's.
    #[arg(long, value_name = "ID")]
    pub stream: Option<String>,
}

#[derive(Args)]
pub struct IntegrityArgs {
    #[command(flatten)]
    pub source: ReadArgs,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,
}

#[derive(Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub source: ReadArgs,
    /// Alerts last seen within DURATION (`15m`, `24h`) or since an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only this rule (`off_hours`, `sigma.<id>`).
    #[arg(long)]
    pub rule: Option<String>,
    /// Only this severity or higher: low, medium, high, critical.
    #[arg(long)]
    pub severity: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long, value_enum, default_value = "table")]
    pub format: AlertFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AlertFormat {
    Table,
    Jsonl,
}

/// `--nats-batch`: 1 to 100,000. A larger batch would take longer to commit than the
/// consumer's 10 s ack wait on a slow store, and come again while it is stored.
fn parse_batch(text: &str) -> Result<usize, String> {
    const MAX: usize = 100_000;
    match text.parse::<usize>() {
        Ok(n @ 1..=MAX) => Ok(n),
        _ => Err(format!("expected a number of records from 1 to {MAX}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, Command};

    fn nats_batch(value: &str) -> Result<usize, String> {
        let cli = Cli::try_parse_from(["tracer-hub", "serve", "--nats-batch", value])
            .map_err(|e| e.to_string())?;
        match cli.command {
            Command::Serve(args) => Ok(args.nats_batch),
            _ => Err("not serve".to_owned()),
        }
    }

    #[test]
    fn nats_batch_is_bounded() {
        assert_eq!(nats_batch("5000"), Ok(5000));
        assert_eq!(nats_batch("100000"), Ok(100_000));
        for bad in ["0", "100001", "many"] {
            let err = nats_batch(bad).expect_err(bad);
            assert!(err.contains("from 1 to 100000"), "{bad}: {err}");
        }
    }
}
