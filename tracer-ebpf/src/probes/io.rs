//! The read and write families, each call seen once: as it returns.
//!
//! One raw tracepoint, `raw_syscalls:sys_exit`, runs for every syscall of the host; its
//! first action tests the caller's bit in the `WATCHED_TGIDS` bitmap. For watched
//! processes the syscall's number is read back from the registers it saved on entry,
//! and a captured syscall jumps (tail call) to its own program, which reads the
//! arguments the same way: per transfer, one hook instead of two perf-event
//! tracepoints, and no per-thread map insert and delete to carry the arguments from
//! entry to exit. One program per syscall keeps each simple enough for the verifier.
//! The return value says what was really transferred, so partial reads and writes are
//! exact.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tracer_common::{Direction, Loss, Syscall};

use crate::{
    body,
    conn::{Watched, watched_conn},
    emit::{self, Transfer},
    maps::{
        CAPTURE_PROGRAMS, CONN_SEEN, CONN_TLS, HEAD_SCAN_PROGRAMS, SSL_CALLS, THREAD_TLS_READ,
        count_loss, offset, watched,
    },
    sock::{syscall_arg4, syscall_args, syscall_nr},
};

/// `recv(2)`'s flag for reading without consuming.
const MSG_PEEK: u64 = 2;
/// `recv(2)`'s flag that, on a TCP socket, consumes bytes without copying them into the
/// buffer, which keeps whatever it held before.
const MSG_TRUNC: u64 = 0x20;
/// `recvmsg(2)`'s flag for reading the socket's error queue, not its stream.
const MSG_ERRQUEUE: u64 = 0x2000;

/// `raw_syscalls:sys_exit(struct pt_regs *regs, long ret)`: the dispatcher.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // The check every syscall on the host pays.
    if !watched(tgid) {
        return 0;
    }
    // A call that moved nothing (EAGAIN after the last request, an error) has nothing
    // to capture. A connection whose calls all fail is never announced, and never
    // needs to be.
    let ret: i64 = ctx.arg(1);
    if ret <= 0 {
        return 0;
    }
    let Some(index) = captured(syscall_nr()) else {
        return 0;
    };
    // SAFETY: CAPTURE_PROGRAMS holds raw tracepoint programs for this same context.
    unsafe { CAPTURE_PROGRAMS.tail_call(&ctx, index) };
    // Only reached when the jump failed.
    count_loss(Loss::Dispatch);
    0
}

/// The index in `Syscall::CAPTURED` (its `Syscall` value) of syscall `nr`.
#[inline(always)]
fn captured(nr: u64) -> Option<u32> {
    let numbers = offset!(syscall_nr);
    for (i, &number) in numbers.iter().enumerate() {
        if u64::from(number) == nr {
            return Some(i as u32);
        }
    }
    None
}

/// A captured syscall of a watched process returned.
#[inline(always)]
fn returned(ctx: &RawTracePointContext, syscall: Syscall) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let ret: i64 = ctx.arg(1);
    if ret <= 0 {
        return;
    }
    let len = ret as u64;
    let Some([fd, buf, third]) = syscall_args() else {
        return;
    };
    // Folded away in every other syscall's program.
    if syscall == Syscall::SpliceRead {
        spliced(ctx, pid_tgid, fd as i32, third as i32, len);
        return;
    }
    // A peek leaves the bytes to be read again: seen twice, they would make another
    // request of the same bytes (nginx peeks one byte of every connection to its TLS
    // ports, and a plain request sent there became `GGET`). A read of the error queue
    // takes nothing from the stream: with SO_TIMESTAMPING it returns the server's own
    // sent packets, headers and payload, which would reach the parser as a request.
    let flags = match syscall {
        Syscall::Recvfrom | Syscall::Recvmmsg => syscall_arg4(),
        Syscall::Recvmsg => third,
        _ => 0,
    };
    if flags & (MSG_PEEK | MSG_ERRQUEUE) != 0 {
        return;
    }
    // recvmmsg and sendmmsg return how many messages they filled or sent, each with its
    // length beside its header.
    let (len, first) = match syscall {
        Syscall::Recvmmsg | Syscall::Sendmmsg => messages(buf, len),
        _ => (len, u64::MAX),
    };
    if len == 0 {
        return;
    }
    // Bytes a server discarded are counted, never read from a buffer that does not hold
    // them: parsed, its stale contents could become a request.
    let buf = if flags & MSG_TRUNC == 0 { buf } else { 0 };
    let fd = fd as i32;
    let moved = match syscall.direction() {
        Direction::Ingress => [len, 0],
        Direction::Egress => [0, len],
    };
    let Some(conn) = watched_conn(tgid, pid_tgid as u32, fd, moved) else {
        return;
    };
    let transfer = Transfer {
        conn_id: conn.conn_id,
        buf,
        iovcnt: third,
        first,
        fd,
        syscall: syscall as u8,
    };
    transferred(ctx, pid_tgid, conn, transfer, len);
}

/// `struct mmsghdr`: a `struct user_msghdr` (56 bytes on x86_64 and arm64), then the
/// bytes that message moved (u32), padded to 64.
const MMSGHDR_SIZE: u64 = 64;
const MMSGHDR_LEN: u64 = 56;
/// The kernel's cap on the messages of one call (`UIO_MAXIOV`): no call moves more, so
/// every byte of one is counted.
const MAX_MESSAGES: u64 = 1024;

/// The bytes the `count` messages of a recvmmsg or sendmmsg at `msgvec` moved, and the
/// first message's, when there was more than one (`u64::MAX` otherwise: the call is a
/// recvmsg or sendmsg of its first header). A length that cannot be read (a program
/// that unmapped its vector while the call returned: the kernel had just written it
/// there) counts as 0 and as a `read_user_failed` loss, so the loss line reports what the
/// record may lack.
#[inline(always)]
fn messages(msgvec: u64, count: u64) -> (u64, u64) {
    let mut total = 0;
    let mut first = u64::MAX;
    for i in 0..MAX_MESSAGES {
        if i >= count {
            break;
        }
        // SAFETY: user pointer read with the faulting-safe helper.
        let moved: u32 =
            unsafe { bpf_probe_read_user((msgvec + i * MMSGHDR_SIZE + MMSGHDR_LEN) as *const u32) }
                .unwrap_or_else(|_| {
                    count_loss(Loss::ReadUser);
                    0
                });
        if i == 0 && count > 1 {
            first = u64::from(moved);
        }
        total += u64::from(moved);
    }
    (total, first)
}

/// `splice(fd_in, off_in, fd_out, ...)` returned: one end is a pipe, so at most one is a
/// connection, and which one its number does not say. A proxy splices bodies from one
/// socket into a pipe and from the pipe into the other socket; the bytes never pass
/// through its memory, so they are counted (a buffer of 0), never copied, and user
/// space's parser takes them as body bytes or, inside a head, as a counted desync.
#[inline(always)]
fn spliced(ctx: &RawTracePointContext, pid_tgid: u64, fd_in: i32, fd_out: i32, len: u64) {
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    let (syscall, fd, conn) = if let Some(conn) = watched_conn(tgid, tid, fd_in, [len, 0]) {
        (Syscall::SpliceRead, fd_in, conn)
    } else if let Some(conn) = watched_conn(tgid, tid, fd_out, [0, len]) {
        (Syscall::SpliceWrite, fd_out, conn)
    } else {
        return;
    };
    let transfer = Transfer {
        conn_id: conn.conn_id,
        buf: 0,
        iovcnt: 0,
        first: u64::MAX,
        fd,
        syscall: syscall as u8,
    };
    transferred(ctx, pid_tgid, conn, transfer, len);
}

/// `len` bytes moved on the watched connection `conn`: the OpenSSL bookkeeping, then the
/// data event (or the head scan it jumps to).
#[inline(always)]
fn transferred(
    ctx: &RawTracePointContext,
    pid_tgid: u64,
    conn: Watched,
    transfer: Transfer,
    len: u64,
) {
    let fd = transfer.fd;
    let direction =
        Syscall::from_u8(transfer.syscall).map_or(Direction::Egress, Syscall::direction);
    let tls = conn.flags & CONN_TLS != 0;
    // Connections known to be plain HTTP skip the OpenSSL bookkeeping; TLS ones and
    // those not looked at yet (a pre-existing TLS connection's first syscall) need it.
    // OpenSSL's return probe runs after this, so naming the socket now is in time.
    if tls || conn.flags & CONN_SEEN == 0 {
        // A syscall inside an OpenSSL read or write names the socket of that SSL object.
        let call = SSL_CALLS
            .get_ptr_mut(&pid_tgid)
            // SAFETY: entry pointer from a successful lookup.
            .filter(|&call| unsafe { (*call).active } != 0);
        if let Some(call) = call {
            // SAFETY: as above.
            unsafe {
                (*call).fd = fd;
                (*call).conn_id = conn.conn_id;
            }
        } else if tls && direction == Direction::Ingress {
            let _ = THREAD_TLS_READ.insert(&pid_tgid, &fd, 0);
        }
    }
    // Ciphertext is never copied: the SSL probes report the plaintext.
    if tls {
        return;
    }
    if emit::data(pid_tgid, &transfer, len, conn.entry, true) {
        // SAFETY: HEAD_SCAN_PROGRAMS holds raw tracepoint programs for this same context.
        unsafe { HEAD_SCAN_PROGRAMS.tail_call(ctx, direction as u32) };
        // Only reached when the jump failed: the transfer goes out as it was copied, and
        // its body is copied, as without a window.
        count_loss(Loss::Dispatch);
        match direction {
            Direction::Ingress => body::finish_parked::<true>(false),
            Direction::Egress => body::finish_parked::<false>(false),
        }
    }
}

/// The head scan of a read a capture program parked (`body::park`); loaded, never
/// attached: only reached by a tail call.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn scan_request_head(_ctx: RawTracePointContext) -> i32 {
    body::finish_parked::<true>(true);
    0
}

/// The head scan of a write a capture program parked; as `scan_request_head`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn scan_response_head(_ctx: RawTracePointContext) -> i32 {
    body::finish_parked::<false>(true);
    0
}

macro_rules! capture_programs {
    ($(($variant:ident, $program:ident)),*) => {
        $(
            #[raw_tracepoint(tracepoint = "sys_exit")]
            pub fn $program(ctx: RawTracePointContext) -> i32 {
                returned(&ctx, Syscall::$variant);
                0
            }
        )*
    };
}

tracer_common::captured_syscalls!(capture_programs);
