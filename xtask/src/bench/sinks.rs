//! Sink throughput: records per second through stdout (to /dev/null) and through the
//! NATS sink (a local nats-server with JetStream file storage, timed until every record
//! is acknowledged), in interleaved rounds of `tracer sink-bench`, reported as a ratio.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use tests::servers::NatsServer;

struct SinkRun {
    records: u64,
    write_seconds: f64,
    total_seconds: f64,
}

impl SinkRun {
    fn per_second(&self) -> f64 {
        self.records as f64 / self.total_seconds
    }

    fn line(&self) -> String {
        format!(
            "{:.0} records/s ({} records in {:.2} s; writes took {:.2} s)",
            self.per_second(),
            self.records,
            self.total_seconds,
            self.write_seconds
        )
    }
}

pub fn run(bin: &Path, records: u64, rounds: u32) -> Result<()> {
    let nats = NatsServer::start()?;
    let spool = tempfile::tempdir().context("creating the spool dir")?;
    let spool = spool.path().to_str().context("non-UTF-8 temp dir")?;
    let url = nats.url();
    let nats_args = [
        "--nats",
        url.as_str(),
        "--nats-create-stream",
        "--nats-spool-dir",
        spool,
        "--nats-drain-timeout-ms",
        "600000",
    ];
    println!(
        "sinks: tracer sink-bench, {records} synthetic records (~1 KB) per run, flushed every 64; \
         stdout to /dev/null vs NATS JetStream (nats-server -js, file store, 127.0.0.1:{}) until \
         acknowledged; {rounds} rounds",
        nats.port()
    );
    let mut stdout_rates = Vec::new();
    let mut nats_rates = Vec::new();
    for round in 1..=rounds {
        let stdout = sink_bench(bin, records, &[])?;
        println!("round {round} stdout: {}", stdout.line());
        let via_nats = sink_bench(bin, records, &nats_args)?;
        println!("round {round} nats:   {}", via_nats.line());
        stdout_rates.push(stdout.per_second());
        nats_rates.push(via_nats.per_second());
    }
    let (Some(stdout), Some(via_nats)) = (
        super::table::median(stdout_rates),
        super::table::median(nats_rates),
    ) else {
        bail!("no rounds");
    };
    println!(
        "sinks (median of {rounds}): stdout {stdout:.0} records/s, nats {via_nats:.0} records/s \
         acknowledged; nats/stdout = {:.3}",
        via_nats / stdout
    );
    Ok(())
}

/// One `tracer sink-bench` run; fails unless the NATS sink got every record acknowledged.
fn sink_bench(bin: &Path, records: u64, args: &[&str]) -> Result<SinkRun> {
    let output = Command::new(bin)
        .arg("sink-bench")
        .arg("--records")
        .arg(records.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running tracer sink-bench")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("tracer sink-bench failed ({}): {stderr}", output.status);
    }
    let json = stderr
        .lines()
        .find_map(|line| line.strip_prefix("tracer: sink-bench "))
        .ok_or_else(|| anyhow!("no `tracer: sink-bench` line: {stderr}"))?;
    let result: Value = serde_json::from_str(json).context("sink-bench result")?;
    let number = |key: &str| {
        result[key]
            .as_f64()
            .ok_or_else(|| anyhow!("no {key} in {result}"))
    };
    if let Some(nats) = result["sinks"].get("nats") {
        let acked = nats["acked"].as_u64().unwrap_or_default();
        let duplicates = nats["duplicates"].as_u64().unwrap_or_default();
        if acked != records || duplicates != 0 {
            bail!(
                "the NATS sink acknowledged {acked} of {records} records ({duplicates} as duplicates): {result}"
            );
        }
    }
    Ok(SinkRun {
        records,
        write_seconds: number("write_seconds")?,
        total_seconds: number("total_seconds")?,
    })
}
