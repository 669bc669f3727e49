//! Writes events into the ring buffer, counting every one that does not fit.
use core::mem::size_of;

use aya_ebpf::helpers::{
    bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_user, generated,
};
use tracer_common::{
    ConnEvent, DATA_BODY_SKIPPED, DataEvent, Direction, EventHeader, EventKind, Loss, MAX_CAPTURE,
    MAX_IOV, Syscall,
    head_scan::{HEAD_PREFIX, MIN_SKIP, RequestRead, request_read},
};

use crate::{
    body,
    maps::{
        CONN_MIDSTREAM, CONN_SEEN, CONN_TLS, ConnKey, ConnValue, EVENTS, SCRATCH, Scratch,
        WAKEUP_BYTES, count_loss,
    },
    sock::Endpoints,
};

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Wakes user space once per WAKEUP_BYTES of events: when this event makes the waiting
/// amount cross a multiple of it. Waking whenever that much waits instead woke it for
/// every event while it was behind: an interrupt (irq_work) per event in the server's
/// context, just when the tracer is busiest. The ring is polled level-triggered and
/// the drain timer picks up whatever no crossing announced.
#[inline(always)]
fn wakeup_flags(size: usize) -> u64 {
    let threshold = WAKEUP_BYTES.load();
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA);
    if threshold > 0 && waiting / threshold != (waiting + size as u64) / threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

fn header(kind: EventKind, tgid: u32, tid: u32, fd: i32, conn_id: u64) -> EventHeader {
    EventHeader {
        kind: kind as u8,
        _pad: [0; 3],
        tgid,
        tid,
        fd,
        conn_id,
        // SAFETY: plain helper call.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// An Open or Close event.
#[inline(always)]
pub fn conn(
    kind: EventKind,
    tgid: u32,
    tid: u32,
    fd: i32,
    conn_id: u64,
    endpoints: Option<&Endpoints>,
) {
    let Some(mut entry) = EVENTS.reserve::<ConnEvent>(0) else {
        count_loss(Loss::RingbufConn);
        return;
    };
    let (family, local_port, peer_port, local_addr, peer_addr, socket) = match endpoints {
        Some(e) => (
            e.family,
            e.local_port,
            e.peer_port,
            e.local_addr,
            e.peer_addr,
            e.socket,
        ),
        None => (0, 0, 0, [0; 16], [0; 16], 0),
    };
    // A new watched process, or one whose first TLS connection may have just loaded
    // OpenSSL, waits for its TLS probes: wake user space now, not at the next batch or
    // drain tick, to keep the window before they are attached short. Once per listen()
    // or TLS connection, which costs far less than the handshake it precedes.
    let flags = if kind as u8 == EventKind::Listen as u8 || kind as u8 == EventKind::Tls as u8 {
        BPF_RB_FORCE_WAKEUP
    } else {
        wakeup_flags(size_of::<ConnEvent>())
    };
    entry.write(ConnEvent {
        header: header(kind, tgid, tid, fd, conn_id),
        family,
        local_port,
        peer_port,
        _pad: 0,
        local_addr,
        peer_addr,
        socket,
    });
    entry.submit(flags);
}

/// A finished syscall or OpenSSL call on a watched connection: where its bytes are.
#[derive(Clone, Copy)]
pub struct Transfer {
    pub conn_id: u64,
    /// User buffer, iovec array or msghdr, depending on `syscall`; 0 when the bytes
    /// never reached one (recv with `MSG_TRUNC`, splice): counted, not copied (`data`).
    pub buf: u64,
    /// Number of iovecs for readv/writev.
    pub iovcnt: u64,
    /// The bytes of a recvmmsg's or sendmmsg's first message when it moved several:
    /// only those are copied, the rest of the call is counted (a gap to user space,
    /// which takes it as body bytes or a counted desync) and no head is scanned.
    /// `u64::MAX` for every other call.
    pub first: u64,
    pub fd: i32,
    /// `Syscall` as u8.
    pub syscall: u8,
}

/// A Data event for a finished call that transferred `len` bytes. With `bodies`, the
/// server's reads and writes are followed for request and response bodies (`body`):
/// returns true when the caller should jump to the head scan of the transfer's
/// direction (`body::park` parked it, and the scan sends its event). The OpenSSL probes
/// pass false, which keeps them within the verifier's limit (and a tail call could not
/// reach the scan from their program type anyway).
#[inline(always)]
pub fn data(
    pid_tgid: u64,
    transfer: &Transfer,
    len: u64,
    conn: Option<*mut ConnValue>,
    bodies: bool,
) -> bool {
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(scratch) = SCRATCH.get_ptr_mut(cpu) else {
        count_loss(Loss::ScratchMissing);
        return false;
    };
    // SAFETY: one slot per CPU and these programs do not nest on a CPU.
    let scratch = unsafe { &mut *scratch };
    let syscall = transfer.syscall;
    let direction = Syscall::from_u8(syscall).map_or(Direction::Egress, Syscall::direction);
    let value = conn.filter(|_| bodies);
    // Where this transfer starts in its direction's bytes, whether it lies wholly inside
    // a body whose length an earlier head declared, and whether it may start a head that
    // opens such a window: a long write outside any window, or a read where the kernel
    // knows a request starts. Only the prefix of a scanned transfer is copied here, for
    // the head scan, which copies the rest if no window opens.
    let (at, skipped, scanned, next_request) = match value {
        // SAFETY: entry pointer from a successful lookup.
        Some(value) if direction as u8 == Direction::Egress as u8 => unsafe {
            let (written, body_end) = ((*value).written, (*value).body_end);
            let skipped = len >= MIN_SKIP && written + len <= body_end;
            let scanned = !skipped && written >= body_end && len >= MIN_SKIP;
            (written, skipped, scanned, None)
        },
        // SAFETY: as above.
        Some(value) => unsafe {
            let read = (*value).read;
            let (action, next) = request_read(read, len, (*value).next_request);
            (
                read,
                action == RequestRead::Skip,
                action == RequestRead::Scan,
                Some(next),
            )
        },
        None => (0, false, false, None),
    };
    // Bytes the server discarded (`Transfer::buf`) are counted like skipped ones; no
    // head is read from them, and the kernel then no longer knows where requests start.
    let discarded = transfer.buf == 0;
    let scanned = scanned && !discarded && transfer.first >= len;
    let captured = if skipped || discarded {
        0
    } else {
        let max = if scanned { HEAD_PREFIX } else { MAX_CAPTURE };
        capture(transfer, len, max, &mut scratch.data, &mut scratch.copied)
    };
    let tgid = (pid_tgid >> 32) as u32;
    let dir = direction as usize & 1;
    // The connection's entry serves the TLS check and both the read and the update of
    // the lost-byte counter: the pointer stays valid for the whole program run.
    if syscall < Syscall::SslRead as u8
        && let Some(value) = conn
    {
        // SAFETY: entry pointer from a successful lookup.
        let flags = unsafe { &mut (*value).flags };
        if *flags & CONN_SEEN == 0 {
            *flags |= CONN_SEEN;
            if *flags & CONN_MIDSTREAM == 0 && is_tls_record(&scratch.data, captured) {
                *flags |= CONN_TLS;
                self::conn(
                    EventKind::Tls,
                    tgid,
                    pid_tgid as u32,
                    transfer.fd,
                    transfer.conn_id,
                    None,
                );
                return false;
            }
        }
    }
    // SAFETY: entry pointer from a successful lookup.
    let lost_before = conn.map(|value| unsafe { (*value).lost[dir] }).unwrap_or(0);
    scratch.event = DataEvent {
        header: header(
            EventKind::Data,
            tgid,
            pid_tgid as u32,
            transfer.fd,
            transfer.conn_id,
        ),
        direction: direction as u8,
        syscall,
        flags: if skipped { DATA_BODY_SKIPPED } else { 0 },
        len: len as u32,
        captured: captured as u32,
        lost_before,
    };
    // A head opens a window only outside one: a head-like text inside a body must not
    // move it. The head scan sends the event.
    if let (Some(next), Some(value), false) = (next_request, value, scanned) {
        // SAFETY: entry pointer from a successful lookup.
        unsafe { (*value).next_request = next };
    }
    if scanned {
        body::park(
            scratch,
            ConnKey {
                tgid,
                fd: transfer.fd,
            },
            *transfer,
            at,
            len,
            captured,
        );
        return true;
    }
    send(scratch, conn, len, value.map(|_| at));
    false
}

/// Sends the data event built in `scratch` with the payload bytes it says it carries,
/// and keeps the connection's counters: the bytes of its direction lost before the
/// next event, and for a plaintext read or write that started `at` bytes into its
/// direction, where the next one starts.
#[inline(always)]
pub fn send(scratch: &mut Scratch, conn: Option<*mut ConnValue>, len: u64, at: Option<u64>) {
    // Read back from the slot, not kept in a register: the copy loops end in as many
    // verifier states as they can copy lengths, and each would be verified through
    // everything below; a value loaded from map memory carries none of them.
    // SAFETY: a field of this CPU's scratch slot.
    let captured = unsafe { core::ptr::read_volatile(&scratch.event.captured) } as usize;
    let captured = captured.min(MAX_CAPTURE);
    let dir = scratch.event.direction as usize & 1;
    let size = size_of::<DataEvent>() + captured;
    // SAFETY: `size` <= size_of::<DataEvent>() + MAX_CAPTURE, inside the scratch slot.
    let bytes = unsafe { core::slice::from_raw_parts(scratch as *const _ as *const u8, size) };
    let delivered = EVENTS.output(bytes, wakeup_flags(size)).is_ok();
    if let Some(value) = conn {
        // SAFETY: entry pointer from a successful lookup.
        let value = unsafe { &mut *value };
        let lost = &mut value.lost[dir];
        *lost = if delivered {
            0
        } else {
            lost.saturating_add(len as u32)
        };
        match at {
            Some(at) if dir == Direction::Egress as usize => value.written = at + len,
            Some(at) => value.read = at + len,
            None => {}
        }
    }
    if !delivered {
        count_loss(Loss::RingbufData);
    }
}

/// A TLS record header: content type change_cipher_spec..heartbeat (20-24), then major
/// version 3. No HTTP/1 request or response starts with such a byte. One byte decides
/// when that is all the first read took.
#[inline(always)]
fn is_tls_record(data: &[u8; 2 * MAX_CAPTURE], captured: usize) -> bool {
    captured >= 1 && (20..=24).contains(&data[0]) && (captured < 2 || data[1] == 3)
}

/// Copies up to `max` (at most MAX_CAPTURE) of the transferred bytes into `dst`; returns
/// how many.
#[inline(always)]
pub fn capture(
    transfer: &Transfer,
    len: u64,
    max: usize,
    dst: &mut [u8; 2 * MAX_CAPTURE],
    copied: &mut u64,
) -> usize {
    let len = len.min(transfer.first).min(max as u64);
    let syscall = transfer.syscall;
    if syscall == Syscall::Sendfile as u8 {
        // sendfile bodies come from a file, discarded bytes from nowhere: counted,
        // never copied.
        return 0;
    }
    if syscall == Syscall::Readv as u8
        || syscall == Syscall::Writev as u8
        || syscall == Syscall::Preadv2 as u8
        || syscall == Syscall::Pwritev2 as u8
    {
        return copy_iov(transfer.buf, transfer.iovcnt, len, dst, copied);
    }
    if syscall == Syscall::Recvmsg as u8
        || syscall == Syscall::Sendmsg as u8
        || syscall == Syscall::Recvmmsg as u8
        || syscall == Syscall::Sendmmsg as u8
    {
        // struct user_msghdr (an mmsghdr's first message starts with one): msg_iov at 16,
        // msg_iovlen at 24 (x86_64 and arm64 ABI).
        // SAFETY: user pointers, read with the faulting-safe helper.
        let iov: u64 =
            unsafe { bpf_probe_read_user((transfer.buf + 16) as *const u64) }.unwrap_or(0);
        let iovlen: u64 =
            unsafe { bpf_probe_read_user((transfer.buf + 24) as *const u64) }.unwrap_or(0);
        return copy_iov(iov, iovlen, len, dst, copied);
    }
    let n = if len > MAX_CAPTURE as u64 {
        MAX_CAPTURE
    } else {
        len as usize
    };
    copy_user(transfer.buf, 0, n, dst)
}

/// Walks at most MAX_IOV iovecs, copying until `len` bytes or MAX_CAPTURE. The count
/// so far lives in `copied` (the scratch slot), not in a register: a register would be
/// a different verifier state for every length copied so far, each walked through the
/// rest of the loop and of the program (275,000 instructions of the verifier's million
/// for readv alone); a value read back from map memory is one state.
#[inline(always)]
fn copy_iov(
    iov: u64,
    iovcnt: u64,
    len: u64,
    dst: &mut [u8; 2 * MAX_CAPTURE],
    copied: &mut u64,
) -> usize {
    let want = len.min(MAX_CAPTURE as u64);
    // The first two iovecs in one user read, when there are two: a server writes a
    // response as its head and its body (nginx's writev), and each helper call costs
    // more than the 16 bytes it copies. A constant size, which the verifier needs.
    // SAFETY: user pointer read with the faulting-safe helper.
    let first: Option<[[u64; 2]; 2]> = if iovcnt >= 2 {
        unsafe { bpf_probe_read_user(iov as *const [[u64; 2]; 2]) }.ok()
    } else {
        None
    };
    // SAFETY (all volatile accesses below): a field of this CPU's scratch slot.
    unsafe { core::ptr::write_volatile(copied, 0) };
    for i in 0..MAX_IOV {
        let done = unsafe { core::ptr::read_volatile(copied) };
        if i as u64 >= iovcnt || done >= want {
            break;
        }
        let vec = match first {
            Some(first) if i < 2 => Ok(first[i & 1]),
            // SAFETY: user pointer read with the faulting-safe helper.
            _ => unsafe { bpf_probe_read_user((iov + i as u64 * 16) as *const [u64; 2]) },
        };
        let Ok(vec) = vec else {
            count_loss(Loss::ReadUser);
            break;
        };
        let n = vec[1].min(want - done) as usize;
        let got = copy_user(vec[0], done as usize, n, dst);
        if got < n {
            break;
        }
        unsafe { core::ptr::write_volatile(copied, done + got as u64) };
    }
    (unsafe { core::ptr::read_volatile(copied) }).min(want) as usize
}

/// Copies `n` (<= MAX_CAPTURE) user bytes to `dst[at..]` (`at` < MAX_CAPTURE); 0 on fault.
#[inline(always)]
fn copy_user(src: u64, at: usize, n: usize, dst: &mut [u8; 2 * MAX_CAPTURE]) -> usize {
    let at = at & (MAX_CAPTURE - 1);
    let n = n & (2 * MAX_CAPTURE - 1);
    if n == 0 || n > MAX_CAPTURE {
        return 0;
    }
    // SAFETY: at < MAX_CAPTURE and n <= MAX_CAPTURE keep the write inside `dst`.
    let ret = unsafe {
        generated::bpf_probe_read_user(
            dst.as_mut_ptr().add(at).cast(),
            n as u32,
            src as *const core::ffi::c_void,
        )
    };
    if ret == 0 {
        n
    } else {
        count_loss(Loss::ReadUser);
        0
    }
}
