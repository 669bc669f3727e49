//! HPACK decoding (RFC 7541) for one direction, with the bounds a hostile peer must not
//! get past.
//!
//! Written here rather than taken from a crate because of cost: loona-hpack (the
//! maintained hpack-rs fork, used before) builds a HashMap of the whole Huffman code for
//! every Huffman-coded string, which was ~70% of the tracer's CPU under h2load (`perf`),
//! and httlib-hpack decodes into owned fields, so an HPACK bomb would allocate. Huffman
//! strings are decoded in `huffman.rs` (httlib-huffman's tables); loona-hpack's encoder
//! stays as the independent peer in the tests.
//!
//! The dynamic table must see every header block in order, so a block is always decoded
//! to its end even when its headers are no longer kept: only the decoded list is capped.
//! Indexed fields are read from the table without copying, so many references to one
//! large entry (an HPACK bomb) cost only the header-list accounting.
//!
//! When blocks were missed (a connection open before the tracer, a capture gap, a block
//! too large to decode) the peer's table holds entries this side never saw. Decoding then
//! goes on with an empty table: entries inserted from then on are the newest on both
//! sides, so indices that reach them agree, and an index beyond them is out of bounds
//! here and fails the block instead of decoding to some other header. A block that fails
//! half way has inserted only part of its entries, so the table starts empty again.
//!
//! Over 400 lines: the static table (61 entries, RFC 7541 appendix A) and the decoder
//! that indexes it belong together.

use std::borrow::Cow;
use std::collections::VecDeque;

use super::{fields::Fields, huffman::Recent};

/// Largest dynamic table a size update may ask for. Peers advertise 4 KiB almost always;
/// the cap bounds memory per connection whatever SETTINGS_HEADER_TABLE_SIZE says.
pub const MAX_TABLE_SIZE: usize = 64 * 1024;
/// Decoded header list size (RFC 9113 counting: name + value + 32 per field) kept per
/// block. Beyond it, fields are dropped and the block is marked truncated; this is also
/// what stops an HPACK bomb (many indexed references to one large entry).
pub const MAX_HEADER_LIST: usize = 64 * 1024;
/// The table size both sides start with (SETTINGS_HEADER_TABLE_SIZE's default).
const INITIAL_TABLE_SIZE: usize = 4096;
/// Per-entry overhead of the table size accounting (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HpackError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer too large")]
    Integer,
    #[error("index {0} is in neither table")]
    Index(usize),
    #[error("Huffman string does not decode")]
    Huffman,
    #[error("table size update to {0} above the limit")]
    TableSize(usize),
    #[error("table size update after a field")]
    LateSizeUpdate,
}

/// One decoded header block.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Block {
    pub fields: Fields,
    /// Fields were dropped at `MAX_HEADER_LIST`.
    pub truncated: bool,
}

/// Which fields a decoded block keeps.
#[derive(Clone, Copy)]
pub enum Keep {
    /// Every field: a request's headers are all read (identity, records).
    All,
    /// Only fields of these names (ASCII case aside): a record needs a response's
    /// status, not the `server`, `date`, `content-type` and `content-length` nginx
    /// sends with each one, which were copied twice per response for nothing. A field
    /// that is not kept and not added to the table is also stepped over without
    /// decoding its value. Only kept fields count toward [`MAX_HEADER_LIST`].
    Only(&'static [&'static str]),
}

impl Keep {
    /// Room for what a block of `len` bytes decodes to, so that the fields do not grow
    /// their buffers field by field (reallocation showed under `h2load`). A request's
    /// fields are mostly one-byte references to the tables, each decoding to tens of
    /// bytes; a response keeps a status or two. Large blocks grow as they decode, so a
    /// stream held open costs no more than its fields.
    fn room(self, len: usize) -> (usize, usize) {
        match self {
            Keep::All => ((len * 8 + 128).min(8 * 1024), 12),
            Keep::Only(names) => (32 * names.len(), names.len()),
        }
    }

    fn wants(self, name: &[u8]) -> bool {
        match self {
            Keep::All => true,
            Keep::Only(names) => names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name)),
        }
    }
}

pub struct Hpack {
    table: Table,
    /// Blocks were missed: headers may refer to entries this side never saw.
    partial: bool,
    keep: Keep,
    recent: Recent,
}

impl Hpack {
    pub fn new(keep: Keep) -> Self {
        Self {
            table: Table::new(INITIAL_TABLE_SIZE),
            partial: false,
            keep,
            recent: Recent::default(),
        }
    }

    pub fn is_partial(&self) -> bool {
        self.partial
    }

    /// Header blocks of this direction were missed.
    pub fn lost(&mut self) {
        // An unknown table may be any size up to the cap; an empty one never evicts early.
        self.table = Table::new(MAX_TABLE_SIZE);
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
        let (bytes, fields) = self.keep.room(block.len());
        let mut out = Output {
            fields: Fields::with_capacity(bytes, fields),
            size: 0,
            truncated: false,
        };
        let mut input = Input {
            data: block,
            recent: &mut self.recent,
        };
        // A size update must come before the block's first field, kept or not.
        let mut fields = false;
        while let Some(&first) = input.data.first() {
            if first & 0xe0 == 0x20 {
                if fields {
                    return Err(HpackError::LateSizeUpdate);
                }
                let size = input.integer(5)?;
                if size > MAX_TABLE_SIZE {
                    return Err(HpackError::TableSize(size));
                }
                self.table.resize(size);
                continue;
            }
            fields = true;
            if first & 0x80 != 0 {
                let index = input.integer(7)?;
                let (name, value) = self.table.get(index)?;
                if self.keep.wants(name) {
                    out.push(name, value);
                }
            } else if first & 0xc0 == 0x40 {
                // Owned: inserting may evict the table entry the name came from.
                let name = name(&self.table, &mut input, 6)?.into_owned();
                let value = input.string()?;
                if self.keep.wants(&name) {
                    out.push(&name, &value);
                }
                self.table.insert(&name, &value);
            } else {
                // Without indexing (0000) or never indexed (0001): not kept in the table,
                // so its name may stay borrowed from it, and its value need not be
                // decoded at all unless the field is kept.
                let name = name(&self.table, &mut input, 4)?;
                if self.keep.wants(&name) {
                    out.push(&name, &input.string()?);
                } else {
                    input.skip_string()?;
                }
            }
        }
        Ok(Block {
            fields: out.fields,
            truncated: out.truncated,
        })
    }
}

/// A literal field's name (an index with a prefix of `bits`, or a string), borrowed from
/// the table or the block.
fn name<'x, 'a: 'x>(
    table: &'x Table,
    input: &mut Input<'a, '_>,
    bits: u32,
) -> Result<Cow<'x, [u8]>, HpackError> {
    let index = input.integer(bits)?;
    Ok(if index == 0 {
        input.string()?
    } else {
        Cow::Borrowed(table.get(index)?.0)
    })
}

/// A dynamic table entry: its name and value in one allocation, and where the name ends.
/// nginx adds four fields to the table with every response, and an allocation each for
/// name and value showed among the tracer's costs under HTTP/2.
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn new(name: &[u8], value: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        Self {
            bytes: bytes.into_boxed_slice(),
            name_len: name.len(),
        }
    }

    fn fields(&self) -> (&[u8], &[u8]) {
        self.bytes.split_at(self.name_len)
    }
}

struct Output {
    fields: Fields,
    size: usize,
    truncated: bool,
}

impl Output {
    fn push(&mut self, name: &[u8], value: &[u8]) {
        self.size = self
            .size
            .saturating_add(name.len() + value.len() + ENTRY_OVERHEAD);
        if self.size > MAX_HEADER_LIST {
            self.truncated = true;
        } else {
            self.fields.push(name, value);
        }
    }
}

struct Input<'a, 'r> {
    data: &'a [u8],
    recent: &'r mut Recent,
}

impl<'a> Input<'a, '_> {
    /// An integer with an N-bit prefix (RFC 7541 §5.1), the first byte's high bits ignored.
    fn integer(&mut self, bits: u32) -> Result<usize, HpackError> {
        let (&first, mut rest) = self.data.split_first().ok_or(HpackError::Truncated)?;
        let max = (1usize << bits) - 1;
        let mut value = usize::from(first) & max;
        if value == max {
            let mut shift = 0u32;
            loop {
                let (&byte, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
                rest = tail;
                // Four continuation bytes already exceed any size or index worth reading.
                if shift > 21 {
                    return Err(HpackError::Integer);
                }
                value += usize::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
        }
        self.data = rest;
        Ok(value)
    }

    /// Steps over a string literal (RFC 7541 §5.2) without decoding it.
    fn skip_string(&mut self) -> Result<(), HpackError> {
        let len = self.integer(7)?;
        self.data = self.data.get(len..).ok_or(HpackError::Truncated)?;
        Ok(())
    }

    /// A string literal (RFC 7541 §5.2), Huffman-decoded if its H bit is set.
    fn string(&mut self) -> Result<Cow<'a, [u8]>, HpackError> {
        let huffman = self.data.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
        let len = self.integer(7)?;
        let bytes = self.data.get(..len).ok_or(HpackError::Truncated)?;
        self.data = &self.data[len..];
        if !huffman {
            return Ok(Cow::Borrowed(bytes));
        }
        self.recent
            .decode(bytes)
            .map(Cow::Owned)
            .ok_or(HpackError::Huffman)
    }
}

/// The static table (RFC 7541 Appendix A) followed by the dynamic one, newest first.
struct Table {
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl Table {
    fn new(max: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max,
        }
    }

    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index {
            0 => Err(HpackError::Index(0)),
            i if i <= STATIC.len() => {
                let (name, value) = STATIC[i - 1];
                Ok((name.as_bytes(), value.as_bytes()))
            }
            i => self
                .entries
                .get(i - STATIC.len() - 1)
                .map(Entry::fields)
                .ok_or(HpackError::Index(i)),
        }
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max {
            // Larger than the table: it empties the table and is not kept (§4.4).
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - size);
        self.entries.push_front(Entry::new(name, value));
        self.size += size;
    }

    fn resize(&mut self, max: usize) {
        self.max = max;
        self.evict_to(max);
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            let Some(entry) = self.entries.pop_back() else {
                break;
            };
            self.size -= entry.bytes.len() + ENTRY_OVERHEAD;
        }
    }
}

const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

#[cfg(test)]
mod tests {
    use super::{Fields, Hpack, HpackError, Keep, MAX_TABLE_SIZE, STATIC};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn text(fields: &Fields) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    /// RFC 7541 C.4: three requests with Huffman coding, sharing the dynamic table.
    #[test]
    fn rfc7541_huffman_request_examples() {
        let mut h = Hpack::new(Keep::All);
        let first = h
            .decode(&hex("828684418cf1e3c2e5f23a6ba0ab90f4ff"))
            .unwrap();
        assert_eq!(
            text(&first.fields),
            [
                (":method".into(), "GET".into()),
                (":scheme".into(), "http".into()),
                (":path".into(), "/".into()),
                (":authority".into(), "www.example.com".into()),
            ]
        );
        let second = h.decode(&hex("828684be5886a8eb10649cbf")).unwrap();
        assert_eq!(
            text(&second.fields)[3..],
            [
                (":authority".into(), "www.example.com".into()),
                ("cache-control".into(), "no-cache".into()),
            ]
        );
        let third = h
            .decode(&hex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"))
            .unwrap();
        assert_eq!(
            text(&third.fields),
            [
                (":method".into(), "GET".into()),
                (":scheme".into(), "https".into()),
                (":path".into(), "/index.html".into()),
                (":authority".into(), "www.example.com".into()),
                ("custom-key".into(), "custom-value".into()),
            ]
        );
        assert_eq!(h.table.size, 164, "RFC 7541 C.4.3's table size");
    }

    /// RFC 7541 C.6.1 and C.6.2 (responses, Huffman coded, every field added to the
    /// table) keeping only the status: the other fields still enter the table, so the
    /// second response's references to them decode, and are dropped.
    #[test]
    fn a_response_decoder_keeps_the_status_and_the_table() {
        let mut h = Hpack::new(Keep::Only(&[":status"]));
        // The examples' table holds 256 bytes, so C.6.2 evicts.
        h.table.resize(256);
        let first = h
            .decode(&hex(
                "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
            ))
            .unwrap();
        assert_eq!(text(&first.fields), [(":status".into(), "302".into())]);
        assert_eq!(h.table.size, 222, "RFC 7541 C.6.1's table size");
        let second = h.decode(&hex("4883640effc1c0bf")).unwrap();
        assert_eq!(text(&second.fields), [(":status".into(), "307".into())]);
        assert_eq!(h.table.size, 222, "RFC 7541 C.6.2's table size");
    }

    /// A field outside the table that is not kept is stepped over, its value never
    /// decoded: here `date` (static name 33, without indexing) with a value that is not
    /// valid Huffman, which a decoder keeping every field rejects.
    #[test]
    fn fields_not_kept_and_not_indexed_are_not_decoded() {
        let block = [0x88, 0x0f, 0x12, 0x84, 0xff, 0xff, 0xff, 0xff, 0x89];
        let mut status_only = Hpack::new(Keep::Only(&[":status"]));
        let fields = status_only.decode(&block).unwrap().fields;
        assert_eq!(
            text(&fields),
            [
                (":status".into(), "200".into()),
                (":status".into(), "204".into())
            ]
        );
        assert!(!status_only.is_partial());
        assert_eq!(
            Hpack::new(Keep::All).decode(&block),
            Err(HpackError::Huffman)
        );
        // A size update after a field that was not kept is still late.
        assert_eq!(
            status_only.decode(&[0x0f, 0x12, 0x01, b'x', 0x20]),
            Err(HpackError::LateSizeUpdate)
        );
    }

    /// Every static entry, against loona-hpack's decoder as an independent reading.
    #[test]
    fn the_static_table_matches_an_independent_decoder() {
        let mut theirs = loona_hpack::Decoder::new();
        let mut ours = Hpack::new(Keep::All);
        for index in 1..=STATIC.len() as u8 {
            let block = [0x80 | index];
            let want: Vec<(Vec<u8>, Vec<u8>)> = theirs.decode(&block).unwrap();
            let fields = ours.decode(&block).unwrap().fields;
            let fields: Vec<_> = fields
                .iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            assert_eq!(fields, want, "index {index}");
        }
    }

    #[test]
    fn hostile_blocks_fail_cleanly_and_reset_the_table() {
        let mut h = Hpack::new(Keep::All);
        // Index 62 with an empty dynamic table.
        assert_eq!(h.decode(&[0x80 | 62]), Err(HpackError::Index(62)));
        assert!(h.is_partial());
        // A size update beyond the cap (0x3f then a long continuation).
        let mut h = Hpack::new(Keep::All);
        assert!(matches!(
            h.decode(&[0x3f, 0xe1, 0xff, 0x7f]),
            Err(HpackError::TableSize(s)) if s > MAX_TABLE_SIZE
        ));
        // An integer that never ends, a string longer than the block, bad Huffman.
        let mut h = Hpack::new(Keep::All);
        assert_eq!(h.decode(&[0xff, 0xff, 0xff]), Err(HpackError::Truncated));
        assert_eq!(
            h.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(HpackError::Integer)
        );
        assert_eq!(h.decode(&[0x40, 0x05, b'a']), Err(HpackError::Truncated));
        assert_eq!(
            h.decode(&[0x40, 0x84, 0xff, 0xff, 0xff, 0xff]),
            Err(HpackError::Huffman),
            "the EOS code inside a string"
        );
        // A size update after a field.
        assert_eq!(h.decode(&[0x82, 0x20]), Err(HpackError::LateSizeUpdate));
    }
}
