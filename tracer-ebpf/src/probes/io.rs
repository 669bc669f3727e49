//! sys_enter/sys_exit of the read and write families.
//!
//! Enter: a tgid lookup rejects unwatched processes; for watched ones the descriptor is
//! classified and the arguments parked in INFLIGHT. Exit: the bytes the syscall really
//! transferred (its return value) are copied out, so partial writes are exact.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use tracer_common::{Direction, Loss, Syscall};

use crate::{
    conn::watched_conn,
    emit,
    maps::{
        CONN_SEEN, CONN_TLS, INFLIGHT, Inflight, SSL_CALLS, THREAD_TLS_READ, WATCHED_TGIDS,
        count_loss,
    },
};

/// Offsets in syscall tracepoint records: 8 bytes of common fields, the syscall number
/// padded to 8, then one 8-byte slot per argument; sys_exit records hold `ret` at 16.
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const RET: usize = 16;

#[inline(always)]
fn enter(ctx: &TracePointContext, syscall: Syscall) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: lookup only. This is the check every syscall on the host pays.
    if unsafe { WATCHED_TGIDS.get(&tgid) }.is_none() {
        return 0;
    }
    // SAFETY: offsets inside the syscall tracepoint record.
    let args = unsafe {
        (
            ctx.read_at::<u64>(ARG0),
            ctx.read_at::<u64>(ARG1),
            ctx.read_at::<u64>(ARG2),
        )
    };
    let (Ok(fd), Ok(buf), Ok(third)) = args else {
        count_loss(Loss::ContextRead);
        return 0;
    };
    let fd = fd as i32;
    let Some(conn) = watched_conn(tgid, pid_tgid as u32, fd) else {
        return 0;
    };
    let tls = conn.flags & CONN_TLS != 0;
    // Connections known to be plain HTTP skip the OpenSSL bookkeeping; TLS ones and
    // those not looked at yet (a pre-existing TLS connection's first syscall) need it.
    if tls || conn.flags & CONN_SEEN == 0 {
        // A syscall inside an OpenSSL read or write names the socket of that SSL object.
        if let Some(call) = SSL_CALLS.get_ptr_mut(&pid_tgid) {
            // SAFETY: entry pointer from a successful lookup.
            unsafe { (*call).fd = fd };
        } else if tls && syscall.direction() == Direction::Ingress {
            let _ = THREAD_TLS_READ.insert(&pid_tgid, &fd, 0);
        }
    }
    // Ciphertext is never copied: the SSL probes report the plaintext.
    if tls {
        return 0;
    }
    let inflight = Inflight {
        conn_id: conn.conn_id,
        buf,
        iovcnt: third,
        fd,
        syscall: syscall as u8,
        _pad: [0; 3],
    };
    if INFLIGHT.insert(&pid_tgid, &inflight, 0).is_err() {
        count_loss(Loss::InflightFull);
    }
    0
}

#[inline(always)]
fn exit(ctx: &TracePointContext, syscall: Syscall) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(inflight) = unsafe { INFLIGHT.get(&pid_tgid) }.copied() else {
        return 0;
    };
    let _ = INFLIGHT.remove(&pid_tgid);
    if inflight.syscall != syscall as u8 {
        return 0;
    }
    // SAFETY: offset inside the syscall tracepoint record.
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(RET) }) else {
        count_loss(Loss::ContextRead);
        return 0;
    };
    if ret > 0 {
        emit::data(pid_tgid, &inflight, ret as u64);
    }
    0
}

macro_rules! syscall_pair {
    ($enter:ident, $exit:ident, $syscall:expr) => {
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            enter(&ctx, $syscall)
        }

        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            exit(&ctx, $syscall)
        }
    };
}

macro_rules! programs {
    ($(($variant:ident, $name:ident, $enter:ident, $exit:ident)),*) => {
        $(syscall_pair!($enter, $exit, Syscall::$variant);)*
    };
}

tracer_common::io_syscalls!(programs);
