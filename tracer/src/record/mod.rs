//! The access record: one JSON object per HTTP request, keys named after OpenTelemetry
//! semantic conventions (see docs/record.md).
mod escape;
mod normalize;
mod process_fields;
mod target;
mod traceparent;

#[cfg(test)]
mod golden_tests;

use std::{borrow::Cow, net::IpAddr};

use tracer_audit::timestamp::{Rfc3339, Rfc3339Cache};

use self::process_fields::ProcessFields;
use crate::{
    connection::Finished,
    enrich::{Clock, PathRedactor, ProcessInfo, QueryRedactor},
    http::{ExchangeEnd, RequestSeen},
    identity::{ForwardedClient, Identifier},
    json::Fields,
};

/// Borrowed view of what a record says about one request; written directly, never
/// stored. The identity's fields follow, then the serving process's, from
/// `ProcessFields`.
pub struct AccessRecord<'a> {
    pub timestamp: Rfc3339,
    pub response_timestamp: Option<Rfc3339>,
    pub duration_ns: Option<u64>,
    pub method: &'a str,
    pub path: Option<Cow<'a, str>>,
    /// Written whenever `url.path` is, equal or not: one field to query by.
    pub normalized_path: Option<Cow<'a, str>>,
    pub query: Option<Cow<'a, str>>,
    pub scheme: &'static str,
    pub server_address: Option<Cow<'a, str>>,
    pub server_port: Option<u16>,
    pub local_address: Option<IpAddr>,
    pub peer_address: Option<IpAddr>,
    pub peer_port: Option<u16>,
    pub client_address: Option<IpAddr>,
    pub client_port: Option<u16>,
    pub network_type: Option<&'static str>,
    pub transport: &'static str,
    pub protocol_name: &'static str,
    pub protocol_version: &'static str,
    pub status_code: Option<u16>,
    pub request_body_size: u64,
    pub response_body_size: Option<u64>,
    pub user_agent: Option<Cow<'a, str>>,
    pub request_id: Option<Cow<'a, str>>,
    pub trace_id: Option<&'a str>,
    pub span_id: Option<&'a str>,
    pub pid: u32,
    pub tid: u32,
    pub connection_id: u64,
    pub outcome: &'static str,
    /// For `request_unparsed`: the start of the raw request line, escaped.
    pub request_line: Option<String>,
    /// "ambiguous" when servers may disagree on where this request starts.
    pub framing: Option<&'static str>,
    /// HTTP/2: "partial" when the stream's headers were decoded without the whole HPACK
    /// state (connection joined mid-way, capture gap, undecodable or truncated block).
    pub h2_state: Option<&'static str>,
    /// HTTP/2: the RST_STREAM error code of a `reset` stream.
    pub h2_error_code: Option<u32>,
    pub rpc_system: Option<&'static str>,
    pub rpc_service: Option<String>,
    pub rpc_method: Option<String>,
    pub grpc_status_code: Option<u32>,
}

impl AccessRecord<'_> {
    /// Writes `{` and the fields, in this order, leaving the object open for the
    /// identity's and the process's fields.
    fn write_open(&self, out: &mut Vec<u8>) {
        let mut f = Fields::open(out);
        f.time(key!("timestamp"), &self.timestamp);
        f.opt_time(
            key!("http.response.timestamp"),
            self.response_timestamp.as_ref(),
        );
        f.opt_uint(key!("event.duration"), self.duration_ns);
        f.str(key!("http.request.method"), self.method);
        f.opt_str(key!("url.path"), self.path.as_deref());
        f.opt_str(key!("url.path.normalized"), self.normalized_path.as_deref());
        f.opt_str(key!("url.query"), self.query.as_deref());
        f.str(key!("url.scheme"), self.scheme);
        f.opt_str(key!("server.address"), self.server_address.as_deref());
        f.opt_uint(key!("server.port"), self.server_port);
        f.opt_ip(key!("network.local.address"), self.local_address);
        f.opt_ip(key!("network.peer.address"), self.peer_address);
        f.opt_uint(key!("network.peer.port"), self.peer_port);
        f.opt_ip(key!("client.address"), self.client_address);
        f.opt_uint(key!("client.port"), self.client_port);
        f.opt_str(key!("network.type"), self.network_type);
        f.str(key!("network.transport"), self.transport);
        f.str(key!("network.protocol.name"), self.protocol_name);
        f.str(key!("network.protocol.version"), self.protocol_version);
        f.opt_uint(key!("http.response.status_code"), self.status_code);
        f.uint(key!("http.request.body.size"), self.request_body_size);
        f.opt_uint(key!("http.response.body.size"), self.response_body_size);
        f.opt_str(key!("user_agent.original"), self.user_agent.as_deref());
        f.opt_str(
            key!("http.request.header.x-request-id"),
            self.request_id.as_deref(),
        );
        f.opt_str(key!("trace_id"), self.trace_id);
        f.opt_str(key!("span_id"), self.span_id);
        f.uint(key!("process.pid"), self.pid);
        f.uint(key!("thread.id"), self.tid);
        f.uint(key!("tracer.connection.id"), self.connection_id);
        f.str(key!("tracer.outcome"), self.outcome);
        f.opt_str(key!("tracer.request.line"), self.request_line.as_deref());
        f.opt_str(key!("tracer.framing"), self.framing);
        f.opt_str(key!("tracer.h2.state"), self.h2_state);
        f.opt_uint(key!("tracer.h2.error_code"), self.h2_error_code);
        f.opt_str(key!("rpc.system"), self.rpc_system);
        f.opt_str(key!("rpc.service"), self.rpc_service.as_deref());
        f.opt_str(key!("rpc.method"), self.rpc_method.as_deref());
        f.opt_uint(key!("rpc.grpc.status_code"), self.grpc_status_code);
        f.finish();
    }
}

/// What every record is built with.
pub struct RecordContext {
    clock: Clock,
    /// A batch's records fall mostly in one second: its date and time are written once.
    times: Rfc3339Cache,
    redactor: QueryRedactor,
    paths: PathRedactor,
    process_fields: ProcessFields,
    identifier: Identifier,
}

impl RecordContext {
    pub fn new(
        clock: Clock,
        redactor: QueryRedactor,
        paths: PathRedactor,
        identifier: Identifier,
    ) -> Self {
        Self {
            clock,
            times: Rfc3339Cache::default(),
            redactor,
            paths,
            process_fields: ProcessFields::default(),
            identifier,
        }
    }

    /// Appends the record as one JSON object (no newline) to `out`, with line breaks
    /// and bidirectional controls written as `\uXXXX` escapes (see `escape`).
    pub fn write_json(
        &mut self,
        finished: &Finished,
        process: Option<&ProcessInfo>,
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        let head = &finished.exchange.request.head;
        let target = target::split(head.target());
        let query = target.query;
        let times = self.timestamps(finished);
        let mut record = self.build(finished, target, times);
        let identity = self.identifier.identify(head, query, record.peer_address);
        match identity.client {
            None => {}
            Some(ForwardedClient::Address { ip, port }) => {
                record.client_address = Some(ip);
                record.client_port = port;
            }
            Some(ForwardedClient::Unknown) => {
                record.client_address = None;
                record.client_port = None;
            }
        }
        record.write_open(out);
        identity.write_json(out);
        if let Some(process) = process {
            out.extend_from_slice(self.process_fields.json(process));
        }
        out.push(b'}');
        escape::escape_invisible_breaks(out, start);
    }

    /// The request's and the response's timestamps.
    fn timestamps(&mut self, finished: &Finished) -> (Rfc3339, Option<Rfc3339>) {
        let exchange = &finished.exchange;
        let request = self
            .times
            .format(self.clock.unix_ns(exchange.request.first_byte_ns));
        let response = exchange
            .response
            .as_ref()
            .map(|r| self.times.format(self.clock.unix_ns(r.head_ns)));
        (request, response)
    }

    fn build<'a>(
        &self,
        finished: &'a Finished,
        target: target::Target<'a>,
        (timestamp, response_timestamp): (Rfc3339, Option<Rfc3339>),
    ) -> AccessRecord<'a> {
        let exchange = &finished.exchange;
        let request = &exchange.request;
        let head = &request.head;
        let response = exchange.response.as_ref();
        let endpoints = finished.meta.endpoints.as_ref();
        let host = head
            .header("host")
            .map(|h| without_userinfo(String::from_utf8_lossy(h)));
        let server_address = target
            .authority
            .map(Cow::Borrowed)
            .or(host)
            .map(|h| strip_port(h));
        let trace = head.header("traceparent").and_then(traceparent::parse);
        let unparsed = exchange.unparsed_request();
        // The raw start of a request line no parser read, or one a close cut off.
        let raw_line = match &exchange.request_seen {
            RequestSeen::Unparsed(line) | RequestSeen::CutOff(line) => Some(&line[..]),
            RequestSeen::Head => None,
        };
        let h2 = exchange.http2.as_ref();
        let grpc = h2.and_then(|h| h.grpc.as_ref());
        let (path, normalized_path) = match target.path {
            Some(raw) => {
                let (path, normalized) = self.paths.redact(raw, normalize::normalize(raw));
                (Some(path), Some(normalized))
            }
            None => (None, None),
        };
        AccessRecord {
            timestamp,
            response_timestamp,
            duration_ns: response.map(|r| r.head_ns.saturating_sub(request.first_byte_ns)),
            // OpenTelemetry's name for a method the instrumentation does not know.
            method: if unparsed.is_some() || head.method().is_empty() {
                "_OTHER"
            } else {
                head.method()
            },
            path,
            normalized_path,
            query: target
                .query
                .filter(|q| !q.is_empty())
                .map(|q| self.redactor.redact(q)),
            scheme: if finished.meta.tls { "https" } else { "http" },
            server_address,
            server_port: endpoints.map(|e| e.local_port),
            local_address: endpoints.map(|e| e.local),
            peer_address: endpoints.map(|e| e.peer),
            peer_port: endpoints.map(|e| e.peer_port),
            client_address: endpoints.map(|e| e.peer),
            client_port: endpoints.map(|e| e.peer_port),
            network_type: endpoints.map(|e| match e.peer {
                IpAddr::V4(_) => "ipv4",
                IpAddr::V6(_) => "ipv6",
            }),
            transport: "tcp",
            protocol_name: "http",
            protocol_version: match (exchange.http2.is_some(), head.http09, head.minor_version) {
                (true, _, _) => "2",
                (false, true, _) => "0.9",
                (false, false, 0) => "1.0",
                (false, false, _) => "1.1",
            },
            status_code: response.map(|r| r.head.status),
            request_body_size: request.body_size,
            response_body_size: response.map(|r| r.body_size),
            user_agent: head.header("user-agent").map(String::from_utf8_lossy),
            request_id: head.header("x-request-id").map(String::from_utf8_lossy),
            trace_id: trace.map(|t| t.trace_id),
            span_id: trace.map(|t| t.span_id),
            pid: finished.meta.tgid,
            tid: finished.tid,
            connection_id: finished.meta.conn_id,
            outcome: match unparsed {
                Some(_) => "request_unparsed",
                None => outcome(exchange.end, finished.cut_by_shutdown),
            },
            request_line: raw_line.map(|raw| self.redacted_line(raw)),
            framing: exchange.framing_ambiguous.then_some("ambiguous"),
            h2_state: h2.filter(|h| h.partial).map(|_| "partial"),
            h2_error_code: h2.and_then(|h| h.reset_code),
            rpc_system: grpc.map(|_| "grpc"),
            rpc_service: grpc.map(|g| g.service.clone()),
            rpc_method: grpc.map(|g| g.method.clone()),
            grpc_status_code: grpc.and_then(|g| g.status),
        }
    }
}

/// Raw request bytes as printable ASCII: other bytes, `"` and `\` become `\xNN`, so a
/// client cannot inject anything into whatever displays the record.
impl RecordContext {
    /// The start of a request line no parser read: escaped, then its path and query
    /// redacted like any other, since it may carry the same secrets.
    fn redacted_line(&self, raw: &[u8]) -> String {
        let line = escape(raw);
        let (method, rest) = line.split_once(' ').unwrap_or(("", line.as_str()));
        let (target, version) = rest.split_once(' ').unwrap_or((rest, ""));
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let (path, _) = self.paths.redact(path, normalize::normalize(path));
        let mut out = String::with_capacity(line.len());
        if !method.is_empty() {
            out.push_str(method);
            out.push(' ');
        }
        out.push_str(&path);
        if let Some(query) = query {
            out.push('?');
            out.push_str(&self.redactor.redact(query));
        }
        if !version.is_empty() {
            out.push(' ');
            out.push_str(version);
        }
        out
    }
}

fn escape(raw: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn outcome(end: ExchangeEnd, cut_by_shutdown: bool) -> &'static str {
    match end {
        ExchangeEnd::Complete => "complete",
        ExchangeEnd::ConnectionClosed if cut_by_shutdown => "tracer_stopped",
        ExchangeEnd::ConnectionClosed => "connection_closed",
        ExchangeEnd::ResponseUnparsed => "response_unparsed",
        ExchangeEnd::Upgraded => "upgraded",
        ExchangeEnd::Reset => "reset",
        ExchangeEnd::GoAway => "goaway",
    }
}

/// [`target::without_userinfo`] of a `Host` header, which may be borrowed or owned.
fn without_userinfo(host: Cow<'_, str>) -> Cow<'_, str> {
    match host {
        Cow::Borrowed(h) => Cow::Borrowed(target::without_userinfo(h)),
        Cow::Owned(h) => Cow::Owned(target::without_userinfo(&h).to_owned()),
    }
}

/// `host:port`, `[v6]:port` or `host` -> host (brackets kept off for IPv6 literals).
fn strip_port(host: Cow<'_, str>) -> Cow<'_, str> {
    let trimmed = host.trim();
    if let Some(rest) = trimmed.strip_prefix('[') {
        let end = rest.find(']').unwrap_or(rest.len());
        return Cow::Owned(rest[..end].to_owned());
    }
    let end = match trimmed.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.len(),
        _ => trimmed.len(),
    };
    if end == host.len() {
        return host;
    }
    // Borrowed hosts (nearly all) stay borrowed: a `Host: name:port` header is the
    // common case, and an allocation per record for it showed in profiles.
    let start = host.len() - host.trim_start().len();
    match host {
        Cow::Borrowed(h) => Cow::Borrowed(&h[start..start + end]),
        Cow::Owned(h) => Cow::Owned(h[start..start + end].to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports_from_host_headers() {
        assert_eq!(strip_port("example.com:8080".into()), "example.com");
        assert_eq!(strip_port("example.com".into()), "example.com");
        assert_eq!(strip_port("[::1]:8080".into()), "::1");
        assert_eq!(strip_port("[2001:db8::1]".into()), "2001:db8::1");
        assert_eq!(strip_port(" a.b ".into()), "a.b");
    }

    #[test]
    fn host_headers_lose_their_userinfo() {
        let host = |h: &str| strip_port(without_userinfo(Cow::Owned(h.to_owned()))).into_owned();
        assert_eq!(host("user:S3CRET@a"), "a");
        assert_eq!(host("user:S3CRET@a:8080"), "a");
        assert_eq!(host("u@[::1]:80"), "::1");
        assert_eq!(without_userinfo(Cow::Borrowed("a:1")), "a:1");
    }

    #[test]
    fn outcome_names_say_why_a_response_is_missing() {
        assert_eq!(
            outcome(ExchangeEnd::ConnectionClosed, true),
            "tracer_stopped"
        );
        assert_eq!(
            outcome(ExchangeEnd::ConnectionClosed, false),
            "connection_closed"
        );
        assert_eq!(outcome(ExchangeEnd::Complete, false), "complete");
    }

    #[test]
    fn raw_request_lines_are_escaped_to_printable_ascii() {
        assert_eq!(
            escape(b"GET /a\xff\"\\ \x01"),
            "GET /a\\xff\\x22\\x5c \\x01"
        );
    }
}
