//! HPACK decoding for one direction, with the bounds a hostile peer must not get past.
//!
//! The dynamic table must see every header block in order, so a block is always decoded
//! to its end even when its headers are no longer kept: only the decoded list is capped.
//!
//! When blocks were missed (a connection open before the tracer, a capture gap, a block
//! too large to decode) the peer's table holds entries this side never saw. Decoding then
//! goes on with an empty table: entries inserted from then on are the newest on both
//! sides, so indices that reach them agree, and an index beyond them is out of bounds
//! here and fails the block instead of decoding to some other header. A block that fails
//! half way has inserted only part of its entries, so the table starts empty again.

use std::borrow::Cow;

use loona_hpack::Decoder;

/// Largest dynamic table a size update may ask for. Peers advertise 4 KiB almost always;
/// the cap bounds memory per connection whatever SETTINGS_HEADER_TABLE_SIZE says.
pub const MAX_TABLE_SIZE: usize = 64 * 1024;
/// Decoded header list size (RFC 9113 counting: name + value + 32 per field) kept per
/// block. Beyond it, fields are dropped and the block is marked truncated; this is also
/// what stops an HPACK bomb (many indexed references to one large entry).
pub const MAX_HEADER_LIST: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HpackError {
    #[error("header block does not decode: {0}")]
    Decode(#[from] loona_hpack::decoder::DecoderError),
}

/// One decoded header block.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Block {
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// Fields were dropped at `MAX_HEADER_LIST`.
    pub truncated: bool,
}

pub struct Hpack {
    decoder: Decoder<'static>,
    /// Blocks were missed: headers may refer to entries this side never saw.
    partial: bool,
}

impl Default for Hpack {
    fn default() -> Self {
        Self::new()
    }
}

impl Hpack {
    pub fn new() -> Self {
        // The table starts at the protocol's 4096 bytes; size updates in the blocks move it.
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(MAX_TABLE_SIZE);
        Self {
            decoder,
            partial: false,
        }
    }

    pub fn is_partial(&self) -> bool {
        self.partial
    }

    /// Header blocks of this direction were missed.
    pub fn lost(&mut self) {
        self.decoder = unknown_decoder();
        self.partial = true;
    }

    pub fn decode(&mut self, block: &[u8]) -> Result<Block, HpackError> {
        let decoded = self.decode_inner(block);
        if decoded.is_err() {
            self.lost();
        }
        decoded
    }

    fn decode_inner(&mut self, block: &[u8]) -> Result<Block, HpackError> {
        let mut out = Block::default();
        let mut size = 0usize;
        self.decoder
            .decode_with_cb(block, |name: Cow<'_, [u8]>, value: Cow<'_, [u8]>| {
                size = size.saturating_add(name.len() + value.len() + 32);
                if size > MAX_HEADER_LIST {
                    out.truncated = true;
                } else {
                    out.fields.push((name.into_owned(), value.into_owned()));
                }
            })?;
        Ok(out)
    }
}

fn unknown_decoder() -> Decoder<'static> {
    let mut decoder = Decoder::new();
    // An unknown table may be any size up to the cap; an empty one never evicts early.
    decoder.set_max_allowed_table_size(MAX_TABLE_SIZE);
    decoder.set_max_table_size(MAX_TABLE_SIZE);
    decoder
}
