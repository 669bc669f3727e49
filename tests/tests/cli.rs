//! The command line: subcommands, exit statuses, signals and the summary.

use anyhow::{Context, Result};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::Duration;
use tests::clients::{curl, url};
use tests::ports::free_port;
use tests::process::Guarded;
use tests::record::RecordExt;
use tests::servers::PyHttpServer;
use tests::tracer::Tracer;
use tests::workspace::tracer_bin;

fn python_server() -> Result<(PyHttpServer, u16)> {
    let port = free_port();
    Ok((
        PyHttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), port, "HTTP/1.0")?,
        port,
    ))
}

#[test]
fn check_passes_on_this_machine() -> Result<()> {
    let output = Command::new(tracer_bin()?)
        .arg("check")
        .output()
        .context("running tracer check")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "tracer check failed: {text}");
    assert!(!text.trim().is_empty(), "tracer check printed nothing");
    Ok(())
}

/// The tracer run as an unprivileged user (via util-linux setpriv, capabilities dropped).
fn unprivileged(args: &[&str]) -> Result<(bool, String)> {
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(tracer_bin()?)
        .args(args)
        .output()
        .context("running setpriv")?;
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    Ok((output.status.success(), text))
}

#[test]
fn missing_privileges_are_named_by_check_and_run() -> Result<()> {
    let (ok, text) = unprivileged(&["check"])?;
    assert!(!ok, "check succeeded without privileges: {text}");
    assert!(text.contains("FAIL privileges"), "{text}");
    assert!(text.contains("CAP_BPF"), "{text}");
    let (ok, text) = unprivileged(&["run", "--port", "8080"])?;
    assert!(!ok, "run succeeded without privileges: {text}");
    assert!(
        text.contains("cannot run the tracer") && text.contains("CAP_BPF"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    Ok(())
}

#[test]
fn run_without_a_port_fails_with_a_clear_message() -> Result<()> {
    let log = tempfile::NamedTempFile::new()?;
    let mut command = Command::new(tracer_bin()?);
    command
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen()?);
    let mut tracer = Guarded::spawn(&mut command, "tracer run")?;
    let status = tracer.wait_timeout(Duration::from_secs(20))?;
    let stderr = std::fs::read_to_string(log.path())?;
    assert!(!status.success(), "tracer run without --port exited 0");
    assert!(
        stderr.to_lowercase().contains("port"),
        "stderr does not say a port is missing: {stderr}"
    );
    Ok(())
}

#[test]
fn sigterm_flushes_and_prints_the_summary() -> Result<()> {
    let (_server, port) = python_server()?;
    let tracer = Tracer::start(&[port])?;
    curl(&[&url(port, "/hello.txt?via=sigterm")])?;
    let run = tracer.stop_with(libc::SIGTERM)?;

    assert!(run.status.success());
    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    assert_eq!(run.records[0].str_field("url.query"), "via=sigterm");
    assert_eq!(run.summary_u64("records")?, 1);
    Ok(())
}

#[test]
fn summary_has_the_documented_counters() -> Result<()> {
    let (_server, port) = python_server()?;
    let tracer = Tracer::start(&[port])?;
    for i in 0..3 {
        curl(&[&url(port, &format!("/hello.txt?n={i}"))])?;
    }
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 3, "records: {:#?}", run.records);
    assert_eq!(run.summary_u64("records")?, 3);
    let lost = &run.summary["kernel_lost"];
    for key in [
        "ringbuf_full_data",
        "ringbuf_full_conn",
        "read_user_failed",
        "capture_dispatch_failed",
        "conn_map_full",
        "tracepoint_args_unreadable",
    ] {
        let count = lost[key]
            .as_u64()
            .with_context(|| format!("kernel_lost.{key} missing: {}", run.summary))?;
        assert_eq!(count, 0, "kernel_lost.{key}: {}", run.summary);
    }
    assert_eq!(run.kernel_lost_total()?, 0, "{}", run.summary);
    assert_eq!(run.summary_u64("non_http_chunks")?, 0, "{}", run.summary);
    assert_eq!(run.summary_u64("desyncs")?, 0, "{}", run.summary);
    Ok(())
}

#[test]
fn bpf_stats_report_the_time_spent_in_the_kernel_programs() -> Result<()> {
    let (_server, port) = python_server()?;
    let tracer = Tracer::start_with_args(&[port], &["--bpf-stats"], &[])?;
    curl(&[&url(port, "/hello.txt?via=stats")])?;
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 1, "records: {:#?}", run.records);
    // At least the request's read and the response's write ran a program each.
    assert!(run.summary_u64("bpf_run_count")? >= 2, "{}", run.summary);
    assert!(run.summary_u64("bpf_run_time_ns")? > 0, "{}", run.summary);

    let plain = Tracer::start(&[port])?.stop()?;
    assert!(
        plain.summary.get("bpf_run_time_ns").is_none(),
        "{}",
        plain.summary
    );
    Ok(())
}
