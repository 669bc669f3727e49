//! The detections scenario's client: HTTP/1.1 keep-alive connections from 127.0.0.2
//! (the tracer's trusted proxy), each request naming its public client in
//! `X-Forwarded-For`, so a whole population of users and attackers on loopback reaches
//! nginx as it would through an ingress.
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    os::fd::FromRawFd as _,
};

use anyhow::{Context, Result, bail};

/// The proxy address the tracer trusts.
pub const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// One request of the scenario.
#[derive(Clone, Debug)]
pub struct Request {
    /// The public client, sent as `X-Forwarded-For`.
    pub client: String,
    pub path: String,
    /// Basic credentials.
    pub basic: Option<(String, String)>,
    pub bearer: Option<String>,
    pub api_key: Option<String>,
    pub user_agent: String,
}

impl Request {
    pub fn new(client: &str, path: &str) -> Self {
        Self {
            client: client.to_owned(),
            path: path.to_owned(),
            basic: None,
            bearer: None,
            api_key: None,
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".to_owned(),
        }
    }

    pub fn basic(mut self, user: &str, password: &str) -> Self {
        self.basic = Some((user.to_owned(), password.to_owned()));
        self
    }

    pub fn bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_owned());
        self
    }

    pub fn api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.to_owned());
        self
    }

    pub fn user_agent(mut self, ua: &str) -> Self {
        self.user_agent = ua.to_owned();
        self
    }

    fn head(&self) -> String {
        use base64::Engine as _;
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: app.example\r\nUser-Agent: {}\r\nX-Forwarded-For: {}\r\n",
            self.path, self.user_agent, self.client
        );
        if let Some((user, password)) = &self.basic {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            head.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        if let Some(token) = &self.bearer {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(key) = &self.api_key {
            head.push_str(&format!("X-API-Key: {key}\r\n"));
        }
        head.push_str("\r\n");
        head
    }
}

/// Keep-alive connections to one port from [`PROXY`], one per client address, so each
/// client's requests ride one connection like a browser's.
pub struct Clients {
    port: u16,
    connections: HashMap<String, BufReader<TcpStream>>,
    pub sent: u64,
}

impl Clients {
    pub fn new(port: u16) -> Self {
        Self {
            port,
            connections: HashMap::new(),
            sent: 0,
        }
    }

    /// Sends `request` and reads the response; its status.
    pub fn send(&mut self, request: &Request) -> Result<u16> {
        let port = self.port;
        let conn = match self.connections.entry(request.client.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(BufReader::new(connect(port)?))
            }
        };
        conn.get_mut().write_all(request.head().as_bytes())?;
        let status = read_response(conn).with_context(|| format!("GET {}", request.path))?;
        self.sent += 1;
        Ok(status)
    }
}

fn read_response(conn: &mut BufReader<TcpStream>) -> Result<u16> {
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line: {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            bail!("connection closed inside a response head");
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body)?;
    Ok(status)
}

/// A TCP connection to 127.0.0.1:`port` whose source address is [`PROXY`].
fn connect(port: u16) -> Result<TcpStream> {
    // SAFETY: plain socket calls on a descriptor this function owns until it is handed
    // to TcpStream (or closed on error).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let bind = sockaddr(SocketAddrV4::new(PROXY, 0));
        if libc::bind(
            fd,
            (&raw const bind).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        ) != 0
        {
            bail!("bind 127.0.0.2: {}", std::io::Error::last_os_error());
        }
        let to = sockaddr(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        if libc::connect(
            fd,
            (&raw const to).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        ) != 0
        {
            bail!(
                "connect to port {port}: {}",
                std::io::Error::last_os_error()
            );
        }
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}
