//! Python servers: the stock `http.server` and a small scripted one for
//! behaviours the stock one lacks.

use super::{spawn_logged, wait_listening, wait_logged};
use crate::process::Guarded;
use crate::tls::Certificate;
use anyhow::{Context, Result};
use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// `python3 -m http.server` serving a temp dir.
pub struct PyHttpServer {
    // Declared first: the server dies before its directory is removed.
    child: Guarded,
    dir: TempDir,
}

impl PyHttpServer {
    /// Serves a temp dir holding `hello.txt` on `bind:port`. `protocol` is
    /// `HTTP/1.0` (the module's default: one request per connection) or
    /// `HTTP/1.1` (keep-alive and pipelining).
    pub fn start(bind: IpAddr, port: u16, protocol: &str) -> Result<Self> {
        Self::spawn(bind, port, protocol, &[])
    }

    /// With `--cgi` on 127.0.0.1, HTTP/1.0 (a script's output ends with the connection):
    /// `/cgi-bin/hello.py` prints a line and
    /// `/cgi-bin/count.py` the size of the body it read. Python writes the status line
    /// itself, then forks the script with the socket dup2'd onto its stdin and stdout:
    /// the rest of the response, and a POST's body, move on the child's descriptors.
    pub fn start_cgi(port: u16) -> Result<Self> {
        let scripts: &[(&str, &str)] = &[
            (
                "hello.py",
                "print('Content-Type: text/plain')\nprint()\nprint('hello from cgi')\n",
            ),
            (
                "count.py",
                "import os, sys\n\
                 body = sys.stdin.buffer.read(int(os.environ.get('CONTENT_LENGTH') or 0))\n\
                 print('Content-Type: text/plain')\nprint()\nprint(len(body))\n",
            ),
        ];
        Self::spawn(Ipv4Addr::LOCALHOST.into(), port, "HTTP/1.0", scripts)
    }

    fn spawn(bind: IpAddr, port: u16, protocol: &str, cgi: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating http.server dir")?;
        let www = dir.path().join("www");
        std::fs::create_dir(&www)?;
        std::fs::write(www.join("hello.txt"), "hello from python\n")?;
        if !cgi.is_empty() {
            let bin = www.join("cgi-bin");
            std::fs::create_dir(&bin)?;
            for (name, body) in cgi {
                let path = bin.join(name);
                std::fs::write(&path, format!("#!/usr/bin/env python3\n{body}"))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        let log = dir.path().join("server.log");
        let mut command = Command::new(python());
        command.args(["-m", "http.server"]);
        if !cgi.is_empty() {
            command.arg("--cgi");
        }
        command
            .arg("--bind")
            .arg(bind.to_string())
            .arg("--directory")
            .arg(&www)
            .args(["--protocol", protocol])
            .arg(port.to_string());
        let mut child = spawn_logged(&mut command, "python3 -m http.server", &log)?;
        wait_listening(&mut child, probe_addr(bind, port), &log)?;
        Ok(Self { child, dir })
    }

    /// Its own log's request lines so far, as `METHOD PATH STATUS`
    /// (`127.0.0.1 - - [...] "GET /x HTTP/1.1" 200 -`).
    pub fn logged_requests(&self) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(self.dir.path().join("server.log"))
            .context("reading http.server's log")?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let mut quoted = line.split('"');
                let request = quoted.nth(1)?;
                let status = quoted.next()?.split_whitespace().next()?;
                let mut parts = request.split(' ');
                Some(format!("{} {} {status}", parts.next()?, parts.next()?))
            })
            .collect())
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The served directory: files written here are served at `/<name>`.
    pub fn www(&self) -> PathBuf {
        self.dir.path().join("www")
    }
}

/// A threaded HTTP/1.1 server with scripted behaviours on 127.0.0.1:
/// - `/status/N`: status N with a short body;
/// - `/chunked?sizes=a,b,c`: a chunked response with chunks of those sizes;
/// - `/close?size=N`: an HTTP/1.0 response of N bytes delimited by closing;
/// - `/sleep?ms=N`: a 200 after N ms (or nothing, if the client is gone);
/// - `/upgrade`: `101 Switching Protocols`, then echoes raw bytes until EOF;
/// - anything else: reads the request body (Content-Length or chunked,
///   answering `Expect: 100-continue`) and replies with its size in decimal.
pub struct ScriptServer {
    child: Guarded,
    _dir: TempDir,
}

/// When the scripted server loads its TLS library.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TlsLoad {
    AtStart,
    AtFirstConnection,
}

const SCRIPT: &str = r#"
import http.server
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return total
                total += len(self.rfile.read(size))
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        total = 0
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            total += len(chunk)
            remaining -= len(chunk)
        return total

    def reply(self, status, text):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self):
        path, _, query = self.path.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        received = self.read_body()
        if path.startswith("/status/"):
            self.reply(int(path[len("/status/"):]), "status\n")
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for size in (int(s) for s in params.get("sizes", "1000").split(",")):
                self.wfile.write(b"%x\r\n" % size + b"c" * size + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/sleep":
            time.sleep(int(params.get("ms", "100")) / 1000)
            try:
                self.reply(200, "slept\n")
            except OSError:
                self.close_connection = True
        elif path == "/upgrade":
            self.send_response(101)
            self.send_header("Upgrade", "echo")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            while True:
                data = self.rfile.read1(65536)
                if not data:
                    break
                self.wfile.write(data)
            self.close_connection = True
        elif path == "/close":
            size = int(params.get("size", "1000"))
            self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            self.wfile.write(b"z" * size)
            self.close_connection = True
        else:
            self.reply(200, "%d\n" % received)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_any

    def log_message(self, format, *args):
        sys.stderr.write("%s\n" % (format % args))


def tls_context():
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    return context


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    tls = len(sys.argv) > 3
    # Loaded before listen(), as servers that read their certificates at start do;
    # with "late", at the first connection, which maps libssl only then.
    context = tls_context() if tls and sys.argv[4:] != ["late"] else None

    def get_request(self):
        sock, addr = super().get_request()
        if self.tls:
            if self.context is None:
                self.context = tls_context()
            sock = self.context.wrap_socket(sock, server_side=True)
        return sock, addr


server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
print("listening", file=sys.stderr, flush=True)
server.serve_forever()
"#;

impl ScriptServer {
    pub fn start(port: u16) -> Result<Self> {
        Self::spawn(port, None, None)
    }

    /// The same behaviours over TLS (Python's ssl module: SSL_read_ex / SSL_write_ex).
    pub fn start_tls(port: u16, cert: &Certificate) -> Result<Self> {
        Self::spawn(port, Some((cert, TlsLoad::AtStart)), None)
    }

    /// Over TLS, with Python's ssl module (and so libssl) loaded only when the first
    /// connection is accepted, after listen(): what a server that loads its TLS library
    /// lazily looks like to the tracer.
    pub fn start_tls_loaded_late(port: u16, cert: &Certificate) -> Result<Self> {
        Self::spawn(port, Some((cert, TlsLoad::AtFirstConnection)), None)
    }

    /// Over TLS, in a mount namespace of its own where `libssl` is a private copy mounted
    /// over the host's file: what a container with its own OpenSSL looks like to the host.
    pub fn start_tls_with_private_libssl(
        port: u16,
        cert: &Certificate,
        copy: &Path,
        host_libssl: &Path,
    ) -> Result<Self> {
        Self::spawn(
            port,
            Some((cert, TlsLoad::AtStart)),
            Some((copy, host_libssl)),
        )
    }

    fn spawn(
        port: u16,
        tls: Option<(&Certificate, TlsLoad)>,
        bind: Option<(&Path, &Path)>,
    ) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating script server dir")?;
        let script = dir.path().join("server.py");
        std::fs::write(&script, SCRIPT)?;
        let log = dir.path().join("server.log");
        let mut command = match bind {
            Some((source, target)) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#)
                    .arg("sh")
                    .arg(source)
                    .arg(target)
                    .arg(python());
                c
            }
            None => Command::new(python()),
        };
        command.arg(&script).arg(port.to_string());
        if let Some((cert, load)) = tls {
            command.arg(cert.cert()).arg(cert.key());
            if load == TlsLoad::AtFirstConnection {
                command.arg("late");
            }
        }
        let mut child = spawn_logged(&mut command, "python3 server.py", &log)?;
        // Not a probe connection: it would be a connection the tracer sees (a TLS one
        // without plaintext), and it would load a late server's TLS library.
        wait_logged(&mut child, "listening", &log)?;
        Ok(Self { child, _dir: dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// How `MovingServer` moves a connection's bytes.
#[derive(Clone, Copy, Debug)]
pub enum Moves {
    /// Every body with `splice(2)`, as a proxy forwarding bodies between sockets does:
    /// it peeks for the head, reads exactly the head, splices the request body into a
    /// pipe (and discards it there), and sends the response body from a pipe.
    Splice,
    /// Every byte with `preadv2(2)` and `pwritev2(2)` at the current position (Python's
    /// `os.preadv` and `os.pwritev`), each response as its head and body in one call.
    VectoredWithFlags,
}

/// An HTTP/1.1 keep-alive server on 127.0.0.1 that moves its bytes in one of the less
/// common ways (`Moves`), and answers `/bytes/N` with N bytes. It logs
/// `METHOD PATH STATUS REQUEST_BODY RESPONSE_BODY` per request (`access_log`), as it
/// counted them. One connection at a time.
pub struct MovingServer {
    child: Guarded,
    dir: TempDir,
}

const MOVING_SCRIPT: &str = r#"
import os
import socket
import sys
import time

PIECE = 16384


def parse(head):
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    size = int(path[len("/bytes/"):]) if path.startswith("/bytes/") else 0
    return method, path, length, size


def read_head(conn):
    # Peeked, not read: the body must stay in the socket for splice.
    while True:
        data = conn.recv(65536, socket.MSG_PEEK)
        if not data:
            return None
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return conn.recv(end + 4, socket.MSG_WAITALL)
        time.sleep(0.001)


def drain(fd, n):
    while n > 0:
        n -= len(os.read(fd, min(n, PIECE)))


def serve_splice(conn, log):
    pipe_r, pipe_w = os.pipe()
    try:
        while True:
            head = read_head(conn)
            if head is None:
                return
            method, path, length, size = parse(head)
            received = 0
            while received < length:
                n = os.splice(conn.fileno(), pipe_w, min(length - received, PIECE))
                if n == 0:
                    return
                drain(pipe_r, n)
                received += n
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            sent = 0
            while sent < size:
                piece = min(size - sent, PIECE)
                os.write(pipe_w, b"s" * piece)
                left = piece
                while left > 0:
                    left -= os.splice(pipe_r, conn.fileno(), left)
                sent += piece
            log.write("%s %s 200 %d %d\n" % (method, path, received, sent))
            log.flush()
    finally:
        os.close(pipe_r)
        os.close(pipe_w)


def read_vectored(fd, n):
    buf = bytearray(n)
    # Offset -1: the current position, the only one a socket takes (preadv2).
    got = os.preadv(fd, [buf], -1)
    return bytes(buf[:got])


def serve_vectored(conn, log):
    fd = conn.fileno()
    pending = b""
    while True:
        while b"\r\n\r\n" not in pending:
            data = read_vectored(fd, PIECE)
            if not data:
                return
            pending += data
        end = pending.index(b"\r\n\r\n") + 4
        method, path, length, size = parse(pending[:end])
        received = min(len(pending) - end, length)
        pending = pending[end + received:]
        while received < length:
            data = read_vectored(fd, min(length - received, PIECE))
            if not data:
                return
            received += len(data)
        parts = [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size, b"v" * size]
        left = len(parts[0]) + size
        while left > 0:
            left -= os.pwritev(fd, parts, -1)
            whole = b"".join(parts)
            parts = [whole[len(whole) - left:]]
        log.write("%s %s 200 %d %d\n" % (method, path, received, size))
        log.flush()


serve = serve_splice if sys.argv[3] == "splice" else serve_vectored
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(16)
print("listening", file=sys.stderr, flush=True)
with open(sys.argv[2], "a") as log:
    while True:
        conn, _ = listener.accept()
        with conn:
            serve(conn, log)
"#;

impl MovingServer {
    pub fn start(port: u16, moves: Moves) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating the server's dir")?;
        let access_log = dir.path().join("access.log");
        let port = port.to_string();
        let mode = match moves {
            Moves::Splice => "splice",
            Moves::VectoredWithFlags => "vectored",
        };
        let args = [port.as_ref(), access_log.as_os_str(), mode.as_ref()];
        let child = run_script(dir.path(), "moving.py", MOVING_SCRIPT, &args, "listening")?;
        Ok(Self { child, dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The server's own log, once it has `lines` lines (it logs a request after
    /// answering it) or after 10 s.
    pub fn access_log(&self, lines: usize) -> Result<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(self.dir.path().join("access.log"))
                .context("reading the server's log")?;
            let logged: Vec<String> = text.lines().map(str::to_owned).collect();
            if logged.len() >= lines || Instant::now() > deadline {
                return Ok(logged);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1 that sets up an io_uring (through libc's
/// `syscall`, as liburing does), either before it listens or when its first connection
/// arrives; it serves with plain recv and send, one request per connection, answering
/// `ok`. What a server that moves some of its I/O to a ring looks like to the tracer.
pub struct RingServer {
    child: Guarded,
    _dir: TempDir,
}

/// When the ring server sets up its ring.
#[derive(Clone, Copy)]
pub enum RingSetup {
    BeforeListening,
    AtFirstConnection,
}

const RING_SCRIPT: &str = r#"
import ctypes
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)
SYS_io_uring_setup = 425
rings = []


def set_up_ring():
    params = ctypes.create_string_buffer(120)
    fd = libc.syscall(SYS_io_uring_setup, 4, params)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "io_uring_setup")
    rings.append(fd)


if sys.argv[2] == "early":
    set_up_ring()
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(16)
print("listening", file=sys.stderr, flush=True)
serve_ok(listener, lambda: rings or set_up_ring())
"#;

impl RingServer {
    pub fn start(port: u16, setup: RingSetup) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating ring server dir")?;
        let when = match setup {
            RingSetup::BeforeListening => "early",
            RingSetup::AtFirstConnection => "late",
        };
        let port = port.to_string();
        let args = [port.as_ref(), OsStr::new(when)];
        let child = run_script(dir.path(), "ring.py", RING_SCRIPT, &args, "listening")?;
        Ok(Self { child, _dir: dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// A listener handed from one process to another over a unix socket, as a proxy's
/// seamless reload hands its listeners to the new process (`SCM_RIGHTS`): the giver
/// listens on 127.0.0.1 and sends the listener, the taker (a process of its own, not the
/// giver's child) receives it and serves HTTP/1.1 on it, one request per connection,
/// answering `ok`. The giver keeps its copy open and never accepts.
pub struct PassedListener {
    giver: Guarded,
    taker: Guarded,
    _dir: TempDir,
}

const PASS_SCRIPT: &str = r#"
import os
import socket
import sys
import time

role, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if role == "give":
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    channel = socket.socket(socket.AF_UNIX)
    channel.connect(path)
    socket.send_fds(channel, [b"listener"], [listener.fileno()])
    print("given", file=sys.stderr, flush=True)
    while True:
        time.sleep(60)
else:
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    print("waiting", file=sys.stderr, flush=True)
    channel, _ = server.accept()
    _, fds, _, _ = socket.recv_fds(channel, 64, 1)
    listener = socket.socket(fileno=fds[0])
    print("listening", file=sys.stderr, flush=True)
    serve_ok(listener, lambda: None)
"#;

impl PassedListener {
    pub fn start(port: u16) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating passed listener dir")?;
        let channel = dir.path().join("channel.sock");
        let port = port.to_string();
        let args = |role| [OsStr::new(role), port.as_ref(), channel.as_os_str()];
        let mut taker = run_script(dir.path(), "take.py", PASS_SCRIPT, &args("take"), "waiting")?;
        let giver = run_script(dir.path(), "give.py", PASS_SCRIPT, &args("give"), "given")?;
        wait_logged(&mut taker, "listening", &dir.path().join("take.py.log"))?;
        Ok(Self {
            giver,
            taker,
            _dir: dir,
        })
    }

    pub fn giver_pid(&self) -> u32 {
        self.giver.pid()
    }

    pub fn taker_pid(&self) -> u32 {
        self.taker.pid()
    }
}

/// What the minimal servers do once they hold a listener: for each connection, call
/// `before`, read a request head and answer `ok`, closing the connection.
const SERVE_OK: &str = r#"
def serve_ok(listener, before):
    while True:
        conn, _ = listener.accept()
        before()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(4096)
                if not more:
                    break
                data += more
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
"#;

/// Saves `text` (after `SERVE_OK`, which it may call) as `name` in `dir` and runs it
/// with `args` until it logs `ready` (its output goes to `<name>.log` there).
fn run_script(dir: &Path, name: &str, text: &str, args: &[&OsStr], ready: &str) -> Result<Guarded> {
    let script = dir.join(name);
    std::fs::write(&script, format!("{SERVE_OK}{text}"))
        .with_context(|| format!("writing {name}"))?;
    let log = dir.join(format!("{name}.log"));
    let mut command = Command::new(python());
    command.arg(&script).args(args);
    let mut child = spawn_logged(&mut command, &format!("python3 {name}"), &log)?;
    wait_logged(&mut child, ready, &log)?;
    Ok(child)
}

fn probe_addr(bind: IpAddr, port: u16) -> SocketAddr {
    let ip = match bind {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, port)
}
