//! Which process served a request: identity read from /proc (`procfs`), cached per
//! process instance; the command line redacted (`cmdline`), the container found in the
//! cgroup path (`container`), the owner named from passwd (`passwd`).

mod cmdline;
mod container;
mod passwd;
mod procfs;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt as _};

use self::{
    passwd::UserNames,
    procfs::{read_process_info, read_start_time},
};

/// How long a cached entry is trusted before /proc/PID/stat is read again to detect pid reuse.
pub const REVALIDATE_AFTER: Duration = Duration::from_secs(2);
/// Upper bound on cached processes; the default pid_max is 4194304, so a bound is needed.
const CAPACITY: usize = 65_536;

/// The process that served a request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    /// /proc/PID/comm.
    pub name: String,
    /// readlink /proc/PID/exe; None for kernel threads, zombies and processes that exited.
    /// A replaced binary keeps the kernel's " (deleted)" suffix.
    pub executable_path: Option<String>,
    /// File name of `executable_path`.
    pub executable_name: Option<String>,
    /// Arguments joined by spaces, with credential values redacted; None when empty.
    pub command_line: Option<String>,
    /// Real uid.
    pub uid: u32,
    /// Host user name of `uid`.
    pub owner: Option<String>,
    /// Container id from the cgroup path; None on the host.
    pub container_id: Option<String>,
    /// cgroup v2 path (the `0::` line of /proc/PID/cgroup), e.g. `/system.slice/nginx.service`.
    pub cgroup_path: Option<String>,
    /// Start time in clock ticks since boot: with `pid`, identifies the process instance.
    pub start_time: u64,
}

/// Process identities by pid, revalidated against pid reuse.
pub struct ProcessCache {
    entries: HashMap<u32, Entry>,
    users: UserNames,
    revalidate_after: Duration,
    capacity: usize,
}

struct Entry {
    info: Arc<ProcessInfo>,
    /// When the entry last matched the live process; also its recency for eviction.
    checked_at: Instant,
}

impl Default for ProcessCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessCache {
    pub fn new() -> Self {
        Self::with_revalidate_after(REVALIDATE_AFTER)
    }

    /// A cache that checks for pid reuse after `revalidate_after` instead of [`REVALIDATE_AFTER`].
    pub fn with_revalidate_after(revalidate_after: Duration) -> Self {
        Self::with_limits(revalidate_after, CAPACITY)
    }

    fn with_limits(revalidate_after: Duration, capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            users: UserNames::default(),
            revalidate_after,
            capacity: capacity.max(1),
        }
    }

    /// Info for `pid`, from the cache while the cached entry still describes the same process
    /// instance. Reading /proc on every call would be too costly at 10k+ requests/s, so the
    /// start time is compared at most once per revalidation interval, and at the first call
    /// after [`forget`](Self::forget). None when the process is gone and nothing is cached.
    /// `now` is the caller's: one clock read serves a batch of records.
    pub fn get(&mut self, pid: u32, now: Instant) -> Option<Arc<ProcessInfo>> {
        self.cached(pid, now).or_else(|| self.load(pid, now))
    }

    /// The kernel reported that this process exited: the next [`get`](Self::get) rereads /proc.
    pub fn forget(&mut self, pid: u32) {
        self.entries.remove(&pid);
    }

    fn cached(&mut self, pid: u32, now: Instant) -> Option<Arc<ProcessInfo>> {
        let entry = self.entries.get_mut(&pid)?;
        if now.duration_since(entry.checked_at) >= self.revalidate_after {
            match read_start_time(pid) {
                Ok(start_time) if start_time != entry.info.start_time => return None,
                // Gone without `forget` yet: requests it served may still be in flight, and the
                // exit event will drop the entry.
                _ => entry.checked_at = now,
            }
        }
        Some(Arc::clone(&entry.info))
    }

    fn load(&mut self, pid: u32, now: Instant) -> Option<Arc<ProcessInfo>> {
        match read_process_info(pid, &mut self.users) {
            Ok(info) => {
                let info = Arc::new(info);
                self.insert(pid, Arc::clone(&info), now);
                Some(info)
            }
            Err(error) => {
                log::debug!("process {pid}: {error:#}");
                self.entries.remove(&pid);
                None
            }
        }
    }

    fn insert(&mut self, pid: u32, info: Arc<ProcessInfo>, now: Instant) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&pid) {
            self.evict_oldest_half();
        }
        let entry = Entry {
            info,
            checked_at: now,
        };
        self.entries.insert(pid, entry);
    }

    /// Halving at once keeps eviction amortized O(1) per insert. Entries in use are rechecked
    /// every revalidation interval, so the oldest are mostly processes whose exit was missed.
    fn evict_oldest_half(&mut self) {
        let mut times: Vec<Instant> = self.entries.values().map(|e| e.checked_at).collect();
        if times.is_empty() {
            return;
        }
        let middle = times.len() / 2;
        let (_, &mut cutoff, _) = times.select_nth_unstable(middle);
        self.entries.retain(|_, entry| entry.checked_at > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};

    use super::{cmdline::redact_command_line, *};

    fn own_start_time() -> u64 {
        read_start_time(std::process::id()).expect("own stat")
    }

    fn fake_info(pid: u32, start_time: u64) -> Arc<ProcessInfo> {
        Arc::new(ProcessInfo {
            pid,
            name: "fake".to_owned(),
            executable_path: None,
            executable_name: None,
            command_line: None,
            uid: 12345,
            owner: None,
            container_id: None,
            cgroup_path: None,
            start_time,
        })
    }

    fn inject(cache: &mut ProcessCache, info: Arc<ProcessInfo>, checked_at: Instant) {
        cache.entries.insert(info.pid, Entry { info, checked_at });
    }

    /// Caches, for this process's pid, an entry of an earlier process that had the pid
    /// (another start time), as last checked at `checked_at`.
    fn inject_earlier_owner(cache: &mut ProcessCache, checked_at: Instant) {
        let info = fake_info(std::process::id(), own_start_time() + 1);
        inject(cache, info, checked_at);
    }

    /// Returns once the child has exec'd: between fork and exec it is a copy of the test binary,
    /// and during exec comm is already "sleep" while the arguments are not yet in place.
    fn spawn_sleep() -> Child {
        let child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let cmdline = format!("/proc/{}/cmdline", child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read(&cmdline).ok().as_deref() != Some(b"sleep\x0030\0") {
            assert!(Instant::now() < deadline, "sleep did not start");
            std::thread::sleep(Duration::from_millis(1));
        }
        child
    }

    fn kill_and_reap(mut child: Child) {
        child.kill().expect("kill child");
        child.wait().expect("reap child");
    }

    #[test]
    fn describes_the_test_process() {
        let pid = std::process::id();
        let info = ProcessCache::new()
            .get(pid, Instant::now())
            .expect("own process");
        let exe = std::env::current_exe().expect("current_exe");
        let exe_name = exe.file_name().expect("exe name").to_string_lossy();
        let args: Vec<String> = std::env::args().collect();

        assert_eq!(info.pid, pid);
        // comm is the executable name cut to TASK_COMM_LEN - 1 bytes.
        assert!(
            exe_name.starts_with(&info.name),
            "{} vs {exe_name}",
            info.name
        );
        assert_eq!(info.executable_path.as_deref(), exe.to_str());
        assert_eq!(info.executable_name.as_deref(), Some(exe_name.as_ref()));
        assert_eq!(
            info.command_line,
            Some(redact_command_line(&args.join(" ")))
        );
        assert_eq!(info.uid, 0, "tests run as root");
        assert_eq!(info.owner.as_deref(), Some("root"));
        assert!(
            info.cgroup_path
                .as_deref()
                .is_some_and(|p| p.starts_with('/'))
        );
        assert_eq!(info.start_time, own_start_time());
    }

    #[test]
    fn caches_until_forgotten_and_then_rereads() {
        let child = spawn_sleep();
        let pid = child.id();
        let mut cache = ProcessCache::new();
        let info = cache.get(pid, Instant::now()).expect("child");
        assert_eq!(info.name, "sleep");
        assert_eq!(info.command_line.as_deref(), Some("sleep 30"));
        assert!(info.executable_path.is_some());
        assert!(Arc::ptr_eq(
            &info,
            &cache.get(pid, Instant::now()).expect("cached")
        ));

        kill_and_reap(child);
        cache.forget(pid);
        assert!(cache.get(pid, Instant::now()).is_none());
    }

    #[test]
    fn exited_process_without_exit_event_stays_cached() {
        let child = spawn_sleep();
        let pid = child.id();
        let mut cache = ProcessCache::with_revalidate_after(Duration::ZERO);
        let info = cache.get(pid, Instant::now()).expect("child");
        kill_and_reap(child);
        let after_exit = cache.get(pid, Instant::now()).expect("still cached");
        assert!(Arc::ptr_eq(&info, &after_exit));
    }

    #[test]
    fn process_gone_before_first_lookup_is_none() {
        let mut child = Command::new("true").spawn().expect("spawn true");
        child.wait().expect("reap true");
        assert!(
            ProcessCache::new()
                .get(child.id(), Instant::now())
                .is_none()
        );
    }

    #[test]
    fn pid_out_of_range_is_none() {
        assert!(ProcessCache::new().get(u32::MAX, Instant::now()).is_none());
    }

    #[test]
    fn reused_pid_is_reread_after_revalidation() {
        let pid = std::process::id();
        let mut cache = ProcessCache::with_revalidate_after(Duration::ZERO);
        inject_earlier_owner(&mut cache, Instant::now());
        let info = cache.get(pid, Instant::now()).expect("own process");
        assert_ne!(info.name, "fake");
        assert_eq!(info.start_time, own_start_time());
    }

    #[test]
    fn cached_entry_is_trusted_within_the_interval() {
        let pid = std::process::id();
        let mut cache = ProcessCache::new();
        inject_earlier_owner(&mut cache, Instant::now());
        assert_eq!(cache.get(pid, Instant::now()).expect("cached").name, "fake");

        let stale = Instant::now()
            .checked_sub(REVALIDATE_AFTER)
            .expect("uptime beyond the interval");
        inject_earlier_owner(&mut cache, stale);
        assert_ne!(cache.get(pid, Instant::now()).expect("reread").name, "fake");
    }

    #[test]
    fn forget_forces_a_reread() {
        let pid = std::process::id();
        let mut cache = ProcessCache::new();
        inject_earlier_owner(&mut cache, Instant::now());
        cache.forget(pid);
        assert_ne!(cache.get(pid, Instant::now()).expect("reread").name, "fake");
    }

    #[test]
    fn same_instance_is_kept_on_revalidation() {
        let pid = std::process::id();
        let mut cache = ProcessCache::with_revalidate_after(Duration::ZERO);
        inject(&mut cache, fake_info(pid, own_start_time()), Instant::now());
        assert_eq!(cache.get(pid, Instant::now()).expect("cached").name, "fake");
    }

    #[test]
    fn full_cache_evicts_the_least_recently_checked() {
        let pid = std::process::id();
        let mut cache = ProcessCache::with_limits(REVALIDATE_AFTER, 4);
        let now = Instant::now();
        let fakes = [
            (u32::MAX, 4),
            (u32::MAX - 1, 3),
            (u32::MAX - 2, 2),
            (u32::MAX - 3, 1),
        ];
        for (fake_pid, age_ms) in fakes {
            let checked_at = now
                .checked_sub(Duration::from_millis(age_ms))
                .expect("uptime");
            inject(&mut cache, fake_info(fake_pid, 1), checked_at);
        }
        cache.get(pid, Instant::now()).expect("own process");
        let mut kept: Vec<u32> = cache.entries.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, [pid, u32::MAX - 3]);
    }
}
