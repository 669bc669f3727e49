//! The sensor's loss counters beside the kernel's: each one's source and name, written
//! once. Loss lines name them in this order, and the summary line carries the same names
//! (a test holds the two together).
use tracer_audit::loss::LossSource;

use crate::connection::TrackerStats;

/// A counter of things user space could not turn into records, or an anomaly the trail
/// must show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    NonHttpChunks,
    NonHttpBytes,
    Desyncs,
    OversizedHeads,
    OrphanResponses,
    HeadsOverBudget,
    /// Not a loss but an anomaly: requests framed in a way servers disagree on (CL+TE,
    /// odd Transfer-Encoding, bare LF in chunk lines).
    AmbiguousFraming,
    /// Not a loss but an anomaly: request heads a close or reset cut off; each is a
    /// `connection_closed` record with what was seen.
    HeadsCutOff,
    /// Not a loss but an anomaly: requests sent after one that closes the connection,
    /// never answered; the server did not take them for requests, so no record.
    RequestsAfterClose,
    /// Not a loss: open connections the kernel's connection cache dropped (more than
    /// 65,536 descriptors of watched processes), picked up again at their next syscall.
    ConnectionsForgotten,
    /// Watched processes holding an io_uring: requests they read through a ring are
    /// missing, in a number nobody can count.
    IoUringProcesses,
    /// Requests that exist but are not recorded: inside TLS the tracer cannot decrypt.
    TlsWithoutPlaintext,
    /// Not losses: HTTP/2 connections and streams are decoded; counted to tell them apart.
    Http2Connections,
    Http2Streams,
    Http2Resets,
    /// HTTP/2 decoding that could not see or keep everything (docs/http2.md).
    Http2PartialConnections,
    Http2FramingLost,
    Http2HpackErrors,
    Http2HeaderListsTruncated,
    Http2ContinuationFloods,
    Http2OversizedFrames,
    Http2MalformedFrames,
    Http2OrphanFrames,
    Http2StreamsOverLimit,
    DecodeErrors,
    DiscardedRecords,
}

/// What the counters are read from at one moment.
pub struct Totals<'a> {
    pub tracker: &'a TrackerStats,
    pub decode_errors: u64,
    pub io_uring_processes: u64,
    pub discarded: u64,
}

impl Counted {
    /// Every counter, in the order loss lines always name them.
    pub const ALL: [Counted; 26] = [
        Self::NonHttpChunks,
        Self::NonHttpBytes,
        Self::Desyncs,
        Self::OversizedHeads,
        Self::OrphanResponses,
        Self::HeadsOverBudget,
        Self::AmbiguousFraming,
        Self::HeadsCutOff,
        Self::RequestsAfterClose,
        Self::ConnectionsForgotten,
        Self::IoUringProcesses,
        Self::TlsWithoutPlaintext,
        Self::Http2Connections,
        Self::Http2Streams,
        Self::Http2Resets,
        Self::Http2PartialConnections,
        Self::Http2FramingLost,
        Self::Http2HpackErrors,
        Self::Http2HeaderListsTruncated,
        Self::Http2ContinuationFloods,
        Self::Http2OversizedFrames,
        Self::Http2MalformedFrames,
        Self::Http2OrphanFrames,
        Self::Http2StreamsOverLimit,
        Self::DecodeErrors,
        Self::DiscardedRecords,
    ];

    pub fn source(self) -> LossSource {
        match self {
            Self::NonHttpChunks
            | Self::NonHttpBytes
            | Self::Desyncs
            | Self::OversizedHeads
            | Self::OrphanResponses
            | Self::HeadsOverBudget
            | Self::AmbiguousFraming
            | Self::HeadsCutOff
            | Self::RequestsAfterClose
            | Self::Http2Connections => LossSource::Http,
            Self::ConnectionsForgotten | Self::IoUringProcesses => LossSource::Kernel,
            Self::TlsWithoutPlaintext => LossSource::Tls,
            Self::Http2Streams
            | Self::Http2Resets
            | Self::Http2PartialConnections
            | Self::Http2FramingLost
            | Self::Http2HpackErrors
            | Self::Http2HeaderListsTruncated
            | Self::Http2ContinuationFloods
            | Self::Http2OversizedFrames
            | Self::Http2MalformedFrames
            | Self::Http2OrphanFrames
            | Self::Http2StreamsOverLimit => LossSource::Http2,
            Self::DecodeErrors => LossSource::Decoder,
            Self::DiscardedRecords => LossSource::Sink,
        }
    }

    /// The name in loss lines; in the summary, the key (HTTP/2's under `"http2"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::NonHttpChunks => "non_http_chunks",
            Self::NonHttpBytes => "non_http_bytes",
            Self::Desyncs => "desyncs",
            Self::OversizedHeads => "oversized_heads",
            Self::OrphanResponses => "orphan_responses",
            Self::HeadsOverBudget => "heads_over_budget",
            Self::AmbiguousFraming => "ambiguous_framing",
            Self::HeadsCutOff => "heads_cut_off",
            Self::RequestsAfterClose => "requests_after_close",
            Self::ConnectionsForgotten => "connections_forgotten",
            Self::IoUringProcesses => "io_uring_processes",
            Self::TlsWithoutPlaintext => "tls_without_plaintext",
            Self::Http2Connections => "http2_connections",
            Self::Http2Streams => "streams",
            Self::Http2Resets => "resets",
            Self::Http2PartialConnections => "partial_connections",
            Self::Http2FramingLost => "framing_lost",
            Self::Http2HpackErrors => "hpack_errors",
            Self::Http2HeaderListsTruncated => "header_lists_truncated",
            Self::Http2ContinuationFloods => "continuation_floods",
            Self::Http2OversizedFrames => "oversized_frames",
            Self::Http2MalformedFrames => "malformed_frames",
            Self::Http2OrphanFrames => "orphan_frames",
            Self::Http2StreamsOverLimit => "streams_over_limit",
            Self::DecodeErrors => "decode_errors",
            Self::DiscardedRecords => "discarded_records",
        }
    }

    pub fn total(self, t: &Totals<'_>) -> u64 {
        let (s, h2) = (&t.tracker.http, &t.tracker.http.http2);
        match self {
            Self::NonHttpChunks => s.non_http_chunks,
            Self::NonHttpBytes => s.non_http_bytes,
            Self::Desyncs => s.desyncs,
            Self::OversizedHeads => s.oversized_heads,
            Self::OrphanResponses => s.orphan_responses,
            Self::HeadsOverBudget => s.heads_over_budget,
            Self::AmbiguousFraming => s.ambiguous_framing,
            Self::HeadsCutOff => s.heads_cut_off,
            Self::RequestsAfterClose => s.requests_after_close,
            Self::ConnectionsForgotten => t.tracker.connections_forgotten,
            Self::IoUringProcesses => t.io_uring_processes,
            Self::TlsWithoutPlaintext => t.tracker.tls_without_plaintext,
            Self::Http2Connections => s.http2_connections,
            Self::Http2Streams => h2.streams,
            Self::Http2Resets => h2.resets,
            Self::Http2PartialConnections => h2.partial_connections,
            Self::Http2FramingLost => h2.framing_lost,
            Self::Http2HpackErrors => h2.hpack_errors,
            Self::Http2HeaderListsTruncated => h2.header_lists_truncated,
            Self::Http2ContinuationFloods => h2.continuation_floods,
            Self::Http2OversizedFrames => h2.oversized_frames,
            Self::Http2MalformedFrames => h2.malformed_frames,
            Self::Http2OrphanFrames => h2.orphan_frames,
            Self::Http2StreamsOverLimit => h2.streams_over_limit,
            Self::DecodeErrors => t.decode_errors,
            Self::DiscardedRecords => t.discarded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary made of distinct values, so a counter read from the wrong field shows.
    fn numbered() -> (TrackerStats, serde_json::Value) {
        let mut value = serde_json::to_value(TrackerStats::default()).unwrap();
        let mut n = 100;
        let mut number = |v: &mut serde_json::Value| {
            for (_, field) in v.as_object_mut().unwrap().iter_mut() {
                if field.is_u64() {
                    n += 1;
                    *field = n.into();
                }
            }
        };
        number(&mut value);
        number(&mut value["http2"]);
        (serde_json::from_value(value.clone()).unwrap(), value)
    }

    #[test]
    fn every_counter_reads_the_summary_field_of_its_name() {
        let (tracker, summary) = numbered();
        let totals = Totals {
            tracker: &tracker,
            decode_errors: 7,
            io_uring_processes: 9,
            discarded: 8,
        };
        for counted in Counted::ALL {
            let field = match counted.source() {
                LossSource::Http2 => &summary["http2"][counted.name()],
                LossSource::Decoder => &serde_json::json!(7),
                LossSource::Sink => &serde_json::json!(8),
                _ if counted == Counted::IoUringProcesses => &serde_json::json!(9),
                _ => &summary[counted.name()],
            };
            assert_eq!(
                field.as_u64(),
                Some(counted.total(&totals)),
                "{counted:?} ({})",
                counted.name()
            );
        }
    }
}
