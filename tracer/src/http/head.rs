//! Request and response heads: httparse does the parsing, this turns its borrowed view into
//! owned types once a head is complete.

use std::mem::MaybeUninit;

use httparse::{Header as RawHeader, ParserConfig, Status};

use super::span::Parsed;
use super::types::{Headers, RequestHead, ResponseHead};
use super::{body::declared, closes_connection, lenient, offers_h2c};

/// Heads that do not complete within this many bytes are dropped as oversized.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Enough for almost every real head, and small enough to live on the stack.
const INLINE_HEADERS: usize = 128;
/// The retry bound for heads with more headers than `INLINE_HEADERS`.
const MAX_HEADERS: usize = 1024;

/// A head type that can be parsed from the start of a byte slice.
pub(crate) trait Head: Sized {
    fn parse(buf: &[u8]) -> Parsed<Self>;
}

impl Head for RequestHead {
    /// httparse first, for speed; what it rejects gets the grammar servers accept.
    fn parse(buf: &[u8]) -> Parsed<Self> {
        match with_headers(buf, parse_request) {
            Parsed::Invalid => lenient::parse_request(buf),
            parsed => parsed,
        }
    }
}

impl Head for ResponseHead {
    fn parse(buf: &[u8]) -> Parsed<Self> {
        with_headers(buf, parse_response)
    }
}

type RawParse<T> = httparse::Result<(T, usize)>;

/// Runs `parse` with a stack header array, retrying with a larger heap one only for heads that
/// overflow it.
fn with_headers<'b, T>(
    buf: &'b [u8],
    parse: impl Fn(&'b [u8], &mut [MaybeUninit<RawHeader<'b>>]) -> RawParse<T>,
) -> Parsed<T> {
    let mut inline = [const { MaybeUninit::uninit() }; INLINE_HEADERS];
    let outcome = match parse(buf, &mut inline) {
        Err(httparse::Error::TooManyHeaders) => {
            let mut many = Vec::with_capacity(MAX_HEADERS);
            many.resize_with(MAX_HEADERS, MaybeUninit::uninit);
            parse(buf, &mut many)
        }
        other => other,
    };
    match outcome {
        Ok(Status::Complete((head, len))) => Parsed::Complete(head, len),
        Ok(Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::TooLarge,
        Err(_) => Parsed::Invalid,
    }
}

fn parse_request<'b>(
    buf: &'b [u8],
    headers: &mut [MaybeUninit<RawHeader<'b>>],
) -> RawParse<RequestHead> {
    let mut req = httparse::Request::new(&mut []);
    let len =
        match ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, headers)? {
            Status::Complete(len) => len,
            Status::Partial => return Ok(Status::Partial),
        };
    let line = [req.method, req.path].map(|text| text.unwrap_or_default().as_bytes());
    let (headers, line) = Headers::with_texts(&buf[..len], req.headers, line);
    let head = RequestHead::new(headers, line, req.version.unwrap_or_default(), false);
    Ok(Status::Complete((head, len)))
}

fn parse_response<'b>(
    buf: &'b [u8],
    headers: &mut [MaybeUninit<RawHeader<'b>>],
) -> RawParse<ResponseHead> {
    // Clients tolerate these deviations from the grammar, and a tracer has to see what the
    // client saw rather than reject the response.
    let mut config = ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .ignore_invalid_headers_in_responses(true);
    let mut resp = httparse::Response::new(&mut []);
    let len = match config.parse_response_with_uninit_headers(&mut resp, buf, headers)? {
        Status::Complete(len) => len,
        Status::Partial => return Ok(Status::Partial),
    };
    let minor_version = resp.version.unwrap_or_default();
    let head = ResponseHead {
        status: resp.code.unwrap_or_default(),
        minor_version,
        declared: declared(resp.headers, minor_version),
        offers_h2c: offers_h2c(resp.headers),
        closes: closes_connection(resp.headers, minor_version),
    };
    Ok(Status::Complete((head, len)))
}
