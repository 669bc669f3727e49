//! The watched-process bitmap (`WATCHED_TGIDS`) from user space: the map's words are
//! mapped into this process, so the servers found at start are set with the same atomic
//! operations that the kernel's fork, listen and exit hooks use on the same memory. A
//! map update (read the word, write it back) could undo a bit a fork had just set.
use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{Map, MapData};
use tracer_common::{PID_BITMAP_WORDS, pid_bit};

const BYTES: usize = PID_BITMAP_WORDS as usize * size_of::<u64>();

pub struct WatchedTgids {
    words: NonNull<AtomicU64>,
    /// Keeps the map's descriptor open for as long as it is mapped.
    _map: MapData,
}

// SAFETY: the mapping is shared memory reached only through atomics.
unsafe impl Send for WatchedTgids {}

impl WatchedTgids {
    pub fn new(map: Map) -> Result<Self> {
        let Map::Array(map) = map else {
            bail!("WATCHED_TGIDS is not an array map");
        };
        // SAFETY: a fresh shared mapping of the map's fd; its size is the map's
        // (max_entries u64 values), which the kernel checks.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .context("mapping WATCHED_TGIDS (needs BPF_F_MMAPABLE, Linux 5.5)");
        }
        let words = NonNull::new(ptr.cast()).context("mmap returned NULL")?;
        Ok(Self { words, _map: map })
    }

    /// The word holding `pid`'s bit; `None` above `PID_MAX_LIMIT`, where no pid lives.
    fn word(&self, pid: u32) -> Option<(&AtomicU64, u64)> {
        let (word, bit) = pid_bit(pid);
        // SAFETY: below the map's length, which `new` mapped whole.
        (word < PID_BITMAP_WORDS).then(|| (unsafe { self.words.add(word as usize).as_ref() }, bit))
    }

    pub fn watch(&self, pid: u32) -> Result<()> {
        let (word, bit) = self
            .word(pid)
            .with_context(|| format!("pid {pid} is above the kernel's PID_MAX_LIMIT"))?;
        word.fetch_or(bit, Ordering::Relaxed);
        Ok(())
    }

    /// Clears `pid`'s bit, as its exit would: for tests of how a process becomes watched.
    #[cfg(test)]
    pub fn unwatch(&self, pid: u32) {
        if let Some((word, bit)) = self.word(pid) {
            word.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    pub fn contains(&self, pid: u32) -> bool {
        self.word(pid)
            .is_some_and(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
    }
}

impl Drop for WatchedTgids {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, used by nothing after this.
        unsafe { libc::munmap(self.words.as_ptr().cast(), BYTES) };
    }
}
