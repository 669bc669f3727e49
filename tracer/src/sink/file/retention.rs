//! Which rotated files retention removes: all but the newest `keep`. The live file is
//! never among the candidates, and neither is anything that is not a rotated file of it.
use std::num::NonZeroU32;

use super::naming::{Kind, Rotated};

/// The files to delete from `rotated` (oldest first, as [`super::naming::list`] gives
/// them). Unfinished compressions are not counted: they are cleaned up separately.
pub fn expired(rotated: &[Rotated], keep: Option<NonZeroU32>) -> Vec<&Rotated> {
    let Some(keep) = keep else {
        return Vec::new();
    };
    let kept: Vec<&Rotated> = rotated.iter().filter(|r| r.kind != Kind::Partial).collect();
    let excess = kept.len().saturating_sub(keep.get() as usize);
    kept.into_iter().take(excess).collect()
}

#[cfg(test)]
mod tests {
    use std::{
        path::PathBuf,
        time::{Duration, UNIX_EPOCH},
    };

    use super::*;
    use crate::sink::file::{naming::Stamp, settings::Compression};

    fn rotated(ms: u64, kind: Kind) -> Rotated {
        Rotated {
            stamp: Stamp::next(UNIX_EPOCH + Duration::from_millis(ms), None),
            kind,
            path: PathBuf::from(format!("f.{ms}")),
        }
    }

    #[test]
    fn keeps_the_newest() {
        let files = [
            rotated(1, Kind::Compressed(Compression::Gzip)),
            rotated(2, Kind::Compressed(Compression::Zstd)),
            rotated(3, Kind::Partial),
            rotated(4, Kind::Plain),
            rotated(5, Kind::Compressed(Compression::Gzip)),
        ];
        let names = |keep| -> Vec<PathBuf> {
            expired(&files, NonZeroU32::new(keep))
                .into_iter()
                .map(|r| r.path.clone())
                .collect()
        };
        assert_eq!(names(2), [PathBuf::from("f.1"), PathBuf::from("f.2")]);
        assert_eq!(names(3), [PathBuf::from("f.1")]);
        assert!(names(4).is_empty());
        assert!(names(10).is_empty());
        assert!(names(0).is_empty(), "no limit keeps everything");
    }
}
