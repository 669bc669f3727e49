//! Traffic a tracer must survive without inventing or leaking anything.

use anyhow::Result;
use std::net::{IpAddr, Ipv4Addr};
use tests::clients::{RawConn, curl, junk_bytes, tls_client_hello, url};
use tests::ports::free_port;
use tests::record::RecordExt;
use tests::servers::{Nginx, NginxConfig, PyHttpServer};
use tests::tracer::Tracer;

#[test]
fn junk_and_tls_on_a_watched_port_yield_only_what_nginx_answered() -> Result<()> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let tracer = Tracer::start(&[port])?;
    for payload in [junk_bytes(4096, 0x5eed), tls_client_hello()] {
        let mut conn = RawConn::connect(("127.0.0.1", port))?;
        conn.send(&payload)?;
        // nginx answers 400 and closes, or resets: either way the exchange is over.
        let _ = conn.read_to_end();
    }
    let body = curl(&[&url(port, "/valid-after-junk")])?;
    assert_eq!(body, "hello\n");
    let run = tracer.stop()?;

    // What nginx answered with 400 is recorded as unparsed (no invented method or
    // path); the valid request is recorded as it was.
    let (valid, unparsed): (Vec<_>, Vec<_>) = run
        .records
        .iter()
        .partition(|r| r.str_field("tracer.outcome") != "request_unparsed");
    assert_eq!(valid.len(), 1, "records: {:#?}", run.records);
    assert_eq!(valid[0].str_field("url.path"), "/valid-after-junk");
    assert_eq!(valid[0].u64_field("http.response.status_code"), 200);
    assert!(unparsed.len() <= 2, "records: {:#?}", run.records);
    for r in &unparsed {
        assert_eq!(r.u64_field("http.response.status_code"), 400, "{r}");
        assert!(!r.has("url.path"), "an unparsed request has no path: {r}");
    }
    let non_http = run.summary_u64("non_http_chunks")?;
    assert!(non_http > 0, "non_http_chunks is 0: {}", run.summary);
    Ok(())
}

#[test]
fn secrets_appear_nowhere_in_the_output() -> Result<()> {
    let port = free_port();
    let _server = PyHttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), port, "HTTP/1.0")?;
    let tracer = Tracer::start(&[port])?;
    curl(&[
        "-H",
        "Authorization: Bearer S3CRET-TOKEN",
        "-H",
        "Cookie: session=S3CRET-COOKIE",
        &url(port, "/hello.txt?access_token=S3CRET-QUERY&x=1"),
    ])?;
    curl(&[
        "-u",
        "alice:S3CRET-PASSWORD",
        &url(
            port,
            "/hello.txt?api_key=S3CRET-KEY&password=S3CRET-PW&sig=S3CRET-SIG&keep=yes",
        ),
    ])?;
    // A request line no parser reads (a NUL byte): the server answers 400 and the
    // record keeps the line's start, redacted like any path and query.
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    conn.send(b"GET /reset/S3CRET-PATH?access_token=S3CRET-RAW\x00 HTTP/1.1\r\n\r\n")?;
    let _ = conn.read_to_end();
    let run = tracer.stop()?;

    let unparsed: Vec<_> = run
        .records
        .iter()
        .filter(|r| r.str_field("tracer.outcome") == "request_unparsed")
        .collect();
    assert_eq!(unparsed.len(), 1, "records: {:#?}", run.records);
    let line = unparsed[0].str_field("tracer.request.line");
    assert!(line.contains("access_token=REDACTED"), "{line}");
    let run_records: Vec<_> = run
        .records
        .iter()
        .filter(|r| r.str_field("tracer.outcome") != "request_unparsed")
        .collect();
    assert_eq!(run_records.len(), 2, "records: {:#?}", run.records);
    assert!(
        !run.stdout.contains("S3CRET"),
        "a secret reached stdout:\n{}",
        run.stdout
    );
    assert!(
        !run.stderr.contains("S3CRET"),
        "a secret reached stderr:\n{}",
        run.stderr
    );
    let mut queries: Vec<String> = run_records
        .iter()
        .map(|r| r.str_field("url.query").to_owned())
        .collect();
    queries.sort_unstable();
    assert_eq!(
        queries,
        [
            "access_token=REDACTED&x=1",
            "api_key=REDACTED&password=REDACTED&sig=REDACTED&keep=yes",
        ]
    );
    Ok(())
}

/// A reader of stdout that stops reading must not stall the tracer: SIGTERM still
/// stops it, and the records that could not be delivered are counted, not lost
/// without a trace.
#[test]
fn a_stalled_stdout_reader_neither_hangs_the_tracer_nor_loses_records_silently() -> Result<()> {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};
    use std::time::Duration;
    use tests::process::Guarded;
    use tests::tracer::{READY_PREFIX, SUMMARY_PREFIX};

    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let dir = tempfile::tempdir()?;
    let mut command = Command::new(tests::workspace::tracer_bin()?);
    command
        .arg("run")
        .arg("--port")
        .arg(port.to_string())
        .arg("--audit-state")
        .arg(dir.path().join("audit.state"))
        .arg("--audit-key")
        .arg(dir.path().join("audit.key"))
        .stdin(Stdio::null())
        // A pipe nobody reads: it fills after 64 KiB, a few dozen records.
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut tracer = Guarded::spawn(&mut command, "tracer")?;
    let _unread_stdout = tracer.child_mut().stdout.take();
    let stderr = tracer.child_mut().stderr.take().expect("piped stderr");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready_deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = ready_deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines.recv_timeout(left)?;
        if line.starts_with(READY_PREFIX) {
            break;
        }
    }
    // Far more than the pipe holds.
    let report = tests::load::ab_keepalive(&url(port, "/stalled"), 4, 2_000)?;
    assert_eq!(report.failed, 0, "{report:?}");
    tracer.signal(libc::SIGTERM)?;
    let status = tracer.wait_timeout(Duration::from_secs(30))?;
    assert!(status.success(), "tracer exited with {status}");
    let stderr: Vec<String> = lines.try_iter().collect();
    let summary = stderr
        .iter()
        .find_map(|l| l.strip_prefix(SUMMARY_PREFIX))
        .unwrap_or_else(|| panic!("no summary line in {stderr:#?}"));
    let summary: serde_json::Value = serde_json::from_str(summary)?;
    let stdout = &summary["sinks"]["stdout"];
    let discarded = stdout["discarded"].as_u64().unwrap_or_default();
    let written = stdout["bytes_written"].as_u64().unwrap_or_default();
    assert!(discarded > 0, "nothing counted as discarded: {summary}");
    assert!(
        written <= 1 << 20,
        "{written} bytes cannot have reached a pipe nobody reads: {summary}"
    );
    let records = summary["records"].as_u64().unwrap_or_default();
    assert!(
        records >= 2_000,
        "every request still made a record: {summary}"
    );
    Ok(())
}
