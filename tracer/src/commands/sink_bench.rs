//! `tracer sink-bench` (hidden; `cargo xtask bench` runs it): pushes synthetic records
//! through one sink the way the pipeline does (write, then flush per batch) and times
//! them, so the sinks' throughput is compared without kernel events in the way.
use std::{
    collections::BTreeMap,
    io::Write as _,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use serde_json::json;

use tracer_audit::{Kind, StreamId};

use crate::{
    audit::{Output, SealedLines as _, Settings},
    cli::SinkBenchArgs,
    config::{DEFAULT_CHECKPOINT_RECORDS, DEFAULT_CHECKPOINT_SECONDS},
    sink::{self, OutputSettings, Sinks, nats::NatsConfig},
};

/// Prints `tracer: sink-bench {json}` on stderr: the sinks, the records, the seconds the
/// writes took (what the pipeline thread pays, hashing included) and the seconds until
/// the sinks finished (for NATS: every record acknowledged), with their counters.
pub fn run(args: &SinkBenchArgs) -> Result<()> {
    let mut output = OutputSettings::default();
    args.output.apply(&mut output)?;
    let mut nats = NatsConfig::default();
    args.nats.apply(&mut nats);
    let sinks = sink::open(&output, &nats, Duration::from_secs(10))?;
    let names = sinks.names().join("+");
    let batch = args.batch.max(1);
    // A chain of its own: the bench must not touch the host's audit state.
    let scratch = std::env::temp_dir().join(format!("tracer-sink-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).context("creating the bench's audit dir")?;
    let mut stream = if args.no_chain {
        Stream::Plain(sinks)
    } else {
        let settings = Settings {
            stream: StreamId::from_host_name(),
            state_file: scratch.join("audit.state"),
            key_file: scratch.join("audit.key"),
            checkpoint_records: DEFAULT_CHECKPOINT_RECORDS,
            checkpoint_interval: Duration::from_secs(DEFAULT_CHECKPOINT_SECONDS),
        };
        Stream::Chained(Box::new(Output::open(&settings, sinks)?))
    };
    // Distinct records in every run: JetStream would drop a rerun's as duplicates.
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let started = Instant::now();
    let mut plain = Vec::with_capacity(1024);
    for i in 0..args.records {
        match &mut stream {
            Stream::Plain(sinks) => {
                plain.clear();
                synthetic_record(&mut plain, run_id, i)?;
                plain.push(b'\n');
                sinks.write_line(&plain)?;
            }
            Stream::Chained(output) => {
                synthetic_record(output.line(), run_id, i)?;
                output.commit(Kind::Access)?;
            }
        }
        if (i + 1) % batch == 0 {
            stream.end_batch()?;
        }
    }
    stream.end_batch()?;
    let written = started.elapsed().as_secs_f64();
    let counters = stream.shutdown()?;
    let total = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&scratch);
    let result = json!({
        "sinks": names,
        "chain": !args.no_chain,
        "records": args.records,
        "write_seconds": written,
        "total_seconds": total,
        "records_per_second": args.records as f64 / total,
        "counters": counters,
    });
    eprintln!("tracer: sink-bench {result}");
    Ok(())
}

/// The sinks alone, or behind the hash chain as `tracer run` writes them.
enum Stream {
    Plain(Sinks),
    Chained(Box<Output<Sinks>>),
}

impl Stream {
    fn end_batch(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(sinks) => sinks.flush(),
            Self::Chained(output) => output.end_batch(),
        }
    }

    /// Closes the sinks (waiting for NATS acknowledgements); their counters.
    fn shutdown(self) -> std::io::Result<BTreeMap<&'static str, BTreeMap<&'static str, u64>>> {
        match self {
            Self::Plain(mut sinks) => {
                sinks.shutdown()?;
                Ok(sinks.counters())
            }
            Self::Chained(mut output) => {
                output.shutdown()?;
                Ok(output.sinks().counters())
            }
        }
    }
}

/// A record shaped like a real one (docs/record.md), different in every line, without
/// its newline.
fn synthetic_record(out: &mut Vec<u8>, run_id: u128, i: u64) -> std::io::Result<()> {
    let (seconds, nanos) = (i / 1000, (i % 1000) * 1_000_000 + 7);
    write!(
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
