//! `tracer sink-bench` (hidden; `cargo xtask bench` runs it): pushes synthetic records
//! through one sink the way the pipeline does (write, then flush per batch) and times
//! them, so the sinks' throughput is compared without kernel events in the way.
use std::{
    io::Write as _,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Result;
use serde_json::json;

use super::{NatsSink, Sink, Sinks, StdoutSink};
use crate::{cli::SinkBenchArgs, sink::nats::NatsConfig};

/// Prints `tracer: sink-bench {json}` on stderr: the sink, the records, the seconds the
/// writes took (what the pipeline thread pays) and the seconds until the sink finished
/// (for NATS: every record acknowledged), with the sink's counters.
pub fn run(args: &SinkBenchArgs) -> Result<()> {
    let mut config = NatsConfig::default();
    args.nats.apply(&mut config);
    let sink: Box<dyn Sink> = match NatsSink::from_config(&config, Duration::from_secs(10))? {
        Some(nats) => Box::new(nats),
        None => Box::new(StdoutSink::new()),
    };
    let name = sink.name();
    let mut sinks = Sinks::new(vec![sink]);
    let batch = args.batch.max(1);
    // Distinct records in every run: JetStream would drop a rerun's as duplicates.
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let started = Instant::now();
    let mut line = Vec::with_capacity(1024);
    for i in 0..args.records {
        line.clear();
        synthetic_record(&mut line, run_id, i)?;
        sinks.write_line(&line)?;
        if (i + 1) % batch == 0 {
            sinks.flush()?;
        }
    }
    sinks.flush()?;
    let written = started.elapsed().as_secs_f64();
    sinks.shutdown()?;
    let total = started.elapsed().as_secs_f64();
    let result = json!({
        "sink": name,
        "records": args.records,
        "write_seconds": written,
        "total_seconds": total,
        "records_per_second": args.records as f64 / total,
        "sinks": sinks.counters(),
    });
    eprintln!("tracer: sink-bench {result}");
    Ok(())
}

/// A record shaped like a real one (docs/record.md), different in every line.
fn synthetic_record(out: &mut Vec<u8>, run_id: u128, i: u64) -> std::io::Result<()> {
    let (seconds, nanos) = (i / 1000, (i % 1000) * 1_000_000 + 7);
    writeln!(
        out,
        "{{\"timestamp\":\"2026-11-22T19:{:02}:{:02}.{nanos:09}Z\",\"event.duration\":{},\
         \"http.request.method\":\"GET\",\"url.path\":\"/api/items/{i}\",\"url.query\":\"page={}\",\
         \"url.scheme\":\"http\",\"server.address\":\"127.0.0.1\",\"server.port\":8080,\
         \"network.local.address\":\"127.0.0.1\",\"network.peer.address\":\"127.0.0.1\",\
         \"network.peer.port\":{},\"client.address\":\"127.0.0.1\",\"client.port\":{},\
         \"network.type\":\"ipv4\",\"network.transport\":\"tcp\",\"network.protocol.name\":\"http\",\
         \"network.protocol.version\":\"1.1\",\"http.response.status_code\":200,\
         \"http.request.body.size\":0,\"http.response.body.size\":6,\
         \"user_agent.original\":\"wrk/4.2\",\"trace_id\":\"{run_id:032x}\",\"process.pid\":1234,\"thread.id\":1234,\
         \"tracer.connection.id\":{},\"tracer.outcome\":\"complete\",\
         \"process.executable.name\":\"nginx\",\"process.executable.path\":\"/usr/sbin/nginx\",\
         \"process.command_line\":\"nginx: worker process\",\"process.owner\":\"www-data\",\
         \"process.user.id\":33,\"process.linux.cgroup\":\"/system.slice/nginx.service\"}}",
        (seconds / 60) % 60,
        seconds % 60,
        40_000 + i % 50_000,
        i % 100,
        30_000 + i % 30_000,
        30_000 + i % 30_000,
        i / 100,
    )
}
