//! RFC 3339 timestamps as every line of the trail writes them: UTC, nine fractional
//! digits, `Z`.

const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// RFC 3339 only has four-digit years: 0000-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999999Z.
const MIN_UNIX_NS: i128 = -62_167_219_200 * NANOS_PER_SEC;
const MAX_UNIX_NS: i128 = 253_402_300_800 * NANOS_PER_SEC - 1;

/// Formats nanoseconds since the Unix epoch as RFC 3339 UTC with exactly 9 fractional digits
/// and `Z`. Values outside years 0000..=9999 (not representable in RFC 3339) are clamped.
///
/// Hand-rolled rather than going through a formatting library because it runs twice per
/// record: this is a few integer divisions and one 30-byte allocation.
pub fn format_rfc3339_ns(unix_ns: i128) -> String {
    let unix_ns = unix_ns.clamp(MIN_UNIX_NS, MAX_UNIX_NS);
    // In range after the clamp: |seconds| < 2^38, nanos < 10^9.
    let secs = unix_ns.div_euclid(NANOS_PER_SEC) as i64;
    let nanos = unix_ns.rem_euclid(NANOS_PER_SEC) as u32;
    let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    let second_of_day = secs.rem_euclid(SECS_PER_DAY) as u32;

    let mut out = String::with_capacity(30);
    push_padded(&mut out, year, 4);
    out.push('-');
    push_padded(&mut out, month, 2);
    out.push('-');
    push_padded(&mut out, day, 2);
    out.push('T');
    push_padded(&mut out, second_of_day / 3600, 2);
    out.push(':');
    push_padded(&mut out, second_of_day / 60 % 60, 2);
    out.push(':');
    push_padded(&mut out, second_of_day % 60, 2);
    out.push('.');
    push_padded(&mut out, nanos, 9);
    out.push('Z');
    out
}

/// Proleptic Gregorian (year, month, day) for days since 1970-01-01, after Howard Hinnant's
/// `civil_from_days`. Only called with years 0..=9999, so the year fits a u32.
fn civil_from_days(days: i64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March so the leap day is the last day of the year.
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year as u32, month as u32, day as u32)
}

fn push_padded(out: &mut String, value: u32, width: u32) {
    let mut divisor = 10u32.pow(width - 1);
    while divisor > 0 {
        let digit = (value / divisor % 10) as u8;
        out.push(char::from(b'0' + digit));
        divisor /= 10;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::{OffsetDateTime, macros::format_description};

    use super::*;

    const NS: i128 = NANOS_PER_SEC;

    #[test]
    fn formats_epoch() {
        assert_eq!(format_rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn formats_known_instant() {
        let ns = 1_795_375_670 * NS + 123_456_789;
        assert_eq!(format_rfc3339_ns(ns), "2026-11-22T19:27:50.123456789Z");
    }

    #[test]
    fn formats_leap_days() {
        assert_eq!(
            format_rfc3339_ns(951_782_400 * NS),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(
            format_rfc3339_ns(1_709_251_199 * NS + 999_999_999),
            "2024-02-29T23:59:59.999999999Z"
        );
        assert_eq!(
            format_rfc3339_ns(1_709_251_200 * NS),
            "2024-03-01T00:00:00.000000000Z"
        );
    }

    #[test]
    fn century_non_leap_year_skips_february_29() {
        assert_eq!(
            format_rfc3339_ns(4_107_542_400 * NS),
            "2100-03-01T00:00:00.000000000Z"
        );
    }

    #[test]
    fn formats_before_epoch() {
        assert_eq!(format_rfc3339_ns(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn clamps_to_rfc3339_year_range() {
        assert_eq!(
            format_rfc3339_ns(i128::MIN),
            "0000-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            format_rfc3339_ns(i128::MAX),
            "9999-12-31T23:59:59.999999999Z"
        );
    }

    proptest! {
        #[test]
        fn agrees_with_time_crate(ns in MIN_UNIX_NS..=MAX_UNIX_NS) {
            let format = format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
            );
            let expected = OffsetDateTime::from_unix_timestamp_nanos(ns)
                .expect("in range")
                .format(&format)
                .expect("formattable");
            prop_assert_eq!(format_rfc3339_ns(ns), expected);
        }
    }
}
