//! Traffic a tracer must survive without inventing or leaking anything.

use anyhow::Result;
use std::net::{IpAddr, Ipv4Addr};
use tests::clients::{RawConn, curl, junk_bytes, tls_client_hello, url};
use tests::ports::free_port;
use tests::record::{RecordExt, strings};
use tests::servers::{Nginx, NginxConfig, PyHttpServer};
use tests::tracer::Tracer;

#[test]
fn junk_and_tls_on_a_watched_port_yield_no_records() -> Result<()> {
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

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("url.path"), "/valid-after-junk");
    assert_eq!(r.u64_field("http.response.status_code"), 200);
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
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 2, "records: {:#?}", run.records);
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
    let mut queries = strings(&run.records, "url.query");
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
