//! Tells an HTTP/2 connection from an HTTP/1 one by the client's first bytes.
//!
//! An HTTP/2 client (prior knowledge, or after ALPN h2 inside TLS) opens with a fixed
//! 24-byte preface. Until the first request bytes either complete it or differ from it,
//! they are held back (at most 24 bytes), so that neither kind of connection is
//! misparsed: HTTP/2 frames are not HTTP/1 junk, and an HTTP/1 request whose first read
//! was one byte ("P" of POST) is not taken for HTTP/2.
use super::Chunk;
use super::held::Held;

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub enum Preface {
    Undecided(Held),
    Http1,
    Http2,
}

/// What to do with a request chunk.
pub enum Verdict {
    /// Keep it: it may still be the preface.
    Held,
    /// The connection just turned out to be HTTP/2; frames start at this offset of the chunk.
    Http2(usize),
    /// An HTTP/2 connection's later bytes.
    Ignore,
    /// HTTP/1 (or not HTTP at all): parse the held bytes, if any, then this chunk.
    Http1(Option<Held>),
}

impl Preface {
    pub fn new() -> Self {
        Self::Undecided(Held::new())
    }

    pub fn is_http2(&self) -> bool {
        matches!(self, Self::Http2)
    }

    pub fn is_undecided(&self) -> bool {
        matches!(self, Self::Undecided(_))
    }

    /// Classifies the connection by `chunk`, the next request bytes (for an already
    /// decided connection: `Http1(None)` or `Http2`, without looking at them).
    pub fn check(&mut self, chunk: &Chunk<'_>) -> Verdict {
        let Self::Undecided(held) = self else {
            return if self.is_http2() {
                Verdict::Ignore
            } else {
                Verdict::Http1(None)
            };
        };
        if chunk.data.is_empty() && chunk.missing == 0 {
            return Verdict::Held;
        }
        let at = held.bytes.len();
        let take = chunk.data.len().min(HTTP2_PREFACE.len() - at);
        // Lost or uncopied bytes cannot be checked: only whole, copied prefaces count.
        let intact = chunk.gap_before == 0 && (chunk.missing == 0 || take < chunk.data.len());
        if intact && chunk.data[..take] == HTTP2_PREFACE[at..at + take] {
            if at + take == HTTP2_PREFACE.len() {
                *self = Self::Http2;
                return Verdict::Http2(take);
            }
            if take == chunk.data.len() {
                if at == 0 {
                    held.ts_ns = chunk.ts_ns;
                }
                held.bytes.extend_from_slice(chunk.data);
                return Verdict::Held;
            }
        }
        let Self::Undecided(held) = std::mem::replace(self, Self::Http1) else {
            unreachable!("matched above")
        };
        Verdict::Http1((!held.bytes.is_empty()).then_some(held))
    }

    /// The connection ended while undecided: the held bytes, to be parsed as HTTP/1.
    pub fn take_held(&mut self) -> Option<Held> {
        match std::mem::replace(self, Self::Http1) {
            Self::Undecided(held) if !held.bytes.is_empty() => Some(held),
            Self::Http2 => {
                *self = Self::Http2;
                None
            }
            _ => None,
        }
    }
}
