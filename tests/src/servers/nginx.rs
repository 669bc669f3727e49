//! nginx with a generated config in a temp prefix.

use super::{open_up, spawn_logged, wait_listening};
use crate::process::Guarded;
use crate::tls::Certificate;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Size of the file served at `/big`.
pub const BIG_FILE_SIZE: usize = 100 * 1024;
/// Body of `return 200` at `/` (and every path not listed below).
pub const HELLO: &str = "hello\n";
/// Contents of the static file served at `/static/page.txt`.
pub const STATIC_PAGE: &str = "a static page that nginx can answer with 304\n";

/// What the generated nginx.conf contains. Locations are fixed:
/// `/` returns 200 "hello\n"; `= /204` returns 204; `= /big` serves a
/// [`BIG_FILE_SIZE`]-byte file; `/static/` serves files (with
/// `if_modified_since before`, so any later date gets a 304).
pub struct NginxConfig {
    pub port: u16,
    pub ipv4: bool,
    pub ipv6: bool,
    pub workers: u32,
    /// Log every request to `access.log` (see [`Nginx::access_log_lines`]).
    pub access_log: bool,
    /// With `access_log`: JSON lines written through a 64 KiB buffer, the cheapest way
    /// nginx logs (the bench's peer), instead of the unbuffered `combined` format.
    pub access_log_json_buffered: bool,
    /// Also serve the same locations over TLS on 127.0.0.1:this port, with a generated
    /// certificate.
    pub tls_port: Option<u16>,
    /// Offer HTTP/2 (ALPN h2) on the TLS port.
    pub http2: bool,
    /// More `location` blocks, written inside the server block before the fixed ones.
    pub extra_locations: String,
    /// Serve HTTP/2 without TLS on the plain port (h2c with prior knowledge; nginx does
    /// not answer `Upgrade: h2c`).
    pub h2c: bool,
    /// Per worker; past 1024 the workers' descriptor limit is raised to match.
    pub worker_connections: u32,
}

impl NginxConfig {
    /// 127.0.0.1 only, 2 workers, no access log.
    pub fn new(port: u16) -> Self {
        Self {
            port,
            ipv4: true,
            ipv6: false,
            workers: 2,
            access_log: false,
            access_log_json_buffered: false,
            tls_port: None,
            http2: false,
            extra_locations: String::new(),
            h2c: false,
            worker_connections: 1024,
        }
    }

    fn render(&self, prefix: &str, cert: Option<&Certificate>) -> String {
        let mut listen = String::new();
        let h2c = if self.h2c { " http2" } else { "" };
        if self.ipv4 {
            let _ = writeln!(listen, "        listen 127.0.0.1:{}{h2c};", self.port);
        }
        if self.ipv6 {
            let _ = writeln!(listen, "        listen [::1]:{}{h2c};", self.port);
        }
        if let (Some(port), Some(cert)) = (self.tls_port, cert) {
            let http2 = if self.http2 { " http2" } else { "" };
            let _ = writeln!(listen, "        listen 127.0.0.1:{port} ssl{http2};");
            let _ = writeln!(
                listen,
                "        ssl_certificate {};\n        ssl_certificate_key {};",
                cert.cert().display(),
                cert.key().display()
            );
        }
        let access_log = if self.access_log && self.access_log_json_buffered {
            format!("{prefix}/access.log json buffer=64k")
        } else if self.access_log {
            format!("{prefix}/access.log")
        } else {
            "off".to_owned()
        };
        let workers = self.workers;
        let connections = self.worker_connections;
        // Each client connection is one descriptor, with room for logs and listeners.
        let nofile = 2 * connections + 64;
        // Workers run as www-data like a packaged nginx; the 64 KiB header buffers admit
        // the large-head tests and make nginx read a whole head with one recv(), the case
        // that stresses the kernel's per-syscall capture bound; `keepalive_requests`
        // keeps load runs on their connections.
        format!(
            r#"user www-data;
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{
    worker_connections {connections};
}}
http {{
    log_format json escape=json '{{"time":"$time_iso8601","remote_addr":"$remote_addr",'
        '"remote_port":"$remote_port","request":"$request","status":$status,'
        '"body_bytes_sent":$body_bytes_sent,"request_time":$request_time,'
        '"user_agent":"$http_user_agent","pid":$pid}}';
    access_log {access_log};
    default_type text/plain;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_header_buffer_size 64k;
    large_client_header_buffers 4 64k;
    keepalive_requests 1000000;
    server {{
{listen}        root {prefix}/www;
{extra}
        location / {{
            return 200 "{hello}";
        }}
        location = /204 {{
            return 204;
        }}
        location = /big {{
            alias {prefix}/www/big.bin;
        }}
        location /static/ {{
            if_modified_since before;
        }}
    }}
}}
"#,
            hello = HELLO.escape_default(),
            extra = self.extra_locations,
        )
    }
}

pub struct Nginx {
    // Declared first: nginx stops before its prefix is removed.
    child: Guarded,
    dir: TempDir,
    _cert: Option<Certificate>,
}

impl Nginx {
    /// Starts nginx and waits until it listens and all workers are up.
    pub fn start(config: NginxConfig) -> Result<Self> {
        if !config.ipv4 && !config.ipv6 {
            bail!("nginx config listens nowhere");
        }
        let dir = tempfile::tempdir().context("creating nginx prefix")?;
        open_up(dir.path())?;
        let prefix = dir
            .path()
            .to_str()
            .context("non-UTF-8 temp dir")?
            .to_owned();
        let www = dir.path().join("www");
        std::fs::create_dir_all(www.join("static"))?;
        open_up(&www)?;
        open_up(&www.join("static"))?;
        std::fs::write(www.join("big.bin"), big_file())?;
        std::fs::write(www.join("static/page.txt"), STATIC_PAGE)?;
        let conf = dir.path().join("nginx.conf");
        let cert = config
            .tls_port
            .map(|_| Certificate::generate())
            .transpose()?;
        std::fs::write(&conf, config.render(&prefix, cert.as_ref()))?;
        let log = dir.path().join("stderr.log");
        let mut command = Command::new("nginx");
        command
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf);
        let mut child = spawn_logged(&mut command, "nginx", &log)?;
        let probe = if config.ipv4 {
            SocketAddr::from((Ipv4Addr::LOCALHOST, config.port))
        } else {
            SocketAddr::from((Ipv6Addr::LOCALHOST, config.port))
        };
        wait_listening(&mut child, probe, &log)?;
        if let Some(port) = config.tls_port {
            wait_listening(
                &mut child,
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                &log,
            )?;
        }
        let nginx = Self {
            child,
            dir,
            _cert: cert,
        };
        nginx.wait_workers(config.workers as usize)?;
        Ok(nginx)
    }

    fn wait_workers(&self, count: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let workers = self.worker_pids()?;
            if workers.len() == count {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("nginx has workers {workers:?}, expected {count}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn master_pid(&self) -> u32 {
        self.child.pid()
    }

    /// The master's children (the workers), from procfs.
    pub fn worker_pids(&self) -> Result<Vec<u32>> {
        let master = self.master_pid();
        let path = format!("/proc/{master}/task/{master}/children");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        text.split_whitespace()
            .map(|pid| {
                pid.parse()
                    .with_context(|| format!("pid `{pid}` in {path}"))
            })
            .collect()
    }

    /// Requests nginx has logged; needs [`NginxConfig::access_log`].
    pub fn access_log_lines(&self) -> Result<usize> {
        Ok(self.access_log()?.lines().count())
    }

    /// nginx's access log (the `combined` format); needs [`NginxConfig::access_log`].
    pub fn access_log(&self) -> Result<String> {
        let path = self.dir.path().join("access.log");
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// The access-log line count once it stopped growing: after a load generator exits,
    /// nginx may still be reading requests it sent just before its deadline. An error if
    /// it is still growing after 30 s.
    pub fn settled_access_log_lines(&self) -> Result<usize> {
        const QUIET: std::time::Duration = std::time::Duration::from_millis(300);
        const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
        let started = std::time::Instant::now();
        let mut last = self.access_log_lines()?;
        while started.elapsed() < DEADLINE {
            std::thread::sleep(QUIET);
            let now = self.access_log_lines()?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
        anyhow::bail!("nginx's access log still grows after {DEADLINE:?} ({last} lines)")
    }
}

/// Bytes that differ along the file, so a misplaced offset would show.
fn big_file() -> Vec<u8> {
    (0..BIG_FILE_SIZE).map(|i| b'a' + (i % 26) as u8).collect()
}
