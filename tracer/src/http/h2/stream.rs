//! One HTTP/2 stream while it is open: what its header blocks and DATA frames said.

use super::{fields::Fields, grpc::Grpc};
use crate::http::types::{
    Declared, Exchange, ExchangeEnd, Headers, Http2Info, Request, RequestHead, RequestSeen,
    Response, ResponseHead,
};

pub struct Stream {
    pub id: u32,
    pub first_byte_ns: u64,
    pub request: Option<Fields>,
    pub request_body: u64,
    pub request_ended: bool,
    pub response: Option<(Fields, u64)>,
    pub response_body: u64,
    pub last_ns: u64,
    /// `grpc-status` from the response trailers (or a trailers-only response).
    pub grpc_status: Option<u32>,
    /// A header block of this stream was decoded with an incomplete HPACK table, failed
    /// to decode, or was truncated.
    pub partial: bool,
}

/// The fields of the HTTP/1.1 request that asked for `Upgrade: h2c`, which becomes
/// stream 1.
pub fn from_http1(head: &RequestHead) -> Fields {
    let mut fields = Fields::default();
    fields.push(b":method", head.method().as_bytes());
    fields.push(b":path", head.target().as_bytes());
    for (name, value) in head.headers.iter() {
        fields.push(name, value);
    }
    fields
}

impl Stream {
    pub fn new(id: u32, ts: u64) -> Self {
        Self {
            id,
            first_byte_ns: ts,
            request: None,
            request_body: 0,
            request_ended: false,
            response: None,
            response_body: 0,
            last_ns: ts,
            grpc_status: None,
            partial: false,
        }
    }

    /// The record-ready exchange; `reset` is the RST_STREAM error code if one ended it.
    pub fn finish(self, end: ExchangeEnd, reset: Option<u32>) -> Exchange {
        let grpc = self.request.as_ref().and_then(|r| {
            Grpc::from_request(r.pseudo(":path")?, r.get("content-type")?, self.grpc_status)
        });
        let head = self.request.map(request_head).unwrap_or_default();
        let unparsed = head
            .method()
            .is_empty()
            .then(|| Box::<[u8]>::from(&b""[..]));
        // A response block that did not decode has no status to report: no response.
        let response = self.response.and_then(|(fields, head_ns)| {
            Some(Response {
                head: ResponseHead {
                    status: fields.status()?,
                    minor_version: 0,
                    // Frames delimit an HTTP/2 body, and it has no Upgrade; a stream
                    // ends, never its connection.
                    declared: Declared::Absent,
                    offers_h2c: false,
                    closes: false,
                },
                head_ns,
                end_ns: self.last_ns,
                head_size: 0,
                body_size: self.response_body,
                body_complete: end == ExchangeEnd::Complete,
            })
        });
        Exchange {
            request: Request {
                head,
                first_byte_ns: self.first_byte_ns,
                head_size: 0,
                body_size: self.request_body,
                body_complete: self.request_ended,
            },
            response,
            end,
            framing_ambiguous: false,
            request_seen: unparsed.map_or(RequestSeen::Head, RequestSeen::Unparsed),
            http2: Some(Http2Info {
                stream_id: self.id,
                partial: self.partial,
                reset_code: reset,
                grpc,
            }),
        }
    }
}

/// An HTTP/1-shaped head, so identity, redaction and records treat both versions alike:
/// `:authority` becomes `host` (unless one was sent), `:path` the request target.
fn request_head(fields: Fields) -> RequestHead {
    let host = match fields.get("host") {
        Some(_) => None,
        None => fields.pseudo(":authority").map(|a| (&b"host"[..], a)),
    };
    let text = |name| String::from_utf8_lossy(fields.pseudo(name).unwrap_or_default());
    let (method, target) = (text(":method"), text(":path"));
    let (headers, line) = Headers::from_pairs(
        host.into_iter().chain(fields.regular()),
        [method.as_bytes(), target.as_bytes()],
    );
    RequestHead::new(headers, line, 0, false)
}
