//! The live file: opened for appending with the configured mode, repaired at open when a
//! crash left a partial last line, and written so that after any error it again ends
//! with a complete line.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::{
        fd::AsRawFd as _,
        unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    },
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::{naming, settings::Mode};
use crate::sink::lines::complete_length;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the directory of {path} ({dir}) does not exist or is not a directory")]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("{0} exists and is not a regular file")]
    NotAFile(PathBuf),
    #[error("cannot open {path} for appending: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot repair the partial last line of {path}: {source}")]
    Repair { path: PathBuf, source: io::Error },
    #[error("starting the thread that compresses rotated files: {0}")]
    Thread(io::Error),
}

/// Written bytes are handed to writeback and then dropped from the page cache in windows
/// of this size (see [`LiveFile::write_behind`]).
const WRITE_BEHIND: u64 = 8 << 20;

pub struct LiveFile {
    file: File,
    /// Bytes in the file, all of them complete lines.
    len: u64,
    /// An error left a partial line that could not be cut off yet.
    ragged: bool,
    /// Writeback was started for the bytes before this offset.
    flushing_from: u64,
    /// The bytes before this offset were dropped from the page cache.
    dropped_to: u64,
}

pub struct Opened {
    pub file: LiveFile,
    /// Bytes of a partial last line cut off at open.
    pub repaired: u64,
    /// Last modification of an existing file.
    pub modified: SystemTime,
}

/// A failed append: `committed` bytes (whole lines) reached the file before `error`.
pub struct AppendError {
    pub committed: usize,
    pub error: io::Error,
}

impl LiveFile {
    pub fn open(path: &Path, mode: Mode) -> Result<Opened, OpenError> {
        let dir = naming::directory(path);
        if !dir.is_dir() {
            return Err(OpenError::NoDirectory {
                path: path.to_owned(),
                dir: dir.to_owned(),
            });
        }
        if fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(OpenError::NotAFile(path.to_owned()));
        }
        let open_error = |source| OpenError::Open {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(mode.bits())
            .open(path)
            .map_err(open_error)?;
        // Exactly the configured mode: neither the umask nor an older file's mode applies.
        file.set_permissions(fs::Permissions::from_mode(mode.bits()))
            .map_err(open_error)?;
        let metadata = file.metadata().map_err(open_error)?;
        let repair_error = |source| OpenError::Repair {
            path: path.to_owned(),
            source,
        };
        let len = complete_length(&file, metadata.len()).map_err(repair_error)?;
        // Also when the length stands: that gives back blocks a run that ended without
        // [`LiveFile::finish`] reserved beyond the end (see `write_behind`).
        file.set_len(len).map_err(repair_error)?;
        Ok(Opened {
            file: LiveFile {
                file,
                len,
                ragged: false,
                flushing_from: len,
                dropped_to: len,
            },
            repaired: metadata.len() - len,
            modified: metadata.modified().unwrap_or_else(|_| SystemTime::now()),
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends `lines` (complete lines). On error, whatever part of a line got written is
    /// cut off again, so a reader never sees half a record.
    pub fn append(&mut self, lines: &[u8]) -> Result<(), AppendError> {
        if self.ragged {
            self.cut_back().map_err(|error| AppendError {
                committed: 0,
                error,
            })?;
        }
        let mut written = 0;
        while written < lines.len() {
            match (&self.file).write(&lines[written..]) {
                Ok(0) => return Err(self.failed(lines, written, io::ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.failed(lines, written, e)),
            }
        }
        self.len += lines.len() as u64;
        self.write_behind();
        Ok(())
    }

    /// Once a window of new bytes is written, starts their writeback and drops the
    /// window before it, whose writeback the previous call started, from the page cache.
    ///
    /// Why: left to the kernel, a growing log takes a new page-cache page for every 4 KiB
    /// and keeps it until memory runs short, pushing out what the server itself caches.
    /// On these VMs each new page is also a first touch of memory the host took back
    /// (free page reporting), which made appending to one growing file cost about a
    /// microsecond per record more than a rotated file whose pages were just freed. A
    /// dropped page goes back to the CPU's free list and is the next one the file takes.
    ///
    /// The next two windows' blocks are reserved on disk ahead of the writes
    /// (`fallocate`, the file's length unchanged): otherwise ext4 reserves and maps each
    /// new 4 KiB block inside `write` as it is appended (delayed allocation), which was a
    /// tenth of the tracer's CPU (`perf`: `ext4_da_write_begin`). [`LiveFile::finish`]
    /// gives back what the file did not use.
    ///
    /// All three calls are advice: a failure leaves the bytes written and cached, as
    /// without them, so it is not an error of the sink. Writeback of one window (8 MiB) is
    /// started asynchronously; it blocks only while the device's queue is full, as the
    /// kernel's own writeback would then throttle `write` anyway.
    fn write_behind(&mut self) {
        if self.len - self.flushing_from < WRITE_BEHIND {
            return;
        }
        let fd = self.file.as_raw_fd();
        let range = |from: u64, to: u64| (from as libc::off64_t, (to - from) as libc::off64_t);
        if self.flushing_from > self.dropped_to {
            let (offset, length) = range(self.dropped_to, self.flushing_from);
            // SAFETY: plain syscall on a descriptor this struct owns.
            unsafe { libc::posix_fadvise64(fd, offset, length, libc::POSIX_FADV_DONTNEED) };
            self.dropped_to = self.flushing_from;
        }
        let (offset, length) = range(self.flushing_from, self.len);
        // SAFETY: as above.
        unsafe { libc::sync_file_range(fd, offset, length, libc::SYNC_FILE_RANGE_WRITE) };
        self.flushing_from = self.len;
        let (offset, length) = range(self.len, self.len + 2 * WRITE_BEHIND);
        // SAFETY: as above.
        unsafe { libc::fallocate64(fd, libc::FALLOC_FL_KEEP_SIZE, offset, length) };
    }

    fn failed(&mut self, lines: &[u8], written: usize, error: io::Error) -> AppendError {
        let committed = lines[..written]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        self.len += committed as u64;
        if committed != written {
            self.ragged = true;
            // Shrinking needs no space, so this normally works even on a full disk; if
            // not, the next append retries it first.
            let _ = self.cut_back();
        }
        AppendError { committed, error }
    }

    fn cut_back(&mut self) -> io::Result<()> {
        self.file.set_len(self.len)?;
        self.ragged = false;
        Ok(())
    }

    /// Gives back the blocks reserved beyond the last line and syncs the file: before it
    /// is rotated, and at exit.
    pub fn finish(&self) -> io::Result<()> {
        self.file.set_len(self.len)?;
        self.file.sync_data()
    }

    /// Swaps the descriptor, for tests that need writes to fail.
    #[cfg(test)]
    pub fn replace_file(&mut self, file: File) -> File {
        std::mem::replace(&mut self.file, file)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn a_partial_last_line_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let opened = LiveFile::open(&path, Mode::default()).unwrap();
        assert_eq!(opened.repaired, 5);
        assert_eq!(opened.file.len(), 16);
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn a_file_without_any_newline_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        fs::write(&path, vec![b'x'; 200_000]).unwrap();
        let opened = LiveFile::open(&path, Mode::default()).unwrap();
        assert_eq!(opened.repaired, 200_000);
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn complete_files_are_untouched_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let mut long_line = vec![b'y'; 100_000];
        long_line.push(b'\n');
        fs::write(&path, &long_line).unwrap();
        let mut opened = LiveFile::open(&path, Mode::default()).unwrap();
        assert_eq!(opened.repaired, 0);
        opened.file.append(b"{}\n").ok().unwrap();
        assert_eq!(opened.file.len(), 100_004);
        assert_eq!(fs::metadata(&path).unwrap().len(), 100_004);
    }

    /// Pages of `file` in `range` that are in the page cache.
    fn cached_pages(file: &File, range: std::ops::Range<usize>) -> usize {
        const PAGE: usize = 4096;
        let pages = range.len() / PAGE;
        let mut resident = vec![0u8; pages];
        // SAFETY: a read-only shared mapping of a regular file, only passed to mincore
        // (which faults nothing in) and unmapped before return.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                range.len(),
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                range.start as libc::off_t,
            );
            assert_ne!(map, libc::MAP_FAILED, "{}", io::Error::last_os_error());
            let rc = libc::mincore(map, range.len(), resident.as_mut_ptr());
            libc::munmap(map, range.len());
            assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        }
        resident.iter().filter(|&&b| b & 1 == 1).count()
    }

    #[test]
    fn written_windows_leave_the_page_cache_once_written_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let mut live = LiveFile::open(&path, Mode::default()).unwrap().file;
        let mut chunk = vec![b'x'; (1 << 20) - 1];
        chunk.push(b'\n');
        let window = WRITE_BEHIND as usize;
        for _ in 0..window >> 20 {
            live.append(&chunk).ok().unwrap();
        }
        // The first window is written back (here at once, to make the test exact) while
        // the second is written.
        live.finish().unwrap();
        assert_eq!(cached_pages(&live.file, 0..window), window / 4096);
        for _ in 0..window >> 20 {
            live.append(&chunk).ok().unwrap();
        }
        assert_eq!(cached_pages(&live.file, 0..window), 0);
        // The second window stays until the third is written.
        assert!(cached_pages(&live.file, window..2 * window) > 0);
        assert_eq!(fs::metadata(&path).unwrap().len(), 2 * WRITE_BEHIND);
    }

    #[test]
    fn blocks_are_reserved_ahead_and_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let allocated = || fs::metadata(&path).unwrap().blocks() * 512;
        let mut live = LiveFile::open(&path, Mode::default()).unwrap().file;
        let mut chunk = vec![b'x'; (1 << 20) - 1];
        chunk.push(b'\n');
        let fill = |live: &mut LiveFile| {
            for _ in 0..WRITE_BEHIND >> 20 {
                live.append(&chunk).ok().unwrap();
            }
        };
        fill(&mut live);
        assert!(
            allocated() >= 3 * WRITE_BEHIND,
            "{} bytes allocated for a {WRITE_BEHIND}-byte file",
            allocated()
        );
        live.finish().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), WRITE_BEHIND);
        assert!(allocated() < WRITE_BEHIND + (1 << 20), "{}", allocated());
        // A run that ended without finishing (a crash) leaves its reservation, which
        // the next open gives back.
        fill(&mut live);
        drop(live);
        assert!(allocated() >= 4 * WRITE_BEHIND, "{}", allocated());
        LiveFile::open(&path, Mode::default()).unwrap();
        assert!(
            allocated() < 2 * WRITE_BEHIND + (1 << 20),
            "{}",
            allocated()
        );
    }

    #[test]
    fn mode_is_exact_whatever_the_umask_or_old_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        LiveFile::open(&path, Mode::default()).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let fresh = dir.path().join("b.jsonl");
        LiveFile::open(&fresh, "0640".parse().unwrap()).unwrap();
        assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o777, 0o640);
    }

    #[test]
    fn clear_errors_for_unusable_paths() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope/a.jsonl");
        let message = LiveFile::open(&missing, Mode::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.contains("does not exist") && message.contains("nope"),
            "{message}"
        );
        let message = LiveFile::open(dir.path(), Mode::default())
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("not a regular file"), "{message}");
    }
}
