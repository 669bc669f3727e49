//! Parsing of elements (heads, chunk-size lines, trailers) whose bytes may be split across chunks.
//!
//! The common case, a whole element inside one chunk, is parsed straight from the chunk; bytes
//! are copied into the buffer only while an element is incomplete.

/// Outcome of parsing one element from the start of a byte slice.
pub(crate) enum Parsed<T> {
    /// The element is complete and occupies the first `usize` bytes.
    Complete(T, usize),
    Partial,
    Invalid,
    /// Possibly valid, but beyond what the parser accepts.
    TooLarge,
}

/// Outcome of feeding one chunk's bytes to an element that may have started in earlier chunks.
pub(crate) enum Spanned<T> {
    /// The first `consumed` bytes of the new data completed the element, `size` bytes in total.
    Complete {
        value: T,
        consumed: usize,
        size: usize,
    },
    /// All the new data was buffered; the element continues in a later chunk.
    Partial,
    Invalid,
    /// The element did not complete within `limit` bytes.
    TooLarge,
}

/// Buffers that grew beyond this are freed once idle, so that a connection which once saw a
/// large head does not pin that memory for its lifetime.
const KEEP_CAPACITY: usize = 4096;

/// Parses an element from `buf` (its earlier bytes, possibly none) followed by `data`.
///
/// `buf` never holds more than `limit` bytes and is empty again unless the result is `Partial`.
pub(crate) fn parse_spanning<T>(
    buf: &mut Vec<u8>,
    data: &[u8],
    limit: usize,
    parse: impl Fn(&[u8]) -> Parsed<T>,
) -> Spanned<T> {
    if buf.is_empty() {
        let window = &data[..data.len().min(limit)];
        return match parse(window) {
            Parsed::Complete(value, len) => Spanned::Complete {
                value,
                consumed: len,
                size: len,
            },
            Parsed::Partial if data.len() >= limit => Spanned::TooLarge,
            Parsed::Partial => {
                buf.extend_from_slice(data);
                Spanned::Partial
            }
            Parsed::Invalid => Spanned::Invalid,
            Parsed::TooLarge => Spanned::TooLarge,
        };
    }
    let old = buf.len();
    let new = &data[..data.len().min(limit.saturating_sub(old))];
    buf.extend_from_slice(new);
    // Every element ends with LF, and the bytes before these already parsed as incomplete:
    // without a new LF the element cannot have completed, so skip re-parsing the whole buffer
    // (which would make heads arriving a few bytes at a time quadratic).
    let outcome = if new.contains(&b'\n') {
        parse(buf)
    } else {
        Parsed::Partial
    };
    let spanned = match outcome {
        Parsed::Complete(value, len) => match len.checked_sub(old).filter(|&n| n > 0) {
            Some(consumed) => Spanned::Complete {
                value,
                consumed,
                size: len,
            },
            None => Spanned::Invalid,
        },
        Parsed::Partial if buf.len() >= limit => Spanned::TooLarge,
        Parsed::Partial => return Spanned::Partial,
        Parsed::Invalid => Spanned::Invalid,
        Parsed::TooLarge => Spanned::TooLarge,
    };
    release(buf);
    spanned
}

/// Empties `buf`, dropping its allocation if it is large.
pub(crate) fn release(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_CAPACITY {
        *buf = Vec::new();
    } else {
        buf.clear();
    }
}
