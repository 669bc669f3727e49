//! Free TCP ports, unique among every test process on the host.
//!
//! Ports come from below the kernel's ephemeral range (32768+) so that no
//! client's outgoing connection can be holding one of them. A port handed out is
//! also locked (`flock` on a file named after it, held until the process exits), so
//! test binaries running at the same time, from this checkout or another, never
//! pick the same port between checking it and binding it.

use std::fs::{self, File};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::os::fd::AsRawFd as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};

const LOCK_DIR: &str = "/tmp/tracer-test-ports";

/// The locks of the ports this process handed out; never released before exit.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

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
        if is_free(port) && reserve(port) {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

/// Takes the host-wide lock of `port`; false if another process holds it.
fn reserve(port: u16) -> bool {
    if fs::create_dir_all(LOCK_DIR).is_err() {
        return true;
    }
    let Ok(file) = File::create(format!("{LOCK_DIR}/{port}")) else {
        return true;
    };
    // SAFETY: flock(2) on an fd we own; no memory is shared with the kernel.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return false;
    }
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
    true
}

fn is_free(port: u16) -> bool {
    // One at a time: a dual-stack [::] bind conflicts with a live 0.0.0.0 one.
    let v4 = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
    v4 && TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).is_ok()
}
