//! Request bytes kept back until it is known how to parse them: while they may still be the
//! HTTP/2 preface, or while a request that may switch protocols waits for its response.

use super::Chunk;

pub struct Held {
    pub bytes: Vec<u8>,
    /// When the first of them arrived.
    pub ts_ns: u64,
    pub gap_before: u32,
    /// Bytes transferred after `bytes` that were not kept (lost or past the bound).
    pub missing: u32,
}

impl Held {
    pub fn new() -> Self {
        Self {
            bytes: Vec::new(),
            ts_ns: 0,
            gap_before: 0,
            missing: 0,
        }
    }

    pub fn chunk(&self) -> Chunk<'_> {
        Chunk {
            ts_ns: self.ts_ns,
            data: &self.bytes,
            missing: self.missing,
            gap_before: self.gap_before,
        }
    }
}
