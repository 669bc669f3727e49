//! Reading fields of tracer records in assertions.
//!
//! Accessors panic with the whole record in the message: a missing or
//! mistyped field is a test failure, and the record is what one needs to see.

use anyhow::{Result, bail};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub trait RecordExt {
    fn str_field(&self, key: &str) -> &str;
    fn u64_field(&self, key: &str) -> u64;
    fn has(&self, key: &str) -> bool;
    /// A timestamp field, checked to be RFC 3339 UTC with 9 fractional digits.
    fn time_field(&self, key: &str) -> OffsetDateTime;
}

impl RecordExt for Value {
    fn str_field(&self, key: &str) -> &str {
        match self.get(key) {
            Some(Value::String(s)) => s,
            other => panic!("record field `{key}` is {other:?}, not a string; record: {self}"),
        }
    }

    fn u64_field(&self, key: &str) -> u64 {
        match self.get(key).and_then(Value::as_u64) {
            Some(n) => n,
            None => panic!(
                "record field `{key}` is {:?}, not an unsigned integer; record: {self}",
                self.get(key)
            ),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| !v.is_null())
    }

    fn time_field(&self, key: &str) -> OffsetDateTime {
        let text = self.str_field(key);
        parse_timestamp(text)
            .unwrap_or_else(|e| panic!("record field `{key}`: {e:#}; record: {self}"))
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, rejecting any other RFC 3339 shape.
pub fn parse_timestamp(text: &str) -> Result<OffsetDateTime> {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 30
        && bytes[19] == b'.'
        && bytes[29] == b'Z'
        && bytes[20..29].iter().all(u8::is_ascii_digit);
    if !shape_ok {
        bail!("`{text}` is not RFC 3339 UTC with 9 fractional digits and Z");
    }
    Ok(OffsetDateTime::parse(text, &Rfc3339)?)
}

/// One string field of each record, in stdout order.
pub fn strings<'a>(records: &'a [Value], key: &str) -> Vec<&'a str> {
    records.iter().map(|r| r.str_field(key)).collect()
}

pub fn u64s(records: &[Value], key: &str) -> Vec<u64> {
    records.iter().map(|r| r.u64_field(key)).collect()
}

/// Each record as `METHOD PATH STATUS PID`, sorted: what served what, to compare with
/// a log of several processes whose lines interleave in their own order.
pub fn served_by(records: &[Value]) -> Vec<String> {
    let mut lines = log_lines(
        records,
        &[
            "http.request.method",
            "url.path",
            "http.response.status_code",
            "process.pid",
        ],
    );
    lines.sort();
    lines
}

/// Each record as its `keys`' values (strings as they are, numbers in decimal) joined by
/// spaces: the shape of a server's own log line, to compare with it line by line.
pub fn log_lines(records: &[Value], keys: &[&str]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            keys.iter()
                .map(|&key| match &r[key] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn timestamps_need_nanoseconds_and_z() {
        let t = parse_timestamp("2026-11-22T19:30:00.123456789Z").unwrap();
        assert_eq!(t.nanosecond(), 123_456_789);
        assert!(parse_timestamp("2026-11-22T19:30:00.123Z").is_err());
        assert!(parse_timestamp("2026-11-22T19:30:00.123456789+00:00").is_err());
        assert!(parse_timestamp("2026-11-22T19:30:00Z").is_err());
    }
}
