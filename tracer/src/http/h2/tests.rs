//! HTTP/2 decoding, one case per test, with the frame builders they share. Long for
//! the same reason as `http/tests.rs`: short, independent cases.
use loona_hpack::Encoder;
use proptest::prelude::*;

use super::H2Connection;
use super::frame::MAX_BUFFERED_PAYLOAD;
use super::hpack::MAX_HEADER_LIST;
use crate::http::{Chunk, Exchange, ExchangeEnd, HttpConnection, types::chunk};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn headers(
    enc: &mut Encoder<'_>,
    stream: u32,
    end_stream: bool,
    fields: &[(&str, &str)],
) -> Vec<u8> {
    let block = enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    frame(0x1, 0x4 | u8::from(end_stream), stream, &block)
}

fn settings() -> Vec<u8> {
    frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])
}

/// A prior-knowledge connection: two GETs (the second reusing the first's dynamic table
/// entries) and a POST with a padded body, answered out of order.
fn conversation() -> (Vec<u8>, Vec<u8>) {
    let mut req = Encoder::new();
    let mut resp = Encoder::new();
    let mut client = PREFACE.to_vec();
    client.extend(settings());
    let get = |path| {
        [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "example.test:8080"),
            (":path", path),
            ("x-request-id", "r-1"),
            ("authorization", "Bearer secret-token"),
        ]
    };
    client.extend(headers(&mut req, 1, true, &get("/a?x=1")));
    client.extend(headers(&mut req, 3, true, &get("/b")));
    client.extend(headers(
        &mut req,
        5,
        false,
        &[
            (":method", "POST"),
            (":authority", "example.test"),
            (":path", "/upload"),
        ],
    ));
    // PADDED DATA: pad length 3, 4 body bytes, 3 padding bytes.
    client.extend(frame(
        0x0,
        0x8 | 0x1,
        5,
        &[3, b'd', b'a', b't', b'a', 0, 0, 0],
    ));
    let mut server = settings();
    server.extend(frame(0x4, 0x1, 0, &[]));
    server.extend(headers(
        &mut resp,
        3,
        false,
        &[(":status", "404"), ("server", "t")],
    ));
    server.extend(frame(0x0, 0x1, 3, b"nope"));
    server.extend(headers(
        &mut resp,
        1,
        false,
        &[(":status", "200"), ("server", "t")],
    ));
    server.extend(frame(0x8, 0, 1, &[0, 0, 1, 0]));
    server.extend(frame(0x0, 0, 1, b"hello "));
    server.extend(frame(0x0, 0x1, 1, b"world"));
    server.extend(headers(&mut resp, 5, true, &[(":status", "201")]));
    (client, server)
}

fn summary(exchanges: &[Exchange]) -> Vec<(String, String, Option<u16>, u64, u64, ExchangeEnd)> {
    let mut rows: Vec<_> = exchanges
        .iter()
        .map(|e| {
            (
                e.request.head.method().to_owned(),
                e.request.head.target().to_owned(),
                e.response.as_ref().map(|r| r.head.status),
                e.request.body_size,
                e.response.as_ref().map_or(0, |r| r.body_size),
                e.end,
            )
        })
        .collect();
    rows.sort_by(|a, b| a.1.cmp(&b.1));
    rows
}

fn expected() -> Vec<(String, String, Option<u16>, u64, u64, ExchangeEnd)> {
    vec![
        (
            "GET".into(),
            "/a?x=1".into(),
            Some(200),
            0,
            11,
            ExchangeEnd::Complete,
        ),
        (
            "GET".into(),
            "/b".into(),
            Some(404),
            0,
            4,
            ExchangeEnd::Complete,
        ),
        (
            "POST".into(),
            "/upload".into(),
            Some(201),
            4,
            0,
            ExchangeEnd::Complete,
        ),
    ]
}

#[test]
fn prior_knowledge_streams_become_exchanges_with_http1_shaped_heads() {
    let (client, server) = conversation();
    let mut conn = HttpConnection::new();
    conn.on_response(chunk(1, &server[..15]));
    conn.on_request(chunk(2, &client));
    conn.on_response(chunk(3, &server[15..]));
    let done = conn.take_completed();
    assert_eq!(summary(&done), expected());
    let first = done
        .iter()
        .find(|e| e.request.head.target() == "/a?x=1")
        .unwrap();
    // The dynamic table carried x-request-id and authorization into stream 3 as indices.
    let second = done
        .iter()
        .find(|e| e.request.head.target() == "/b")
        .unwrap();
    for e in [first, second] {
        assert_eq!(
            e.request.head.header("host"),
            Some(&b"example.test:8080"[..])
        );
        assert_eq!(e.request.head.header("x-request-id"), Some(&b"r-1"[..]));
        assert_eq!(
            e.request.head.header("authorization"),
            Some(&b"Bearer secret-token"[..])
        );
        let h2 = e.http2.as_ref().unwrap();
        assert!(!h2.partial);
    }
    assert_eq!(conn.stats().http2_connections, 1);
    assert_eq!(conn.stats().http2.streams, 3);
    assert_eq!(conn.stats().non_http_chunks, 0);
    assert_eq!(conn.awaiting_responses(), 0);
}

proptest! {
    #[test]
    fn frames_split_anywhere_decode_the_same(
        client_cuts in proptest::collection::vec(0usize..400, 0..12),
        server_cuts in proptest::collection::vec(0usize..300, 0..12),
    ) {
        let (client, server) = conversation();
        let mut conn = HttpConnection::new();
        for (i, piece) in pieces(&client, client_cuts).iter().enumerate() {
            conn.on_request(chunk(i as u64, piece));
        }
        for (i, piece) in pieces(&server, server_cuts).iter().enumerate() {
            conn.on_response(chunk(100 + i as u64, piece));
        }
        prop_assert_eq!(summary(&conn.take_completed()), expected());
    }
}

fn pieces(bytes: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
    cuts.iter_mut().for_each(|c| *c = (*c).min(bytes.len()));
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts.into_iter().chain([bytes.len()]) {
        out.push(&bytes[at..c]);
        at = c;
    }
    out
}

#[test]
fn every_single_split_point_of_both_directions_decodes_the_same() {
    let (client, server) = conversation();
    for cut in 0..=client.len().max(server.len()) {
        let mut conn = HttpConnection::new();
        let c = cut.min(client.len());
        let s = cut.min(server.len());
        conn.on_request(chunk(1, &client[..c]));
        conn.on_request(chunk(2, &client[c..]));
        conn.on_response(chunk(3, &server[..s]));
        conn.on_response(chunk(4, &server[s..]));
        assert_eq!(summary(&conn.take_completed()), expected(), "cut at {cut}");
    }
}

fn open_stream(conn: &mut H2Connection, enc: &mut Encoder<'_>, id: u32, path: &str) {
    conn.on_request(chunk(
        1,
        &headers(enc, id, true, &[(":method", "GET"), (":path", path)]),
    ));
}

#[test]
fn reset_goaway_and_close_end_streams_with_their_outcome() {
    let mut enc = Encoder::new();
    let mut conn = H2Connection::new(false);
    for id in [1, 3, 5, 7] {
        open_stream(&mut conn, &mut enc, id, &format!("/{id}"));
    }
    conn.on_request(chunk(2, &frame(0x3, 0, 1, &8u32.to_be_bytes())));
    let mut goaway = 3u32.to_be_bytes().to_vec();
    goaway.extend(0u32.to_be_bytes());
    conn.on_response(chunk(3, &frame(0x7, 0, 0, &goaway)));
    let mut done = conn.take_completed();
    done.extend(conn.close());
    let ends: Vec<_> = done
        .iter()
        .map(|e| {
            (
                e.request.head.target(),
                e.end,
                e.http2.as_ref().unwrap().reset_code,
            )
        })
        .collect();
    assert_eq!(
        ends,
        [
            ("/1", ExchangeEnd::Reset, Some(8)),
            ("/5", ExchangeEnd::GoAway, None),
            ("/7", ExchangeEnd::GoAway, None),
            ("/3", ExchangeEnd::ConnectionClosed, None),
        ]
    );
    assert_eq!(conn.stats().resets, 1);
}

/// A gRPC deadline: the client resets the stream while the server's trailers-only answer
/// is already on its way. The late frames are normal (RFC 9113 §5.4.2), not orphans; the
/// late block still updates the HPACK table, which the next stream's response relies on.
#[test]
fn frames_after_a_stream_ended_are_expected_not_orphans() {
    let mut req = Encoder::new();
    let mut resp = Encoder::new();
    let mut conn = H2Connection::new(false);
    let call = |path| {
        [
            (":method", "POST"),
            (":path", path),
            ("content-type", "application/grpc"),
        ]
    };
    let mut client = headers(&mut req, 1, false, &call("/a.B/Slow"));
    client.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]));
    client.extend(frame(0x3, 0, 1, &8u32.to_be_bytes()));
    conn.on_request(chunk(1, &client));
    let late_status = [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "4"),
        ("grpc-message", "Deadline Exceeded"),
    ];
    let mut server = headers(&mut resp, 1, true, &late_status);
    server.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]));
    conn.on_response(chunk(2, &server));
    // Request trailers for the ended stream open no new one.
    conn.on_request(chunk(3, &headers(&mut req, 1, true, &[("x-late", "1")])));
    // Stream 3: its response's fields are indexed from the late block's table entries.
    conn.on_request(chunk(4, &headers(&mut req, 3, true, &call("/a.B/Next"))));
    conn.on_response(chunk(5, &headers(&mut resp, 3, true, &late_status)));
    let done = conn.take_completed();
    let rows: Vec<_> = done
        .iter()
        .map(|e| {
            let h2 = e.http2.as_ref().unwrap();
            (
                e.request.head.target(),
                e.end,
                h2.reset_code,
                h2.grpc.as_ref().and_then(|g| g.status),
                h2.partial,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("/a.B/Slow", ExchangeEnd::Reset, Some(8), None, false),
            ("/a.B/Next", ExchangeEnd::Complete, None, Some(4), false),
        ]
    );
    assert_eq!(conn.stats().orphan_frames, 0);
    assert_eq!(conn.stats().hpack_errors, 0);
    assert_eq!(conn.stats().streams, 2);
    // A stream never opened is still an orphan, and so is an even (server) id.
    conn.on_response(chunk(6, &frame(0x0, 0x1, 7, b"x")));
    conn.on_response(chunk(7, &frame(0x0, 0x1, 2, b"x")));
    assert_eq!(conn.stats().orphan_frames, 2);
    assert!(conn.close().is_empty());
}

#[test]
fn grpc_fields_come_from_path_content_type_and_trailers() {
    let mut req = Encoder::new();
    let mut resp = Encoder::new();
    let mut conn = H2Connection::new(false);
    let grpc_request = [
        (":method", "POST"),
        (":path", "/helloworld.Greeter/SayHello"),
        ("content-type", "application/grpc"),
    ];
    let mut client = headers(&mut req, 1, false, &grpc_request);
    client.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 2, 8, 1]));
    client.extend(headers(&mut req, 3, true, &grpc_request));
    conn.on_request(chunk(1, &client));
    let mut server = headers(
        &mut resp,
        1,
        false,
        &[(":status", "200"), ("content-type", "application/grpc")],
    );
    server.extend(frame(0x0, 0, 1, &[0, 0, 0, 0, 0]));
    server.extend(headers(&mut resp, 1, true, &[("grpc-status", "0")]));
    // Trailers-only: status and grpc-status in one block that ends the stream.
    server.extend(headers(
        &mut resp,
        3,
        true,
        &[(":status", "200"), ("grpc-status", "12")],
    ));
    conn.on_response(chunk(2, &server));
    let done = conn.take_completed();
    let grpc: Vec<_> = done
        .iter()
        .map(|e| e.http2.as_ref().unwrap().grpc.clone().unwrap())
        .map(|g| (g.service, g.method, g.status))
        .collect();
    assert_eq!(
        grpc,
        [
            ("helloworld.Greeter".into(), "SayHello".into(), Some(0)),
            ("helloworld.Greeter".into(), "SayHello".into(), Some(12)),
        ]
    );
    assert_eq!(done[0].request.body_size, 7);
}

#[test]
fn a_connection_joined_midway_decodes_what_it_can_and_says_so() {
    // The encoder's table already holds x-tenant from a request the tracer never saw.
    let mut enc = Encoder::new();
    enc.encode([(&b"x-tenant"[..], &b"acme"[..])]);
    let mut conn = H2Connection::new(true);
    let unknown = headers(
        &mut enc,
        7,
        true,
        &[(":method", "GET"), (":path", "/old"), ("x-tenant", "acme")],
    );
    let known = headers(
        &mut enc,
        9,
        true,
        &[(":method", "GET"), (":path", "/lit"), ("x-new", "1")],
    );
    let again = headers(
        &mut enc,
        11,
        true,
        &[(":method", "GET"), (":path", "/idx"), ("x-new", "1")],
    );
    conn.on_request(chunk(1, &[unknown, known, again].concat()));
    let done = conn.close();
    let rows: Vec<_> = done
        .iter()
        .map(|e| {
            (
                e.request.head.target().to_owned(),
                e.request.head.header("x-new").map(<[u8]>::to_vec),
                e.unparsed_request().is_some(),
                e.http2.as_ref().unwrap().partial,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            // A reference to an entry never seen fails the block: no forged header.
            (String::new(), None, true, true),
            ("/lit".into(), Some(b"1".to_vec()), false, true),
            // Entries inserted after joining are the newest on both sides.
            ("/idx".into(), Some(b"1".to_vec()), false, true),
        ]
    );
    assert_eq!(conn.stats().partial_connections, 1);
    assert_eq!(conn.stats().hpack_errors, 1);
}

#[test]
fn a_capture_gap_marks_later_streams_partial_and_is_counted() {
    let mut enc = Encoder::new();
    let mut conn = H2Connection::new(false);
    open_stream(&mut conn, &mut enc, 1, "/before");
    let after = headers(
        &mut enc,
        3,
        true,
        &[(":method", "GET"), (":path", "/after")],
    );
    conn.on_request(Chunk {
        gap_before: 40,
        ..chunk(2, &after)
    });
    let done = conn.close();
    let partial: Vec<_> = done
        .iter()
        .map(|e| (e.request.head.target(), e.http2.as_ref().unwrap().partial))
        .collect();
    assert_eq!(partial, [("/before", false), ("/after", true)]);
    assert_eq!(conn.stats().framing_lost, 1);
}

#[test]
fn a_continuation_flood_is_cut_and_counted() {
    let mut conn = H2Connection::new(false);
    let mut enc = Encoder::new();
    let block = enc.encode([(&b":method"[..], &b"GET"[..])]);
    conn.on_request(chunk(1, &frame(0x1, 0x1, 1, &block)));
    let filler = vec![0x80u8; 16 * 1024];
    for _ in 0..64 {
        conn.on_request(chunk(2, &frame(0x9, 0, 1, &filler)));
    }
    assert_eq!(conn.stats().continuation_floods, 1);
    // The rest of the flood has no open block to join: counted, not buffered.
    assert!(conn.stats().malformed_frames > 0);
    assert_eq!(conn.open_streams(), 0);
}

#[test]
fn an_hpack_bomb_is_truncated_at_the_header_list_bound() {
    let mut enc = Encoder::new();
    let big = "v".repeat(4000);
    let mut fields = vec![
        (":method", "GET"),
        (":path", "/bomb"),
        ("x-big", big.as_str()),
    ];
    // Each repeat is a one-byte index to the 4 KB entry.
    fields.extend(std::iter::repeat_n(("x-big", big.as_str()), 1000));
    let mut conn = H2Connection::new(false);
    conn.on_request(chunk(1, &headers(&mut enc, 1, true, &fields)));
    let done = conn.close();
    assert_eq!(done[0].request.head.target(), "/bomb");
    assert!(done[0].http2.as_ref().unwrap().partial);
    let kept = done[0].request.head.headers.len();
    assert!(kept * 4000 <= MAX_HEADER_LIST, "kept {kept} big headers");
    assert_eq!(conn.stats().header_lists_truncated, 1);
}

#[test]
fn an_oversized_header_frame_is_skipped_and_counted() {
    let mut conn = H2Connection::new(false);
    let huge = vec![0u8; MAX_BUFFERED_PAYLOAD + 1];
    conn.on_request(chunk(1, &frame(0x1, 0x5, 1, &huge)));
    assert_eq!(conn.stats().oversized_frames, 1);
    assert_eq!(conn.stats().hpack_errors, 1);
    let mut enc = Encoder::new();
    open_stream(&mut conn, &mut enc, 3, "/next");
    let done = conn.close();
    assert_eq!(done[0].request.head.target(), "/next");
    assert!(done[0].http2.as_ref().unwrap().partial);
}

proptest! {
    #[test]
    fn junk_after_the_preface_never_panics(junk in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut conn = HttpConnection::new();
        let mut client = PREFACE.to_vec();
        client.extend(&junk);
        conn.on_request(chunk(1, &client));
        conn.on_response(chunk(2, &junk));
        let done = conn.close(3);
        prop_assert_eq!(conn.stats().http2_connections, 1);
        for e in done {
            prop_assert!(e.http2.is_some());
        }
    }
}

#[test]
fn frames_without_a_preface_are_a_joined_connection_recorded_as_partial() {
    let mut enc = Encoder::new();
    let mut conn = HttpConnection::new();
    let request = headers(
        &mut enc,
        7,
        true,
        &[(":method", "GET"), (":path", "/joined")],
    );
    conn.on_request(chunk(1, &request));
    let mut resp = Encoder::new();
    conn.on_response(chunk(
        2,
        &headers(&mut resp, 7, true, &[(":status", "200")]),
    ));
    let done = conn.take_completed();
    assert_eq!(
        summary(&done),
        [(
            "GET".into(),
            "/joined".into(),
            Some(200),
            0,
            0,
            ExchangeEnd::Complete
        )]
    );
    assert!(done[0].http2.as_ref().unwrap().partial);
    assert_eq!(conn.stats().http2_connections, 1);
    assert_eq!(conn.stats().http2.partial_connections, 1);
    assert_eq!(conn.stats().non_http_chunks, 0);
}

/// `Upgrade: h2c`, with the 101, the server's SETTINGS and stream 1's response in one
/// write, then a second stream on the upgraded connection.
#[test]
fn an_h2c_upgrade_answers_the_http1_request_as_stream_one() {
    let mut resp = Encoder::new();
    let mut req = Encoder::new();
    let mut conn = HttpConnection::new();
    conn.on_request(chunk(
        10,
        b"GET /up?x=1 HTTP/1.1\r\nHost: example.test\r\nAuthorization: Bearer secret-token\r\n\
          Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    ));
    let mut server =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    server.extend(settings());
    server.extend(headers(&mut resp, 1, false, &[(":status", "200")]));
    server.extend(frame(0x0, 0x1, 1, b"hello"));
    conn.on_response(chunk(20, &server));
    let first = conn.take_completed();
    assert_eq!(
        summary(&first),
        [(
            "GET".to_owned(),
            "/up?x=1".to_owned(),
            Some(200),
            0,
            5,
            ExchangeEnd::Complete
        )]
    );
    assert_eq!(first[0].http2.as_ref().unwrap().stream_id, 1);
    assert_eq!(
        first[0].request.head.headers.get("authorization"),
        Some(&b"Bearer secret-token"[..]),
        "identity headers of the upgrade request reach the record builder"
    );

    let mut client = PREFACE.to_vec();
    client.extend(settings());
    client.extend(headers(
        &mut req,
        3,
        true,
        &[
            (":method", "GET"),
            (":authority", "example.test"),
            (":path", "/second"),
        ],
    ));
    conn.on_request(chunk(30, &client));
    conn.on_response(chunk(
        40,
        &headers(&mut resp, 3, true, &[(":status", "404")]),
    ));
    let second = conn.take_completed();
    assert_eq!(summary(&second)[0].1, "/second");
    assert_eq!(second[0].response.as_ref().unwrap().head.status, 404);
    let stats = conn.stats();
    assert_eq!(
        (
            stats.http2_connections,
            stats.http2.upgrades,
            stats.http2.streams
        ),
        (1, 1, 2)
    );
    assert_eq!(stats.non_http_chunks, 0, "nothing was taken for junk");
    assert!(conn.close(50).is_empty());
}

/// A server that answers `Upgrade: h2c` with its own 101 but a different protocol is
/// not HTTP/2: the request is recorded as upgraded, as for websockets.
#[test]
fn a_101_to_another_protocol_is_not_taken_for_h2c() {
    let mut conn = HttpConnection::new();
    conn.on_request(chunk(
        10,
        b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: h2c, websocket\r\nConnection: Upgrade\r\n\r\n",
    ));
    conn.on_response(chunk(
        20,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
    ));
    let done = conn.take_completed();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].end, ExchangeEnd::Upgraded);
    assert!(done[0].http2.is_none());
    assert_eq!(conn.stats().http2_connections, 0);
}
