//! Times as the hub reads and prints them: RFC 3339 with nanoseconds, UTC.
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Unix nanoseconds of an RFC 3339 time with any offset; `None` if it is not one.
pub fn parse_rfc3339_ns(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos()).ok()
}

/// `unix_ns` as `2026-11-22T19:27:50.000002000Z`.
pub fn format_ns(unix_ns: i64) -> String {
    tracer_audit::timestamp::format_rfc3339_ns(i128::from(unix_ns))
}

/// Now, in Unix nanoseconds.
pub fn now_ns() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_nanoseconds_and_reads_offsets() {
        let ns = parse_rfc3339_ns("2026-11-22T19:27:50.000002000Z").unwrap();
        assert_eq!(format_ns(ns), "2026-11-22T19:27:50.000002000Z");
        assert_eq!(
            parse_rfc3339_ns("2026-11-22T20:27:50.000002+01:00"),
            Some(ns)
        );
        assert_eq!(parse_rfc3339_ns("yesterday"), None);
    }
}
