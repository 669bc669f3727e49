//! The contract between the kernel programs (`tracer-ebpf`) and user space (`tracer`).
//!
//! Every type here is `#[repr(C)]` and plain data: the kernel writes it into a ring
//! buffer or a map and user space reads the same bytes back.
#![no_std]

pub mod head_scan;

/// Most request or response bytes copied out of one syscall. Bytes beyond this are
/// counted (`DataEvent::len`) but not copied; the user-space parser treats them as a gap.
pub const MAX_CAPTURE: usize = 32 * 1024;

/// Upper bound on watched ports (a hash map in the kernel).
pub const MAX_PORTS: u32 = 64;

/// Words of the watched-process bitmap (`WATCHED_TGIDS`): one bit for every pid up to
/// `PID_MAX_LIMIT`, the largest `kernel.pid_max` a 64-bit kernel accepts (4,194,304),
/// so the bitmap is 512 KiB whatever the host's setting.
pub const PID_BITMAP_WORDS: u32 = 4_194_304 / 64;

/// The bitmap word and bit of `pid`.
#[inline(always)]
pub const fn pid_bit(pid: u32) -> (u32, u64) {
    (pid / 64, 1 << (pid % 64))
}

/// Upper bound on iovec entries walked for readv/writev/recvmsg/sendmsg. gRPC (grpcio)
/// writes a unary response as one sendmsg of ~14 small iovecs (frame headers, HPACK
/// blocks, message, trailers); 8 cut off its trailers. Bytes past the last iovec walked
/// reach user space as missing bytes, a counted gap. The walk stops at `iovcnt`, so the
/// bound costs verification, not run time.
pub const MAX_IOV: usize = 64;

/// What a kernel event reports; the first byte of every event.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A socket on a watched port was seen for the first time (accepted before or after
    /// the tracer started): `ConnEvent`.
    Open = 1,
    /// Bytes read from or written to a tracked connection: `DataEvent` + payload.
    Data = 2,
    /// The process closed its descriptor of a tracked connection: `ConnEvent`.
    Close = 3,
    /// A watched process's leader thread exited; the kernel closed its descriptors without
    /// close() calls: `ConnEvent` with `conn_id` 0.
    Exit = 4,
    /// The connection speaks TLS (its first bytes were a TLS record, or an OpenSSL call
    /// used it): its ciphertext is no longer copied; plaintext comes from the SSL probes.
    /// `ConnEvent` without endpoints.
    Tls = 5,
    /// A process became watched after start: it listens on a watched port, or a watched
    /// process forked it (a server's new worker; also sent for new threads, which user
    /// space tells apart). User space attaches the TLS probes to the libraries it maps.
    /// `ConnEvent` with `conn_id` 0.
    Listen = 6,
    /// A watched process set up an io_uring: what it submits through the ring moves bytes
    /// without the syscalls the capture sees. `ConnEvent` with `conn_id` 0 and `fd` the
    /// ring's descriptor.
    IoUring = 7,
}

impl EventKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Open),
            2 => Some(Self::Data),
            3 => Some(Self::Close),
            4 => Some(Self::Exit),
            5 => Some(Self::Tls),
            6 => Some(Self::Listen),
            7 => Some(Self::IoUring),
            _ => None,
        }
    }
}

/// Direction of a `DataEvent`, seen from the server.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The server read it: request bytes.
    Ingress = 0,
    /// The server wrote it: response bytes.
    Egress = 1,
}

/// Which call produced a `DataEvent`: a syscall, or an OpenSSL read/write whose plaintext
/// the uprobes captured. Kept for diagnostics and for sendfile and splice, whose bytes are
/// never copied.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    Read = 0,
    Readv = 1,
    Recvfrom = 2,
    Recvmsg = 3,
    Write = 4,
    Writev = 5,
    Sendto = 6,
    Sendmsg = 7,
    Sendfile = 8,
    /// `splice(2)` moved bytes from the connection into a pipe: the server read them
    /// without their passing through its memory, so they are counted, never copied. The
    /// one program for splice's number: it tells the two directions apart.
    SpliceRead = 9,
    /// `preadv2(2)` at the current position (offset -1; any other offset fails on a
    /// socket): `readv` with flags.
    Preadv2 = 10,
    /// `pwritev2(2)`, as `Preadv2`.
    Pwritev2 = 11,
    /// `recvmmsg(2)`: several `recvmsg` in one call. Its first message is copied; when
    /// it filled more than one, the others are counted, not copied.
    Recvmmsg = 12,
    /// `sendmmsg(2)`, as `Recvmmsg`.
    Sendmmsg = 13,
    /// `splice(2)` moved bytes from a pipe into the connection (a proxy forwarding a
    /// body); counted, never copied. Reached only from `SpliceRead`'s program.
    SpliceWrite = 14,
    /// SSL_read or SSL_read_ex returned plaintext.
    SslRead = 15,
    /// SSL_write or SSL_write_ex accepted plaintext.
    SslWrite = 16,
}

impl Syscall {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Read,
            1 => Self::Readv,
            2 => Self::Recvfrom,
            3 => Self::Recvmsg,
            4 => Self::Write,
            5 => Self::Writev,
            6 => Self::Sendto,
            7 => Self::Sendmsg,
            8 => Self::Sendfile,
            9 => Self::SpliceRead,
            10 => Self::Preadv2,
            11 => Self::Pwritev2,
            12 => Self::Recvmmsg,
            13 => Self::Sendmmsg,
            14 => Self::SpliceWrite,
            15 => Self::SslRead,
            16 => Self::SslWrite,
            _ => return None,
        })
    }

    /// Whether the call moves bytes towards the server (a request) or away from it.
    pub const fn direction(self) -> Direction {
        match self {
            Self::Read
            | Self::Readv
            | Self::Recvfrom
            | Self::Recvmsg
            | Self::SpliceRead
            | Self::Preadv2
            | Self::Recvmmsg
            | Self::SslRead => Direction::Ingress,
            Self::Write
            | Self::Writev
            | Self::Sendto
            | Self::Sendmsg
            | Self::Sendfile
            | Self::Pwritev2
            | Self::Sendmmsg
            | Self::SpliceWrite
            | Self::SslWrite => Direction::Egress,
        }
    }
}

/// The syscalls whose bytes are captured, written once: (`Syscall` variant, the kernel
/// program that handles it as it returns). `$m` receives the whole table: the kernel
/// programs are generated from it, and user space puts them in `CAPTURE_PROGRAMS` at
/// their position in `Syscall::CAPTURED`.
#[macro_export]
macro_rules! captured_syscalls {
    ($m:ident) => {
        $m! {
            (Read, capture_read),
            (Readv, capture_readv),
            (Recvfrom, capture_recvfrom),
            (Recvmsg, capture_recvmsg),
            (Write, capture_write),
            (Writev, capture_writev),
            (Sendto, capture_sendto),
            (Sendmsg, capture_sendmsg),
            (Sendfile, capture_sendfile),
            (SpliceRead, capture_splice),
            (Preadv2, capture_preadv2),
            (Pwritev2, capture_pwritev2),
            (Recvmmsg, capture_recvmmsg),
            (Sendmmsg, capture_sendmmsg)
        }
    };
}

macro_rules! captured_table {
    ($(($variant:ident, $program:ident)),*) => {
        impl Syscall {
            /// Every captured syscall, in the table's order: `KernelOffsets::syscall_nr`
            /// and `CAPTURE_PROGRAMS` are indexed by position in it.
            pub const CAPTURED: [Syscall; CAPTURED_SYSCALLS] = [$(Syscall::$variant),*];

            /// The kernel program that handles this syscall; `None` for the OpenSSL
            /// calls.
            pub const fn capture_program(self) -> Option<&'static str> {
                match self {
                    $(Syscall::$variant => Some(stringify!($program)),)*
                    Syscall::SpliceWrite | Syscall::SslRead | Syscall::SslWrite => None,
                }
            }
        }
    };
}
captured_syscalls!(captured_table);

/// How many syscalls are captured.
pub const CAPTURED_SYSCALLS: usize = 14;

/// Fields common to every event; first in every event struct.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// `EventKind` as u8.
    pub kind: u8,
    pub _pad: [u8; 3],
    /// Process (thread group) id and thread id that made the syscall.
    pub tgid: u32,
    pub tid: u32,
    /// The file descriptor in that process.
    pub fd: i32,
    /// Connection id assigned by the kernel when the socket was first seen; unique for the
    /// lifetime of the loaded programs.
    pub conn_id: u64,
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) when the syscall returned.
    pub ts_ns: u64,
}

/// `EventKind::Open`, `EventKind::Close` and `EventKind::Exit`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnEvent {
    pub header: EventHeader,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// Local (watched) port and peer port, host byte order.
    pub local_port: u16,
    pub peer_port: u16,
    pub _pad: u16,
    /// Addresses in network byte order; IPv4 in the first 4 bytes.
    pub local_addr: [u8; 16],
    pub peer_addr: [u8; 16],
    /// The socket's inode number (`socket:[N]` in /proc/PID/fd; 0 but in Open events):
    /// one socket open on several descriptors (dup2, or inherited by a fork after
    /// accept) is one TCP connection, unique across network namespaces while open.
    pub socket: u64,
}

/// `EventKind::Data`; followed in the ring buffer by `captured` payload bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DataEvent {
    pub header: EventHeader,
    /// `Direction` as u8.
    pub direction: u8,
    /// `Syscall` as u8.
    pub syscall: u8,
    /// `DATA_BODY_SKIPPED`, `DATA_HEAD_ONLY` or 0.
    pub flags: u16,
    /// Bytes the syscall transferred (its return value).
    pub len: u32,
    /// Bytes copied after this struct (<= min(len, MAX_CAPTURE)).
    pub captured: u32,
    /// Bytes of this direction that were transferred before this event but whose events
    /// were lost (ring buffer full): user space treats them as a gap, not a desync.
    pub lost_before: u32,
}

/// `DataEvent::flags`: the kernel copied nothing because the read or write lay wholly
/// inside a request or response body whose length the head declared (tracer-ebpf's
/// `body`).
pub const DATA_BODY_SKIPPED: u16 = 1;
/// `DataEvent::flags`: only the head was copied; the rest of the read or write is the
/// start of a body whose length the head declared.
pub const DATA_HEAD_ONLY: u16 = 2;

/// Reasons the kernel side could not deliver something; indexes of the `LOSSES`
/// per-CPU array. Every one is reported by user space.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// bpf_ringbuf_output failed (ring full): a data event is missing.
    RingbufData = 0,
    /// bpf_ringbuf_output failed for an open/close event.
    RingbufConn = 1,
    /// A user buffer could not be read (bpf_probe_read_user failed).
    ReadUser = 2,
    /// The jump from the `sys_exit` dispatcher to a captured syscall's program failed:
    /// that syscall went unseen.
    Dispatch = 3,
    /// The connection map was full.
    ConnFull = 4,
    /// An OpenSSL call returned plaintext but its socket was unknown (no syscall inside
    /// the call and no SSL_set_fd seen): the bytes are missing.
    SslNoSocket = 5,
    /// The per-thread SSL-call map was full.
    SslInflightFull = 6,
    /// A tracepoint's own arguments, or a returning syscall's saved registers, could
    /// not be read: that syscall (a transfer, close, listen or fork) went unseen.
    ContextRead = 7,
    /// The CPU had no scratch slot (a CPU beyond the count the loader sized it for):
    /// a data event is missing.
    ScratchMissing = 8,
}

pub const LOSS_REASONS: u32 = 9;

impl Loss {
    pub const ALL: [Loss; LOSS_REASONS as usize] = [
        Loss::RingbufData,
        Loss::RingbufConn,
        Loss::ReadUser,
        Loss::Dispatch,
        Loss::ConnFull,
        Loss::SslNoSocket,
        Loss::SslInflightFull,
        Loss::ContextRead,
        Loss::ScratchMissing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Loss::RingbufData => "ringbuf_full_data",
            Loss::RingbufConn => "ringbuf_full_conn",
            Loss::ReadUser => "read_user_failed",
            Loss::Dispatch => "capture_dispatch_failed",
            Loss::ConnFull => "conn_map_full",
            Loss::SslNoSocket => "ssl_socket_unknown",
            Loss::SslInflightFull => "ssl_inflight_map_full",
            Loss::ContextRead => "tracepoint_args_unreadable",
            Loss::ScratchMissing => "scratch_slot_missing",
        }
    }
}

/// Kernel struct field offsets, computed by user space from the running kernel's BTF
/// and written into the programs' read-only globals before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelOffsets {
    pub task_files: u32,
    pub files_fdt: u32,
    /// `struct fdtable`'s `max_fds`, which its `fd` array pointer follows 8 bytes on,
    /// so one read fetches both; user space checks the layout.
    pub fdt_max_fds: u32,
    pub file_private_data: u32,
    pub file_f_inode: u32,
    pub inode_i_mode: u32,
    pub inode_i_ino: u32,
    pub socket_sk: u32,
    pub sock_common_family: u32,
    pub sock_common_state: u32,
    pub sock_common_num: u32,
    pub sock_common_dport: u32,
    pub sock_common_rcv_saddr: u32,
    pub sock_common_daddr: u32,
    pub sock_common_v6_rcv_saddr: u32,
    pub sock_common_v6_daddr: u32,
    pub sock_protocol: u32,
    pub sock_type: u32,
    /// Byte offset of `struct sock.__sk_common` (0 on every kernel so far, but read anyway).
    pub sock_common: u32,
    /// `struct tcp_sock` fields that tell whether any payload moved yet (a connection
    /// first seen mid-stream is never classified by its later bytes).
    pub tcp_bytes_received: u32,
    pub tcp_rcv_nxt: u32,
    pub tcp_copied_seq: u32,
    pub tcp_bytes_sent: u32,
    /// Offset of `child_pid` in the sched_process_fork tracepoint record, read from
    /// tracefs because the record's layout changed across kernel versions.
    pub fork_child_pid: u32,
    /// `struct pt_regs` as a syscall left it, which `raw_syscalls:sys_exit` passes:
    /// where the syscall number and the first three arguments were saved.
    pub regs_syscall_nr: u32,
    /// Where the three argument registers lie together, the third argument's first
    /// (x86_64: dx, si, di), so one read fetches all three; user space checks the
    /// layout.
    pub regs_args: u32,
    /// Where the fourth argument's register lies (x86_64: r10): recvfrom's flags.
    pub regs_arg4: u32,
    /// `task_struct.thread_info.status`, whose `TS_COMPAT` bit marks a 32-bit syscall
    /// (its number means another call); `u32::MAX` where there is no such field.
    pub thread_status: u32,
    /// This architecture's number of each `Syscall::CAPTURED`, by `Syscall` value.
    pub syscall_nr: [u32; CAPTURED_SYSCALLS],
}

/// `TS_COMPAT` in `thread_info.status` (x86).
pub const TS_COMPAT: u32 = 0x0002;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] data without padding-dependent invariants.
    unsafe impl aya::Pod for super::KernelOffsets {}
}
