//! Crafted requests against nginx 1.22, Apache httpd 2.4 and Node.js's http server
//! (llhttp), whose access logs are ground truth: each case runs on its own connection, then the records of that connection are
//! compared request by request with the lines the server logged for it. No request the
//! server logged may lack a record (hiding), and no record may claim a method, path or
//! user the server did not log for that request (forgery). The tracer frames requests as
//! nginx does; behind Apache and Node, which frame some of them differently, the same
//! must hold.

use std::time::Duration;

use anyhow::{Context, Result};
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use serde_json::Value;
use tests::clients::RawConn;
use tests::ports::free_port;
use tests::record::RecordExt;
use tests::servers::{Apache, Nginx, NginxConfig, NodeHttpServer};
use tests::tracer::Tracer;

/// One connection's bytes, sent in parts with a pause between them, then closed.
struct Case {
    name: &'static str,
    parts: Vec<Vec<u8>>,
    /// Closed with a TCP reset instead of a FIN.
    reset: bool,
}

fn case(name: &'static str, parts: &[&[u8]]) -> Case {
    Case {
        name,
        parts: parts.iter().map(|p| p.to_vec()).collect(),
        reset: false,
    }
}

fn reset(name: &'static str, parts: &[&[u8]]) -> Case {
    Case {
        reset: true,
        ..case(name, parts)
    }
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "bare LF in a chunk extension smuggles a forged request",
            &[
                b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                  a;x\nAAAA\r\nBBBB\r\n63\r\n\r\n0\r\n\r\nGET /index.html HTTP/1.1\r\nHost: a\r\n\
                  Authorization: Basic YWxpY2U6eA==\r\nContent-Length: 91\r\n\r\n\r\n0\r\n\r\n",
                b"GET /admin/export-all-users HTTP/1.1\r\nHost: a\r\n\
                  Authorization: Basic bWFsbG9yeTp4\r\n\r\n",
            ],
        ),
        case(
            "chunk size with 20 digits",
            &[b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                00000000000000000005\r\nhello\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n"],
        ),
        case(
            "0 LF LF and odd trailers",
            &[b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                5\r\nhello\r\n0\r\nX@y: \x01\r\nno colon\r\n\r\nGET /t HTTP/1.1\r\nHost: a\r\n\r\n"],
        ),
        case(
            "bare LF last chunk",
            &[b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n\
                GET /lf HTTP/1.1\r\nHost: a\r\n\r\n"],
        ),
        case(
            "pipelined requests after Connection: close",
            &[b"GET /closing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n\
                GET /admin/after-close HTTP/1.1\r\nHost: a\r\n\r\nGET /admin/cut HTTP/1.1\r\nHo"],
        ),
        case(
            "pipelined requests after HTTP/1.0 without keep-alive",
            &[b"GET /ten HTTP/1.0\r\nHost: a\r\n\r\nGET /admin/after-ten HTTP/1.1\r\nHost: a\r\n\r\n"],
        ),
        case(
            "HTTP/1.2 and HTTP/1.10",
            &[b"GET /v2 HTTP/1.2\r\nHost: a\r\n\r\nGET /v10 HTTP/1.10\r\nHost: a\r\n\r\n"],
        ),
        case(
            "extra spaces in the request line",
            &[b"GET   /spaces   HTTP/1.1\r\nHost: a\r\n\r\n"],
        ),
        case(
            "odd header names, no colon, control bytes in a value",
            &[b"GET /hdr HTTP/1.1\r\nHost: a\r\nX@y: 1\r\nX\xffy: 2\r\nNoColon\r\n\
                X-Ctl: a\x01b\r\nAuthorization: Basic YWxpY2U6eA==\r\n\r\n"],
        ),
        case(
            "raw 0xff in the path",
            &[b"GET /a\xffb HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n"],
        ),
        case("HTTP/0.9", &[b"GET /nine\r\nGET /forged HTTP/1.1\r\nHost: a\r\n\r\n"]),
        case(
            "bare LF head",
            &[b"GET /lfhead HTTP/1.1\nHost: a\n\nGET /lfhead2 HTTP/1.1\nHost: a\n\n"],
        ),
        case(
            "CL and TE together",
            &[b"POST /both HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\
                Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: a\r\n\r\n"],
        ),
        case(
            "duplicate Transfer-Encoding",
            &[b"POST /dup HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
                Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
        ),
        case(
            "junk request",
            &[b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01junk\r\n\r\n"],
        ),
        case(
            "HTTP/2.0 request line",
            &[b"GET /two HTTP/2.0\r\nHost: a\r\n\r\n"],
        ),
        case(
            "refused websocket upgrade then a request",
            &[
                b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                b"GET /after-upgrade HTTP/1.1\r\nHost: a\r\nAuthorization: Basic bWFsbG9yeTp4\r\n\r\n",
            ],
        ),
        // The server logs a head a close or reset cut off (nginx as a 400 it never
        // sent), with the user of a whole Authorization line.
        case(
            "head cut off by a close",
            &[b"GET /cut/fin HTTP/1.1\r\nHost: a\r\nAuthorization: Basic YWxpY2U6eA==\r\n"],
        ),
        reset(
            "head cut off by a reset",
            &[b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /cut/rst HTTP/1.1\r\nHost: a\r\n"],
        ),
        case("request line cut off by a close", &[b"GET /cut/in-the-li"]),
        case(
            "refused CONNECT then a request",
            &[
                b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
                b"GET /after-connect HTTP/1.1\r\nHost: a\r\n\r\n",
            ],
        ),
    ]
}

/// The server whose access log is ground truth.
struct Witness<'a> {
    log: &'a dyn Fn() -> Result<String>,
    parse: fn(&str) -> Result<Logged>,
    /// It answers 400 at a header line nginx ignores (no colon, odd bytes in a name).
    rejects_at_bad_header_lines: bool,
}

/// What the server logged for one request.
struct Logged {
    request: String,
    status: u64,
    user: Option<String>,
}

/// One line of nginx's combined log: `$remote_addr - $remote_user [..] "$request" $status ..`.
fn parse_log(line: &str) -> Result<Logged> {
    let user = line.split(' ').nth(2).context("user")?;
    let start = line.find('"').context("request")?;
    let end = start + 1 + line[start + 1..].find("\" ").context("request end")?;
    let status = line[end + 2..]
        .split(' ')
        .next()
        .context("status")?
        .parse()?;
    Ok(Logged {
        request: line[start + 1..end].to_owned(),
        status,
        user: (user != "-").then(|| user.to_owned()),
    })
}

/// Apache's line in [`APACHE_LOG`]: `"%r" %>s %{Authorization}i`. Without an auth module
/// Apache logs no user, so the Basic user is read from the header it received.
fn parse_apache_log(line: &str) -> Result<Logged> {
    let start = line.find('"').context("request")?;
    let end = start + 1 + line[start + 1..].find("\" ").context("request end")?;
    let mut rest = line[end + 2..].splitn(2, ' ');
    let status = rest.next().context("status")?.parse()?;
    let user = rest
        .next()
        .and_then(|auth| auth.strip_prefix("Basic "))
        .and_then(|b64| BASE64.decode(b64.trim()).ok())
        .and_then(|pair| {
            let text = String::from_utf8(pair).ok()?;
            text.split_once(':').map(|(user, _)| user.to_owned())
        });
    Ok(Logged {
        request: line[start + 1..end].to_owned(),
        status,
        user,
    })
}

/// The test's own Apache log format; the header is only ever in the test's temp dir.
const APACHE_LOG: &str = r#"\"%r\" %>s %{Authorization}i"#;

/// Records of the connection from `port`, in request order.
fn records_of(records: &[Value], port: u16) -> Vec<&Value> {
    let mut of: Vec<&Value> = records
        .iter()
        .filter(|r| r["network.peer.port"].as_u64() == Some(u64::from(port)))
        .collect();
    of.sort_by(|a, b| a.str_field("timestamp").cmp(b.str_field("timestamp")));
    of
}

/// nginx escapes bytes outside printable ASCII as `\xHH`: compare up to the first one.
fn same_path(record: &str, logged: &str) -> bool {
    match logged.find("\\x") {
        Some(i) => record.starts_with(&logged[..i]),
        None => record == logged,
    }
}

#[test]
fn crafted_requests_neither_hide_nor_forge_behind_nginx() -> Result<()> {
    let port = free_port();
    let mut config = NginxConfig::new(port);
    config.access_log = true;
    config.workers = 1;
    let nginx = Nginx::start(config)?;
    let failures = crafted_requests(
        port,
        &Witness {
            log: &|| nginx.access_log(),
            parse: parse_log,
            rejects_at_bad_header_lines: false,
        },
    )?;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

#[test]
fn crafted_requests_neither_hide_nor_forge_behind_apache() -> Result<()> {
    let port = free_port();
    let apache = Apache::start_logging(port, APACHE_LOG)?;
    let failures = crafted_requests(
        port,
        &Witness {
            log: &|| apache.access_log(),
            parse: parse_apache_log,
            rejects_at_bad_header_lines: true,
        },
    )?;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

#[test]
fn crafted_requests_neither_hide_nor_forge_behind_node() -> Result<()> {
    let port = free_port();
    let node = NodeHttpServer::start(port)?;
    let failures = crafted_requests(
        port,
        &Witness {
            log: &|| node.access_log(),
            parse: parse_apache_log,
            rejects_at_bad_header_lines: true,
        },
    )?;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

/// Sends every case on its own connection to the server on `port` under a tracer, and
/// compares the records with what the server logged: the failures.
fn crafted_requests(port: u16, server: &Witness<'_>) -> Result<Vec<String>> {
    let log = server.log;
    let tracer = Tracer::start(&[port])?;
    let mut runs = Vec::new();
    for case in cases() {
        let before = log()?.lines().count();
        let mut conn = RawConn::connect(("127.0.0.1", port))?;
        let peer = conn.local_port()?;
        for part in &case.parts {
            // nginx may already have closed after an error; what it logged still counts.
            // Each part is read on its own, as a separate segment would be.
            let _ = conn.send(part);
            conn.wait_until_read()?;
        }
        if case.reset {
            conn.reset()?;
        } else {
            // A client takes its answers before it closes. Closing as soon as the
            // server had read the last bytes raced its answers: once (CI, Node.js on a
            // loaded machine) the server logged a 200 for a pipelined request whose
            // answer the tracer never saw written, the socket closing meanwhile.
            conn.read_until_quiet(Duration::from_millis(150))?;
            drop(conn);
        }
        std::thread::sleep(Duration::from_millis(200));
        runs.push((case.name, peer, before));
    }
    std::thread::sleep(Duration::from_millis(300));
    let run = tracer.stop()?;
    let log = log()?;
    let lines: Vec<&str> = log.lines().collect();

    let mut failures = Vec::new();
    for (i, &(name, peer, before)) in runs.iter().enumerate() {
        let after = runs.get(i + 1).map_or(lines.len(), |r| r.2);
        let logged: Vec<Logged> = lines[before..after]
            .iter()
            .map(|l| (server.parse)(l))
            .collect::<Result<_>>()?;
        let records = records_of(&run.records, peer);
        // A head cut off before it ended has no response, but the server logged it.
        let cut_off = |r: &Value| {
            r.str_field("tracer.outcome") == "connection_closed" && r.has("tracer.request.line")
        };
        let answered: Vec<&&Value> = records
            .iter()
            .filter(|r| {
                r.has("http.response.status_code")
                    || r.str_field("tracer.outcome") == "response_unparsed"
                    || cut_off(r)
            })
            .collect();
        if answered.len() < logged.len() {
            failures.push(format!(
                "{name}: the server logged {} requests, {} answered records\n{lines:#?}\n{records:#?}",
                logged.len(),
                answered.len(),
                lines = &lines[before..after],
            ));
            continue;
        }
        for (record, logged) in answered.iter().zip(&logged) {
            if record.has("http.response.status_code")
                && record.u64_field("http.response.status_code") != logged.status
            {
                failures.push(format!(
                    "{name}: status differs: {record} vs {}",
                    logged.status
                ));
            }
            if cut_off(record) && !(400..500).contains(&logged.status) {
                failures.push(format!(
                    "{name}: a cut-off head, but the server logged {}",
                    logged.status
                ));
            }
            // Nothing parsed to claim a method or path with.
            if record.str_field("tracer.outcome") == "request_unparsed"
                || record.str_field("http.request.method") == "_OTHER"
            {
                continue;
            }
            let mut parts = logged.request.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = path.split('?').next().unwrap_or("");
            // A CONNECT target is an authority, not a path.
            let claimed = (
                record.str_field("http.request.method"),
                record.get("url.path").and_then(Value::as_str).unwrap_or(""),
            );
            let authority = !path.starts_with('/') && claimed.1.is_empty();
            if claimed.0 != method || !(authority || same_path(claimed.1, path)) {
                failures.push(format!(
                    "{name}: forged {claimed:?}, the server logged {:?}",
                    logged.request
                ));
            }
            let user = record.get("user.name").and_then(Value::as_str);
            // A server that rejects a head at its first bad header line (Apache) never
            // reads the Authorization header after it. The record keeps the user the
            // client claimed, beside the 400 that says nothing was granted.
            let unread = server.rejects_at_bad_header_lines && logged.status == 400;
            if user.is_some() && user != logged.user.as_deref() && !unread {
                failures.push(format!(
                    "{name}: forged user {user:?}, the server logged {:?}",
                    logged.user
                ));
            }
        }
    }
    Ok(failures)
}

/// A connection opened before the tracer started is first seen mid-stream: bytes starting
/// like a TLS record there are not its first bytes, so they must not switch it to TLS
/// (which would hide every later request on it).
#[test]
fn a_connection_seen_mid_stream_is_not_switched_to_tls() -> Result<()> {
    let port = free_port();
    let mut config = NginxConfig::new(port);
    config.access_log = true;
    config.workers = 1;
    let nginx = Nginx::start(config)?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    conn.send(b"GET /before HTTP/1.1\r\nHost: a\r\n\r\n")?;
    assert_eq!(conn.read_response("GET")?.status, 200);
    let tracer = Tracer::start(&[port])?;
    conn.send(b"\x16\x03\x01\x00\xa5\x01junk\r\n\r\n")?;
    conn.wait_until_read()?;
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    let run = tracer.stop()?;

    let log = nginx.access_log()?;
    let last = parse_log(log.lines().last().context("log")?)?;
    assert_eq!(last.status, 400, "{log}");
    assert_eq!(run.records.len(), 1, "{:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("tracer.outcome"), "request_unparsed", "{r}");
    assert_eq!(r.u64_field("http.response.status_code"), 400);
    assert_eq!(r.str_field("url.scheme"), "http");
    Ok(())
}

/// Requests pipelined after one that closes the connection (`Connection: close`, or
/// HTTP/1.0 without keep-alive) reach nginx in the same read, and it drops them: only
/// the closing request is in its log. They make no record, not even an unanswered one,
/// so a client cannot put requests to paths it never got served into the trail; they
/// are counted. A keep-alive HTTP/1.0 request is followed as before.
#[test]
fn requests_pipelined_after_a_closing_one_are_counted_not_recorded() -> Result<()> {
    let port = free_port();
    let mut config = NginxConfig::new(port);
    config.access_log = true;
    let nginx = Nginx::start(config)?;
    let tracer = Tracer::start(&[port])?;
    let connections: [&[u8]; 3] = [
        b"GET /closing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n\
          GET /admin/after-close HTTP/1.1\r\nHost: a\r\n\r\nGET /admin/cut HTTP/1.1\r\nHo",
        b"GET /ten HTTP/1.0\r\nHost: a\r\n\r\nGET /admin/after-ten HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /kept HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n\
          GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ];
    for bytes in connections {
        let mut conn = RawConn::connect(("127.0.0.1", port))?;
        conn.send(bytes)?;
        conn.read_to_end()?;
    }
    let run = tracer.stop()?;

    let mut logged: Vec<String> = nginx
        .access_log()?
        .lines()
        .map(|line| parse_log(line).map(|l| l.request))
        .collect::<Result<_>>()?;
    // nginx logs a connection it closes with unread bytes after its lingering close,
    // which can end after the next connection's request was logged by another worker.
    logged.sort();
    assert_eq!(
        logged,
        [
            "GET /closing HTTP/1.1",
            "GET /kept HTTP/1.0",
            "GET /next HTTP/1.1",
            "GET /ten HTTP/1.0",
        ]
    );
    let recorded: Vec<&str> = run
        .records
        .iter()
        .map(|r| r.str_field("url.path"))
        .collect();
    assert_eq!(
        recorded,
        ["/closing", "/ten", "/kept", "/next"],
        "{:#?}",
        run.records
    );
    assert_eq!(
        run.summary_u64("requests_after_close")?,
        3,
        "{}",
        run.summary
    );
    assert_eq!(run.loss_count("requests_after_close"), 3);
    Ok(())
}
