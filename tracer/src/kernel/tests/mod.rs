//! The kernel programs loaded for real and driven by this test process, in the style of
//! aya's integration tests: the process is the watched server (its tgid in
//! WATCHED_TGIDS, as for a server found at start) and accepts loopback connections on
//! the watched port. `syscalls` moves bytes through each traced syscall, `tls` through
//! stub OpenSSL functions of this test binary with the real uprobes attached, `bodies`
//! through uploads whose bodies the kernel counts without copying. The ring
//! buffer must carry exactly the events those calls make, and the loss counters must
//! move exactly as expected.
//!
//! Needs root (CI runs the tests as root): without it loading fails, and so does the
//! test, with the loader's message.
mod bodies;
mod syscalls;
mod tls;
mod watching;

use std::{
    net::{TcpListener, TcpStream},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tracer_common::{Direction, EventHeader};

use super::{
    check,
    events::{BodyCopy, ConnectionEvent, KernelEvent, decode},
    loader::{self, Loaded, Options},
    losses::KernelLosses,
};

/// The tests share one tgid: one at a time, so each sees only its own connections.
static SERIAL: Mutex<()> = Mutex::new(());
const WAIT: Duration = Duration::from_secs(10);

/// What a test expects of one data event: how much the kernel copied of the bytes moved.
#[derive(Debug, PartialEq, Eq)]
struct Transfer {
    direction: Direction,
    len: u32,
    copied: usize,
    body: BodyCopy,
}

/// What a test expects from one event of its connections.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Open {
        fd: i32,
    },
    Data {
        fd: i32,
        direction: Direction,
        bytes: Vec<u8>,
    },
    /// The connection turned out to be TLS: its plaintext comes from the SSL probes.
    Tls {
        fd: i32,
    },
    Close {
        fd: i32,
    },
}

struct Kernel {
    loaded: Loaded,
    listener: TcpListener,
    /// Dropped last: the next test loads only once these programs are gone.
    _serial: MutexGuard<'static, ()>,
}

impl Kernel {
    /// The programs, watching the port of a fresh loopback listener of this process,
    /// once no other test holds them.
    fn load() -> Self {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let tracefs = check::tracefs().expect("tracefs");
        let loaded = loader::load(&Options {
            ports: &[port],
            ringbuf_bytes: 1 << 20,
            tracefs: &tracefs,
        })
        .expect("loading the eBPF programs (as root)");
        loaded
            .tgids
            .watch(std::process::id())
            .expect("watching this process");
        Self {
            loaded,
            listener,
            _serial: serial,
        }
    }

    /// A client connected to the watched port, and the server's side of it.
    fn connection(&self) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(self.listener.local_addr().unwrap()).unwrap();
        let (server, _) = self.listener.accept().unwrap();
        (client, server)
    }

    /// The next `n` events of this process's connections, or what came before `WAIT`.
    fn events(&mut self, n: usize) -> Vec<(u64, Seen)> {
        self.collect(n, |event| match event {
            ConnectionEvent::Open { header, .. } => Some((header, Seen::Open { fd: header.fd })),
            ConnectionEvent::Data {
                header,
                direction,
                payload,
                ..
            } => Some((
                header,
                Seen::Data {
                    fd: header.fd,
                    direction,
                    bytes: payload.to_vec(),
                },
            )),
            ConnectionEvent::Close { header } => Some((header, Seen::Close { fd: header.fd })),
            ConnectionEvent::Tls { header } => Some((header, Seen::Tls { fd: header.fd })),
            ConnectionEvent::Exit { .. } => None,
        })
        .into_iter()
        .map(|(header, seen)| (header.conn_id, seen))
        .collect()
    }

    /// The next `n` data events of this process's connections: direction, bytes moved,
    /// bytes copied and how.
    fn transfers(&mut self, n: usize) -> Vec<Transfer> {
        self.collect(n, |event| match event {
            ConnectionEvent::Data {
                header,
                direction,
                len,
                payload,
                body,
                ..
            } => Some((
                header,
                Transfer {
                    direction,
                    len,
                    copied: payload.len(),
                    body,
                },
            )),
            _ => None,
        })
        .into_iter()
        .map(|(_, transfer)| transfer)
        .collect()
    }

    /// The next `n` events of this process's connections that `keep` keeps, or what
    /// came before `WAIT`.
    fn collect<T>(
        &mut self,
        n: usize,
        keep: impl Fn(ConnectionEvent<'_>) -> Option<(EventHeader, T)>,
    ) -> Vec<(EventHeader, T)> {
        self.collect_any(n, |event| match event {
            KernelEvent::Connection(event) => keep(event),
            KernelEvent::Listen { .. } | KernelEvent::IoUring { .. } => None,
        })
    }

    /// The next `n` events of this process that `keep` keeps, or what came before
    /// `WAIT`.
    fn collect_any<T>(
        &mut self,
        n: usize,
        keep: impl Fn(KernelEvent<'_>) -> Option<(EventHeader, T)>,
    ) -> Vec<(EventHeader, T)> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while seen.len() < n && Instant::now() < deadline {
            let Some(item) = self.loaded.events.next() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            if let Some((header, what)) = keep(decode(&item).expect("decodes"))
                && header.tgid == std::process::id()
            {
                seen.push((header, what));
            }
        }
        seen
    }

    fn losses(&self) -> KernelLosses {
        KernelLosses::read(&self.loaded.losses).expect("reading LOSSES")
    }
}

fn data(fd: i32, direction: Direction, bytes: &[u8]) -> Seen {
    Seen::Data {
        fd,
        direction,
        bytes: bytes.to_vec(),
    }
}
