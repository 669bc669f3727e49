//! The OpenSSL uprobes, attached by `TlsProbes` as for a server, on stub `SSL_set_fd`,
//! `SSL_read` and `SSL_write` functions of this test binary (it links no libssl, so the
//! binary itself is the candidate that exports them, as a static Node.js is). The stubs
//! move "ciphertext" over the socket or not, as OpenSSL does on a socket BIO or with
//! bytes it already holds or a memory BIO (Node.js), and hand back "plaintext": the
//! ring buffer must carry that plaintext on the right connection, never the ciphertext.
use std::{
    ffi::{c_int, c_void},
    io::{Read, Write},
    net::TcpStream,
    os::fd::AsRawFd,
};

use tracer_common::Direction;

use super::{Kernel, Seen, data};
use crate::kernel::tls::TlsProbes;

/// A TLS handshake record's start: the kernel marks a connection TLS by its first bytes.
const HELLO: &[u8] = b"\x16\x03\x01\x00\x05hello";
/// An application-data record, as ciphertext on the wire.
const RECORD: &[u8] = b"\x17\x03\x03\x00\x04ciph";

/// What a stub SSL object does; the probes see only its address.
struct StubSsl {
    fd: c_int,
    /// The call itself moves a record over the socket (a syscall inside the call, as
    /// OpenSSL on a socket BIO); otherwise it only uses what it holds.
    socket_io: bool,
    /// What the next `SSL_read` "decrypts".
    plaintext: &'static [u8],
}

impl StubSsl {
    fn new(socket_io: bool) -> Self {
        Self {
            fd: -1,
            socket_io,
            plaintext: b"",
        }
    }

    fn ptr(&mut self) -> *mut c_void {
        (self as *mut Self).cast()
    }

    fn read(&mut self, plaintext: &'static [u8]) -> usize {
        self.plaintext = plaintext;
        let mut buf = [0u8; 128];
        let n = SSL_read(self.ptr(), buf.as_mut_ptr().cast(), buf.len() as c_int);
        assert_eq!(&buf[..n as usize], plaintext);
        n as usize
    }

    fn write(&mut self, plaintext: &[u8]) -> usize {
        SSL_write(
            self.ptr(),
            plaintext.as_ptr().cast(),
            plaintext.len() as c_int,
        ) as usize
    }
}

/// `int SSL_set_fd(SSL *ssl, int fd)`.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn SSL_set_fd(ssl: *mut c_void, fd: c_int) -> c_int {
    // SAFETY: the tests pass a live StubSsl.
    unsafe { (*ssl.cast::<StubSsl>()).fd = fd };
    1
}

/// `int SSL_read(SSL *ssl, void *buf, int num)`.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn SSL_read(ssl: *mut c_void, buf: *mut c_void, num: c_int) -> c_int {
    // SAFETY: the tests pass a live StubSsl and a buffer of `num` bytes.
    let ssl = unsafe { &*ssl.cast::<StubSsl>() };
    if ssl.socket_io {
        let mut record = [0u8; 64];
        // SAFETY: a read into a local buffer of the given size.
        let n = unsafe { libc::read(ssl.fd, record.as_mut_ptr().cast(), record.len()) };
        assert_eq!(n, RECORD.len() as isize);
    }
    let n = ssl.plaintext.len().min(num as usize);
    // SAFETY: `buf` holds `num` >= `n` bytes and does not overlap the plaintext.
    unsafe { std::ptr::copy_nonoverlapping(ssl.plaintext.as_ptr(), buf.cast::<u8>(), n) };
    n as c_int
}

/// `int SSL_write(SSL *ssl, const void *buf, int num)`.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn SSL_write(ssl: *mut c_void, buf: *const c_void, num: c_int) -> c_int {
    // SAFETY: the tests pass a live StubSsl.
    let ssl = unsafe { &*ssl.cast::<StubSsl>() };
    if ssl.socket_io {
        // SAFETY: a write from a constant of the given size.
        let n = unsafe { libc::write(ssl.fd, RECORD.as_ptr().cast(), RECORD.len()) };
        assert_eq!(n, RECORD.len() as isize);
    }
    std::hint::black_box(buf);
    num
}

/// The programs, with the SSL probes attached to this process's stubs.
fn kernel_with_probes() -> (Kernel, TlsProbes) {
    let mut kernel = Kernel::load();
    let mut probes = TlsProbes::new();
    probes.inspect(&mut kernel.loaded.ebpf, std::process::id());
    assert_eq!(probes.libraries(), 1, "the stubs were not probed");
    (kernel, probes)
}

/// A connection whose first bytes, a handshake record read outside any SSL call, made
/// it TLS: the client, the server's side and its descriptor.
fn tls_connection(kernel: &Kernel) -> (TcpStream, TcpStream, i32) {
    let (mut client, mut server) = kernel.connection();
    client.write_all(HELLO).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(server.read(&mut buf).unwrap(), HELLO.len());
    let fd = server.as_raw_fd();
    (client, server, fd)
}

fn loss(kernel: &Kernel, name: &str) -> u64 {
    kernel
        .losses()
        .by_reason()
        .find(|(reason, _)| *reason == name)
        .map(|(_, n)| n)
        .expect("a known loss reason")
}

#[test]
fn plaintext_of_ssl_calls_on_a_socket_is_reported_on_its_connection() {
    let (mut kernel, _probes) = kernel_with_probes();
    // The handshake is read outside SSL_read: its first bytes make the connection TLS.
    let (mut client, server, fd) = tls_connection(&kernel);
    let mut buf = [0u8; 64];
    let mut ssl = StubSsl::new(true);
    assert_eq!(SSL_set_fd(ssl.ptr(), fd), 1);
    // A record read inside SSL_read, and one written inside SSL_write.
    client.write_all(RECORD).unwrap();
    ssl.read(b"GET /tls HTTP/1.1\r\n\r\n");
    ssl.write(b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(client.read(&mut buf).unwrap(), RECORD.len());
    // Bytes OpenSSL already held: no syscall inside; the socket is SSL_set_fd's.
    ssl.socket_io = false;
    ssl.read(b"GET /held HTTP/1.1\r\n\r\n");
    drop(server);
    let seen = kernel.events(6);

    assert_eq!(
        seen.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        [
            &Seen::Open { fd },
            &Seen::Tls { fd },
            &data(fd, Direction::Ingress, b"GET /tls HTTP/1.1\r\n\r\n"),
            &data(fd, Direction::Egress, b"HTTP/1.1 200 OK\r\n\r\n"),
            &data(fd, Direction::Ingress, b"GET /held HTTP/1.1\r\n\r\n"),
            &Seen::Close { fd },
        ]
    );
    assert!(seen.iter().all(|(id, _)| *id == seen[0].0));
    assert_eq!(kernel.losses().total(), 0, "{:?}", kernel.losses());
    drop(client);
}

#[test]
fn a_memory_bio_takes_the_tls_socket_its_thread_read_and_none_is_counted() {
    let (mut kernel, _probes) = kernel_with_probes();
    let (mut client, mut server, fd) = tls_connection(&kernel);
    let mut buf = [0u8; 64];
    // Never given a socket, and this thread read none since the connection became TLS:
    // the plaintext cannot be placed, so it is counted, not guessed.
    let mut ssl = StubSsl::new(false);
    ssl.read(b"GET /nowhere HTTP/1.1\r\n\r\n");
    assert_eq!(loss(&kernel, "ssl_socket_unknown"), 1);
    // The server reads the ciphertext itself and feeds it to OpenSSL (Node.js).
    client.write_all(RECORD).unwrap();
    assert_eq!(server.read(&mut buf).unwrap(), RECORD.len());
    ssl.read(b"GET /bio HTTP/1.1\r\n\r\n");
    ssl.write(b"HTTP/1.1 204 No Content\r\n\r\n");
    server.write_all(RECORD).unwrap();
    drop(server);
    let seen = kernel.events(5);

    assert_eq!(
        seen.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        [
            &Seen::Open { fd },
            &Seen::Tls { fd },
            &data(fd, Direction::Ingress, b"GET /bio HTTP/1.1\r\n\r\n"),
            &data(fd, Direction::Egress, b"HTTP/1.1 204 No Content\r\n\r\n"),
            &Seen::Close { fd },
        ]
    );
    let losses = kernel.losses();
    assert_eq!(losses.total(), 1, "{losses:?}");
    drop(client);
}
