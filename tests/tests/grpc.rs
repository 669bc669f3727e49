//! gRPC against a real Python server and client (`grpcio`, h2c, `tests/grpc/`): unary,
//! server-, client- and bidirectional streaming calls, an error status in a trailers-only
//! response and one in trailers after a message, a deadline exceeded and a cancelled
//! call, all on one connection. Every record is checked against the server's own log of
//! the calls it handled, matched by the `x-request-id` each call sends.

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tests::ports::free_port;
use tests::record::RecordExt;
use tests::servers::{GrpcServer, grpc_client};
use tests::tracer::{Tracer, TracerRun};

/// A hang guard for waits on the server's log and the tracer's records.
const WAIT: Duration = Duration::from_secs(30);

/// gRPC status codes (`grpc.StatusCode` in Python).
const CANCELLED: u64 = 1;
const DEADLINE_EXCEEDED: u64 = 4;
const NOT_FOUND: u64 = 5;
const RESOURCE_EXHAUSTED: u64 = 8;
/// The HTTP/2 error code of RST_STREAM a gRPC client cancels a call with.
const H2_CANCEL: u64 = 8;

/// What `tests/grpc/client.py` does, call by call: (method, the status it ends with).
const CALLS: [(&str, &str); 9] = [
    ("/tracer.test.Echo/Unary", "OK"),
    ("/tracer.test.Echo/ServerStream", "OK"),
    ("/tracer.test.Echo/ClientStream", "OK"),
    ("/tracer.test.Echo/Chat", "OK"),
    // Aborted before any message: a trailers-only response.
    ("/tracer.test.Lookup/Get", "NOT_FOUND"),
    // One message, then the status in trailers.
    ("/tracer.test.Echo/FailMidStream", "RESOURCE_EXHAUSTED"),
    // The client's deadline (300 ms) passes while the server waits.
    ("/tracer.test.Echo/Slow", "DEADLINE_EXCEEDED"),
    // The server sends its headers, then the client cancels (RST_STREAM).
    ("/tracer.test.Echo/UntilCancelled", "CANCELLED"),
    // The connection is still in use after both.
    ("/tracer.test.Echo/Unary", "OK"),
];

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or_else(|| panic!("no `{key}` in {v}"))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    field(v, key)
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {v}"))
}

fn number(v: &Value, key: &str) -> u64 {
    field(v, key)
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` is not an unsigned integer in {v}"))
}

/// `ipv4:127.0.0.1:PORT`, as grpcio names a peer -> PORT.
fn peer_port(peer: &str) -> u64 {
    peer.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in peer {peer:?}"))
}

/// An unsigned JWT (no issuer configured): the tracer reads `sub`, never writes the token.
fn bearer_token() -> (String, &'static str) {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
    let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"grpc-bob"}"#);
    let signature = "Z3JwYy1zaWduYXR1cmUtbmV2ZXItd3JpdHRlbg";
    (format!("{header}.{payload}.{signature}"), signature)
}

/// One run of the client against the server with a tracer watching its port.
struct Scenario {
    port: u16,
    server_pid: u64,
    /// The server's log, a line per call it handled.
    calls: Vec<Value>,
    run: TracerRun,
    secrets: Vec<String>,
}

impl Scenario {
    fn run() -> Result<Self> {
        let port = free_port();
        let server = GrpcServer::start(port)?;
        let tracer = Tracer::start(&[port])?;
        let (token, signature) = bearer_token();
        let seen = grpc_client(port, &token)?;
        // The server logs a call when its handler is done, which for a cancelled call
        // may be after the client saw it end.
        let calls = server.wait_for_calls(seen.len(), WAIT)?;
        // The client has exited, so its connection is closed: every stream has ended.
        tracer.wait_for_records(calls.len(), WAIT)?;
        let run = tracer.stop()?;

        // The client saw what the server logged, and the calls the script makes.
        let key = |c: &Value| {
            (
                text(c, "request_id").to_owned(),
                text(c, "method").to_owned(),
                text(c, "code").to_owned(),
            )
        };
        let client: Vec<_> = seen.iter().map(key).collect();
        let mut logged: Vec<_> = calls.iter().map(key).collect();
        logged.sort();
        let mut ordered = client.clone();
        ordered.sort();
        assert_eq!(ordered, logged, "client and server disagree");
        let made: Vec<_> = client
            .iter()
            .map(|(_, m, c)| (m.as_str(), c.as_str()))
            .collect();
        assert_eq!(made, CALLS, "{seen:#?}");

        Ok(Self {
            port,
            server_pid: u64::from(server.pid()),
            calls,
            run,
            secrets: vec![token, signature.to_owned()],
        })
    }

    /// Each logged call with its record; fails unless records and calls pair one to one.
    fn pairs(&self) -> Vec<(&Value, &Value)> {
        let mut records: BTreeMap<&str, &Value> = BTreeMap::new();
        for r in &self.run.records {
            let id = r.str_field("http.request.header.x-request-id");
            assert!(records.insert(id, r).is_none(), "two records for {id}");
        }
        let mut logged: Vec<&str> = self.calls.iter().map(|c| text(c, "request_id")).collect();
        logged.sort_unstable();
        assert_eq!(
            records.keys().copied().collect::<Vec<_>>(),
            logged,
            "records (left) vs the server's log (right): {:#?}",
            self.run.records
        );
        self.calls
            .iter()
            .map(|c| (c, records[text(c, "request_id")]))
            .collect()
    }
}

/// What the tracer reads from the client's side of each stream (the server's reads):
/// one record per call, none missing, none extra, with the gRPC method, the server's pid,
/// the peer and the identity from the bearer token, which is never written.
#[test]
fn grpc_calls_have_one_record_each_with_rpc_fields_pid_and_identity() -> Result<()> {
    let s = Scenario::run()?;
    for (call, r) in s.pairs() {
        let method = text(call, "method");
        let (service, name) = method[1..].split_once('/').context("method path")?;
        assert_eq!(number(call, "pid"), s.server_pid, "{call}");
        assert_eq!(r.u64_field("process.pid"), s.server_pid, "{r}");
        assert_eq!(
            r.u64_field("network.peer.port"),
            peer_port(text(call, "peer")),
            "{r}"
        );
        assert_eq!(r.str_field("http.request.method"), "POST", "{r}");
        assert_eq!(r.str_field("url.path"), method, "{r}");
        assert!(!r.has("url.query"), "{r}");
        assert_eq!(r.str_field("url.scheme"), "http", "{r}");
        assert_eq!(r.str_field("server.address"), "127.0.0.1", "{r}");
        assert_eq!(r.u64_field("server.port"), u64::from(s.port), "{r}");
        assert_eq!(r.str_field("network.protocol.version"), "2", "{r}");
        assert_eq!(r.str_field("rpc.system"), "grpc", "{r}");
        assert_eq!(r.str_field("rpc.service"), service, "{r}");
        assert_eq!(r.str_field("rpc.method"), name, "{r}");
        // The request body is the length-prefixed messages the server read.
        assert_eq!(
            r.u64_field("http.request.body.size"),
            number(call, "request_bytes"),
            "{r}"
        );
        // Identity from the HPACK-decoded `authorization` metadata.
        assert_eq!(field(call, "authorization_seen"), true, "{call}");
        assert_eq!(r.str_field("audit.auth.method"), "bearer", "{r}");
        assert_eq!(r.str_field("user.id"), "grpc-bob", "{r}");
    }
    assert_eq!(
        s.run.summary_u64("http2_connections")?,
        1,
        "{}",
        s.run.summary
    );
    assert_eq!(
        s.run.summary["http2"]["streams"],
        s.calls.len(),
        "{}",
        s.run.summary
    );
    assert_eq!(s.run.kernel_lost_total()?, 0, "{}", s.run.summary);
    for secret in &s.secrets {
        assert!(!s.run.stdout.contains(secret), "{secret} in records");
        assert!(!s.run.stderr.contains(secret), "{secret} in diagnostics");
    }
    Ok(())
}

/// What the tracer reads from the server's side of each stream: `:status`, the
/// `grpc-status` of trailers and of a trailers-only response, response sizes, and how
/// the deadline-exceeded and cancelled streams end.
///
/// grpc's C core writes HEADERS, DATA and trailers of a response as one `sendmsg` of
/// many small iovecs (14 for a unary answer): the kernel side must walk them all
/// (`MAX_IOV` in tracer-common), or the trailers arrive as missing bytes and the
/// server's HPACK table is lost for every later stream.
#[test]
fn grpc_statuses_and_outcomes_match_the_servers_log() -> Result<()> {
    let s = Scenario::run()?;
    let mut statuses = Vec::new();
    for (call, r) in s.pairs() {
        let code = number(call, "code_value");
        statuses.push(code);
        assert!(!r.has("tracer.h2.state"), "{r}");
        match code {
            DEADLINE_EXCEEDED => {
                // Both ends know the deadline (grpc-timeout): the server's C core answers
                // with trailers-only grpc-status 4 when it passes, and the client resets
                // the stream when it does. The record says whichever ended it first.
                eprintln!("deadline exceeded: {}", r.str_field("tracer.outcome"));
                match r.str_field("tracer.outcome") {
                    "complete" => {
                        assert_eq!(r.u64_field("http.response.status_code"), 200, "{r}");
                        assert_eq!(r.u64_field("rpc.grpc.status_code"), code, "{r}");
                        assert_eq!(r.u64_field("http.response.body.size"), 0, "{r}");
                    }
                    "reset" => {
                        // Nothing came back before the reset: no :status either.
                        assert!(!r.has("http.response.status_code"), "{r}");
                        assert_eq!(r.u64_field("tracer.h2.error_code"), H2_CANCEL, "{r}");
                        assert!(!r.has("rpc.grpc.status_code"), "{r}");
                    }
                    other => panic!("deadline exceeded recorded as {other}: {r}"),
                }
            }
            CANCELLED => {
                // The server's HEADERS came, then the client's RST_STREAM ended the
                // stream; no grpc-status was sent.
                assert_eq!(r.u64_field("http.response.status_code"), 200, "{r}");
                assert_eq!(r.u64_field("http.response.body.size"), 0, "{r}");
                assert_eq!(r.str_field("tracer.outcome"), "reset", "{r}");
                assert_eq!(r.u64_field("tracer.h2.error_code"), H2_CANCEL, "{r}");
                assert!(!r.has("rpc.grpc.status_code"), "{r}");
            }
            _ => {
                assert_eq!(r.u64_field("http.response.status_code"), 200, "{r}");
                assert_eq!(r.str_field("tracer.outcome"), "complete", "{r}");
                assert_eq!(r.u64_field("rpc.grpc.status_code"), code, "{r}");
                assert!(!r.has("tracer.h2.error_code"), "{r}");
                // The response body is the length-prefixed messages the server sent.
                assert_eq!(
                    r.u64_field("http.response.body.size"),
                    number(call, "response_bytes"),
                    "{r}"
                );
            }
        }
    }
    for code in [NOT_FOUND, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, CANCELLED] {
        assert!(statuses.contains(&code), "no call ended with {code}");
    }
    let h2 = &s.run.summary["http2"];
    for counter in [
        "hpack_errors",
        "framing_lost",
        "orphan_frames",
        "malformed_frames",
        "partial_connections",
        "oversized_frames",
    ] {
        assert_eq!(h2[counter], 0, "{counter}: {}", s.run.summary);
    }
    Ok(())
}
