//! The public data model: what goes in (chunks) and what comes out (exchanges).

pub use super::h2::Grpc;
use super::reuse;

/// One kernel data event's bytes for one direction of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// Monotonic ns when the syscall returned.
    pub ts_ns: u64,
    /// Bytes that were copied (a prefix of what was transferred).
    pub data: &'a [u8],
    /// Bytes transferred right after `data` in this syscall but not copied (capture bound).
    pub missing: u32,
    /// Bytes transferred before `data` whose events were lost entirely.
    pub gap_before: u32,
}

/// A chunk captured whole, at `ts_ns`: what most tests feed.
#[cfg(test)]
pub(crate) fn chunk(ts_ns: u64, data: &[u8]) -> Chunk<'_> {
    Chunk {
        ts_ns,
        data,
        missing: 0,
        gap_before: 0,
    }
}

/// Counters for diagnostics, cumulative for one connection.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub struct HttpStats {
    /// Runs of bytes ignored because they are not HTTP (one per chunk they were found in).
    pub non_http_chunks: u64,
    pub non_http_bytes: u64,
    /// Heads that exceeded `MAX_HEAD_BYTES` without completing.
    pub oversized_heads: u64,
    /// Lost or uncaptured bytes fell inside a head or chunked framing (or pending requests
    /// overflowed), so parsing had to resync.
    pub desyncs: u64,
    /// Response heads that could not be paired with a pending request.
    pub orphan_responses: u64,
    /// Partial heads (or held bytes) dropped because all connections together held more
    /// than the tracker's budget for them.
    pub heads_over_budget: u64,
    /// Connections that opened with the HTTP/2 preface (decoded by `h2`).
    pub http2_connections: u64,
    pub http2: Http2Stats,
    /// Requests whose framing servers disagree on (see `Exchange::framing_ambiguous`).
    pub ambiguous_framing: u64,
    /// Request heads a close or reset cut off before they ended (each is a record:
    /// `RequestSeen::CutOff`).
    pub heads_cut_off: u64,
    /// Requests (whole or cut off) that followed one after which the connection closes
    /// (`Connection: close` from either side, HTTP/1.0 without keep-alive) and were left
    /// unanswered when it closed: the server never took them for requests, so they are
    /// counted, not recorded.
    pub requests_after_close: u64,
}

impl HttpStats {
    /// Adds another connection's counts (totals over connections).
    pub fn absorb(&mut self, s: &Self) {
        self.non_http_chunks += s.non_http_chunks;
        self.non_http_bytes += s.non_http_bytes;
        self.oversized_heads += s.oversized_heads;
        self.desyncs += s.desyncs;
        self.orphan_responses += s.orphan_responses;
        self.heads_over_budget += s.heads_over_budget;
        self.http2_connections += s.http2_connections;
        self.http2.absorb(&s.http2);
        self.ambiguous_framing += s.ambiguous_framing;
        self.heads_cut_off += s.heads_cut_off;
        self.requests_after_close += s.requests_after_close;
    }
}

/// What HTTP/2 decoding met on one connection, for the loss report.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub struct Http2Stats {
    /// Streams whose request headers were seen.
    pub streams: u64,
    /// HTTP/1.1 connections switched to HTTP/2 by `Upgrade: h2c`.
    pub upgrades: u64,
    /// Streams ended by RST_STREAM.
    pub resets: u64,
    /// Connections joined mid-way (no preface seen): HPACK tables unknown at first.
    pub partial_connections: u64,
    /// Bytes lost or uncopied where frame boundaries lay: framing picked up again at the
    /// next chunk, HPACK tables no longer known.
    pub framing_lost: u64,
    /// Header blocks that could not be decoded (unknown table entries, malformed HPACK,
    /// lost or oversized frames).
    pub hpack_errors: u64,
    /// Header lists cut at `hpack::MAX_HEADER_LIST` (a huge list or an HPACK bomb).
    pub header_lists_truncated: u64,
    /// Header blocks given up on at `conn::MAX_HEADER_BLOCK` (CONTINUATION flood).
    pub continuation_floods: u64,
    /// Non-DATA frames above `frame::MAX_BUFFERED_PAYLOAD`, skipped.
    pub oversized_frames: u64,
    /// Frames that break the protocol (bad padding, CONTINUATION out of place).
    pub malformed_frames: u64,
    /// Frames for streams that are not tracked.
    pub orphan_frames: u64,
    /// New streams beyond `conn::MAX_OPEN_STREAMS`, not recorded.
    pub streams_over_limit: u64,
}

impl Http2Stats {
    pub fn absorb(&mut self, s: &Self) {
        self.streams += s.streams;
        self.upgrades += s.upgrades;
        self.resets += s.resets;
        self.partial_connections += s.partial_connections;
        self.framing_lost += s.framing_lost;
        self.hpack_errors += s.hpack_errors;
        self.header_lists_truncated += s.header_lists_truncated;
        self.continuation_floods += s.continuation_floods;
        self.oversized_frames += s.oversized_frames;
        self.malformed_frames += s.malformed_frames;
        self.orphan_frames += s.orphan_frames;
        self.streams_over_limit += s.streams_over_limit;
    }
}

/// The header fields of one head: a single copy of their bytes plus where each name
/// and value lies in it. Two buffers per head instead of two per header, both taken
/// from and given back to the free lists of `reuse`, so a head costs no allocation
/// once the tracer has run a moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    bytes: Vec<u8>,
    /// (name start, name end, value start, value end) into `bytes`.
    spans: Vec<[u32; 4]>,
}

impl Drop for Headers {
    fn drop(&mut self) {
        reuse::give_back(
            std::mem::take(&mut self.bytes),
            std::mem::take(&mut self.spans),
        );
    }
}

impl Headers {
    /// `head` is the buffer httparse parsed; every name and value of `raw` borrows from
    /// it. `texts` (a request's method and target) are held too, and where each lies in
    /// the buffer is returned: a text inside `head` is found there, any other is
    /// appended. One buffer for the request line and the headers together.
    pub(crate) fn with_texts<const N: usize>(
        head: &[u8],
        raw: &[httparse::Header<'_>],
        texts: [&[u8]; N],
    ) -> (Self, [[u32; 2]; N]) {
        let base = head.as_ptr() as usize;
        let within = |s: &[u8]| -> Option<[u32; 2]> {
            let start = (s.as_ptr() as usize).wrapping_sub(base);
            (start + s.len() <= head.len()).then_some([start as u32, (start + s.len()) as u32])
        };
        // Empty slices need not point into the buffer.
        let span = |s: &[u8]| if s.is_empty() { None } else { within(s) }.unwrap_or([0, 0]);
        let mut spans = reuse::spans(raw.len());
        spans.extend(raw.iter().map(|h| {
            let [ns, ne] = span(h.name.as_bytes());
            let [vs, ve] = span(h.value);
            [ns, ne, vs, ve]
        }));
        let outside: usize = texts
            .iter()
            .filter(|t| within(t).is_none())
            .map(|t| t.len())
            .sum();
        let mut bytes = reuse::bytes(head.len() + outside);
        bytes.extend_from_slice(head);
        let texts = texts.map(|text| within(text).unwrap_or_else(|| append(&mut bytes, text)));
        (Self::held(bytes, spans), texts)
    }

    fn held(bytes: Vec<u8>, spans: Vec<[u32; 4]>) -> Self {
        Self { bytes, spans }
    }

    /// The text at `span`, as [`Headers::with_texts`] gave it; texts are only ever
    /// given as `str`, so this is never empty for want of UTF-8.
    fn text(&self, [start, end]: [u32; 2]) -> &str {
        self.bytes
            .get(start as usize..end as usize)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// Fields decoded elsewhere (HTTP/2's HPACK), copied into one buffer with `texts`
    /// after them; see [`Headers::with_texts`].
    pub(crate) fn from_pairs<'p, const N: usize>(
        pairs: impl Clone + Iterator<Item = (&'p [u8], &'p [u8])>,
        texts: [&[u8]; N],
    ) -> (Self, [[u32; 2]; N]) {
        let (count, len) = pairs.clone().fold((0, 0), |(count, len), (n, v)| {
            (count + 1, len + n.len() + v.len())
        });
        let mut bytes = reuse::bytes(len + texts.iter().map(|t| t.len()).sum::<usize>());
        let mut spans = reuse::spans(count);
        for (name, value) in pairs {
            let [ns, ne] = append(&mut bytes, name);
            let [vs, ve] = append(&mut bytes, value);
            spans.push([ns, ne, vs, ve]);
        }
        let texts = texts.map(|text| append(&mut bytes, text));
        (Self::held(bytes, spans), texts)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// (name as sent, value) in order. Names are tokens (ASCII), compared as bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|&[ns, ne, vs, ve]| {
            (
                &self.bytes[ns as usize..ne as usize],
                &self.bytes[vs as usize..ve as usize],
            )
        })
    }

    /// Values of every header called `name`, ignoring case, in order. Compares bytes:
    /// records look up a dozen names per request, and UTF-8 checks of every name showed up.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let name = name.as_bytes();
        self.spans
            .iter()
            .filter(move |&&[ns, ne, _, _]| {
                self.bytes[ns as usize..ne as usize].eq_ignore_ascii_case(name)
            })
            .map(|&[_, _, vs, ve]| &self.bytes[vs as usize..ve as usize])
    }

    /// Value of the first header called `name`, ignoring case.
    pub fn get<'a>(&'a self, name: &str) -> Option<&'a [u8]> {
        let name = name.as_bytes();
        self.spans
            .iter()
            .find(|&&[ns, ne, _, _]| {
                self.bytes[ns as usize..ne as usize].eq_ignore_ascii_case(name)
            })
            .map(|&[_, _, vs, ve]| &self.bytes[vs as usize..ve as usize])
    }
}

/// Appends `text` to `bytes`; returns where it lies there.
fn append(bytes: &mut Vec<u8>, text: &[u8]) -> [u32; 2] {
    let start = bytes.len() as u32;
    bytes.extend_from_slice(text);
    [start, bytes.len() as u32]
}

/// The default is the placeholder for a request that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHead {
    /// Where the method and the request-target lie in `headers`' buffer, which holds the
    /// request line too: no allocation of their own.
    line: [[u32; 2]; 2],
    /// 0 for HTTP/1.0 (and 0.9), 1 for HTTP/1.1; larger for the HTTP/1.x versions servers
    /// accept as 1.1.
    pub minor_version: u8,
    /// An HTTP/0.9 simple request (`GET /x` and a line end): no headers, and the server
    /// answers with a bare body and closes.
    pub http09: bool,
    pub headers: Headers,
}

impl RequestHead {
    /// `headers` holds `method` and `target` where `line` says, as
    /// [`Headers::with_texts`] or [`Headers::from_pairs`] placed them.
    pub(crate) fn new(
        headers: Headers,
        line: [[u32; 2]; 2],
        minor_version: u8,
        http09: bool,
    ) -> Self {
        Self {
            line,
            minor_version,
            http09,
            headers,
        }
    }

    pub fn method(&self) -> &str {
        self.headers.text(self.line[0])
    }

    /// Request-target as sent: origin-form, absolute-form, `*`, or authority for CONNECT.
    pub fn target(&self) -> &str {
        self.headers.text(self.line[1])
    }

    /// Value of the first header called `name`, ignoring case.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }
}

/// What a response head says, read while it is parsed: its fields are not kept, since
/// no record needs them (two allocations and a copy of the head less per exchange).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// What its Transfer-Encoding and Content-Length declare about the body.
    pub declared: Declared,
    /// Its `Upgrade` offers h2c (with a 101: the connection switches to HTTP/2).
    pub offers_h2c: bool,
    /// The server closes the connection after it (`closes_connection`).
    pub closes: bool,
}

/// How a body is delimited per RFC 9112 section 6.3, before the message kind is considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Chunked,
    Length(u64),
    /// Transfer-Encoding without chunked last, or an unusable Content-Length: the length
    /// cannot be known, so the peer will close.
    Unknowable,
    Absent,
}

/// Header fields looked up by name, however they are held: a parsed request's
/// [`Headers`], or httparse's view of a response head being parsed.
pub(crate) trait HeaderLookup {
    /// Values of every field called `name`, ignoring case, in order.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;
}

impl HeaderLookup for Headers {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name)
    }
}

impl HeaderLookup for [httparse::Header<'_>] {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub head: RequestHead,
    /// Timestamp of the chunk that carried the first byte of this request.
    pub first_byte_ns: u64,
    /// Bytes of the head including the final empty line.
    pub head_size: u64,
    /// Body bytes (decoded payload for chunked), counted even when they were not captured;
    /// chunked framing that was not captured cannot be told from payload and is counted too.
    pub body_size: u64,
    pub body_complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub head: ResponseHead,
    /// Timestamp of the chunk that completed the final (non-1xx) response head.
    pub head_ns: u64,
    /// Timestamp of the chunk that completed the body (`head_ns` when there is no body); for a
    /// close-delimited body, the close; for a body cut short, the last chunk that carried some of it.
    pub end_ns: u64,
    pub head_size: u64,
    /// As for requests; for close-delimited bodies, everything until close.
    pub body_size: u64,
    pub body_complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeEnd {
    /// The response was fully received (body framing satisfied).
    Complete,
    /// The connection closed before a (complete) response.
    ConnectionClosed,
    /// A response was sent but could not be parsed (gap, truncation, garbage). With
    /// `response: None` its head was lost and the status is unknown; with `Some`, the head was
    /// parsed but the body framing was lost, so the body is incomplete.
    ResponseUnparsed,
    /// 101 Switching Protocols or a successful CONNECT: later bytes are not HTTP and are ignored.
    Upgraded,
    /// HTTP/2: RST_STREAM from either side ended the stream.
    Reset,
    /// HTTP/2: the server's GOAWAY named a last stream below this one.
    GoAway,
}

/// What an HTTP/2 stream adds to its exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Info {
    pub stream_id: u32,
    /// Some header block of the stream decoded with an incomplete HPACK table, did not
    /// decode, or was cut at the header list bound: headers may be missing.
    pub partial: bool,
    /// RST_STREAM's error code.
    pub reset_code: Option<u32>,
    pub grpc: Option<Grpc>,
}

/// Finished exchanges until their connection's owner takes them: most often one. The
/// first is given room for exactly one. A `Vec`'s first growth is to four, 1.3 KiB,
/// which glibc's malloc serves only after consolidating its fast bins, freed a moment
/// before by the request's parsing: 3% of the tracer's CPU under `h2load` (`perf`).
#[derive(Default)]
pub struct Finished(Vec<Exchange>);

impl Finished {
    pub fn push(&mut self, exchange: Exchange) {
        if self.0.capacity() == 0 {
            self.0.reserve_exact(1);
        }
        self.0.push(exchange);
    }

    /// Takes `spare`, an empty buffer that the connection's owner keeps between events,
    /// when this holds no buffer: what one event completes then needs no allocation of
    /// its own, and [`Finished::take`] hands the buffer back.
    pub fn lend(&mut self, spare: &mut Vec<Exchange>) {
        if self.0.capacity() == 0 && spare.is_empty() {
            std::mem::swap(&mut self.0, spare);
        }
    }

    /// Adds `more` after those held; takes its buffer over when none are.
    pub fn append(&mut self, more: Vec<Exchange>) {
        if self.0.is_empty() {
            self.0 = more;
        } else {
            self.0.extend(more);
        }
    }

    pub fn last_mut(&mut self) -> Option<&mut Exchange> {
        self.0.last_mut()
    }

    /// Moves them out. Not a drain that keeps the buffer: an idle keep-alive connection
    /// would then hold it for nothing (10,000 connections went from 58 to 71 MiB of RSS
    /// with four exchanges' room each).
    pub fn take(&mut self) -> Vec<Exchange> {
        std::mem::take(&mut self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub request: Request,
    pub response: Option<Response>,
    pub end: ExchangeEnd,
    /// This request or an earlier one on the connection was framed in a way servers read
    /// differently, so where this request starts is uncertain.
    pub framing_ambiguous: bool,
    /// How much of the request the tracer read.
    pub request_seen: RequestSeen,
    /// Set for exchanges that were HTTP/2 streams.
    pub http2: Option<Http2Info>,
}

/// How much of a request's head the tracer read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestSeen {
    /// All of it.
    Head,
    /// The server answered bytes that did not parse as a request (or were not seen): the
    /// request head is a placeholder, and this is the start of its raw first line (at most
    /// 64 bytes, possibly empty).
    Unparsed(Box<[u8]>),
    /// The connection closed before the head ended (a close or a reset): the head holds
    /// the request line and the header lines that were whole, if they parsed, and this is
    /// the start of the raw first line.
    CutOff(Box<[u8]>),
}

impl Exchange {
    /// The start of the raw request line of a request that did not parse.
    pub fn unparsed_request(&self) -> Option<&[u8]> {
        match &self.request_seen {
            RequestSeen::Unparsed(line) => Some(line),
            RequestSeen::Head | RequestSeen::CutOff(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_inside_the_head_are_found_there_and_others_appended() {
        let head = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        // As httparse gives them: borrowed from the head.
        let raw = [httparse::Header {
            name: std::str::from_utf8(&head[17..21]).unwrap(),
            value: &head[23..24],
        }];
        let (headers, [method, target]) =
            Headers::with_texts(head, &raw, [&head[..3], &head[4..6]]);
        assert_eq!((method, target), ([0, 3], [4, 6]));
        assert_eq!(headers.bytes.len(), head.len(), "nothing appended");
        let lossy = "/caf\u{fffd}";
        let (headers, [method, target]) =
            Headers::with_texts(head, &raw, [&head[..3], lossy.as_bytes()]);
        let request = RequestHead::new(headers, [method, target], 1, false);
        assert_eq!(request.method(), "GET");
        assert_eq!(request.target(), lossy);
        assert_eq!(request.header("host"), Some(&b"x"[..]));
    }

    #[test]
    fn pairs_keep_their_texts_after_the_fields() {
        let pairs = [(&b"host"[..], &b"example"[..])];
        let (headers, line) = Headers::from_pairs(pairs.into_iter(), [&b"POST"[..], &b"/up"[..]]);
        let request = RequestHead::new(headers, line, 0, false);
        assert_eq!((request.method(), request.target()), ("POST", "/up"));
        assert_eq!(request.header("Host"), Some(&b"example"[..]));
        assert_eq!(RequestHead::default().target(), "");
    }
}
