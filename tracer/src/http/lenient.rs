//! The request-head grammar servers actually accept, for heads httparse rejects.
//!
//! A tracer stricter than the server it watches lets a client hide requests (the server
//! serves what the tracer dropped as junk) or shift the framing of everything after. This
//! follows nginx's parser (ngx_http_parse_request_line / ngx_http_parse_header_line):
//! any HTTP/1.x minor version, runs of spaces between request-line parts, bare LF line
//! ends, HTTP/0.9 simple requests, header lines whose names are not tokens (nginx ignores
//! them) or that have no colon (a name with an empty value), and control bytes other than
//! NUL in values. What nginx answers with an error (400, 505) stays invalid here: its
//! response becomes a `request_unparsed` record instead.

use httparse::Header as RawHeader;

use super::span::Parsed;
use super::types::{Headers, RequestHead};

/// Header lines kept per head; the rest still count towards its length.
const MAX_FIELDS: usize = 1024;

/// Parses the request head at the start of `buf` the way nginx does.
pub(crate) fn parse_request(buf: &[u8]) -> Parsed<RequestHead> {
    let Some(first) = line_end(buf, 0) else {
        return partial_line(buf);
    };
    let Some(line) = request_line(&buf[..first.content]) else {
        return Parsed::Invalid;
    };
    if line.http09 {
        let target = String::from_utf8_lossy(line.target);
        let (headers, texts) =
            Headers::with_texts(&[], &[], [line.method.as_bytes(), target.as_bytes()]);
        let head = RequestHead::new(headers, texts, 0, true);
        return Parsed::Complete(head, first.next);
    }
    let mut fields: Vec<RawHeader<'_>> = Vec::new();
    let mut pos = first.next;
    loop {
        let Some(end) = line_end(buf, pos) else {
            return Parsed::Partial;
        };
        let content = &buf[pos..end.content];
        pos = end.next;
        if content.is_empty() {
            break;
        }
        match header_line(content) {
            Field::Keep(header) if fields.len() < MAX_FIELDS => fields.push(header),
            Field::Keep(_) | Field::Ignore => {}
            Field::Invalid => return Parsed::Invalid,
        }
    }
    // A target that is not UTF-8 is kept with replacement characters, after the head.
    let target = String::from_utf8_lossy(line.target);
    let (headers, texts) = Headers::with_texts(
        &buf[..pos],
        &fields,
        [line.method.as_bytes(), target.as_bytes()],
    );
    let head = RequestHead::new(headers, texts, line.minor, false);
    Parsed::Complete(head, pos)
}

/// A line's content ends before `content`; the next line starts at `next`.
struct LineEnd {
    content: usize,
    next: usize,
}

/// The end of the line starting at `from`: LF, or CRLF. A CR not followed by LF is left in
/// the content, where every caller rejects it, as nginx does.
fn line_end(buf: &[u8], from: usize) -> Option<LineEnd> {
    let lf = from + buf.get(from..)?.iter().position(|&b| b == b'\n')?;
    let content = if lf > from && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    Some(LineEnd {
        content,
        next: lf + 1,
    })
}

/// An unfinished first line is worth waiting for only while it can still become valid.
fn partial_line(buf: &[u8]) -> Parsed<RequestHead> {
    let method_ok = buf
        .iter()
        .take_while(|&&b| b != b' ')
        .all(|&b| is_method_byte(b));
    if method_ok && !buf.contains(&0) {
        Parsed::Partial
    } else {
        Parsed::Invalid
    }
}

struct RequestLine<'b> {
    method: &'b str,
    target: &'b [u8],
    minor: u8,
    http09: bool,
}

/// nginx 1.22 methods: upper-case letters, `_` and `-`.
fn is_method_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'_' || b == b'-'
}

/// `METHOD SP+ target [SP+ HTTP/1.minor SP*]`, without its line end.
fn request_line(line: &[u8]) -> Option<RequestLine<'_>> {
    let method_len = line.iter().position(|&b| b == b' ')?;
    let (method, rest) = line.split_at(method_len);
    if method.is_empty() || !method.iter().all(|&b| is_method_byte(b)) {
        return None;
    }
    let rest = trim_spaces(rest);
    let target_len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let (target, rest) = rest.split_at(target_len);
    // nginx rejects control bytes in the request line since 1.21.1; bytes >= 0x80 pass.
    if target.is_empty() || target.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let method = std::str::from_utf8(method).ok()?;
    let version = trim_spaces(rest);
    if version.is_empty() {
        return Some(RequestLine {
            method,
            target,
            minor: 0,
            http09: true,
        });
    }
    let minor = version.strip_prefix(b"HTTP/1.")?;
    let end = minor.iter().position(|&b| b == b' ').unwrap_or(minor.len());
    let (digits, after) = minor.split_at(end);
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !after.iter().all(|&b| b == b' ') {
        return None;
    }
    let minor: u16 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(RequestLine {
        method,
        target,
        minor: u8::try_from(minor).unwrap_or(u8::MAX),
        http09: false,
    })
}

fn trim_spaces(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    &s[start..]
}

enum Field<'b> {
    Keep(RawHeader<'b>),
    /// nginx drops header lines whose names hold bytes outside its token set.
    Ignore,
    /// nginx answers 400.
    Invalid,
}

fn header_line(line: &[u8]) -> Field<'_> {
    let (name, value) = match line.iter().position(|&b| b == b':') {
        Some(colon) => (&line[..colon], &line[colon + 1..]),
        None => (line, &line[line.len()..]),
    };
    if name.is_empty() || name.iter().any(|&b| b <= 0x20 || b == 0x7f) {
        return Field::Invalid;
    }
    if value.iter().any(|&b| b == 0 || b == b'\r') {
        return Field::Invalid;
    }
    if !name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-') {
        return Field::Ignore;
    }
    let Ok(name) = std::str::from_utf8(name) else {
        return Field::Ignore;
    };
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    Field::Keep(RawHeader {
        name,
        value: &value[start..end],
    })
}
