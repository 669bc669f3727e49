//! Watched processes that set up an io_uring. Socket I/O submitted through a ring never
//! passes the read and write syscalls the capture hooks, so user space must say that
//! such a process's traffic may be missing from the trail rather than stay silent.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use tracer_common::{EventKind, Loss};

use crate::{
    emit,
    maps::{count_loss, watched},
};

/// `syscalls:sys_exit_io_uring_setup`: hit only by that rare call, so no other syscall
/// pays for it.
#[tracepoint]
pub fn exit_io_uring_setup(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !watched(tgid) {
        return 0;
    }
    // SAFETY: `long ret` follows the common fields and the syscall number in every
    // `sys_exit_*` record.
    let Ok(ring) = (unsafe { ctx.read_at::<i64>(16) }) else {
        count_loss(Loss::ContextRead);
        return 0;
    };
    // A refused setup (io_uring disabled, a bad argument) made no ring.
    if ring >= 0 {
        emit::conn(
            EventKind::IoUring,
            tgid,
            pid_tgid as u32,
            ring as i32,
            0,
            None,
        );
    }
    0
}
