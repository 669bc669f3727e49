//! Response bodies are counted, not copied: after a response head announces its body's
//! length, the server's later writes that lie wholly inside that body are reported by
//! length only.
//!
//! The head is read here, in the kernel, because the body follows it within
//! microseconds: a server writes a 128 KiB response as five writes in a row, long before
//! user space has read the head from the ring. Only what the server writes is parsed, and
//! a body is announced only when nothing about it is in doubt:
//! - the write starts with an `HTTP/1.x` status line whose status has a body (not 1xx,
//!   204 or 304), and the whole head lies within its first `HEAD_SCAN` bytes;
//! - exactly one `Content-Length`, a plain number, and no `Transfer-Encoding`;
//! - body bytes follow the head in the same write, and they do not start another
//!   response. A response to HEAD announces a length it does not send: the same write
//!   either ends at its head or goes on with the next response (`HTTP/`), so it never
//!   opens a window;
//! - no window is open: a head-like text inside a body, written at the start of a write,
//!   does not move the window.
//!
//! Every skipped write is flagged, and user space checks that its own parser (which
//! knows the request methods) expected body bytes there; a disagreement is counted and
//! handled as lost bytes.
use aya_ebpf::helpers::bpf_get_smp_processor_id;
use tracer_common::MAX_CAPTURE;

use crate::maps::{CONNS, ConnKey, SCRATCH};

/// Bytes of a write searched for the end of a response head. nginx, Apache, Node.js and
/// Python write heads of 150-400 bytes; a longer head is copied whole, with its body.
const HEAD_SCAN: usize = 512;

/// Writes shorter than this are copied even inside a body: the lookup and the parse cost
/// about what copying them does.
pub const MIN_SKIP: u64 = 2048;

const fn be(bytes: &[u8; 8]) -> u64 {
    u64::from_be_bytes(*bytes)
}

/// The last 16 bytes seen, lower-cased, as two words: `hi` the older eight.
const CONTENT_LENGTH: (u64, u64) = (be(b"\ncontent"), be(b"-length:"));
const TRANSFER_ENCODING: (u64, u64) = (be(b"\ntransfe"), be(b"r-encodi"));
const HEAD_END: u64 = be(b"\0\0\0\0\r\n\r\n");

/// The head scan's variables, kept in the per-CPU scratch map rather than in registers
/// (through volatile accesses, so the compiler cannot keep them there): the verifier does
/// not track map memory, so every pass of the loop reaches its head in the same state and
/// is verified once, where registers holding these would multiply the states it explores
/// by every combination of their values, past its million-instruction limit.
#[repr(C)]
pub struct HeadScan {
    /// The last 16 bytes seen, lower-cased: `hi` the older eight.
    hi: u64,
    lo: u64,
    /// The Content-Length value read so far, and how many digits it has.
    length: u64,
    digits: u64,
    /// `IN_LENGTH` | `DIGITS_ENDED` | `SEEN_LENGTH` | `REFUSED`.
    state: u64,
    /// Bytes of the head, its blank line included; 0 until it ends.
    head_len: u64,
    /// Bytes copied from the write. Read from here, not from a register: the copy's
    /// loop ends in as many states as it can copy lengths, and each would be verified
    /// through the whole scan.
    captured: u64,
    /// The write's start and length, and its connection.
    written: u64,
    len: u64,
    key: ConnKey,
    conn_id: u64,
}

const IN_LENGTH: u64 = 1;
const DIGITS_ENDED: u64 = 2;
const SEEN_LENGTH: u64 = 4;
const REFUSED: u64 = 8;

macro_rules! load {
    ($scan:ident . $field:ident) => {{
        let field = &$scan.$field;
        // SAFETY: a field of the caller's exclusive scratch slot.
        unsafe { core::ptr::read_volatile(field) }
    }};
}

macro_rules! store {
    ($scan:ident . $field:ident, $value:expr) => {{
        let value = $value;
        let field = &mut $scan.$field;
        // SAFETY: a field of the caller's exclusive scratch slot.
        unsafe { core::ptr::write_volatile(field, value) }
    }};
}

/// Parks what the head scan needs about a write of `len` bytes at `written` on
/// connection `key` (`captured` of them copied into the scratch slot's data): the scan
/// runs in its own program (`scan_response_head`, reached by a tail call), because
/// verified inline after the copy loops it was verified once for every length they can
/// copy, past the verifier's limit.
#[inline(always)]
pub fn park(
    scan: &mut HeadScan,
    key: ConnKey,
    conn_id: u64,
    written: u64,
    len: u64,
    captured: usize,
) {
    scan.key = key;
    scan.conn_id = conn_id;
    scan.written = written;
    scan.len = len;
    scan.captured = captured as u64;
}

/// The parked write's head scan: opens the connection's body window if its head
/// announces one.
#[inline(always)]
pub fn scan_parked() {
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(scratch) = SCRATCH.get_ptr_mut(cpu) else {
        return;
    };
    // SAFETY: one slot per CPU; the program that parked the write jumped here without
    // anything running in between on this CPU.
    let scratch = unsafe { &mut *scratch };
    let Some(end) = announced_end(&scratch.data, &mut scratch.scan) else {
        return;
    };
    let scan = &scratch.scan;
    let Some(value) = CONNS.get_ptr_mut(&scan.key) else {
        return;
    };
    // SAFETY: entry pointer from a successful lookup.
    let value = unsafe { &mut *value };
    if value.conn_id == scan.conn_id {
        value.body_end = load!(scan.written) + end;
    }
}

/// Where the response body that the write's head announces ends, counted from the start
/// of the write; `None` unless the head announces a body that goes on past the write.
#[inline(always)]
fn announced_end(data: &[u8; 2 * MAX_CAPTURE], scan: &mut HeadScan) -> Option<u64> {
    if load!(scan.captured) < 16 || !status_has_body(data) {
        return None;
    }
    store!(scan.hi, 0);
    store!(scan.lo, 0);
    store!(scan.length, 0);
    store!(scan.digits, 0);
    store!(scan.state, 0);
    store!(scan.head_len, 0);
    for i in 0..HEAD_SCAN {
        if i as u64 >= load!(scan.captured) || !scan_byte(data[i], i, scan) {
            break;
        }
    }
    let state = load!(scan.state);
    let head_len = load!(scan.head_len) as usize;
    if state & (REFUSED | SEEN_LENGTH) != SEEN_LENGTH
        || load!(scan.digits) == 0
        || head_len == 0
        || head_len as u64 + 5 > load!(scan.captured)
    {
        return None;
    }
    // Body bytes follow the head, and they are not another response.
    if starts_with(data, head_len, b"HTTP/") {
        return None;
    }
    let end = head_len as u64 + load!(scan.length);
    (end > load!(scan.len)).then_some(end)
}

/// Takes the head's byte at `i`; false once the scan is over (the head ended, or it
/// announces nothing a window can be opened for).
#[inline(always)]
fn scan_byte(byte: u8, i: usize, scan: &mut HeadScan) -> bool {
    let mut state = load!(scan.state);
    if state & IN_LENGTH != 0 {
        let digits = load!(scan.digits);
        match byte {
            b'0'..=b'9' if state & DIGITS_ENDED == 0 && digits < 15 => {
                store!(
                    scan.length,
                    load!(scan.length) * 10 + u64::from(byte - b'0')
                );
                store!(scan.digits, digits + 1);
            }
            b' ' | b'\t' if digits > 0 => state |= DIGITS_ENDED,
            b' ' | b'\t' => {}
            b'\r' => state &= !IN_LENGTH,
            _ => {
                store!(scan.state, state | REFUSED);
                return false;
            }
        }
    }
    let lower = if byte.is_ascii_uppercase() {
        byte | 0x20
    } else {
        byte
    };
    let lo = load!(scan.lo);
    let hi = (load!(scan.hi) << 8) | (lo >> 56);
    let lo = (lo << 8) | u64::from(lower);
    store!(scan.hi, hi);
    store!(scan.lo, lo);
    if lo & 0xffff_ffff == HEAD_END {
        store!(scan.head_len, i as u64 + 1);
        store!(scan.state, state);
        return false;
    }
    if (hi, lo) == TRANSFER_ENCODING || ((hi, lo) == CONTENT_LENGTH && state & SEEN_LENGTH != 0) {
        store!(scan.state, state | REFUSED);
        return false;
    }
    if (hi, lo) == CONTENT_LENGTH {
        state |= SEEN_LENGTH | IN_LENGTH;
    }
    store!(scan.state, state);
    true
}

/// `HTTP/1.x NNN` with a status whose response has a body.
#[inline(always)]
fn status_has_body(data: &[u8; 2 * MAX_CAPTURE]) -> bool {
    if !starts_with(data, 0, b"HTTP/1.") || data[8] != b' ' {
        return false;
    }
    let digit = |b: u8| b.is_ascii_digit().then(|| u16::from(b - b'0'));
    let (Some(a), Some(b), Some(c)) = (digit(data[9]), digit(data[10]), digit(data[11])) else {
        return false;
    };
    let status = a * 100 + b * 10 + c;
    status >= 200 && status != 204 && status != 304
}

/// Whether `data[at..]` starts with `text` (compared byte by byte: a slice comparison
/// would call `bcmp`, which BPF has not).
#[inline(always)]
fn starts_with<const N: usize>(data: &[u8; 2 * MAX_CAPTURE], at: usize, text: &[u8; N]) -> bool {
    let at = at & (MAX_CAPTURE - 1);
    let mut i = 0;
    while i < N {
        if data[at + i] != text[i] {
            return false;
        }
        i += 1;
    }
    true
}
