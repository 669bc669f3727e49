//! Several requests on one connection, however the bytes arrive.

use anyhow::Result;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tests::clients::{RawConn, get};
use tests::ports::free_port;
use tests::record::{RecordExt, strings, u64s};
use tests::servers::{BIG_FILE_SIZE, HELLO, Nginx, NginxConfig, PyHttpServer};
use tests::tracer::Tracer;

#[test]
fn keep_alive_connection_yields_one_record_per_request_in_order() -> Result<()> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let tracer = Tracer::start(&[port])?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    let client_port = conn.local_port()?;
    let paths: Vec<String> = (1..=5).map(|i| format!("/ka/{i}")).collect();
    for path in &paths {
        conn.send(&get(path, "localhost"))?;
        assert_eq!(conn.read_response("GET")?.status, 200);
    }
    drop(conn);
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 5, "records: {:#?}", run.records);
    assert_eq!(strings(&run.records, "url.path"), paths);
    let connection = run.records[0].u64_field("tracer.connection.id");
    for r in &run.records {
        assert_eq!(r.u64_field("tracer.connection.id"), connection, "{r}");
        assert_eq!(r.u64_field("network.peer.port"), u64::from(client_port));
        assert_eq!(r.u64_field("http.response.status_code"), 200);
        assert_eq!(r.u64_field("http.response.body.size"), HELLO.len() as u64);
        assert_eq!(r.str_field("tracer.outcome"), "complete");
    }
    let timestamps: Vec<_> = run
        .records
        .iter()
        .map(|r| r.time_field("timestamp"))
        .collect();
    assert!(
        timestamps.is_sorted(),
        "timestamps out of order: {timestamps:?}"
    );
    Ok(())
}

#[test]
fn pipelined_requests_to_python_are_recorded_in_order() -> Result<()> {
    let port = free_port();
    let _server = PyHttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), port, "HTTP/1.1")?;
    let tracer = Tracer::start(&[port])?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    // No 404 here: http.server closes the connection after any error status.
    let mut burst = get("/hello.txt", "localhost");
    burst.extend(
        b"GET /hello.txt?cached=1 HTTP/1.1\r\nHost: localhost\r\n\
          If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n\r\n",
    );
    burst.extend(get("/hello.txt?again=1", "localhost"));
    conn.send(&burst)?;
    let statuses: Vec<u16> = (0..3)
        .map(|_| conn.read_response("GET").map(|r| r.status))
        .collect::<Result<_>>()?;
    assert_eq!(statuses, [200, 304, 200]);
    drop(conn);
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 3, "records: {:#?}", run.records);
    assert_eq!(strings(&run.records, "url.path"), ["/hello.txt"; 3]);
    assert_eq!(
        u64s(&run.records, "http.response.status_code"),
        [200, 304, 200]
    );
    assert_eq!(u64s(&run.records, "http.response.body.size"), [18, 0, 18]);
    assert!(!run.records[0].has("url.query"), "{}", run.records[0]);
    assert_eq!(run.records[1].str_field("url.query"), "cached=1");
    assert_eq!(run.records[2].str_field("url.query"), "again=1");
    Ok(())
}

#[test]
fn pipelined_requests_to_nginx_keep_their_body_sizes() -> Result<()> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let tracer = Tracer::start(&[port])?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    let paths = ["/first", "/204", "/big", "/last"];
    let burst: Vec<u8> = paths.iter().flat_map(|p| get(p, "localhost")).collect();
    conn.send(&burst)?;
    for _ in paths {
        conn.read_response("GET")?;
    }
    drop(conn);
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 4, "records: {:#?}", run.records);
    assert_eq!(strings(&run.records, "url.path"), paths);
    assert_eq!(
        u64s(&run.records, "http.response.status_code"),
        [200, 204, 200, 200]
    );
    let hello = HELLO.len() as u64;
    assert_eq!(
        u64s(&run.records, "http.response.body.size"),
        [hello, 0, BIG_FILE_SIZE as u64, hello]
    );
    Ok(())
}

#[test]
fn connection_opened_before_the_tracer_is_traced_afterwards() -> Result<()> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    conn.send(&get("/before-tracer", "localhost"))?;
    assert_eq!(conn.read_response("GET")?.status, 200);
    let tracer = Tracer::start(&[port])?;
    conn.send(&get("/after-ready", "localhost"))?;
    assert_eq!(conn.read_response("GET")?.status, 200);
    drop(conn);
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("url.path"), "/after-ready");
    assert_eq!(r.str_field("http.request.method"), "GET");
    assert_eq!(r.u64_field("http.response.status_code"), 200);
    assert_eq!(r.u64_field("http.response.body.size"), HELLO.len() as u64);
    Ok(())
}

#[test]
fn request_head_written_a_few_bytes_at_a_time() -> Result<()> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let tracer = Tracer::start(&[port])?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    let request = b"GET /split/head?piece=wise HTTP/1.1\r\nHost: split.example\r\n\
                    User-Agent: dribbler/1.0\r\nX-Request-Id: split-1\r\n\r\n";
    conn.send_split(request, 10, Duration::from_millis(3))?;
    assert_eq!(conn.read_response("GET")?.status, 200);
    drop(conn);
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("url.path"), "/split/head");
    assert_eq!(r.str_field("url.query"), "piece=wise");
    assert_eq!(r.str_field("server.address"), "split.example");
    assert_eq!(r.str_field("user_agent.original"), "dribbler/1.0");
    assert_eq!(r.str_field("http.request.header.x-request-id"), "split-1");
    assert_eq!(r.u64_field("http.response.status_code"), 200);
    Ok(())
}

/// A head of `size` bytes in one write, which nginx (64 KiB header buffer) takes with one
/// recv(): the kernel must copy all of it for the request to be recorded.
fn large_head_is_recorded(size: usize) -> Result<()> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let tracer = Tracer::start(&[port])?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    let prefix =
        "GET /large-header HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: big-head\r\nX-Big: ";
    let big = "v".repeat(size - prefix.len() - 4);
    let request = format!("{prefix}{big}\r\n\r\n");
    assert_eq!(request.len(), size);
    conn.send(request.as_bytes())?;
    let status = conn.read_response("GET")?.status;
    conn.send(&get("/next", "localhost"))?;
    assert_eq!(conn.read_response("GET")?.status, 200);
    drop(conn);
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 2, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("url.path"), "/large-header");
    assert_eq!(r.u64_field("http.response.status_code"), u64::from(status));
    assert_eq!(r.str_field("http.request.header.x-request-id"), "big-head");
    assert_eq!(run.records[1].str_field("url.path"), "/next");
    Ok(())
}

#[test]
fn sixteen_kib_header_value() -> Result<()> {
    large_head_is_recorded(16 * 1024 + 100)
}

#[test]
fn head_of_thirty_kib_in_one_read() -> Result<()> {
    large_head_is_recorded(30 * 1024)
}
