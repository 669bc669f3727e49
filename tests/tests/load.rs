//! Sustained load: every request recorded, nothing lost.

use anyhow::{Context, Result};
use serde_json::Value;
use tests::audit::verify;
use tests::clients::url;
use tests::load::{ab_keepalive, wrk};
use tests::ports::free_port;
use tests::record::RecordExt;
use tests::servers::{Nginx, NginxConfig};
use tests::tracer::{RecordSink, Tracer};

#[test]
fn ab_keepalive_2000_requests_are_all_recorded() -> Result<()> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let tracer = Tracer::start(&[port])?;
    let report = ab_keepalive(&url(port, "/load?via=ab"), 20, 2000)?;
    assert_eq!(
        (report.complete, report.failed, report.non_2xx),
        (2000, 0, 0),
        "{}",
        report.raw
    );
    let run = tracer.stop()?;

    let lost = run.kernel_lost_total()?;
    assert_eq!(
        lost, 0,
        "the tracer lost {lost} kernel events: {}",
        run.summary
    );
    assert_eq!(run.records.len(), 2000, "summary: {}", run.summary);
    for r in &run.records {
        assert_eq!(r.u64_field("http.response.status_code"), 200, "{r}");
        assert_eq!(r.str_field("url.path"), "/load", "{r}");
        assert_eq!(r.str_field("url.query"), "via=ab", "{r}");
    }
    Ok(())
}

#[test]
fn wrk_requests_are_all_recorded() -> Result<()> {
    const CONNECTIONS: u32 = 20;
    let port = free_port();
    let mut config = NginxConfig::new(port);
    config.access_log = true;
    let nginx = Nginx::start(config)?;
    let tracer = Tracer::start_with(&[port], RecordSink::Count)?;
    let report = wrk(&url(port, "/wrk"), 1, CONNECTIONS, 3)?;
    // nginx logs every request it answered, including those wrk sent but stopped
    // waiting for at its deadline: once the log settles it is the exact count.
    let served = nginx.settled_access_log_lines()? as u64;
    let run = tracer.stop()?;

    let lost = run.kernel_lost_total()?;
    assert_eq!(
        lost, 0,
        "the tracer lost {lost} kernel events: {}",
        run.summary
    );
    assert_eq!(
        run.record_count, served,
        "records vs requests nginx served; wrk:\n{}",
        report.raw
    );
    assert!(
        (report.requests..=report.requests + u64::from(CONNECTIONS)).contains(&served),
        "nginx served {served} requests; wrk:\n{}",
        report.raw
    );
    Ok(())
}

/// A ring buffer far too small for the load: events are lost, and the loss must be
/// counted and reported (while running and in the summary), never silent or fatal.
#[test]
fn an_overflowing_ring_buffer_reports_its_losses() -> Result<()> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("audit.key");
    let state = dir.path().join("audit.state");
    let tracer = Tracer::start_with_args(
        &[port],
        &[
            "--ringbuf-bytes",
            "4096",
            "--stats-interval",
            "1",
            "--audit-key",
            key.to_str().context("path")?,
            "--audit-state",
            state.to_str().context("path")?,
        ],
        &[],
    )?;
    let report = ab_keepalive(&url(port, "/load?via=tiny-ring"), 20, 20000)?;
    assert_eq!(report.complete, 20000, "{}", report.raw);
    // The running report is due once a stats interval has passed.
    tracer.wait_for_stderr(
        "tracer: kernel events lost:",
        std::time::Duration::from_secs(30),
    )?;
    let run = tracer.stop()?;

    assert!(run.status.success(), "{}", run.stderr);
    let lost = run.kernel_lost_total()?;
    assert!(lost > 0, "a 4 KiB ring lost nothing: {}", run.summary);
    let by_reason: u64 = run.summary["kernel_lost"]
        .as_object()
        .map(|reasons| reasons.values().filter_map(|n| n.as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(lost, by_reason, "{}", run.summary);
    assert!(
        run.summary["kernel_lost"]["ringbuf_full_data"].as_u64() > Some(0),
        "{}",
        run.summary
    );
    assert!(
        run.stderr.contains("tracer: kernel events lost:"),
        "no loss report while running: {}",
        run.stderr
    );
    // The losses are in the stream too, and add up to the summary's counts.
    let losses: Vec<&Value> = run
        .lines
        .iter()
        .filter(|l| l.str_field("audit.kind") == "loss")
        .collect();
    assert_eq!(
        losses.len() as u64,
        run.summary["audit"]["loss_records"].as_u64().unwrap_or(0),
        "{}",
        run.summary
    );
    let reasons = run.summary["kernel_lost"]
        .as_object()
        .context("no kernel_lost")?;
    for (reason, lost) in reasons {
        let of_reason: Vec<&&Value> = losses
            .iter()
            .filter(|l| {
                l.str_field("audit.loss.source") == "kernel"
                    && l.str_field("audit.loss.reason") == reason
            })
            .collect();
        let counted: u64 = of_reason
            .iter()
            .map(|l| l.u64_field("audit.loss.count"))
            .sum();
        assert_eq!(Some(counted), lost.as_u64(), "{reason}: {losses:#?}");
        if let Some(last) = of_reason.last() {
            assert_eq!(
                Some(last.u64_field("audit.loss.total")),
                lost.as_u64(),
                "{last}"
            );
        }
    }
    for loss in &losses {
        let start = loss.time_field("audit.loss.interval.start");
        let end = loss.time_field("audit.loss.interval.end");
        assert!(start <= end, "{loss}");
    }
    // And the whole stream, losses included, is one intact chain.
    let file = dir.path().join("records.jsonl");
    std::fs::write(&file, &run.stdout)?;
    let verdict = verify(key.to_str().context("path")?, &[&file])?;
    assert!(verdict.ok, "{verdict:?}");

    // Whatever was recorded is still whole and correct.
    assert!(run.records.len() < 20000, "{}", run.summary);
    for r in &run.records {
        if r.str_field("tracer.outcome") == "complete" {
            assert_eq!(r.str_field("url.path"), "/load", "{r}");
        }
    }
    Ok(())
}
