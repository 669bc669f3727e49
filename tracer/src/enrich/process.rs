//! Which process served a request: identity read from /proc, cached per process instance.

use std::{
    borrow::Cow,
    collections::HashMap,
    fs,
    io::Read as _,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use procfs::process::Process;

/// How long a cached entry is trusted before /proc/PID/stat is read again to detect pid reuse.
pub const REVALIDATE_AFTER: Duration = Duration::from_secs(2);
/// Upper bound on cached processes; the default pid_max is 4194304, so a bound is needed.
const CAPACITY: usize = 65_536;
/// The host's passwd even when the tracer runs in a container sharing the host pid namespace;
/// on the host both paths are the same file.
const PASSWD_PATHS: &[&str] = &["/proc/1/root/etc/passwd", "/etc/passwd"];
/// A uid missing from passwd rereads it at most this often (users are added rarely).
const PASSWD_RELOAD_AFTER: Duration = Duration::from_secs(60);
/// Argument names (substrings, ASCII case-insensitive) whose values are credentials.
const SECRET_ARG_WORDS: &[&str] = &["password", "passwd", "secret", "token", "key"];
const REDACTED: &str = "REDACTED";
/// Runtime-specific systemd scope prefixes: `<prefix><container id>.scope`.
const SCOPE_PREFIXES: &[&str] = &["docker-", "cri-containerd-", "crio-", "libpod-"];
/// Shortest id accepted in a runtime scope name (Docker's short id length).
const MIN_SCOPE_ID_LEN: usize = 12;
/// Full container ids, the only ones trusted as bare path components (`/docker/<id>`).
const FULL_ID_LEN: usize = 64;

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
    pub fn get(&mut self, pid: u32) -> Option<Arc<ProcessInfo>> {
        let now = Instant::now();
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

fn open_process(pid: u32) -> anyhow::Result<Process> {
    let pid = i32::try_from(pid).context("pid out of range")?;
    Process::new(pid).context("opening /proc/PID")
}

fn read_start_time(pid: u32) -> anyhow::Result<u64> {
    Ok(open_process(pid)?.stat().context("reading stat")?.starttime)
}

/// Reads everything through one /proc/PID directory handle: once the process is reaped, reads
/// through it fail instead of describing a new process that reused the pid.
fn read_process_info(pid: u32, users: &mut UserNames) -> anyhow::Result<ProcessInfo> {
    let process = open_process(pid)?;
    let stat = process.stat().context("reading stat")?;
    let status = process.status().context("reading status")?;
    let executable_path = process
        .exe()
        .ok()
        .map(|path| path.to_string_lossy().into_owned());
    let executable_name = executable_path.as_deref().and_then(file_name);
    let cgroup = read_lossy(&process, "cgroup").ok();
    Ok(ProcessInfo {
        pid,
        name: stat.comm.trim().to_owned(),
        executable_path,
        executable_name,
        command_line: read_command_line(&process),
        uid: status.ruid,
        owner: users.lookup(status.ruid),
        container_id: cgroup.as_deref().and_then(container_id),
        cgroup_path: cgroup.as_deref().and_then(cgroup_v2_path),
        start_time: stat.starttime,
    })
}

fn read_bytes(process: &Process, file: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    process
        .open_relative(file)?
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {file}"))?;
    Ok(bytes)
}

/// Paths and arguments are bytes; a stray non-UTF-8 byte should not lose the whole field.
fn read_lossy(process: &Process, file: &str) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&read_bytes(process, file)?).into_owned())
}

fn file_name(path: &str) -> Option<String> {
    Some(Path::new(path).file_name()?.to_string_lossy().into_owned())
}

/// Empty arguments are dropped: setproctitle-style rewrites pad the argument area with NULs.
fn read_command_line(process: &Process) -> Option<String> {
    let raw = read_bytes(process, "cmdline").ok()?;
    let args: Vec<Cow<str>> = raw
        .split(|&byte| byte == 0)
        .filter(|arg| !arg.is_empty())
        .map(String::from_utf8_lossy)
        .collect();
    if args.is_empty() {
        return None;
    }
    Some(redact_args(args.iter().map(|arg| arg.as_ref())))
}

/// Replaces credential values in a space-separated command line with `REDACTED`: the values of
/// arguments whose name contains `password`, `passwd`, `secret`, `token` or `key`
/// (case-insensitive), in the forms `--name=value`, `name=value` and `--name value`.
/// Errs toward hiding: `--keyfile /path` hides the path too.
#[cfg(test)]
fn redact_command_line(cmdline: &str) -> String {
    redact_args(cmdline.split(' '))
}

/// Joins arguments with spaces, redacting per argument so that an argument containing spaces
/// is still one value.
fn redact_args<'a>(args: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    let mut value_is_secret = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let (redacted, next_is_secret) = redact_arg(arg, value_is_secret);
        out.push_str(&redacted);
        value_is_secret = next_is_secret;
    }
    out
}

/// Redacts one argument; `value_is_secret` says the previous argument was a secret option
/// expecting its value here. Returns whether the next argument is such a value.
fn redact_arg(arg: &str, value_is_secret: bool) -> (Cow<'_, str>, bool) {
    if value_is_secret && arg.is_empty() {
        return (Cow::Borrowed(arg), true);
    }
    // A following long option means the secret option took no value.
    if value_is_secret && !arg.starts_with("--") {
        return (Cow::Borrowed(REDACTED), false);
    }
    if let Some((name, value)) = arg.split_once('=') {
        if !value.is_empty() && is_secret_arg_name(name) {
            return (Cow::Owned(format!("{name}={REDACTED}")), false);
        }
        return (Cow::Borrowed(arg), false);
    }
    let expects_value = arg.starts_with('-') && is_secret_arg_name(arg);
    (Cow::Borrowed(arg), expects_value)
}

fn is_secret_arg_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_ARG_WORDS.iter().any(|word| name.contains(word))
}

/// The path of the cgroup v2 line (`0::/path`).
fn cgroup_v2_path(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

/// The container id in the first /proc/PID/cgroup line (v2 or v1) whose path names one.
fn container_id(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .find_map(container_id_in_path)
        .map(str::to_owned)
}

/// The innermost component naming a container, so nested containers (Docker in Docker)
/// report the one the process runs in, and runtime subgroups (`…/libpod-<id>.scope/container`)
/// still resolve.
fn container_id_in_path(path: &str) -> Option<&str> {
    path.split('/').rev().find_map(container_id_in_component)
}

/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`
/// (systemd cgroup driver) or a bare 64-hex `<id>` (cgroupfs driver: `/docker/<id>`,
/// `/kubepods/<qos>/pod<uid>/<id>`). Conmon scopes (`crio-conmon-<id>`) are the runtime's
/// monitor, not the container, and do not match.
fn container_id_in_component(component: &str) -> Option<&str> {
    match component.strip_suffix(".scope") {
        Some(scope) => SCOPE_PREFIXES
            .iter()
            .find_map(|prefix| scope.strip_prefix(prefix))
            .filter(|id| id.len() >= MIN_SCOPE_ID_LEN && is_lower_hex(id)),
        None => (component.len() == FULL_ID_LEN && is_lower_hex(component)).then_some(component),
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Host user names by uid, read from passwd rather than NSS: lookups must not block on a
/// directory service in the event path, and only local accounts run servers here.
#[derive(Default)]
struct UserNames {
    by_uid: HashMap<u32, String>,
    loaded_at: Option<Instant>,
}

impl UserNames {
    fn lookup(&mut self, uid: u32) -> Option<String> {
        if !self.by_uid.contains_key(&uid) && self.may_reload() {
            self.by_uid = read_passwd();
            self.loaded_at = Some(Instant::now());
        }
        self.by_uid.get(&uid).cloned()
    }

    fn may_reload(&self) -> bool {
        self.loaded_at
            .is_none_or(|loaded_at| loaded_at.elapsed() >= PASSWD_RELOAD_AFTER)
    }
}

fn read_passwd() -> HashMap<u32, String> {
    for path in PASSWD_PATHS {
        match fs::read(path) {
            Ok(bytes) => return parse_passwd(&String::from_utf8_lossy(&bytes)),
            Err(error) => log::debug!("{path}: {error}"),
        }
    }
    HashMap::new()
}

/// `name:password:uid:...` lines; the first name of a uid wins, as with getpwuid.
fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut by_uid = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(uid)) = (fields.next(), fields.nth(1)) else {
            continue;
        };
        if let Ok(uid) = uid.parse() {
            by_uid.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    by_uid
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};

    use super::*;

    const ID: &str = "3f4e9a0c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f";

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

    /// Returns once the child has exec'd: between fork and exec it is a copy of the test binary,
    /// and during exec comm is already "sleep" while the arguments are not yet in place.
    fn spawn_sleep() -> Child {
        let child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let cmdline = format!("/proc/{}/cmdline", child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::read(&cmdline).ok().as_deref() != Some(b"sleep\x0030\0") {
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
        let info = ProcessCache::new().get(pid).expect("own process");
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
        let info = cache.get(pid).expect("child");
        assert_eq!(info.name, "sleep");
        assert_eq!(info.command_line.as_deref(), Some("sleep 30"));
        assert!(info.executable_path.is_some());
        assert!(Arc::ptr_eq(&info, &cache.get(pid).expect("cached")));

        kill_and_reap(child);
        cache.forget(pid);
        assert!(cache.get(pid).is_none());
    }

    #[test]
    fn exited_process_without_exit_event_stays_cached() {
        let child = spawn_sleep();
        let pid = child.id();
        let mut cache = ProcessCache::with_revalidate_after(Duration::ZERO);
        let info = cache.get(pid).expect("child");
        kill_and_reap(child);
        let after_exit = cache.get(pid).expect("still cached");
        assert!(Arc::ptr_eq(&info, &after_exit));
    }

    #[test]
    fn process_gone_before_first_lookup_is_none() {
        let mut child = Command::new("true").spawn().expect("spawn true");
        child.wait().expect("reap true");
        assert!(ProcessCache::new().get(child.id()).is_none());
    }

    #[test]
    fn pid_out_of_range_is_none() {
        assert!(ProcessCache::new().get(u32::MAX).is_none());
    }

    #[test]
    fn reused_pid_is_reread_after_revalidation() {
        let pid = std::process::id();
        let mut cache = ProcessCache::with_revalidate_after(Duration::ZERO);
        inject(
            &mut cache,
            fake_info(pid, own_start_time() + 1),
            Instant::now(),
        );
        let info = cache.get(pid).expect("own process");
        assert_ne!(info.name, "fake");
        assert_eq!(info.start_time, own_start_time());
    }

    #[test]
    fn cached_entry_is_trusted_within_the_interval() {
        let pid = std::process::id();
        let mut cache = ProcessCache::new();
        inject(
            &mut cache,
            fake_info(pid, own_start_time() + 1),
            Instant::now(),
        );
        assert_eq!(cache.get(pid).expect("cached").name, "fake");

        let stale = Instant::now()
            .checked_sub(REVALIDATE_AFTER)
            .expect("uptime beyond the interval");
        inject(&mut cache, fake_info(pid, own_start_time() + 1), stale);
        assert_ne!(cache.get(pid).expect("reread").name, "fake");
    }

    #[test]
    fn forget_forces_a_reread() {
        let pid = std::process::id();
        let mut cache = ProcessCache::new();
        inject(
            &mut cache,
            fake_info(pid, own_start_time() + 1),
            Instant::now(),
        );
        cache.forget(pid);
        assert_ne!(cache.get(pid).expect("reread").name, "fake");
    }

    #[test]
    fn same_instance_is_kept_on_revalidation() {
        let pid = std::process::id();
        let mut cache = ProcessCache::with_revalidate_after(Duration::ZERO);
        inject(&mut cache, fake_info(pid, own_start_time()), Instant::now());
        assert_eq!(cache.get(pid).expect("cached").name, "fake");
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
        cache.get(pid).expect("own process");
        let mut kept: Vec<u32> = cache.entries.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, [pid, u32::MAX - 3]);
    }

    #[test]
    fn parses_cgroup_v2_path() {
        let cgroup = "12:memory:/docker/x\n0::/system.slice/nginx.service\n";
        assert_eq!(
            cgroup_v2_path(cgroup).as_deref(),
            Some("/system.slice/nginx.service")
        );
        assert_eq!(cgroup_v2_path("0::/\n").as_deref(), Some("/"));
        assert_eq!(cgroup_v2_path("4:cpu:/\n"), None);
    }

    #[test]
    fn finds_container_ids() {
        let pod = "kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice";
        let cases = [
            format!("0::/system.slice/docker-{ID}.scope"),
            format!("0::/system.slice/docker-{ID}.scope/init.scope"),
            format!("0::/kubepods.slice/kubepods-burstable.slice/{pod}/cri-containerd-{ID}.scope"),
            format!("0::/kubepods.slice/kubepods-besteffort.slice/{pod}/crio-{ID}.scope"),
            format!("0::/machine.slice/libpod-{ID}.scope/container"),
            format!(
                "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
            ),
            format!("0::/docker/{ID}"),
            format!("12:memory:/docker/{ID}\n11:cpu:/docker/{ID}"),
            format!("0::/kubepods/besteffort/pod1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d/{ID}"),
        ];
        for cgroup in &cases {
            assert_eq!(container_id(cgroup).as_deref(), Some(ID), "{cgroup}");
        }
    }

    #[test]
    fn short_scope_ids_are_kept_as_found() {
        assert_eq!(
            container_id("0::/system.slice/docker-0123456789ab.scope").as_deref(),
            Some("0123456789ab")
        );
    }

    #[test]
    fn nested_containers_report_the_innermost() {
        let inner = "a".repeat(FULL_ID_LEN);
        let cgroup = format!("0::/system.slice/docker-{ID}.scope/docker/{inner}");
        assert_eq!(container_id(&cgroup), Some(inner));
    }

    #[test]
    fn host_cgroups_have_no_container_id() {
        let short = &ID[..FULL_ID_LEN - 1];
        let cases = [
            "0::/".to_owned(),
            "0::/init.scope".to_owned(),
            "0::/system.slice/docker.service".to_owned(),
            "0::/system.slice/containerd.service".to_owned(),
            "0::/user.slice/user-0.slice/session-3.scope".to_owned(),
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-2841.scope"
                .to_owned(),
            format!("0::/kubepods.slice/kubepods-besteffort.slice/crio-conmon-{ID}.scope"),
            format!("0::/docker/{short}"),
            format!("0::/docker/{}", ID.to_uppercase()),
            String::new(),
        ];
        for cgroup in &cases {
            assert_eq!(container_id(cgroup), None, "{cgroup}");
        }
    }

    #[test]
    fn redacts_secret_arguments() {
        let cases = [
            ("app --password=hunter2 -v", "app --password=REDACTED -v"),
            ("app --password hunter2 -v", "app --password REDACTED -v"),
            ("app -passwd hunter2", "app -passwd REDACTED"),
            ("app --DB-Password=x", "app --DB-Password=REDACTED"),
            (
                "app --api-key abc --port 80",
                "app --api-key REDACTED --port 80",
            ),
            (
                "env AWS_SECRET_ACCESS_KEY=abc x",
                "env AWS_SECRET_ACCESS_KEY=REDACTED x",
            ),
            ("app client_secret=a=b", "app client_secret=REDACTED"),
            ("app --token  abc", "app --token  REDACTED"),
            ("app --token", "app --token"),
            ("app --token --verbose", "app --token --verbose"),
            ("app --token= next", "app --token= next"),
            ("app --token -x", "app --token REDACTED"),
            ("app token abc", "app token abc"),
            ("nginx: worker process", "nginx: worker process"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_command_line(input), expected, "{input}");
        }
    }

    #[test]
    fn redacts_an_argument_with_spaces_as_one_value() {
        let args = ["app", "--secret", "two words", "--x=a b"];
        assert_eq!(redact_args(args), "app --secret REDACTED --x=a b");
    }

    #[test]
    fn parses_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # comment\n\
                      \n\
                      toor:x:0:0::/root:/bin/sh\n\
                      www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
                      broken:x:notanumber:1::/:/bin/false\n\
                      short\n";
        let users = parse_passwd(passwd);
        assert_eq!(users.get(&0).map(String::as_str), Some("root"));
        assert_eq!(users.get(&33).map(String::as_str), Some("www-data"));
        assert_eq!(users.len(), 2);
    }
}
