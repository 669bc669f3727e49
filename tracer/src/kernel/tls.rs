//! Attaches the OpenSSL uprobes to the libraries that watched servers actually map.
//!
//! A server is inspected when it is found at start, when it starts listening on a
//! watched port, and again when one of its connections turns out to be TLS while it has
//! no probes (a library loaded after listen()). Its `/proc/PID/maps` names the files;
//! they are opened through `/proc/PID/root` so libraries inside containers are found.
//! Each file (device, inode) is attached once, for every process: a uprobe belongs to
//! the file, and the programs themselves ignore processes that are not watched.
use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    programs::{ProgramError, UProbe, uprobe::UProbeError, uprobe::UProbeScope},
};
use log::debug;
use procfs::process::{MMPermissions, MMapPath, Process};

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

#[derive(Default)]
pub struct TlsProbes {
    /// Files already inspected, and whether they carry OpenSSL.
    files: HashMap<FileKey, bool>,
    processes: HashMap<u32, Support>,
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

    /// Finds the OpenSSL that `pid` maps and attaches to it if that is not done yet.
    pub fn inspect(&mut self, ebpf: &mut Ebpf, pid: u32) {
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

    pub fn forget(&mut self, pid: u32) {
        self.processes.remove(&pid);
        self.rescanned.remove(&pid);
    }

    /// Attaches to the host's own libssl files (as the dynamic loader knows them) before
    /// any server is inspected, so servers that start later using them are covered from
    /// their first request; only libraries of their own (containers, bundled copies) wait
    /// for their listen().
    pub fn attach_host_libraries(&mut self, ebpf: &mut Ebpf) {
        for path in host_libssl() {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let key = (device_numbers(meta.dev()), meta.ino());
            if let Err(e) = self.attach_once(ebpf, key, &path, &path) {
                eprintln!("tracer: TLS: {e:#}");
            }
        }
    }

    /// Attaches to the file unless it was inspected before; whether it carries OpenSSL.
    fn attach_once(
        &mut self,
        ebpf: &mut Ebpf,
        key: FileKey,
        target: &Path,
        shown: &Path,
    ) -> Result<bool> {
        if let Some(known) = self.files.get(&key) {
            return Ok(*known);
        }
        let carries_openssl =
            attach(ebpf, target).with_context(|| format!("attaching to {}", shown.display()))?;
        if carries_openssl {
            eprintln!(
                "tracer: TLS: OpenSSL probes attached to {}",
                shown.display()
            );
        }
        self.files.insert(key, carries_openssl);
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
            if self.attach_once(ebpf, (file.device, file.inode), &target, &file.path)? {
                return Ok(Support::Probed(file.path.clone()));
            }
        }
        Ok(Support::Opaque { executable })
    }
}

/// The libssl files the host's dynamic loader knows (`ldconfig -p`): what servers started
/// later will map. Empty when ldconfig is missing.
fn host_libssl() -> Vec<PathBuf> {
    let Ok(output) = Command::new("ldconfig").arg("-p").output() else {
        return Vec::new();
    };
    parse_ldconfig(&String::from_utf8_lossy(&output.stdout))
}

/// Paths of `libssl.so.N` entries in `ldconfig -p` output, each once.
fn parse_ldconfig(listing: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = listing
        .lines()
        .filter(|line| line.trim_start().starts_with("libssl.so."))
        .filter_map(|line| {
            line.split_once("=> ")
                .map(|(_, path)| PathBuf::from(path.trim()))
        })
        .collect();
    paths.dedup();
    paths
}

/// st_dev as the (major, minor) pair that /proc/PID/maps shows.
fn device_numbers(dev: u64) -> (i32, i32) {
    (libc::major(dev) as i32, libc::minor(dev) as i32)
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

/// Attaches every probe to `target`; false when it does not export SSL_read and
/// SSL_write (the `_ex` forms and SSL_set_fd are optional: OpenSSL 1.1.0 lacks `_ex`).
fn attach(ebpf: &mut Ebpf, target: &Path) -> Result<bool> {
    for &(function, entry, ret) in FUNCTIONS {
        let required = matches!(function, "SSL_read" | "SSL_write");
        for program in ret.into_iter().chain([entry]) {
            let uprobe: &mut UProbe = ebpf
                .program_mut(program)
                .with_context(|| format!("program {program} missing from the eBPF object"))?
                .try_into()?;
            match uprobe.attach([function], target, UProbeScope::AllProcesses) {
                Ok(_) => {}
                Err(ProgramError::UProbeError(UProbeError::SymbolError { .. })) => {
                    if required {
                        // Nothing was attached yet: SSL_read is the first function.
                        return Ok(false);
                    }
                    break;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("uprobe {program} on {function}"));
                }
            }
        }
    }
    Ok(true)
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
    fn ldconfig_listing_gives_each_libssl_once() {
        let listing = "1234 libs found in cache `/etc/ld.so.cache'
\tlibssl3.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl3.so
\tlibssl.so.3 (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so.3
\tlibssl.so.1.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libssl.so.1.1
\tlibssl.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so
";
        assert_eq!(
            parse_ldconfig(listing),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libssl.so.3"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libssl.so.1.1"),
            ]
        );
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
