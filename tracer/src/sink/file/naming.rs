//! Names of rotated files. `access.jsonl` rotated at 2026-11-22 22:15:00.123 UTC becomes
//! `access.jsonl.20261122T221500.123Z`, then `access.jsonl.20261122T221500.123Z.gz` (or
//! `.zst`) once compressed; `.tmp` marks a compression in progress. The time has a fixed
//! width, so sorting the names sorts the files in the order they were rotated.
use std::{
    ffi::OsStr,
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use time::{
    OffsetDateTime, PrimitiveDateTime, format_description::BorrowedFormatItem,
    macros::format_description,
};

use super::settings::Compression;

const STAMP_FORMAT: &[BorrowedFormatItem<'_>] =
    format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:3]Z");

/// Characters in a formatted stamp: `20261122T221500.123Z`.
const STAMP_LEN: usize = 20;

/// When a file was rotated, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    /// `now`, or just after `previous` if the clock has not moved past it (two rotations in
    /// one millisecond, or a clock set back): names stay unique and in rotation order.
    pub fn next(now: SystemTime, previous: Option<Stamp>) -> Self {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        match previous {
            Some(Stamp(last)) if last >= now => Stamp(last + 1),
            _ => Stamp(now),
        }
    }

    fn format(self) -> String {
        let time = UNIX_EPOCH + Duration::from_millis(self.0);
        OffsetDateTime::from(time)
            .format(STAMP_FORMAT)
            .unwrap_or_else(|_| self.0.to_string())
    }

    fn parse(text: &str) -> Option<Self> {
        let time = PrimitiveDateTime::parse(text, STAMP_FORMAT)
            .ok()?
            .assume_utc();
        u64::try_from(time.unix_timestamp_nanos() / 1_000_000)
            .ok()
            .map(Stamp)
    }
}

/// What a rotated file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Rotated, not (yet) compressed.
    Plain,
    Compressed(Compression),
    /// A compression that did not finish.
    Partial,
}

/// One file rotated out of the live file `live`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub stamp: Stamp,
    pub kind: Kind,
    pub path: PathBuf,
}

/// Where the live file goes when it is rotated at `stamp`.
pub fn rotated_path(live: &Path, stamp: Stamp) -> PathBuf {
    let mut name = live.file_name().unwrap_or_default().to_owned();
    name.push(".");
    name.push(stamp.format());
    live.with_file_name(name)
}

/// `plain` with the compression's suffix, and the temporary name it is written under.
pub fn compressed_paths(plain: &Path, compression: Compression) -> Option<(PathBuf, PathBuf)> {
    let extension = compression.extension()?;
    let mut name = plain.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    let done = PathBuf::from(name);
    let mut temp = done.clone().into_os_string();
    temp.push(".tmp");
    Some((done, PathBuf::from(temp)))
}

/// The rotated files of `live` in its directory, oldest first (plain before compressed
/// for the same stamp). Other files are ignored.
pub fn list(live: &Path) -> io::Result<Vec<Rotated>> {
    let Some(base) = live.file_name().and_then(OsStr::to_str) else {
        return Ok(Vec::new());
    };
    let dir = directory(live);
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some((stamp, kind)) = name.to_str().and_then(|n| classify(base, n)) {
            found.push(Rotated {
                stamp,
                kind,
                path: entry.path(),
            });
        }
    }
    found.sort_by_key(|r| (r.stamp, r.kind));
    Ok(found)
}

/// The directory holding `live` (`.` for a bare file name).
pub fn directory(live: &Path) -> &Path {
    match live.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn classify(base: &str, name: &str) -> Option<(Stamp, Kind)> {
    let rest = name.strip_prefix(base)?.strip_prefix('.')?;
    let (stamp, suffix) = rest.split_at_checked(STAMP_LEN)?;
    let stamp = Stamp::parse(stamp)?;
    let kind = match suffix {
        "" => Kind::Plain,
        ".gz" => Kind::Compressed(Compression::Gzip),
        ".zst" => Kind::Compressed(Compression::Zstd),
        ".gz.tmp" | ".zst.tmp" => Kind::Partial,
        _ => return None,
    };
    Some((stamp, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_utc_time_and_sort_chronologically() {
        // 2026-11-22T22:15:00.123Z
        let t = UNIX_EPOCH + Duration::from_millis(1_795_385_700_123);
        let stamp = Stamp::next(t, None);
        let path = rotated_path(Path::new("/var/log/access.jsonl"), stamp);
        assert_eq!(
            path,
            Path::new("/var/log/access.jsonl.20261122T221500.123Z")
        );
        let (gz, tmp) = compressed_paths(&path, Compression::Gzip).unwrap();
        assert_eq!(
            gz,
            Path::new("/var/log/access.jsonl.20261122T221500.123Z.gz")
        );
        assert_eq!(
            tmp,
            Path::new("/var/log/access.jsonl.20261122T221500.123Z.gz.tmp")
        );
        assert!(compressed_paths(&path, Compression::None).is_none());

        let later = rotated_path(
            Path::new("access.jsonl"),
            Stamp::next(t + Duration::from_secs(86400 * 40), None),
        );
        assert!(later.to_str().unwrap() > "access.jsonl.20261122T221500.123Z");
    }

    #[test]
    fn stamps_never_repeat_or_go_back() {
        let t = UNIX_EPOCH + Duration::from_millis(5_000);
        let first = Stamp::next(t, None);
        let same_ms = Stamp::next(t, Some(first));
        let clock_back = Stamp::next(t - Duration::from_secs(60), Some(same_ms));
        assert!(first < same_ms && same_ms < clock_back);
        assert_eq!(Stamp::parse(&same_ms.format()), Some(same_ms));
    }

    #[test]
    fn listing_finds_only_this_files_rotations_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("a.jsonl");
        for name in [
            "a.jsonl",
            "a.jsonl.20261122T221500.123Z.gz",
            "a.jsonl.20261122T221500.124Z",
            "a.jsonl.20261122T221500.124Z.zst.tmp",
            "a.jsonl.20261121T000000.000Z.zst",
            "a.jsonl.20261121T000000.000Z",
            "a.jsonl.old",
            "b.jsonl.20261122T221500.123Z",
            "a.jsonl.2026112T221500.123Z",
        ] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        let names: Vec<_> = list(&live)
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.path.file_name().unwrap().to_str().unwrap().to_owned(),
                    r.kind,
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("a.jsonl.20261121T000000.000Z".to_owned(), Kind::Plain),
                (
                    "a.jsonl.20261121T000000.000Z.zst".to_owned(),
                    Kind::Compressed(Compression::Zstd)
                ),
                (
                    "a.jsonl.20261122T221500.123Z.gz".to_owned(),
                    Kind::Compressed(Compression::Gzip)
                ),
                ("a.jsonl.20261122T221500.124Z".to_owned(), Kind::Plain),
                (
                    "a.jsonl.20261122T221500.124Z.zst.tmp".to_owned(),
                    Kind::Partial
                ),
            ]
        );
    }
}
