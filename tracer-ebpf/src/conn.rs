//! Which descriptors are watched connections, cached per (tgid, fd).
use aya_ebpf::helpers::bpf_get_smp_processor_id;
use tracer_common::{EventKind, Loss, head_scan::UNKNOWN};

use crate::{
    emit,
    maps::{CONN_MIDSTREAM, CONN_SEEN, CONN_SEQ, CONN_TLS, CONNS, ConnKey, ConnValue, count_loss},
    sock::{current_file, payload_moved, watched_endpoints},
};

/// A watched connection as cached in CONNS.
#[derive(Clone, Copy)]
pub struct Watched {
    pub conn_id: u64,
    pub flags: u32,
    /// Its CONNS entry, for the data event's TLS check and lost-byte counter without a
    /// second lookup; `None` when the map had no room for it.
    pub entry: Option<*mut ConnValue>,
}

/// The connection of `fd` if it is a TCP connection on a watched port.
///
/// The first syscall on a descriptor classifies it (and announces a connection with an
/// Open event); later ones cost one descriptor-table walk to check the cached entry still
/// describes the same file. This is also how connections accepted before the tracer
/// started are picked up: at their next read or write. `moved` is what the call being
/// looked at has itself read and written (it has returned): those bytes are its own,
/// not earlier payload.
#[inline(always)]
pub fn watched_conn(tgid: u32, tid: u32, fd: i32, moved: [u64; 2]) -> Option<Watched> {
    let file = current_file(fd)?;
    let key = ConnKey { tgid, fd };
    if let Some(entry) = CONNS.get_ptr_mut(&key) {
        // SAFETY: entry pointer from a successful lookup; copied before any other map
        // operation.
        let cached = unsafe { *entry };
        if cached.file == file {
            return (cached.conn_id != 0).then_some(Watched {
                conn_id: cached.conn_id,
                flags: cached.flags,
                entry: Some(entry),
            });
        }
        // The descriptor was reused without a close() we saw (dup2, close_range, ...):
        // the old connection is over for this process.
        if cached.conn_id != 0 {
            emit::conn(EventKind::Close, tgid, tid, fd, cached.conn_id, None);
        }
    }
    let endpoints = watched_endpoints(file);
    let conn_id = if endpoints.is_some() {
        next_conn_id()
    } else {
        0
    };
    // Connections accepted before the tracer started are first seen mid-stream.
    let flags = if endpoints.is_some() && payload_moved(file, moved) {
        CONN_MIDSTREAM
    } else {
        0
    };
    let value = ConnValue {
        file,
        conn_id,
        lost: [0; 2],
        flags,
        _pad: 0,
        written: 0,
        body_end: 0,
        read: 0,
        // Only a connection's first byte is known to start a request.
        next_request: if flags & CONN_MIDSTREAM == 0 {
            0
        } else {
            UNKNOWN
        },
    };
    if CONNS.insert(&key, &value, 0).is_err() {
        count_loss(Loss::ConnFull);
    }
    let endpoints = endpoints?;
    emit::conn(EventKind::Open, tgid, tid, fd, conn_id, Some(&endpoints));
    Some(Watched {
        conn_id,
        flags,
        entry: CONNS.get_ptr_mut(&key),
    })
}

/// The watched connection `conn_id` on `fd`, as a syscall of this same OpenSSL call
/// found it a moment ago: its cached entry, without walking the descriptor table again.
/// `None` if the descriptor has since been closed or given to another connection.
#[inline(always)]
pub fn known_conn(tgid: u32, fd: i32, conn_id: u64) -> Option<Watched> {
    let entry = CONNS.get_ptr_mut(&ConnKey { tgid, fd })?;
    // SAFETY: entry pointer from a successful lookup; copied before any other map
    // operation.
    let cached = unsafe { *entry };
    (cached.conn_id == conn_id).then_some(Watched {
        conn_id,
        flags: cached.flags,
        entry: Some(entry),
    })
}

/// Marks the connection as TLS (once) and tells user space.
#[inline(always)]
pub fn mark_tls(tgid: u32, tid: u32, fd: i32, conn_id: u64) {
    if let Some(value) = CONNS.get_ptr_mut(&ConnKey { tgid, fd }) {
        // SAFETY: entry pointer from a successful lookup.
        let flags = unsafe { &mut (*value).flags };
        if *flags & CONN_TLS != 0 {
            return;
        }
        *flags |= CONN_TLS | CONN_SEEN;
    }
    emit::conn(EventKind::Tls, tgid, tid, fd, conn_id, None);
}

/// The process closed `fd`: forget it and tell user space if it was a connection.
#[inline(always)]
pub fn closed(tgid: u32, tid: u32, fd: i32) {
    let key = ConnKey { tgid, fd };
    // SAFETY: the value is copied out before the entry is removed.
    let Some(cached) = unsafe { CONNS.get(&key) }.copied() else {
        return;
    };
    let _ = CONNS.remove(&key);
    if cached.conn_id != 0 {
        emit::conn(EventKind::Close, tgid, tid, fd, cached.conn_id, None);
    }
}

/// Unique while the programs are loaded: a per-CPU sequence number tagged with the CPU.
#[inline(always)]
fn next_conn_id() -> u64 {
    // SAFETY: returns the current CPU number.
    let cpu = unsafe { bpf_get_smp_processor_id() } as u64;
    let Some(seq) = CONN_SEQ.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU slot; programs do not nest on one CPU for these tracepoints.
    let next = unsafe {
        *seq += 1;
        *seq
    };
    (next << 12) | (cpu & 0xfff)
}
