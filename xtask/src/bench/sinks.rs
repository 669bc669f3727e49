//! Sink throughput: records per second through plain stdout (to /dev/null), and through
//! the hash chain into stdout, the file sink and the NATS sink (a local nats-server with
//! JetStream file storage, timed until every record is acknowledged), in interleaved
//! rounds of `tracer sink-bench`, reported as ratios to plain stdout.

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
    let dir = tempfile::tempdir().context("creating the bench dir")?;
    let spool = dir.path().join("spool");
    let spool = spool.to_str().context("non-UTF-8 temp dir")?;
    let file = dir.path().join("access.jsonl");
    let file = file.to_str().context("non-UTF-8 temp dir")?;
    let url = nats.url();
    let cases: [(&str, Vec<&str>); 4] = [
        ("stdout, no chain", vec!["--no-chain"]),
        ("stdout + chain", vec![]),
        ("file + chain", vec!["--output", file]),
        (
            "nats + chain",
            vec![
                "--nats",
                url.as_str(),
                "--nats-create-stream",
                "--nats-spool-dir",
                spool,
                "--nats-drain-timeout-ms",
                "600000",
            ],
        ),
    ];
    println!(
        "sinks: tracer sink-bench, {records} synthetic records (~1 KB) per run, flushed every 64; \
         stdout to /dev/null; the file in a temp dir; NATS JetStream (nats-server -js, file \
         store, 127.0.0.1:{}) until acknowledged; \"chain\" = sealed into the hash chain with \
         signed checkpoints, as `tracer run` writes; {rounds} interleaved rounds",
        nats.port()
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 1..=rounds {
        for ((name, args), rates) in cases.iter().zip(&mut rates) {
            let _ = std::fs::remove_file(file);
            let run = sink_bench(bin, records, args)?;
            println!("round {round} {name:<18} {}", run.line());
            rates.push(run.per_second());
        }
    }
    let medians: Vec<f64> = rates
        .into_iter()
        .map(|r| super::table::median(r).ok_or_else(|| anyhow!("no rounds")))
        .collect::<Result<_>>()?;
    println!("sinks (median of {rounds} rounds; ratio to plain stdout):");
    for ((name, _), rate) in cases.iter().zip(&medians) {
        println!(
            "  {name:<18} {rate:>10.0} records/s   {:.3}",
            rate / medians[0]
        );
    }
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
    // Every line (the records plus the chain's start and checkpoint lines) acknowledged.
    if let Some(nats) = result["counters"].get("nats") {
        let count = |key: &str| nats[key].as_u64().unwrap_or(u64::MAX);
        if count("acked") < records
            || count("backlog_records") != 0
            || count("discarded") != 0
            || count("duplicates") != 0
        {
            bail!("the NATS sink did not get every record acknowledged once: {result}");
        }
    }
    Ok(SinkRun {
        records,
        write_seconds: number("write_seconds")?,
        total_seconds: number("total_seconds")?,
    })
}
