//! One request, every field a user would read.

use anyhow::Result;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tests::clients::{curl, url};
use tests::ports::free_port;
use tests::procfs;
use tests::record::{RecordExt, strings};
use tests::servers::{Nginx, NginxConfig, PyHttpServer};
use tests::tracer::Tracer;
use time::OffsetDateTime;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn curl_get_to_python_http_server_yields_one_full_record() -> Result<()> {
    let port = free_port();
    let server = PyHttpServer::start(LOCALHOST, port, "HTTP/1.1")?;
    let tracer = Tracer::start(&[port])?;
    let client_port = free_port();
    let before = OffsetDateTime::now_utc();
    let body = curl(&[
        "--local-port",
        &client_port.to_string(),
        &url(port, "/hello.txt?a=1&b=two"),
    ])?;
    let after = OffsetDateTime::now_utc();
    assert_eq!(body, "hello from python\n");
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("http.request.method"), "GET");
    assert_eq!(r.str_field("url.path"), "/hello.txt");
    assert_eq!(r.str_field("url.query"), "a=1&b=two");
    assert_eq!(r.str_field("url.scheme"), "http");
    assert_eq!(r.u64_field("http.response.status_code"), 200);
    assert_eq!(r.u64_field("http.response.body.size"), body.len() as u64);
    assert_eq!(r.str_field("server.address"), "127.0.0.1");
    assert_eq!(r.u64_field("server.port"), u64::from(port));
    assert_eq!(r.str_field("network.local.address"), "127.0.0.1");
    assert_eq!(r.str_field("network.peer.address"), "127.0.0.1");
    assert_eq!(r.u64_field("network.peer.port"), u64::from(client_port));
    assert_eq!(r.str_field("client.address"), "127.0.0.1");
    assert_eq!(r.u64_field("client.port"), u64::from(client_port));
    assert_eq!(r.str_field("network.type"), "ipv4");
    assert_eq!(r.str_field("network.transport"), "tcp");
    assert_eq!(r.str_field("network.protocol.name"), "http");
    assert_eq!(r.str_field("network.protocol.version"), "1.1");
    assert!(
        r.str_field("user_agent.original").starts_with("curl/"),
        "{r}"
    );
    assert_eq!(r.str_field("tracer.outcome"), "complete");
    r.u64_field("tracer.connection.id");

    let pid = server.pid();
    assert_eq!(r.u64_field("process.pid"), u64::from(pid));
    r.u64_field("thread.id");
    let exe_name = r.str_field("process.executable.name");
    assert!(
        exe_name.starts_with("python3"),
        "executable name {exe_name}"
    );
    assert_eq!(
        r.str_field("process.executable.path"),
        procfs::exe_path(pid)?.to_string_lossy()
    );
    assert!(
        r.str_field("process.command_line").contains("http.server"),
        "{r}"
    );
    assert_eq!(r.str_field("process.owner"), "root");
    assert_eq!(r.u64_field("process.user.id"), 0);
    let cgroup = r.str_field("process.linux.cgroup");
    assert!(procfs::is_cgroup_of(pid, cgroup)?, "cgroup {cgroup}");
    assert!(!r.has("container.id"), "container.id on the host: {r}");
    assert!(!r.has("http.request.header.x-request-id"), "{r}");
    assert!(!r.has("trace_id") && !r.has("span_id"), "{r}");

    let started = r.time_field("timestamp");
    let answered = r.time_field("http.response.timestamp");
    assert!(
        before <= started && started <= after,
        "timestamp {started} outside the test's window {before}..{after}"
    );
    assert!(answered >= started && answered <= after, "{r}");
    let duration = r.u64_field("event.duration");
    assert!(duration > 0, "{r}");
    assert_eq!(
        i128::from(duration),
        (answered - started).whole_nanoseconds(),
        "event.duration must be the distance between the two timestamps: {r}"
    );
    Ok(())
}

#[test]
fn correlation_headers_and_host_are_reported() -> Result<()> {
    let port = free_port();
    let _server = PyHttpServer::start(LOCALHOST, port, "HTTP/1.0")?;
    let tracer = Tracer::start(&[port])?;
    curl(&[
        "-H",
        "Host: shop.example.test:9999",
        "-H",
        "X-Request-Id: req-42",
        "-H",
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "-A",
        "e2e-agent/1.0",
        &url(port, "/hello.txt"),
    ])?;
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("server.address"), "shop.example.test");
    assert_eq!(r.u64_field("server.port"), u64::from(port));
    assert_eq!(r.str_field("http.request.header.x-request-id"), "req-42");
    assert_eq!(r.str_field("trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(r.str_field("span_id"), "00f067aa0ba902b7");
    assert_eq!(r.str_field("user_agent.original"), "e2e-agent/1.0");
    assert_eq!(r.u64_field("http.response.status_code"), 200);
    Ok(())
}

#[test]
fn ipv6_loopback_peer() -> Result<()> {
    let port = free_port();
    let mut config = NginxConfig::new(port);
    config.ipv4 = false;
    config.ipv6 = true;
    let _nginx = Nginx::start(config)?;
    let tracer = Tracer::start(&[port])?;
    let body = curl(&["-g", &format!("http://[::1]:{port}/v6")])?;
    assert_eq!(body, "hello\n");
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    let r = &run.records[0];
    assert_eq!(r.str_field("network.type"), "ipv6");
    assert_eq!(r.str_field("network.peer.address"), "::1");
    assert_eq!(r.str_field("network.local.address"), "::1");
    assert_eq!(r.str_field("url.path"), "/v6");
    assert_eq!(r.u64_field("server.port"), u64::from(port));
    assert_eq!(r.u64_field("http.response.status_code"), 200);
    Ok(())
}

#[test]
fn ipv4_client_of_dual_stack_server_is_plain_ipv4() -> Result<()> {
    let port = free_port();
    // http.server's CLI binds `::` dual-stack: IPv4 peers arrive as ::ffff:a.b.c.d.
    let _server = PyHttpServer::start(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port, "HTTP/1.0")?;
    let tracer = Tracer::start(&[port])?;
    curl(&[&url(port, "/hello.txt")])?;
    curl(&["-g", &format!("http://[::1]:{port}/hello.txt")])?;
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 2, "records: {:#?}", run.records);
    let by_type = |t: &str| -> Vec<&Value> {
        run.records
            .iter()
            .filter(|r| r.str_field("network.type") == t)
            .collect()
    };
    let v4 = by_type("ipv4");
    let v6 = by_type("ipv6");
    assert_eq!((v4.len(), v6.len()), (1, 1), "records: {:#?}", run.records);
    assert_eq!(v4[0].str_field("network.peer.address"), "127.0.0.1");
    assert_eq!(v4[0].str_field("network.local.address"), "127.0.0.1");
    assert_eq!(v6[0].str_field("network.peer.address"), "::1");
    Ok(())
}

#[test]
fn unwatched_port_yields_no_records() -> Result<()> {
    let watched = free_port();
    let unwatched = free_port();
    let _a = PyHttpServer::start(LOCALHOST, watched, "HTTP/1.0")?;
    let _b = PyHttpServer::start(LOCALHOST, unwatched, "HTTP/1.0")?;
    let tracer = Tracer::start(&[watched])?;
    for i in 0..3 {
        curl(&[&url(watched, &format!("/hello.txt?w={i}"))])?;
    }
    for i in 0..4 {
        curl(&[&url(unwatched, &format!("/hello.txt?u={i}"))])?;
    }
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 3, "records: {:#?}", run.records);
    assert!(
        run.records
            .iter()
            .all(|r| r.u64_field("server.port") == u64::from(watched))
    );
    let mut queries = strings(&run.records, "url.query");
    queries.sort_unstable();
    assert_eq!(queries, ["w=0", "w=1", "w=2"]);
    Ok(())
}
