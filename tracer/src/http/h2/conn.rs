//! One HTTP/2 connection: both directions' frames paired by stream into exchanges.

use std::collections::BTreeMap;

use super::frame::{
    self, CONTINUATION, END_HEADERS, END_STREAM, Frame, FrameHeader, Framer, GOAWAY, HEADERS,
    RST_STREAM,
};
use super::grpc::parse_status;
use super::hpack::{Hpack, Keep};
use super::{
    fields::Fields,
    stream::{self, Stream},
};
use crate::http::types::{Chunk, Exchange, ExchangeEnd, Finished, Http2Stats, Request};

/// Streams tracked at once. Servers allow 100 or 128 concurrent streams; more open
/// streams mean their ends are not being seen. Newer streams beyond it are not tracked.
pub const MAX_OPEN_STREAMS: usize = 1024;
/// Header block bytes (HEADERS plus CONTINUATION) kept before it is given up on: a
/// CONTINUATION flood. The block cannot be decoded, so the table is lost.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// A header block still waiting for its CONTINUATION frames.
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    fragment: Vec<u8>,
}

struct Direction {
    framer: Framer,
    hpack: Hpack,
    block: Option<OpenBlock>,
    /// Framing was lost; frames are looked for again at the next chunk start.
    lost: bool,
    frames: Vec<Frame>,
}

/// What a record takes from a response's header blocks (`response_block`).
const RESPONSE_FIELDS: Keep = Keep::Only(&[":status", "grpc-status"]);

impl Direction {
    fn new(partial: bool, keep: Keep) -> Self {
        let mut hpack = Hpack::new(keep);
        if partial {
            hpack.lost();
        }
        Self {
            framer: Framer::new(),
            hpack,
            block: None,
            lost: false,
            frames: Vec::new(),
        }
    }
}

pub struct H2Connection {
    client: Direction,
    server: Direction,
    streams: BTreeMap<u32, Stream>,
    /// The first and the highest client stream ids whose opening HEADERS this decoder
    /// saw. Ids only grow (RFC 9113 §5.1.1), so an odd id between them that is not open
    /// has ended: frames still arriving for it (the peer sent them before it learnt of an
    /// RST_STREAM or END_STREAM) are expected, not orphans, and never open a new stream.
    /// Ids below the first are streams opened before the tracer joined: still orphans.
    seen: Option<(u32, u32)>,
    /// Streams above this id were refused by a GOAWAY.
    goaway_last: Option<u32>,
    completed: Finished,
    stats: Http2Stats,
}

impl H2Connection {
    /// After the client preface. `partial`: the connection was joined mid-way, so both
    /// HPACK tables are unknown.
    pub fn new(partial: bool) -> Self {
        Self {
            client: Direction::new(partial, Keep::All),
            server: Direction::new(partial, RESPONSE_FIELDS),
            streams: BTreeMap::new(),
            seen: None,
            goaway_last: None,
            completed: Finished::default(),
            stats: Http2Stats {
                partial_connections: u64::from(partial),
                ..Http2Stats::default()
            },
        }
    }

    /// A connection switched from HTTP/1.1 by `Upgrade: h2c`: the request that asked for
    /// it is stream 1, half-closed by the client, and its response comes as HTTP/2
    /// (RFC 7540 §3.2). The client's preface and SETTINGS follow.
    pub fn upgraded(request: Request) -> Self {
        let mut conn = Self::new(false);
        let mut stream = Stream::new(1, request.first_byte_ns);
        stream.request = Some(stream::from_http1(&request.head));
        stream.request_body = request.body_size;
        stream.request_ended = true;
        conn.stats.streams += 1;
        conn.stats.upgrades += 1;
        conn.streams.insert(1, stream);
        conn.seen = Some((1, 1));
        conn
    }

    pub fn stats(&self) -> &Http2Stats {
        &self.stats
    }

    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    pub fn on_request(&mut self, chunk: Chunk<'_>) {
        self.feed(Side::Client, chunk);
    }

    pub fn on_response(&mut self, chunk: Chunk<'_>) {
        self.feed(Side::Server, chunk);
    }

    pub fn take_completed(&mut self) -> Vec<Exchange> {
        self.completed.take()
    }

    /// The connection closed (or the tracer stops): streams still open end here.
    pub fn close(&mut self) -> Vec<Exchange> {
        let goaway = self.goaway_last;
        for (id, stream) in std::mem::take(&mut self.streams) {
            let end = match goaway {
                Some(last) if id > last => ExchangeEnd::GoAway,
                _ => ExchangeEnd::ConnectionClosed,
            };
            self.completed.push(stream.finish(end, None));
        }
        self.take_completed()
    }

    fn dir(&mut self, side: Side) -> &mut Direction {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn feed(&mut self, side: Side, chunk: Chunk<'_>) {
        let ts = chunk.ts_ns;
        let mut frames = std::mem::take(&mut self.dir(side).frames);
        let dir = self.dir(side);
        let mut lost = chunk.gap_before > 0;
        if lost || dir.lost {
            // Writers send whole frames, so a chunk start is the best place to pick
            // framing up again; a frame header that makes no sense is caught below.
            dir.framer = Framer::new();
            dir.block = None;
            dir.lost = false;
        }
        dir.framer.feed(chunk.data, &mut frames);
        if dir.framer.skip(chunk.missing, &mut frames).is_err() {
            dir.lost = true;
            lost = true;
        }
        if lost {
            dir.hpack.lost();
            self.stats.framing_lost += 1;
        }
        for frame in frames.drain(..) {
            self.frame(side, frame, ts);
        }
        self.dir(side).frames = frames;
    }

    fn frame(&mut self, side: Side, frame: Frame, ts: u64) {
        match frame {
            Frame::Data {
                stream,
                size,
                end_stream,
            } => self.data(side, stream, size, end_stream, ts),
            Frame::Oversized(header) => {
                self.stats.oversized_frames += 1;
                if matches!(header.kind, HEADERS | CONTINUATION) {
                    self.block_lost(side);
                }
            }
            Frame::Other { header, payload } => self.control(side, header, payload, ts),
        }
    }

    fn control(&mut self, side: Side, header: FrameHeader, payload: Vec<u8>, ts: u64) {
        match header.kind {
            HEADERS => {
                let Some(fragment) = frame::headers_fragment(&header, &payload) else {
                    self.stats.malformed_frames += 1;
                    self.block_lost(side);
                    return;
                };
                let block = OpenBlock {
                    stream: header.stream,
                    end_stream: frame::has_flag(&header, END_STREAM),
                    fragment,
                };
                if self.dir(side).block.replace(block).is_some() {
                    // A new HEADERS while a block was open: the old block is lost.
                    self.stats.malformed_frames += 1;
                    self.dir(side).hpack.lost();
                }
                if frame::has_flag(&header, END_HEADERS) {
                    self.end_block(side, ts);
                }
            }
            CONTINUATION => {
                let dir = self.dir(side);
                let Some(block) = dir.block.as_mut().filter(|b| b.stream == header.stream) else {
                    self.stats.malformed_frames += 1;
                    self.block_lost(side);
                    return;
                };
                if block.fragment.len() + payload.len() > MAX_HEADER_BLOCK {
                    self.stats.continuation_floods += 1;
                    self.block_lost(side);
                    return;
                }
                block.fragment.extend_from_slice(&payload);
                if frame::has_flag(&header, END_HEADERS) {
                    self.end_block(side, ts);
                }
            }
            RST_STREAM => {
                let code = payload
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if let Some(stream) = self.streams.remove(&header.stream) {
                    self.stats.resets += 1;
                    let mut stream = stream;
                    stream.last_ns = ts;
                    self.completed.push(stream.finish(ExchangeEnd::Reset, code));
                }
            }
            GOAWAY if side == Side::Server => {
                if let Some(b) = payload.get(..4) {
                    let last = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff;
                    self.goaway_last = Some(last);
                    let refused: Vec<u32> =
                        self.streams.range(last + 1..).map(|(&id, _)| id).collect();
                    for id in refused {
                        if let Some(stream) = self.streams.remove(&id) {
                            self.completed
                                .push(stream.finish(ExchangeEnd::GoAway, None));
                        }
                    }
                }
            }
            // SETTINGS, WINDOW_UPDATE, PING, PRIORITY, PUSH_PROMISE and unknown types
            // change nothing a record says: the table sizes they announce reach the
            // decoder as size updates inside the header blocks.
            _ => {}
        }
    }

    /// A header block of `side` cannot be decoded: its headers are gone and the table
    /// no longer known.
    fn block_lost(&mut self, side: Side) {
        let dir = self.dir(side);
        if let Some(block) = dir.block.take()
            && let Some(stream) = self.streams.get_mut(&block.stream)
        {
            stream.partial = true;
        }
        self.dir(side).hpack.lost();
        self.stats.hpack_errors += 1;
    }

    fn end_block(&mut self, side: Side, ts: u64) {
        let dir = self.dir(side);
        let Some(block) = dir.block.take() else {
            return;
        };
        let was_partial = dir.hpack.is_partial();
        let decoded = dir.hpack.decode(&block.fragment);
        let (fields, partial) = match decoded {
            Ok(b) => {
                if b.truncated {
                    self.stats.header_lists_truncated += 1;
                }
                (Some(b.fields), was_partial || b.truncated)
            }
            Err(_) => {
                self.stats.hpack_errors += 1;
                (None, true)
            }
        };
        match side {
            Side::Client => self.request_block(block, fields, partial, ts),
            Side::Server => self.response_block(block, fields, partial, ts),
        }
    }

    /// `id` is a client stream this decoder saw open that is no longer open.
    fn ended(&self, id: u32) -> bool {
        matches!(self.seen, Some((first, high)) if id % 2 == 1 && (first..=high).contains(&id))
            && !self.streams.contains_key(&id)
    }

    fn request_block(&mut self, block: OpenBlock, fields: Option<Fields>, partial: bool, ts: u64) {
        let id = block.stream;
        if self.ended(id) {
            // Trailers for a stream already recorded: its HPACK work is done.
            return;
        }
        if !self.streams.contains_key(&id) {
            self.seen = Some(match self.seen {
                Some((first, high)) => (first, high.max(id)),
                None => (id, id),
            });
            if self.streams.len() >= MAX_OPEN_STREAMS {
                self.stats.streams_over_limit += 1;
                return;
            }
            self.stats.streams += 1;
            self.streams.insert(id, Stream::new(id, ts));
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.partial |= partial;
        stream.last_ns = ts;
        // The first block is the request head; a later one carries trailers.
        if stream.request.is_none() {
            stream.request = fields;
        }
        if block.end_stream {
            stream.request_ended = true;
        }
    }

    fn response_block(&mut self, block: OpenBlock, fields: Option<Fields>, partial: bool, ts: u64) {
        let Some(stream) = self.streams.get_mut(&block.stream) else {
            if !self.ended(block.stream) {
                self.stats.orphan_frames += 1;
            }
            return;
        };
        stream.partial |= partial;
        stream.last_ns = ts;
        if let Some(fields) = fields {
            if let Some(status) = fields.get("grpc-status").and_then(parse_status) {
                stream.grpc_status = Some(status);
            }
            let informational = fields.status().is_some_and(|s| (100..200).contains(&s));
            if stream.response.is_none() && !informational {
                stream.response = Some((fields, ts));
            }
        }
        if block.end_stream {
            self.end_stream(block.stream, ts);
        }
    }

    fn data(&mut self, side: Side, id: u32, size: u64, end_stream: bool, ts: u64) {
        let Some(stream) = self.streams.get_mut(&id) else {
            if id != 0 && !self.ended(id) {
                self.stats.orphan_frames += 1;
            }
            return;
        };
        stream.last_ns = ts;
        match side {
            Side::Client => {
                stream.request_body += size;
                stream.request_ended |= end_stream;
            }
            Side::Server => {
                stream.response_body += size;
                if end_stream {
                    self.end_stream(id, ts);
                }
            }
        }
    }

    /// The server ended the stream: its response is whole.
    fn end_stream(&mut self, id: u32, ts: u64) {
        if let Some(mut stream) = self.streams.remove(&id) {
            stream.last_ns = ts;
            self.completed
                .push(stream.finish(ExchangeEnd::Complete, None));
        }
    }
}
