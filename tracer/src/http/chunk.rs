//! The lines of chunked framing (chunk-size lines and the trailer section), read the way
//! nginx reads them.
//!
//! A line ends at its LF whether or not a CR precedes it. httparse instead reads a
//! chunk extension through a bare LF up to the next CRLF, so a client could make it see
//! different chunk boundaries from the server's and smuggle a forged request past it.
//! Forms that servers read differently from one another (bare LF, more than 16 digits,
//! whitespace before an extension) are reported as `ambiguous`.

use super::span::Parsed;

/// nginx rejects sizes past `NGX_MAX_OFF_T_VALUE`; leading zeros are fine however many.
const MAX_SIZE: u64 = i64::MAX as u64;
/// Digits beyond this are where servers start to disagree (many reject them).
const USUAL_DIGITS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkLine {
    pub(crate) size: u64,
    pub(crate) ambiguous: bool,
}

/// Parses `size [ext] (CR)LF` at the start of `buf`.
pub(crate) fn chunk_size(buf: &[u8]) -> Parsed<ChunkLine> {
    let digits = buf.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        // Without digits httparse would read size 0 and end the body on garbage.
        return if buf.is_empty() {
            Parsed::Partial
        } else {
            Parsed::Invalid
        };
    }
    let mut size: u64 = 0;
    for &b in &buf[..digits] {
        if size > MAX_SIZE / 16 {
            return Parsed::Invalid;
        }
        size = size * 16 + u64::from(hex_value(b));
    }
    let mut ambiguous = digits > USUAL_DIGITS;
    let rest = &buf[digits..];
    match rest.first() {
        None => return Parsed::Partial,
        Some(b'\r' | b'\n' | b';') => {}
        Some(b' ' | b'\t') => ambiguous = true,
        Some(_) => return Parsed::Invalid,
    }
    // Everything up to the LF is extension (or nothing); a CR may only come right before it.
    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
        return if rest.contains(&b'\r') && !rest.ends_with(b"\r") {
            Parsed::Invalid
        } else {
            Parsed::Partial
        };
    };
    let cr = lf > 0 && rest[lf - 1] == b'\r';
    let content = &rest[..if cr { lf - 1 } else { lf }];
    if content.contains(&b'\r') {
        return Parsed::Invalid;
    }
    ambiguous |= !cr;
    Parsed::Complete(ChunkLine { size, ambiguous }, digits + lf + 1)
}

/// Parses the trailer section after the last chunk, up to and including its empty line.
/// Trailer lines are skipped whatever they hold; `true` means a line ended in a bare LF.
pub(crate) fn trailers(buf: &[u8]) -> Parsed<bool> {
    let mut pos = 0;
    let mut ambiguous = false;
    loop {
        let Some(lf) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return Parsed::Partial;
        };
        let line = &buf[pos..pos + lf];
        pos += lf + 1;
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        ambiguous |= content.len() == line.len();
        if content.contains(&b'\r') {
            return Parsed::Invalid;
        }
        if content.is_empty() {
            return Parsed::Complete(ambiguous, pos);
        }
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(line: &[u8]) -> Option<(u64, usize, bool)> {
        match chunk_size(line) {
            Parsed::Complete(c, len) => Some((c.size, len, c.ambiguous)),
            _ => None,
        }
    }

    #[test]
    fn a_bare_lf_ends_the_line_even_inside_an_extension() {
        assert_eq!(size(b"a;x\nAAAA\r\n"), Some((10, 4, true)));
        assert_eq!(size(b"a;x\r\nAAAA"), Some((10, 5, false)));
        assert_eq!(size(b"0\n\n"), Some((0, 2, true)));
    }

    #[test]
    fn leading_zeros_do_not_overflow_but_huge_sizes_are_invalid() {
        assert_eq!(size(b"00000000000000000000a\r\n"), Some((10, 23, true)));
        assert!(matches!(
            chunk_size(b"fffffffffffffffff\r\n"),
            Parsed::Invalid
        ));
    }

    #[test]
    fn garbage_and_stray_cr_are_invalid_and_short_lines_partial() {
        assert!(matches!(chunk_size(b"x\r\n"), Parsed::Invalid));
        assert!(matches!(chunk_size(b"5\rx\n"), Parsed::Invalid));
        assert!(matches!(chunk_size(b"5;ext"), Parsed::Partial));
        assert!(matches!(chunk_size(b"5\r"), Parsed::Partial));
        assert!(matches!(chunk_size(b""), Parsed::Partial));
    }

    #[test]
    fn trailers_end_at_the_first_empty_line() {
        assert!(matches!(trailers(b"\r\nGET"), Parsed::Complete(false, 2)));
        assert!(matches!(trailers(b"\n"), Parsed::Complete(true, 1)));
        assert!(matches!(
            trailers(b"X@y: \x01\r\nodd line\r\n\r\n"),
            Parsed::Complete(false, 20)
        ));
        assert!(matches!(trailers(b"a: b\r\n"), Parsed::Partial));
    }
}
