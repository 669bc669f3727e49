//! Keeps WATCHED_TGIDS and CONNS current: close(), listen(), accept(), connections
//! received over unix sockets, fork and exit.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};

use tracer_common::{EventKind, Loss};

use crate::{
    conn, emit,
    maps::{SSL_CALLS, WATCHED_PORTS, count_loss, offset, unwatch, watch, watched},
    sock::{current_file, syscall_args, tcp_local_port, watched_endpoints},
};

/// `SOL_SOCKET` and `SCM_RIGHTS`: a control message that carries descriptors.
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
/// Descriptors of one `SCM_RIGHTS` message looked at. Node's cluster module and the
/// servers that hand connections to workers pass one per message.
const PASSED_FDS: usize = 4;
/// Control messages looked at, while they are `SOL_SOCKET` ones: a receiver with
/// `SO_PASSCRED` (or `SO_PASSPIDFD`, `SO_PASSSEC`) gets its sender's credentials, pidfd
/// and security label before the descriptors. A message from an IP socket carries other
/// levels after its timestamps, so a UDP server's reads stop there.
const CONTROL_MESSAGES: usize = 4;

#[tracepoint]
pub fn enter_close(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !watched(tgid) {
        return 0;
    }
    // SAFETY: fd is the first argument of the syscall record.
    let Ok(fd) = (unsafe { ctx.read_at::<u64>(16) }) else {
        count_loss(Loss::ContextRead);
        return 0;
    };
    conn::closed(tgid, pid_tgid as u32, fd as i32);
    0
}

/// A process that starts listening on a watched port after the tracer started.
#[tracepoint]
pub fn enter_listen(ctx: TracePointContext) -> u32 {
    // SAFETY: fd is the first argument of the syscall record.
    let Ok(fd) = (unsafe { ctx.read_at::<u64>(16) }) else {
        count_loss(Loss::ContextRead);
        return 0;
    };
    let fd = fd as i32;
    let Some(port) = current_file(fd).and_then(tcp_local_port) else {
        return 0;
    };
    // SAFETY: lookup only.
    if unsafe { WATCHED_PORTS.get(&port) }.is_some() {
        let pid_tgid = bpf_get_current_pid_tgid();
        let tgid = (pid_tgid >> 32) as u32;
        watch(tgid);
        // User space attaches the TLS probes to the libraries this process maps.
        emit::conn(EventKind::Listen, tgid, pid_tgid as u32, fd, 0, None);
    }
    0
}

/// A process that accepts a connection on a watched port without being watched: it
/// holds a listener it neither made nor inherited from a watched process, such as one
/// passed over a unix socket (a proxy's seamless reload hands its listeners to the new
/// process) or inherited from an unwatched parent. It is watched from this connection
/// on. Attached to `sys_exit_accept4` and `sys_exit_accept`, which only accepts hit.
#[tracepoint]
pub fn exit_accept(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if watched(tgid) {
        return 0;
    }
    // SAFETY: `long ret` follows the common fields and the syscall number in every
    // `sys_exit_*` record.
    let Ok(fd) = (unsafe { ctx.read_at::<i64>(16) }) else {
        count_loss(Loss::ContextRead);
        return 0;
    };
    let Some(port) = current_file(fd as i32).and_then(tcp_local_port) else {
        return 0;
    };
    // SAFETY: lookup only.
    if unsafe { WATCHED_PORTS.get(&port) }.is_some() {
        watch(tgid);
        // User space attaches the TLS probes, as for a listen().
        emit::conn(EventKind::Listen, tgid, pid_tgid as u32, fd as i32, 0, None);
    }
    0
}

/// A process that receives a connection on a watched port over a unix socket without
/// being watched: a primary that accepts and hands each connection to a worker forked
/// before it listened (Node's cluster module, its default on Linux). It is watched from
/// this message on, before it reads the connection's first byte. Attached to
/// `sys_exit_recvmsg`, which only recvmsg hits; looks at the first `SCM_RIGHTS` control
/// message among the first `CONTROL_MESSAGES`.
#[tracepoint]
pub fn exit_recvmsg(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if watched(tgid) {
        return 0;
    }
    // SAFETY: `long ret` follows the common fields and the syscall number in every
    // `sys_exit_*` record. Descriptors travel with at least one byte of data.
    match unsafe { ctx.read_at::<i64>(16) } {
        Ok(ret) if ret > 0 => {}
        Ok(_) => return 0,
        Err(_) => {
            count_loss(Loss::ContextRead);
            return 0;
        }
    }
    let Some([_, msg, _]) = syscall_args() else {
        return 0;
    };
    // struct user_msghdr: msg_control at 32, msg_controllen (what the kernel filled
    // in) at 40; struct cmsghdr: len (u64), level and type (i32), then the data, the
    // next header 8-aligned after it.
    // SAFETY (all reads): user pointers, read with the faulting-safe helper.
    let Ok([control, length]) = (unsafe { bpf_probe_read_user((msg + 32) as *const [u64; 2]) })
    else {
        return 0;
    };
    if control == 0 {
        return 0;
    }
    let mut at = 0;
    for _ in 0..CONTROL_MESSAGES {
        if at + 20 > length {
            return 0;
        }
        let Ok(header) = (unsafe { bpf_probe_read_user((control + at) as *const [u64; 2]) }) else {
            return 0;
        };
        let (len, level, kind) = (header[0], header[1] as i32, (header[1] >> 32) as i32);
        if level != SOL_SOCKET || len < 16 || len > length - at {
            return 0;
        }
        if kind == SCM_RIGHTS {
            passed(pid_tgid, control + at + 16, (len - 16) / 4);
            return 0;
        }
        at += (len + 7) & !7;
    }
    0
}

/// A process received `count` descriptors at `fds`: if one is a connection on a watched
/// port, it is watched from now on.
#[inline(always)]
fn passed(pid_tgid: u64, fds: u64, count: u64) {
    let tgid = (pid_tgid >> 32) as u32;
    for i in 0..PASSED_FDS as u64 {
        if i >= count {
            break;
        }
        // One at a time: the message may end at the end of a page.
        // SAFETY: user pointer, read with the faulting-safe helper.
        let Ok(fd) = (unsafe { bpf_probe_read_user((fds + 4 * i) as *const i32) }) else {
            break;
        };
        if current_file(fd).and_then(watched_endpoints).is_some() {
            watch(tgid);
            // User space attaches the TLS probes, as for a listen().
            emit::conn(EventKind::Listen, tgid, pid_tgid as u32, fd, 0, None);
            break;
        }
    }
}

/// Children of a watched process inherit its sockets (pre-forking servers such as nginx).
/// The child may be a thread; its entry is dropped again when it exits. User space is
/// told, because the OpenSSL probes are attached per process and a forked worker is a
/// new process to attach them to.
#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !watched(parent) {
        return 0;
    }
    let offset = offset!(fork_child_pid) as usize;
    // SAFETY: offset read from this tracepoint's format file by the loader.
    let Ok(child) = (unsafe { ctx.read_at::<u32>(offset) }) else {
        count_loss(Loss::ContextRead);
        return 0;
    };
    watch(child);
    emit::conn(EventKind::Listen, child, child, -1, 0, None);
    0
}

#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if tid == tgid && watched(tgid) {
        emit::conn(EventKind::Exit, tgid, tid, -1, 0, None);
    }
    // The thread's OpenSSL call slot (tls.rs), if it made any call. Whatever the
    // process: its leader may have exited, and left WATCHED_TGIDS, first.
    let _ = SSL_CALLS.remove(&pid_tgid);
    // The exiting task is current; removing its thread id drops both a process's entry
    // (when its leader exits) and entries that fork added for threads.
    unwatch(tid);
    0
}
