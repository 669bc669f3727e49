//! Node.js's own HTTP server (llhttp, its strict default parser) as a witness: it answers
//! every request 200 and logs each request, and each request it rejects, in Apache's
//! `"%r" %>s %{Authorization}i` form.

use super::start_listening;
use crate::process::Guarded;
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
