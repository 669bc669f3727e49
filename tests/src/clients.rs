//! HTTP clients: curl for what a user would type, raw sockets for byte-exact
//! control (pipelining, split writes, junk).

use anyhow::{Context, Result, anyhow, bail};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `curl -sS --max-time 30 ARGS...` and returns its stdout; fails if curl
/// fails (HTTP error statuses are not failures without `-f`).
pub fn curl(args: &[&str]) -> Result<String> {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .context("running curl")?;
    if !output.status.success() {
        bail!(
            "curl {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `http://127.0.0.1:PORT/PATH` (`path` starts with '/').
pub fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// A `GET path HTTP/1.1` request head for `host`.
pub fn get(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: e2e-raw\r\n\r\n").into_bytes()
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One client TCP connection with a read buffer.
pub struct RawConn {
    stream: TcpStream,
    /// The server's port, kept: after a reset the socket no longer knows its peer.
    server_port: u16,
    buf: Vec<u8>,
}

impl RawConn {
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Self> {
        let stream = TcpStream::connect(addr).context("connecting")?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        // Each write becomes its own segment: split-write tests rely on it.
        stream.set_nodelay(true)?;
        Ok(Self {
            server_port: stream.peer_addr()?.port(),
            stream,
            buf: Vec::new(),
        })
    }

    pub fn local_port(&self) -> Result<u16> {
        Ok(self.stream.local_addr()?.port())
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).context("writing to server")
    }

    /// Waits until the server holds nothing unread from this connection: it read what
    /// was sent, or closed or shut down its side (then it reads no more). On loopback,
    /// sent bytes are in the server's receive queue when `send` returns.
    pub fn wait_until_read(&self) -> Result<()> {
        const ESTABLISHED: &str = "01";
        let local = format!(":{:04X}", self.server_port);
        let remote = format!(":{:04X}", self.local_port()?);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut unread = false;
            for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
                let table = std::fs::read_to_string(table)?;
                unread |= table.lines().skip(1).any(|line| {
                    // sl local_address rem_address st tx_queue:rx_queue ...
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.len() > 4
                        && fields[1].ends_with(&local)
                        && fields[2].ends_with(&remote)
                        && fields[3] == ESTABLISHED
                        && !fields[4].ends_with(":00000000")
                });
            }
            if !unread {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the server did not read what was sent within 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Writes `bytes` in pieces of 1..=`max_piece` bytes with `pause` between
    /// them, so the server (and the tracer) see many partial reads.
    pub fn send_split(&mut self, bytes: &[u8], max_piece: usize, pause: Duration) -> Result<()> {
        let mut sizes = (1..=max_piece.max(1)).cycle();
        let mut offset = 0;
        while offset < bytes.len() {
            let end = (offset + sizes.next().unwrap_or(1)).min(bytes.len());
            self.send(&bytes[offset..end])?;
            offset = end;
            std::thread::sleep(pause);
        }
        Ok(())
    }

    /// Reads one final response (skipping 1xx interim ones) to a request
    /// with `method`, which decides whether a body follows.
    pub fn read_response(&mut self, method: &str) -> Result<Response> {
        loop {
            let head_end = self.fill_until_head()?;
            let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
            self.buf.drain(..head_end + 4);
            let (status, headers) = parse_head(&head)?;
            // 101 ends HTTP on the connection; other 1xx precede the real answer.
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let mut response = Response {
                status,
                headers,
                body: Vec::new(),
            };
            let bodiless = method == "HEAD" || status == 101 || status == 204 || status == 304;
            if bodiless {
                return Ok(response);
            }
            response.body = if response
                .header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
            {
                self.read_chunked()?
            } else if let Some(length) = response.header("content-length") {
                let length: usize = length.trim().parse().context("bad Content-Length")?;
                self.take(length)?
            } else {
                self.read_to_end()?
            };
            return Ok(response);
        }
    }

    /// Exactly `length` bytes (raw, after an upgrade for instance).
    pub fn read_bytes(&mut self, length: usize) -> Result<Vec<u8>> {
        self.take(length)
    }

    /// Closes with a TCP reset instead of a FIN, as an aborting client does:
    /// the server's next write fails rather than landing in a buffer.
    pub fn reset(self) -> Result<()> {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the fd is open for the lifetime of `self.stream`, and
        // `linger` is a valid SO_LINGER value of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("setting SO_LINGER 0");
        }
        Ok(())
    }

    /// What the server sends until it sends nothing for `quiet`, closes or resets: a
    /// client waiting for its answers before it closes.
    pub fn read_until_quiet(&mut self, quiet: Duration) -> Result<Vec<u8>> {
        use std::io::ErrorKind::{ConnectionReset, TimedOut, WouldBlock};
        self.stream.set_read_timeout(Some(quiet))?;
        let mut chunk = [0u8; 16384];
        let read = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break Ok(()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), WouldBlock | TimedOut | ConnectionReset) => {
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
        };
        self.stream.set_read_timeout(Some(IO_TIMEOUT))?;
        read.context("reading the server's answers")?;
        Ok(std::mem::take(&mut self.buf))
    }

    /// Everything until the server closes.
    pub fn read_to_end(&mut self) -> Result<Vec<u8>> {
        self.stream
            .read_to_end(&mut self.buf)
            .context("reading to EOF")?;
        Ok(std::mem::take(&mut self.buf))
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk).context("reading response")?;
        if n == 0 {
            bail!("server closed the connection mid-response");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn fill_until_head(&mut self) -> Result<usize> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                return Ok(end);
            }
            self.fill()?;
        }
    }

    fn take(&mut self, length: usize) -> Result<Vec<u8>> {
        while self.buf.len() < length {
            self.fill()?;
        }
        Ok(self.buf.drain(..length).collect())
    }

    fn take_line(&mut self) -> Result<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.take_line()?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .with_context(|| format!("bad chunk size line `{line}`"))?;
            if size == 0 {
                while !self.take_line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.take(size)?);
            self.take_line()?;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &str) -> Result<(u16, Vec<(String, String)>)> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line `{status_line}`"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok((status, headers))
}

/// Deterministic binary noise whose first byte is no ASCII letter, so it can
/// never start like a request method.
pub fn junk_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    if let Some(first) = bytes.first_mut() {
        *first |= 0x80;
    }
    bytes
}

/// The start of a TLS 1.2/1.3 ClientHello record, as a TLS client would send
/// to an HTTP port by mistake.
pub fn tls_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x03];
    hello.extend(junk_bytes(32, 7));
    hello.push(0); // no session id
    hello.extend([0x00, 0x04, 0x13, 0x01, 0x13, 0x02]); // two TLS 1.3 suites
    hello.extend([0x01, 0x00]); // null compression
    hello.extend([0x00, 0x00]); // no extensions
    let mut handshake = vec![0x01];
    handshake.extend(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn junk_never_starts_with_a_letter() {
        for seed in 0..100 {
            assert!(!junk_bytes(8, seed)[0].is_ascii_alphabetic());
        }
    }

    #[test]
    fn client_hello_lengths_are_consistent() {
        let record = tls_client_hello();
        assert_eq!(record[0], 0x16);
        let len = u16::from_be_bytes([record[3], record[4]]) as usize;
        assert_eq!(record.len(), 5 + len);
    }

    #[test]
    fn head_parsing() {
        let (status, headers) = parse_head("HTTP/1.1 204 No Content\r\nX-A: b").unwrap();
        assert_eq!(status, 204);
        assert_eq!(headers, vec![("X-A".to_owned(), "b".to_owned())]);
    }
}
