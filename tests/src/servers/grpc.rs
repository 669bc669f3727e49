//! A Python gRPC server and client (`grpcio`) over h2c: the scripts in `tests/grpc/`,
//! run by the interpreter of the virtualenv that `scripts/setup.sh` fills.

use super::start_listening;
use crate::process::Guarded;
use crate::workspace;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Where `scripts/setup.sh` installs `grpcio`; `GRPC_PYTHON` names another interpreter.
pub const GRPC_VENV: &str = "/opt/tracer-tests/grpc-venv";

/// The Python interpreter that can `import grpc`.
pub fn grpc_python() -> Result<PathBuf> {
    let path = match std::env::var_os("GRPC_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(GRPC_VENV).join("bin/python"),
    };
    if !path.exists() {
        bail!(
            "no Python with grpcio at {}: run scripts/setup.sh or point GRPC_PYTHON at one",
            path.display()
        );
    }
    Ok(path)
}

fn script(name: &str) -> PathBuf {
    workspace::root().join("tests/grpc").join(name)
}

/// `tests/grpc/server.py` on 127.0.0.1: services `tracer.test.Echo` and
/// `tracer.test.Lookup`, each call it handles logged as one JSON line.
pub struct GrpcServer {
    // Declared first: the server dies before its directory is removed.
    child: Guarded,
    dir: TempDir,
}

impl GrpcServer {
    pub fn start(port: u16) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating grpc server dir")?;
        let log = dir.path().join("stdout.log");
        let mut command = Command::new(grpc_python()?);
        command
            .arg(script("server.py"))
            .arg(port.to_string())
            .arg(dir.path().join("calls.jsonl"));
        let child = start_listening(&mut command, "grpc server.py", &log, port)?;
        Ok(Self { child, dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The calls the server logged, in the order it logged them.
    pub fn calls(&self) -> Result<Vec<Value>> {
        let path = self.dir.path().join("calls.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("server log line: {l}")))
            .collect()
    }

    /// Waits until the server has logged `n` calls; `timeout` is a hang guard.
    pub fn wait_for_calls(&self, n: usize, timeout: Duration) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls()?;
            if calls.len() >= n {
                return Ok(calls);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the gRPC server logged {} calls after {timeout:?}, waited for {n}",
                    calls.len()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `tests/grpc/client.py` against 127.0.0.1:`port` with `token` as its bearer token
/// (in the environment, not on a command line) and returns what it saw, a line a call.
pub fn grpc_client(port: u16, token: &str) -> Result<Vec<Value>> {
    let out = Command::new(grpc_python()?)
        .arg(script("client.py"))
        .arg(port.to_string())
        .env("GRPC_TEST_TOKEN", token)
        .output()
        .context("running tests/grpc/client.py")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "grpc client exited with {}; stdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("client line: {l}")))
        .collect()
}
