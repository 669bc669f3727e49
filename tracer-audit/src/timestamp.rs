//! RFC 3339 timestamps as every line of the trail writes them: UTC, nine fractional
//! digits, `Z`.

const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// RFC 3339 only has four-digit years: 0000-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999999Z.
const MIN_UNIX_NS: i128 = -62_167_219_200 * NANOS_PER_SEC;
const MAX_UNIX_NS: i128 = 253_402_300_800 * NANOS_PER_SEC - 1;

/// Formats nanoseconds since the Unix epoch as RFC 3339 UTC with exactly 9 fractional digits
/// and `Z`. Values outside years 0000..=9999 (not representable in RFC 3339) are clamped.
pub fn format_rfc3339_ns(unix_ns: i128) -> String {
    Rfc3339::new(unix_ns).as_str().to_owned()
}

/// A timestamp as [`format_rfc3339_ns`] writes it, held inline: a record carries two, and
/// building them costs a few integer divisions, no allocation. Hand-rolled rather than
/// going through a formatting library for the same reason.
#[derive(Clone, Copy)]
pub struct Rfc3339([u8; 30]);

impl Rfc3339 {
    pub fn new(unix_ns: i128) -> Self {
        let (secs, nanos) = split(unix_ns);
        Self::from_parts(secs, nanos)
    }

    fn from_parts(secs: i64, nanos: u32) -> Self {
        let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
        let second_of_day = secs.rem_euclid(SECS_PER_DAY) as u32;
        let mut out = *b"0000-00-00T00:00:00.000000000Z";
        put_padded(&mut out[0..4], year);
        put_padded(&mut out[5..7], month);
        put_padded(&mut out[8..10], day);
        put_padded(&mut out[11..13], second_of_day / 3600);
        put_padded(&mut out[14..16], second_of_day / 60 % 60);
        put_padded(&mut out[17..19], second_of_day % 60);
        put_padded(&mut out[20..29], nanos);
        Self(out)
    }

    /// The text's bytes: only ASCII digits and separators, so JSON writers may copy
    /// them without escaping (or UTF-8 checks).
    pub fn as_bytes(&self) -> &[u8; 30] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Whole seconds since the epoch and the nanoseconds past them, after clamping to what
/// RFC 3339 can write.
fn split(unix_ns: i128) -> (i64, u32) {
    let unix_ns = unix_ns.clamp(MIN_UNIX_NS, MAX_UNIX_NS);
    // In range after the clamp: |seconds| < 2^38, nanos < 10^9. Years 1678-2262 fit
    // in an i64, whose division is a few cycles; i128's is a library call, and was
    // most of this function's time in the sensor's record loop.
    match i64::try_from(unix_ns) {
        Ok(ns) => {
            let per_sec = NANOS_PER_SEC as i64;
            (ns.div_euclid(per_sec), ns.rem_euclid(per_sec) as u32)
        }
        Err(_) => (
            unix_ns.div_euclid(NANOS_PER_SEC) as i64,
            unix_ns.rem_euclid(NANOS_PER_SEC) as u32,
        ),
    }
}

/// Formats timestamps that mostly fall in the second of the one before, as a record's
/// do: the date and time of day of the last second are kept, and a timestamp in the same
/// second writes only its nine fractional digits.
#[derive(Default)]
pub struct Rfc3339Cache {
    last: Option<(i64, Rfc3339)>,
}

impl Rfc3339Cache {
    pub fn format(&mut self, unix_ns: i128) -> Rfc3339 {
        let (secs, nanos) = split(unix_ns);
        match &self.last {
            Some((second, text)) if *second == secs => {
                let mut text = *text;
                put_padded(&mut text.0[20..29], nanos);
                text
            }
            _ => {
                let text = Rfc3339::from_parts(secs, nanos);
                self.last = Some((secs, text));
                text
            }
        }
    }
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

/// Writes `value` as decimal digits filling `out`, zero-padded on the left.
fn put_padded(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
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
        fn the_cache_writes_what_new_writes(
            start in MIN_UNIX_NS..=MAX_UNIX_NS,
            steps in proptest::collection::vec(-3 * NS..3 * NS, 1..20),
        ) {
            let mut cache = Rfc3339Cache::default();
            let mut ns = start;
            for step in steps {
                let (cached, new) = (cache.format(ns), Rfc3339::new(ns));
                prop_assert_eq!(cached.as_str(), new.as_str());
                ns = ns.saturating_add(step);
            }
        }

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
