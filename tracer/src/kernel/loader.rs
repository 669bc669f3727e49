//! Loads the embedded eBPF object, fills its maps and attaches every tracepoint; the
//! OpenSSL uprobes are loaded here and attached by `tls`.
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{ProgramFd, RawTracePoint, TracePoint, UProbe},
    util::nr_cpus,
};
use log::debug;
use tracer_common::Syscall;

use super::{offsets, watched::WatchedTgids};

/// The kernel programs, built by build.rs with the pinned nightly.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// Attach order matters: lifecycle hooks first, so no new server or fork is missed while
/// the capture attaches.
pub(super) const LIFECYCLE: &[(&str, &str, &str)] = &[
    ("sched_process_fork", "sched", "sched_process_fork"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("enter_listen", "syscalls", "sys_enter_listen"),
    ("enter_close", "syscalls", "sys_enter_close"),
    ("exit_accept", "syscalls", "sys_exit_accept4"),
    ("exit_accept", "syscalls", "sys_exit_accept"),
    ("exit_recvmsg", "syscalls", "sys_exit_recvmsg"),
];

/// Watched processes that set up an io_uring (tracer-ebpf/src/probes/io_uring.rs); a
/// kernel built without io_uring has neither the call nor its tracepoint.
const IO_URING_SETUP: (&str, &str, &str) =
    ("exit_io_uring_setup", "syscalls", "sys_exit_io_uring_setup");

/// Every read/write-family transfer, as its syscall returns (tracer-ebpf/src/probes/io.rs).
pub(super) const CAPTURE: &str = "sys_exit";
/// The head scans the read and write programs jump to, by `Direction`
/// (tracer-ebpf/src/body.rs).
const HEAD_SCANS: [&str; 2] = ["scan_request_head", "scan_response_head"];

pub struct Loaded {
    /// Owns the programs and their links: dropping it detaches everything.
    pub ebpf: Ebpf,
    pub events: RingBuf<MapData>,
    pub losses: PerCpuArray<MapData, u64>,
    pub tgids: WatchedTgids,
}

pub struct Options<'a> {
    pub ports: &'a [u16],
    pub ringbuf_bytes: u32,
    pub tracefs: &'a Path,
}

pub fn load(options: &Options<'_>) -> Result<Loaded> {
    if OBJECT.is_empty() {
        bail!("this tracer binary was built with AYA_BUILD_SKIP: it has no eBPF programs");
    }
    raise_memlock();
    let offsets = offsets::load(options.tracefs)?;
    debug!("kernel offsets: {offsets:?}");
    let cpus = nr_cpus()
        .map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))
        .context("counting possible CPUs")?;
    let mut ebpf = EbpfLoader::new()
        .verifier_log_level(aya::VerifierLogLevel::STATS)
        .override_global("OFFSETS", &offsets, true)
        .override_global("WAKEUP_BYTES", &wakeup_bytes(options.ringbuf_bytes), true)
        .map_max_entries("SCRATCH", cpus.get())
        .map_max_entries("EVENTS", options.ringbuf_bytes)
        .load(OBJECT)
        .context("loading the eBPF programs (is this a kernel with BTF and ring buffers?)")?;

    let mut ports: HashMap<_, u16, u8> =
        HashMap::try_from(ebpf.map_mut("WATCHED_PORTS").context("map WATCHED_PORTS")?)?;
    for port in options.ports {
        ports
            .insert(port, &1u8, 0)
            .context("filling WATCHED_PORTS")?;
    }

    for &(program, category, name) in LIFECYCLE {
        attach(&mut ebpf, program, category, name)?;
    }
    let (program, category, name) = IO_URING_SETUP;
    if options
        .tracefs
        .join("events")
        .join(category)
        .join(name)
        .exists()
    {
        attach(&mut ebpf, program, category, name)?;
    }
    attach_capture(&mut ebpf)?;

    // Verified now, attached later to each OpenSSL found (kernel/tls.rs).
    for program in super::tls::PROGRAMS {
        let uprobe: &mut UProbe = ebpf
            .program_mut(program)
            .with_context(|| format!("program {program} missing from the eBPF object"))?
            .try_into()?;
        uprobe
            .load()
            .with_context(|| format!("verifying program {program}"))?;
    }

    let events = RingBuf::try_from(ebpf.take_map("EVENTS").context("map EVENTS")?)?;
    let losses = PerCpuArray::try_from(ebpf.take_map("LOSSES").context("map LOSSES")?)?;
    let tgids = WatchedTgids::new(
        ebpf.take_map("WATCHED_TGIDS")
            .context("map WATCHED_TGIDS")?,
    )?;
    Ok(Loaded {
        ebpf,
        events,
        losses,
        tgids,
    })
}

/// Detaches every program, the capture dispatcher first: dropping `Ebpf` closes its
/// maps before its programs, and the kernel empties CAPTURE_PROGRAMS when its last
/// descriptor closes, so a dispatcher still attached then would fail its jumps (and
/// count them as losses) until it went too.
pub fn detach(mut ebpf: Ebpf) -> Result<()> {
    raw_tracepoint(&mut ebpf, CAPTURE)?
        .unload()
        .with_context(|| format!("detaching program {CAPTURE}"))?;
    drop(ebpf);
    Ok(())
}

/// Total run time and run count of the loaded programs since the kernel started timing
/// them (`aya::sys::enable_stats`); zero when it does not.
pub fn program_run_time(ebpf: &Ebpf) -> Result<ProgramRunTime> {
    let mut total = ProgramRunTime::default();
    for (name, program) in ebpf.programs() {
        let info = program
            .info()
            .with_context(|| format!("reading statistics of program {name}"))?;
        total.run_time_ns += info.run_time().as_nanos() as u64;
        total.run_count += info.run_count();
    }
    Ok(total)
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ProgramRunTime {
    #[serde(rename = "bpf_run_time_ns")]
    pub run_time_ns: u64,
    #[serde(rename = "bpf_run_count")]
    pub run_count: u64,
}

/// 1 MiB batches, but never more than a quarter of the ring: a small ring must wake
/// user space well before it is full, or the drain timer alone would let it overflow.
/// At saturation the 10 ms drain timer then wakes the tracer more often than the ring
/// does: 64 KiB woke it ~1,400 times a second, each an interrupt in the server's
/// context and a switch to the tracer, and nginx served 4-5% less (docs/design.md).
fn wakeup_bytes(ringbuf_bytes: u32) -> u64 {
    u64::from(ringbuf_bytes / 4).min(1024 * 1024)
}

/// Fills CAPTURE_PROGRAMS with each captured syscall's program, then attaches the
/// dispatcher that jumps to them: no syscall reaches an empty slot.
fn attach_capture(ebpf: &mut Ebpf) -> Result<()> {
    // The kernel empties a program array once user space holds no descriptor of it,
    // so the map stays in `ebpf` (which lives as long as the programs); programs are
    // loaded first and put in afterwards.
    let mut fds = Vec::with_capacity(Syscall::CAPTURED.len());
    for syscall in Syscall::CAPTURED {
        let name = syscall
            .capture_program()
            .with_context(|| format!("{syscall:?} has no capture program"))?;
        fds.push((name, load_jump_target(ebpf, name)?));
    }
    let mut table = ProgramArray::try_from(
        ebpf.map_mut("CAPTURE_PROGRAMS")
            .context("map CAPTURE_PROGRAMS")?,
    )?;
    for (index, (name, fd)) in fds.iter().enumerate() {
        table
            .set(index as u32, fd, 0)
            .with_context(|| format!("putting {name} into CAPTURE_PROGRAMS"))?;
    }
    let scans = HEAD_SCANS
        .iter()
        .map(|name| load_jump_target(ebpf, name))
        .collect::<Result<Vec<_>>>()?;
    let mut table = ProgramArray::try_from(
        ebpf.map_mut("HEAD_SCAN_PROGRAMS")
            .context("map HEAD_SCAN_PROGRAMS")?,
    )?;
    for (index, (name, scan)) in HEAD_SCANS.iter().zip(&scans).enumerate() {
        table
            .set(index as u32, scan, 0)
            .with_context(|| format!("putting {name} into HEAD_SCAN_PROGRAMS"))?;
    }
    let dispatcher = raw_tracepoint(ebpf, CAPTURE)?;
    dispatcher
        .load()
        .with_context(|| format!("verifying program {CAPTURE}"))?;
    dispatcher
        .attach("sys_exit")
        .context("attaching to raw tracepoint raw_syscalls/sys_exit")?;
    Ok(())
}

/// Loads raw tracepoint program `name`, which is only jumped to, and returns a
/// descriptor of it for a program array.
fn load_jump_target(ebpf: &mut Ebpf, name: &str) -> Result<ProgramFd> {
    let program = raw_tracepoint(ebpf, name)?;
    program
        .load()
        .with_context(|| format!("verifying program {name}"))?;
    // How close each program is to the verifier's limit of a million instructions.
    if let Some(count) = program
        .info()
        .ok()
        .and_then(|info| info.verified_instruction_count())
    {
        debug!("program {name}: the verifier walked {count} instructions");
    }
    program
        .fd()
        .context("a loaded program's descriptor")?
        .try_clone()
        .context("duplicating a program's descriptor")
}

fn raw_tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut RawTracePoint> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?
        .try_into()?)
}

fn attach(ebpf: &mut Ebpf, program: &str, category: &str, name: &str) -> Result<()> {
    let tracepoint: &mut TracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} missing from the eBPF object"))?
        .try_into()?;
    // One program may serve several tracepoints (accept and accept4): loaded once.
    if tracepoint.fd().is_err() {
        tracepoint
            .load()
            .with_context(|| format!("verifying program {program}"))?;
    }
    tracepoint
        .attach(category, name)
        .with_context(|| format!("attaching to tracepoint {category}/{name}"))?;
    Ok(())
}

/// Kernels since 5.11 charge BPF memory to the memory cgroup; older ones need
/// RLIMIT_MEMLOCK raised. Without CAP_SYS_RESOURCE raising fails, which is harmless on
/// new kernels and surfaces as a load error on old ones, so it is only a debug message.
fn raise_memlock() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11",
            std::io::Error::last_os_error()
        );
    }
}
