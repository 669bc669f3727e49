//! HTTP/2 against real servers and clients: nginx with h2c (prior knowledge) and h2
//! over TLS, driven by curl and h2load; every record checked against nginx's own log.

use anyhow::{Context, Result};
use serde_json::Value;
use std::process::Command;
use tests::clients::{curl, url};
use tests::ports::free_port;
use tests::record::RecordExt;
use tests::servers::{APACHE_HELLO, Apache, HELLO, Nginx, NginxConfig};
use tests::tls::tls_url;
use tests::tracer::Tracer;

/// (method, target, status) of each line of nginx's `combined` log, which must all be
/// HTTP/2 requests, sorted: concurrent streams end in any order.
fn logged(nginx: &Nginx) -> Result<Vec<(String, String, u64)>> {
    let mut out = Vec::new();
    for line in nginx.access_log()?.lines() {
        let request = line.split('"').nth(1).context("no request in log line")?;
        let mut parts = request.split(' ');
        let (method, target, version) = (
            parts.next().context("method")?,
            parts.next().context("target")?,
            parts.next().context("version")?,
        );
        assert_eq!(version, "HTTP/2.0", "{line}");
        let status = line
            .split('"')
            .nth(2)
            .and_then(|s| s.split_whitespace().next())
            .context("status")?
            .parse()?;
        out.push((method.to_owned(), target.to_owned(), status));
    }
    out.sort();
    Ok(out)
}

/// The same triple from records (`url.query` is redacted, so only names are compared
/// where a test sends secrets).
fn recorded(records: &[Value]) -> Vec<(String, String, u64)> {
    let mut out: Vec<_> = records
        .iter()
        .map(|r| {
            let mut target = r.str_field("url.path").to_owned();
            if r.has("url.query") {
                target = format!("{target}?{}", r.str_field("url.query"));
            }
            (
                r.str_field("http.request.method").to_owned(),
                target,
                r.u64_field("http.response.status_code"),
            )
        })
        .collect();
    out.sort();
    out
}

fn assert_h2_record(r: &Value, nginx: &Nginx, scheme: &str) -> Result<()> {
    assert_eq!(r.str_field("network.protocol.version"), "2", "{r}");
    assert_eq!(r.str_field("url.scheme"), scheme, "{r}");
    assert_eq!(r.str_field("tracer.outcome"), "complete", "{r}");
    assert_eq!(r.str_field("server.address"), "127.0.0.1", "{r}");
    assert_eq!(r.str_field("process.executable.name"), "nginx", "{r}");
    assert!(!r.has("tracer.h2.state"), "{r}");
    let pid = u32::try_from(r.u64_field("process.pid"))?;
    assert!(nginx.worker_pids()?.contains(&pid), "{r}");
    Ok(())
}

#[test]
fn h2c_prior_knowledge_and_h2_over_tls_match_nginx_log() -> Result<()> {
    let (plain, tls) = (free_port(), free_port());
    let mut config = NginxConfig::new(plain);
    config.tls_port = Some(tls);
    config.http2 = true;
    config.h2c = true;
    config.access_log = true;
    let nginx = Nginx::start(config)?;
    let tracer = Tracer::start(&[plain, tls])?;
    // curl 7.88 fails reusing an h2c prior-knowledge connection ("Error in the HTTP2
    // framing layer"), so one URL per h2c connection here; h2load below and the TLS
    // connection reuse connections (and the HPACK dynamic table).
    for path in ["/one?page=1", "/two", "/204"] {
        curl(&["--http2-prior-knowledge", &url(plain, path)])?;
    }
    let body = curl(&[
        "-k",
        "--http2",
        &tls_url(tls, "/tls/a?q=x"),
        &tls_url(tls, "/tls/b"),
    ])?;
    assert_eq!(body, HELLO.repeat(2));
    let run = tracer.stop()?;

    assert_eq!(
        recorded(&run.records),
        logged(&nginx)?,
        "{:#?}",
        run.records
    );
    for r in &run.records {
        let scheme = if r.u64_field("server.port") == u64::from(tls) {
            "https"
        } else {
            "http"
        };
        assert_h2_record(r, &nginx, scheme)?;
        let expected = if r.str_field("url.path") == "/204" {
            0
        } else {
            HELLO.len() as u64
        };
        assert_eq!(r.u64_field("http.response.body.size"), expected, "{r}");
    }
    assert_eq!(run.summary_u64("http2_connections")?, 4, "{}", run.summary);
    assert_eq!(run.summary_u64("non_http_chunks")?, 0, "{}", run.summary);
    Ok(())
}

#[test]
fn bearer_token_and_api_key_over_h2_are_read_but_never_written() -> Result<()> {
    let plain = free_port();
    let mut config = NginxConfig::new(plain);
    config.h2c = true;
    config.access_log = true;
    let nginx = Nginx::start(config)?;
    let tracer = Tracer::start(&[plain])?;
    // An unsigned JWT (no issuer configured): the tracer fingerprints it, never writes it.
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJoMi1hbGljZSJ9.c2VjcmV0LXNpZ25hdHVyZS1oMg";
    let key = "h2-api-key-7d1e0c5b9a";
    let bearer = format!("Authorization: Bearer {jwt}");
    for path in [format!("/secret?api_key={key}"), "/again".to_owned()] {
        curl(&["--http2-prior-knowledge", "-H", &bearer, &url(plain, &path)])?;
    }
    let run = tracer.stop()?;
    assert_eq!(run.records.len(), 2, "{:#?}", run.records);
    assert_eq!(run.records.len(), logged(&nginx)?.len());
    for r in &run.records {
        assert_h2_record(r, &nginx, "http")?;
        // Read from the HPACK-decoded `authorization`, as for HTTP/1.
        assert_eq!(r.str_field("audit.auth.method"), "bearer", "{r}");
        assert_eq!(r.str_field("user.id"), "h2-alice", "{r}");
    }
    let secret = run
        .records
        .iter()
        .find(|r| r.str_field("url.path") == "/secret")
        .context("no /secret record")?;
    assert_eq!(
        secret.str_field("url.query"),
        "api_key=REDACTED",
        "{secret}"
    );
    for secret in [jwt, key, "c2VjcmV0LXNpZ25hdHVyZS1oMg"] {
        assert!(!run.stdout.contains(secret), "{secret} in records");
        assert!(!run.stderr.contains(secret), "{secret} in diagnostics");
    }
    Ok(())
}

#[test]
fn h2load_many_concurrent_streams_one_record_each() -> Result<()> {
    let plain = free_port();
    let mut config = NginxConfig::new(plain);
    config.h2c = true;
    config.access_log = true;
    let nginx = Nginx::start(config)?;
    let tracer = Tracer::start(&[plain])?;
    let out = Command::new("h2load")
        .args(["-n", "600", "-c", "4", "-m", "32"])
        .arg(url(plain, "/load?n=1"))
        .output()
        .context("running h2load (Debian package nghttp2-client)")?;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("600 succeeded"), "{report}");
    let logged_lines = nginx.settled_access_log_lines()?;
    tracer.wait_for_records(logged_lines, std::time::Duration::from_secs(30))?;
    let run = tracer.stop()?;
    assert_eq!(logged_lines, 600);
    assert_eq!(recorded(&run.records), logged(&nginx)?);
    for r in &run.records {
        assert_h2_record(r, &nginx, "http")?;
    }
    assert_eq!(run.summary_u64("http2_connections")?, 4, "{}", run.summary);
    assert_eq!(run.kernel_lost_total()?, 0, "{}", run.summary);
    let h2 = &run.summary["http2"];
    assert_eq!(h2["streams"], 600, "{}", run.summary);
    for counter in [
        "hpack_errors",
        "framing_lost",
        "orphan_frames",
        "malformed_frames",
    ] {
        assert_eq!(h2[counter], 0, "{counter}: {}", run.summary);
    }
    Ok(())
}

/// One HEADERS frame (END_STREAM | END_HEADERS) carrying `block`.
fn headers_frame(stream: u32, block: &[u8]) -> Vec<u8> {
    let mut f = (block.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([0x1, 0x5]);
    f.extend(stream.to_be_bytes());
    f.extend_from_slice(block);
    f
}

/// HPACK by hand: GET and http from the static table, then the path as a literal
/// without indexing (static name 4), then `tail`.
fn get_block(path: &str, tail: &[u8]) -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x04, path.len() as u8];
    b.extend_from_slice(path.as_bytes());
    b.extend_from_slice(tail);
    b
}

fn wait_logged(nginx: &Nginx, lines: usize) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while nginx.access_log_lines()? < lines {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "nginx logged fewer than {lines} requests"
        );
        std::thread::yield_now();
    }
    Ok(())
}

#[test]
fn a_connection_open_before_the_tracer_is_decoded_as_partial() -> Result<()> {
    let plain = free_port();
    let mut config = NginxConfig::new(plain);
    config.h2c = true;
    config.access_log = true;
    let nginx = Nginx::start(config)?;
    let mut conn = tests::clients::RawConn::connect(("127.0.0.1", plain))?;
    let authority = b"127.0.0.1";
    // Stream 1, before the tracer: `:authority` goes into the dynamic table (index 62).
    let mut tail = vec![0x41, authority.len() as u8];
    tail.extend_from_slice(authority);
    let mut first = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    first.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    first.extend(headers_frame(1, &get_block("/before", &tail)));
    conn.send(&first)?;
    wait_logged(&nginx, 1)?;

    let tracer = Tracer::start(&[plain])?;
    // Stream 3 says everything literally; stream 5 refers to the entry the tracer missed.
    let mut literal = vec![0x01, authority.len() as u8];
    literal.extend_from_slice(authority);
    let mut later = headers_frame(3, &get_block("/literal", &literal));
    later.extend(headers_frame(5, &get_block("/indexed", &[0xbe])));
    conn.send(&later)?;
    wait_logged(&nginx, 3)?;
    tracer.wait_for_records(2, std::time::Duration::from_secs(10))?;
    drop(conn);
    let run = tracer.stop()?;

    let rows: Vec<_> = run
        .records
        .iter()
        .map(|r| {
            (
                r.get("url.path").and_then(Value::as_str),
                r.u64_field("http.response.status_code"),
                r.str_field("tracer.outcome"),
                r.str_field("tracer.h2.state"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (Some("/literal"), 200, "complete", "partial"),
            // The unknown index fails the whole block: no path, never a wrong one.
            (None, 200, "request_unparsed", "partial"),
        ],
        "{:#?}",
        run.records
    );
    assert_eq!(
        run.summary["http2"]["partial_connections"], 1,
        "{}",
        run.summary
    );
    assert_eq!(run.summary["http2"]["hpack_errors"], 1, "{}", run.summary);
    Ok(())
}

/// `Upgrade: h2c` accepted (Apache with mod_http2) and ignored (nginx): either way every
/// request the server logged has exactly one record. Apache logs an upgraded request
/// twice, as its `101` and as HTTP/2 stream 1; the record is the request with its final
/// status, never a bare 101.
#[test]
fn h2c_upgrade_accepted_by_apache_and_ignored_by_nginx_match_their_logs() -> Result<()> {
    let (apache_port, nginx_port) = (free_port(), free_port());
    let apache = Apache::start(apache_port)?;
    let mut config = NginxConfig::new(nginx_port);
    config.access_log = true;
    let nginx = Nginx::start(config)?;
    let tracer = Tracer::start(&[apache_port, nginx_port])?;
    let basic = "Authorization: Basic aDJjLXVzZXI6aDJjLXBhc3N3b3Jk"; // h2c-user:h2c-password
    // One URL per connection: Apache 2.4 ends an upgraded connection with GOAWAY after
    // stream 1 when curl 7.88 reuses it (the next request is not served, so not logged).
    for path in ["/hello.txt", "/hello.txt?x=1", "/missing"] {
        curl(&["--http2", "-H", basic, &url(apache_port, path)])?;
        curl(&["--http2", "-H", basic, &url(nginx_port, path)])?;
    }
    let run = tracer.stop()?;

    let mut apache_logged = Vec::new();
    let mut upgrades = 0;
    for line in apache.access_log()?.lines() {
        let (pid, rest) = line.split_once(' ').context("pid")?;
        let (request, status) = rest.rsplit_once(' ').context("status")?;
        let mut parts = request.trim_matches('"').split(' ');
        let (method, target, version) = (
            parts.next().context("method")?,
            parts.next().context("target")?,
            parts.next().context("version")?,
        );
        if status == "101" {
            assert_eq!(version, "HTTP/1.1", "{line}");
            upgrades += 1;
            continue;
        }
        assert_eq!(version, "HTTP/2.0", "{line}");
        apache_logged.push((
            method.to_owned(),
            target.to_owned(),
            status.parse::<u64>()?,
            pid.parse::<u64>()?,
        ));
    }
    apache_logged.sort();
    assert_eq!(upgrades, 3, "each curl connection upgraded");
    let on = |port: u16| -> Vec<&Value> {
        run.records
            .iter()
            .filter(|r| r.u64_field("server.port") == u64::from(port))
            .collect()
    };
    let mut apache_recorded: Vec<_> = on(apache_port)
        .iter()
        .map(|r| {
            let mut target = r.str_field("url.path").to_owned();
            if r.has("url.query") {
                target = format!("{target}?{}", r.str_field("url.query"));
            }
            (
                r.str_field("http.request.method").to_owned(),
                target,
                r.u64_field("http.response.status_code"),
                r.u64_field("process.pid"),
            )
        })
        .collect();
    apache_recorded.sort();
    assert_eq!(apache_recorded, apache_logged, "{:#?}", run.records);
    let workers = apache.worker_pids()?;
    for r in on(apache_port) {
        assert_eq!(r.str_field("network.protocol.version"), "2", "{r}");
        assert_eq!(r.str_field("tracer.outcome"), "complete", "{r}");
        assert_eq!(r.str_field("user.name"), "h2c-user", "{r}");
        assert!(
            workers.contains(&u32::try_from(r.u64_field("process.pid"))?),
            "{r}"
        );
        if r.u64_field("http.response.status_code") == 200 {
            assert_eq!(
                r.u64_field("http.response.body.size"),
                APACHE_HELLO.len() as u64,
                "{r}"
            );
        }
    }

    // nginx answers the same upgrade requests as HTTP/1.1.
    let nginx_records = on(nginx_port);
    assert_eq!(
        nginx_records.len(),
        nginx.access_log_lines()?,
        "{:#?}",
        run.records
    );
    for r in nginx_records {
        assert_eq!(r.str_field("network.protocol.version"), "1.1", "{r}");
        assert_eq!(r.str_field("user.name"), "h2c-user", "{r}");
    }
    let h2 = &run.summary["http2"];
    assert_eq!(h2["upgrades"], 3, "{}", run.summary);
    assert_eq!(h2["streams"], 3, "{}", run.summary);
    assert_eq!(run.summary_u64("non_http_chunks")?, 0, "{}", run.summary);
    for secret in ["aDJjLXVzZXI6aDJjLXBhc3N3b3Jk", "h2c-password"] {
        assert!(!run.stdout.contains(secret), "{secret} in records");
        assert!(!run.stderr.contains(secret), "{secret} in diagnostics");
    }
    Ok(())
}
