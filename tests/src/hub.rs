//! `tracer-hub` as the tests run it: `serve` as a guarded process with a token, and
//! the one-shot commands (`import`, `query`, `top`, `integrity`), on either store; and
//! the requests nginx logged and the hub stored, to compare.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::{ports::free_port, process::Guarded, workspace::hub_bin};

/// The token the tests log in with; long enough for the hub's minimum.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// Where a hub keeps everything it stores.
#[derive(Clone, Debug)]
pub enum Store {
    /// SQLite in a data directory: `--data DIR`.
    Sqlite(PathBuf),
    /// A PostgreSQL database: `--store URL` (`postgres://USER:PASSWORD@HOST:PORT/DB`).
    Postgres(String),
}

impl Store {
    /// The arguments that name this store to any `tracer-hub` command.
    pub fn args(&self) -> Result<[&str; 2]> {
        Ok(match self {
            Self::Sqlite(data) => [
                "--data",
                data.to_str()
                    .with_context(|| format!("non-UTF-8 data dir {}", data.display()))?,
            ],
            Self::Postgres(url) => ["--store", url],
        })
    }
}

pub struct Hub {
    child: Guarded,
    pub port: u16,
    pub token_file: PathBuf,
    /// Where its stdout goes, to be read after it exited (the tests search it for secrets).
    pub stdout_file: PathBuf,
    token: String,
    stderr: PathBuf,
}

impl Hub {
    /// `tracer-hub serve --data DATA --token-file ... --listen 127.0.0.1:PORT ARGS...`,
    /// returning once it answers HTTP.
    pub fn serve(data: &Path, args: &[&str]) -> Result<Self> {
        Self::serve_store(&Store::Sqlite(data.to_owned()), data, args)
    }

    /// `serve` with a token and port of the caller's choosing (the demo's).
    pub fn serve_with(data: &Path, token: &str, port: u16, args: &[&str]) -> Result<Self> {
        Self::start(&Store::Sqlite(data.to_owned()), data, token, port, args)
    }

    /// `serve` on any store. Its token, stdout and stderr files are `files` with the
    /// extensions `.token`, `.stdout` and `.stderr` (a SQLite store's are beside its
    /// data dir: pass the dir).
    pub fn serve_store(store: &Store, files: &Path, args: &[&str]) -> Result<Self> {
        Self::start(store, files, TOKEN, free_port(), args)
    }

    /// [`Hub::serve_store`] with another build of `tracer-hub` (the bench's comparison).
    pub fn serve_store_of(bin: &Path, store: &Store, files: &Path, args: &[&str]) -> Result<Self> {
        Self::start_of(bin, store, files, TOKEN, free_port(), args)
    }

    fn start(store: &Store, files: &Path, token: &str, port: u16, args: &[&str]) -> Result<Self> {
        Self::start_of(&hub_bin()?, store, files, token, port, args)
    }

    fn start_of(
        bin: &Path,
        store: &Store,
        files: &Path,
        token: &str,
        port: u16,
        args: &[&str],
    ) -> Result<Self> {
        if let Store::Sqlite(data) = store {
            fs::create_dir_all(data)?;
        }
        let token_file = files.with_extension("token");
        fs::write(&token_file, format!("{token}\n"))?;
        let stdout_file = files.with_extension("stdout");
        let stderr = files.with_extension("stderr");
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .args(store.args()?)
            .arg("--token-file")
            .arg(&token_file)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_file)?)
            .stderr(fs::File::create(&stderr)?);
        let child = Guarded::spawn(&mut command, "tracer-hub")?;
        let mut hub = Self {
            child,
            port,
            token_file,
            stdout_file,
            token: token.to_owned(),
            stderr,
        };
        hub.wait_until(Duration::from_secs(30), "answering HTTP", |hub| {
            Ok(hub.api("/api/totals").is_ok())
        })?;
        Ok(hub)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// GET `path` with the bearer token; the JSON answer. In process rather than
    /// through curl: the hub bench polls this every 100 ms while it times ingest, and
    /// a curl process per poll took CPU from the hub it was timing.
    pub fn api(&self, path: &str) -> Result<Value> {
        let body = ureq::get(&self.url(path))
            .header("Authorization", &format!("Bearer {}", self.token))
            .config()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .call()
            .with_context(|| format!("GET {path}"))?
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_string()
            .with_context(|| format!("GET {path}: reading the answer"))?;
        serde_json::from_str(&body).with_context(|| format!("GET {path}: {body}"))
    }

    /// `curl -N` following `/api/live`, as a dashboard does; it runs until the hub
    /// ends the stream.
    pub fn follow_live(&self) -> Result<Guarded> {
        Guarded::spawn(
            Command::new("curl")
                .args(["-sN", "-o", "/dev/null", "-H"])
                .arg(format!("Authorization: Bearer {}", self.token))
                .arg(self.url("/api/live"))
                .stdin(Stdio::null()),
            "curl /api/live",
        )
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Polls `ready` every 100 ms; an error naming `what` and the hub's stderr after
    /// `timeout`, or when the hub exited.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut(&Self) -> Result<bool>,
    ) -> Result<()> {
        let started = Instant::now();
        loop {
            if ready(self)? {
                return Ok(());
            }
            if let Some(status) = self.child.try_exit()? {
                bail!(
                    "tracer-hub exited ({status}) before {what}:\n{}",
                    self.stderr()
                );
            }
            if started.elapsed() > timeout {
                bail!(
                    "tracer-hub not {what} after {timeout:?}:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Access records stored, by the API's totals over all time.
    pub fn stored(&self) -> Result<u64> {
        let totals = self.api("/api/totals?from=1970-01-01T00:00:00Z")?;
        totals["requests"]
            .as_u64()
            .ok_or_else(|| anyhow!("no requests in {totals}"))
    }

    /// SIGKILL: no chance to finish a batch.
    pub fn kill(mut self) -> Result<String> {
        self.child.signal(libc::SIGKILL)?;
        self.child.wait_timeout(Duration::from_secs(10))?;
        Ok(self.stderr())
    }

    /// SIGTERM, and its stderr once it exited.
    pub fn stop(mut self) -> Result<String> {
        self.child.signal(libc::SIGTERM)?;
        let status = self.child.wait_timeout(Duration::from_secs(20))?;
        let stderr = self.stderr();
        if !status.success() || stderr.contains("panicked") {
            bail!("tracer-hub exited with {status}:\n{stderr}");
        }
        Ok(stderr)
    }
}

/// The output of a one-shot `tracer-hub ARGS...`.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(args: &[&str]) -> Result<Run> {
    let output = Command::new(hub_bin()?)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running tracer-hub")?;
    Ok(Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// `run`, failing unless it succeeded; its stdout.
pub fn ok(args: &[&str]) -> Result<String> {
    let run = run(args)?;
    if !run.ok {
        bail!("tracer-hub {args:?} failed:\n{}", run.stderr);
    }
    Ok(run.stdout)
}

/// A request as nginx's access log and a stored record both name it:
/// (user, method, path without the query, status).
pub type Request = (String, String, String, u16);

/// Every request nginx logged (the `combined` format), counted.
pub fn nginx_requests(log: &str) -> Result<BTreeMap<Request, u32>> {
    let mut requests = BTreeMap::new();
    for line in log.lines() {
        // $remote_addr - $remote_user [$time_local] "$request" $status ...
        let user = line
            .split(' ')
            .nth(2)
            .ok_or_else(|| anyhow!("bad log line {line}"))?;
        let request = line
            .split('"')
            .nth(1)
            .ok_or_else(|| anyhow!("bad log line {line}"))?;
        let status: u16 = line
            .split('"')
            .nth(2)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("no status in {line}"))?;
        let mut parts = request.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default();
        let path = target.split('?').next().unwrap_or_default().to_owned();
        *requests
            .entry((unescape_nginx(user), method, path, status))
            .or_insert(0) += 1;
    }
    Ok(requests)
}

/// A field as nginx logs it, with each byte it escaped (`"`, `\`, control bytes and
/// bytes past ASCII, as `\xHH`) put back.
fn unescape_nginx(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], bytes.get(i + 1), hex) {
            (b'\\', Some(b'x'), Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The same of every record (`query --format jsonl` lines), counted.
pub fn hub_requests(records: &[Value]) -> BTreeMap<Request, u32> {
    let mut requests = BTreeMap::new();
    for r in records {
        let key = (
            r["user.name"].as_str().unwrap_or("-").to_owned(),
            r["http.request.method"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            r["url.path"].as_str().unwrap_or_default().to_owned(),
            r["http.response.status_code"].as_u64().unwrap_or_default() as u16,
        );
        *requests.entry(key).or_insert(0) += 1;
    }
    requests
}
