//! Exchanges that end otherwise than with a complete response.

use anyhow::Result;
use std::time::Duration;
use tests::clients::{RawConn, get};
use tests::ports::free_port;
use tests::record::RecordExt;
use tests::servers::ScriptServer;
use tests::tracer::Tracer;

#[test]
fn request_abandoned_before_the_response_is_connection_closed() -> Result<()> {
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let tracer = Tracer::start(&[port])?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    conn.send(&get("/sleep?ms=300", "localhost"))?;
    // Give the server time to read the request, then abort like a client
    // whose own timeout fired.
    std::thread::sleep(Duration::from_millis(100));
    conn.reset()?;
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("url.path"), "/sleep");
    assert_eq!(r.str_field("url.query"), "ms=300");
    assert_eq!(r.str_field("tracer.outcome"), "connection_closed");
    assert!(!r.has("http.response.status_code"), "{r}");
    assert!(!r.has("http.response.timestamp"), "{r}");
    Ok(())
}

#[test]
fn upgraded_connection_yields_one_record_and_ignores_the_tunnel() -> Result<()> {
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let tracer = Tracer::start(&[port])?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    conn.send(
        b"GET /upgrade HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
          Upgrade: echo\r\n\r\n",
    )?;
    assert_eq!(conn.read_response("GET")?.status, 101);
    // Tunnelled bytes that look like HTTP must not become records.
    let tunnelled = get("/inside-tunnel", "localhost");
    conn.send(&tunnelled)?;
    assert_eq!(conn.read_bytes(tunnelled.len())?, tunnelled);
    drop(conn);
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("url.path"), "/upgrade");
    assert_eq!(r.u64_field("http.response.status_code"), 101);
    assert_eq!(r.str_field("tracer.outcome"), "upgraded");
    Ok(())
}

/// SIGTERM while the server is still working on a request it has read: the tracer
/// waits for the response (within its stop grace) and records it whole, instead of
/// writing a request the server answered as cut off.
#[test]
fn a_request_answered_just_after_sigterm_is_recorded_complete() -> Result<()> {
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let tracer = Tracer::start(&[port])?;
    let mut conn = RawConn::connect(("127.0.0.1", port))?;
    // Longer than detaching the programs takes (up to ~2.5 s here), within the grace.
    conn.send(&get("/sleep?ms=3000", "localhost"))?;
    wait_until_read(port, conn.local_port()?)?;
    let run = tracer.stop_with(libc::SIGTERM)?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("url.path"), "/sleep");
    assert_eq!(r.str_field("tracer.outcome"), "complete", "{r}");
    assert_eq!(r.u64_field("http.response.status_code"), 200);
    Ok(())
}

/// Waits until the server side of the connection from `client_port` to `server_port`
/// has nothing left in its receive queue: the server read the request.
fn wait_until_read(server_port: u16, client_port: u16) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let local = format!(":{server_port:04X}");
    let remote = format!(":{client_port:04X}");
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp")?;
        let read = table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address rem_address st tx_queue:rx_queue ...
            fields.len() > 4
                && fields[1].ends_with(&local)
                && fields[2].ends_with(&remote)
                && fields[4].ends_with(":00000000")
        });
        if read {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the server did not read the request within 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
