//! HTTP/1.x exchanges from the two byte streams of one server-side connection.
//!
//! Each direction is split into heads and bodies on its own (`stream`); `HttpConnection` pairs
//! response N with request N (FIFO, as HTTP/1.x requires) and emits exchanges in request order.
//!
//! The input is lossy: events can be lost (`gap_before`) and only a prefix of each syscall's
//! bytes is copied (`missing`). Body bytes only need counting, so losses there are harmless.
//! A loss inside a head desynchronises its direction, which resyncs at the next chunk
//! boundary; a loss inside chunked framing leaves the body counting bytes until a chunk-size
//! line or a new message starts a later chunk. Chunks of both directions must be fed in
//! timestamp order: pairing relies on a response never starting before its request.
//!
//! Over 400 lines: the request side and the connection's life; the response side is in
//! `responses`.

mod body;
mod chunk;
#[cfg(test)]
mod evasion_tests;
mod h2;
mod head;
mod held;
mod lenient;
mod preface;
mod responses;
mod reuse;
mod span;
mod stream;
#[cfg(test)]
mod tests;
mod types;

use std::collections::VecDeque;

use self::body::{Framing, Progress, ambiguous_framing, request_framing};
use self::h2::H2Connection;
use self::head::Head;
#[cfg(test)]
use self::head::MAX_HEAD_BYTES;
use self::preface::{Preface, Verdict};
use self::span::Parsed;
use self::stream::{Cursor, Event, Stream};
#[cfg(test)]
use self::types::{Declared, chunk};
use self::types::{Finished, HeaderLookup};

pub use self::types::{
    Chunk, Exchange, ExchangeEnd, Headers, HttpStats, Request, RequestHead, RequestSeen, Response,
    ResponseHead,
};

/// Requests awaiting a response beyond this are given up on, oldest first; a deeper pipeline
/// means responses are not being seen at all.
pub const MAX_PENDING: usize = 1024;

/// Starts of request lines that did not parse, kept to describe the responses to them.
const MAX_UNPARSED_LINES: usize = 16;

struct Pending {
    seq: u64,
    request: Request,
    /// The final response while its body is still arriving.
    response: Option<Response>,
    /// `Unparsed` for a response with no parsed request.
    seen: RequestSeen,
}

pub struct HttpConnection {
    requests: Stream<RequestHead>,
    responses: Stream<ResponseHead>,
    pending: VecDeque<Pending>,
    completed: Finished,
    next_seq: u64,
    /// The request whose body is being counted, so an exchange ended early can report the
    /// bytes so far.
    request_body_seq: Option<u64>,
    /// The response body being counted belongs to the front pending exchange (not an orphan).
    response_attached: bool,
    /// A request that may switch protocols; request bytes after it are dropped until its
    /// response says whether it did.
    upgrade_seq: Option<u64>,
    /// Response bytes were lost since the last response head, so whole responses may be gone.
    responses_lost: bool,
    closed: bool,
    /// HTTP/2 connections are counted once, not parsed as a stream of HTTP/1 junk.
    preface: Preface,
    /// The HTTP/2 decoder, once the preface was seen.
    h2: Option<Box<H2Connection>>,
    /// Non-HTTP/1 bytes the server wrote before any request (an HTTP/2 server's SETTINGS
    /// frame precedes the client's preface): junk only if no HTTP/2 preface follows.
    early_response_bytes: Option<u64>,
    /// Response bytes went to the parser (so later ones are not "before any request").
    responses_started: bool,
    /// Request bytes that did not parse as a head: when they arrived and how their first
    /// line starts, oldest first. A response the server writes to them is recorded with it.
    unparsed_lines: VecDeque<(u64, Box<[u8]>)>,
    /// The first exchange from which on framing was ambiguous: servers may disagree on
    /// where this and later requests start, so their records say so.
    ambiguous_since: Option<u64>,
    /// The first byte of the partial request head a response answered (the server gave
    /// up on it, say with 414): at close it is accounted for, not cut off.
    answered_partial_head: Option<u64>,
    /// The first exchange after which the connection closes (its request or its
    /// response said so): requests after it that no response answered were never
    /// requests to the server (nginx reads them with the closing one, and drops them).
    closing_seq: Option<u64>,
    stats: HttpStats,
}

impl Default for HttpConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpConnection {
    /// Exchange `seq` ends the connection: the earliest such one counts.
    fn closes_after(&mut self, seq: u64) {
        self.closing_seq = Some(self.closing_seq.map_or(seq, |closing| closing.min(seq)));
    }

    pub fn new() -> Self {
        Self {
            requests: Stream::new(),
            responses: Stream::new(),
            pending: VecDeque::new(),
            completed: Finished::default(),
            next_seq: 0,
            request_body_seq: None,
            response_attached: false,
            upgrade_seq: None,
            responses_lost: false,
            closed: false,
            preface: Preface::new(),
            h2: None,
            early_response_bytes: None,
            responses_started: false,
            unparsed_lines: VecDeque::new(),
            ambiguous_since: None,
            answered_partial_head: None,
            closing_seq: None,
            stats: HttpStats::default(),
        }
    }

    /// Bytes the server read (request direction).
    pub fn on_request(&mut self, chunk: Chunk<'_>) {
        if self.closed {
            return;
        }
        match self.preface.check(&chunk) {
            Verdict::Held => return,
            Verdict::Ignore => {
                if let Some(h2) = &mut self.h2 {
                    h2.on_request(chunk);
                }
                self.sync_h2();
                return;
            }
            Verdict::Http2Midway => {
                self.early_response_bytes = None;
                self.stats.http2_connections += 1;
                let mut h2 = Box::new(H2Connection::new(true));
                h2.on_request(chunk);
                self.h2 = Some(h2);
                self.sync_h2();
                return;
            }
            Verdict::Http2(frames_at) => {
                // The server's SETTINGS before the preface were whole frames of their own.
                self.early_response_bytes = None;
                // After `Upgrade: h2c` the decoder exists already, holding stream 1.
                let mut h2 = self.h2.take().unwrap_or_else(|| {
                    self.stats.http2_connections += 1;
                    Box::new(H2Connection::new(false))
                });
                h2.on_request(Chunk {
                    data: &chunk.data[frames_at..],
                    gap_before: 0,
                    ..chunk
                });
                self.h2 = Some(h2);
                self.sync_h2();
                return;
            }
            Verdict::Http1(held) => {
                if let Some(bytes) = self.early_response_bytes.take() {
                    self.count_junk(bytes);
                }
                if let Some(held) = held {
                    self.parse_requests(held.chunk());
                }
            }
        }
        self.parse_requests(chunk);
    }

    fn parse_requests(&mut self, chunk: Chunk<'_>) {
        let mut cur = Cursor::new(&chunk);
        while let Some(event) = self.requests.step(&mut cur) {
            self.note_chunk_ambiguity();
            self.request_event(event, cur.ts);
        }
        self.note_chunk_ambiguity();
    }

    /// The request body being read had chunked framing servers read differently.
    fn note_chunk_ambiguity(&mut self) {
        if self.requests.take_ambiguous() {
            self.framing_ambiguous(self.next_seq.saturating_sub(1));
        }
    }

    fn framing_ambiguous(&mut self, seq: u64) {
        self.stats.ambiguous_framing += 1;
        self.ambiguous_since = Some(self.ambiguous_since.map_or(seq, |s| s.min(seq)));
    }

    /// Bytes the server wrote (response direction). sendfile bodies arrive as `data` empty
    /// with `missing` set to their length.
    pub fn on_response(&mut self, chunk: Chunk<'_>) {
        if self.closed {
            return;
        }
        if let Some(h2) = &mut self.h2 {
            h2.on_response(chunk);
            self.sync_h2();
            return;
        }
        if self.preface.is_http2() {
            return;
        }
        if self.preface.is_undecided()
            && !self.responses_started
            && !chunk.data.starts_with(b"HTTP/")
        {
            let bytes = chunk.data.len() as u64 + u64::from(chunk.missing);
            *self.early_response_bytes.get_or_insert(0) += bytes;
            return;
        }
        self.responses_started = true;
        let mut cur = Cursor::new(&chunk);
        while let Some(event) = self.responses.step(&mut cur) {
            self.response_event(event, cur.ts);
            if let Some(h2) = &mut self.h2 {
                // Switched to h2c: the rest of this write is HTTP/2 frames.
                h2.on_response(cur.rest());
                self.sync_h2();
                return;
            }
        }
    }

    /// Whether the next `n` response bytes are body bytes this parser need not see: the
    /// kernel may then leave them uncopied.
    pub fn response_body_absorbs(&self, n: u64) -> bool {
        !self.closed && self.h2.is_none() && self.responses.body_absorbs(n)
    }

    /// The same for the next `n` request bytes.
    pub fn request_body_absorbs(&self, n: u64) -> bool {
        !self.closed && self.h2.is_none() && self.requests.body_absorbs(n)
    }

    /// Lends `spare` (empty) to hold what the next input completes; the tracker keeps one
    /// such buffer for all its connections, so none holds one while idle.
    pub fn lend_output(&mut self, spare: &mut Vec<Exchange>) {
        self.completed.lend(spare);
    }

    /// Exchanges completed so far, in request order (HTTP/2: in the order streams ended).
    pub fn take_completed(&mut self) -> Vec<Exchange> {
        self.completed.take()
    }

    /// Moves what the HTTP/2 decoder finished and counted into this connection's output.
    fn sync_h2(&mut self) {
        if let Some(h2) = &mut self.h2 {
            self.completed.append(h2.take_completed());
            self.stats.http2 = h2.stats().clone();
        }
    }

    /// The connection closed at `ts_ns`. Returns the exchanges not yet taken, then every
    /// request that had a complete head but no complete response. Later input is ignored.
    pub fn close(&mut self, ts_ns: u64) -> Vec<Exchange> {
        if self.closed {
            return Vec::new();
        }
        if let Some(held) = self.preface.take_held() {
            self.parse_requests(held.chunk());
        }
        if let Some(h2) = &mut self.h2 {
            let cut = h2.close();
            self.completed.append(cut);
            self.sync_h2();
        }
        self.closed = true;
        if let Some(bytes) = self.early_response_bytes.take() {
            self.count_junk(bytes);
        }
        if self.response_attached {
            let until_close = self.responses.body_until_close();
            self.finish_front(if until_close {
                ExchangeEnd::Complete
            } else {
                ExchangeEnd::ConnectionClosed
            });
            if until_close && let Some(response) = self.last_response_mut() {
                response.body_complete = true;
                response.end_ns = ts_ns;
            }
        } else if let Some(start) = self.responses.partial_head_start()
            && self.front_awaits_response(start)
        {
            self.finish_front(ExchangeEnd::ResponseUnparsed);
        }
        while let Some(front) = self.pending.front() {
            if self.closing_seq.is_some_and(|closing| front.seq > closing) {
                self.pending.pop_front();
                self.stats.requests_after_close += 1;
            } else {
                self.finish_front(ExchangeEnd::ConnectionClosed);
            }
        }
        self.cut_off_head();
        self.take_completed()
    }

    /// A request head the close (or reset) cut off, that no response answered: servers
    /// log it (nginx as a 400 it never sent), so it becomes an exchange with what was
    /// seen, and is counted. Only at a known message boundary: after a loss or junk the
    /// buffered bytes may be the rest of something else.
    fn cut_off_head(&mut self) {
        if self.h2.is_some() {
            return;
        }
        let Some((first_byte_ns, bytes)) = self.requests.cut_head() else {
            return;
        };
        if self.answered_partial_head == Some(first_byte_ns) {
            return;
        }
        // It came after the request that closes the connection.
        if self.closing_seq.is_some() {
            self.stats.requests_after_close += 1;
            return;
        }
        self.stats.heads_cut_off += 1;
        let head = whole_lines_head(bytes).unwrap_or_default();
        let line = stream::first_line(bytes);
        let head_size = bytes.len() as u64;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.completed.push(Exchange {
            request: Request {
                head,
                first_byte_ns,
                head_size,
                body_size: 0,
                body_complete: false,
            },
            response: None,
            end: ExchangeEnd::ConnectionClosed,
            framing_ambiguous: self.ambiguous_since.is_some_and(|since| seq >= since),
            request_seen: RequestSeen::CutOff(line),
            http2: None,
        });
    }

    /// Requests whose responses have not been seen yet.
    pub fn awaiting_responses(&self) -> usize {
        self.pending.len() + self.h2.as_ref().map_or(0, |h2| h2.open_streams())
    }

    pub fn stats(&self) -> &HttpStats {
        &self.stats
    }

    /// Heap bytes held for later parsing in both directions (HTTP/1 only: the HTTP/2
    /// decoder bounds its own buffers per connection).
    pub fn buffered_bytes(&self) -> usize {
        self.requests.memory() + self.responses.memory()
    }

    /// Frees what `buffered_bytes` counts, each direction as after a capture loss, and
    /// counts each direction that held something.
    pub fn shed_buffers(&mut self) {
        for shed in [self.requests.shed(), self.responses.shed()] {
            self.stats.heads_over_budget += u64::from(shed);
        }
    }

    fn request_event(&mut self, event: Event<RequestHead>, ts: u64) {
        match event {
            Event::Head {
                head,
                first_byte_ns,
                size,
            } => self.request_head(head, first_byte_ns, size, ts),
            Event::BodyDone { size } => {
                if let Some(seq) = self.request_body_seq.take()
                    && let Some(p) = self.pending.iter_mut().rev().find(|p| p.seq == seq)
                {
                    p.request.body_size = size;
                    p.request.body_complete = true;
                }
            }
            Event::BodyCut { progress } => self.request_body_cut(progress),
            Event::Desync { .. } => self.stats.desyncs += 1,
            Event::Junk { bytes, line, .. } => {
                self.count_junk(bytes);
                if let Some(line) = line {
                    if self.unparsed_lines.len() == MAX_UNPARSED_LINES {
                        self.unparsed_lines.pop_front();
                    }
                    self.unparsed_lines.push_back((ts, line));
                }
            }
            Event::Oversized => self.stats.oversized_heads += 1,
        }
    }

    fn request_head(&mut self, head: RequestHead, first_byte_ns: u64, size: u64, ts: u64) {
        let framing = request_framing(&head);
        let may_switch = head.method() == "CONNECT" || head.header("upgrade").is_some();
        if self.pending.len() >= MAX_PENDING {
            self.stats.desyncs += 1;
            self.finish_front(ExchangeEnd::ResponseUnparsed);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if ambiguous_framing(&head) {
            self.framing_ambiguous(seq);
        }
        let http09 = head.http09;
        if !http09 && closes_connection(&head.headers, head.minor_version) {
            self.closes_after(seq);
        }
        self.pending.push_back(Pending {
            seq,
            request: Request {
                head,
                first_byte_ns,
                head_size: size,
                body_size: 0,
                body_complete: framing == Framing::None,
            },
            response: None,
            seen: RequestSeen::Head,
        });
        self.request_body_seq = (framing != Framing::None).then_some(seq);
        if http09 {
            // The server answers with a bare body and closes: nothing after is a request.
            self.requests.upgrade();
            return;
        }
        if may_switch {
            self.upgrade_seq = Some(seq);
        }
        self.requests.start_body(framing, may_switch, ts);
    }

    fn request_body_cut(&mut self, progress: Progress) {
        if let Some(seq) = self.request_body_seq.take()
            && let Some(p) = self.pending.iter_mut().rev().find(|p| p.seq == seq)
        {
            p.request.body_size = progress.size;
        }
    }
}

/// The request line and the header lines that were whole when a head was cut off, as a
/// head: a line cut in the middle (a credential, say) is never read.
fn whole_lines_head(bytes: &[u8]) -> Option<RequestHead> {
    let end = bytes.iter().rposition(|&b| b == b'\n')? + 1;
    let mut whole = bytes[..end].to_vec();
    whole.extend_from_slice(b"\r\n");
    match <RequestHead as Head>::parse(&whole) {
        Parsed::Complete(head, _) => Some(head),
        _ => None,
    }
}

/// Whether the connection ends after this message (RFC 9112, section 9.6): its
/// `Connection` has the `close` option, or it is HTTP/1.0 without `keep-alive`.
fn closes_connection(headers: &(impl HeaderLookup + ?Sized), minor_version: u8) -> bool {
    let has = |option: &[u8]| {
        headers.values("connection").any(|v| {
            v.split(|&b| b == b',')
                .any(|o| o.trim_ascii().eq_ignore_ascii_case(option))
        })
    };
    has(b"close") || (minor_version == 0 && !has(b"keep-alive"))
}

/// `Upgrade: h2c` among the protocols a request asks for or a 101 switches to.
fn offers_h2c(headers: &(impl HeaderLookup + ?Sized)) -> bool {
    headers.values("upgrade").any(|v| {
        v.split(|&b| b == b',')
            .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"h2c"))
    })
}
