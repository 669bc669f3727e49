//! Floor programs for `cargo xtask bench --floors`: what merely running a program on each
//! candidate hook costs, before any tracing work. They are a separate object that
//! `tracer run` never loads; only the hidden `tracer floor` command attaches them.
//!
//! Every program returns at once except the `*_filtered` pair, which does the least a
//! raw-tracepoint capture design must do on every syscall of the host: dispatch on the
//! syscall id and look the caller's tgid up.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::TC_ACT_OK,
    helpers::bpf_get_current_pid_tgid,
    macros::{
        btf_tracepoint, cgroup_skb, classifier, map, raw_tracepoint, tracepoint, uprobe, uretprobe,
    },
    maps::HashMap,
    programs::{
        BtfTracePointContext, ProbeContext, RawTracePointContext, RetProbeContext, SkBuffContext,
        TcContext, TracePointContext,
    },
};

/// Always empty: the filtered floor pays a lookup that misses, as unwatched processes do.
#[map]
static FLOOR_TGIDS: HashMap<u32, u8> = HashMap::with_max_entries(32768, 0);

/// x86_64 numbers of the syscalls the tracer captures or needs (read, write, close,
/// readv, writev, sendfile, sendto, recvfrom, sendmsg, recvmsg, listen).
#[inline(always)]
fn interesting(id: i64) -> bool {
    matches!(id, 0 | 1 | 3 | 19 | 20 | 40 | 44..=47 | 50)
}

#[inline(always)]
fn watched() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: lookup only.
    unsafe { FLOOR_TGIDS.get(&tgid) }.is_some()
}

/// Any perf-event tracepoint: syscalls:*, sock:*.
#[tracepoint]
pub fn floor_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

/// raw_syscalls:sys_enter and sys_exit, and raw sock:* tracepoints.
#[raw_tracepoint]
pub fn floor_raw_tracepoint(_ctx: RawTracePointContext) -> i32 {
    0
}

/// raw_syscalls:sys_enter(regs, id): dispatch on the id, then the tgid lookup.
#[raw_tracepoint]
pub fn floor_raw_enter_filtered(ctx: RawTracePointContext) -> i32 {
    let id: i64 = ctx.arg(1);
    if interesting(id) && watched() {
        return 1;
    }
    0
}

/// raw_syscalls:sys_exit(regs, ret): the id is not an argument here, so the tgid lookup
/// comes first (an exit design keys its parked arguments by thread anyway).
#[raw_tracepoint]
pub fn floor_raw_exit_filtered(_ctx: RawTracePointContext) -> i32 {
    i32::from(watched())
}

#[btf_tracepoint(function = "sys_enter")]
pub fn floor_btf_enter(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn floor_btf_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// Lets every packet through (0 would drop it).
#[cgroup_skb]
pub fn floor_cgroup_skb(_ctx: SkBuffContext) -> i32 {
    1
}

#[classifier]
pub fn floor_tc(_ctx: TcContext) -> i32 {
    TC_ACT_OK as i32
}

// The OpenSSL probes, empty, under the names of the tracer's own (probes/tls.rs), so
// that `tracer floor openssl-probes` attaches them exactly as `tracer run` attaches
// those: same functions, same files, one process each. What is left is the cost of the
// breakpoints and return probes themselves.
#[uprobe]
pub fn ssl_read_enter(_ctx: ProbeContext) -> u32 {
    0
}

#[uprobe]
pub fn ssl_write_enter(_ctx: ProbeContext) -> u32 {
    0
}

#[uprobe]
pub fn ssl_set_fd(_ctx: ProbeContext) -> u32 {
    0
}

#[uretprobe]
pub fn ssl_ret(_ctx: RetProbeContext) -> u32 {
    0
}

#[uretprobe]
pub fn ssl_ret_ex(_ctx: RetProbeContext) -> u32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects programs that could reach this; it is never executed.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
