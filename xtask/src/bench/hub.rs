//! `cargo xtask bench --hub`: tracer-hub's ingest rate (from a file, and from NATS
//! JetStream, into SQLite and into PostgreSQL; from NATS also with 64 records per
//! message, interleaved with one per message), and its answers on the stored records
//! from both stores against what an operator runs today over the same JSONL: grep and
//! jq. All in this one run.
//!
//! The records are synthetic but sealed by tracer-audit's own chain and checkpoint
//! writers, so the hub verifies them as it would a sensor's: 2,000 users, 20,000
//! clients (one record in 1,000 from a rare 192.0.2.0/24), 50 endpoint shapes with ids,
//! 3% failures, spread over the last 24 hours. The hub prints the matching lines; grep
//! counts them (`-c`, into a pipe: with its output to /dev/null GNU grep stops at the
//! first match).
use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::store_floor;
use anyhow::{Context, Result, bail, ensure};
use tests::{
    audit::key_show,
    hub::{Hub, Store},
    servers::{NatsServer, Postgres},
};
use tracer_audit::{
    Kind, StreamId,
    chain::{Chain, ZERO_HASH},
    checkpoint::{Checkpointer, Reason},
    key::AuditKey,
    start::{Start, write_record},
    timestamp::format_rfc3339_ns,
};

const STREAM_ID: &str = "bench-host";
const DAY_NS: i128 = 86_400_000_000_000;
/// Rounds of `--hub-compare-bin`, each build once per round, the first alternating.
const COMPARE_ROUNDS: usize = 4;
/// Timed runs of each query; the median is reported.
const RUNS: usize = 5;

/// What the hub section runs beside the ingest and the questions.
pub struct Extras<'a> {
    /// Keep the file and the stores here instead of a temp dir.
    pub keep: Option<&'a Path>,
    /// Drain NATS too (the dashboard row otherwise serves the imported store).
    pub with_nats: bool,
    /// Another tracer-hub build, drained from NATS into SQLite in interleaved rounds
    /// with this one.
    pub compare: Option<&'a Path>,
}

pub fn run(hub_bin: &Path, records: u64, extras: &Extras<'_>) -> Result<()> {
    let Extras {
        keep,
        with_nats,
        compare,
    } = *extras;
    let temp = tempfile::tempdir().context("creating the bench dir")?;
    let dir = match keep {
        Some(dir) => {
            // A fresh start: the stores must not hold an earlier run's records.
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir)?;
            dir
        }
        None => temp.path(),
    };
    let file = dir.join("access.jsonl");
    let key = dir.join("audit.key");
    let now = now_ns();
    let started = Instant::now();
    let lines = generate(&file, &key, records, now)?;
    println!(
        "hub: {records} access records ({lines} lines with start and checkpoints, {:.0} MB) generated in {:.1} s",
        file.metadata()?.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let public = dir.join("audit.pub");
    std::fs::write(&public, key_show(&key)?)?;
    let key_arg = format!("{STREAM_ID}={}", public.display());
    let hub = |args: &[&str]| -> Result<()> {
        let status = Command::new(hub_bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("tracer-hub {args:?} failed");
        }
        Ok(())
    };

    // Ingest from a file, into each store.
    let data = dir.join("imported");
    let sqlite = Store::Sqlite(data.clone());
    let postgres = Postgres::start_durable()?;
    let pg = Store::Postgres(postgres.url());
    let file_arg = file.to_str().context("non-UTF-8 temp dir")?.to_owned();
    let import = |store: &Store| -> Result<f64> {
        let t = Instant::now();
        hub(&[
            &["import"],
            &store.args()?[..],
            &["--key", &key_arg, &file_arg],
        ]
        .concat())?;
        Ok(t.elapsed().as_secs_f64())
    };
    let import_s = import(&sqlite)?;
    let import_pg_s = import(&pg)?;
    let sqlite_bytes = dir_bytes(&data)?;
    let pg_bytes: u64 = postgres
        .psql("SELECT pg_database_size(current_database())")?
        .trim()
        .parse()
        .context("the database's size")?;
    let floor_s = store_floor::sqlite(&data.join("hub.sqlite"), dir)?;
    let floor_pg_s = store_floor::postgres(&postgres)?;

    // Ingest from NATS: publish everything first, then time the hub draining it.
    // Without it (a large store, to time the dashboard), serve what was imported.
    let (nats_s, views) = if with_nats {
        let nats = NatsServer::start()?;
        publish(&nats.url(), &file, 1)?;
        // The same records 64 to a message (`tracer run --nats-records-per-message 64`),
        // on a server of their own.
        let grouped = NatsServer::start()?;
        publish(&grouped.url(), &file, GROUPED_RECORDS)?;
        let drain_from = |url: &str,
                          bin: &Path,
                          store: &Store,
                          files: &Path,
                          consumer: &str|
         -> Result<(f64, Hub)> {
            let t = Instant::now();
            let args = [
                "--nats",
                url,
                "--nats-consumer",
                consumer,
                "--key",
                &key_arg,
            ];
            let mut served = Hub::serve_store_of(bin, store, files, &args)?;
            served.wait_until(Duration::from_secs(3600), "holding every record", |hub| {
                Ok(hub.stored()? >= records)
            })?;
            Ok((t.elapsed().as_secs_f64(), served))
        };
        let url = nats.url();
        let drain = |store: &Store, files: &Path, consumer: &str| {
            drain_from(&url, hub_bin, store, files, consumer)
        };
        let nats_data = dir.join("from-nats");
        let (sqlite_s, served) = drain(
            &Store::Sqlite(nats_data.clone()),
            &nats_data,
            "bench-sqlite",
        )?;
        let views = dashboard_views(&served, now)?;
        served.stop()?;
        // A second consumer of the same stream, into a database of its own.
        let pg_nats = Store::Postgres(postgres.create_database("from_nats")?);
        let (pg_s, served) = drain(&pg_nats, &dir.join("from-nats-pg"), "bench-postgres")?;
        // One hub leads the detections on PostgreSQL, beside ingest, over the feed the
        // batches write: how long after the last record was stored they are done.
        let stored = Instant::now();
        loop {
            let waiting = postgres.psql_in("from_nats", "SELECT count(*) FROM detect_feed")?;
            if waiting.trim() == "0" {
                break;
            }
            ensure!(
                stored.elapsed() < Duration::from_secs(600),
                "the detections did not catch up: {waiting} batches wait"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let detections_lag_s = stored.elapsed().as_secs_f64();
        served.stop()?;
        // Whole drains of the stream at each arm's URL by each arm's build, in
        // interleaved rounds (every second one backwards), each with a consumer and a
        // database of its own.
        let interleaved =
            |arms: [(&str, &Path); 2], tag: &str, on_postgres: bool| -> Result<Vec<[f64; 2]>> {
                let mut rows = Vec::new();
                for round in 0..COMPARE_ROUNDS {
                    let mut rates = [0.0; 2];
                    let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                    for which in order {
                        let (url, bin) = arms[which];
                        // Letters only: PostgreSQL's database names here are not quoted.
                        let name = format!(
                            "{tag}_{}_{}",
                            char::from(b'a' + round as u8),
                            char::from(b'a' + which as u8)
                        );
                        let data = dir.join(&name);
                        let store = if on_postgres {
                            Store::Postgres(postgres.create_database(&name)?)
                        } else {
                            Store::Sqlite(data.clone())
                        };
                        let (s, served) = drain_from(url, bin, &store, &data, &name)?;
                        served.stop()?;
                        // A PostgreSQL store keeps nothing in `data` (the hub's files sit
                        // beside it).
                        if on_postgres {
                            postgres.psql(&format!("DROP DATABASE {name}"))?;
                        } else {
                            std::fs::remove_dir_all(&data)?;
                        }
                        rates[which] = records as f64 / s;
                    }
                    rows.push(rates);
                }
                Ok(rows)
            };
        let print_rounds = |store: &str, arms: [&str; 2], rows: &[[f64; 2]]| {
            println!(
                "\n| NATS JetStream -> {store}, interleaved | {}, records/s | {}, records/s |\n|---|---|---|",
                arms[0], arms[1]
            );
            for (round, [this, that]) in rows.iter().enumerate() {
                println!("| round {} | {this:.0} | {that:.0} |", round + 1);
            }
        };
        let grouped_url = grouped.url();
        let rows = interleaved([(&url, hub_bin), (&grouped_url, hub_bin)], "grouped", false)?;
        print_rounds(
            "SQLite",
            [
                "1 record per message",
                "64 records per message (`tracer run --nats-records-per-message 64`)",
            ],
            &rows,
        );
        if let Some(other) = compare {
            let arms = ["this build", &other.display().to_string()];
            let rows = interleaved([(&url, hub_bin), (&url, other)], "compare", false)?;
            print_rounds("SQLite", arms, &rows);
            let rows = interleaved([(&url, hub_bin), (&url, other)], "comparepg", true)?;
            print_rounds("PostgreSQL", arms, &rows);
        }
        (Some((sqlite_s, pg_s, detections_lag_s)), views)
    } else {
        let served = Hub::serve(&data, &[])?;
        let views = dashboard_views(&served, now)?;
        served.stop()?;
        (None, views)
    };

    println!("\n| ingest | records/s | seconds |\n|---|---|---|");
    let rate = |what: &str, s: f64| {
        println!("| {what} | {:.0} | {s:.1} |", records as f64 / s);
    };
    rate("file -> SQLite (`tracer-hub import`)", import_s);
    rate(
        "SQLite alone: the stored rows copied by `INSERT ... SELECT` (the floor)",
        floor_s,
    );
    rate(
        "file -> PostgreSQL (`tracer-hub import --store`)",
        import_pg_s,
    );
    rate(
        "PostgreSQL alone: the stored rows copied by `INSERT ... SELECT` (the floor)",
        floor_pg_s,
    );
    if let Some((sqlite_s, pg_s, detections_lag_s)) = nats_s {
        rate(
            "NATS JetStream -> SQLite (`serve`, acked after commit)",
            sqlite_s,
        );
        rate(
            "NATS JetStream -> PostgreSQL (`serve --store`, acked after commit)",
            pg_s,
        );
        println!(
            "| PostgreSQL: the detections (one hub leads, over the batches' feed) done after the last record was stored | | {detections_lag_s:.2} |"
        );
    }

    println!("\n| what holds the records after `import` | MB | bytes per record |\n|---|---|---|");
    let size = |what: &str, bytes: u64| {
        println!(
            "| {what} | {:.0} | {:.0} |",
            bytes as f64 / 1e6,
            bytes as f64 / records as f64
        );
    };
    size("the JSONL file", file.metadata()?.len());
    size("SQLite (`--data`: the file and its WAL)", sqlite_bytes);
    size("PostgreSQL (`pg_database_size`)", pg_bytes);

    // Questions, hub (each store) against grep/jq over the same file.
    let user = "user42";
    let day_from = format_rfc3339_ns(now - DAY_NS);
    let day_to = format_rfc3339_ns(now);
    let questions: [(&str, Vec<String>, String); 3] = [
        (
            "one user's requests over one day",
            strings(&[
                "query", "--user", user, "--from", &day_from, "--to", &day_to, "--limit", "100000",
                "--format", "jsonl",
            ]),
            format!("grep -cF '\"user.name\":\"{user}\"' {file_arg}"),
        ),
        (
            "top 10 endpoints over 24 h",
            strings(&["top", "endpoints", "--from", &day_from, "--to", &day_to]),
            format!(
                "jq -r 'select(.\"audit.kind\"==\"access\") | .\"url.path\"' {file_arg} | sort | uniq -c | sort -rn | head -10"
            ),
        ),
        (
            "a rare client /24 over one day",
            strings(&[
                "query",
                "--client",
                "192.0.2.0/24",
                "--from",
                &day_from,
                "--to",
                &day_to,
                "--limit",
                "100000",
                "--format",
                "jsonl",
            ]),
            format!("grep -cF '\"client.address\":\"192.0.2.' {file_arg}"),
        ),
    ];
    println!(
        "\n| question | SQLite (median of {RUNS}) | PostgreSQL (median of {RUNS}) | today's tool | ratio to SQLite | ratio to PostgreSQL |\n|---|---|---|---|---|---|"
    );
    for (what, hub_args, shell) in questions {
        let answer = |store: &Store| -> Result<f64> {
            let args: Vec<&str> = hub_args.iter().map(String::as_str).collect();
            let args = [&args[..], &store.args()?[..]].concat();
            median_ms(|| hub(&args))
        };
        let sqlite_ms = answer(&sqlite)?;
        let pg_ms = answer(&pg)?;
        let tool = if shell.starts_with("jq") {
            "jq"
        } else {
            "grep"
        };
        // Output into a pipe, not /dev/null: GNU grep stops at the first match when its
        // output is /dev/null, even with -c.
        let shell_ms = median_ms_n(1, || {
            let output = Command::new("sh").args(["-c", &shell]).output()?;
            if !output.status.success() {
                bail!("{shell} failed");
            }
            Ok(())
        })?;
        println!(
            "| {what} | {sqlite_ms:.1} ms | {pg_ms:.1} ms | {tool}: {shell_ms:.0} ms | {:.1}x | {:.1}x |",
            shell_ms / sqlite_ms,
            shell_ms / pg_ms
        );
    }
    println!(
        "\n(query and top run as fresh processes, process start included; PostgreSQL 15 is a throwaway local cluster started by the bench with its default settings (fsync and synchronous commit on), reached over TCP with a password.)"
    );
    println!(
        "\n| dashboard view ({records} records, SQLite) | API answers, median of {RUNS} |\n|---|---|"
    );
    for (view, ms) in views {
        println!("| {view} | {ms:.1} ms |");
    }
    println!(
        "\n(each view's API requests in sequence, as curl processes against `tracer-hub serve`, process start included; the browser sends them in parallel.)"
    );
    Ok(())
}

/// How long each dashboard view's API requests take, in sequence, on the store `served`
/// holds: the overview over a day and over 30 days, and the top lists.
fn dashboard_views(served: &Hub, now: i128) -> Result<Vec<(String, f64)>> {
    let range = |days: i128| {
        format!(
            "from={}&to={}",
            format_rfc3339_ns(now - days * DAY_NS),
            format_rfc3339_ns(now)
        )
    };
    let (day, month) = (range(1), range(30));
    let views: [(&str, Vec<String>); 5] = [
        (
            "overview, 24 h (totals, time series, latest 10)",
            vec![
                format!("/api/totals?{day}"),
                format!("/api/timeseries?{day}"),
                "/api/records?limit=10&offset=0".to_owned(),
            ],
        ),
        (
            "overview, 30 days",
            vec![
                format!("/api/totals?{month}"),
                format!("/api/timeseries?{month}"),
                "/api/records?limit=10&offset=0".to_owned(),
            ],
        ),
        (
            "endpoints, 24 h (templates, failures, assets)",
            vec![
                format!("/api/top/endpoints?{day}&limit=10"),
                format!("/api/top/failures?{day}&limit=10"),
                format!("/api/top/assets?{day}&limit=10"),
            ],
        ),
        (
            "users, 30 days (users, credentials)",
            vec![
                format!("/api/top/users?{month}&limit=10"),
                format!("/api/top/credentials?{month}&limit=10"),
            ],
        ),
        (
            "clients, 30 days",
            vec![format!("/api/top/clients?{month}&limit=10")],
        ),
    ];
    let mut timed = Vec::new();
    for (view, paths) in views {
        let ms = median_ms(|| {
            for path in &paths {
                served.api(path)?;
            }
            Ok(())
        })?;
        timed.push((view.to_owned(), ms));
    }
    Ok(timed)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn median_ms(run: impl FnMut() -> Result<()>) -> Result<f64> {
    median_ms_n(RUNS, run)
}

fn median_ms_n(runs: usize, mut run: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        run()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// A small deterministic generator, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes the sealed stream; returns the number of lines.
fn generate(file: &Path, key: &Path, records: u64, now: i128) -> Result<u64> {
    const CHECKPOINT_EVERY: u64 = 10_000;
    let key = AuditKey::load_or_create(key)?;
    let mut checkpointer = Checkpointer::new(key, None);
    let stream: StreamId = STREAM_ID.parse().map_err(anyhow::Error::msg)?;
    let mut chain = Chain::new(stream, 1, ZERO_HASH);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(file)?);
    let mut line = Vec::with_capacity(1024);
    let start = now - DAY_NS;
    write_record(
        Start::New,
        &format_rfc3339_ns(start),
        checkpointer.fingerprint(),
        &mut line,
    )?;
    chain.seal(&mut line, Kind::Start);
    out.write_all(&line)?;
    let mut lines = 1;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let resources = ["orders", "users", "invoices", "reports", "files"];
    for n in 0..records {
        let ts = start + DAY_NS * n as i128 / records as i128;
        let user = rng.below(2_000);
        let client = rng.below(20_000);
        let rare = n % 1000 == 7;
        let status = match rng.below(100) {
            0 => 500,
            1 => 403,
            2 => 404,
            _ => 200,
        };
        let resource = resources[rng.below(resources.len() as u64) as usize];
        let shape = rng.below(10);
        let id = rng.below(100_000);
        line.clear();
        write!(
            line,
            r#"{{"timestamp":"{}","event.duration":{},"http.request.method":"GET","url.path":"/api/v{shape}/{resource}/{id}","url.scheme":"http","server.address":"shop.example","server.port":8080,"client.address":"{}.{}.{}","client.port":{},"http.response.status_code":{status},"http.request.body.size":0,"http.response.body.size":{},"user_agent.original":"bench/1.0","process.pid":4242,"tracer.outcome":"complete","user.name":"user{user}","audit.auth.method":"basic","audit.credential.fingerprint":"{:016x}","process.executable.name":"nginx"}}"#,
            format_rfc3339_ns(ts),
            50_000 + rng.below(500_000),
            if rare {
                "192.0"
            } else if client.is_multiple_of(2) {
                "198.51"
            } else {
                "203.0"
            },
            if rare {
                2
            } else {
                100 + client % 100 / 50 * 13
            },
            client % 250,
            1024 + rng.below(60_000),
            100 + rng.below(10_000),
            user.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        )?;
        chain.seal(&mut line, Kind::Access);
        out.write_all(&line)?;
        lines += 1;
        if (n + 1) % CHECKPOINT_EVERY == 0 || n + 1 == records {
            checkpointer.write(
                &mut chain,
                Reason::Records,
                CHECKPOINT_EVERY,
                &format_rfc3339_ns(ts),
                &mut line,
            )?;
            out.write_all(&line)?;
            lines += 1;
        }
    }
    out.flush()?;
    Ok(lines)
}

/// Records per message of the grouped NATS rounds.
const GROUPED_RECORDS: usize = 64;

/// Publishes every line of `file` to the `TRACER` stream (created here), `per_message`
/// lines to a message, with acks in flight in windows, as the sensor's NATS sink does.
fn publish(url: &str, file: &Path, per_message: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let text = std::fs::read_to_string(file)?;
    runtime.block_on(async {
        let client = async_nats::connect(url).await?;
        let js = async_nats::jetstream::new(client);
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "TRACER".to_owned(),
            subjects: vec!["access.*".to_owned()],
            max_message_size: 1 << 20,
            ..Default::default()
        })
        .await?;
        let mut pending = std::collections::VecDeque::new();
        let lines: Vec<&str> = text.lines().collect();
        for group in lines.chunks(per_message) {
            pending.push_back(
                js.publish(format!("access.{STREAM_ID}"), group.join("\n").into())
                    .await?,
            );
            if pending.len() >= 4_096 {
                while let Some(ack) = pending.pop_front() {
                    ack.await?;
                }
            }
        }
        while let Some(ack) = pending.pop_front() {
            ack.await?;
        }
        anyhow::Ok(())
    })
}

/// The bytes of the files in `dir` (not below).
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            bytes += meta.len();
        }
    }
    Ok(bytes)
}
