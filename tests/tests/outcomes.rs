//! Exchanges that end otherwise than with a complete response.

use anyhow::Result;
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
    // Once the server read the request, abort like a client whose own timeout fired.
    conn.wait_until_read()?;
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
    conn.wait_until_read()?;
    let run = tracer.stop_with(libc::SIGTERM)?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("url.path"), "/sleep");
    assert_eq!(r.str_field("tracer.outcome"), "complete", "{r}");
    assert_eq!(r.u64_field("http.response.status_code"), 200);
    Ok(())
}
