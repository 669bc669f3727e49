//! Walks task -> files -> fdtable -> file -> socket -> sock with offsets from the running
//! kernel's BTF (no CO-RE in Rust eBPF, so user space computes them and sets `OFFSETS`).
//!
//! What every captured syscall reads (the task, its descriptor table, the syscall's
//! saved registers) is reached through pointers whose type the verifier knows
//! (`bpf_get_current_task_btf`, `bpf_task_pt_regs`), so those fields are plain loads;
//! the rest (a descriptor's file, its socket) goes through `bpf_probe_read_kernel`,
//! a helper call per field.
use aya_ebpf::helpers::{
    bpf_probe_read_kernel,
    generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
};
use tracer_common::TS_COMPAT;

use crate::maps::{WATCHED_PORTS, offset};

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const SOCK_STREAM: u16 = 1;
const TCP_LISTEN: u8 = 10;

#[inline(always)]
fn read<T>(base: u64, offset: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel copes with any address; failures come back as Err.
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.ok()
}

/// A field at `offset` of a kernel object whose type the verifier knows: the current
/// task (`bpf_get_current_task_btf`) and the objects reached through its pointer
/// fields. A plain load, which the verifier checks against the kernel's BTF (the
/// offsets come from the frozen `.rodata`, so it knows them) and the JIT guards against
/// faults, where `bpf_probe_read_kernel` is a helper call per field.
#[inline(always)]
fn field<T: Copy>(base: *const u8, offset: u32) -> T {
    // SAFETY: `base` is a BTF-typed kernel pointer; the verifier rejects a load that is
    // not a field of its type, and a faulting load reads zero.
    unsafe { core::ptr::read(base.add(offset as usize).cast::<T>()) }
}

/// The `struct file *` behind `fd` in the current process.
#[inline(always)]
pub fn current_file(fd: i32) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    let task = current_task();
    let files: *const u8 = field(task, offset!(task_files));
    let fdt: *const u8 = field(files, offset!(files_fdt));
    // `unsigned int max_fds`, then `struct file **fd` 8 bytes on.
    let max_fds: u32 = field(fdt, offset!(fdt_max_fds));
    if fd as u32 >= max_fds {
        return None;
    }
    let fd_array: u64 = field(fdt, offset!(fdt_max_fds) + 8);
    let file: u64 = read(fd_array, fd as u32 * 8)?;
    (file != 0).then_some(file)
}

/// Endpoints of a TCP socket on a watched local port.
pub struct Endpoints {
    pub family: u16,
    pub local_port: u16,
    pub peer_port: u16,
    pub local_addr: [u8; 16],
    pub peer_addr: [u8; 16],
    /// The socket's inode number: several descriptors of one socket are one connection.
    pub socket: u64,
}

/// `Some` only for a connected (not listening) TCP socket whose local port is watched.
#[inline(always)]
pub fn watched_endpoints(file: u64) -> Option<Endpoints> {
    let sk = tcp_sock(file)?;
    let common = sk + offset!(sock_common) as u64;
    let local_port: u16 = read(common, offset!(sock_common_num))?;
    // SAFETY: lookup only; the value is not used.
    unsafe { WATCHED_PORTS.get(&local_port) }?;
    let state: u8 = read(common, offset!(sock_common_state))?;
    if state == TCP_LISTEN {
        return None;
    }
    let family: u16 = read(common, offset!(sock_common_family))?;
    let peer_port: u16 = u16::from_be(read(common, offset!(sock_common_dport))?);
    let mut local_addr = [0u8; 16];
    let mut peer_addr = [0u8; 16];
    if family == AF_INET {
        let l: [u8; 4] = read(common, offset!(sock_common_rcv_saddr))?;
        let p: [u8; 4] = read(common, offset!(sock_common_daddr))?;
        local_addr[..4].copy_from_slice(&l);
        peer_addr[..4].copy_from_slice(&p);
    } else {
        local_addr = read(common, offset!(sock_common_v6_rcv_saddr))?;
        peer_addr = read(common, offset!(sock_common_v6_daddr))?;
    }
    let inode: u64 = read(file, offset!(file_f_inode))?;
    let socket: u64 = read(inode, offset!(inode_i_ino))?;
    Some(Endpoints {
        family,
        local_port,
        peer_port,
        local_addr,
        peer_addr,
        socket,
    })
}

/// Whether the application already read or wrote payload on this TCP socket before the
/// call that just returned having moved `moved` (read, written) bytes: bytes received
/// minus those still queued unread, and bytes sent, less that call's own. A write's
/// bytes may still be queued (not yet counted as sent), so only sends beyond it count;
/// a server has read a request before it writes, which the received side shows.
/// Unreadable counts as moved, so that a doubtful connection is not classified by bytes
/// that may not be its first.
#[inline(always)]
pub fn payload_moved(file: u64, moved: [u64; 2]) -> bool {
    let Some(sk) = tcp_sock(file) else {
        return true;
    };
    let received: Option<u64> = read(sk, offset!(tcp_bytes_received));
    let rcv_nxt: Option<u32> = read(sk, offset!(tcp_rcv_nxt));
    let copied_seq: Option<u32> = read(sk, offset!(tcp_copied_seq));
    let sent: Option<u64> = read(sk, offset!(tcp_bytes_sent));
    match (received, rcv_nxt, copied_seq, sent) {
        (Some(received), Some(rcv_nxt), Some(copied_seq), Some(sent)) => {
            let unread = rcv_nxt.wrapping_sub(copied_seq) as u64;
            received.saturating_sub(unread).saturating_sub(moved[0]) > 0
                || sent.saturating_sub(moved[1]) > 0
        }
        _ => true,
    }
}

/// The current task, as a pointer whose type the verifier knows (see [`field`]).
#[inline(always)]
fn current_task() -> *const u8 {
    // SAFETY: the helper only returns the current task pointer.
    unsafe { bpf_get_current_task_btf() }
        .cast::<u8>()
        .cast_const()
}

/// The registers the returning syscall saved on entry: the `struct pt_regs` that
/// `raw_syscalls:sys_exit` passes, as a pointer whose type the verifier knows, so its
/// fields are plain loads (see [`field`]).
#[inline(always)]
fn current_regs() -> *const u8 {
    // SAFETY: both helpers only return pointers the verifier types.
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8 }
}

/// The number of the syscall that is returning.
#[inline(always)]
pub fn syscall_nr() -> u64 {
    field(current_regs(), offset!(regs_syscall_nr))
}

/// The first three arguments of the syscall that is returning; `None` for a 32-bit
/// (compat) syscall, whose number names another call.
#[inline(always)]
pub fn syscall_args() -> Option<[u64; 3]> {
    let thread_status = offset!(thread_status);
    if thread_status != u32::MAX {
        let task = current_task();
        let status: u32 = field(task, thread_status);
        if status & TS_COMPAT != 0 {
            return None;
        }
    }
    // The third argument's register first (x86_64: dx, si, di; user space checks it).
    let regs = current_regs();
    let at = offset!(regs_args);
    Some([field(regs, at + 16), field(regs, at + 8), field(regs, at)])
}

/// The fourth argument of the syscall that is returning (call `syscall_args` first: it
/// rules out 32-bit syscalls, whose arguments lie elsewhere).
#[inline(always)]
pub fn syscall_arg4() -> u64 {
    field(current_regs(), offset!(regs_arg4))
}

/// Local port of a listening TCP socket, for listen() discovery.
#[inline(always)]
pub fn tcp_local_port(file: u64) -> Option<u16> {
    let sk = tcp_sock(file)?;
    read(sk + offset!(sock_common) as u64, offset!(sock_common_num))
}

/// The `struct sock *` of an IPv4/IPv6 TCP stream socket file.
#[inline(always)]
fn tcp_sock(file: u64) -> Option<u64> {
    let inode: u64 = read(file, offset!(file_f_inode))?;
    let mode: u16 = read(inode, offset!(inode_i_mode))?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket: u64 = read(file, offset!(file_private_data))?;
    let sk: u64 = read(socket, offset!(socket_sk))?;
    if sk == 0 {
        return None;
    }
    let family: u16 = read(
        sk + offset!(sock_common) as u64,
        offset!(sock_common_family),
    )?;
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    let protocol: u16 = read(sk, offset!(sock_protocol))?;
    let sk_type: u16 = read(sk, offset!(sock_type))?;
    (protocol == IPPROTO_TCP && sk_type == SOCK_STREAM).then_some(sk)
}
