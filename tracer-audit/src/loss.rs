//! Loss records: when a counter of things the tracer could not turn into access
//! records grows, a `loss` line says which, by how much, and over which interval, in
//! sequence with the records around it.
use serde::Serialize;

use crate::timestamp::format_rfc3339_ns;

/// Where a loss was counted: the line's `audit.loss.source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LossSource {
    /// The eBPF programs (events or bytes that never reached user space).
    Kernel,
    /// HTTP/1 framing in user space.
    Http,
    /// HTTP/2 framing and HPACK.
    Http2,
    /// Encrypted traffic the OpenSSL probes could not see into.
    Tls,
    /// Ring-buffer records that did not decode.
    Decoder,
    /// Records the output could not keep.
    Sink,
}

/// One counter's total since the tracer started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    pub source: LossSource,
    /// The counter's name, as the sensor's summary also names it.
    pub reason: &'static str,
    pub total: u64,
}

/// Every loss counter at one moment, always in the same order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LossSnapshot(Vec<Counter>);

impl LossSnapshot {
    /// The counters in the order they are always reported in.
    pub fn new(counters: Vec<Counter>) -> Self {
        Self(counters)
    }
}

/// A counter that grew during `[start_ns, end_ns]` (Unix nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loss {
    pub counter: Counter,
    pub count: u64,
    pub start_ns: i128,
    pub end_ns: i128,
}

/// Remembers the counters at the last check.
pub struct LossWatch {
    last: Vec<u64>,
    since_ns: i128,
}

impl LossWatch {
    pub fn new(now_ns: i128) -> Self {
        Self {
            last: Vec::new(),
            since_ns: now_ns,
        }
    }

    /// The counters that grew since the last check.
    pub fn changes(&mut self, now: &LossSnapshot, now_ns: i128) -> Vec<Loss> {
        self.last.resize(now.0.len(), 0);
        let mut losses = Vec::new();
        for (counter, last) in now.0.iter().zip(&mut self.last) {
            if counter.total > *last {
                losses.push(Loss {
                    counter: *counter,
                    count: counter.total - *last,
                    start_ns: self.since_ns,
                    end_ns: now_ns,
                });
            }
            *last = counter.total;
        }
        self.since_ns = now_ns;
        losses
    }
}

#[derive(Serialize)]
struct LossRecord<'a> {
    timestamp: &'a str,
    #[serde(rename = "audit.loss.source")]
    source: LossSource,
    #[serde(rename = "audit.loss.reason")]
    reason: &'static str,
    #[serde(rename = "audit.loss.count")]
    count: u64,
    #[serde(rename = "audit.loss.total")]
    total: u64,
    #[serde(rename = "audit.loss.interval.start")]
    start: &'a str,
    #[serde(rename = "audit.loss.interval.end")]
    end: &'a str,
}

/// The unsealed loss line.
pub fn write_record(loss: &Loss, line: &mut Vec<u8>) -> serde_json::Result<()> {
    let end = format_rfc3339_ns(loss.end_ns);
    serde_json::to_writer(
        line,
        &LossRecord {
            timestamp: &end,
            source: loss.counter.source,
            reason: loss.counter.reason,
            count: loss.count,
            total: loss.counter.total,
            start: &format_rfc3339_ns(loss.start_ns),
            end: &end,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_growth_is_reported_with_delta_total_and_interval() {
        let mut watch = LossWatch::new(1_000);
        let snapshot = |desyncs, discarded| {
            LossSnapshot::new(vec![
                Counter {
                    source: LossSource::Http,
                    reason: "desyncs",
                    total: desyncs,
                },
                Counter {
                    source: LossSource::Sink,
                    reason: "discarded_records",
                    total: discarded,
                },
            ])
        };
        let quiet = snapshot(0, 0);
        assert!(watch.changes(&quiet, 2_000).is_empty());
        let grown = snapshot(3, 5);
        let losses = watch.changes(&grown, 3_000);
        let summary: Vec<_> = losses
            .iter()
            .map(|l| {
                (
                    l.counter.reason,
                    l.count,
                    l.counter.total,
                    l.start_ns,
                    l.end_ns,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("desyncs", 3, 3, 2_000, 3_000),
                ("discarded_records", 5, 5, 2_000, 3_000)
            ]
        );
        let more = snapshot(3, 7);
        let losses = watch.changes(&more, 4_000);
        assert_eq!(losses.len(), 1);
        assert_eq!((losses[0].count, losses[0].counter.total), (2, 7));
        let mut line = Vec::new();
        write_record(&losses[0], &mut line).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["audit.loss.source"], "sink");
        assert_eq!(v["audit.loss.count"], 2);
        assert_eq!(
            v["audit.loss.interval.start"],
            "1970-01-01T00:00:00.000003000Z"
        );
        assert_eq!(v["timestamp"], v["audit.loss.interval.end"]);
    }
}
