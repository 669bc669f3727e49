//! Running `tracer run` and collecting what it wrote.

use crate::process::Guarded;
use crate::workspace;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const READY_PREFIX: &str = "tracer: ready";
pub const SUMMARY_PREFIX: &str = "tracer: summary ";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the tracer's records (one JSON object per line) go.
#[derive(Clone, Copy, Debug)]
pub enum RecordSink {
    /// A file kept for [`Tracer::stop`] to parse.
    File,
    /// Written by the tracer's own file sink (`--output`), as an auditor runs it, and only
    /// counted after exit: for load runs whose records would not fit in memory. Nothing
    /// reads the file while the tracer runs, so no reader competes with the server being
    /// measured for CPU (a pipe to a counting thread took CPU the bench did not charge to
    /// the tracer).
    Count,
    /// The file sink with its defaults (one growing file), as an auditor runs it, counted
    /// from the tracer's own summary instead of by reading the file back: a bench's
    /// rounds write hundreds of MB each. The run fails if the sink discarded any record
    /// or had any write error.
    Summary,
}

pub struct Tracer {
    child: Guarded,
    // Keeps the stdout file alive until the records are read.
    _dir: tempfile::TempDir,
    /// Where the records go: stdout's file, or the file sink's file with `Count`.
    records_path: PathBuf,
    sink: RecordSink,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_events: Receiver<StderrEvent>,
}

/// What a stopped tracer left behind.
#[derive(Debug)]
pub struct TracerRun {
    /// The access records (`audit.kind` = `access`), one per request.
    pub records: Vec<Value>,
    /// Every line: access records and the audit lines (start, loss, checkpoint).
    pub lines: Vec<Value>,
    /// Access records written; equals `records.len()` unless the sink only counted.
    pub record_count: u64,
    pub summary: Value,
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
}

enum StderrEvent {
    Ready,
    Closed,
}

impl Tracer {
    /// Starts `tracer run --port P...` and waits for its ready line.
    pub fn start(ports: &[u16]) -> Result<Self> {
        Self::start_with(ports, RecordSink::File)
    }

    pub fn start_with(ports: &[u16], sink: RecordSink) -> Result<Self> {
        Self::spawn(&workspace::tracer_bin()?, ports, sink)
    }

    /// Starts the tracer binary at `bin` rather than the one the tests use.
    pub fn spawn(bin: &Path, ports: &[u16], sink: RecordSink) -> Result<Self> {
        Self::spawn_with_args(bin, ports, &[], &[], sink)
    }

    /// Starts `tracer run --port P... ARGS...` with extra environment variables.
    pub fn start_with_args(ports: &[u16], args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        Self::spawn_with_args(
            &workspace::tracer_bin()?,
            ports,
            args,
            env,
            RecordSink::File,
        )
    }

    /// Starts the tracer binary at `bin` with extra arguments and environment variables.
    pub fn spawn_with_args(
        bin: &Path,
        ports: &[u16],
        args: &[&str],
        env: &[(&str, &str)],
        sink: RecordSink,
    ) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating tracer temp dir")?;
        let records_path = dir.path().join("records.jsonl");
        let mut command = Command::new(bin);
        command.arg("run").args(args).envs(env.iter().copied());
        // Each tracer its own chain: parallel tests must not share the default state
        // file (it is locked) or write into /var/lib/tracer.
        for (flag, file) in [
            ("--audit-state", "audit.state"),
            ("--audit-key", "audit.key"),
        ] {
            if !args.contains(&flag) {
                command.arg(flag).arg(dir.path().join(file));
            }
        }
        // Nor the default NATS spool, which one tracer locks.
        if args.contains(&"--nats") && !args.contains(&"--nats-spool-dir") {
            command
                .arg("--nats-spool-dir")
                .arg(dir.path().join("spool"));
        }
        for port in ports {
            command.arg("--port").arg(port.to_string());
        }
        command.stdin(Stdio::null()).stderr(Stdio::piped());
        match sink {
            RecordSink::File => {
                let file = File::create(&records_path).context("creating tracer stdout file")?;
                command.stdout(file);
            }
            RecordSink::Count | RecordSink::Summary => {
                command
                    .arg("--output")
                    .arg(&records_path)
                    .stdout(Stdio::null());
            }
        }
        let mut child = Guarded::spawn(&mut command, "tracer")?;
        let stderr_pipe = child
            .child_mut()
            .stderr
            .take()
            .ok_or_else(|| anyhow!("tracer stderr was not piped"))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (events, stderr_events) = mpsc::channel();
        let lines = Arc::clone(&stderr);
        std::thread::spawn(move || collect_stderr(stderr_pipe, &lines, &events));
        let mut tracer = Self {
            child,
            _dir: dir,
            records_path,
            sink,
            stderr,
            stderr_events,
        };
        tracer.wait_ready()?;
        Ok(tracer)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    fn wait_ready(&mut self) -> Result<()> {
        match self.stderr_events.recv_timeout(READY_TIMEOUT) {
            Ok(StderrEvent::Ready) => Ok(()),
            Ok(StderrEvent::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait_timeout(Duration::from_secs(5)).ok();
                bail!(
                    "tracer exited ({status:?}) before printing `{READY_PREFIX}`; stderr:\n{}",
                    self.stderr_text()
                )
            }
            Err(RecvTimeoutError::Timeout) => bail!(
                "tracer printed no `{READY_PREFIX}` line within {READY_TIMEOUT:?}; stderr:\n{}",
                self.stderr_text()
            ),
        }
    }

    /// Waits until a stderr line contains `needle` and returns that line; `timeout` is a
    /// hang guard, not an expectation.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            {
                let lines = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(line) = lines.iter().find(|l| l.contains(needle)) {
                    return Ok(line.clone());
                }
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "no stderr line containing {needle:?} within {timeout:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the tracer's stdout file holds `n` access records; `timeout` is a
    /// hang guard, not an expectation.
    pub fn wait_for_records(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.records_path).unwrap_or_default();
            let written = text
                .lines()
                .filter(|l| l.contains(r#""audit.kind":"access""#))
                .count();
            if written >= n {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                bail!("{written} access records after {timeout:?}, waited for {n}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr_text(&self) -> String {
        let lines = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        lines.join("\n")
    }

    /// Stops with SIGINT; see [`Tracer::stop_with`].
    pub fn stop(self) -> Result<TracerRun> {
        self.stop_with(libc::SIGINT)
    }

    /// Sends `signal`, waits for exit, and fails unless the tracer exited 0
    /// with its summary as the last stderr line and only JSON objects on stdout.
    pub fn stop_with(mut self, signal: libc::c_int) -> Result<TracerRun> {
        self.child.signal(signal)?;
        let status = self.child.wait_timeout(EXIT_TIMEOUT)?;
        // The reader thread reports Closed at EOF; after exit that is immediate.
        loop {
            match self.stderr_events.recv_timeout(Duration::from_secs(10)) {
                Ok(StderrEvent::Ready) => continue,
                Ok(StderrEvent::Closed) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => bail!("tracer stderr stayed open after exit"),
            }
        }
        let stderr = self.stderr_text();
        if status.signal() == Some(signal) {
            bail!(
                "the tracer died of the signal {signal} sent to stop it instead of handling it \
                 (was its handler installed before it printed `{READY_PREFIX}`?); stderr:\n{stderr}"
            );
        }
        if !status.success() {
            bail!("tracer exited with {status} after signal {signal}; stderr:\n{stderr}");
        }
        let summary = parse_summary(&stderr)?;
        let (stdout, lines, record_count) = match self.sink {
            RecordSink::Count => {
                let file =
                    File::open(&self.records_path).context("opening the tracer's output file")?;
                let count = count_lines(file).context("reading the tracer's output file")?;
                (String::new(), Vec::new(), count)
            }
            RecordSink::Summary => {
                let file_sink = summary
                    .pointer("/sinks/file")
                    .ok_or_else(|| anyhow!("summary has no file sink: {summary}"))?;
                for counter in ["discarded", "write_errors", "rotation_errors"] {
                    let n = file_sink.get(counter).and_then(Value::as_u64);
                    if n != Some(0) {
                        bail!("the file sink's {counter} is {n:?}, not 0: {summary}");
                    }
                }
                (String::new(), Vec::new(), summary_u64(&summary, "records")?)
            }
            RecordSink::File => {
                let stdout = std::fs::read_to_string(&self.records_path)
                    .context("reading tracer stdout file")?;
                let lines = parse_records(&stdout)?;
                let count = access_records(&lines).count() as u64;
                (stdout, lines, count)
            }
        };
        Ok(TracerRun {
            records: access_records(&lines).cloned().collect(),
            lines,
            record_count,
            summary,
            stdout,
            stderr,
            status,
        })
    }
}

impl Tracer {
    /// SIGKILL, as a crash would: no summary, no closing checkpoint. Returns what
    /// reached stdout.
    pub fn kill(mut self) -> Result<String> {
        self.child.signal(libc::SIGKILL)?;
        self.child.wait_timeout(EXIT_TIMEOUT)?;
        std::fs::read_to_string(&self.records_path).context("reading tracer stdout file")
    }
}

fn collect_stderr(pipe: impl Read, lines: &Mutex<Vec<String>>, events: &mpsc::Sender<StderrEvent>) {
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        if line.starts_with(READY_PREFIX) {
            let _ = events.send(StderrEvent::Ready);
        }
        lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    let _ = events.send(StderrEvent::Closed);
}

/// Counts the access records among the lines, without keeping them.
fn count_lines(records: impl Read) -> std::io::Result<u64> {
    let access = memchr::memmem::Finder::new(b"\"audit.kind\":\"access\"");
    let mut reader = BufReader::with_capacity(1 << 16, records);
    let mut line = Vec::with_capacity(4096);
    let mut records = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(records);
        }
        if access.find(&line).is_some() {
            records += 1;
        }
    }
}

/// The lines that are access records (`audit.kind` = `access`).
pub fn access_records(lines: &[Value]) -> impl Iterator<Item = &Value> {
    lines
        .iter()
        .filter(|line| line.get("audit.kind").and_then(Value::as_str) == Some("access"))
}

/// The JSON of the last stderr line, which must be the summary.
pub fn parse_summary(stderr: &str) -> Result<Value> {
    let last = stderr
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    let json = last.strip_prefix(SUMMARY_PREFIX).ok_or_else(|| {
        anyhow!("last stderr line is not `{SUMMARY_PREFIX}{{json}}`; stderr:\n{stderr}")
    })?;
    let summary: Value =
        serde_json::from_str(json).with_context(|| format!("summary is not JSON: {json}"))?;
    if !summary.is_object() {
        bail!("summary is not a JSON object: {json}");
    }
    Ok(summary)
}

/// One JSON object per non-empty line.
pub fn parse_records(stdout: &str) -> Result<Vec<Value>> {
    stdout
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let value: Value = serde_json::from_str(line)
                .with_context(|| format!("stdout line {} is not JSON: {line}", index + 1))?;
            if !value.is_object() {
                bail!("stdout line {} is not a JSON object: {line}", index + 1);
            }
            Ok(value)
        })
        .collect()
}

impl TracerRun {
    /// `kernel_lost_total` from the summary; fails if it is missing.
    pub fn kernel_lost_total(&self) -> Result<u64> {
        summary_u64(&self.summary, "kernel_lost_total")
    }

    pub fn summary_u64(&self, key: &str) -> Result<u64> {
        summary_u64(&self.summary, key)
    }

    /// What the trail's loss lines for `reason` add up to.
    pub fn loss_count(&self, reason: &str) -> u64 {
        self.lines
            .iter()
            .filter(|l| l["audit.kind"] == "loss" && l["audit.loss.reason"] == reason)
            .filter_map(|l| l["audit.loss.count"].as_u64())
            .sum()
    }
}

fn summary_u64(summary: &Value, key: &str) -> Result<u64> {
    summary
        .get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("summary has no integer `{key}`: {summary}"))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn summary_must_be_the_last_line() {
        let stderr = "tracer: ready\ntracer: summary {\"records\": 2}\n";
        assert_eq!(parse_summary(stderr).unwrap()["records"], 2);
        assert!(parse_summary("tracer: summary {}\nlater line").is_err());
        assert!(parse_summary("tracer: summary not-json").is_err());
    }

    #[test]
    fn records_are_json_objects_per_line() {
        let records = parse_records("{\"a\":1}\n\n{\"b\":2}\n").unwrap();
        assert_eq!(records.len(), 2);
        assert!(parse_records("{\"a\":1}\n[1]\n").is_err());
        assert!(parse_records("{\"a\":").is_err());
    }

    #[test]
    fn only_access_lines_are_counted_as_records() {
        let lines = parse_records(
            "{\"audit.kind\":\"start\"}\n{\"audit.kind\":\"access\"}\n{\"audit.kind\":\"checkpoint\"}\n",
        )
        .unwrap();
        assert_eq!(access_records(&lines).count(), 1);
        let text = "{\"audit.kind\":\"start\"}\n{\"a\":1,\"audit.kind\":\"access\"}\n";
        assert_eq!(count_lines(text.as_bytes()).unwrap(), 1);
    }
}
