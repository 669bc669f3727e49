//! tracer-hub end to end: nginx traffic through the real tracer and a real nats-server
//! into the hub, compared request by request with nginx's own access log; a hub
//! SIGKILLed mid-ingest; tampered and junk files; and no secret anywhere it writes.
//! Each test runs on both stores: SQLite (`--data`), and PostgreSQL (`--store`, the
//! `_postgres` twins, each on a throwaway cluster of its own).
use std::{collections::HashSet, path::Path, time::Duration};

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::Value;
use tests::{
    audit::key_show,
    clients::{curl, url},
    hub::{self, Hub, Store, hub_requests, nginx_requests},
    load::ab_keepalive,
    ports::free_port,
    servers::{NatsServer, Nginx, NginxConfig, Postgres, consumer_info, jetstream_api},
    tracer::{Tracer, TracerRun},
};

const STREAM_ID: &str = "web-e2e";
const WAIT: Duration = Duration::from_secs(60);
const ALICE_PASSWORD: &str = "alice-pw-never-written-7f3a";
const BOB_PASSWORD: &str = "bob-pw-never-written-91c2";
const BEARER: &str = "sk-live-bearer-never-written-5e8d";

/// What the hub under test keeps everything in.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Setup {
    dir: tempfile::TempDir,
    nats: NatsServer,
    nginx: Nginx,
    port: u16,
    /// The PostgreSQL twins' cluster: every store of the test is a database in it.
    postgres: Option<Postgres>,
}

impl Setup {
    fn new(backend: Backend) -> Result<Self> {
        let port = free_port();
        let mut config = NginxConfig::new(port);
        config.access_log = true;
        Ok(Self {
            dir: tempfile::tempdir()?,
            nats: NatsServer::start()?,
            nginx: Nginx::start(config)?,
            port,
            postgres: match backend {
                Backend::Sqlite => None,
                Backend::Postgres => Some(Postgres::start()?),
            },
        })
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `--key STREAM=FILE` for the hub, from the key the tracer signs with.
    fn key_arg(&self) -> Result<String> {
        let shown = key_show(&self.path("audit.key"))?;
        let file = self.path("audit.pub");
        std::fs::write(&file, shown)?;
        Ok(format!("{STREAM_ID}={}", file.display()))
    }

    /// The tracer publishing to NATS, trusting 127.0.0.2 as a proxy.
    fn tracer(&self) -> Result<Tracer> {
        let config = self.path("tracer.toml");
        std::fs::write(
            &config,
            "[identity.proxy]\ntrusted_cidrs = [\"127.0.0.2/32\"]\n",
        )?;
        let key = self.path("audit.key");
        let nats = self.nats.url();
        Tracer::start_with_args(
            &[self.port],
            &[
                "--config",
                config.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?,
                "--audit-key",
                key.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?,
                "--stream-id",
                STREAM_ID,
                "--nats",
                &nats,
                "--nats-create-stream",
                "--stdout",
            ],
            &[],
        )
    }

    /// The store `hub` serves: the data dir `hub`, or the cluster's `tracer` database.
    fn store(&self) -> Store {
        match &self.postgres {
            None => Store::Sqlite(self.path("hub")),
            Some(postgres) => Store::Postgres(postgres.url()),
        }
    }

    /// Another, empty store: the data dir `name`, or a new database `name`.
    fn new_store(&self, name: &str) -> Result<Store> {
        Ok(match &self.postgres {
            None => Store::Sqlite(self.path(name)),
            Some(postgres) => Store::Postgres(postgres.create_database(name)?),
        })
    }

    /// The hub reading NATS into [`Self::store`], its files beside the data dir `hub`.
    fn hub(&self, extra: &[&str]) -> Result<Hub> {
        let key = self.key_arg()?;
        let nats = self.nats.url();
        let mut args = vec!["--nats", nats.as_str(), "--key", key.as_str()];
        args.extend_from_slice(extra);
        Hub::serve_store(&self.store(), &self.path("hub"), &args)
    }

    /// `tracer-hub WORDS... STORE REST...`, `STORE` being `--data DIR` or `--store URL`;
    /// neither its stdout nor its stderr may hold the store's password.
    fn run(&self, store: &Store, words: &[&str], rest: &[&str]) -> Result<hub::Run> {
        let run = hub::run(&[words, &store.args()?[..], rest].concat())?;
        self.assert_no_password(&format!("the stdout of {words:?}"), &run.stdout);
        self.assert_no_password(&format!("the stderr of {words:?}"), &run.stderr);
        Ok(run)
    }

    /// [`Self::run`], failing unless it succeeded; its stdout.
    fn ok(&self, store: &Store, words: &[&str], rest: &[&str]) -> Result<String> {
        let run = self.run(store, words, rest)?;
        ensure!(
            run.ok,
            "tracer-hub {words:?} STORE {rest:?} failed:\n{}",
            run.stderr
        );
        Ok(run.stdout)
    }

    fn query_jsonl(&self, store: &Store, filters: &[&str]) -> Result<Vec<Value>> {
        let rest = [&["--format", "jsonl", "--limit", "100000"][..], filters].concat();
        self.ok(store, &["query"], &rest)?
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("query line {l}")))
            .collect()
    }

    /// Runs SQL on the SQLite store (Python's sqlite3: no client is installed), printing
    /// what a query returns.
    fn sqlite(&self, sql: &str) -> Result<String> {
        let output = std::process::Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys\n\
                 db = sqlite3.connect(sys.argv[1])\n\
                 for row in db.execute(sys.argv[2]): print(*row)\n\
                 db.commit()",
            ])
            .arg(self.path("hub").join("hub.sqlite"))
            .arg(sql)
            .output()?;
        ensure!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    }

    /// A restart point for the consumer, as the hub keeps one before it deletes it.
    fn keep_restart(&self, stream_created_ns: i64, start_sequence: u64) -> Result<()> {
        self.sqlite(&format!(
            "INSERT INTO nats_restarts VALUES ('TRACER', 'tracer-hub', {stream_created_ns}, {start_sequence})"
        ))?;
        Ok(())
    }

    fn kept_restarts(&self) -> Result<String> {
        self.sqlite("SELECT * FROM nats_restarts")
    }

    /// `tracer-hub integrity --format json` of `store`.
    fn integrity(&self, store: &Store) -> Result<Value> {
        let report = self.ok(store, &["integrity"], &["--format", "json"])?;
        Ok(serde_json::from_str(&report)?)
    }

    /// Waits until `hub` holds `sent` records, then checks that it stored each once, and
    /// counted it once in its rollups.
    fn assert_stored_once(&self, hub: &mut Hub, sent: u64) -> Result<()> {
        hub.wait_until(
            WAIT,
            "holding every record",
            |hub| Ok(hub.stored()? >= sent),
        )?;
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(hub.stored()?, sent, "rollups count each record once");
        let records = self.query_jsonl(&self.store(), &[])?;
        assert_eq!(records.len() as u64, sent);
        let seqs: HashSet<u64> = records
            .iter()
            .filter_map(|r| r["audit.seq"].as_u64())
            .collect();
        assert_eq!(seqs.len() as u64, sent, "each seq once");
        Ok(())
    }

    /// SIGTERM; the hub's stderr, once it and its stdout were checked for the password.
    fn stop(&self, hub: Hub) -> Result<String> {
        let stdout_file = hub.stdout_file.clone();
        let stderr = hub.stop()?;
        self.assert_quiet_hub(&stdout_file, &stderr)?;
        Ok(stderr)
    }

    /// SIGKILL, then the same checks as [`Self::stop`].
    fn kill(&self, hub: Hub) -> Result<()> {
        let stdout_file = hub.stdout_file.clone();
        let stderr = hub.kill()?;
        self.assert_quiet_hub(&stdout_file, &stderr)
    }

    fn assert_quiet_hub(&self, stdout_file: &Path, stderr: &str) -> Result<()> {
        self.assert_no_password("the hub's stderr", stderr);
        let stdout = std::fs::read_to_string(stdout_file)
            .with_context(|| format!("reading {}", stdout_file.display()))?;
        self.assert_no_password("the hub's stdout", &stdout);
        Ok(())
    }

    /// The hub must never print the password of its `--store` URL, nor keep it
    /// (a SQLite store has none). The failure shows where, not all of `text` (which may
    /// be a WAL segment).
    fn assert_no_password(&self, what: &str, text: &str) {
        let Some(postgres) = &self.postgres else {
            return;
        };
        if let Some(at) = text.find(postgres.password()) {
            let from = text.floor_char_boundary(at.saturating_sub(200));
            let to = text.ceil_char_boundary(at + 200);
            panic!(
                "{what} holds the PostgreSQL password, at byte {at}: ...{}...",
                &text[from..to]
            );
        }
    }

    /// Everything [`Self::store`] holds, named by where it is: each file under the data
    /// dir; or a dump of the database (every row, decompressed) and each file of the
    /// cluster (what rows were before they were updated or deleted, and the WAL).
    fn stored_bytes(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let Some(postgres) = &self.postgres else {
            return files_under(&self.path("hub"))?
                .into_iter()
                .map(|file| Ok((file.display().to_string(), std::fs::read(&file)?)))
                .collect();
        };
        // Writes every page the server holds in memory to the files searched below.
        postgres.psql("CHECKPOINT")?;
        let mut stored = vec![("a dump of the database".to_owned(), postgres.dump()?)];
        for file in files_under(&postgres.data_dir())? {
            // The running server may remove a file (a recycled WAL segment) meanwhile.
            match std::fs::read(&file) {
                Ok(bytes) => stored.push((file.display().to_string(), bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
            }
        }
        Ok(stored)
    }
}

/// Mixed traffic: two Basic users, a bearer key, a proxied public client, a 404, a 204.
fn traffic(port: u16) -> Result<()> {
    let alice = format!("alice:{ALICE_PASSWORD}");
    for n in 1..=5 {
        curl(&["-u", &alice, &url(port, &format!("/orders/{n}?page=1"))])?;
    }
    let bob = format!("bob:{BOB_PASSWORD}");
    curl(&["-u", &bob, &url(port, "/orders/77")])?;
    curl(&["-u", &bob, &url(port, "/static/missing.txt")])?;
    curl(&[
        "-H",
        &format!("Authorization: Bearer {BEARER}"),
        &url(port, "/204"),
    ])?;
    curl(&[
        "--interface",
        "127.0.0.2",
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        &url(port, "/reports/2026"),
    ])?;
    Ok(())
}

fn paths(records: &[Value]) -> Vec<String> {
    let mut paths: Vec<String> = records
        .iter()
        .map(|r| r["url.path"].as_str().unwrap_or_default().to_owned())
        .collect();
    paths.sort();
    paths
}

fn assert_no_secrets(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in [ALICE_PASSWORD, BOB_PASSWORD, BEARER] {
        assert!(!text.contains(secret), "{what} holds a secret ({secret})");
    }
}

fn files_under(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(files_under(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

#[test]
fn every_request_nginx_logged_is_stored_once_and_queries_find_it() -> Result<()> {
    stored_once_and_found(Backend::Sqlite)
}

#[test]
fn every_request_nginx_logged_is_stored_once_and_queries_find_it_postgres() -> Result<()> {
    stored_once_and_found(Backend::Postgres)
}

fn stored_once_and_found(backend: Backend) -> Result<()> {
    let setup = Setup::new(backend)?;
    let tracer = setup.tracer()?;
    let mut hub = setup.hub(&[])?;
    traffic(setup.port)?;
    let run: TracerRun = tracer.stop()?;
    let logged = setup.nginx.settled_access_log_lines()? as u64;
    assert_eq!(logged, 9);
    hub.wait_until(WAIT, "holding every request", |hub| {
        Ok(hub.stored()? >= logged)
    })?;
    let store = setup.store();

    // Request by request against nginx's own log.
    let records = setup.query_jsonl(&store, &[])?;
    assert_eq!(
        hub_requests(&records),
        nginx_requests(&setup.nginx.access_log()?)?,
        "the hub's records vs nginx's access log"
    );
    // The lines come back byte for byte as the tracer wrote them.
    let written: HashSet<&str> = run.stdout.lines().collect();
    let out = setup.ok(&store, &["query"], &["--format", "jsonl"])?;
    for line in out.lines() {
        assert!(
            written.contains(line),
            "not a line the tracer wrote: {line}"
        );
    }

    // Filters.
    let alice = setup.query_jsonl(&store, &["--user", "alice"])?;
    assert_eq!(
        paths(&alice),
        [
            "/orders/1",
            "/orders/2",
            "/orders/3",
            "/orders/4",
            "/orders/5"
        ]
    );
    assert_eq!(
        paths(&setup.query_jsonl(&store, &["--status", "4xx"])?),
        ["/static/missing.txt"]
    );
    assert_eq!(
        paths(&setup.query_jsonl(&store, &["--status", "204"])?),
        ["/204"]
    );
    assert_eq!(setup.query_jsonl(&store, &["--path", "/orders/"])?.len(), 6);
    assert_eq!(
        setup.query_jsonl(&store, &["--path", "/orders/*7"])?.len(),
        1
    );
    assert_eq!(
        paths(&setup.query_jsonl(&store, &["--client", "203.0.113.0/24"])?),
        ["/reports/2026"]
    );
    let keyed = setup.query_jsonl(&store, &["--method", "get", "--path", "/204"])?;
    let fingerprint = keyed[0]["audit.credential.fingerprint"]
        .as_str()
        .ok_or_else(|| anyhow!("no credential fingerprint: {}", keyed[0]))?;
    assert_eq!(
        paths(&setup.query_jsonl(&store, &["--credential", fingerprint])?),
        ["/204"]
    );
    assert!(
        setup
            .query_jsonl(&store, &["--since", "1h", "--stream", "elsewhere"])?
            .is_empty()
    );
    let bad = setup.run(&store, &["query"], &["--status", "4x"])?;
    assert!(!bad.ok && bad.stderr.contains("--status"), "{}", bad.stderr);

    // Top-N from the rollups folds ids into templates.
    let top: Value = serde_json::from_str(&setup.ok(
        &store,
        &["top", "endpoints"],
        &["--since", "1h", "--format", "json"],
    )?)?;
    assert_eq!(top[0]["key"], "/orders/{id}", "{top}");
    assert_eq!(top[0]["requests"], 6);
    assert_eq!(top[0]["users"], 2);
    let users = setup.ok(&store, &["top", "users"], &["--since", "1h"])?;
    assert!(
        users
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("alice ") && l.contains(" 5 ")),
        "{users}"
    );

    // Integrity: the whole stream, proven through the shutdown checkpoint.
    let integrity: Value = setup.integrity(&store)?;
    let stream = &integrity["streams"][0];
    assert_eq!(stream["stream"], STREAM_ID);
    assert_eq!(stream["start_seen"], true);
    assert_eq!(
        stream["breaks"].as_array().map(Vec::len),
        Some(0),
        "{stream}"
    );
    assert_eq!(stream["verified_through"], stream["last_seq"], "{stream}");
    assert_eq!(
        stream["records"].as_u64(),
        Some(run.stdout.lines().count() as u64)
    );

    // `query`, `top` and `integrity` through the running hub's API answer what the store
    // answers, the JSONL byte for byte, in every format (the shutdown checkpoint is in, as
    // the integrity report showed, so nothing changes between the two).
    let url = hub.url("");
    let token = hub.token_file.to_str().unwrap_or_default().to_owned();
    for (what, filters) in [
        ("query", vec!["--format", "jsonl", "--user", "alice"]),
        ("query", vec!["--format", "csv", "--status", "2xx"]),
        ("query", vec!["--format", "table", "--path", "/orders/"]),
        ("top", vec!["endpoints", "--since", "1h"]),
        ("top", vec!["users", "--since", "1h", "--format", "json"]),
        ("integrity", vec!["--format", "json"]),
        ("integrity", vec![]),
    ] {
        let mut remote = vec![what, "--hub", &url, "--token-file", &token];
        remote.extend(&filters);
        let answer = setup.ok(&store, &[what], &filters)?;
        assert!(
            !answer.trim().is_empty(),
            "{what} {filters:?} found nothing"
        );
        assert_eq!(hub::ok(&remote)?, answer, "{remote:?} vs the store");
    }
    let wrong = setup.dir.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-token\n")?;
    let refused = hub::run(&[
        "query",
        "--hub",
        &url,
        "--token-file",
        wrong.to_str().unwrap_or_default(),
    ])?;
    assert!(
        !refused.ok && refused.stderr.contains("refused the token"),
        "{}",
        refused.stderr
    );
    let down = hub::run(&[
        "top",
        "users",
        "--hub",
        "http://127.0.0.1:9",
        "--token-file",
        &token,
    ])?;
    assert!(
        !down.ok && down.stderr.contains("is the hub running"),
        "{}",
        down.stderr
    );

    // The API answers the same, and one record carries its proof.
    let listed = hub.api("/api/records?user=alice&limit=2")?;
    assert_eq!(listed["total"], 5);
    let first = &listed["records"][0];
    let detail = hub.api(&format!(
        "/api/records/{}/{}",
        first["stream"].as_str().unwrap_or(""),
        first["seq"]
    ))?;
    assert_eq!(detail["proof"]["chain"], "linked");
    assert_eq!(detail["proof"]["checkpoint"]["verified"], true);
    assert_eq!(detail["fields"]["user.name"], "alice");
    for path in ["/api/records", "/api/rules"] {
        let unauthenticated = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &hub.url(path),
        ])?;
        assert_eq!(unauthenticated, "401", "{path}");
    }

    // A dashboard following the live feed does not keep the hub from stopping: the
    // stream ends with it (it used to hold the HTTP server's graceful shutdown open).
    let mut follower = hub.follow_live()?;
    let port = hub.port;
    let pid = format!("pid={},", follower.pid());
    hub.wait_until(WAIT, "the live feed connected", |_| {
        let sockets = std::process::Command::new("ss")
            .args([
                "-Htnp",
                "state",
                "established",
                "dport",
                "=",
                &format!(":{port}"),
            ])
            .output()?;
        Ok(String::from_utf8_lossy(&sockets.stdout).contains(&pid))
    })?;

    // No secret in anything the hub wrote or served (nor the store's password in what
    // it keeps).
    let stderr = setup.stop(hub)?;
    follower.wait_timeout(Duration::from_secs(5))?;
    assert_no_secrets("the hub's stderr", stderr.as_bytes());
    for (what, bytes) in setup.stored_bytes()? {
        assert_no_secrets(&what, &bytes);
        setup.assert_no_password(&what, &String::from_utf8_lossy(&bytes));
    }
    assert_no_secrets("query output", out.as_bytes());
    assert_no_secrets("the record API", detail.to_string().as_bytes());
    Ok(())
}

#[test]
fn a_hub_killed_mid_ingest_loses_nothing_and_stores_nothing_twice() -> Result<()> {
    killed_mid_ingest(Backend::Sqlite)
}

#[test]
fn a_hub_killed_mid_ingest_loses_nothing_and_stores_nothing_twice_postgres() -> Result<()> {
    killed_mid_ingest(Backend::Postgres)
}

fn killed_mid_ingest(backend: Backend) -> Result<()> {
    let setup = Setup::new(backend)?;
    let tracer = setup.tracer()?;
    let report = ab_keepalive(&url(setup.port, "/load"), 4, 30_000)?;
    let run = tracer.stop()?;
    let sent = run.records.len() as u64;
    assert_eq!(sent, report.complete);

    // Small batches, so that the kill falls between commits: the default batch
    // would take all 30,000 records in one transaction.
    let mut hub = setup.hub(&["--nats-batch", "5000"])?;
    hub.wait_until(WAIT, "storing a first batch", |hub| Ok(hub.stored()? > 0))?;
    setup.kill(hub)?;
    let store = setup.store();
    let at_kill: Value = serde_json::from_str(&setup.ok(
        &store,
        &["top", "hosts"],
        &["--since", "1h", "--format", "json"],
    )?)?;
    let stored_at_kill = at_kill[0]["requests"].as_u64().unwrap_or(0);
    assert!(
        stored_at_kill < sent,
        "the hub had stored all {sent} records before the kill: the test proved nothing"
    );

    // Stopped (SIGTERM) while it stores, in batches small enough that more remain: the
    // batch under way is committed and acknowledged, and the hub exits cleanly (it
    // used to panic, its acknowledgements failing).
    let mut hub = setup.hub(&["--nats-batch", "1000"])?;
    hub.wait_until(WAIT, "storing another batch", |hub| {
        Ok(hub.stored()? > stored_at_kill)
    })?;
    let stderr = setup.stop(hub)?;
    assert!(
        !stderr.contains("acknowledgements failed"),
        "a stopped hub left its stored batch unacknowledged:\n{stderr}"
    );

    let mut hub = setup.hub(&[])?;
    setup.assert_stored_once(&mut hub, sent)?;
    let integrity: Value = setup.integrity(&store)?;
    let stream = &integrity["streams"][0];
    assert_eq!(
        stream["breaks"].as_array().map(Vec::len),
        Some(0),
        "{stream}"
    );
    assert_eq!(
        stream["records"].as_u64(),
        Some(run.stdout.lines().count() as u64),
        "{stream}"
    );
    // A hub alone on its store acknowledges a batch with one acknowledgement; hubs
    // sharing a PostgreSQL store share the consumer, and acknowledge each message.
    // The killed hub's messages come again after the acknowledgement wait, as
    // duplicates that change no count, and are acknowledged once recognised: wait for
    // that, as for the acknowledgements of the last batch.
    let url_ = setup.nats.url();
    hub.wait_until(WAIT, "acknowledging every message", |_| {
        Ok(consumer_info(&url_, "TRACER", "tracer-hub").is_ok_and(|c| {
            c["num_pending"] == 0
                && c["num_ack_pending"] == 0
                && c["ack_floor"]["stream_seq"] == c["delivered"]["stream_seq"]
        }))
    })?;
    let consumer = consumer_info(&url_, "TRACER", "tracer-hub")?;
    let policy = match backend {
        Backend::Sqlite => "all",
        Backend::Postgres => "explicit",
    };
    assert_eq!(consumer["config"]["ack_policy"], policy, "{consumer}");
    assert_acknowledged(&consumer);
    setup.stop(hub)?;
    // The restarts after the kill kept where the consumer was to start; nothing of it
    // is left once the consumer exists.
    if backend == Backend::Sqlite {
        assert_eq!(setup.kept_restarts()?, "");
    }
    Ok(())
}

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()?;
        ensure!(status.success(), "mounting a tmpfs on {}", dir.display());
        Ok(Self(dir.to_owned()))
    }

    fn resize(&self, size: &str) -> Result<()> {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()?;
        ensure!(
            status.success(),
            "resizing the tmpfs on {}",
            self.0.display()
        );
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A batch that cannot be stored (the store's disk is full) is stored once there is
/// room, and nothing is lost or stored twice. The hub alone on its SQLite store
/// acknowledges a batch with one acknowledgement that covers every earlier message, so
/// a newer batch stored first would cover the failed one: it connects again instead,
/// and its consumer starts over after what was acknowledged. (Here the failed batch
/// fills the consumer's bound on unacknowledged messages, so nothing newer could come
/// before it anyway; under live traffic a partial batch fails, and there connecting
/// again is what keeps it first, which this test does not produce on demand.)
#[test]
fn a_batch_that_failed_to_store_is_stored_before_newer_ones_once_there_is_room() -> Result<()> {
    let setup = Setup::new(Backend::Sqlite)?;
    let tracer = setup.tracer()?;
    let report = ab_keepalive(&url(setup.port, "/load"), 4, 3_000)?;
    let run = tracer.stop()?;
    let sent = run.records.len() as u64;
    assert_eq!(sent, report.complete);
    // Room for the empty store, not for a batch of 1,000 records.
    let disk = Tmpfs::mount(&setup.path("hub"), "1m")?;
    let mut hub = setup.hub(&["--nats-batch", "1000"])?;
    hub.wait_until(WAIT, "failing to store a batch", |hub| {
        Ok(hub.stderr().contains("storing a batch of"))
    })?;
    disk.resize("512m")?;
    setup.assert_stored_once(&mut hub, sent)?;
    setup.stop(hub)?;
    assert_acknowledged(&consumer_info(&setup.nats.url(), "TRACER", "tracer-hub")?);
    drop(disk);
    Ok(())
}

/// Nothing of the consumer's stream waits for delivery or for an acknowledgement.
fn assert_acknowledged(consumer: &Value) {
    assert_eq!(consumer["num_pending"], 0, "{consumer}");
    assert_eq!(consumer["num_ack_pending"], 0, "{consumer}");
    assert_eq!(
        consumer["ack_floor"]["stream_seq"], consumer["delivered"]["stream_seq"],
        "{consumer}"
    );
}

/// A hub that starts its consumer again (messages were pending from a reader that went
/// away) deletes it and creates it from the message after the acknowledged floor,
/// keeping that point in its store first. One that died between the delete and the
/// create left the point and no consumer: the next hub creates the consumer there, not
/// at the stream's first message (which would read the whole stream again). A point
/// kept for an earlier stream of the same name (numbered from 1 again) is not used.
#[test]
fn a_consumer_restart_cut_short_starts_where_it_was_to_start() -> Result<()> {
    let setup = Setup::new(Backend::Sqlite)?;
    let url_ = setup.nats.url();
    // One sensor run (one chain) in two parts, the hub stopped in between.
    let tracer = setup.tracer()?;
    let floor = first_part_stored(&setup)?;
    traffic(setup.port)?;
    let sent = tracer.stop()?.records.len() as u64;

    // What the hub leaves when it dies between the delete and the create.
    let created = stream_created_ns(&url_)?;
    jetstream_api(
        &url_,
        "CONSUMER.DELETE.TRACER.tracer-hub",
        &serde_json::json!({}),
    )?;
    setup.keep_restart(created, floor + 1)?;
    let mut hub = setup.hub(&[])?;
    setup.assert_stored_once(&mut hub, sent)?;
    let consumer = created_at(&url_, floor + 1)?;
    assert_eq!(
        consumer["delivered"]["stream_seq"].as_u64(),
        consumer["ack_floor"]["stream_seq"].as_u64(),
        "{consumer}"
    );
    let stderr = setup.stop(hub)?;
    assert!(
        stderr.contains(&format!("created again from stream message {}", floor + 1)),
        "{stderr}"
    );
    assert_eq!(setup.kept_restarts()?, "", "the point outlived the restart");

    // Points from a stream created at another time (the restart's, and the committed
    // one every hub alone keeps): the consumer starts at the first message, and what
    // is stored is recognised as stored.
    jetstream_api(
        &url_,
        "CONSUMER.DELETE.TRACER.tracer-hub",
        &serde_json::json!({}),
    )?;
    setup.keep_restart(created - 1, floor + 1)?;
    setup.sqlite(&format!(
        "UPDATE nats_committed SET stream_created_ns = {}",
        created - 1
    ))?;
    let mut hub = setup.hub(&[])?;
    hub.wait_until(WAIT, "reading the stream again", |_| {
        Ok(consumer_info(&url_, "TRACER", "tracer-hub")
            .is_ok_and(|c| c["num_pending"] == 0 && c["num_ack_pending"] == 0))
    })?;
    let consumer = consumer_info(&url_, "TRACER", "tracer-hub")?;
    assert_eq!(consumer["config"]["deliver_policy"], "all", "{consumer}");
    setup.assert_stored_once(&mut hub, sent)?;
    let stderr = setup.stop(hub)?;
    assert!(!stderr.contains("created again from"), "{stderr}");
    assert_eq!(setup.kept_restarts()?, "");
    Ok(())
}

/// A consumer an operator deleted, not the hub, is created again at the message after
/// those the store committed, not at the stream's first (which would read the whole
/// stream again); every record is stored once. A hub reading it alone (SQLite) kept
/// the message after its last batch; hubs sharing it (PostgreSQL) kept the messages
/// they committed.
#[test]
fn a_consumer_deleted_by_an_operator_starts_after_what_the_store_committed() -> Result<()> {
    deleted_by_an_operator(Backend::Sqlite)
}

#[test]
fn a_shared_consumer_deleted_by_an_operator_starts_after_what_the_store_committed() -> Result<()> {
    deleted_by_an_operator(Backend::Postgres)
}

fn deleted_by_an_operator(backend: Backend) -> Result<()> {
    let setup = Setup::new(backend)?;
    let url_ = setup.nats.url();
    let tracer = setup.tracer()?;
    let floor = first_part_stored(&setup)?;
    jetstream_api(
        &url_,
        "CONSUMER.DELETE.TRACER.tracer-hub",
        &serde_json::json!({}),
    )?;
    traffic(setup.port)?;
    let sent = tracer.stop()?.records.len() as u64;
    let last =
        jetstream_api(&url_, "STREAM.INFO.TRACER", &serde_json::json!({}))?["state"]["last_seq"]
            .as_u64()
            .context("no last sequence")?;
    assert!(last > floor);

    let mut hub = setup.hub(&[])?;
    setup.assert_stored_once(&mut hub, sent)?;
    let consumer = created_at(&url_, floor + 1)?;
    // Only the messages after the point were delivered, each once.
    assert_eq!(
        consumer["delivered"]["consumer_seq"].as_u64(),
        Some(last - floor),
        "{consumer}"
    );
    assert_acknowledged(&consumer);
    let stderr = setup.stop(hub)?;
    assert!(
        stderr.contains(&format!(
            "was missing (deleted); created again from stream message {}",
            floor + 1
        )),
        "{stderr}"
    );
    Ok(())
}

/// Traffic under the running tracer, stored by a hub that is then stopped once nothing
/// waits for delivery or acknowledgement; returns the consumer's acknowledged floor.
fn first_part_stored(setup: &Setup) -> Result<u64> {
    let url = setup.nats.url();
    traffic(setup.port)?;
    let mut hub = setup.hub(&[])?;
    hub.wait_until(WAIT, "storing the first part", |hub| {
        Ok(hub.stored()? > 0
            && consumer_info(&url, "TRACER", "tracer-hub")
                .is_ok_and(|c| c["num_pending"] == 0 && c["num_ack_pending"] == 0))
    })?;
    setup.stop(hub)?;
    let floor = consumer_info(&url, "TRACER", "tracer-hub")?["ack_floor"]["stream_seq"]
        .as_u64()
        .context("no ack floor")?;
    assert!(floor > 0);
    Ok(floor)
}

/// The hub's consumer, checked to have been created at stream message `start`.
fn created_at(url: &str, start: u64) -> Result<Value> {
    let consumer = consumer_info(url, "TRACER", "tracer-hub")?;
    assert_eq!(
        consumer["config"]["deliver_policy"], "by_start_sequence",
        "{consumer}"
    );
    assert_eq!(consumer["config"]["opt_start_seq"], start, "{consumer}");
    Ok(consumer)
}

/// When nats-server says the stream was created, in ns since the epoch (what the hub
/// keeps beside a restart point).
fn stream_created_ns(url: &str) -> Result<i64> {
    let info = jetstream_api(url, "STREAM.INFO.TRACER", &serde_json::json!({}))?;
    let created = info["created"].as_str().context("no creation time")?;
    let at = time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)?;
    Ok(i64::try_from(at.unix_timestamp_nanos())?)
}

/// A hub alone on its SQLite store whose consumer already acknowledges each message
/// (an earlier hub's) keeps it, says so, and acknowledges every message of it.
#[test]
fn a_hub_keeps_an_existing_consumer_that_acknowledges_each_message() -> Result<()> {
    let setup = Setup::new(Backend::Sqlite)?;
    let tracer = setup.tracer()?;
    traffic(setup.port)?;
    let run = tracer.stop()?;
    let sent = run.records.len() as u64;
    jetstream_api(
        &setup.nats.url(),
        "CONSUMER.CREATE.TRACER.tracer-hub",
        &serde_json::json!({
            "stream_name": "TRACER",
            "config": {
                "durable_name": "tracer-hub",
                "deliver_policy": "all",
                "ack_policy": "explicit",
            },
        }),
    )?;
    let mut hub = setup.hub(&[])?;
    hub.wait_until(
        WAIT,
        "holding every record",
        |hub| Ok(hub.stored()? >= sent),
    )?;
    let consumer = consumer_info(&setup.nats.url(), "TRACER", "tracer-hub")?;
    assert_eq!(consumer["config"]["ack_policy"], "explicit", "{consumer}");
    let stderr = setup.stop(hub)?;
    assert!(
        stderr.contains("consumer tracer-hub acknowledges each message"),
        "{stderr}"
    );
    assert_acknowledged(&consumer_info(&setup.nats.url(), "TRACER", "tracer-hub")?);
    Ok(())
}

#[test]
fn altered_and_junk_lines_in_files_are_flagged_and_a_file_imported_twice_is_stored_once()
-> Result<()> {
    tampered_and_twice_imported(Backend::Sqlite)
}

#[test]
fn altered_and_junk_lines_in_files_are_flagged_and_a_file_imported_twice_is_stored_once_postgres()
-> Result<()> {
    tampered_and_twice_imported(Backend::Postgres)
}

fn tampered_and_twice_imported(backend: Backend) -> Result<()> {
    let setup = Setup::new(backend)?;
    let tracer = setup.tracer()?;
    traffic(setup.port)?;
    let run = tracer.stop()?;
    let key = setup.key_arg()?;
    let lines: Vec<&str> = run.stdout.lines().collect();
    let original = setup.path("access.jsonl");
    std::fs::write(&original, run.stdout.as_bytes())?;
    let clean = setup.new_store("clean")?;
    let import = |store: &Store, file: &Path| {
        setup.run(
            store,
            &["import"],
            &["--key", &key, file.to_str().unwrap_or_default()],
        )
    };
    let first = import(&clean, &original)?;
    assert!(first.ok, "{}", first.stderr);
    let second = import(&clean, &original)?;
    assert!(
        second
            .stderr
            .contains(&format!("0 stored, {} already stored", lines.len())),
        "{}",
        second.stderr
    );
    assert_eq!(setup.query_jsonl(&clean, &[])?.len(), 9);

    // Alter bob's 404 into alice's 200, drop the record after it, add junk.
    let altered_at = lines
        .iter()
        .position(|l| l.contains("/static/missing.txt"))
        .ok_or_else(|| anyhow!("no 404 record"))?;
    let mut tampered: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    tampered[altered_at] = tampered[altered_at].replace("\"bob\"", "\"alice\"");
    let dropped: Value = serde_json::from_str(&tampered.remove(altered_at + 1))?;
    tampered.push("GET / HTTP/1.1".to_owned());
    tampered.push("x".repeat(2 << 20));
    let file = setup.path("tampered.jsonl");
    std::fs::write(&file, tampered.join("\n") + "\n")?;
    let tampered_store = setup.new_store("tampered")?;
    assert!(import(&tampered_store, &file)?.ok);
    let integrity: Value = setup.integrity(&tampered_store)?;
    let breaks = integrity["streams"][0]["breaks"]
        .as_array()
        .ok_or_else(|| anyhow!("no breaks: {integrity}"))?;
    let altered_seq: Value = serde_json::from_str(lines[altered_at])?;
    assert!(
        breaks
            .iter()
            .any(|b| b["kind"] == "modified" && b["seq"] == altered_seq["audit.seq"]),
        "{integrity}"
    );
    let gap_seq = dropped["audit.seq"].as_u64().unwrap_or_default();
    assert!(
        breaks
            .iter()
            .any(|b| b["kind"] == "gap" && b["seq"] == gap_seq),
        "{integrity}"
    );
    assert_eq!(integrity["rejected"], 2, "{integrity}");
    let table = setup.ok(&tampered_store, &["integrity"], &[])?;
    assert!(
        table.contains("modified") && table.contains("gap") && table.contains("rejected lines"),
        "{table}"
    );
    // The detections saw the same: the modified line and the gap are alerts.
    let alerts = setup.ok(&tampered_store, &["alerts"], &["--format", "jsonl"])?;
    let rules: Vec<String> = alerts
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).map(|a| a["rule"].as_str().unwrap_or("").to_owned())
        })
        .collect::<Result<_, _>>()?;
    for rule in ["chain_break", "chain_gap"] {
        assert!(rules.iter().any(|r| r == rule), "{rule} in {alerts}");
    }
    // A hub serving that store (no broker: nothing more comes in) gives the same alerts
    // through its API, in both formats.
    let served = Hub::serve_store(&tampered_store, &setup.path("tampered"), &["--key", &key])?;
    let token = served.token_file.to_str().unwrap_or_default().to_owned();
    let url = served.url("");
    for format in ["jsonl", "table"] {
        let direct = setup.ok(&tampered_store, &["alerts"], &["--format", format])?;
        let remote = hub::ok(&[
            "alerts",
            "--hub",
            &url,
            "--token-file",
            &token,
            "--format",
            format,
        ])?;
        assert_eq!(remote, direct, "alerts --hub, {format}");
    }
    setup.stop(served)?;
    Ok(())
}

#[test]
fn records_are_enriched_from_a_real_mmdb_a_catalog_and_a_directory_reloaded_on_change() -> Result<()>
{
    enriched_and_reloaded(Backend::Sqlite)
}

#[test]
fn records_are_enriched_from_a_real_mmdb_a_catalog_and_a_directory_reloaded_on_change_postgres()
-> Result<()> {
    enriched_and_reloaded(Backend::Postgres)
}

fn enriched_and_reloaded(backend: Backend) -> Result<()> {
    let setup = Setup::new(backend)?;
    let status = std::process::Command::new("perl")
        .arg(tests::workspace::root().join("scripts/make-test-mmdb.pl"))
        .arg(setup.dir.path())
        .status()?;
    assert!(
        status.success(),
        "scripts/make-test-mmdb.pl (libmaxmind-db-writer-perl)"
    );
    let catalog = setup.path("catalog.toml");
    let write_catalog = |hr_name: &str| {
        std::fs::write(
            &catalog,
            format!(
                "[[asset]]\nname = \"{hr_name}\"\nsensitivity = \"restricted\"\nallowed_roles = [\"hr-admin\"]\npaths = [\"/hr/**\"]\n\n\
                 [[asset]]\nname = \"orders\"\nsensitivity = \"internal\"\nmethods = [\"GET\"]\npaths = [\"/orders/{{id}}\"]\n"
            ),
        )
    };
    write_catalog("hr-salaries")?;
    let directory = setup.path("people.csv");
    std::fs::write(
        &directory,
        "user.id,full_name,email,department,status\nalice,Alice Liddell,alice@example.com,Finance,active\nbob,Bob Builder,,Ops,disabled\n",
    )?;
    let tracer = setup.tracer()?;
    let path = |p: &std::path::PathBuf| p.display().to_string();
    let (city, asn) = (setup.path("test-city.mmdb"), setup.path("test-asn.mmdb"));
    let mut hub = setup.hub(&[
        "--catalog",
        &path(&catalog),
        "--geoip",
        &path(&city),
        "--geoip",
        &path(&asn),
        "--directory",
        &path(&directory),
    ])?;
    let alice = format!("alice:{ALICE_PASSWORD}");
    let bob = format!("bob:{BOB_PASSWORD}");
    curl(&["-u", &alice, &url(setup.port, "/orders/9")])?;
    curl(&[
        "--interface",
        "127.0.0.2",
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        "-u",
        &bob,
        &url(setup.port, "/hr/salaries"),
    ])?;
    hub.wait_until(WAIT, "holding both requests", |hub| Ok(hub.stored()? >= 2))?;
    let store = setup.store();

    let hr = setup.query_jsonl(&store, &["--asset", "hr-salaries"])?;
    assert_eq!(paths(&hr), ["/hr/salaries"]);
    let seq = hr[0]["audit.seq"].as_u64().unwrap_or_default();
    let detail = hub.api(&format!("/api/records/{STREAM_ID}/{seq}"))?;
    let added = &detail["enrichment"];
    assert_eq!(added["asset.sensitivity"], "restricted", "{detail}");
    assert_eq!(added["asset.allowed_roles"][0], "hr-admin");
    assert_eq!(added["client.geo.country_iso_code"], "BR");
    assert_eq!(added["client.geo.city_name"], "São Paulo");
    assert_eq!(added["client.as.number"], 64500);
    assert_eq!(added["client.as.organization.name"], "Example Transit");
    assert_eq!(added["client.geo.network"], "public");
    assert_eq!(added["user.status"], "disabled");
    assert_eq!(added["url.template"], "/hr/salaries");

    let orders = setup.query_jsonl(&store, &["--user", "Alice Liddell"])?;
    assert_eq!(paths(&orders), ["/orders/9"]);
    let seq = orders[0]["audit.seq"].as_u64().unwrap_or_default();
    let detail = hub.api(&format!("/api/records/{STREAM_ID}/{seq}"))?;
    assert_eq!(detail["enrichment"]["asset.name"], "orders");
    assert_eq!(detail["enrichment"]["user.department"], "Finance");
    assert_eq!(detail["enrichment"]["client.geo.network"], "loopback");
    assert_eq!(detail["enrichment"]["url.template"], "/orders/{id}");

    let clients: Value = serde_json::from_str(&setup.ok(
        &store,
        &["top", "clients"],
        &["--since", "1h", "--format", "json"],
    )?)?;
    let public = clients
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["key"] == "203.0.113.9"))
        .ok_or_else(|| anyhow!("no 203.0.113.9 in {clients}"))?;
    assert_eq!(
        (public["country"].as_str(), public["asn"].as_u64()),
        (Some("BR"), Some(64500))
    );

    // A changed catalog applies to the next records.
    std::thread::sleep(Duration::from_millis(1100));
    write_catalog("payroll")?;
    hub.wait_until(WAIT, "reloading the catalog", |hub| {
        Ok(hub.stderr().contains("reloaded"))
    })?;
    curl(&["-u", &bob, &url(setup.port, "/hr/bonus")])?;
    hub.wait_until(WAIT, "holding the third request", |hub| {
        Ok(hub.stored()? >= 3)
    })?;
    assert_eq!(
        paths(&setup.query_jsonl(&store, &["--asset", "payroll"])?),
        ["/hr/bonus"]
    );
    tracer.stop()?;
    setup.stop(hub)?;
    Ok(())
}

/// PostgreSQL only: the password of a `--store` URL is printed nowhere, not even in the
/// errors of a store that refuses it, lacks the database, or is not there at all, nor
/// when the URL comes with a `--data` that clap refuses.
#[test]
fn a_store_url_password_is_never_printed_even_when_the_store_fails_postgres() -> Result<()> {
    let postgres = Postgres::start()?;
    let wrong = "wrong-pw-never-printed-3b9e";
    let base = postgres
        .url()
        .rsplit_once('/')
        .map(|(server, _)| server.to_owned())
        .ok_or_else(|| anyhow!("no database in the URL"))?;
    let refused = postgres.url().replace(postgres.password(), wrong);
    let missing = format!("{base}/missing");
    let down = format!("postgres://tracer:{wrong}@127.0.0.1:{}/tracer", free_port());
    for (what, url, password) in [
        ("a wrong password", refused, wrong),
        ("a missing database", missing, postgres.password()),
        ("no server", down, wrong),
    ] {
        for words in [
            &["query"][..],
            &["top", "users"],
            &["integrity"],
            &["alerts"],
        ] {
            let run = hub::run(&[words, &["--store", &url]].concat())?;
            assert!(!run.ok, "{words:?} on {what} succeeded");
            for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
                assert!(
                    !text.contains(password),
                    "the {stream} of {words:?} on {what} holds the password:\n{text}"
                );
            }
        }
    }
    let both = hub::run(&[
        "query",
        "--data",
        "/nonexistent",
        "--store",
        &postgres.url(),
    ])?;
    assert!(!both.ok, "--data and --store together were accepted");
    assert!(
        !both.stderr.contains(postgres.password()),
        "clap's refusal holds the password:\n{}",
        both.stderr
    );
    Ok(())
}
