//! The record's exact bytes for fixed kernel events, compared with `golden.jsonl`: a
//! refactor of any layer between the kernel events and the JSON must leave them
//! unchanged. A deliberate change of the record regenerates the file with
//! `GOLDEN_UPDATE=1 cargo test -p tracer golden` and shows in the diff.
use std::net::{IpAddr, Ipv4Addr};

use tracer_common::Direction;

use super::RecordContext;
use crate::{
    connection::{
        Finished, Tracker,
        tests::{data, header},
    },
    enrich::{Clock, PathRedactor, ProcessInfo, QueryRedactor},
    identity::{Fingerprinter, Identifier, Names, ProxyTrust},
    kernel::events::{ConnectionEvent, Endpoints},
};

const GOLDEN: &str = include_str!("golden.jsonl");

fn identifier() -> Identifier {
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    Identifier::new(
        Names {
            api_key_headers: strings(&["X-API-Key"]),
            api_key_query_params: strings(&["api_key"]),
            session_cookies: strings(&["session"]),
            proxy_user_headers: strings(&["X-Forwarded-User"]),
            proxy_email_headers: strings(&["X-Forwarded-Email"]),
            role_claims: strings(&["roles"]),
        },
        ProxyTrust::new(Vec::new()),
        Fingerprinter::from_secret(b"golden-test-secret"),
        None,
    )
}

fn process() -> ProcessInfo {
    ProcessInfo {
        pid: 4242,
        name: "nginx".to_owned(),
        executable_path: Some("/usr/sbin/nginx".to_owned()),
        executable_name: Some("nginx".to_owned()),
        command_line: Some("nginx: worker process".to_owned()),
        uid: 33,
        owner: Some("www-data".to_owned()),
        container_id: None,
        cgroup_path: Some("/system.slice/nginx.service".to_owned()),
        start_time: 1,
    }
}

/// Three connections: a keep-alive pair with identity, query secrets and trace
/// context; a chunked upload; a request the client abandoned, with a path to
/// normalize and a session id in it.
fn records() -> String {
    let mut tracker = Tracker::new();
    let mut finished: Vec<Finished> = Vec::new();
    let open = |conn_id, peer_port| ConnectionEvent::Open {
        header: header(conn_id, 1_000),
        endpoints: Endpoints {
            local: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            local_port: 8080,
            peer: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            peer_port,
        },
        socket: u64::from(peer_port),
    };
    let ingress = Direction::Ingress;
    let egress = Direction::Egress;
    let events = [
        open(1, 40001),
        data(
            1,
            2_000,
            ingress,
            b"GET /orders/42?page=2&api_key=SECRET&sig=abc HTTP/1.1\r\nHost: shop.example:8080\r\n\
              Authorization: Basic YWxpY2U6cGFzc3dvcmQ=\r\nUser-Agent: curl/7.88.1\r\n\
              X-Request-Id: req-1\r\n\
              traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n",
        ),
        data(
            1,
            5_000,
            egress,
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n",
        ),
        data(
            1,
            9_000,
            ingress,
            b"DELETE /orders/42 HTTP/1.1\r\nHost: shop.example\r\nX-API-Key: k-SECRET\r\n\
              Cookie: session=S-SECRET\r\n\r\n",
        ),
        data(1, 12_000, egress, b"HTTP/1.1 204 No Content\r\n\r\n"),
        open(2, 40002),
        data(
            2,
            20_000,
            ingress,
            b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n",
        ),
        data(
            2,
            25_000,
            egress,
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        ),
        open(3, 40003),
        data(
            3,
            30_000,
            ingress,
            b"GET /x/..//slow;jsessionid=J-SECRET HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        ConnectionEvent::Close {
            header: header(3, 31_000),
        },
    ];
    for event in events {
        tracker.handle(event, &mut finished);
    }
    tracker.shutdown(40_000, &mut finished);
    let mut context = RecordContext::new(
        Clock::with_offset_ns(1_795_375_670_000_000_000),
        QueryRedactor::new(["api_key", "sig"]),
        PathRedactor::new(true, &[], ["api_key", "sig"]),
        identifier(),
    );
    let process = process();
    let mut out = String::new();
    for exchange in &finished {
        let mut line = Vec::new();
        context.write_json(exchange, Some(&process), &mut line);
        out.push_str(std::str::from_utf8(&line).expect("UTF-8"));
        out.push('\n');
    }
    out
}

#[test]
fn records_are_byte_for_byte_the_golden_ones() {
    let actual = records();
    if std::env::var_os("GOLDEN_UPDATE").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/record/golden.jsonl");
        std::fs::write(path, &actual).expect("writing golden.jsonl");
        return;
    }
    assert_eq!(actual.lines().count(), 4, "{actual}");
    for (n, (actual, golden)) in actual.lines().zip(GOLDEN.lines()).enumerate() {
        assert_eq!(actual, golden, "record {n} differs from golden.jsonl");
    }
    assert_eq!(actual, GOLDEN);
    assert!(!actual.contains("SECRET") && !actual.contains("cGFzc3dvcmQ"));
}
