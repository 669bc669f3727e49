//! The floor programs (`tracer-ebpf/src/floors`): empty programs attached to one
//! candidate hook set, so `cargo xtask bench --floors` can measure what each design
//! costs before it does any work. Never loaded by `tracer run`.
use std::{fmt, fs::File};

use anyhow::{Context as _, Result, bail};
use aya::{
    Btf, Ebpf,
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, RawTracePoint,
        SchedClassifier, TcAttachType, TracePoint, UProbe,
    },
};

use super::{
    discovery,
    tls::{self, TlsProbes},
};

/// The floor programs, built by build.rs next to the tracer's own.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floors"));

/// A set of hooks to put empty programs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Hook {
    /// The perf-event `syscalls:*` tracepoints `tracer run` attached until it captured on
    /// `raw_syscalls:sys_exit` (the I/O pairs, close, listen).
    Syscalls,
    /// `raw_syscalls:sys_enter` and `sys_exit` as raw tracepoints.
    RawSyscalls,
    /// The same, dispatching on the syscall id and looking the tgid up.
    RawSyscallsFiltered,
    /// `raw_syscalls:sys_exit` alone, looking the tgid up: the hook `tracer run` captures
    /// on (besides `sys_enter_close` and `sys_enter_listen`, hit once per connection).
    RawExitFiltered,
    /// `tp_btf/sys_enter` and `tp_btf/sys_exit` (BTF-typed raw tracepoints).
    TpBtf,
    /// `sock:sock_recv_length` and `sock:sock_send_length`, perf-event tracepoints.
    Sock,
    /// The same two as raw tracepoints.
    RawSock,
    /// cgroup_skb ingress and egress on the root of the cgroup2 hierarchy.
    CgroupSkb,
    /// TC (tcx) ingress and egress on `lo`.
    Tc,
    /// The OpenSSL uprobes and return probes `tracer run` puts on each process serving
    /// the given ports (the same functions and files, one process each).
    OpensslProbes,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum as _;
        match self.to_possible_value() {
            Some(value) => f.write_str(value.get_name()),
            None => write!(f, "{self:?}"),
        }
    }
}

/// The perf-event syscall tracepoints of the per-syscall design.
fn syscall_tracepoints() -> Vec<String> {
    const IO: [&str; 9] = [
        "read",
        "readv",
        "recvfrom",
        "recvmsg",
        "write",
        "writev",
        "sendto",
        "sendmsg",
        "sendfile64",
    ];
    let mut names: Vec<String> = IO
        .iter()
        .flat_map(|io| [format!("sys_enter_{io}"), format!("sys_exit_{io}")])
        .collect();
    names.push("sys_enter_close".to_owned());
    names.push("sys_enter_listen".to_owned());
    names
}

/// Loads the floor object and attaches the programs of `hook` (the OpenSSL probes to
/// the processes serving `ports`); dropping the result detaches them.
pub fn attach(hook: Hook, ports: &[u16]) -> Result<Ebpf> {
    if OBJECT.is_empty() {
        bail!("this tracer binary was built with AYA_BUILD_SKIP: it has no eBPF programs");
    }
    let mut ebpf = Ebpf::load(OBJECT).context("loading the floor programs")?;
    match hook {
        Hook::Syscalls => {
            let names = syscall_tracepoints();
            tracepoints(&mut ebpf, "syscalls", &names)?;
        }
        Hook::Sock => tracepoints(
            &mut ebpf,
            "sock",
            &["sock_recv_length".into(), "sock_send_length".into()],
        )?,
        Hook::RawSyscalls => raw(
            &mut ebpf,
            &[
                ("floor_raw_tracepoint", "sys_enter"),
                ("floor_raw_tracepoint", "sys_exit"),
            ],
        )?,
        Hook::RawSyscallsFiltered => raw(
            &mut ebpf,
            &[
                ("floor_raw_enter_filtered", "sys_enter"),
                ("floor_raw_exit_filtered", "sys_exit"),
            ],
        )?,
        Hook::RawExitFiltered => raw(&mut ebpf, &[("floor_raw_exit_filtered", "sys_exit")])?,
        Hook::RawSock => raw(
            &mut ebpf,
            &[
                ("floor_raw_tracepoint", "sock_recv_length"),
                ("floor_raw_tracepoint", "sock_send_length"),
            ],
        )?,
        Hook::TpBtf => {
            let btf = Btf::from_sys_fs().context("reading the kernel's BTF")?;
            for (program, function) in [
                ("floor_btf_enter", "sys_enter"),
                ("floor_btf_exit", "sys_exit"),
            ] {
                let prog: &mut BtfTracePoint = program_mut(&mut ebpf, program)?;
                prog.load(function, &btf)
                    .with_context(|| format!("loading {program} for tp_btf/{function}"))?;
                prog.attach()
                    .with_context(|| format!("attaching tp_btf/{function}"))?;
            }
        }
        Hook::CgroupSkb => {
            let root = cgroup2_root()?;
            let cgroup = File::open(&root).with_context(|| format!("opening {root}"))?;
            let prog: &mut CgroupSkb = program_mut(&mut ebpf, "floor_cgroup_skb")?;
            prog.load()?;
            for direction in [CgroupSkbAttachType::Ingress, CgroupSkbAttachType::Egress] {
                prog.attach(&cgroup, direction, CgroupAttachMode::Single)
                    .with_context(|| format!("attaching cgroup_skb {direction:?}"))?;
            }
        }
        Hook::OpensslProbes => openssl_probes(&mut ebpf, ports)?,
        Hook::Tc => {
            let prog: &mut SchedClassifier = program_mut(&mut ebpf, "floor_tc")?;
            prog.load()?;
            for direction in [TcAttachType::Ingress, TcAttachType::Egress] {
                prog.attach(c"lo", direction)
                    .with_context(|| format!("attaching tc {direction:?} on lo"))?;
            }
        }
    }
    Ok(ebpf)
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the floor object"))?;
    Ok(program.try_into()?)
}

/// Attaches the empty OpenSSL probes through `TlsProbes`, the code `tracer run` uses.
fn openssl_probes(ebpf: &mut Ebpf, ports: &[u16]) -> Result<()> {
    for &program in tls::PROGRAMS {
        let prog: &mut UProbe = program_mut(ebpf, program)?;
        prog.load()
            .with_context(|| format!("verifying program {program}"))?;
    }
    let servers = discovery::processes_on_ports(ports)?;
    let mut probes = TlsProbes::new();
    for &pid in &servers {
        probes.inspect(ebpf, pid);
    }
    if probes.libraries() == 0 {
        bail!(
            "none of the processes serving port(s) {ports:?} ({servers:?}) maps an OpenSSL \
             the probes attach to"
        );
    }
    Ok(())
}

fn tracepoints(ebpf: &mut Ebpf, category: &str, names: &[String]) -> Result<()> {
    let prog: &mut TracePoint = program_mut(ebpf, "floor_tracepoint")?;
    prog.load()?;
    for name in names {
        prog.attach(category, name)
            .with_context(|| format!("attaching to tracepoint {category}/{name}"))?;
    }
    Ok(())
}

/// (program, raw tracepoint) pairs; a program attached twice is loaded once.
fn raw(ebpf: &mut Ebpf, pairs: &[(&str, &str)]) -> Result<()> {
    for &(program, tracepoint) in pairs {
        let prog: &mut RawTracePoint = program_mut(ebpf, program)?;
        if prog.fd().is_err() {
            prog.load()?;
        }
        prog.attach(tracepoint)
            .with_context(|| format!("attaching raw tracepoint {tracepoint}"))?;
    }
    Ok(())
}

/// Where cgroup2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
fn cgroup2_root() -> Result<String> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    mounts
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&"cgroup2"))
        .and_then(|fields| fields.get(1).map(|p| (*p).to_owned()))
        .context("no cgroup2 hierarchy is mounted")
}
