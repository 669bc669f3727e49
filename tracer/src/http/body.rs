//! Message body framing: deciding how a body is delimited, then counting it.
//!
//! Body bytes are never buffered and never need to be seen: only chunked framing (size lines,
//! the CRLF after each chunk, trailers) has to be read.
//!
//! Over 400 lines: request and response framing (RFC 9112 section 6) and the chunked
//! decoder are one set of rules; the ambiguity checks need all of them in view.

use super::chunk::{ChunkLine, chunk_size, trailers};
use super::head::MAX_HEAD_BYTES;
use super::span::{Parsed, Spanned, parse_spanning, release};
use super::types::{Declared, HeaderLookup, RequestHead, ResponseHead};

/// A chunk-size line longer than this (extensions included) is treated as garbage.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

pub(crate) fn request_framing(head: &RequestHead) -> Framing {
    match declared(&head.headers, head.minor_version) {
        Declared::Chunked => Framing::Chunked,
        Declared::Length(0) | Declared::Absent => Framing::None,
        Declared::Length(n) => Framing::Length(n),
        Declared::Unknowable => Framing::UntilClose,
    }
}

/// Whether servers disagree on how this request's body is delimited: both Content-Length
/// and Transfer-Encoding (RFC 9112 says the latter wins, nginx 1.22 answers 400, older
/// servers use the former), Transfer-Encoding repeated or other than a plain `chunked`, or
/// Content-Length repeated or not a plain number.
pub(crate) fn ambiguous_framing(head: &RequestHead) -> bool {
    let headers = &head.headers;
    let codings: Vec<&[u8]> = headers.get_all("transfer-encoding").collect();
    let lengths: Vec<&[u8]> = headers.get_all("content-length").collect();
    match (codings.as_slice(), lengths.as_slice()) {
        ([], []) => false,
        ([], [length]) => parse_decimal(trim(length)).is_none(),
        ([], _) => true,
        ([coding], []) => !trim(coding).eq_ignore_ascii_case(b"chunked") || head.minor_version == 0,
        _ => true,
    }
}

/// Framing of a final, non-upgrade response; `to_head` says the request method was HEAD.
pub(crate) fn response_framing(head: &ResponseHead, to_head: bool) -> Framing {
    if to_head || matches!(head.status, 100..=199 | 204 | 304) {
        return Framing::None;
    }
    match head.declared {
        Declared::Chunked => Framing::Chunked,
        Declared::Length(0) => Framing::None,
        Declared::Length(n) => Framing::Length(n),
        Declared::Unknowable | Declared::Absent => Framing::UntilClose,
    }
}

pub(crate) fn declared(headers: &(impl HeaderLookup + ?Sized), minor_version: u8) -> Declared {
    let mut last_coding = None;
    for value in headers.values("transfer-encoding") {
        if let Some(coding) = list_items(value).last() {
            last_coding = Some(coding);
        }
    }
    if let Some(coding) = last_coding {
        // HTTP/1.0 has no transfer codings, so such a message's framing is faulty.
        let name = coding.split(|&b| b == b';').next().unwrap_or_default();
        return if minor_version > 0 && trim(name).eq_ignore_ascii_case(b"chunked") {
            Declared::Chunked
        } else {
            Declared::Unknowable
        };
    }
    let mut length = None;
    for value in headers.values("content-length") {
        for item in list_items(value) {
            // Repeated values are allowed only if they agree (RFC 9110 section 8.6).
            match (parse_decimal(item), length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Declared::Unknowable,
            }
        }
    }
    length.map_or(Declared::Absent, Declared::Length)
}

/// Non-empty, trimmed elements of a comma-separated header value.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|s| !s.is_empty())
}

fn trim(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// How far a body got: its size so far and the last chunk that carried any of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) size: u64,
    pub(crate) last_ns: u64,
}

enum Phase {
    Length(u64),
    UntilClose,
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data; `cr` says the CR was seen.
    ChunkEnd {
        cr: bool,
    },
    Trailers,
    /// Chunked framing was lost or garbled: bytes count as payload until a chunk-size line
    /// or a new message starts a chunk.
    Unsynced,
}

/// The body being received on one direction.
pub(crate) struct Body {
    phase: Phase,
    progress: Progress,
    /// Framing was written in a form servers read differently (see `chunk`).
    ambiguous: bool,
}

pub(crate) enum Consumed {
    /// The bytes were part of the body; more is expected.
    More(usize),
    /// The body ended after this many bytes.
    Done(usize),
    /// Chunked framing was garbage; the rest of the data is dropped and the body continues
    /// unsynced.
    Invalid,
    /// After this many bytes the body is unsynced and the data does not start a chunk; the
    /// caller decides whether it starts a new message instead.
    Unsynced(usize),
}

pub(crate) enum Skipped {
    /// All the uncaptured bytes were body bytes; more is expected.
    Absorbed,
    /// The body ended after this many of the uncaptured bytes.
    Done(u64),
    /// Uncaptured bytes hid chunked framing; the body continues unsynced.
    Unsynced,
}

/// What ends a chunked body when it has no trailers.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

impl Body {
    /// `None` when the framing says there is no body.
    pub(crate) fn new(framing: Framing, ts: u64) -> Option<Self> {
        let phase = match framing {
            Framing::None | Framing::Length(0) => return None,
            Framing::Length(n) => Phase::Length(n),
            Framing::Chunked => Phase::ChunkSize,
            Framing::UntilClose => Phase::UntilClose,
        };
        Some(Self {
            phase,
            progress: Progress {
                size: 0,
                last_ns: ts,
            },
            ambiguous: false,
        })
    }

    /// Whether ambiguous framing was read since the last call.
    pub(crate) fn take_ambiguous(&mut self) -> bool {
        std::mem::take(&mut self.ambiguous)
    }

    pub(crate) fn progress(&self) -> Progress {
        self.progress
    }

    /// Whether the next `n` bytes are body bytes that need not be seen: they hold no
    /// chunked framing and nothing after the body.
    pub(crate) fn absorbs(&self, n: u64) -> bool {
        match self.phase {
            Phase::Length(remaining) | Phase::ChunkData(remaining) => n <= remaining,
            Phase::UntilClose => true,
            _ => false,
        }
    }

    pub(crate) fn is_until_close(&self) -> bool {
        matches!(self.phase, Phase::UntilClose)
    }

    /// Consumes body bytes from the start of `data`; `line` holds a size line or trailer
    /// section split across chunks.
    pub(crate) fn consume(&mut self, data: &[u8], line: &mut Vec<u8>, ts: u64) -> Consumed {
        let consumed = self.consume_framed(data, line);
        // Data that may start a new message is not known to be part of this body yet.
        if !matches!(consumed, Consumed::Unsynced(0)) {
            self.progress.last_ns = ts;
        }
        consumed
    }

    fn consume_framed(&mut self, data: &[u8], line: &mut Vec<u8>) -> Consumed {
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            match &mut self.phase {
                Phase::Length(remaining) => {
                    let n = take(remaining, rest.len());
                    self.progress.size += n as u64;
                    pos += n;
                    if *remaining == 0 {
                        return Consumed::Done(pos);
                    }
                }
                Phase::UntilClose => {
                    self.progress.size += rest.len() as u64;
                    pos = data.len();
                }
                Phase::ChunkData(remaining) => {
                    let n = take(remaining, rest.len());
                    self.progress.size += n as u64;
                    pos += n;
                    if *remaining == 0 {
                        self.phase = Phase::ChunkEnd { cr: false };
                    }
                }
                Phase::ChunkEnd { cr } => {
                    match (*cr, rest[0]) {
                        (false, b'\r') => *cr = true,
                        (cr, b'\n') => {
                            self.ambiguous |= !cr;
                            self.phase = Phase::ChunkSize;
                        }
                        _ => return Consumed::Invalid,
                    }
                    pos += 1;
                }
                Phase::ChunkSize => match parse_spanning(line, rest, MAX_CHUNK_LINE, chunk_size) {
                    Spanned::Complete {
                        value, consumed, ..
                    } => {
                        self.ambiguous |= value.ambiguous;
                        self.phase = chunk_phase(value.size);
                        pos += consumed;
                    }
                    Spanned::Partial => pos = data.len(),
                    Spanned::Invalid | Spanned::TooLarge => return Consumed::Invalid,
                },
                Phase::Trailers => match parse_spanning(line, rest, MAX_HEAD_BYTES, trailers) {
                    Spanned::Complete {
                        value, consumed, ..
                    } => {
                        self.ambiguous |= value;
                        return Consumed::Done(pos + consumed);
                    }
                    Spanned::Partial => pos = data.len(),
                    Spanned::Invalid | Spanned::TooLarge => return Consumed::Invalid,
                },
                Phase::Unsynced => match resync(rest) {
                    Some((size, len)) => {
                        self.phase = chunk_phase(size);
                        pos += len;
                    }
                    None => return Consumed::Unsynced(pos),
                },
            }
        }
        Consumed::More(pos)
    }

    /// Counts `n` bytes of an unsynced body that the caller found not to start a message.
    pub(crate) fn absorb(&mut self, n: usize, ts: u64) {
        self.progress.size += n as u64;
        self.progress.last_ns = ts;
    }

    /// Gives up on the chunked framing after garbage.
    pub(crate) fn lose_sync(&mut self, line: &mut Vec<u8>) {
        self.phase = Phase::Unsynced;
        release(line);
    }

    /// Accounts for `n` bytes that were transferred but not captured.
    pub(crate) fn skip(&mut self, n: u64, line: &mut Vec<u8>, ts: u64) -> Skipped {
        self.progress.last_ns = ts;
        match &mut self.phase {
            Phase::Length(remaining) => {
                let used = n.min(*remaining);
                *remaining -= used;
                self.progress.size += used;
                if *remaining == 0 {
                    Skipped::Done(used)
                } else {
                    Skipped::Absorbed
                }
            }
            Phase::UntilClose | Phase::Unsynced => {
                self.progress.size += n;
                Skipped::Absorbed
            }
            Phase::ChunkData(remaining) if n <= *remaining => {
                *remaining -= n;
                self.progress.size += n;
                if *remaining == 0 {
                    self.phase = Phase::ChunkEnd { cr: false };
                }
                Skipped::Absorbed
            }
            Phase::ChunkData(remaining) => {
                let data = *remaining;
                self.progress.size += data;
                self.after_chunk_data(n, n - data, 2, line)
            }
            Phase::ChunkEnd { cr } => {
                let crlf = if *cr { 1 } else { 2 };
                self.after_chunk_data(n, n, crlf, line)
            }
            Phase::ChunkSize if completes(line, n, LAST_CHUNK) => {
                release(line);
                Skipped::Done(n)
            }
            Phase::Trailers if completes(line, n, b"\r\n") => {
                release(line);
                Skipped::Done(n)
            }
            Phase::ChunkSize | Phase::Trailers => self.unsynced(n, line),
        }
    }

    /// `n` uncaptured bytes of which the last `left` follow a chunk's data (`crlf` bytes
    /// short of its CRLF). Writers usually end a call at a chunk boundary, so exactly the
    /// CRLF, or exactly the CRLF and the last chunk, keep the framing known.
    fn after_chunk_data(&mut self, n: u64, left: u64, crlf: u64, line: &mut Vec<u8>) -> Skipped {
        if left == crlf {
            self.phase = Phase::ChunkSize;
            Skipped::Absorbed
        } else if left == crlf + LAST_CHUNK.len() as u64 {
            Skipped::Done(n)
        } else {
            self.unsynced(left, line)
        }
    }

    /// Framing was hidden: the uncaptured bytes count as payload, framing and all, since
    /// there is no telling them apart.
    fn unsynced(&mut self, n: u64, line: &mut Vec<u8>) -> Skipped {
        self.progress.size += n;
        self.lose_sync(line);
        Skipped::Unsynced
    }
}

/// Whether the bytes `seen` followed by `n` uncaptured ones can be exactly `end`: the
/// writer's call most likely ended with the body.
fn completes(seen: &[u8], n: u64, end: &[u8]) -> bool {
    end.starts_with(seen) && seen.len() as u64 + n == end.len() as u64
}

fn chunk_phase(size: u64) -> Phase {
    if size == 0 {
        Phase::Trailers
    } else {
        Phase::ChunkData(size)
    }
}

/// Looks for a chunk-size line at the start of data that follows lost framing, where the
/// writer's call started: returns the size and the bytes up to the chunk's data. The CRLF
/// ending the previous chunk may come first; when the chunk's data is in `data`, the CRLF
/// after it must be too, so that payload that happens to start with hex digits is not taken
/// for framing.
fn resync(data: &[u8]) -> Option<(u64, usize)> {
    let crlf = if data.starts_with(b"\r\n") { 2 } else { 0 };
    let Parsed::Complete(ChunkLine { size, .. }, len) = chunk_size(&data[crlf..]) else {
        return None;
    };
    let start = crlf + len;
    let after = usize::try_from(size)
        .ok()
        .and_then(|size| start.checked_add(size))
        .and_then(|end| data.get(end..))
        .unwrap_or_default();
    let consistent = size == 0 || after.is_empty() || after.starts_with(b"\r\n") || after == b"\r";
    consistent.then_some((size, start))
}

/// Takes up to `available` bytes off `remaining`, returning how many.
fn take(remaining: &mut u64, available: usize) -> usize {
    let n = usize::try_from(*remaining).map_or(available, |r| r.min(available));
    *remaining -= n as u64;
    n
}
