//! Sustained load: every request recorded, nothing lost.

use anyhow::Result;
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
