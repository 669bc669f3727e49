//! The kernel's reading of a message head (tracer-ebpf's `body`): where the body a
//! response or request head announces ends, when nothing about that is in doubt, and
//! where the kernel stands in the client's requests. Here rather than in the kernel
//! crate so that it is unit-tested on the host; user space does not use it.
//!
//! Written for the verifier: a bounded loop over at most `HEAD_SCAN` bytes, whose
//! variables live in [`HeadScan`] (the per-CPU scratch map in the kernel), and byte
//! comparisons instead of slice comparisons.
use crate::MAX_CAPTURE;

/// Bytes of a transfer searched for the end of a head. nginx, Apache, Node.js and Python
/// write response heads of 150-400 bytes, and curl, wrk and ab send request heads of
/// 80-200; a longer head is copied whole, with its body.
pub const HEAD_SCAN: usize = 512;

/// Bytes of a write copied before its head is scanned: the scan's, and the five after a
/// head of `HEAD_SCAN` bytes that tell whether another response follows.
pub const HEAD_PREFIX: usize = HEAD_SCAN + 8;

/// Writes shorter than this are copied even inside a body: the lookup and the parse cost
/// about what copying them does.
pub const MIN_SKIP: u64 = 2048;

const fn be(bytes: &[u8; 8]) -> u64 {
    u64::from_be_bytes(*bytes)
}

/// The last 16 bytes seen, lower-cased, as two words: `hi` the older eight.
const CONTENT_LENGTH: (u64, u64) = (be(b"\ncontent"), be(b"-length:"));
const TRANSFER_ENCODING: (u64, u64) = (be(b"\ntransfe"), be(b"r-encodi"));
/// Request headers after which the body may not follow the head (`Expect: 100-continue`
/// lets the server answer first and the client send another request instead) or the
/// bytes after the head may not be HTTP at all (`Upgrade`).
const EXPECT: u64 = be(b"\nexpect:");
const UPGRADE: (u64, u64) = (b'\n' as u64, be(b"upgrade:"));
const HEAD_END: u64 = be(b"\0\0\0\0\r\n\r\n");

macro_rules! load {
    ($scan:ident . $field:ident) => {{
        let field = &$scan.$field;
        // SAFETY: a field of a live `HeadScan` borrowed by the caller.
        unsafe { core::ptr::read_volatile(field) }
    }};
}

macro_rules! store {
    ($scan:ident . $field:ident, $value:expr) => {{
        let value = $value;
        let field = &mut $scan.$field;
        // SAFETY: a field of a live `HeadScan` borrowed by the caller.
        unsafe { core::ptr::write_volatile(field, value) }
    }};
}

/// The head scan's variables, kept in the per-CPU scratch map rather than in registers
/// (through volatile accesses, so the compiler cannot keep them there): the verifier does
/// not track map memory, so every pass of the loop reaches its head in the same state and
/// is verified once, where registers holding these would multiply the states it explores
/// by every combination of their values, past its million-instruction limit.
#[repr(C)]
#[derive(Default)]
pub struct HeadScan {
    /// The last 16 bytes seen, lower-cased: `hi` the older eight.
    hi: u64,
    lo: u64,
    /// The Content-Length value read so far, and how many digits it has.
    length: u64,
    digits: u64,
    /// `IN_LENGTH` | `DIGITS_ENDED` | `SEEN_LENGTH` | `REFUSED`.
    state: u64,
    /// Bytes of the head, its blank line included; 0 until it ends.
    head_len: u64,
    /// Bytes copied from the write. Read from here, not from a register: the copy's
    /// loop ends in as many states as it can copy lengths, and each would be verified
    /// through the whole scan.
    captured: u64,
    /// The write's length.
    len: u64,
}

/// What a head announces, counted from the start of its write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announced {
    /// Bytes of the head: what of the write user space needs to see.
    pub head_len: u64,
    /// Where the body ends; past the end of the write.
    pub body_end: u64,
}

impl HeadScan {
    /// Records the write to scan: `len` bytes, `captured` of them copied.
    #[inline(always)]
    pub fn park(&mut self, len: u64, captured: usize) {
        let scan = self;
        store!(scan.len, len);
        store!(scan.captured, captured as u64);
    }

    #[inline(always)]
    pub fn captured(&self) -> u64 {
        let scan = self;
        load!(scan.captured)
    }

    /// What the parked write's response head announces (`data` holds its copied
    /// bytes); `None` unless it announces a body that goes on past the write.
    #[inline(always)]
    pub fn announced(&mut self, data: &[u8; 2 * MAX_CAPTURE]) -> Option<Announced> {
        announced(data, self)
    }

    /// What the parked read's request head announces; `None` unless it announces a body
    /// that goes on past the read.
    #[inline(always)]
    pub fn request_announced(&mut self, data: &[u8; 2 * MAX_CAPTURE]) -> Option<Announced> {
        request_announced(data, self)
    }
}

const IN_LENGTH: u64 = 1;
const DIGITS_ENDED: u64 = 2;
const SEEN_LENGTH: u64 = 4;
const REFUSED: u64 = 8;

#[inline(always)]
fn announced(data: &[u8; 2 * MAX_CAPTURE], scan: &mut HeadScan) -> Option<Announced> {
    if load!(scan.captured) < 16 || !status_has_body(data) {
        return None;
    }
    let head_len = scan_head::<false>(data, scan)? as usize;
    if head_len as u64 + 5 > load!(scan.captured) {
        return None;
    }
    // Body bytes follow the head, and they are not another response.
    if starts_with(data, head_len, b"HTTP/") {
        return None;
    }
    let body_end = head_len as u64 + load!(scan.length);
    (body_end > load!(scan.len)).then_some(Announced {
        head_len: head_len as u64,
        body_end,
    })
}

/// `next_request` when where the client's next request starts is not known: the kernel
/// then reads no request head and skips no request body on that connection.
pub const UNKNOWN: u64 = u64::MAX;

/// What the kernel does with a server's read on a plain connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestRead {
    /// The read starts a request: its head is scanned, which says where the next
    /// request starts ([`after_request_scan`]).
    Scan,
    /// The read lies wholly inside a request body whose length a scanned head declared:
    /// counted, not copied.
    Skip,
    /// Copied as always.
    Copy,
}

/// A server's read of `len` bytes that starts `at` bytes into what it read from the
/// connection, when the client's next request is known to start at `next_request`
/// (`UNKNOWN` if not): what to do with it, and where the next request starts after it.
///
/// The kernel knows where a request starts only at the connection's first byte and at
/// the end of a body whose length it read in a head at such a start; a read that ends
/// elsewhere loses that knowledge for good. So a body is only skipped when every byte
/// the server read before it was framed by heads the kernel read itself, and a
/// request-like text that a client places at the start of a read inside some other
/// body, or inside a head, never opens a window.
#[inline(always)]
pub fn request_read(at: u64, len: u64, next_request: u64) -> (RequestRead, u64) {
    if next_request == UNKNOWN || at > next_request {
        (RequestRead::Copy, UNKNOWN)
    } else if at == next_request {
        (RequestRead::Scan, next_request)
    } else if at + len > next_request {
        // The read ends past where the body ended: whatever follows it there is not read.
        (RequestRead::Copy, UNKNOWN)
    } else if len >= MIN_SKIP {
        (RequestRead::Skip, next_request)
    } else {
        (RequestRead::Copy, next_request)
    }
}

/// Where the next request starts after a read `at` whose head the scan read: the end
/// of the body it announced, or `UNKNOWN` when it announced none going past the read
/// (a GET, a body within the read, a head the scan does not take).
#[inline(always)]
pub fn after_request_scan(at: u64, announced: Option<Announced>) -> u64 {
    match announced {
        Some(Announced { body_end, .. }) => at + body_end,
        None => UNKNOWN,
    }
}

/// A request whose method has a body, with a head that declares its length and nothing
/// that could keep that body from following it (a transfer coding, a second length,
/// `Expect`, `Upgrade`): where its body ends, when that is past the read.
///
/// Only POST, PUT and PATCH: the methods whose bodies every server reads by their
/// length. Some servers ignore a GET's body (and would take it for the next request),
/// CONNECT and `PRI` (HTTP/2) are followed by bytes that are not HTTP/1 at all.
#[inline(always)]
fn request_announced(data: &[u8; 2 * MAX_CAPTURE], scan: &mut HeadScan) -> Option<Announced> {
    if load!(scan.captured) < 16
        || !(starts_with(data, 0, b"POST ")
            || starts_with(data, 0, b"PUT ")
            || starts_with(data, 0, b"PATCH "))
    {
        return None;
    }
    let head_len = scan_head::<true>(data, scan)?;
    let body_end = head_len + load!(scan.length);
    (body_end > load!(scan.len)).then_some(Announced { head_len, body_end })
}

/// Scans the copied bytes for a head that ends within `HEAD_SCAN` bytes and declares
/// exactly one plain Content-Length and no transfer coding (nor, for a `REQUEST`,
/// `Expect` or `Upgrade`); returns the head's length, its blank line included, with the
/// declared length in `scan.length`.
#[inline(always)]
fn scan_head<const REQUEST: bool>(
    data: &[u8; 2 * MAX_CAPTURE],
    scan: &mut HeadScan,
) -> Option<u64> {
    store!(scan.hi, 0);
    store!(scan.lo, 0);
    store!(scan.length, 0);
    store!(scan.digits, 0);
    store!(scan.state, 0);
    store!(scan.head_len, 0);
    // An index loop with a constant bound: the form the verifier follows most cheaply.
    #[allow(clippy::needless_range_loop)]
    for i in 0..HEAD_SCAN {
        if i as u64 >= load!(scan.captured) || !scan_byte::<REQUEST>(data[i], i, scan) {
            break;
        }
    }
    let state = load!(scan.state);
    let head_len = load!(scan.head_len);
    (state & (REFUSED | SEEN_LENGTH) == SEEN_LENGTH && load!(scan.digits) > 0 && head_len > 0)
        .then_some(head_len)
}

/// Takes the head's byte at `i`; false once the scan is over (the head ended, or it
/// announces nothing a window can be opened for).
#[inline(always)]
fn scan_byte<const REQUEST: bool>(byte: u8, i: usize, scan: &mut HeadScan) -> bool {
    let mut state = load!(scan.state);
    if state & IN_LENGTH != 0 {
        let digits = load!(scan.digits);
        match byte {
            b'0'..=b'9' if state & DIGITS_ENDED == 0 && digits < 15 => {
                store!(
                    scan.length,
                    load!(scan.length) * 10 + u64::from(byte - b'0')
                );
                store!(scan.digits, digits + 1);
            }
            b' ' | b'\t' if digits > 0 => state |= DIGITS_ENDED,
            b' ' | b'\t' => {}
            b'\r' => state &= !IN_LENGTH,
            _ => {
                store!(scan.state, state | REFUSED);
                return false;
            }
        }
    }
    let lower = if byte.is_ascii_uppercase() {
        byte | 0x20
    } else {
        byte
    };
    let lo = load!(scan.lo);
    let hi = (load!(scan.hi) << 8) | (lo >> 56);
    let lo = (lo << 8) | u64::from(lower);
    store!(scan.hi, hi);
    store!(scan.lo, lo);
    if lo & 0xffff_ffff == HEAD_END {
        store!(scan.head_len, i as u64 + 1);
        store!(scan.state, state);
        return false;
    }
    if (hi, lo) == TRANSFER_ENCODING
        || ((hi, lo) == CONTENT_LENGTH && state & SEEN_LENGTH != 0)
        || (REQUEST && (lo == EXPECT || (hi & 0xff, lo) == UPGRADE))
    {
        store!(scan.state, state | REFUSED);
        return false;
    }
    if (hi, lo) == CONTENT_LENGTH {
        state |= SEEN_LENGTH | IN_LENGTH;
    }
    store!(scan.state, state);
    true
}

/// `HTTP/1.x NNN` with a status whose response has a body.
#[inline(always)]
fn status_has_body(data: &[u8; 2 * MAX_CAPTURE]) -> bool {
    if !starts_with(data, 0, b"HTTP/1.") || data[8] != b' ' {
        return false;
    }
    let digit = |b: u8| b.is_ascii_digit().then(|| u16::from(b - b'0'));
    let (Some(a), Some(b), Some(c)) = (digit(data[9]), digit(data[10]), digit(data[11])) else {
        return false;
    };
    let status = a * 100 + b * 10 + c;
    status >= 200 && status != 204 && status != 304
}

/// Whether `data[at..]` starts with `text` (compared byte by byte: a slice comparison
/// would call `bcmp`, which BPF has not).
#[inline(always)]
fn starts_with<const N: usize>(data: &[u8; 2 * MAX_CAPTURE], at: usize, text: &[u8; N]) -> bool {
    let at = at & (MAX_CAPTURE - 1);
    let mut i = 0;
    while i < N {
        if data[at + i] != text[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{boxed::Box, format, string::String, vec};

    use super::*;

    /// What `read_head` says of a transfer of `len` bytes whose copied bytes start with
    /// `bytes`.
    fn scan_with(
        bytes: &[u8],
        len: u64,
        read_head: fn(&mut HeadScan, &[u8; 2 * MAX_CAPTURE]) -> Option<Announced>,
    ) -> Option<Announced> {
        let mut data: Box<[u8; 2 * MAX_CAPTURE]> = vec![0u8; 2 * MAX_CAPTURE]
            .into_boxed_slice()
            .try_into()
            .unwrap();
        let captured = bytes.len().min(MAX_CAPTURE);
        data[..captured].copy_from_slice(&bytes[..captured]);
        let mut scan = HeadScan::default();
        scan.park(len, captured);
        read_head(&mut scan, &data)
    }

    /// What the kernel's scan says of a write.
    fn scan(bytes: &[u8], len: u64) -> Option<Announced> {
        scan_with(bytes, len, HeadScan::announced)
    }

    fn response(head: &str, body: &[u8]) -> std::vec::Vec<u8> {
        let mut bytes = head.as_bytes().to_vec();
        bytes.extend_from_slice(body);
        bytes
    }

    const HEAD: &str = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 100000\r\n\r\n";

    #[test]
    fn a_length_going_past_the_write_opens_a_window_after_the_head() {
        let bytes = response(HEAD, &[b'a'; 4000]);
        let head_len = HEAD.len() as u64;
        assert_eq!(
            scan(&bytes, bytes.len() as u64),
            Some(Announced {
                head_len,
                body_end: head_len + 100_000
            })
        );
        // Any case, spaces around the value, HTTP/1.0.
        let head = "HTTP/1.0 206 Partial\r\ncOnTeNt-LeNgTh:  100000 \r\n\r\n";
        let bytes = response(head, &[b'a'; 4000]);
        assert_eq!(
            scan(&bytes, bytes.len() as u64).map(|a| a.body_end),
            Some(head.len() as u64 + 100_000)
        );
    }

    #[test]
    fn a_head_alone_or_followed_by_another_response_opens_nothing() {
        // A response to HEAD declares a length it does not send: its write ends at the
        // head, or goes on with the next response.
        assert_eq!(scan(HEAD.as_bytes(), HEAD.len() as u64), None);
        let next = response(HEAD, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(scan(&next, next.len() as u64 + 3000), None);
    }

    #[test]
    fn a_body_that_ends_within_the_write_opens_nothing() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n";
        let bytes = response(head, &[b'a'; 3000]);
        assert_eq!(scan(&bytes, bytes.len() as u64), None);
    }

    #[test]
    fn doubtful_framing_opens_nothing() {
        let body = [b'a'; 4000];
        for head in [
            // Statuses without a body.
            "HTTP/1.1 204 No Content\r\nContent-Length: 100000\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 100000\r\n\r\n",
            "HTTP/1.1 101 Switching\r\nContent-Length: 100000\r\n\r\n",
            // Two lengths, even equal ones; a list; a transfer coding.
            "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Length: 100000\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 100000, 100000\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100000\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\ntransfer-encoding: chunked\r\n\r\n",
            // Not a plain number.
            "HTTP/1.1 200 OK\r\nContent-Length: 100 000\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +100000\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n",
            // No length: chunked or until close.
            "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
            // Not a status line.
            "HTTP/2 200 OK\r\nContent-Length: 100000\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
            // A header that only ends in the name.
            "HTTP/1.1 200 OK\r\nX-Content-Length: 100000\r\n\r\n",
        ] {
            let bytes = response(head, &body);
            assert_eq!(scan(&bytes, bytes.len() as u64), None, "{head}");
        }
    }

    #[test]
    fn a_head_longer_than_the_scan_opens_nothing() {
        let pad: String = "x".repeat(HEAD_SCAN);
        let head = format!("HTTP/1.1 200 OK\r\nX-Pad: {pad}\r\nContent-Length: 100000\r\n\r\n");
        let bytes = response(&head, &[b'a'; 4000]);
        assert_eq!(scan(&bytes, bytes.len() as u64), None);
    }

    #[test]
    fn too_few_bytes_after_the_head_to_tell_open_nothing() {
        let bytes = response(HEAD, b"abc");
        assert_eq!(scan(&bytes, 5000), None);
    }

    /// What the kernel's scan says of a read.
    fn scan_request(bytes: &[u8], len: u64) -> Option<Announced> {
        scan_with(bytes, len, HeadScan::request_announced)
    }

    const UPLOAD: &str = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";

    #[test]
    fn an_upload_opens_a_window_after_its_head_even_when_the_read_ends_there() {
        let head_len = UPLOAD.len() as u64;
        let want = Some(Announced {
            head_len,
            body_end: head_len + 100_000,
        });
        assert_eq!(scan_request(UPLOAD.as_bytes(), head_len), want);
        let bytes = response(UPLOAD, &[b'a'; 900]);
        assert_eq!(scan_request(&bytes, bytes.len() as u64), want);
        for head in [
            "PUT /f HTTP/1.1\r\ncontent-length: 100000\r\n\r\n",
            "PATCH /f HTTP/1.0\r\nCONTENT-LENGTH:100000\r\n\r\n",
        ] {
            assert_eq!(
                scan_request(head.as_bytes(), head.len() as u64).map(|a| a.body_end),
                Some(head.len() as u64 + 100_000),
                "{head}"
            );
        }
    }

    #[test]
    fn requests_whose_body_may_not_follow_by_its_length_open_nothing() {
        for head in [
            // Methods some server takes the body of for the next request, or not HTTP/1.
            "GET / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
            "PRI * HTTP/2.0\r\nContent-Length: 100000\r\n\r\n",
            "post / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
            // The server may answer before the body, or switch protocols.
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 100000\r\nupgrade: websocket\r\n\r\n",
            // Doubtful lengths, as for responses.
            "POST / HTTP/1.1\r\nContent-Length: 100000\r\nContent-Length: 100000\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 100000\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 100000, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\n\r\n",
            // A head with bare LF line ends never ends for the scan.
            "POST / HTTP/1.1\nContent-Length: 100000\n\n",
        ] {
            assert_eq!(
                scan_request(head.as_bytes(), head.len() as u64),
                None,
                "{head}"
            );
        }
        // A body that ends within the read.
        let head = "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
        let bytes = response(head, b"abc");
        assert_eq!(scan_request(&bytes, bytes.len() as u64), None);
    }

    #[test]
    fn the_kernel_follows_requests_only_from_a_start_it_knows() {
        use RequestRead::*;
        // The connection's first read starts a request.
        assert_eq!(request_read(0, 1000, 0), (Scan, 0));
        let next = after_request_scan(0, scan_request(UPLOAD.as_bytes(), 1000));
        assert_eq!(next, UPLOAD.len() as u64 + 100_000);
        // Reads wholly inside the body: long ones skipped, short ones copied.
        assert_eq!(request_read(1000, 4096, next), (Skip, next));
        assert_eq!(request_read(5096, 100, next), (Copy, next));
        // The read that ends where the body does; the next request's head is scanned.
        let last = next - 4096;
        assert_eq!(request_read(last, 4096, next), (Skip, next));
        assert_eq!(request_read(next, 500, next), (Scan, next));
        // A read that goes past the body's end: where the next request starts is lost,
        // and no later read is scanned or skipped.
        assert_eq!(request_read(last, 5000, next), (Copy, UNKNOWN));
        assert_eq!(request_read(next + 904, 4096, UNKNOWN), (Copy, UNKNOWN));
        assert_eq!(request_read(0, 1000, UNKNOWN), (Copy, UNKNOWN));
        // A scanned head that announces no body going past its read.
        assert_eq!(after_request_scan(next, None), UNKNOWN);
        // Counting went wrong: never guess.
        assert_eq!(request_read(next + 1, 4096, next), (Copy, UNKNOWN));
    }
}
