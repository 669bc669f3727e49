//! Bodies are counted, not copied: after a head announces its body's length, the later
//! transfers that lie wholly inside that body are reported by length only.
//!
//! Heads are read here, in the kernel, because the body follows its head within
//! microseconds: a server writes a 128 KiB response as five writes in a row, and reads
//! an upload in 4 KiB pieces, long before user space has read the head from the ring.
//!
//! **Responses.** Only what the server writes is parsed, and a body is announced only
//! when nothing about it is in doubt:
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
//! **Requests.** What the client sends is hostile input: a request hidden in a skipped
//! body would be missing from the trail. So a request head is read only where the kernel
//! knows a request starts (the connection's first byte, or the end of a body it skipped
//! up to exactly), and only a POST, PUT or PATCH head with one plain `Content-Length`
//! and no `Transfer-Encoding`, `Expect` or `Upgrade` opens a window
//! (`tracer_common::head_scan::request_read`). A read that ends anywhere else loses
//! track of the requests for the rest of the connection.
//!
//! The transfer that carries such a head sends only the head: the rest of it is body
//! too. Heads are read by `tracer_common::head_scan`, unit-tested on the host.
//!
//! Every skipped transfer is flagged, and user space checks that its own parser (which
//! knows the request methods) expected body bytes there; a disagreement is counted and
//! handled as lost bytes.
use aya_ebpf::helpers::bpf_get_smp_processor_id;
use tracer_common::{
    DATA_HEAD_ONLY, MAX_CAPTURE,
    head_scan::{HEAD_PREFIX, after_request_scan},
};

use crate::{
    emit::{self, Transfer},
    maps::{CONNS, ConnKey, SCRATCH, Scratch},
};

/// The parked transfer: its connection, where its bytes are, where it starts in what
/// the server read or wrote, and its length.
#[repr(C)]
pub struct Parked {
    key: ConnKey,
    transfer: Transfer,
    at: u64,
    len: u64,
}

/// Parks a server's read or write of `len` bytes `at` bytes into its direction on
/// connection `key` (its first `captured` bytes copied into the scratch slot, its event
/// built there) for the head scan, which then sends the event. The scan runs in a
/// program of its own per direction (`scan_request_head`, `scan_response_head`, reached
/// by a tail call), where it starts in one verifier state: inline after the copy loops
/// it was walked once for every length they can copy, past the verifier's limit.
#[inline(always)]
pub fn park(
    scratch: &mut Scratch,
    key: ConnKey,
    transfer: Transfer,
    at: u64,
    len: u64,
    captured: usize,
) {
    scratch.parked = Parked {
        key,
        transfer,
        at,
        len,
    };
    scratch.scan.park(len, captured);
}

/// Sends the parked transfer's event; a `REQUEST` is a read, otherwise a write. With
/// `scan`, its head is scanned first: a head that announces a body going on past the
/// transfer opens the connection's window, and only the head is sent; otherwise the
/// rest of the transfer is copied, up to `MAX_CAPTURE`, and sent as always. Without
/// `scan` (the jump to the scan failed, counted as a dispatch loss) the prefix goes as
/// it is and the rest of the transfer is a gap: copying it there would put the copy
/// loop after every path of the capture program.
#[inline(always)]
pub fn finish_parked<const REQUEST: bool>(scan: bool) {
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(scratch) = SCRATCH.get_ptr_mut(cpu) else {
        return;
    };
    // SAFETY: one slot per CPU; the program that parked the transfer jumped here (or
    // returned here) without anything running in between on this CPU.
    let scratch = unsafe { &mut *scratch };
    let announced = match (scan, REQUEST) {
        (false, _) => None,
        (true, true) => scratch.scan.request_announced(&scratch.data),
        (true, false) => scratch.scan.announced(&scratch.data),
    };
    let Parked {
        key,
        transfer,
        at,
        len,
    } = parked(scratch);
    let conn = CONNS
        .get_ptr_mut(&key)
        // SAFETY: entry pointer from a successful lookup.
        .filter(|&value| unsafe { (*value).conn_id } == transfer.conn_id);
    if let Some(value) = conn {
        // SAFETY: entry pointer from a successful lookup.
        unsafe {
            if REQUEST {
                (*value).next_request = after_request_scan(at, announced);
            } else if let Some(announced) = announced {
                (*value).body_end = at + announced.body_end;
            }
        }
    }
    let prefix = scratch.scan.captured().min(HEAD_PREFIX as u64) as usize;
    let captured = match (announced, conn) {
        (Some(announced), Some(_)) => {
            scratch.event.flags = DATA_HEAD_ONLY;
            (announced.head_len as usize).min(prefix)
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
    emit::send(scratch, conn, len, Some(at));
}

/// The parked transfer, read back from the slot.
#[inline(always)]
fn parked(scratch: &Scratch) -> Parked {
    // SAFETY: a field of this CPU's scratch slot.
    unsafe { core::ptr::read_volatile(&scratch.parked) }
}
