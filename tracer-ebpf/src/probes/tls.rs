//! uprobes on OpenSSL: plaintext of TLS connections on watched ports.
//!
//! Entry probes park the call's arguments per thread; the syscall that OpenSSL makes
//! inside the call (io.rs) records which socket it used; the return probes copy the
//! plaintext the call really transferred and report it on that socket's connection, as
//! if a plain read or write had carried it. Calls served from OpenSSL's own buffer make
//! no syscall: their socket comes from SSL_FDS (SSL_set_fd, or an earlier call), and
//! for servers that use memory BIOs (Node.js) from the TLS socket the thread last read.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{Loss, Syscall};

use crate::{
    conn::{known_conn, mark_tls, watched_conn},
    emit::{self, Transfer},
    maps::{CONN_TLS, SSL_CALLS, SSL_FDS, SslCall, SslKey, THREAD_TLS_READ, count_loss},
};

#[inline(always)]
fn watched(pid_tgid: u64) -> bool {
    let tgid = (pid_tgid >> 32) as u32;
    // Every process on the host using this libssl pays this check.
    crate::maps::watched(tgid)
}

#[inline(always)]
fn enter(ctx: &ProbeContext, syscall: Syscall) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // A thread with a slot belongs to a watched process (slots are only made below),
    // so one lookup serves both.
    let slot = SSL_CALLS.get_ptr_mut(&pid_tgid);
    if slot.is_none() && !watched(pid_tgid) {
        return 0;
    }
    let call = SslCall {
        ssl: ctx.arg::<u64>(0).unwrap_or(0),
        buf: ctx.arg::<u64>(1).unwrap_or(0),
        out_len: ctx.arg::<u64>(3).unwrap_or(0),
        conn_id: 0,
        fd: -1,
        syscall: syscall as u8,
        active: 1,
        _pad: [0; 2],
    };
    if let Some(slot) = slot {
        // SAFETY: entry pointer from a successful lookup; only this thread uses its slot.
        unsafe { *slot = call };
    } else if SSL_CALLS.insert(&pid_tgid, &call, 0).is_err() {
        count_loss(Loss::SslInflightFull);
    }
    0
}

/// The call returned and transferred `len` plaintext bytes (0: nothing to report).
#[inline(always)]
fn exit(pid_tgid: u64, call: &SslCall, len: u64) {
    if len == 0 {
        return;
    }
    let tgid = (pid_tgid >> 32) as u32;
    let key = SslKey {
        tgid,
        _pad: 0,
        ssl: call.ssl,
    };
    let fd = if call.fd >= 0 {
        // SAFETY: lookup only; the value is copied.
        if unsafe { SSL_FDS.get(&key) }.copied() != Some(call.fd) {
            let _ = SSL_FDS.insert(&key, &call.fd, 0);
        }
        call.fd
    } else {
        // SAFETY: lookups only; the values are copied.
        match unsafe { SSL_FDS.get(&key) }.copied() {
            Some(fd) => fd,
            None => match unsafe { THREAD_TLS_READ.get(&pid_tgid) }.copied() {
                Some(fd) => {
                    let _ = SSL_FDS.insert(&key, &fd, 0);
                    fd
                }
                None => {
                    count_loss(Loss::SslNoSocket);
                    return;
                }
            },
        }
    };
    let tid = pid_tgid as u32;
    // The syscall inside the call found the connection already. Without one (or if its
    // entry is gone: a full map, a descriptor closed meanwhile) the descriptor table
    // says what `fd` is. Not a socket on a watched port: an outgoing TLS connection of
    // the server, say.
    let known = if call.conn_id != 0 {
        known_conn(tgid, fd, call.conn_id)
    } else {
        None
    };
    let Some(conn) = known.or_else(|| watched_conn(tgid, tid, fd, [0; 2])) else {
        return;
    };
    if conn.flags & CONN_TLS == 0 {
        mark_tls(tgid, tid, fd, conn.conn_id);
    }
    let transfer = Transfer {
        conn_id: conn.conn_id,
        buf: call.buf,
        iovcnt: 0,
        first: u64::MAX,
        fd,
        syscall: call.syscall,
    };
    // Decrypted responses are copied whole (see `emit::data`).
    emit::data(pid_tgid, &transfer, len, conn.entry, false);
}

/// Takes this thread's parked call, leaving its slot inactive.
#[inline(always)]
fn take_call(pid_tgid: u64) -> Option<SslCall> {
    let slot = SSL_CALLS.get_ptr_mut(&pid_tgid)?;
    // SAFETY: entry pointer from a successful lookup; only this thread uses its slot.
    let call = unsafe { *slot };
    if call.active == 0 {
        return None;
    }
    // SAFETY: as above.
    unsafe { (*slot).active = 0 };
    Some(call)
}

/// `int SSL_read(SSL *ssl, void *buf, int num)`, and `SSL_read_ex(ssl, buf, num, size_t *readbytes)`.
#[uprobe]
pub fn ssl_read_enter(ctx: ProbeContext) -> u32 {
    enter(&ctx, Syscall::SslRead)
}

/// `int SSL_write(SSL *ssl, const void *buf, int num)`, and `SSL_write_ex(..., size_t *written)`.
#[uprobe]
pub fn ssl_write_enter(ctx: ProbeContext) -> u32 {
    enter(&ctx, Syscall::SslWrite)
}

/// SSL_read / SSL_write return the byte count, or <= 0 on error or "retry".
#[uretprobe]
pub fn ssl_ret(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(call) = take_call(pid_tgid) else {
        return 0;
    };
    let ret: i32 = ctx.ret();
    if ret > 0 {
        exit(pid_tgid, &call, ret as u64);
    }
    0
}

/// SSL_read_ex / SSL_write_ex return 1 on success and store the byte count; the
/// internal functions behind them (kernel/ssl_entry.rs) return a positive value on
/// success and <= 0 otherwise.
#[uretprobe]
pub fn ssl_ret_ex(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(call) = take_call(pid_tgid) else {
        return 0;
    };
    let ret: i32 = ctx.ret();
    if ret > 0 {
        // SAFETY: user pointer read with the faulting-safe helper.
        let len = unsafe { bpf_probe_read_user(call.out_len as *const u64) }.unwrap_or(0);
        exit(pid_tgid, &call, len);
    }
    0
}

/// `int SSL_set_fd(SSL *ssl, int fd)`: the socket of an SSL object, before any I/O.
#[uprobe]
pub fn ssl_set_fd(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !watched(pid_tgid) {
        return 0;
    }
    let key = SslKey {
        tgid: (pid_tgid >> 32) as u32,
        _pad: 0,
        ssl: ctx.arg::<u64>(0).unwrap_or(0),
    };
    let fd = ctx.arg::<u64>(1).unwrap_or(u64::MAX) as i32;
    if fd >= 0 {
        let _ = SSL_FDS.insert(&key, &fd, 0);
    }
    0
}
