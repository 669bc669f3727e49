//! When the live file is due to be rotated. The sink only answers the question; the
//! pipeline rotates at a batch boundary, after ending the file with a checkpoint.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::settings::{ByteSize, Interval};

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_bytes: Option<ByteSize>,
    pub interval: Option<Interval>,
}

impl Policy {
    /// A file of `bytes` bytes whose first record was written at `started` is due when it
    /// reached the size, or when the wall clock passed the first interval boundary after
    /// `started`. An empty file is never due: idle periods leave no empty rotated files.
    pub fn due(&self, bytes: u64, started: SystemTime, now: SystemTime) -> bool {
        if bytes == 0 {
            return false;
        }
        let full = self.max_bytes.is_some_and(|max| bytes >= max.bytes());
        let expired = self
            .interval
            .is_some_and(|interval| now >= boundary_after(started, interval));
        full || expired
    }
}

/// The first multiple of `interval` since the Unix epoch that is later than `t`.
fn boundary_after(t: SystemTime, interval: Interval) -> SystemTime {
    let seconds = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let step = interval.seconds();
    UNIX_EPOCH + Duration::from_secs((seconds / step + 1) * step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn policy(size: Option<&str>, interval: Option<&str>) -> Policy {
        Policy {
            max_bytes: size.map(|s| s.parse().unwrap()),
            interval: interval.map(|s| s.parse().unwrap()),
        }
    }

    #[test]
    fn size_limit() {
        let p = policy(Some("64k"), None);
        assert!(!p.due(65535, at(0), at(10)));
        assert!(p.due(65536, at(0), at(10)));
        assert!(p.due(1 << 20, at(0), at(0)));
    }

    #[test]
    fn interval_boundaries_are_on_the_clock() {
        let p = policy(None, Some("1h"));
        // Started at 10:20: due from 11:00, not one hour after the start.
        let start = at(10 * 3600 + 20 * 60);
        assert!(!p.due(10, start, at(10 * 3600 + 59 * 60 + 59)));
        assert!(p.due(10, start, at(11 * 3600)));
        // Started exactly on a boundary: due at the next one.
        assert!(!p.due(10, at(7200), at(7200 + 3599)));
        assert!(p.due(10, at(7200), at(10800)));
        // A file left from long ago is due at once.
        assert!(p.due(10, at(3600), at(100 * 3600)));
    }

    #[test]
    fn empty_files_and_no_policy_are_never_due() {
        assert!(!policy(Some("1k"), Some("1s")).due(0, at(0), at(1_000_000)));
        assert!(!policy(None, None).due(1 << 40, at(0), at(1_000_000)));
    }

    #[test]
    fn either_condition_suffices() {
        let p = policy(Some("1k"), Some("15m"));
        assert!(p.due(2048, at(0), at(1)));
        assert!(p.due(10, at(0), at(900)));
        assert!(!p.due(10, at(0), at(899)));
    }
}
