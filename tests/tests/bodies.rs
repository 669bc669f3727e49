//! Request and response bodies: lengths, framings, and the requests after them.

use anyhow::Result;
use std::path::PathBuf;
use tempfile::TempDir;
use tests::clients::{RawConn, curl, get, url};
use tests::ports::free_port;
use tests::record::{RecordExt, log_lines, strings, u64s};
use tests::servers::{
    BIG_FILE_SIZE, HELLO, Moves, MovingServer, Nginx, NginxConfig, STATIC_PAGE, ScriptServer,
};
use tests::tracer::{Tracer, TracerRun};

/// A temp file of `len` bytes for curl's `--data-binary @file`.
fn payload(len: usize) -> Result<(TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("payload.bin");
    std::fs::write(&path, (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>())?;
    Ok((dir, path))
}

#[test]
fn content_length_body_then_next_request_on_the_connection() -> Result<()> {
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let tracer = Tracer::start(&[port])?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    // A body that looks like requests: a tracer that lost its place in the
    // body would print records for them.
    let fake = b"GET /inside-body HTTP/1.1\r\nHost: x\r\n\r\n";
    let body: Vec<u8> = fake.iter().copied().cycle().take(100_000).collect();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    conn.send(head.as_bytes())?;
    conn.send(&body)?;
    assert_eq!(conn.read_response("POST")?.body, b"100000\n");
    conn.send(&get("/second", "localhost"))?;
    assert_eq!(conn.read_response("GET")?.body, b"0\n");
    drop(conn);
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 2, "records: {:#?}", run.records);
    assert_eq!(strings(&run.records, "url.path"), ["/upload", "/second"]);
    assert_eq!(
        strings(&run.records, "http.request.method"),
        ["POST", "GET"]
    );
    let r = &run.records[0];
    assert_eq!(r.u64_field("http.request.body.size"), 100_000);
    assert_eq!(r.u64_field("http.response.body.size"), 7);
    assert_eq!(r.u64_field("http.response.status_code"), 200);
    assert_eq!(run.records[1].u64_field("http.response.body.size"), 2);
    Ok(())
}

#[test]
fn chunked_request_body_size_is_the_decoded_length() -> Result<()> {
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let (_dir, file) = payload(70_000)?;
    let tracer = Tracer::start(&[port])?;
    let data = format!("@{}", file.display());
    let body = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &data,
        &url(port, "/chunked-upload"),
    ])?;
    assert_eq!(body, "70000\n");
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("http.request.method"), "POST");
    assert_eq!(r.str_field("url.path"), "/chunked-upload");
    assert_eq!(r.u64_field("http.request.body.size"), 70_000);
    assert_eq!(r.u64_field("http.response.status_code"), 200);
    assert_eq!(r.u64_field("http.response.body.size"), 6);
    Ok(())
}

#[test]
fn expect_100_continue_yields_one_record_with_the_final_status() -> Result<()> {
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let (_dir, file) = payload(200_000)?;
    let tracer = Tracer::start(&[port])?;
    let data = format!("@{}", file.display());
    let body = curl(&[
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &data,
        &url(port, "/expect"),
    ])?;
    assert_eq!(body, "200000\n");
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("url.path"), "/expect");
    assert_eq!(r.u64_field("http.response.status_code"), 200);
    assert_eq!(r.u64_field("http.request.body.size"), 200_000);
    assert_eq!(r.u64_field("http.response.body.size"), 7);
    assert_eq!(r.str_field("tracer.outcome"), "complete");
    Ok(())
}

#[test]
fn head_response_has_no_body_and_the_next_request_parses() -> Result<()> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let tracer = Tracer::start(&[port])?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    conn.send(b"HEAD /big HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let head = conn.read_response("HEAD")?;
    assert_eq!(head.status, 200);
    assert!(head.header("content-length").is_some());
    conn.send(&get("/after-head", "localhost"))?;
    assert_eq!(conn.read_response("GET")?.body, HELLO.as_bytes());
    drop(conn);
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 2, "records: {:#?}", run.records);
    assert_eq!(
        strings(&run.records, "http.request.method"),
        ["HEAD", "GET"]
    );
    assert_eq!(strings(&run.records, "url.path"), ["/big", "/after-head"]);
    assert_eq!(u64s(&run.records, "http.response.status_code"), [200, 200]);
    assert_eq!(
        u64s(&run.records, "http.response.body.size"),
        [0, HELLO.len() as u64]
    );
    Ok(())
}

#[test]
fn status_204_and_304_have_no_body_and_the_next_request_parses() -> Result<()> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let tracer = Tracer::start(&[port])?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    conn.send(&get("/204", "localhost"))?;
    assert_eq!(conn.read_response("GET")?.status, 204);
    conn.send(&get("/static/page.txt", "localhost"))?;
    let page = conn.read_response("GET")?;
    assert_eq!(page.body, STATIC_PAGE.as_bytes());
    let etag = page.header("etag").expect("nginx sends an ETag").to_owned();
    conn.send(
        format!(
            "GET /static/page.txt HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: {etag}\r\n\r\n"
        )
        .as_bytes(),
    )?;
    assert_eq!(conn.read_response("GET")?.status, 304);
    conn.send(
        b"GET /static/page.txt HTTP/1.1\r\nHost: localhost\r\n\
          If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n\r\n",
    )?;
    assert_eq!(conn.read_response("GET")?.status, 304);
    conn.send(&get("/after", "localhost"))?;
    assert_eq!(conn.read_response("GET")?.status, 200);
    drop(conn);
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 5, "records: {:#?}", run.records);
    assert_eq!(
        u64s(&run.records, "http.response.status_code"),
        [204, 200, 304, 304, 200]
    );
    let page_len = STATIC_PAGE.len() as u64;
    let hello = HELLO.len() as u64;
    assert_eq!(
        u64s(&run.records, "http.response.body.size"),
        [0, page_len, 0, 0, hello]
    );
    assert_eq!(run.records[4].str_field("url.path"), "/after");
    Ok(())
}

#[test]
fn chunked_response_size_is_the_decoded_length() -> Result<()> {
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let tracer = Tracer::start(&[port])?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    conn.send(&get("/chunked?sizes=1000,2000,33", "localhost"))?;
    let chunked = conn.read_response("GET")?;
    assert_eq!(chunked.header("transfer-encoding"), Some("chunked"));
    assert_eq!(chunked.body.len(), 3033);
    conn.send(&get("/after-chunked", "localhost"))?;
    assert_eq!(conn.read_response("GET")?.body, b"0\n");
    drop(conn);
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 2, "records: {:#?}", run.records);
    assert_eq!(
        strings(&run.records, "url.path"),
        ["/chunked", "/after-chunked"]
    );
    assert_eq!(u64s(&run.records, "http.response.body.size"), [3033, 2]);
    Ok(())
}

#[test]
fn close_delimited_http10_response_size() -> Result<()> {
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let tracer = Tracer::start(&[port])?;
    let body = curl(&["--http1.0", &url(port, "/close?size=5000")])?;
    assert_eq!(body.len(), 5000);
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("url.path"), "/close");
    assert_eq!(r.str_field("network.protocol.version"), "1.0");
    assert_eq!(r.u64_field("http.response.status_code"), 200);
    assert_eq!(r.u64_field("http.response.body.size"), 5000);
    assert_eq!(r.str_field("tracer.outcome"), "complete");
    Ok(())
}

/// nginx with `sendfile off` writes a file with writev, 32 KiB at a time, as a proxy or
/// an application server writes its bodies: once a response head has declared the
/// length, the kernel reports the writes inside the body by length only. The records
/// still match nginx's own log, a HEAD response (which declares a length it does not
/// send) does not make the kernel skip the responses after it, pipelined or not, and
/// the parser agrees with every skip.
#[test]
fn long_response_bodies_are_counted_without_copying_and_match_nginx_log() -> Result<()> {
    let port = free_port();
    let mut config = NginxConfig::new(port);
    config.access_log = true;
    config.extra_locations = "        location = /big.bin { sendfile off; }\n".to_owned();
    let nginx = Nginx::start(config)?;
    let tracer = Tracer::start(&[port])?;
    let big = BIG_FILE_SIZE as u64;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    let mut expected = Vec::new();
    for (method, path) in [
        ("GET", "/big.bin"),
        ("GET", "/big.bin"),
        ("HEAD", "/big.bin"),
        ("GET", "/small"),
        ("GET", "/big.bin"),
    ] {
        conn.send(format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())?;
        let response = conn.read_response(method)?;
        assert_eq!(response.status, 200);
        expected.push((method, path, response.body.len() as u64));
    }
    // Pipelined: the HEAD response and the next response's head may share a write.
    conn.send(
        b"HEAD /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n\
          HEAD /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )?;
    for (method, path) in [
        ("HEAD", "/big.bin"),
        ("GET", "/small"),
        ("GET", "/big.bin"),
        ("HEAD", "/big.bin"),
        ("GET", "/big.bin"),
    ] {
        let response = conn.read_response(method)?;
        assert_eq!(response.status, 200);
        expected.push((method, path, response.body.len() as u64));
    }
    drop(conn);
    let run = tracer.stop()?;

    let got: Vec<(String, String, u64)> = run
        .records
        .iter()
        .map(|r| {
            (
                r.str_field("http.request.method").to_owned(),
                r.str_field("url.path").to_owned(),
                r.u64_field("http.response.body.size"),
            )
        })
        .collect();
    let want: Vec<(String, String, u64)> = expected
        .iter()
        .map(|&(m, p, n)| (m.to_owned(), p.to_owned(), n))
        .collect();
    assert_eq!(got, want);
    assert_eq!(u64s(&run.records, "http.response.status_code"), [200; 10]);
    assert_eq!(want.iter().filter(|w| w.2 == big).count(), 5);
    // nginx's own log, line by line: `"GET /big.bin HTTP/1.1" 200 131072`.
    let log = nginx.access_log()?;
    let logged: Vec<(String, String, u64)> = log
        .lines()
        .map(|line| {
            let (method, path) = logged_request(line);
            let after = line.split('"').nth(2).unwrap_or_default();
            let sent = after
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX);
            (method, path, sent)
        })
        .collect();
    assert_eq!(logged, want, "nginx's log:\n{log}");
    assert!(
        run.summary_u64("response_body_bytes_uncopied")? >= 4 * big / 2,
        "summary: {}",
        run.summary
    );
    assert_skips_agreed(&run)
}

/// The method and path of a line of nginx's log (`... "GET /big.bin HTTP/1.1" 200 ...`).
fn logged_request(line: &str) -> (String, String) {
    let request = line.split('"').nth(1).unwrap_or_default();
    let mut parts = request.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    (method, parts.next().unwrap_or_default().to_owned())
}

/// The parser agreed with every body byte the kernel left uncopied, and nothing was
/// lost.
fn assert_skips_agreed(run: &TracerRun) -> Result<()> {
    assert_eq!(run.summary_u64("body_skip_mismatches")?, 0);
    assert_eq!(run.summary_u64("desyncs")?, 0);
    assert_eq!(run.summary_u64("kernel_lost_total")?, 0);
    Ok(())
}

/// Uploads on one keep-alive connection: while every request before them was an upload
/// whose body the kernel read the length of, their bodies are counted without copying
/// (nginx reads a discarded body in pieces of at most what is left of it, so each
/// upload's last read ends where the next request starts). A GET's head says nothing of
/// what follows it, so after it the kernel no longer skips, and a chunked upload whose
/// data looks like an upload head hides nothing. Every request is in nginx's own log,
/// and the requests after each body parse: the skipped bytes were counted exactly.
///
/// nginx's `return` answers before it has read (and discarded) all of a body that is
/// still arriving, and a record ends with its response: a body size may be what nginx
/// had read by then (docs/design.md, "Known limits").
#[test]
fn upload_bodies_are_counted_without_copying_and_match_nginx_log() -> Result<()> {
    const BODY: usize = 100_000;
    let port = free_port();
    let mut config = NginxConfig::new(port);
    config.access_log = true;
    let nginx = Nginx::start(config)?;
    let tracer = Tracer::start(&[port])?;
    let upload = |path: &str| {
        let mut bytes = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {BODY}\r\n\r\n"
        )
        .into_bytes();
        bytes.extend((0..BODY).map(|i| (i % 251) as u8));
        bytes
    };
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    let mut expected = Vec::new();
    for path in ["/up/1", "/up/2", "/up/3"] {
        conn.send(&upload(path))?;
        assert_eq!(conn.read_response("POST")?.status, 200);
        expected.push(("POST", path.to_owned(), BODY as u64));
    }
    conn.send(&get("/after", "localhost"))?;
    assert_eq!(conn.read_response("GET")?.status, 200);
    expected.push(("GET", "/after".to_owned(), 0));
    // Chunk data that starts like an upload of a body long enough to hide the request
    // sent after it.
    let hidden = upload("/hidden");
    let mut chunked =
        b"POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked.extend_from_slice(format!("{:x}\r\n", 200).as_bytes());
    chunked.extend_from_slice(&hidden[..200]);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    conn.send(&chunked)?;
    assert_eq!(conn.read_response("POST")?.status, 200);
    expected.push(("POST", "/chunked".to_owned(), 200));
    conn.send(&upload("/up/4"))?;
    assert_eq!(conn.read_response("POST")?.status, 200);
    expected.push(("POST", "/up/4".to_owned(), BODY as u64));
    drop(conn);
    let run = tracer.stop()?;

    let got: Vec<(String, String)> = run
        .records
        .iter()
        .map(|r| {
            (
                r.str_field("http.request.method").to_owned(),
                r.str_field("url.path").to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), p.clone()))
        .collect();
    assert_eq!(got, want);
    for (record, (_, _, size)) in run.records.iter().zip(&expected) {
        let recorded = record.u64_field("http.request.body.size");
        if *size == BODY as u64 {
            assert!((1..=*size).contains(&recorded), "{record}");
        } else {
            assert_eq!(recorded, *size, "{record}");
        }
    }
    assert_eq!(u64s(&run.records, "http.response.status_code"), [200; 6]);
    // nginx's own log, line by line: `"POST /up/1 HTTP/1.1" 200 ...`.
    let log = nginx.access_log()?;
    let logged: Vec<(String, String)> = log.lines().map(logged_request).collect();
    assert_eq!(logged, want, "nginx's log:\n{log}");
    // The first three bodies, but for what nginx read with their heads; none of the
    // last upload's, read after the GET.
    let uncopied = run.summary_u64("request_body_bytes_uncopied")?;
    assert!(
        (2 * BODY as u64..=3 * BODY as u64).contains(&uncopied),
        "summary: {}",
        run.summary
    );
    assert_skips_agreed(&run)
}

/// A server that moves every body with splice (a proxy's way), on one keep-alive
/// connection: the bodies never pass through its memory, so the kernel counts them
/// without copying, and each record agrees with the server's own log on the method, the
/// path and both body sizes. A body made of request heads is never parsed as requests.
#[test]
fn spliced_bodies_are_counted_and_match_the_servers_log() -> Result<()> {
    bodies_match_the_servers_log(Moves::Splice)
}

/// A server that reads with preadv2 and writes with pwritev2 (Python's `os.preadv` and
/// `os.pwritev`): before the twenty-third session neither was captured, and such a
/// server's requests were missing without a word.
#[test]
fn preadv2_and_pwritev2_are_captured_and_match_the_servers_log() -> Result<()> {
    bodies_match_the_servers_log(Moves::VectoredWithFlags)
}

/// Requests with and without bodies on one keep-alive connection to a `MovingServer`:
/// each record agrees with its log on the method, the path and both body sizes.
fn bodies_match_the_servers_log(moves: Moves) -> Result<()> {
    let port = free_port();
    let server = MovingServer::start(port, moves)?;
    let tracer = Tracer::start(&[port])?;
    let fake = b"GET /inside-body HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    let requests: [(&str, &str, usize); 4] = [
        ("POST", "/bytes/1000", 100_000),
        ("GET", "/bytes/70000", 0),
        ("PUT", "/bytes/0", 5),
        ("GET", "/bytes/3", 0),
    ];
    for (method, path, size) in requests {
        let mut bytes = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n").into_bytes();
        if size > 0 {
            bytes.extend(format!("Content-Length: {size}\r\n").bytes());
        }
        bytes.extend(b"\r\n");
        bytes.extend(fake.iter().copied().cycle().take(size));
        conn.send(&bytes)?;
        let response = conn.read_response(method)?;
        assert_eq!(response.status, 200);
        let answered: usize = path["/bytes/".len()..].parse()?;
        assert_eq!(response.body.len(), answered);
    }
    drop(conn);
    let run = tracer.stop()?;

    let recorded = log_lines(
        &run.records,
        &[
            "http.request.method",
            "url.path",
            "http.response.status_code",
            "http.request.body.size",
            "http.response.body.size",
        ],
    );
    let logged = server.access_log(requests.len())?;
    assert_eq!(logged.len(), requests.len(), "{logged:?}");
    assert_eq!(recorded, logged, "records: {:#?}", run.records);
    assert_eq!(run.summary_u64("desyncs")?, 0);
    assert_eq!(run.summary_u64("kernel_lost_total")?, 0);
    Ok(())
}
