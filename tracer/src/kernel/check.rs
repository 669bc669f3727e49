//! `tracer check`: can this host run the tracer? Each facility is probed for real.
use std::{
    fs,
    os::fd::{FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use super::offsets;

/// Capability bits (include/uapi/linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

pub struct Finding {
    pub what: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Where tracefs is mounted (mounting it if only debugfs' copy or nothing is there).
pub fn tracefs() -> Option<PathBuf> {
    let candidates = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    if let Some(found) = candidates
        .iter()
        .map(Path::new)
        .find(|p| p.join("events").is_dir())
    {
        return Some(found.to_path_buf());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: static C strings; mount(2) failure is reported via the return value.
    let mounted = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    } == 0;
    let path = Path::new("/sys/kernel/tracing");
    (mounted && path.join("events").is_dir()).then(|| path.to_path_buf())
}

pub fn run() -> Vec<Finding> {
    let mut findings = vec![capabilities(), btf()];
    let tracefs = tracefs();
    let mounted = Path::new("/sys/kernel/tracing/trace").exists()
        || Path::new("/sys/kernel/tracing").read_dir().is_err();
    findings.push(Finding {
        what: "tracefs",
        ok: tracefs.is_some(),
        detail: match &tracefs {
            Some(p) => format!("mounted at {}", p.display()),
            None if mounted => "/sys/kernel/tracing is not readable (needs root)".into(),
            None => "not mounted and could not be mounted at /sys/kernel/tracing".into(),
        },
    });
    if let Some(tracefs) = &tracefs {
        findings.push(tracepoints(tracefs));
        findings.push(uprobes(tracefs));
    }
    findings.push(ring_buffer());
    findings
}

/// The one-line reason `tracer run` refuses to start, if any.
pub fn blocking_problems(findings: &[Finding]) -> Option<String> {
    let missing: Vec<String> = findings
        .iter()
        .filter(|f| !f.ok && f.what != "uprobes")
        .map(|f| format!("{}: {}", f.what, f.detail))
        .collect();
    (!missing.is_empty()).then(|| missing.join("; "))
}

fn capabilities() -> Finding {
    let effective = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    let bpf = has(CAP_BPF) || has(CAP_SYS_ADMIN);
    let perfmon = has(CAP_PERFMON) || has(CAP_SYS_ADMIN);
    let ok = bpf && perfmon;
    Finding {
        what: "privileges",
        ok,
        detail: if ok {
            format!("CAP_BPF and CAP_PERFMON effective (CapEff {effective:#x})")
        } else {
            format!(
                "need CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); run as root (CapEff {effective:#x})"
            )
        },
    }
}

fn btf() -> Finding {
    let path = Path::new(offsets::VMLINUX_BTF);
    Finding {
        what: "kernel BTF",
        ok: path.exists(),
        detail: if path.exists() {
            format!("{} present", path.display())
        } else {
            format!(
                "{} missing: kernel needs CONFIG_DEBUG_INFO_BTF=y",
                path.display()
            )
        },
    }
}

fn tracepoints(tracefs: &Path) -> Finding {
    // The ones the loader attaches, so the two lists cannot drift apart.
    let wanted: Vec<String> = super::loader::LIFECYCLE
        .iter()
        .map(|(_, category, name)| format!("{category}/{name}"))
        .chain(std::iter::once(format!(
            "raw_syscalls/{}",
            super::loader::CAPTURE
        )))
        .collect();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|t| !tracefs.join("events").join(t).join("id").exists())
        .collect();
    Finding {
        what: "tracepoints",
        ok: missing.is_empty(),
        detail: if missing.is_empty() {
            format!("all {} present", wanted.len())
        } else {
            format!("missing {missing:?} (kernel needs CONFIG_FTRACE_SYSCALLS=y)")
        },
    }
}

/// Not needed for plain HTTP; reported for the TLS capture that builds on uprobes.
fn uprobes(tracefs: &Path) -> Finding {
    let ok = tracefs.join("uprobe_events").exists();
    Finding {
        what: "uprobes",
        ok,
        detail: if ok {
            "uprobe_events present".into()
        } else {
            "no uprobe_events (CONFIG_UPROBE_EVENTS): TLS capture unavailable".into()
        },
    }
}

/// Creates and closes a small BPF ring buffer map: proves both bpf(2) access and the map type.
fn ring_buffer() -> Finding {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_RINGBUF: u32 = 27;
    // The first fields of union bpf_attr for BPF_MAP_CREATE; the rest must be zero.
    let mut attr = [0u32; 32];
    attr[0] = BPF_MAP_TYPE_RINGBUF;
    attr[3] = 4096;
    // SAFETY: attr is a zeroed, correctly sized bpf_attr prefix.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        return Finding {
            what: "ring buffer",
            ok: false,
            detail: format!(
                "creating a BPF ring buffer failed: {} (kernel >= 5.8 and bpf(2) access needed)",
                std::io::Error::last_os_error()
            ),
        };
    }
    // SAFETY: fd was just returned by bpf(2) and is owned here.
    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    Finding {
        what: "ring buffer",
        ok: true,
        detail: "BPF_MAP_TYPE_RINGBUF created".into(),
    }
}
