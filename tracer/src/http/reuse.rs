//! Buffers of header fields, reused instead of allocated for each head.
//!
//! Every request head becomes one [`Headers`](super::types::Headers): a copy of its
//! bytes and a list of where each field lies. At 100,000 requests a second those two
//! allocations and their frees were two of the tracer's three per record (the third,
//! the list of exchanges a connection completed, is lent by the connection tracker).
//! A head's buffers come back here when its record has been written, on the same
//! thread (the tracer's event loop), and the next head takes them.
//!
//! Bounded both ways so that a burst of huge heads does not stay resident: at most
//! `MAX_KEPT` of each kind, and none larger than `MAX_KEPT_BYTES` (head bytes) or
//! `MAX_KEPT_SPANS` (fields): at most 2.5 MiB kept, about 100 KiB for ordinary heads.

use std::cell::RefCell;

/// Twice a batch of records (256), all of whose heads come back at once when the batch
/// has been written.
const MAX_KEPT: usize = 512;
/// Heads of ordinary clients fit; a larger buffer is freed instead of kept.
const MAX_KEPT_BYTES: usize = 4096;
/// Fields of ordinary heads fit (16 bytes each).
const MAX_KEPT_SPANS: usize = 64;

#[derive(Default)]
struct Free {
    bytes: Vec<Vec<u8>>,
    spans: Vec<Vec<[u32; 4]>>,
}

thread_local! {
    static FREE: RefCell<Free> = RefCell::new(Free::default());
}

/// An empty buffer with room for `capacity` bytes.
pub(super) fn bytes(capacity: usize) -> Vec<u8> {
    take(|free| free.bytes.pop(), capacity)
}

/// An empty list with room for `capacity` spans.
pub(super) fn spans(capacity: usize) -> Vec<[u32; 4]> {
    take(|free| free.spans.pop(), capacity)
}

/// A kept vector `pick` takes from the free lists, or a new one, with room for
/// `capacity`.
fn take<T>(pick: impl FnOnce(&mut Free) -> Option<Vec<T>>, capacity: usize) -> Vec<T> {
    let mut kept = FREE
        .try_with(|free| pick(&mut free.borrow_mut()))
        .ok()
        .flatten()
        .unwrap_or_default();
    kept.reserve(capacity);
    kept
}

/// Takes a head's buffers back for the next head; drops what the bounds exclude.
pub(super) fn give_back(mut bytes: Vec<u8>, mut spans: Vec<[u32; 4]>) {
    // During the thread's teardown the free lists may already be gone: then the
    // buffers are simply freed.
    let _ = FREE.try_with(|free| {
        let mut free = free.borrow_mut();
        if bytes.capacity() > 0 && bytes.capacity() <= MAX_KEPT_BYTES && free.bytes.len() < MAX_KEPT
        {
            bytes.clear();
            free.bytes.push(bytes);
        }
        if spans.capacity() > 0 && spans.capacity() <= MAX_KEPT_SPANS && free.spans.len() < MAX_KEPT
        {
            spans.clear();
            free.spans.push(spans);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> (usize, usize) {
        FREE.with(|free| {
            let free = free.borrow();
            (free.bytes.len(), free.spans.len())
        })
    }

    #[test]
    fn a_returned_buffer_is_the_next_one_taken() {
        let mut first = bytes(100);
        first.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let address = first.as_ptr();
        give_back(first, spans(4));
        let again = bytes(50);
        assert_eq!(again.as_ptr(), address, "the same buffer, reused");
        assert!(again.is_empty(), "handed out empty");
        assert!(again.capacity() >= 100);
    }

    #[test]
    fn large_buffers_and_a_full_list_are_freed_not_kept() {
        let before = kept();
        give_back(
            Vec::with_capacity(MAX_KEPT_BYTES + 1),
            Vec::with_capacity(MAX_KEPT_SPANS + 1),
        );
        assert_eq!(kept(), before, "a huge head's buffers are not kept");
        for _ in 0..MAX_KEPT + 10 {
            give_back(Vec::with_capacity(64), Vec::with_capacity(4));
        }
        assert_eq!(kept(), (MAX_KEPT, MAX_KEPT), "at most MAX_KEPT of each");
    }
}
