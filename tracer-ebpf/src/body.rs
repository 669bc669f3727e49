//! Response bodies are counted, not copied: after a response head announces its body's
//! length, the server's later writes that lie wholly inside that body are reported by
//! length only.
//!
//! The head is read here, in the kernel, because the body follows it within
//! microseconds: a server writes a 128 KiB response as five writes in a row, long before
//! user space has read the head from the ring. Only what the server writes is parsed, and
//! a body is announced only when nothing about it is in doubt:
//! - the write starts with an `HTTP/1.x` status line whose status has a body (not 1xx,
//!   204 or 304), and the whole head lies within its first `HEAD_SCAN` (512) bytes;
//! - exactly one `Content-Length`, a plain number, and no `Transfer-Encoding`;
//! - body bytes follow the head in the same write, and they do not start another
//!   response. A response to HEAD announces a length it does not send: the same write
//!   either ends at its head or goes on with the next response (`HTTP/`), so it never
//!   opens a window;
//! - no window is open: a head-like text inside a body, written at the start of a write,
//!   does not move the window.
//!
//! The write that carries such a head sends only the head: the rest of it is body too.
//! The head is read by `tracer_common::response_head`, unit-tested on the host.
//!
//! Every skipped write is flagged, and user space checks that its own parser (which
//! knows the request methods) expected body bytes there; a disagreement is counted and
//! handled as lost bytes.
use aya_ebpf::helpers::bpf_get_smp_processor_id;
use tracer_common::{
    DATA_HEAD_ONLY, MAX_CAPTURE,
    response_head::{Announced, HEAD_PREFIX},
};

use crate::{
    emit::{self, Transfer},
    maps::{CONNS, ConnKey, ConnValue, SCRATCH, Scratch},
};

/// The parked write: its connection, where its bytes are, where it starts in what the
/// server wrote, and its length.
#[repr(C)]
pub struct Parked {
    key: ConnKey,
    transfer: Transfer,
    written: u64,
    len: u64,
}

/// Parks a server's write of `len` bytes at `written` on connection `key` (its first
/// `captured` bytes copied into the scratch slot, its event built there) for the head
/// scan, which then sends the event. The scan runs in its own program
/// (`scan_response_head`, reached by a tail call), where it starts in one verifier
/// state: inline after the copy loops it was walked once for every length they can
/// copy, past the verifier's limit.
#[inline(always)]
pub fn park(
    scratch: &mut Scratch,
    key: ConnKey,
    transfer: Transfer,
    written: u64,
    len: u64,
    captured: usize,
) {
    scratch.parked = Parked {
        key,
        transfer,
        written,
        len,
    };
    scratch.scan.park(len, captured);
}

/// Sends the parked write's event. With `scan`, its head is scanned first: a head that
/// announces a body going on past the write opens the connection's window, and only the
/// head is sent; otherwise the rest of the write is copied, up to `MAX_CAPTURE`, and
/// sent as always. Without `scan` (the jump to the scan failed, counted as a dispatch
/// loss) the prefix goes as it is and the rest of the write is a gap: copying it there
/// would put the copy loop after every path of the capture program.
#[inline(always)]
pub fn finish_parked(scan: bool) {
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(scratch) = SCRATCH.get_ptr_mut(cpu) else {
        return;
    };
    // SAFETY: one slot per CPU; the program that parked the write jumped here (or
    // returned here) without anything running in between on this CPU.
    let scratch = unsafe { &mut *scratch };
    let announced = if scan {
        scratch.scan.announced(&scratch.data)
    } else {
        None
    };
    let Parked {
        key,
        transfer,
        written,
        len,
    } = parked(scratch);
    let conn = CONNS
        .get_ptr_mut(&key)
        // SAFETY: entry pointer from a successful lookup.
        .filter(|&value| unsafe { (*value).conn_id } == transfer.conn_id);
    let prefix = scratch.scan.captured().min(HEAD_PREFIX as u64) as usize;
    let captured = match (announced, conn) {
        (Some(Announced { head_len, body_end }), Some(value)) => {
            open_window(value, written + body_end);
            scratch.event.flags = DATA_HEAD_ONLY;
            (head_len as usize).min(prefix)
        }
        _ if scan => emit::capture(
            &transfer,
            len,
            MAX_CAPTURE,
            &mut scratch.data,
            &mut scratch.copied,
        ),
        _ => prefix,
    };
    scratch.event.captured = captured as u32;
    emit::send(scratch, conn, len, Some(written));
}

/// The parked write, read back from the slot.
#[inline(always)]
fn parked(scratch: &Scratch) -> Parked {
    // SAFETY: a field of this CPU's scratch slot.
    unsafe { core::ptr::read_volatile(&scratch.parked) }
}

#[inline(always)]
fn open_window(value: *mut ConnValue, body_end: u64) {
    // SAFETY: entry pointer from a successful lookup.
    unsafe { (*value).body_end = body_end };
}
