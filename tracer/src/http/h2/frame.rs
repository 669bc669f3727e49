//! Splits one direction of an HTTP/2 connection into frames, from chunks cut anywhere.
//!
//! DATA payloads are only counted (a body may be far larger than what is copied, and
//! uncopied bytes inside one are harmless); every other frame's payload is buffered up to
//! `MAX_BUFFERED_PAYLOAD`, since HEADERS must be decoded whole.

/// Larger non-DATA frames are skipped and reported as oversized. 16 KiB is the default
/// SETTINGS_MAX_FRAME_SIZE; servers rarely allow larger header frames.
pub const MAX_BUFFERED_PAYLOAD: usize = 64 * 1024;

const HEADER_LEN: usize = 9;
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY: u8 = 0x20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHeader {
    fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Self {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A DATA frame: `size` is its payload minus padding.
    Data {
        stream: u32,
        size: u64,
        end_stream: bool,
    },
    /// Any other frame with its payload (padding and priority fields still in it for
    /// HEADERS: `headers_fragment` removes them).
    Other {
        header: FrameHeader,
        payload: Vec<u8>,
    },
    /// A non-DATA frame larger than `MAX_BUFFERED_PAYLOAD`, skipped.
    Oversized(FrameHeader),
}

/// Where a direction is inside its frame sequence.
enum At {
    Header {
        buf: [u8; HEADER_LEN],
        have: usize,
    },
    Data {
        header: FrameHeader,
        left: u32,
        pad: Option<u8>,
        need_pad: bool,
    },
    Payload {
        header: FrameHeader,
        buf: Vec<u8>,
    },
    Skip {
        header: FrameHeader,
        left: u32,
    },
}

/// Bytes of this direction were not seen inside framing, so frame boundaries are lost.
#[derive(Debug, PartialEq, Eq)]
pub struct Lost;

pub struct Framer {
    at: At,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer {
    pub fn new() -> Self {
        Self {
            at: At::Header {
                buf: [0; HEADER_LEN],
                have: 0,
            },
        }
    }

    /// Appends `data`, pushing every frame it completes onto `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Frame>) {
        while !data.is_empty() {
            match &mut self.at {
                At::Header { buf, have } => {
                    let take = (HEADER_LEN - *have).min(data.len());
                    buf[*have..*have + take].copy_from_slice(&data[..take]);
                    *have += take;
                    data = &data[take..];
                    if *have == HEADER_LEN {
                        let header = FrameHeader::parse(buf);
                        self.begin(header, out);
                    }
                }
                At::Data {
                    need_pad,
                    pad,
                    left,
                    ..
                } => {
                    if *need_pad && pad.is_none() {
                        *pad = Some(data[0]);
                        *left -= 1;
                        data = &data[1..];
                    } else {
                        let take = (*left as usize).min(data.len());
                        *left -= take as u32;
                        data = &data[take..];
                    }
                    self.finish_data(out);
                }
                At::Payload { header, buf } => {
                    let take = (header.len as usize - buf.len()).min(data.len());
                    buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if buf.len() == header.len as usize {
                        self.finish_payload(out);
                    }
                }
                At::Skip { left, .. } => {
                    let take = (*left as usize).min(data.len());
                    *left -= take as u32;
                    data = &data[take..];
                    self.finish_skip(out);
                }
            }
        }
    }

    /// `n` bytes went by uncopied. Only harmless inside a DATA payload (past its pad
    /// length) or a skipped frame.
    pub fn skip(&mut self, n: u32, out: &mut Vec<Frame>) -> Result<(), Lost> {
        if n == 0 {
            return Ok(());
        }
        match &mut self.at {
            At::Data {
                left,
                need_pad,
                pad,
                ..
            } if (!*need_pad || pad.is_some()) && *left >= n => {
                *left -= n;
                self.finish_data(out);
                Ok(())
            }
            At::Skip { left, .. } if *left >= n => {
                *left -= n;
                self.finish_skip(out);
                Ok(())
            }
            _ => Err(Lost),
        }
    }

    fn begin(&mut self, header: FrameHeader, out: &mut Vec<Frame>) {
        self.at = if header.kind == DATA {
            At::Data {
                header,
                left: header.len,
                pad: None,
                need_pad: header.has(PADDED),
            }
        } else if header.len as usize > MAX_BUFFERED_PAYLOAD {
            At::Skip {
                header,
                left: header.len,
            }
        } else {
            At::Payload {
                header,
                buf: Vec::with_capacity(header.len as usize),
            }
        };
        // Empty frames are complete as soon as their header is.
        match self.at {
            At::Data { .. } => self.finish_data(out),
            At::Payload { .. } => self.finish_payload(out),
            At::Skip { .. } => self.finish_skip(out),
            At::Header { .. } => {}
        }
    }

    fn finish_data(&mut self, out: &mut Vec<Frame>) {
        if let At::Data {
            header,
            left: 0,
            pad,
            need_pad,
        } = self.at
            && (!need_pad || pad.is_some() || header.len == 0)
        {
            let body = header.len.saturating_sub(u32::from(need_pad));
            out.push(Frame::Data {
                stream: header.stream,
                size: u64::from(body.saturating_sub(u32::from(pad.unwrap_or(0)))),
                end_stream: header.has(END_STREAM),
            });
            *self = Self::new();
        }
    }

    fn finish_payload(&mut self, out: &mut Vec<Frame>) {
        if let At::Payload { header, buf } = &mut self.at
            && buf.len() == header.len as usize
        {
            out.push(Frame::Other {
                header: *header,
                payload: std::mem::take(buf),
            });
            *self = Self::new();
        }
    }

    fn finish_skip(&mut self, out: &mut Vec<Frame>) {
        if let At::Skip { header, left: 0 } = self.at {
            out.push(Frame::Oversized(header));
            *self = Self::new();
        }
    }
}

/// The header block fragment of a HEADERS frame: without pad length, padding and
/// priority fields. `None` when the padding claims more than the payload (malformed).
pub fn headers_fragment(header: &FrameHeader, payload: &[u8]) -> Option<Vec<u8>> {
    let mut p = payload;
    let mut pad = 0usize;
    if header.has(PADDED) {
        pad = usize::from(*p.first()?);
        p = &p[1..];
    }
    if header.has(PRIORITY) {
        p = p.get(5..)?;
    }
    let end = p.len().checked_sub(pad)?;
    Some(p[..end].to_vec())
}

pub fn has_flag(header: &FrameHeader, flag: u8) -> bool {
    header.has(flag)
}
