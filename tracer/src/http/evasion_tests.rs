//! Requests crafted to hide from the trail or forge it, as an attacker would send them to
//! nginx: each must leave the record nginx's own access log would.

use proptest::prelude::*;

use super::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A connection that carried one answered request (at 10 and 11), so the next request
/// starts at a known message boundary.
fn answered_once() -> HttpConnection {
    let mut conn = HttpConnection::new();
    conn.on_request(chunk(10, b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"));
    conn.on_response(chunk(11, OK));
    conn
}

/// Feeds `request` then one 200 response, returning the exchanges that completed.
fn exchange(request: &[u8]) -> Vec<Exchange> {
    let mut conn = HttpConnection::new();
    conn.on_request(chunk(10, request));
    conn.on_response(chunk(20, OK));
    let mut done = conn.take_completed();
    done.extend(conn.close(30));
    done
}

fn target_of(request: &[u8]) -> (String, String, u8) {
    let done = exchange(request);
    assert_eq!(done.len(), 1, "{done:#?}");
    let head = &done[0].request.head;
    assert!(done[0].unparsed_request().is_none());
    (
        head.method().to_owned(),
        head.target().to_owned(),
        head.minor_version,
    )
}

#[test]
fn chunk_extension_with_bare_lf_cannot_smuggle_a_forged_request() {
    let mut conn = HttpConnection::new();
    conn.on_request(chunk(
        10,
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          a;x\nAAAA\r\nBBBB\r\n63\r\n\r\n0\r\n\r\nGET /index.html HTTP/1.1\r\nHost: a\r\n\
          Authorization: Basic YWxpY2U6eA==\r\nContent-Length: 91\r\n\r\n\r\n0\r\n\r\n",
    ));
    conn.on_response(chunk(20, OK));
    conn.on_request(chunk(
        30,
        b"GET /admin/export-all-users HTTP/1.1\r\nHost: a\r\nAuthorization: Basic bWFsbG9yeTp4\r\n\r\n",
    ));
    conn.on_response(chunk(40, OK));
    let done = conn.take_completed();
    let targets: Vec<_> = done.iter().map(|e| e.request.head.target()).collect();
    assert_eq!(targets, ["/upload", "/admin/export-all-users"]);
    assert_eq!(done[0].request.body_size, 10 + 0x63);
    assert!(done[1].request.head.header("authorization") == Some(b"Basic bWFsbG9yeTp4"));
    // Other servers read the bare LF differently: the records say so.
    assert!(done.iter().all(|e| e.framing_ambiguous));
    assert_eq!(conn.stats().ambiguous_framing, 1);
}

#[test]
fn request_lines_servers_accept_are_parsed() {
    let cases: &[(&[u8], &str, &str, u8)] = &[
        (b"GET /a HTTP/1.2\r\n\r\n", "GET", "/a", 2),
        (b"GET /a HTTP/1.10\r\n\r\n", "GET", "/a", 10),
        (b"GET   /a   HTTP/1.1  \r\n\r\n", "GET", "/a", 1),
        (
            b"GET /a\xff\xfe HTTP/1.1\r\n\r\n",
            "GET",
            "/a\u{fffd}\u{fffd}",
            1,
        ),
        (b"GET /a HTTP/1.1\nHost: x\n\n", "GET", "/a", 1),
    ];
    for &(request, method, target, minor) in cases {
        assert_eq!(
            target_of(request),
            (method.to_owned(), target.to_owned(), minor),
            "{}",
            request.escape_ascii()
        );
    }
}

#[test]
fn odd_header_lines_are_skipped_as_nginx_does() {
    let request = b"GET /h HTTP/1.1\r\nX@y: 1\r\nX\xffy: 2\r\nNoColon\r\nX-Ctl: a\x01b\r\n\
        User-Agent: ua\r\n\r\n";
    let done = exchange(request);
    assert_eq!(done.len(), 1);
    let head = &done[0].request.head;
    assert_eq!(head.target(), "/h");
    assert_eq!(head.header("x-ctl"), Some(&b"a\x01b"[..]));
    assert_eq!(head.header("nocolon"), Some(&b""[..]));
    assert_eq!(head.header("user-agent"), Some(&b"ua"[..]));
    assert!(head.header("x@y").is_none());
}

#[test]
fn http09_request_is_recorded_and_ends_parsing() {
    let mut conn = HttpConnection::new();
    conn.on_request(chunk(10, b"GET /x\r\nGET /forged HTTP/1.1\r\n\r\n"));
    conn.on_response(chunk(20, b"<html>bare body</html>"));
    let mut done = conn.take_completed();
    done.extend(conn.close(30));
    assert_eq!(done.len(), 1, "{done:#?}");
    assert!(done[0].request.head.http09);
    assert_eq!(done[0].request.head.target(), "/x");
}

#[test]
fn chunked_bodies_in_forms_nginx_accepts_keep_the_framing() {
    let bodies: &[&[u8]] = &[
        b"00000000000000000005\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\n0\n\n",
        b"5\r\nhello\r\n0\r\nX@y: \x01odd\r\nno colon\r\n\r\n",
        b"5 ;x\r\nhello\r\n0\r\n\r\n",
    ];
    for body in bodies {
        let mut request = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(body);
        request.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        let mut conn = HttpConnection::new();
        conn.on_request(chunk(10, &request));
        conn.on_response(chunk(20, OK));
        conn.on_response(chunk(21, OK));
        let done = conn.take_completed();
        let targets: Vec<_> = done.iter().map(|e| e.request.head.target()).collect();
        assert_eq!(targets, ["/c", "/next"], "{}", body.escape_ascii());
        assert_eq!(done[0].request.body_size, 5);
        assert!(done[0].request.body_complete);
    }
}

#[test]
fn conflicting_length_headers_mark_the_connection_ambiguous() {
    for head in [
        &b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    ] {
        let done = exchange(head);
        assert!(done[0].framing_ambiguous, "{}", head.escape_ascii());
    }
    assert!(!exchange(b"POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n")[0].framing_ambiguous);
}

#[test]
fn a_response_to_an_unparsed_request_is_recorded_with_its_line() {
    let mut conn = answered_once();
    conn.on_request(chunk(
        12,
        b"G\x00T /hidden HTTP/1.1\r\nAuthorization: secret\r\n\r\n",
    ));
    conn.on_response(chunk(
        13,
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad",
    ));
    let done = conn.take_completed();
    assert_eq!(done.len(), 2);
    let bad = &done[1];
    assert_eq!(
        bad.unparsed_request(),
        Some(&b"G\x00T /hidden HTTP/1.1"[..])
    );
    assert_eq!(bad.request.first_byte_ns, 12);
    let response = bad.response.as_ref().unwrap();
    assert_eq!((response.head.status, response.body_size), (400, 3));
}

#[test]
fn bytes_after_a_refused_upgrade_are_parsed_as_http() {
    for (request, refusal) in [
        (
            &b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"[..],
            &b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"[..],
        ),
        (
            b"CONNECT h:443 HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 405 Not Allowed\r\nContent-Length: 0\r\n\r\n",
        ),
    ] {
        let mut conn = HttpConnection::new();
        conn.on_request(chunk(10, request));
        conn.on_request(chunk(11, b"GET /after HTTP/1.1\r\n\r\n"));
        conn.on_response(chunk(20, refusal));
        conn.on_response(chunk(21, OK));
        let done = conn.take_completed();
        let targets: Vec<_> = done.iter().map(|e| e.request.head.target()).collect();
        assert_eq!(targets[1], "/after");
        assert_eq!(done[1].request.first_byte_ns, 11);
    }
    let mut conn = HttpConnection::new();
    conn.on_request(chunk(10, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
    conn.on_request(chunk(11, b"GET /not-http HTTP/1.1\r\n\r\n"));
    conn.on_response(chunk(20, b"HTTP/1.1 101 Switching Protocols\r\n\r\n"));
    assert_eq!(conn.take_completed().len(), 1);
    assert!(conn.close(30).is_empty());
}

/// Requests an attacker might send, each with what the server writes back.
fn odd_request() -> impl Strategy<Value = (&'static [u8], &'static [u8])> {
    const BAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    prop::sample::select(vec![
        (&b"GET / HTTP/1.1\r\n\r\n"[..], OK),
        (b"GET /a HTTP/1.2\r\n\r\n", OK),
        (b"GET  /b   HTTP/1.10\r\n\r\n", OK),
        (b"GET /\xff HTTP/1.1\nX@y: 1\nNoColon\nX: \x01\n\n", OK),
        (
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\na;x\nAAAA\r\nBBBB\r\n0\n\n",
            OK,
        ),
        (
            b"POST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n000000000000000000003\r\nabc\r\n0\r\nT@: x\r\n\r\n",
            OK,
        ),
        (b"POST /e HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", OK),
        (b"GET /f HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        (b"GET /g HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", BAD),
        (b"HEAD /h HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"),
    ])
}

/// What ends a connection: nothing, or a request the server answers and then closes on.
fn last_request() -> impl Strategy<Value = Option<(&'static [u8], &'static [u8])>> {
    prop::option::of(prop::sample::select(vec![
        (
            &b"\x16\x03\x01\x00\xa5junk\r\n"[..],
            &b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..],
        ),
        (b"GET /x\r\n", b"bare HTTP/0.9 body"),
        (
            b"GET /v HTTP/2.0\r\n\r\n",
            b"HTTP/1.1 505 Version Not Supported\r\nContent-Length: 0\r\n\r\n",
        ),
    ]))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// However odd the requests and however their bytes are split, a connection yields one
    /// exchange per response the server wrote.
    #[test]
    fn one_exchange_per_response(
        requests in prop::collection::vec(odd_request(), 0..8),
        last in last_request(),
        cuts in prop::collection::vec(1..40usize, 1..8),
    ) {
        let mut conn = HttpConnection::new();
        let mut out = Vec::new();
        let mut ts = 0;
        let all: Vec<_> = requests.iter().copied().chain(last).collect();
        for (i, (request, response)) in all.iter().enumerate() {
            let mut rest: &[u8] = request;
            let mut k = i;
            while !rest.is_empty() {
                let n = cuts[k % cuts.len()].min(rest.len());
                ts += 1;
                conn.on_request(chunk(ts, &rest[..n]));
                rest = &rest[n..];
                k += 1;
            }
            ts += 1;
            conn.on_response(chunk(ts, response));
            out.extend(conn.take_completed());
        }
        out.extend(conn.close(ts + 1));
        prop_assert_eq!(out.len(), all.len(), "{:#?}", out);
        prop_assert!(out.windows(2).all(|w| w[0].request.first_byte_ns <= w[1].request.first_byte_ns));
    }
}

#[test]
fn a_head_cut_off_by_close_is_an_exchange_with_its_whole_lines_and_is_counted() {
    let mut conn = answered_once();
    conn.on_request(chunk(
        12,
        b"GET /cut HTTP/1.1\r\nHost: a\r\nAuthorization: Basic YWxpY2U6eA==\r\nX-Api-Key: half-of-a-se",
    ));
    let done = conn.close(13);
    assert_eq!(done.len(), 2, "{done:#?}");
    let cut = &done[1];
    assert_eq!(cut.end, ExchangeEnd::ConnectionClosed);
    assert!(cut.response.is_none());
    assert_eq!(
        cut.request_seen,
        RequestSeen::CutOff(b"GET /cut HTTP/1.1"[..].into())
    );
    assert_eq!(
        (cut.request.head.method(), cut.request.head.target()),
        ("GET", "/cut")
    );
    assert_eq!(cut.request.first_byte_ns, 12);
    // Whole header lines are read, as the server read them; the cut one is not.
    let head = &cut.request.head;
    assert!(head.header("authorization").is_some());
    assert!(head.header("x-api-key").is_none());
    assert_eq!(conn.stats().heads_cut_off, 1);
}

#[test]
fn a_request_line_cut_in_the_middle_keeps_only_its_raw_start() {
    let mut conn = HttpConnection::new();
    conn.on_request(chunk(10, b"GET /half-a-li"));
    let done = conn.close(11);
    assert_eq!(done.len(), 1);
    assert_eq!(
        done[0].request_seen,
        RequestSeen::CutOff(b"GET /half-a-li"[..].into())
    );
    assert!(done[0].request.head.method().is_empty());
    assert_eq!(conn.stats().heads_cut_off, 1);
}

#[test]
fn a_partial_head_the_server_answered_is_not_also_cut_off() {
    let mut conn = HttpConnection::new();
    conn.on_request(chunk(10, b"GET /very-long-line"));
    conn.on_response(chunk(
        11,
        b"HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ));
    let done = conn.close(12);
    assert_eq!(done.len(), 1, "{done:#?}");
    assert_eq!(done[0].response.as_ref().map(|r| r.head.status), Some(414));
    assert_eq!(conn.stats().heads_cut_off, 0);
}

#[test]
fn a_connection_closed_between_requests_cuts_nothing_off() {
    let mut conn = answered_once();
    assert_eq!(conn.close(12).len(), 1);
    assert_eq!(conn.stats().heads_cut_off, 0);
}

/// A response's framing is read from httparse's view of its head, not from a copy of its
/// fields: names in any case count, and lengths that disagree mean the body runs to the
/// close, so a second response hidden after the first is not taken for one.
#[test]
fn response_framing_reads_length_headers_in_any_case_and_distrusts_conflicts() {
    let mut conn = answered_once();
    conn.on_request(chunk(20, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"));
    conn.on_response(chunk(
        21,
        b"HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: 3\r\n\r\nabcHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    ));
    let done = conn.take_completed();
    let statuses: Vec<(&str, Option<u16>)> = done
        .iter()
        .map(|ex| {
            (
                ex.request.head.target(),
                ex.response.as_ref().map(|r| r.head.status),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [("/ok", Some(200)), ("/a", Some(200)), ("/b", Some(404))]
    );

    let mut conn = answered_once();
    conn.on_request(chunk(30, b"GET /c HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\n\r\n"));
    let hidden = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 50\r\n\r\n\
        abcHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    conn.on_response(chunk(31, hidden));
    let mut done = conn.take_completed();
    done.extend(conn.close(40));
    let c = done
        .iter()
        .find(|ex| ex.request.head.target() == "/c")
        .expect("/c recorded");
    let response = c.response.as_ref().expect("/c answered");
    assert_eq!(response.head.declared, Declared::Unknowable);
    // Everything after the head is its body, up to the close.
    assert_eq!(response.body_size, (hidden.len() - 58) as u64);
    let d = done.iter().find(|ex| ex.request.head.target() == "/d");
    assert!(d.is_none_or(|ex| ex.response.is_none()), "{d:#?}");
}

/// Pipelined requests after one that closes the connection were never requests to the
/// server (nginx answers the closing one and closes, dropping what it read after it):
/// unanswered at close, they are counted, not recorded, so a client cannot write
/// requests it never made into the trail. Whichever side said close, and a head cut
/// off after it alike. One that is answered after all is recorded.
#[test]
fn requests_after_one_that_closes_are_counted_not_recorded() {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let cases: [(&[u8], &[u8]); 3] = [
        (
            b"GET /a HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
            ok,
        ),
        (b"GET /a HTTP/1.0\r\n\r\n", ok),
        (
            b"GET /a HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    for (first, answer) in cases {
        let mut conn = HttpConnection::new();
        let mut sent = first.to_vec();
        sent.extend_from_slice(
            b"GET /admin/delete HTTP/1.1\r\n\r\nGET /admin/too HTTP/1.1\r\n\r\n",
        );
        sent.extend_from_slice(b"GET /cut HTTP/1.1\r\nHo");
        conn.on_request(chunk(1, &sent));
        conn.on_response(chunk(2, answer));
        let mut done = conn.take_completed();
        done.extend(conn.close(3));
        let targets: Vec<&str> = done.iter().map(|e| e.request.head.target()).collect();
        assert_eq!(targets, ["/a"], "{}", String::from_utf8_lossy(first));
        assert_eq!(conn.stats().requests_after_close, 3);
        assert_eq!(conn.stats().heads_cut_off, 0);
    }

    // HTTP/1.0 with keep-alive stays open; and a server that answers a request after a
    // close anyway gets its record.
    let mut conn = HttpConnection::new();
    conn.on_request(chunk(
        1,
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\nGET /c HTTP/1.1\r\n\r\n",
    ));
    conn.on_response(chunk(2, &[&ok[..], ok, ok].concat()));
    let done = conn.take_completed();
    let targets: Vec<&str> = done.iter().map(|e| e.request.head.target()).collect();
    assert_eq!(targets, ["/a", "/b", "/c"]);
    assert!(conn.close(3).is_empty());
    assert_eq!(conn.stats().requests_after_close, 0);
}
