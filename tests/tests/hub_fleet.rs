//! tracer-hub on PostgreSQL beyond one process: two hubs sharing one JetStream durable
//! consumer into one database, and one hub whose PostgreSQL server restarts mid-ingest.
//! Either way, nginx traffic through the real tracer and a real nats-server ends up in
//! the store request by request as nginx logged it, each once, with the hash chain
//! whole (no break, no gap), and the store URL's password printed nowhere.
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use serde_json::Value;
use tests::{
    audit::key_show,
    clients::{curl, url},
    hub::{self, Hub, Store, hub_requests, nginx_requests},
    load::ab_keepalive,
    ports::free_port,
    process::Guarded,
    servers::{NatsServer, Nginx, NginxConfig, Postgres},
    tracer::{Tracer, TracerRun},
};

const STREAM_ID: &str = "web-fleet";
/// A hang guard for the store to catch up, not an expectation.
const WAIT: Duration = Duration::from_secs(120);
const ALICE: &str = "alice:alice-fleet-pw-4d1e";
const BOB: &str = "bob:bob-fleet-pw-0a7c";
const BEARER: &str = "Authorization: Bearer sk-fleet-bearer-93b2";
/// Guesses a password, refused each time: a brute force the fleet's detections count.
const MALLORY: &str = "mallory:guess-fleet-pw-77c1";
/// Refused logins per round, three rounds: 24 against `auth_failures`' threshold of 20,
/// so its alert is raised only if the hubs' shares are counted together.
const DENIED_PER_ROUND: u64 = 8;
const AUTH_FAILURES_THRESHOLD: u64 = 20;

struct Setup {
    dir: tempfile::TempDir,
    nats: NatsServer,
    nginx: Nginx,
    port: u16,
    postgres: Postgres,
}

impl Setup {
    fn new() -> Result<Self> {
        let port = free_port();
        let mut config = NginxConfig::new(port);
        config.access_log = true;
        config.extra_locations = "        location = /login { return 401; }\n".to_owned();
        Ok(Self {
            dir: tempfile::tempdir()?,
            nats: NatsServer::start()?,
            nginx: Nginx::start(config)?,
            port,
            postgres: Postgres::start()?,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn store(&self) -> Store {
        Store::Postgres(self.postgres.url())
    }

    /// The tracer publishing to NATS, trusting 127.0.0.2 as a proxy.
    fn tracer(&self) -> Result<Tracer> {
        let config = self.path("tracer.toml");
        std::fs::write(
            &config,
            "[identity.proxy]\ntrusted_cidrs = [\"127.0.0.2/32\"]\n",
        )?;
        let key = self.path("audit.key");
        let text = |p: &Path| {
            p.to_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("non-UTF-8 path"))
        };
        Tracer::start_with_args(
            &[self.port],
            &[
                "--config",
                &text(&config)?,
                "--audit-key",
                &text(&key)?,
                "--stream-id",
                STREAM_ID,
                "--nats",
                &self.nats.url(),
                "--nats-create-stream",
                "--stdout",
            ],
            &[],
        )
    }

    /// `tracer-hub serve --store URL --nats URL --key STREAM=FILE` with the default
    /// durable consumer, its files named `name`; returns once it consumes.
    fn hub(&self, name: &str) -> Result<Hub> {
        let shown = key_show(&self.path("audit.key"))?;
        let file = self.path("audit.pub");
        std::fs::write(&file, shown)?;
        let key = format!("{STREAM_ID}={}", file.display());
        let nats = self.nats.url();
        let mut hub = Hub::serve_store(
            &self.store(),
            &self.path(name),
            &["--nats", &nats, "--key", &key],
        )?;
        hub.wait_until(WAIT, "consuming from NATS", |hub| {
            Ok(hub.stderr().contains("tracer-hub: nats: consuming"))
        })?;
        Ok(hub)
    }

    /// `tracer-hub WORDS... --store URL REST...`, failing unless it succeeded; its stdout.
    /// Neither its stdout nor its stderr may hold the store's password.
    fn ok(&self, words: &[&str], rest: &[&str]) -> Result<String> {
        let store = self.store();
        let run = hub::run(&[words, &store.args()?[..], rest].concat())?;
        self.assert_no_password(&format!("the stdout of {words:?}"), &run.stdout);
        self.assert_no_password(&format!("the stderr of {words:?}"), &run.stderr);
        ensure!(
            run.ok,
            "tracer-hub {words:?} STORE {rest:?} failed:\n{}",
            run.stderr
        );
        Ok(run.stdout)
    }

    /// The one `auth_failures` alert on `user:mallory`, once it counts `denied`
    /// refusals against the threshold (a finding from the 20th refusal on).
    fn burst_alert(&self, denied: u64) -> Result<Value> {
        let expected = denied - AUTH_FAILURES_THRESHOLD + 1;
        let mut burst = Value::Null;
        let deadline = Instant::now() + WAIT;
        while burst["count"].as_u64() != Some(expected) {
            ensure!(
                Instant::now() < deadline,
                "no auth_failures alert on user:mallory counting {expected} (refusal 20 to {denied}); last seen: {burst}"
            );
            std::thread::sleep(Duration::from_millis(200));
            let alerts = self.ok(
                &["alerts"],
                &["--rule", "auth_failures", "--format", "jsonl"],
            )?;
            let mallory: Vec<Value> = alerts
                .lines()
                .map(serde_json::from_str::<Value>)
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|a| a["entity"] == "user:mallory")
                .collect();
            ensure!(mallory.len() <= 1, "one burst raised {mallory:?}");
            burst = mallory.into_iter().next().unwrap_or(Value::Null);
            ensure!(
                burst["count"].as_u64().unwrap_or(0) <= expected,
                "refusals counted more than once: {burst}"
            );
        }
        Ok(burst)
    }

    /// Every access record stored, as the lines `query --format jsonl` gives back.
    fn query_lines(&self) -> Result<Vec<String>> {
        Ok(self
            .ok(&["query"], &["--format", "jsonl", "--limit", "100000"])?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    fn integrity(&self) -> Result<Value> {
        Ok(serde_json::from_str(
            &self.ok(&["integrity"], &["--format", "json"])?,
        )?)
    }

    /// One number `sql` selects, as the superuser.
    fn count(&self, sql: &str) -> Result<u64> {
        let out = self.postgres.psql(sql)?;
        out.trim()
            .parse()
            .with_context(|| format!("{sql} gave {out:?}"))
    }

    /// Lines (access records and audit lines) in the store.
    fn stored_lines(&self) -> Result<u64> {
        self.count("SELECT count(*) FROM records")
    }

    /// Waits until the store holds `lines` lines, while `hub` runs.
    fn wait_stored(&self, hub: &mut Hub, lines: u64) -> Result<()> {
        let started = Instant::now();
        hub.wait_until(WAIT, &format!("holding all {lines} lines"), |_| {
            Ok(self.stored_lines()? >= lines)
        })?;
        eprintln!(
            "fleet: the store held all {lines} lines {:.1?} after the traffic",
            started.elapsed()
        );
        Ok(())
    }

    /// SIGTERM; the hub's stderr, once it and its stdout were checked for the password.
    fn stop(&self, name: &str, hub: Hub) -> Result<String> {
        let stdout_file = hub.stdout_file.clone();
        let stderr = hub.stop().with_context(|| format!("stopping {name}"))?;
        self.assert_no_password(&format!("{name}'s stderr"), &stderr);
        let stdout = std::fs::read_to_string(&stdout_file)
            .with_context(|| format!("reading {}", stdout_file.display()))?;
        self.assert_no_password(&format!("{name}'s stdout"), &stdout);
        Ok(stderr)
    }

    fn assert_no_password(&self, what: &str, text: &str) {
        assert!(
            !text.contains(self.postgres.password()),
            "{what} holds the PostgreSQL password:\n{text}"
        );
    }

    /// Everything the tracer wrote and nginx logged is in the store, each once: the
    /// access lines byte for byte, the requests as nginx logged them, no (stream, seq)
    /// twice, and the chain verified through the tracer's last line without a break
    /// or a gap. The store's access seqs.
    fn assert_stored_once(&self, run: &TracerRun) -> Result<HashSet<u64>> {
        let written: Vec<&str> = run.stdout.lines().collect();
        let mut access: Vec<&str> = Vec::new();
        for line in &written {
            let record: Value = serde_json::from_str(line)?;
            if record["audit.kind"] == "access" {
                access.push(line);
            }
        }
        ensure!(
            access.len() == run.records.len(),
            "{} access lines on the tracer's stdout, {} records parsed",
            access.len(),
            run.records.len()
        );

        assert_eq!(
            self.stored_lines()?,
            written.len() as u64,
            "lines in the store vs lines the tracer wrote"
        );
        assert_eq!(
            self.count("SELECT count(*) - count(DISTINCT (stream, seq)) FROM records")?,
            0,
            "(stream, seq) stored more than once"
        );

        let mut stored = self.query_lines()?;
        stored.sort_unstable();
        access.sort_unstable();
        if stored != access {
            let stored_set: HashSet<&str> = stored.iter().map(String::as_str).collect();
            let written_set: HashSet<&str> = access.iter().copied().collect();
            let missing = access.iter().filter(|l| !stored_set.contains(*l)).count();
            let foreign = stored
                .iter()
                .filter(|l| !written_set.contains(l.as_str()))
                .count();
            panic!(
                "the store's access lines are not the tracer's, each once: {} stored, {} written, {missing} written but not stored, {foreign} stored but not written, {} stored twice or more",
                stored.len(),
                access.len(),
                stored.len() - stored_set.len()
            );
        }
        let records: Vec<Value> = stored
            .iter()
            .map(|l| serde_json::from_str(l).with_context(|| format!("query line {l}")))
            .collect::<Result<_>>()?;
        assert_eq!(
            hub_requests(&records),
            nginx_requests(&self.nginx.access_log()?)?,
            "the store's records vs nginx's access log"
        );

        let integrity = self.integrity()?;
        assert_eq!(integrity["rejected"], 0, "{integrity}");
        let streams = integrity["streams"]
            .as_array()
            .ok_or_else(|| anyhow!("no streams: {integrity}"))?;
        assert_eq!(streams.len(), 1, "{integrity}");
        let stream = &streams[0];
        assert_eq!(stream["stream"], STREAM_ID, "{stream}");
        assert_eq!(
            stream["breaks"].as_array().map(Vec::len),
            Some(0),
            "breaks or gaps: {stream}"
        );
        assert_eq!(stream["missing"], 0, "{stream}");
        assert_eq!(stream["start_seen"], true, "{stream}");
        assert_eq!(stream["records"], written.len() as u64, "{stream}");
        assert_eq!(stream["last_seq"], written.len() as u64, "{stream}");
        assert_eq!(stream["verified_through"], stream["last_seq"], "{stream}");

        records
            .iter()
            .map(|r| {
                r["audit.seq"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("no audit.seq in {r}"))
            })
            .collect()
    }
}

/// Stops the tracer once the traffic is over; nginx logged every request sent, and the
/// tracer recorded each. Returns the run and how many nginx logged.
fn stop_and_count(tracer: Tracer, setup: &Setup, sent: u64) -> Result<(TracerRun, u64)> {
    let run = tracer.stop()?;
    let logged = setup.nginx.settled_access_log_lines()? as u64;
    assert_eq!(logged, sent, "requests nginx logged vs requests sent");
    assert_eq!(
        run.records.len() as u64,
        logged,
        "the tracer's records vs nginx's log"
    );
    Ok((run, logged))
}

/// Requests with identities: two Basic users, a bearer key, a proxied public client,
/// a 404, a 204 and a Basic user name holding a NUL; their paths name `round`. How
/// many.
fn identities(port: u16, round: &str) -> Result<u64> {
    curl(&["-u", ALICE, &url(port, &format!("/orders/{round}?page=1"))])?;
    curl(&[
        "-u",
        BOB,
        &url(port, &format!("/static/missing-{round}.txt")),
    ])?;
    curl(&["-H", BEARER, &url(port, "/204")])?;
    curl(&[
        "--interface",
        "127.0.0.2",
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        &url(port, &format!("/reports/{round}")),
    ])?;
    // The tracer records this user as `nul\u0000user`. PostgreSQL's text holds no NUL:
    // stored as it came, it failed every batch it was in, and the stream stalled.
    let nul_user = base64::engine::general_purpose::STANDARD.encode(b"nul\0user:nul-fleet-pw-5e1f");
    curl(&[
        "-H",
        &format!("Authorization: Basic {nul_user}"),
        &url(port, &format!("/orders/{round}-nul")),
    ])?;
    Ok(5)
}

/// `ab -k -c4 -n{requests}` on `path`, then [`identities`]; the requests sent.
fn round(port: u16, path: &str, requests: u32) -> Result<u64> {
    let report = ab_keepalive(&url(port, path), 4, requests)?;
    ensure!(report.failed == 0, "ab: {}", report.raw);
    Ok(report.complete + identities(port, path.trim_start_matches('/'))?)
}

/// A hub's live feed (`/api/live`, server-sent events), read by curl into a file: the
/// access records this hub committed itself, as it committed them.
struct LiveFeed {
    curl: Guarded,
    body: PathBuf,
}

/// What a live feed carried.
#[derive(Default)]
struct Live {
    /// (stream, seq) of each record event.
    records: Vec<(String, u64)>,
    /// Records the hub dropped for this reader (`event: lagged`).
    lagged: u64,
}

impl LiveFeed {
    /// Subscribed when this returns: the hub answered the request's head.
    fn open(hub: &Hub, files: &Path) -> Result<Self> {
        let body = files.with_extension("live");
        let head = files.with_extension("live-head");
        let mut command = Command::new("curl");
        command
            .args(["-sS", "-N", "-H"])
            .arg(format!("Authorization: Bearer {}", hub::TOKEN))
            .arg("-D")
            .arg(&head)
            .arg("-o")
            .arg(&body)
            .arg(hub.url("/api/live"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut curl = Guarded::spawn(&mut command, "curl /api/live")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&head).unwrap_or_default();
            if text.contains("text/event-stream") && text.ends_with("\r\n\r\n") {
                ensure!(text.starts_with("HTTP/1.1 200"), "/api/live: {text}");
                return Ok(Self { curl, body });
            }
            if let Some(status) = curl.try_exit()? {
                bail!("curl /api/live exited ({status}); head: {text}");
            }
            ensure!(
                Instant::now() < deadline,
                "no answer from /api/live: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The events received so far (whole lines only: curl may be mid-line).
    fn read(&mut self) -> Result<Live> {
        if let Some(status) = self.curl.try_exit()? {
            bail!("curl /api/live exited ({status})");
        }
        let text = std::fs::read_to_string(&self.body)
            .with_context(|| format!("reading {}", self.body.display()))?;
        let whole = &text[..text.rfind('\n').map_or(0, |at| at + 1)];
        let mut live = Live::default();
        let mut event = "";
        for line in whole.lines() {
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim();
            } else if let Some(data) = line.strip_prefix("data:") {
                match event {
                    "record" => {
                        let row: Value = serde_json::from_str(data.trim())
                            .with_context(|| format!("live event {data}"))?;
                        let stream = row["stream"].as_str().unwrap_or_default().to_owned();
                        let seq = row["seq"]
                            .as_u64()
                            .ok_or_else(|| anyhow!("no seq in {row}"))?;
                        live.records.push((stream, seq));
                    }
                    "lagged" => live.lagged += data.trim().parse::<u64>()?,
                    _ => {}
                }
            } else if line.is_empty() {
                event = "";
            }
        }
        Ok(live)
    }
}

#[test]
fn two_hubs_sharing_one_consumer_store_every_request_once_in_one_database() -> Result<()> {
    let started = Instant::now();
    let setup = Setup::new()?;
    let tracer = setup.tracer()?;
    let mut hub_a = setup.hub("hub-a")?;
    let hub_b = setup.hub("hub-b")?;
    for hub in [&hub_a, &hub_b] {
        assert!(
            hub.stderr().contains("as durable consumer tracer-hub\n"),
            "{}",
            hub.stderr()
        );
    }
    let mut live_a = LiveFeed::open(&hub_a, &setup.path("hub-a"))?;
    let mut live_b = LiveFeed::open(&hub_b, &setup.path("hub-b"))?;

    // Rounds, each a burst of keep-alive load and the identities, while both consume.
    let traffic = Instant::now();
    let mut sent = 0;
    for n in 1..=3 {
        sent += round(setup.port, &format!("/fleet-{n}"), 2_000)?;
        for _ in 0..DENIED_PER_ROUND {
            curl(&["-u", MALLORY, &url(setup.port, "/login")])?;
        }
        sent += DENIED_PER_ROUND;
    }
    let (run, logged) = stop_and_count(tracer, &setup, sent)?;
    eprintln!(
        "fleet: {sent} requests in {:.1?}, {} lines",
        traffic.elapsed(),
        run.stdout.lines().count()
    );
    let lines = run.stdout.lines().count() as u64;
    setup
        .wait_stored(&mut hub_a, lines)
        .with_context(|| format!("hub b's stderr:\n{}", hub_b.stderr()))?;

    // Each hub's own share, from its live feed: the records it committed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (from_a, from_b) = loop {
        let (a, b) = (live_a.read()?, live_b.read()?);
        let seen = (a.records.len() + b.records.len()) as u64 + a.lagged + b.lagged;
        if seen >= logged {
            break (a, b);
        }
        ensure!(
            Instant::now() < deadline,
            "the live feeds carried {seen} of {logged} records"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    drop((live_a, live_b));

    // One hub ran the detections for both, over both hubs' records: mallory's refused
    // logins are one burst, however the hubs shared them.
    let denied: HashSet<u64> = run
        .records
        .iter()
        .filter(|r| r["user.name"] == "mallory")
        .filter_map(|r| r["audit.seq"].as_u64())
        .collect();
    assert_eq!(denied.len() as u64, 3 * DENIED_PER_ROUND);
    let share_a = from_a
        .records
        .iter()
        .filter(|(_, seq)| denied.contains(seq))
        .count();
    eprintln!(
        "fleet: hub a committed {share_a} of mallory's {} refused logins, hub b the rest",
        denied.len()
    );
    setup.burst_alert(denied.len() as u64)?;
    let leaders = [&hub_a, &hub_b]
        .iter()
        .filter(|h| {
            h.stderr()
                .contains("this hub runs the detections for every hub sharing the store")
        })
        .count();
    assert_eq!(leaders, 1, "hubs that ran the detections");

    let stderr_a = setup.stop("hub a", hub_a)?;
    let stderr_b = setup.stop("hub b", hub_b)?;
    eprintln!(
        "fleet: hub a committed {} records, hub b {}",
        from_a.records.len(),
        from_b.records.len()
    );
    for (name, stderr) in [("a", &stderr_a), ("b", &stderr_b)] {
        let failed: Vec<&str> = stderr.lines().filter(|l| l.contains("failed")).collect();
        if !failed.is_empty() {
            eprintln!("fleet: hub {name}: {failed:#?}");
        }
    }

    let seqs = setup.assert_stored_once(&run)?;
    assert_eq!(seqs.len() as u64, logged);

    // Both hubs took part, and between them committed each record once.
    assert_eq!(
        (from_a.lagged, from_b.lagged),
        (0, 0),
        "a live feed lagged: the shares below would be incomplete"
    );
    assert!(
        !from_a.records.is_empty() && !from_b.records.is_empty(),
        "one hub stored everything (a: {}, b: {}): the consumer was not shared",
        from_a.records.len(),
        from_b.records.len()
    );
    let mut committed: HashMap<u64, u32> = HashMap::new();
    for (stream, seq) in from_a.records.iter().chain(&from_b.records) {
        assert_eq!(stream, STREAM_ID);
        *committed.entry(*seq).or_default() += 1;
    }
    let twice: Vec<u64> = committed
        .iter()
        .filter(|&(_, n)| *n > 1)
        .map(|(seq, _)| *seq)
        .collect();
    assert!(
        twice.is_empty(),
        "{} seqs committed by both hubs or twice, such as {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    let committed: HashSet<u64> = committed.into_keys().collect();
    assert_eq!(
        committed, seqs,
        "the hubs' live feeds vs the store's access records"
    );
    // The chain went from hub to hub: records one hub committed follow, in the stream,
    // records the other committed, and still it verified without a break.
    let by_a: HashSet<u64> = from_a.records.iter().map(|(_, seq)| *seq).collect();
    let handovers = seqs
        .iter()
        .filter(|&&seq| {
            seqs.contains(&(seq + 1)) && by_a.contains(&seq) != by_a.contains(&(seq + 1))
        })
        .count();
    eprintln!("fleet: the chain passed between the hubs {handovers} times");
    assert!(
        handovers > 0,
        "each hub committed a separate run of the stream"
    );
    eprintln!("fleet: done in {:.1?}", started.elapsed());
    Ok(())
}

#[test]
fn a_postgres_restart_mid_ingest_loses_nothing_and_stores_nothing_twice() -> Result<()> {
    let started = Instant::now();
    let mut setup = Setup::new()?;
    let tracer = setup.tracer()?;
    let mut hub = setup.hub("hub")?;

    // Keep-alive load in rounds until told to stop, with the identities between.
    let stop = Arc::new(AtomicBool::new(false));
    let port = setup.port;
    let load = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || -> Result<u64> {
            let mut sent = 0;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                sent += round(port, &format!("/during-{n}"), 500)?;
            }
            Ok(sent)
        }
    });

    // Restart once the hub is storing, while the load goes on.
    let stored_before = {
        let deadline = Instant::now() + WAIT;
        loop {
            let stored = setup.count("SELECT count(*) FROM records WHERE kind = 'access'")?;
            if stored > 0 {
                break stored;
            }
            if load.is_finished() || Instant::now() >= deadline {
                let load = load
                    .join()
                    .map_err(|_| anyhow!("the load thread panicked"))?;
                bail!(
                    "nothing stored while the load ran ({load:?}):\n{}",
                    hub.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // A brute force across the restart: refusals before it and after it are one burst
    // to the detections, which run on a connection of their own that the restart
    // closes too (counted twice, the burst would pass the threshold sooner).
    let denied_before = 10;
    for _ in 0..denied_before {
        curl(&["-u", MALLORY, &url(setup.port, "/login")])?;
    }
    let restart = Instant::now();
    setup.postgres.restart()?;
    eprintln!(
        "fleet: PostgreSQL restarted in {:.1?}, {stored_before} records stored before",
        restart.elapsed()
    );
    // The hub stores again (connected anew) while the load still goes on.
    hub.wait_until(WAIT, "storing after the restart", |_| {
        Ok(setup.count("SELECT count(*) FROM records WHERE kind = 'access'")? > stored_before)
    })?;
    let ran_through = !load.is_finished();
    stop.store(true, Ordering::Relaxed);
    let mut sent = load
        .join()
        .map_err(|_| anyhow!("the load thread panicked"))??;
    ensure!(ran_through, "the load stopped before the hub stored again");
    sent += round(setup.port, "/after", 1_000)?;
    let denied = 3 * DENIED_PER_ROUND;
    for _ in denied_before..denied {
        curl(&["-u", MALLORY, &url(setup.port, "/login")])?;
    }
    sent += denied;

    let (run, logged) = stop_and_count(tracer, &setup, sent)?;
    assert!(
        stored_before < logged,
        "the hub had stored all {logged} records before the restart: the test proved nothing"
    );
    let lines = run.stdout.lines().count() as u64;
    eprintln!("fleet: {sent} requests, {lines} lines");
    setup.wait_stored(&mut hub, lines)?;
    let stderr = setup.stop("the hub", hub)?;
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("postgres") || l.contains("failed") || l.contains(" stored, "))
        .collect();
    eprintln!("fleet: the hub said {notes:#?}");

    // It saw the connection close and connected again, naming the store without the
    // password.
    let server = setup
        .postgres
        .url()
        .rsplit_once('@')
        .map(|(_, server)| server.to_owned())
        .ok_or_else(|| anyhow!("no @ in the store URL"))?;
    let reconnected =
        format!("tracer-hub: the connection to postgres tracer@{server} closed; connecting again");
    assert!(
        stderr.lines().any(|l| l == reconnected),
        "no `{reconnected}` in the hub's stderr:\n{stderr}"
    );

    let seqs = setup.assert_stored_once(&run)?;
    assert_eq!(seqs.len() as u64, logged);
    let burst = setup.burst_alert(denied)?;
    eprintln!("fleet: the burst across the restart: {burst}");
    eprintln!("fleet: done in {:.1?}", started.elapsed());
    Ok(())
}
