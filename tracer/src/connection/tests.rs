use tracer_common::{Direction, EventHeader};

use super::{Finished, Tracker};
use crate::http::ExchangeEnd;
use crate::kernel::events::{BodyCopy, ConnectionEvent, Endpoints};

/// What one captured syscall carries at most, as the kernel copies it.
const PIECE: usize = 4096;

/// An event header from pid 4242, thread 4243, descriptor 7.
pub(crate) fn header(conn_id: u64, ts_ns: u64) -> EventHeader {
    EventHeader {
        kind: 0,
        _pad: [0; 3],
        tgid: 4242,
        tid: 4243,
        fd: 7,
        conn_id,
        ts_ns,
    }
}

/// `payload`, wholly captured, moving in `direction` on connection `conn_id`.
pub(crate) fn data(
    conn_id: u64,
    ts_ns: u64,
    direction: Direction,
    payload: &[u8],
) -> ConnectionEvent<'_> {
    ConnectionEvent::Data {
        header: header(conn_id, ts_ns),
        direction,
        len: payload.len() as u32,
        lost_before: 0,
        payload,
        decrypted: false,
        body: BodyCopy::Whole,
    }
}

fn feed(tracker: &mut Tracker, conn_id: u64, direction: Direction, bytes: &[u8]) -> Vec<Finished> {
    let mut out = Vec::new();
    for (i, piece) in bytes.chunks(PIECE).enumerate() {
        tracker.handle(data(conn_id, 1_000 + i as u64, direction, piece), &mut out);
    }
    out
}

/// The start of a request head that has not ended yet, `len` bytes long.
fn unfinished_head(len: usize) -> Vec<u8> {
    let mut head = b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
    head.resize(len, b'a');
    head
}

#[test]
fn partial_heads_past_the_global_budget_are_shed_counted_and_answered() {
    // 30 KiB arriving in pieces grows each buffer to 32 KiB of capacity.
    let mut tracker = Tracker::with_head_budget(80 << 10);
    let head = unfinished_head(30 << 10);
    feed(&mut tracker, 1, Direction::Ingress, &head);
    feed(&mut tracker, 2, Direction::Ingress, &head);
    assert_eq!(tracker.stats().http.heads_over_budget, 0);
    // The third would bring the total to 96 KiB: that connection sheds its buffer.
    // (Its later pieces start buffering anew, as after lost bytes, within the budget.)
    feed(&mut tracker, 3, Direction::Ingress, &head);
    let shed = tracker.stats().http.heads_over_budget;
    assert!(shed >= 1);
    assert!(tracker.buffered <= 80 << 10, "{}", tracker.buffered);

    // The rest of the shed head does not parse; the server's answer to it is recorded.
    assert!(feed(&mut tracker, 3, Direction::Ingress, b"\r\n\r\n").is_empty());
    let answered = feed(
        &mut tracker,
        3,
        Direction::Egress,
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].exchange.end, ExchangeEnd::Complete);
    assert!(answered[0].exchange.unparsed_request().is_some());

    // Heads that complete free their share: the next long head fits again.
    let done = [head.as_slice(), b"\r\n\r\n"].concat();
    feed(&mut tracker, 1, Direction::Ingress, b"\r\n\r\n");
    feed(&mut tracker, 2, Direction::Ingress, b"\r\n\r\n");
    assert_eq!(tracker.buffered, 0);
    feed(&mut tracker, 4, Direction::Ingress, &head);
    feed(&mut tracker, 5, Direction::Ingress, &done);
    assert_eq!(tracker.stats().http.heads_over_budget, shed);

    // Closing a connection returns its share.
    let mut out = Vec::new();
    tracker.handle(
        ConnectionEvent::Close {
            header: header(4, 9_000),
        },
        &mut out,
    );
    assert_eq!(tracker.buffered, 0);
}

/// The kernel's Open of `conn_id` on the test descriptor, from the client `peer_port`.
fn open(conn_id: u64, ts_ns: u64, peer_port: u16) -> ConnectionEvent<'static> {
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    ConnectionEvent::Open {
        header: header(conn_id, ts_ns),
        endpoints: Endpoints {
            local: loopback,
            local_port: 8080,
            peer: loopback,
            peer_port,
        },
        socket: u64::from(peer_port),
    }
}

fn handle(tracker: &mut Tracker, event: ConnectionEvent<'_>) -> Vec<Finished> {
    let mut out = Vec::new();
    tracker.handle(event, &mut out);
    out
}

#[test]
fn a_connection_the_kernel_forgot_continues_under_its_new_id_and_keeps_its_own() {
    let mut tracker = Tracker::new();
    assert!(handle(&mut tracker, open(1, 10, 40_000)).is_empty());
    feed(
        &mut tracker,
        1,
        Direction::Ingress,
        b"GET /a HTTP/1.1\r\nHo",
    );
    // CONNS dropped the entry; the next syscall on the descriptor opens it anew.
    assert!(handle(&mut tracker, open(2, 20, 40_000)).is_empty());
    feed(&mut tracker, 2, Direction::Ingress, b"st: x\r\n\r\n");
    let done = feed(
        &mut tracker,
        2,
        Direction::Egress,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].exchange.end, ExchangeEnd::Complete);
    assert_eq!(done[0].exchange.request.head.target(), "/a");
    assert_eq!(done[0].meta.conn_id, 1);
    let stats = tracker.stats();
    assert_eq!(
        (
            stats.connections,
            stats.open_connections,
            stats.connections_forgotten
        ),
        (1, 1, 1)
    );

    // Its close arrives under the new id.
    handle(
        &mut tracker,
        ConnectionEvent::Close {
            header: header(2, 30),
        },
    );
    assert_eq!(tracker.stats().open_connections, 0);
    assert!(tracker.by_fd.is_empty());
}

#[test]
fn a_forgotten_connection_closed_unseen_ends_when_its_descriptor_is_reused() {
    let mut tracker = Tracker::new();
    handle(&mut tracker, open(1, 10, 40_000));
    feed(
        &mut tracker,
        1,
        Direction::Ingress,
        b"GET /gone HTTP/1.1\r\n\r\n",
    );
    // Another client's connection on the same descriptor: the first was closed unseen.
    let ended = handle(&mut tracker, open(2, 20, 40_001));
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].exchange.end, ExchangeEnd::ConnectionClosed);
    assert_eq!(ended[0].meta.conn_id, 1);
    let stats = tracker.stats();
    assert_eq!(
        (
            stats.connections,
            stats.open_connections,
            stats.connections_forgotten
        ),
        (2, 1, 1)
    );
}

#[test]
fn ciphertext_of_a_forgotten_tls_connection_is_not_parsed() {
    let mut tracker = Tracker::new();
    handle(&mut tracker, open(1, 10, 40_000));
    handle(
        &mut tracker,
        ConnectionEvent::Tls {
            header: header(1, 11),
        },
    );
    handle(&mut tracker, open(2, 20, 40_000));
    // New to the kernel, the connection's socket reads come through until an SSL call.
    feed(
        &mut tracker,
        2,
        Direction::Ingress,
        b"\x17\x03\x03\x00\x20junk",
    );
    let request = b"GET /tls HTTP/1.1\r\n\r\n";
    let mut decrypted = data(2, 21, Direction::Ingress, request);
    if let ConnectionEvent::Data { decrypted: d, .. } = &mut decrypted {
        *d = true;
    }
    handle(&mut tracker, decrypted);
    let mut response = data(2, 22, Direction::Egress, b"HTTP/1.1 204 No Content\r\n\r\n");
    if let ConnectionEvent::Data { decrypted: d, .. } = &mut response {
        *d = true;
    }
    let done = handle(&mut tracker, response);
    assert_eq!(done.len(), 1);
    assert!(done[0].meta.tls);
    assert_eq!(done[0].exchange.request.head.target(), "/tls");
    assert_eq!(tracker.stats().http.non_http_chunks, 0);
}

/// Counts each thread's allocations, so that a test can tell what its own code
/// allocated while other tests run beside it.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_allocation() {
    // Not during the thread's teardown, when the counter may be gone.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller's guarantees are the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: as above.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: CountingAllocator = CountingAllocator;

#[test]
fn keep_alive_exchanges_allocate_nothing_once_warm() {
    let request = b"GET /orders/42?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 3\r\n\r\nok\n";
    let mut tracker = Tracker::new();
    let mut out = Vec::with_capacity(4);
    tracker.handle(open(1, 10, 40_000), &mut out);
    let mut ts = 100;
    let mut exchange = |tracker: &mut Tracker, out: &mut Vec<Finished>| {
        tracker.handle(data(1, ts, Direction::Ingress, request), out);
        tracker.handle(data(1, ts + 1, Direction::Egress, response), out);
        ts += 2;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].exchange.request.head.target(), "/orders/42?x=1");
        // The record has been written: the exchange goes, its buffers with it.
        out.clear();
    };
    for _ in 0..10 {
        exchange(&mut tracker, &mut out);
    }
    let before = ALLOCATIONS.with(|n| n.get());
    for _ in 0..1_000 {
        exchange(&mut tracker, &mut out);
    }
    assert_eq!(
        ALLOCATIONS.with(|n| n.get()) - before,
        0,
        "allocations in 1,000 exchanges"
    );
}

/// The kernel's Open of `conn_id` on descriptor `fd` of process `tgid`, for `socket`.
fn open_as(
    conn_id: u64,
    tgid: u32,
    fd: i32,
    peer_port: u16,
    socket: u64,
) -> ConnectionEvent<'static> {
    let ConnectionEvent::Open { endpoints, .. } = open(conn_id, 10, peer_port) else {
        unreachable!("open() makes an Open");
    };
    ConnectionEvent::Open {
        header: EventHeader {
            tgid,
            tid: tgid,
            fd,
            ..header(conn_id, 10)
        },
        endpoints,
        socket,
    }
}

/// `payload` moving on descriptor `conn_id` of process `tgid`.
fn data_as(conn_id: u64, tgid: u32, direction: Direction, payload: &[u8]) -> ConnectionEvent<'_> {
    let mut event = data(conn_id, 20, direction, payload);
    if let ConnectionEvent::Data { header, .. } = &mut event {
        header.tgid = tgid;
    }
    event
}

/// A CGI server: the parent reads the request and writes the status line; its forked
/// child, the socket dup2'd onto its stdout, writes the rest. One connection, one
/// record, whichever of the two lets go of the socket first.
#[test]
fn a_socket_on_a_second_descriptor_is_one_connection_until_its_last_close() {
    for child_exits_first in [true, false] {
        let mut tracker = Tracker::new();
        handle(&mut tracker, open(1, 10, 40_000));
        feed(
            &mut tracker,
            1,
            Direction::Ingress,
            b"GET /cgi-bin/hello HTTP/1.1\r\nHost: a\r\n\r\n",
        );
        feed(
            &mut tracker,
            1,
            Direction::Egress,
            b"HTTP/1.0 200 Script output follows\r\n",
        );
        assert!(handle(&mut tracker, open_as(2, 5000, 1, 40_000, 40_000)).is_empty());
        let body = b"Content-Type: text/plain\r\n\r\nhello";
        assert!(handle(&mut tracker, data_as(2, 5000, Direction::Egress, body)).is_empty());
        let stats = tracker.stats();
        assert_eq!((stats.connections, stats.shared_descriptors), (1, 1));

        let child_exit = ConnectionEvent::Exit {
            header: EventHeader {
                tgid: 5000,
                tid: 5000,
                ..header(0, 30)
            },
        };
        let parent_close = ConnectionEvent::Close {
            header: header(1, 40),
        };
        let (first, last) = if child_exits_first {
            (child_exit, parent_close)
        } else {
            (parent_close, child_exit)
        };
        assert!(handle(&mut tracker, first).is_empty());
        assert_eq!(tracker.stats().open_connections, 1);
        let done = handle(&mut tracker, last);
        assert_eq!(done.len(), 1, "child exits first: {child_exits_first}");
        let exchange = &done[0].exchange;
        assert_eq!(exchange.end, ExchangeEnd::Complete);
        assert_eq!(exchange.request.head.target(), "/cgi-bin/hello");
        assert_eq!(done[0].meta.conn_id, 1);
        assert_eq!(done[0].meta.tgid, 4242);
        assert_eq!(tracker.stats().open_connections, 0);
        assert!(tracker.by_socket.is_empty() && tracker.joined.is_empty());
    }
}

/// A socket number is trusted only with the same endpoints: a stale or reused number
/// never merges two TCP connections.
#[test]
fn the_same_socket_number_with_other_endpoints_is_another_connection() {
    let mut tracker = Tracker::new();
    handle(&mut tracker, open_as(1, 4242, 7, 40_000, 99));
    handle(&mut tracker, open_as(2, 4242, 8, 40_001, 99));
    let stats = tracker.stats();
    assert_eq!((stats.connections, stats.shared_descriptors), (2, 0));
    feed(
        &mut tracker,
        2,
        Direction::Ingress,
        b"GET /two HTTP/1.1\r\n\r\n",
    );
    let done = feed(
        &mut tracker,
        2,
        Direction::Egress,
        b"HTTP/1.1 204 No Content\r\n\r\n",
    );
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].meta.conn_id, 2);
}
