//! One direction of a connection: splits its byte stream into heads and bodies, and recovers
//! from lost bytes and garbage by resyncing at the next chunk boundary, which in keep-alive
//! traffic is the most likely place for a message to start.
//!
//! Over 400 lines: one state machine (head, body, resync); its transitions read best in
//! one place.

use std::marker::PhantomData;

use super::body::{Body, Consumed, Framing, Progress, Skipped};
use super::head::{Head, MAX_HEAD_BYTES};
use super::held::Held;
use super::span::{Parsed, Spanned, parse_spanning, release};
use super::types::Chunk;

/// The part of a chunk not yet processed: lost bytes before the data, then the data, then
/// uncaptured bytes after it.
pub(crate) struct Cursor<'a> {
    pub(crate) ts: u64,
    gap: u64,
    data: &'a [u8],
    missing: u64,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(chunk: &Chunk<'a>) -> Self {
        Self {
            ts: chunk.ts_ns,
            gap: chunk.gap_before.into(),
            data: chunk.data,
            missing: chunk.missing.into(),
        }
    }

    fn advance(&mut self, n: usize) {
        self.data = self.data.get(n..).unwrap_or_default();
    }

    /// What the chunk holds past the cursor, for a protocol that takes over mid-chunk.
    pub(crate) fn rest(&self) -> Chunk<'a> {
        Chunk {
            ts_ns: self.ts,
            data: self.data,
            missing: u32::try_from(self.missing).unwrap_or(u32::MAX),
            gap_before: u32::try_from(self.gap).unwrap_or(u32::MAX),
        }
    }

    /// Drops the rest of the chunk, returning how many bytes that was.
    fn drain(&mut self) -> u64 {
        let n = self.gap + self.data.len() as u64 + self.missing;
        self.gap = 0;
        self.data = &[];
        self.missing = 0;
        n
    }
}

pub(crate) enum Event<H> {
    Head {
        head: H,
        first_byte_ns: u64,
        size: u64,
    },
    /// The current body's framing is satisfied.
    BodyDone {
        size: u64,
    },
    /// A body whose chunked framing was lost ended without it being found again: a new
    /// message starts here.
    BodyCut {
        progress: Progress,
    },
    /// Bytes were lost where they had to be parsed: in a head or between messages
    /// (`in_body` false), or in chunked framing (the body goes on unsynced).
    Desync {
        in_body: bool,
    },
    /// Bytes that are not HTTP were dropped. `instead_of_head` says they came where a
    /// message was expected after valid traffic, so a message may have been garbled;
    /// `line` is then the start of its first line.
    Junk {
        bytes: u64,
        instead_of_head: bool,
        line: Option<Box<[u8]>>,
    },
    Oversized,
}

enum State {
    /// Between messages, or inside a head whose bytes so far are in `buf`.
    Head,
    Body(Body),
    /// Waiting to learn whether the peer switches protocols; bytes are kept (up to a
    /// bound) to be parsed as HTTP if it does not.
    Hold(Held),
    /// No longer HTTP; bytes are dropped.
    Upgraded,
}

/// Whether parse failures at chunk starts are news.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Alignment {
    Aligned,
    /// After lost bytes the next chunks are likely the rest of a damaged message: drop
    /// them silently until a head parses.
    AfterLoss,
    /// After garbage, more garbage is counted but is not a new failure.
    AfterJunk,
}

pub(crate) struct Stream<H> {
    state: State,
    /// The head, chunk-size line or trailers received so far, when split across chunks.
    buf: Vec<u8>,
    head_first_ns: u64,
    alignment: Alignment,
    hold_after_body: bool,
    /// Chunked framing was read in a form servers disagree on, since the last look.
    ambiguous: bool,
    head: PhantomData<fn() -> H>,
}

/// How much of a junk head's first line is kept to describe it.
pub(crate) const MAX_LINE: usize = 64;

impl<H: Head> Stream<H> {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Head,
            buf: Vec::new(),
            head_first_ns: 0,
            alignment: Alignment::Aligned,
            hold_after_body: false,
            ambiguous: false,
            head: PhantomData,
        }
    }

    /// Processes the chunk up to the next event; `None` once it is used up.
    ///
    /// After a `Head` event the stream expects a head again unless `start_body` is called.
    pub(crate) fn step(&mut self, cur: &mut Cursor<'_>) -> Option<Event<H>> {
        loop {
            let event = if cur.gap > 0 {
                let mut gap = std::mem::take(&mut cur.gap);
                let event = self.uncaptured(&mut gap, cur.ts);
                cur.gap = gap;
                event
            } else if !cur.data.is_empty() {
                self.captured(cur)
            } else if cur.missing > 0 {
                let mut missing = std::mem::take(&mut cur.missing);
                let event = self.uncaptured(&mut missing, cur.ts);
                cur.missing = missing;
                event
            } else {
                return None;
            };
            if event.is_some() {
                return event;
            }
        }
    }

    /// Sets how the body after the head just returned is delimited. With `hold`, bytes after
    /// the body are dropped until `release_hold`, because they may belong to another protocol.
    pub(crate) fn start_body(&mut self, framing: Framing, hold: bool, ts: u64) {
        self.hold_after_body = hold;
        self.state = match Body::new(framing, ts) {
            Some(body) => State::Body(body),
            None if hold => State::Hold(Held::new()),
            None => State::Head,
        };
    }

    /// The protocol did not switch: returns the bytes held meanwhile, to be parsed as HTTP.
    pub(crate) fn release_hold(&mut self) -> Option<Held> {
        self.hold_after_body = false;
        if !matches!(self.state, State::Hold(_)) {
            return None;
        }
        match std::mem::replace(&mut self.state, State::Head) {
            State::Hold(held) if !held.bytes.is_empty() || held.missing > 0 => Some(held),
            _ => None,
        }
    }

    /// Whether chunked framing was read in an ambiguous form since the last call.
    pub(crate) fn take_ambiguous(&mut self) -> bool {
        std::mem::take(&mut self.ambiguous)
    }

    pub(crate) fn upgrade(&mut self) {
        self.state = State::Upgraded;
        release(&mut self.buf);
    }

    pub(crate) fn body_progress(&self) -> Option<Progress> {
        match &self.state {
            State::Body(body) => Some(body.progress()),
            _ => None,
        }
    }

    /// Whether the next `n` bytes fall inside the current body, unseen (see
    /// `Body::absorbs`).
    pub(crate) fn body_absorbs(&self, n: u64) -> bool {
        matches!(&self.state, State::Body(body) if body.absorbs(n))
    }

    pub(crate) fn body_until_close(&self) -> bool {
        matches!(&self.state, State::Body(body) if body.is_until_close())
    }

    /// When the first byte of an incomplete head arrived, if one is buffered.
    pub(crate) fn partial_head_start(&self) -> Option<u64> {
        (matches!(self.state, State::Head) && !self.buf.is_empty()).then_some(self.head_first_ns)
    }

    /// An incomplete head that began at a message boundary: when its first byte came, and
    /// its bytes so far.
    pub(crate) fn cut_head(&self) -> Option<(u64, &[u8])> {
        (matches!(self.state, State::Head)
            && self.alignment == Alignment::Aligned
            && !self.buf.is_empty())
        .then_some((self.head_first_ns, &self.buf[..]))
    }

    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Heap bytes this direction holds for later parsing: a partial head, chunk-size line
    /// or trailers, and bytes held back while a protocol switch is pending.
    pub(crate) fn memory(&self) -> usize {
        let held = match &self.state {
            State::Hold(held) => held.bytes.capacity(),
            _ => 0,
        };
        self.buf.capacity() + held
    }

    /// Frees what `memory` counts, as if those bytes had been lost in capture: a partial
    /// head resyncs at the next chunk that parses, chunked framing goes unsynced, held
    /// bytes become missing ones. Whether anything was held.
    pub(crate) fn shed(&mut self) -> bool {
        let had = self.memory() > 0;
        match &mut self.state {
            State::Hold(held) => {
                let dropped = u32::try_from(held.bytes.len()).unwrap_or(u32::MAX);
                held.missing = held.missing.saturating_add(dropped);
                held.bytes = Vec::new();
            }
            State::Body(body) if !self.buf.is_empty() => body.lose_sync(&mut self.buf),
            State::Head if !self.buf.is_empty() => self.alignment = Alignment::AfterLoss,
            _ => {}
        }
        self.buf = Vec::new();
        had
    }

    fn captured(&mut self, cur: &mut Cursor<'_>) -> Option<Event<H>> {
        let event = self.captured_by_state(cur);
        if let State::Body(body) = &mut self.state {
            self.ambiguous |= body.take_ambiguous();
        }
        event
    }

    fn captured_by_state(&mut self, cur: &mut Cursor<'_>) -> Option<Event<H>> {
        match &mut self.state {
            State::Hold(held) => {
                if held.bytes.is_empty() && held.missing == 0 {
                    held.ts_ns = cur.ts;
                }
                let room = MAX_HEAD_BYTES.saturating_sub(held.bytes.len());
                // Once bytes are missing, later ones cannot be placed after them.
                let keep = if held.missing == 0 {
                    cur.data.len().min(room)
                } else {
                    0
                };
                held.bytes.extend_from_slice(&cur.data[..keep]);
                cur.advance(keep);
                let rest = cur.drain();
                held.missing = held
                    .missing
                    .saturating_add(rest.try_into().unwrap_or(u32::MAX));
                None
            }
            State::Upgraded => {
                cur.drain();
                None
            }
            State::Body(body) => match body.consume(cur.data, &mut self.buf, cur.ts) {
                Consumed::More(n) => {
                    cur.advance(n);
                    None
                }
                Consumed::Done(n) => {
                    cur.advance(n);
                    let size = body.progress().size;
                    self.end_body();
                    Some(Event::BodyDone { size })
                }
                Consumed::Invalid => {
                    let bytes = self.buf.len() as u64 + cur.drain();
                    body.lose_sync(&mut self.buf);
                    Some(Event::Junk {
                        bytes,
                        instead_of_head: false,
                        line: None,
                    })
                }
                Consumed::Unsynced(n) => {
                    cur.advance(n);
                    if starts_message::<H>(cur.data) {
                        let progress = body.progress();
                        self.end_body();
                        return Some(Event::BodyCut { progress });
                    }
                    body.absorb(cur.data.len(), cur.ts);
                    cur.advance(cur.data.len());
                    None
                }
            },
            State::Head => self.head(cur),
        }
    }

    fn head(&mut self, cur: &mut Cursor<'_>) -> Option<Event<H>> {
        if self.buf.is_empty() {
            // Stray line ends between messages are allowed (RFC 9112 section 2.2).
            let blank = cur
                .data
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            cur.advance(blank);
            if cur.data.is_empty() {
                return None;
            }
            self.head_first_ns = cur.ts;
        }
        let buffered = self.buf.len() as u64;
        // The buffer is gone once parsing fails; copy the line's start while it is there.
        let earlier = (buffered > 0).then(|| first_line(&self.buf));
        match parse_spanning(&mut self.buf, cur.data, MAX_HEAD_BYTES, H::parse) {
            Spanned::Complete {
                value,
                consumed,
                size,
            } => {
                cur.advance(consumed);
                self.alignment = Alignment::Aligned;
                Some(Event::Head {
                    head: value,
                    first_byte_ns: self.head_first_ns,
                    size: size as u64,
                })
            }
            Spanned::Partial => {
                cur.advance(cur.data.len());
                None
            }
            Spanned::Invalid => {
                let line = earlier.unwrap_or_else(|| first_line(cur.data));
                let bytes = buffered + cur.drain();
                self.junk(bytes, line)
            }
            Spanned::TooLarge => {
                cur.drain();
                // The rest of the head follows in later chunks.
                self.alignment = Alignment::AfterLoss;
                Some(Event::Oversized)
            }
        }
    }

    /// Accounts for `n` transferred but uncaptured bytes, leaving in `n` those not yet
    /// accounted for.
    fn uncaptured(&mut self, n: &mut u64, ts: u64) -> Option<Event<H>> {
        match &mut self.state {
            State::Hold(held) => {
                if held.bytes.is_empty() && held.missing == 0 {
                    held.gap_before = u32::try_from(*n).unwrap_or(u32::MAX);
                } else {
                    held.missing = held
                        .missing
                        .saturating_add((*n).try_into().unwrap_or(u32::MAX));
                }
                *n = 0;
                None
            }
            State::Upgraded => {
                *n = 0;
                None
            }
            State::Body(body) => match body.skip(*n, &mut self.buf, ts) {
                Skipped::Absorbed => {
                    *n = 0;
                    None
                }
                Skipped::Done(used) => {
                    *n -= used;
                    let size = body.progress().size;
                    self.end_body();
                    Some(Event::BodyDone { size })
                }
                Skipped::Unsynced => {
                    *n = 0;
                    Some(Event::Desync { in_body: true })
                }
            },
            State::Head => {
                *n = 0;
                release(&mut self.buf);
                self.alignment = Alignment::AfterLoss;
                Some(Event::Desync { in_body: false })
            }
        }
    }

    fn end_body(&mut self) {
        if let State::Body(body) = &mut self.state {
            self.ambiguous |= body.take_ambiguous();
        }
        self.state = if std::mem::take(&mut self.hold_after_body) {
            State::Hold(Held::new())
        } else {
            State::Head
        };
    }

    fn junk(&mut self, bytes: u64, line: Box<[u8]>) -> Option<Event<H>> {
        let instead_of_head = match self.alignment {
            Alignment::AfterLoss => return None,
            Alignment::AfterJunk => false,
            Alignment::Aligned => true,
        };
        self.alignment = Alignment::AfterJunk;
        Some(Event::Junk {
            bytes,
            instead_of_head,
            // A run of junk is one unparsed request at most: servers give up on the first.
            line: instead_of_head.then_some(line),
        })
    }
}

/// The start of `data`'s first line, at most `MAX_LINE` bytes.
pub(crate) fn first_line(data: &[u8]) -> Box<[u8]> {
    let end = data
        .iter()
        .take(MAX_LINE)
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(data.len().min(MAX_LINE));
    data[..end].into()
}

/// Whether `data` starts with a head, or at least with a valid first line of one.
fn starts_message<H: Head>(data: &[u8]) -> bool {
    match H::parse(&data[..data.len().min(MAX_HEAD_BYTES)]) {
        Parsed::Complete(..) => true,
        Parsed::Partial => data.contains(&b'\n'),
        Parsed::Invalid | Parsed::TooLarge => false,
    }
}
