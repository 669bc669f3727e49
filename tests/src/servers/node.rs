//! Node.js's own HTTP server (llhttp, its strict default parser) as a witness: it answers
//! every request 200 and logs each request, and each request it rejects, in Apache's
//! `"%r" %>s %{Authorization}i` form.

use super::{spawn_logged, start_listening, wait_logged};
use crate::process::Guarded;
use crate::tls::Certificate;
use anyhow::{Context, Result};
use std::process::Command;
use tempfile::TempDir;

/// Logs with appendFileSync, so a line is in the file before the next request is read.
/// A rejected request (`clientError`) is logged with the first line of the bytes llhttp
/// refused, and answered 400 as Node's default handler would.
const SERVER: &str = r#"
const fs = require('fs');
const http = require('http');
const [port, log] = process.argv.slice(2);
// Bytes outside printable ASCII are written as \xHH, as nginx and Apache log them.
const escape = (text) => text.replace(/[^\x20-\x7e]/g,
  (c) => '\\x' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'));
const line = (request, status, auth) =>
  fs.appendFileSync(log, `"${escape(request)}" ${status} ${escape(auth || '')}\n`);
const server = http.createServer((req, res) => {
  res.on('finish', () =>
    line(`${req.method} ${req.url} HTTP/${req.httpVersion}`, res.statusCode,
         req.headers.authorization));
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'Content-Length': 2 });
    res.end('ok');
  });
});
server.on('clientError', (err, socket) => {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const raw = err.rawPacket ? err.rawPacket.toString('latin1') : '';
  line(raw.split('\n')[0].replace(/\r$/, ''), 400, '');
  socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
});
server.listen(Number(port), '127.0.0.1');
"#;

pub struct NodeHttpServer {
    // Declared first: the server dies before its directory is removed.
    child: Guarded,
    dir: TempDir,
}

impl NodeHttpServer {
    pub fn start(port: u16) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating node dir")?;
        let script = dir.path().join("server.js");
        std::fs::write(&script, SERVER)?;
        let log = dir.path().join("access.log");
        std::fs::write(&log, "")?;
        let mut command = Command::new("node");
        command.arg(&script).arg(port.to_string()).arg(&log);
        let child = start_listening(
            &mut command,
            "node http server",
            &dir.path().join("server.log"),
            port,
        )?;
        Ok(Self { child, dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn access_log(&self) -> Result<String> {
        let path = self.dir.path().join("access.log");
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Node's cluster module in its default mode on Linux (round-robin): the primary forks
/// its workers, then listens when they ask it to, accepts every connection and hands it
/// to a worker over their IPC channel (`SCM_RIGHTS`). So the workers never listen, and
/// were forked before the primary did. Each worker answers `ok` (over TLS with a
/// certificate) and logs `METHOD URL STATUS PID` per request.
const CLUSTER: &str = r#"
const cluster = require('cluster');
const fs = require('fs');
const http = require('http');
const https = require('https');
const [port, log, workers, cert, key] = process.argv.slice(2);
if (cluster.isPrimary) {
  cluster.schedulingPolicy = cluster.SCHED_RR;
  const pids = [];
  for (let i = 0; i < Number(workers); i++) pids.push(cluster.fork().process.pid);
  let listening = 0;
  cluster.on('listening', () => {
    if (++listening === Number(workers)) console.log(`workers ${pids.join(' ')}\nready`);
  });
} else {
  const serve = (req, res) => {
    res.on('finish', () =>
      fs.appendFileSync(log, `${req.method} ${req.url} ${res.statusCode} ${process.pid}\n`));
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'Content-Length': 2 });
      res.end('ok');
    });
  };
  const server = cert
    ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, serve)
    : http.createServer(serve);
  server.listen(Number(port), '127.0.0.1');
}
"#;

pub struct NodeCluster {
    child: Guarded,
    workers: Vec<u32>,
    dir: TempDir,
}

impl NodeCluster {
    pub fn start(port: u16, workers: u32, tls: Option<&Certificate>) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating node cluster dir")?;
        let script = dir.path().join("cluster.js");
        std::fs::write(&script, CLUSTER)?;
        let access = dir.path().join("access.log");
        std::fs::write(&access, "")?;
        let log = dir.path().join("cluster.log");
        let mut command = Command::new("node");
        command
            .arg(&script)
            .arg(port.to_string())
            .arg(&access)
            .arg(workers.to_string());
        if let Some(cert) = tls {
            command.arg(cert.cert()).arg(cert.key());
        }
        let mut child = spawn_logged(&mut command, "node cluster", &log)?;
        wait_logged(&mut child, "ready", &log)?;
        let ready = std::fs::read_to_string(&log)?;
        let workers = ready
            .lines()
            .find_map(|line| line.strip_prefix("workers "))
            .context("no workers line")?
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .context("worker pids")?;
        Ok(Self {
            child,
            workers,
            dir,
        })
    }

    /// The workers, which serve every connection.
    pub fn worker_pids(&self) -> &[u32] {
        &self.workers
    }

    /// The primary, which accepts every connection.
    pub fn primary_pid(&self) -> u32 {
        self.child.pid()
    }

    /// `METHOD URL STATUS PID` (the worker's) per request, in the order served.
    pub fn access_log(&self) -> Result<Vec<String>> {
        let path = self.dir.path().join("access.log");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(text.lines().map(str::to_owned).collect())
    }
}
