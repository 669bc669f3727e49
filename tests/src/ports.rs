//! Free TCP ports, unique within this process.
//!
//! Ports come from below the kernel's ephemeral range (32768+) so that no
//! client's outgoing connection can be holding one of them.

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};

const FIRST: u16 = 20_000;
const SPAN: u16 = 12_000;

static NEXT: AtomicU16 = AtomicU16::new(0);

/// A port on which nothing listens on any IPv4 or IPv6 address right now.
pub fn free_port() -> u16 {
    // Start at a pid-dependent offset so that test binaries run one after
    // another don't reuse the previous one's ports (TIME_WAIT, slow exits).
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(SPAN)) as u16 + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        let port = FIRST + offset;
        if is_free(port) {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

fn is_free(port: u16) -> bool {
    // One at a time: a dual-stack [::] bind conflicts with a live 0.0.0.0 one.
    let v4 = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
    v4 && TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).is_ok()
}
