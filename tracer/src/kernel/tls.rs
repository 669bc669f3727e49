//! Attaches the OpenSSL uprobes to the watched servers, each process on its own.
//!
//! A server is inspected when it is found at start, when it starts listening on a
//! watched port or is forked by a watched process (a new worker), and again when one of
//! its connections turns out to be TLS while it has no probes (a library loaded after
//! listen()). Its `/proc/PID/maps` names the files; they are opened through
//! `/proc/PID/root` so libraries inside containers are found. The probes carry the
//! process as a filter (a uprobe_multi link's pid, or a perf event's), so the kernel
//! plants its breakpoints only in that process: clients on the host (curl, wrk) that
//! use the same libssl run it untouched instead of trapping on every SSL call.
use std::{
    collections::{HashMap, HashSet},
    num::NonZeroU32,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    programs::{
        ProgramError, UProbe,
        uprobe::{UProbeAttachLocation, UProbeError, UProbeLinkId, UProbeScope},
    },
};
use log::debug;
use procfs::process::{MMPermissions, MMapPath, Process};

use super::ssl_entry::{self, Internal};

/// The uprobe programs, loaded by the loader and attached here.
pub const PROGRAMS: &[&str] = &[
    "ssl_read_enter",
    "ssl_write_enter",
    "ssl_ret",
    "ssl_ret_ex",
    "ssl_set_fd",
];

/// (function, entry program, return program). Return probes first, so that a call parked
/// by an entry probe always has its return probe in place.
const FUNCTIONS: &[(&str, &str, Option<&str>)] = &[
    ("SSL_read", "ssl_read_enter", Some("ssl_ret")),
    ("SSL_write", "ssl_write_enter", Some("ssl_ret")),
    ("SSL_read_ex", "ssl_read_enter", Some("ssl_ret_ex")),
    ("SSL_write_ex", "ssl_write_enter", Some("ssl_ret_ex")),
    ("SSL_set_fd", "ssl_set_fd", None),
];

/// One function to probe: by exported name, or at a file offset found by `ssl_entry`.
struct Probe {
    function: &'static str,
    offset: Option<u64>,
    entry: &'static str,
    ret: Option<&'static str>,
}

/// The probes for a file: on the internal read and write functions when `ssl_entry`
/// found them (they take the `_ex` arguments), else on the exported functions.
fn probes(internal: Option<Internal>) -> Vec<Probe> {
    match internal {
        Some(Internal { read, write }) => vec![
            Probe {
                function: "ssl_read_internal",
                offset: Some(read),
                entry: "ssl_read_enter",
                ret: Some("ssl_ret_ex"),
            },
            Probe {
                function: "ssl_write_internal",
                offset: Some(write),
                entry: "ssl_write_enter",
                ret: Some("ssl_ret_ex"),
            },
            Probe {
                function: "SSL_set_fd",
                offset: None,
                entry: "ssl_set_fd",
                ret: None,
            },
        ],
        None => FUNCTIONS
            .iter()
            .map(|&(function, entry, ret)| Probe {
                function,
                offset: None,
                entry,
                ret,
            })
            .collect(),
    }
}

/// What the tracer can see of a watched process's TLS traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Support {
    /// Plaintext is captured through this file's OpenSSL symbols.
    Probed(PathBuf),
    /// No mapped file exports SSL_read and SSL_write: TLS stays opaque.
    Opaque { executable: PathBuf },
}

/// (device (major, minor), inode): a file whatever path or mount namespace names it.
type FileKey = ((i32, i32), u64);

/// A file mapped executable by a process, as named in its maps.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MappedFile {
    path: PathBuf,
    device: (i32, i32),
    inode: u64,
}

/// One attached probe: its program and link, for detaching it when the process exits.
type Link = (&'static str, UProbeLinkId);

#[derive(Default)]
pub struct TlsProbes {
    /// Files already inspected, and whether they carry OpenSSL.
    files: HashMap<FileKey, bool>,
    processes: HashMap<u32, Support>,
    /// The probes attached for each process.
    links: HashMap<u32, Vec<Link>>,
    /// Where each file's read and write functions are probed (`ssl_entry`).
    shapes: HashMap<FileKey, Option<Internal>>,
    /// Processes inspected again after a TLS connection showed up: once is enough.
    rescanned: HashSet<u32>,
    /// Executables already named on stderr as serving TLS that cannot be decrypted.
    reported: HashSet<PathBuf>,
}

impl TlsProbes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of files the probes are attached to.
    pub fn libraries(&self) -> usize {
        self.files.values().filter(|&&openssl| openssl).count()
    }

    /// Finds the OpenSSL that `pid` maps and attaches to it for this process, unless
    /// that is done. A thread id (fork reports new threads too) is skipped: its process
    /// carries the probes, which fire for all of its threads.
    pub fn inspect(&mut self, ebpf: &mut Ebpf, pid: u32) {
        if matches!(self.processes.get(&pid), Some(Support::Probed(_))) {
            return;
        }
        match Process::new(pid as i32).and_then(|p| p.status()) {
            Ok(status) if status.tgid != pid as i32 => return,
            Ok(_) => {}
            Err(e) => {
                debug!("pid {pid}: gone before TLS inspection: {e}");
                return;
            }
        }
        match self.support(ebpf, pid) {
            Ok(support) => {
                debug!("pid {pid}: TLS {support:?}");
                self.processes.insert(pid, support);
            }
            // The process is gone or unreadable: it has nothing left to trace.
            Err(e) => debug!("pid {pid}: not inspected for TLS: {e:#}"),
        }
    }

    /// A connection of `pid` turned out to be TLS.
    pub fn tls_connection(&mut self, ebpf: &mut Ebpf, pid: u32) {
        if !matches!(self.processes.get(&pid), Some(Support::Probed(_)))
            && self.rescanned.insert(pid)
        {
            // A library loaded after listen() (Python imports ssl late, say).
            self.inspect(ebpf, pid);
        }
        let Some(Support::Opaque { executable }) = self.processes.get(&pid) else {
            return;
        };
        if self.reported.insert(executable.clone()) {
            eprintln!(
                "tracer: pid {pid} ({}) serves TLS on a watched port but maps no OpenSSL \
                 with SSL_read/SSL_write symbols; its TLS connections are counted \
                 (tls_without_plaintext), not recorded",
                executable.display()
            );
        }
    }

    /// The process exited: its probes go with it.
    pub fn forget(&mut self, ebpf: &mut Ebpf, pid: u32) {
        self.processes.remove(&pid);
        self.rescanned.remove(&pid);
        detach(ebpf, self.links.remove(&pid).unwrap_or_default());
    }

    /// Attaches to the file for `pid` unless the file is known to lack OpenSSL; whether
    /// it carries OpenSSL.
    fn attach_for(
        &mut self,
        ebpf: &mut Ebpf,
        pid: u32,
        key: FileKey,
        target: &Path,
        shown: &Path,
    ) -> Result<bool> {
        if self.files.get(&key) == Some(&false) {
            return Ok(false);
        }
        let internal = *self
            .shapes
            .entry(key)
            .or_insert_with(|| ssl_entry::internal(target));
        let links = attach(ebpf, target, pid, &probes(internal))
            .with_context(|| format!("attaching to {} for pid {pid}", shown.display()))?;
        let carries_openssl = links.is_some();
        if carries_openssl && !self.files.contains_key(&key) {
            let at = if internal.is_some() {
                "its internal read/write functions"
            } else {
                "SSL_read/SSL_write"
            };
            eprintln!(
                "tracer: TLS: OpenSSL probes attached to {} ({at}, per process)",
                shown.display()
            );
        }
        self.files.insert(key, carries_openssl);
        self.links
            .entry(pid)
            .or_default()
            .extend(links.unwrap_or_default());
        Ok(carries_openssl)
    }

    fn support(&mut self, ebpf: &mut Ebpf, pid: u32) -> Result<Support> {
        let process = Process::new(pid as i32).context("opening /proc/PID")?;
        let maps = process.maps().context("reading /proc/PID/maps")?;
        let mapped: Vec<MappedFile> = maps
            .iter()
            .filter(|m| m.perms.contains(MMPermissions::EXECUTE) && m.inode != 0)
            .filter_map(|m| match &m.pathname {
                MMapPath::Path(path) => Some(MappedFile {
                    path: path.clone(),
                    device: m.dev,
                    inode: m.inode,
                }),
                _ => None,
            })
            .collect();
        let executable = process
            .exe()
            .unwrap_or_else(|_| PathBuf::from(format!("pid {pid}")));
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        for file in candidates(&mapped, &executable) {
            let target = root.join(file.path.strip_prefix("/").unwrap_or(&file.path));
            if self.attach_for(ebpf, pid, (file.device, file.inode), &target, &file.path)? {
                return Ok(Support::Probed(file.path.clone()));
            }
        }
        Ok(Support::Opaque { executable })
    }
}

/// Files that may carry OpenSSL: libssl itself, then the executable (statically linked
/// servers such as Node.js export the same symbols). Each file once.
fn candidates<'a>(mapped: &'a [MappedFile], executable: &Path) -> Vec<&'a MappedFile> {
    let is_libssl = |f: &&MappedFile| {
        f.path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("libssl.so"))
    };
    let mut out: Vec<&MappedFile> = mapped.iter().filter(is_libssl).collect();
    out.extend(mapped.iter().filter(|f| f.path == executable));
    let mut seen = HashSet::new();
    out.retain(|f| seen.insert((f.device, f.inode)));
    out
}

/// Attaches `probes` to `target` for process `pid`; None when the file does not
/// export SSL_read and SSL_write (the `_ex` forms and SSL_set_fd are optional: OpenSSL
/// 1.1.0 lacks `_ex`). On an error, what was attached is detached again.
fn attach(ebpf: &mut Ebpf, target: &Path, pid: u32, probes: &[Probe]) -> Result<Option<Vec<Link>>> {
    let scope = UProbeScope::OneProcess(NonZeroU32::new(pid).context("pid 0")?);
    let mut links = Vec::new();
    for probe in probes {
        let function = probe.function;
        let location = match probe.offset {
            Some(offset) => UProbeAttachLocation::AbsoluteOffset(offset),
            None => UProbeAttachLocation::Symbol(function),
        };
        let required = matches!(function, "SSL_read" | "SSL_write");
        for program in probe.ret.into_iter().chain([probe.entry]) {
            let attached =
                uprobe(ebpf, program).and_then(|p| Ok(p.attach([location], target, scope)?));
            match attached {
                Ok(link) => links.push((program, link)),
                Err(e)
                    if matches!(
                        e.downcast_ref::<ProgramError>(),
                        Some(ProgramError::UProbeError(UProbeError::SymbolError { .. }))
                    ) =>
                {
                    if required {
                        detach(ebpf, links);
                        return Ok(None);
                    }
                    break;
                }
                Err(e) => {
                    detach(ebpf, links);
                    return Err(e).with_context(|| format!("uprobe {program} on {function}"));
                }
            }
        }
    }
    Ok(Some(links))
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, program: &str) -> Result<&'a mut UProbe> {
    Ok(ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} missing from the eBPF object"))?
        .try_into()?)
}

/// Detaches probes; one already gone with its process is no error worth reporting.
fn detach(ebpf: &mut Ebpf, links: Vec<Link>) {
    for (program, link) in links {
        if let Err(e) = uprobe(ebpf, program).and_then(|p| Ok(p.detach(link)?)) {
            debug!("detaching {program}: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, inode: u64) -> MappedFile {
        MappedFile {
            path: PathBuf::from(path),
            device: (8, 1),
            inode,
        }
    }

    #[test]
    fn libssl_first_then_the_executable_each_once() {
        let mapped = [
            file("/usr/sbin/nginx", 10),
            file("/usr/lib/x86_64-linux-gnu/libcrypto.so.3", 11),
            file("/usr/lib/x86_64-linux-gnu/libssl.so.3", 12),
            file("/usr/lib/x86_64-linux-gnu/libssl.so.3", 12),
            file("/usr/lib/x86_64-linux-gnu/libc.so.6", 13),
        ];
        let got: Vec<u64> = candidates(&mapped, Path::new("/usr/sbin/nginx"))
            .iter()
            .map(|f| f.inode)
            .collect();
        assert_eq!(got, [12, 10]);
    }

    #[test]
    fn old_libssl_names_count_and_other_libraries_do_not() {
        let mapped = [
            file("/opt/app/lib/libssl.so.1.1", 20),
            file("/usr/lib/libsslfoo-not-openssl.so", 21),
            file("/usr/bin/node", 22),
        ];
        let got: Vec<u64> = candidates(&mapped, Path::new("/usr/bin/node"))
            .iter()
            .map(|f| f.inode)
            .collect();
        assert_eq!(got, [20, 22]);
    }
}
