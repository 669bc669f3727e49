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
    /// The first bytes seen are whole HTTP/2 frames, not the preface: a connection joined
    /// mid-way (open before the tracer started), whose HPACK state is unknown.
    Http2Midway,
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
        if at == 0 && chunk.missing == 0 && whole_frames(chunk.data) {
            *self = Self::Http2;
            return Verdict::Http2Midway;
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

/// Client frame types that may open a joined connection's first read.
const CLIENT_FRAME_TYPES: std::ops::RangeInclusive<u8> = 0x0..=0x9;

/// `data` is one or more complete client frames, ending exactly at its end: HTTP/1 starts
/// with a method's ASCII letter, and a frame with its 24-bit length (nearly always a zero
/// first byte), so a whole chunk of valid frames is no HTTP/1 request. Stream-level
/// frames must name a client (odd) stream, connection-level ones stream 0.
fn whole_frames(mut data: &[u8]) -> bool {
    if data.len() < 9 {
        return false;
    }
    while !data.is_empty() {
        let Some(h) = data.get(..9) else {
            return false;
        };
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let kind = h[3];
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        let stream_ok = match kind {
            // DATA, HEADERS, PRIORITY, RST_STREAM, CONTINUATION
            0x0 | 0x1 | 0x2 | 0x3 | 0x9 => stream % 2 == 1,
            // SETTINGS, PING, GOAWAY
            0x4 | 0x6 | 0x7 => stream == 0,
            // WINDOW_UPDATE: either
            0x8 => true,
            _ => false,
        };
        if !CLIENT_FRAME_TYPES.contains(&kind) || !stream_ok || len > 16 * 1024 * 1024 {
            return false;
        }
        let Some(rest) = data.get(9 + len..) else {
            return false;
        };
        data = rest;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::whole_frames;

    #[test]
    fn only_whole_well_formed_client_frames_count_as_a_joined_connection() {
        let headers = [0, 0, 1, 1, 5, 0, 0, 0, 3, 0x82];
        assert!(whole_frames(&headers));
        let mut two = headers.to_vec();
        two.extend([0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert!(whole_frames(&two));
        assert!(!whole_frames(&headers[..9]), "cut inside a frame");
        assert!(!whole_frames(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!whole_frames(&[0; 9]), "DATA on stream 0");
        assert!(!whole_frames(&[0, 0, 0, 1, 0, 0, 0, 0, 2]), "server stream");
        assert!(
            !whole_frames(&[0, 0, 0, 0x20, 0, 0, 0, 0, 1]),
            "unknown type"
        );
    }
}
