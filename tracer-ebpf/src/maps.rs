//! Every map shared between the programs and user space.
use crate::body::Parked;
use aya_ebpf::{
    Global,
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use core::intrinsics::{AtomicOrdering::Relaxed, atomic_and, atomic_or};
use tracer_common::{
    CAPTURED_SYSCALLS, DataEvent, KernelOffsets, LOSS_REASONS, Loss, MAX_CAPTURE, MAX_PORTS,
    PID_BITMAP_WORDS, head_scan::HeadScan, pid_bit,
};

/// Field offsets of the running kernel, from its BTF (see tracer/src/kernel/offsets.rs).
#[unsafe(no_mangle)]
pub static OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets {
    task_files: 0,
    files_fdt: 0,
    fdt_max_fds: 0,
    file_private_data: 0,
    file_f_inode: 0,
    inode_i_mode: 0,
    inode_i_ino: 0,
    socket_sk: 0,
    sock_common_family: 0,
    sock_common_state: 0,
    sock_common_num: 0,
    sock_common_dport: 0,
    sock_common_rcv_saddr: 0,
    sock_common_daddr: 0,
    sock_common_v6_rcv_saddr: 0,
    sock_common_v6_daddr: 0,
    sock_protocol: 0,
    sock_type: 0,
    sock_common: 0,
    tcp_bytes_received: 0,
    tcp_rcv_nxt: 0,
    tcp_copied_seq: 0,
    tcp_bytes_sent: 0,
    fork_child_pid: 0,
    regs_syscall_nr: 0,
    regs_args: 0,
    regs_arg4: 0,
    thread_status: u32::MAX,
    syscall_nr: [u32::MAX; CAPTURED_SYSCALLS],
});

/// One field of [`OFFSETS`]. `Global::load` reads the whole struct, volatile, so every
/// one of its 35 loads stayed in the program for each field a program used: 70 in the
/// dispatcher that runs for every syscall of a watched process.
macro_rules! offset {
    ($field:ident) => {
        // SAFETY: `Global<T>` is `repr(transparent)` over an always-initialised
        // `MaybeUninit<T>`. Volatile, as `Global::load` is, so that the compiler reads
        // what the loader wrote instead of folding the initial value.
        unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!(
                (*core::ptr::addr_of!($crate::maps::OFFSETS)
                    .cast::<tracer_common::KernelOffsets>())
                .$field
            ))
        }
    };
}
pub(crate) use offset;

/// Wake user space only once this much is waiting in EVENTS: waking it for every event
/// cost more than everything else the tracer does; user space drains smaller amounts on a
/// timer. Set by the loader from the ring size.
#[unsafe(no_mangle)]
pub static WAKEUP_BYTES: Global<u64> = Global::new(64 * 1024);

/// Local ports to trace (host byte order). Value unused.
#[map]
pub static WATCHED_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_PORTS, 0);

/// Processes that hold a socket on a watched port, one bit per pid: found by user space
/// at start (/proc scan), added here on listen() and inherited on fork. A bitmap, not a
/// hash map, because every syscall on the host looks its caller up here: an array
/// lookup is inlined by the verifier into a bounds check and a load, where a hash map's
/// hashes the key and walks a bucket. Mappable: user space sets the bits of the servers
/// it finds at start with atomic operations on the mapped words, as these programs do.
#[map]
pub static WATCHED_TGIDS: Array<u64> = Array::with_max_entries(PID_BITMAP_WORDS, BPF_F_MMAPABLE);

/// Whether `pid` (a process, or a thread that fork added) is watched.
#[inline(always)]
pub fn watched(pid: u32) -> bool {
    let (word, bit) = pid_bit(pid);
    WATCHED_TGIDS.get(word).is_some_and(|w| *w & bit != 0)
}

/// Watches `pid`. Atomic: forks and exits on other CPUs change bits of the same word.
#[inline(always)]
pub fn watch(pid: u32) {
    let (word, bit) = pid_bit(pid);
    if let Some(w) = WATCHED_TGIDS.get_ptr_mut(word) {
        // SAFETY: a live, aligned u64 of the map's value memory. The intrinsic, because
        // the BPF target declares no compare-and-swap, which hides `AtomicU64::fetch_or`;
        // the instruction (BPF_ATOMIC | BPF_OR) exists since Linux 5.12.
        unsafe { atomic_or::<u64, u64, { Relaxed }>(w, bit) };
    }
}

/// Stops watching `pid`.
#[inline(always)]
pub fn unwatch(pid: u32) {
    let (word, bit) = pid_bit(pid);
    if let Some(w) = WATCHED_TGIDS.get_ptr_mut(word) {
        // SAFETY: as in `watch`.
        unsafe { atomic_and::<u64, u64, { Relaxed }>(w, !bit) };
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ConnKey {
    pub tgid: u32,
    pub fd: i32,
}

/// What a descriptor of a watched process is. Negative entries (pipes, files, sockets on
/// other ports) are cached too, so each descriptor is classified once.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ConnValue {
    /// The `struct file *` the entry was made for: a different file behind the same fd
    /// number means the descriptor was reused and the entry is stale.
    pub file: u64,
    /// 0 for descriptors that are not watched connections.
    pub conn_id: u64,
    /// Bytes whose events were lost, per direction, reported with the next event.
    pub lost: [u32; 2],
    /// `CONN_SEEN` | `CONN_TLS` | `CONN_MIDSTREAM`.
    pub flags: u32,
    pub _pad: u32,
    /// Bytes the server wrote so far (data events, delivered or lost): where its next
    /// write starts. Plaintext only: a TLS connection's ciphertext is not counted.
    pub written: u64,
    /// `written` at which the response body the last announcing head declared ends
    /// (see `body`); writes wholly before it are not copied.
    pub body_end: u64,
    /// Bytes the server read so far (data events, delivered or lost): where its next
    /// read starts. Plaintext only, as `written`.
    pub read: u64,
    /// `read` at which the client's next request starts, `head_scan::UNKNOWN` once the
    /// kernel lost track (see `head_scan::request_read`); reads wholly before it lie in a
    /// request body whose length the kernel read, and are not copied.
    pub next_request: u64,
}

/// The connection's first bytes were looked at (for a TLS record header).
pub const CONN_SEEN: u32 = 1;
/// The connection carries TLS: the syscall path skips it, the SSL probes report it.
pub const CONN_TLS: u32 = 2;
/// Payload had moved before the tracer first saw the connection: its next bytes are not
/// its first, so they say nothing about TLS (a request body may start `\x16\x03`).
pub const CONN_MIDSTREAM: u32 = 4;

/// LRU so that descriptors of exited processes age out without user-space sweeping.
#[map]
pub static CONNS: LruHashMap<ConnKey, ConnValue> = LruHashMap::with_max_entries(65536, 0);

/// The program of each captured syscall, by position in `Syscall::CAPTURED`: the
/// `sys_exit` dispatcher jumps there. Filled by the loader.
#[map]
pub static CAPTURE_PROGRAMS: ProgramArray =
    ProgramArray::with_max_entries(CAPTURED_SYSCALLS as u32, 0);

/// The head scans a capture program jumps to after a transfer that may start a head
/// announcing a long body (see `body`), by `Direction`: `scan_request_head` for reads,
/// `scan_response_head` for writes. Filled by the loader.
#[map]
pub static HEAD_SCAN_PROGRAMS: ProgramArray = ProgramArray::with_max_entries(2, 0);

/// An OpenSSL read or write between its uprobe and uretprobe.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslCall {
    /// The `SSL *`.
    pub ssl: u64,
    /// Plaintext buffer.
    pub buf: u64,
    /// `size_t *readbytes` / `*written` of the `_ex` forms.
    pub out_len: u64,
    /// The watched connection a syscall inside this call used, 0 until one does.
    pub conn_id: u64,
    /// The socket a syscall inside this call used, -1 until one does.
    pub fd: i32,
    /// `Syscall::SslRead` or `Syscall::SslWrite`.
    pub syscall: u8,
    /// 1 from the call's entry until its return: the slot is the thread's, kept
    /// between calls.
    pub active: u8,
    pub _pad: [u8; 2],
}

/// Keyed by pid_tgid: OpenSSL calls do not nest within a thread. A thread's slot is
/// written in place at each call and kept until the thread exits (`sched_process_exit`):
/// an insert and a delete per call (the bucket lock and the free list, each time) cost
/// more than the rest of the entry and return probes' work.
#[map]
pub static SSL_CALLS: HashMap<u64, SslCall> = HashMap::with_max_entries(16384, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslKey {
    pub tgid: u32,
    pub _pad: u32,
    pub ssl: u64,
}

/// The socket of each `SSL *` (from SSL_set_fd or from the syscall inside an earlier
/// call), for calls served from OpenSSL's buffer without a syscall. LRU: SSL objects are
/// freed without a probe telling us.
#[map]
pub static SSL_FDS: LruHashMap<SslKey, i32> = LruHashMap::with_max_entries(65536, 0);

/// The TLS socket each thread last read from outside an OpenSSL call. Servers that feed
/// OpenSSL through memory BIOs (Node.js) read the socket, then call SSL_read with no
/// syscall inside and no SSL_set_fd: this names the socket such a call decrypts.
#[map]
pub static THREAD_TLS_READ: LruHashMap<u64, i32> = LruHashMap::with_max_entries(16384, 0);

/// A data event and room for its payload. Twice MAX_CAPTURE so the verifier can prove that
/// copying up to MAX_CAPTURE bytes at any offset below MAX_CAPTURE stays in bounds.
#[repr(C)]
pub struct Scratch {
    pub event: DataEvent,
    pub data: [u8; 2 * MAX_CAPTURE],
    /// Bytes copied so far by the iovec loop (see `emit::copy_iov`).
    pub copied: u64,
    /// A server's write waiting for the head scan (`body`).
    pub scan: HeadScan,
    pub parked: Parked,
}

/// One slot per CPU (max_entries set by the loader); too big for a per-CPU map value.
#[map]
pub static SCRATCH: Array<Scratch> = Array::with_max_entries(1, 0);

/// Events to user space; size set by the loader.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 24, 0);

/// Per-CPU counters, indexed by `Loss`.
#[map]
pub static LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOSS_REASONS, 0);

/// Per-CPU sequence for connection ids.
#[map]
pub static CONN_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn count_loss(reason: Loss) {
    if let Some(counter) = LOSSES.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, this program cannot be re-entered on this CPU.
        unsafe { *counter += 1 };
    }
}
