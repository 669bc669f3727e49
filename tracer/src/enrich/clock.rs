//! Kernel timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to wall-clock UTC.

const NANOS_PER_SEC: i128 = 1_000_000_000;
/// Samples taken by [`Clock::calibrate`]; the best of a few filters out a read interrupted by
/// preemption without making calibration noticeable.
const CALIBRATION_SAMPLES: usize = 5;

/// Converts CLOCK_MONOTONIC nanoseconds (what `bpf_ktime_get_ns` returns) to wall-clock UTC.
///
/// The offset is fixed at calibration: a later step of the wall clock (settimeofday, NTP step)
/// is not followed, so long-running callers should calibrate again from time to time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds.
    offset_ns: i128,
}

impl Clock {
    /// Samples CLOCK_REALTIME and CLOCK_MONOTONIC several times and keeps the sample whose
    /// monotonic read was bracketed most tightly by two realtime reads, so the offset error is
    /// at most half that gap (tens of nanoseconds on an idle core).
    pub fn calibrate() -> Self {
        let best = (0..CALIBRATION_SAMPLES)
            .map(|_| sample_offset())
            .min_by_key(|sample| sample.gap_ns)
            .map_or(0, |sample| sample.offset_ns);
        Self { offset_ns: best }
    }

    /// A clock with a fixed offset (wall clock minus monotonic clock), for tests and replays.
    #[cfg(test)]
    pub fn with_offset_ns(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Nanoseconds since the Unix epoch (UTC) for a monotonic timestamp.
    pub fn unix_ns(&self, monotonic_ns: u64) -> i128 {
        i128::from(monotonic_ns) + self.offset_ns
    }
}

struct OffsetSample {
    offset_ns: i128,
    gap_ns: i128,
}

fn sample_offset() -> OffsetSample {
    let before = clock_ns(libc::CLOCK_REALTIME);
    let monotonic = clock_ns(libc::CLOCK_MONOTONIC);
    let after = clock_ns(libc::CLOCK_REALTIME);
    OffsetSample {
        offset_ns: before + (after - before) / 2 - monotonic,
        gap_ns: after - before,
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    // Both clocks are mandatory on Linux; failure would mean a broken libc/kernel pairing.
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    i128::from(ts.tv_sec) * NANOS_PER_SEC + i128::from(ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use tracer_audit::timestamp::Rfc3339;

    use super::*;

    const NS: i128 = NANOS_PER_SEC;

    #[test]
    fn fixed_offset_converts_monotonic_to_unix() {
        let clock = Clock::with_offset_ns(1_795_375_000 * NS);
        let monotonic = 670 * 1_000_000_000 + 123_456_789;
        assert_eq!(clock.unix_ns(monotonic), 1_795_375_670 * NS + 123_456_789);
        assert_eq!(
            Rfc3339::new(clock.unix_ns(monotonic)).as_str(),
            "2026-11-22T19:27:50.123456789Z"
        );
    }

    #[test]
    fn negative_offset_is_applied() {
        let clock = Clock::with_offset_ns(-5);
        assert_eq!(clock.unix_ns(3), -2);
        assert_eq!(
            Rfc3339::new(clock.unix_ns(3)).as_str(),
            "1969-12-31T23:59:59.999999998Z"
        );
    }

    #[test]
    fn calibrated_clock_matches_system_time() {
        let clock = Clock::calibrate();
        let converted = clock.unix_ns(clock_ns(libc::CLOCK_MONOTONIC) as u64);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("system clock after 1970")
            .as_nanos() as i128;
        assert!((converted - now).abs() < NS, "{converted} vs {now}");
    }
}
