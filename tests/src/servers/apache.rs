//! Debian's Apache httpd with mod_http2 offering h2c: the server that answers
//! `Upgrade: h2c` (nginx ignores it), with its own access log as ground truth.

use super::{open_up, start_listening};
use crate::process::Guarded;
use anyhow::{Context, Result};
use std::process::Command;
use tempfile::TempDir;

pub const APACHE_HELLO: &str = "hello from apache\n";

pub struct Apache {
    // Declared first: the server dies before its directory is removed.
    child: Guarded,
    dir: TempDir,
}

impl Apache {
    /// Serves `/hello.txt` on 127.0.0.1:`port` with `Protocols h2c http/1.1`; the access
    /// log line is `PID "REQUEST LINE" STATUS`.
    pub fn start(port: u16) -> Result<Self> {
        Self::start_logging(port, r#"%P \"%r\" %>s"#)
    }

    /// `start` with the access log in `format` (Apache's `LogFormat` syntax).
    pub fn start_logging(port: u16, format: &str) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating apache root")?;
        open_up(dir.path())?;
        let root = dir.path();
        let www = root.join("www");
        std::fs::create_dir(&www)?;
        open_up(&www)?;
        std::fs::write(www.join("hello.txt"), APACHE_HELLO)?;
        let modules = "/usr/lib/apache2/modules";
        let conf = format!(
            r#"ServerRoot {root}
ServerName 127.0.0.1
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule http2_module {modules}/mod_http2.so
Listen 127.0.0.1:{port}
PidFile {root}/httpd.pid
ErrorLog {root}/error.log
User www-data
Group www-data
LogFormat "{format}" pidlog
CustomLog {root}/access.log pidlog
Protocols h2c http/1.1
DocumentRoot {www}
<Directory {www}>
    Require all granted
</Directory>
"#,
            root = root.display(),
            www = www.display(),
        );
        let path = root.join("httpd.conf");
        std::fs::write(&path, conf)?;
        let mut command = Command::new("/usr/sbin/apache2");
        command.arg("-f").arg(&path).arg("-DFOREGROUND");
        let child = start_listening(
            &mut command,
            "apache2 (Debian package apache2)",
            &root.join("stdout.log"),
            port,
        )?;
        Ok(Self { child, dir })
    }

    /// The parent's children, which serve the connections.
    pub fn worker_pids(&self) -> Result<Vec<u32>> {
        let parent = self.child.pid();
        let path = format!("/proc/{parent}/task/{parent}/children");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        text.split_whitespace()
            .map(|pid| pid.parse().with_context(|| format!("pid {pid:?}")))
            .collect()
    }

    pub fn access_log(&self) -> Result<String> {
        let path = self.dir.path().join("access.log");
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }
}
