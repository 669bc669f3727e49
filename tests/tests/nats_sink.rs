//! The NATS JetStream sink against a real nats-server: every record the tracer wrote
//! on stdout is in the stream exactly once and in order, with its de-duplication id,
//! across a broker restart, across a tracer restart with a non-empty spool, and with a
//! spool too small for an outage (discards counted, no crash).

use anyhow::{Context, Result, anyhow};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tests::clients::url;
use tests::load::ab_keepalive;
use tests::ports::free_port;
use tests::servers::{NatsServer, Nginx, NginxConfig};
use tests::tracer::{Tracer, TracerRun};
use tests::workspace;

const STREAM: &str = "TRACER";
const WAIT: Duration = Duration::from_secs(60);

/// A message as JetStream stored it.
#[derive(Debug)]
struct Stored {
    subject: String,
    msg_id: String,
    payload: String,
}

/// Every message of the stream, in stream order.
fn stored_messages(nats_url: &str) -> Result<Vec<Stored>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = async_nats::connect(nats_url).await?;
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(STREAM).await?;
        let state = stream.info().await?.state.clone();
        let mut stored = Vec::new();
        if state.messages == 0 {
            return Ok(stored);
        }
        for seq in state.first_sequence..=state.last_sequence {
            let message = stream
                .get_raw_message(seq)
                .await
                .with_context(|| format!("reading message {seq}"))?;
            stored.push(Stored {
                subject: message.subject.to_string(),
                msg_id: message
                    .headers
                    .get("Nats-Msg-Id")
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default(),
                payload: String::from_utf8(message.payload.to_vec())?,
            });
        }
        Ok(stored)
    })
}

/// The subject `access.{host}` expands to here.
fn host_subject() -> Result<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    let token: String = host
        .trim()
        .chars()
        .map(|c| {
            if matches!(c, '.' | '*' | '>') || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect();
    Ok(format!("access.{token}"))
}

/// The stream holds exactly the records in `lines`, once each, in that order, on this
/// host's subject, each with the hex SHA-256 of the record as its `Nats-Msg-Id`.
fn assert_stream_holds(stored: &[Stored], lines: &[&str]) -> Result<()> {
    let subject = host_subject()?;
    let mut ids = HashSet::new();
    for (i, (message, line)) in stored.iter().zip(lines).enumerate() {
        assert_eq!(
            message.payload,
            *line,
            "message {} differs from record {i}",
            i + 1
        );
        assert_eq!(message.subject, subject, "message {}", i + 1);
        let expected_id = format!("{:x}", Sha256::digest(line.as_bytes()));
        assert_eq!(
            message.msg_id,
            expected_id,
            "Nats-Msg-Id of message {}",
            i + 1
        );
        assert!(
            ids.insert(&message.msg_id),
            "message {} repeats an id",
            i + 1
        );
    }
    assert_eq!(
        stored.len(),
        lines.len(),
        "messages in the stream vs records on stdout"
    );
    Ok(())
}

/// Every line the tracer wrote to stdout: access records and audit lines (start, loss,
/// checkpoint), all of which every sink carries.
fn record_lines(run: &TracerRun) -> Vec<&str> {
    run.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect()
}

fn nats_summary(run: &TracerRun, key: &str) -> u64 {
    run.summary["sinks"]["nats"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no sinks.nats.{key} in the summary: {}", run.summary))
}

/// A nats-server, an nginx to trace and a spool directory that outlives tracer restarts.
struct Setup {
    nats: NatsServer,
    port: u16,
    _nginx: Nginx,
    spool: tempfile::TempDir,
}

impl Setup {
    fn new() -> Result<Self> {
        let nats = NatsServer::start()?;
        let port = free_port();
        let nginx = Nginx::start(NginxConfig::new(port))?;
        Ok(Self {
            nats,
            port,
            _nginx: nginx,
            spool: tempfile::tempdir()?,
        })
    }

    /// `tracer run --nats URL --nats-create-stream --nats-spool-dir SPOOL EXTRA...`.
    fn tracer(&self, extra: &[&str]) -> Result<Tracer> {
        self.tracer_without_create(&[&["--nats-create-stream"], extra].concat())
    }

    fn tracer_without_create(&self, extra: &[&str]) -> Result<Tracer> {
        let url = self.nats.url();
        let spool = self
            .spool
            .path()
            .to_str()
            .ok_or_else(|| anyhow!("non-UTF-8 temp dir"))?;
        let mut args = vec![
            "--stdout",
            "--nats",
            url.as_str(),
            "--nats-spool-dir",
            spool,
        ];
        args.extend_from_slice(extra);
        Tracer::start_with_args(&[self.port], &args, &[])
    }

    fn traffic(&self, requests: u32) -> Result<u64> {
        traffic(self.port, requests)
    }

    fn stored(&self) -> Result<Vec<Stored>> {
        stored_messages(&self.nats.url())
    }
}

fn traffic(port: u16, requests: u32) -> Result<u64> {
    let report = ab_keepalive(&url(port, "/nats"), 4, requests)?;
    assert_eq!((report.failed, report.non_2xx), (0, 0), "{}", report.raw);
    Ok(report.complete)
}

/// `tracer run --config FILE` with `toml` in the file, which must fail: its stderr.
fn refused_config(toml: &str) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tracer.toml");
    std::fs::write(&config, toml)?;
    let output = Command::new(workspace::tracer_bin()?)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    Ok(stderr)
}

#[test]
fn every_record_is_published_once_in_order() -> Result<()> {
    let setup = Setup::new()?;
    let tracer = setup.tracer(&[])?;
    let requests = setup.traffic(500)?;
    tests::clients::curl(&[&url(setup.port, "/by-curl?x=1")])?;
    let run = tracer.stop()?;

    let lines = record_lines(&run);
    assert_eq!(
        run.records.len() as u64,
        requests + 1,
        "summary: {}",
        run.summary
    );
    assert_stream_holds(&setup.stored()?, &lines)?;
    assert_eq!(nats_summary(&run, "acked"), lines.len() as u64);
    assert_eq!(nats_summary(&run, "backlog_records"), 0);
    assert_eq!(nats_summary(&run, "discarded"), 0);
    assert!(
        run.stderr.contains("tracer: nats: created stream TRACER"),
        "{}",
        run.stderr
    );
    Ok(())
}

/// Load that runs until told to stop; returns the requests completed.
struct BackgroundTraffic {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<u64>>,
}

impl BackgroundTraffic {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let done = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                done.fetch_add(traffic(port, 200)?, Ordering::SeqCst);
            }
            Ok(done.load(Ordering::SeqCst))
        });
        Self { stop, thread }
    }

    fn finish(self) -> Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .map_err(|_| anyhow!("traffic thread panicked"))?
    }
}

#[test]
fn a_broker_restart_mid_stream_loses_and_duplicates_nothing() -> Result<()> {
    let mut setup = Setup::new()?;
    let tracer = setup.tracer(&["--nats-drain-timeout-ms", "60000"])?;
    tracer.wait_for_stderr("tracer: nats: connected to", WAIT)?;
    let load = BackgroundTraffic::start(setup.port);
    std::thread::sleep(Duration::from_secs(1));
    setup.nats.stop()?;
    tracer.wait_for_stderr("records are kept in the spool", WAIT)?;
    // Keep tracing while the broker is away.
    std::thread::sleep(Duration::from_secs(2));
    setup.nats.restart()?;
    tracer.wait_for_stderr("again after", WAIT)?;
    std::thread::sleep(Duration::from_secs(1));
    let requests = load.finish()?;
    let run = tracer.stop()?;

    let lines = record_lines(&run);
    assert_eq!(
        run.records.len() as u64,
        requests,
        "summary: {}",
        run.summary
    );
    assert_stream_holds(&setup.stored()?, &lines)?;
    assert!(nats_summary(&run, "failures") >= 1, "{}", run.summary);
    assert_eq!(nats_summary(&run, "backlog_records"), 0);
    assert_eq!(nats_summary(&run, "discarded"), 0);
    // Printed only when a backlog spooled during the outage was published.
    assert!(
        run.stderr.contains("tracer: nats: caught up"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn a_tracer_restart_with_a_spooled_backlog_loses_and_duplicates_nothing() -> Result<()> {
    let mut setup = Setup::new()?;
    let first = setup.tracer(&["--nats-drain-timeout-ms", "500"])?;
    setup.traffic(300)?;
    setup.nats.stop()?;
    first.wait_for_stderr("records are kept in the spool", WAIT)?;
    let spooled = setup.traffic(300)?;
    let first = first.stop()?;
    assert!(
        nats_summary(&first, "backlog_records") >= spooled,
        "{}",
        first.summary
    );
    assert!(
        first
            .stderr
            .contains("they are published at the next start"),
        "{}",
        first.stderr
    );

    setup.nats.restart()?;
    let second = setup.tracer(&["--nats-drain-timeout-ms", "60000"])?;
    setup.traffic(300)?;
    let second = second.stop()?;
    assert!(
        second
            .stderr
            .contains("from the previous run; they are published first"),
        "{}",
        second.stderr
    );
    assert_eq!(nats_summary(&second, "backlog_records"), 0);

    let mut lines = record_lines(&first);
    lines.extend(record_lines(&second));
    assert_eq!(first.records.len() + second.records.len(), 900);
    assert_stream_holds(&setup.stored()?, &lines)?;
    Ok(())
}

/// With `--nats-records-per-message`, a backlog goes out several records to a message,
/// one per line, each message's id the SHA-256 of its payload; every record arrives, in
/// order. (A message sent again after a failure may group its records differently, and
/// JetStream then keeps both copies: the hub stores each record once.)
#[test]
fn a_backlog_goes_out_several_records_to_a_message() -> Result<()> {
    let mut setup = Setup::new()?;
    let tracer = setup.tracer(&[
        "--nats-records-per-message",
        "16",
        "--nats-drain-timeout-ms",
        "60000",
    ])?;
    tracer.wait_for_stderr("tracer: nats: connected to", WAIT)?;
    let mut requests = setup.traffic(50)?;
    setup.nats.stop()?;
    tracer.wait_for_stderr("records are kept in the spool", WAIT)?;
    requests += setup.traffic(300)?;
    setup.nats.restart()?;
    tracer.wait_for_stderr("caught up", WAIT)?;
    requests += setup.traffic(50)?;
    let run = tracer.stop()?;
    assert_eq!(run.records.len() as u64, requests, "{}", run.summary);

    let stored = setup.stored()?;
    let mut seen = HashSet::new();
    let mut arrived = Vec::new();
    for (i, message) in stored.iter().enumerate() {
        let expected_id = format!("{:x}", Sha256::digest(message.payload.as_bytes()));
        assert_eq!(
            message.msg_id,
            expected_id,
            "Nats-Msg-Id of message {}",
            i + 1
        );
        let lines: Vec<&str> = message.payload.split('\n').collect();
        assert!(lines.len() <= 16, "message {} holds {}", i + 1, lines.len());
        arrived.extend(lines.into_iter().filter(|l| seen.insert(*l)));
    }
    assert_eq!(arrived, record_lines(&run), "every record once, in order");
    assert!(
        stored.iter().any(|m| m.payload.contains('\n')),
        "the backlog of 300 records went out one to a message"
    );
    assert!(stored.len() < arrived.len(), "{} messages", stored.len());
    assert_eq!(nats_summary(&run, "acked"), arrived.len() as u64);
    Ok(())
}

/// A bad number of records per message is refused before the tracer starts, from the
/// flag and from the config file.
#[test]
fn records_per_message_out_of_range_is_a_clear_error() -> Result<()> {
    let bin = workspace::tracer_bin()?;
    for bad in ["0", "1025", "many"] {
        let output = Command::new(&bin)
            .args(["run", "--port", "8080", "--nats", "nats://127.0.0.1:4222"])
            .args(["--nats-records-per-message", bad])
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{bad}: {stderr}");
        assert!(
            stderr.contains("--nats-records-per-message"),
            "{bad}: {stderr}"
        );
        assert!(!stderr.contains("tracer: ready"), "{stderr}");
    }
    let stderr = refused_config(
        "ports = [8080]\n\n[nats]\nurl = \"nats://127.0.0.1:4222\"\nrecords_per_message = 5000\n",
    )?;
    assert!(
        stderr.contains("records per message must be 1 to 1024, not 5000"),
        "{stderr}"
    );
    Ok(())
}

/// A replay of records JetStream already stored (the cursor lost, as after a crash before
/// it was written) is dropped by the stream's de-duplication: nothing is stored twice.
#[test]
fn records_sent_again_are_stored_once() -> Result<()> {
    let setup = Setup::new()?;
    let first = setup.tracer(&[])?;
    let sent = setup.traffic(200)?;
    let first = first.stop()?;
    assert_eq!(first.records.len() as u64, sent);
    let first_lines = record_lines(&first).len() as u64;
    assert_eq!(nats_summary(&first, "acked"), first_lines);
    std::fs::remove_file(setup.spool.path().join("cursor"))?;

    let second = setup.tracer(&[])?;
    setup.traffic(100)?;
    let second = second.stop()?;
    assert_eq!(
        nats_summary(&second, "duplicates"),
        first_lines,
        "{}",
        second.summary
    );

    let mut lines = record_lines(&first);
    lines.extend(record_lines(&second));
    assert_eq!(first.records.len() + second.records.len(), 300);
    assert_stream_holds(&setup.stored()?, &lines)?;
    Ok(())
}

#[test]
fn a_full_spool_discards_counts_and_reports() -> Result<()> {
    let mut setup = Setup::new()?;
    // The broker is down for the whole run.
    setup.nats.stop()?;
    let max_bytes = 16_384u64;
    let tracer = setup.tracer(&[
        "--nats-spool-max-bytes",
        &max_bytes.to_string(),
        "--nats-drain-timeout-ms",
        "200",
    ])?;
    let requests = setup.traffic(2000)?;
    let run = tracer.stop()?;

    // stdout, the other sink, is not affected.
    assert_eq!(run.records.len() as u64, requests);
    let discarded = nats_summary(&run, "discarded");
    let backlog = nats_summary(&run, "backlog_records");
    assert!(discarded > 0 && backlog > 0, "{}", run.summary);
    let lines = record_lines(&run).len() as u64;
    assert_eq!(discarded + backlog, lines, "{}", run.summary);
    // The discards are in the stream too, as loss records.
    let reported: u64 = run
        .lines
        .iter()
        .filter(|l| l["audit.kind"] == "loss" && l["audit.loss.reason"] == "discarded_records")
        .map(|l| l["audit.loss.count"].as_u64().unwrap_or_default())
        .sum();
    assert!(
        reported > 0 && reported <= discarded,
        "{reported} of {discarded} reported"
    );
    assert!(run.stderr.contains("cannot connect to"), "{}", run.stderr);
    assert!(run.stderr.contains("is full"), "{}", run.stderr);
    let on_disk: u64 = std::fs::read_dir(setup.spool.path())?
        .map(|e| e.and_then(|e| e.metadata()).map(|m| m.len()))
        .collect::<std::io::Result<Vec<_>>>()?
        .iter()
        .sum();
    assert!(
        on_disk <= max_bytes + 64,
        "{on_disk} bytes in the spool dir"
    );
    Ok(())
}

#[test]
fn a_missing_stream_without_permission_to_create_is_reported() -> Result<()> {
    let setup = Setup::new()?;
    let tracer = setup.tracer_without_create(&["--nats-drain-timeout-ms", "200"])?;
    tracer.wait_for_stderr("does not exist and creating it is not allowed", WAIT)?;
    let requests = setup.traffic(50)?;
    let run = tracer.stop()?;
    assert_eq!(run.records.len() as u64, requests);
    assert_eq!(
        nats_summary(&run, "backlog_records"),
        record_lines(&run).len() as u64
    );
    Ok(())
}

#[test]
fn a_bad_nats_url_is_a_clear_error_before_ready() -> Result<()> {
    let bin = workspace::tracer_bin()?;
    for (url, needle) in [
        ("http://127.0.0.1:4222", "invalid scheme"),
        ("nats://127.0.0.1:99999", "invalid port"),
        ("nats://user:hunter2@[::1", "invalid"),
    ] {
        let output = Command::new(&bin)
            .args(["run", "--port", "8080", "--nats", url])
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{url}: {stderr}");
        assert!(
            stderr.contains("--nats") && stderr.contains(needle),
            "{url}: {stderr}"
        );
        assert!(!stderr.contains("tracer: ready"), "{stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "a password was printed: {stderr}"
        );
    }
    let stderr = refused_config("ports = [8080]\n\n[nats]\nurl = \"bogus://u:hunter2@x\"\n")?;
    assert!(
        stderr.contains("nats.url") && stderr.contains("invalid scheme"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "a password was printed: {stderr}"
    );
    assert!(!stderr.contains("tracer: ready"), "{stderr}");
    Ok(())
}
