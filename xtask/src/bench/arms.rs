//! Interleaved rounds over several configurations ("arms") of the same nginx load: no
//! tracing, nginx's own access log, empty programs on one hook set, the tracer. Each
//! round runs every arm once, so drift and other load on the machine hit all of them;
//! ratios are taken within a round, then the median over rounds. Each round starts one
//! arm further along, so no arm always runs right after the same other one: with a
//! fixed order the first of two tracers with the same user space used 0.5 us more CPU
//! per request than the second, in two runs.

use super::{Traced, table::median, traced};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use tests::load::{WrkReport, h2load, wrk, wrk_upload};
use tests::process::Guarded;

/// The floor hook of the OpenSSL probes: the only one that needs the server's port.
pub const OPENSSL_PROBES: &str = "openssl-probes";

/// Where an arm's load goes and what runs beside it.
#[derive(Clone, Copy)]
pub enum Arm<'a> {
    /// The server alone.
    Off,
    /// The twin server that writes its own JSON access log (buffer=64k).
    AccessLog,
    /// Empty programs on one hook set (`tracer floor HOOK`).
    Floor(&'static str),
    /// `tracer run` on the server's port, from this binary, with these further flags.
    Tracer {
        bin: &'a Path,
        label: &'a str,
        args: &'a [&'a str],
    },
}

impl Arm<'_> {
    pub fn label(self) -> String {
        match self {
            Self::Off => "no tracing".to_owned(),
            Self::AccessLog => "nginx access_log (JSON, buffer=64k)".to_owned(),
            Self::Floor(hook) => format!("empty programs: {hook}"),
            Self::Tracer { label, .. } => label.to_owned(),
        }
    }
}

/// The load generator of a target.
#[derive(Clone, Copy)]
pub enum Load {
    /// `wrk -t1`: HTTP/1.1 keep-alive.
    Wrk,
    /// The same, each request a POST of this many body bytes.
    WrkUpload { bytes: usize },
    /// `h2load -t1` with this many concurrent streams per connection.
    H2load { streams: u32 },
}

/// The server under load: its URL and port, its access-logging twin's URL, and what
/// drives it.
pub struct Target<'a> {
    pub url: &'a str,
    pub port: u16,
    pub logging_url: Option<&'a str>,
    pub load: Load,
}

impl<'a> Target<'a> {
    /// `wrk` on `url` (`port`), beside the access-logging twin at `logging_url`.
    pub fn wrk(url: &'a str, port: u16, logging_url: &'a str) -> Self {
        Self {
            url,
            port,
            logging_url: Some(logging_url),
            load: Load::Wrk,
        }
    }

    fn drive(&self, url: &str, connections: u32, seconds: u32) -> Result<WrkReport> {
        match self.load {
            Load::Wrk => wrk(url, 1, connections, seconds),
            Load::WrkUpload { bytes } => wrk_upload(url, connections, seconds, bytes),
            Load::H2load { streams } => h2load(url, connections, streams, seconds),
        }
    }
}

pub struct ArmResult<'a> {
    pub arm: Arm<'a>,
    /// One report per round, in round order.
    pub reports: Vec<WrkReport>,
    /// The tracer's own measurements, for the tracer arm.
    pub traced: Vec<Traced>,
}

pub struct Settings {
    pub seconds: u32,
    pub rounds: u32,
    pub connections: u32,
}

/// Runs every arm once per round; the first arm is the baseline ratios are taken to.
/// `bin` is the tracer whose `tracer floor` holds the floor programs.
pub fn run<'a>(
    bin: &Path,
    target: &Target<'_>,
    arms: &[Arm<'a>],
    s: &Settings,
) -> Result<Vec<ArmResult<'a>>> {
    println!("{}: warming up", target.url);
    target.drive(target.url, s.connections, 2)?;
    if let Some(url) = target.logging_url {
        target.drive(url, s.connections, 2)?;
    }
    let mut results: Vec<ArmResult> = arms
        .iter()
        .map(|&arm| ArmResult {
            arm,
            reports: Vec::new(),
            traced: Vec::new(),
        })
        .collect();
    let arms = results.len();
    for round in 1..=s.rounds {
        for index in round_order(arms, round as usize) {
            let result = &mut results[index];
            let report = match result.arm {
                Arm::Off => target.drive(target.url, s.connections, s.seconds)?,
                Arm::AccessLog => {
                    let url = target
                        .logging_url
                        .context("no access-logging server for this target")?;
                    target.drive(url, s.connections, s.seconds)?
                }
                Arm::Floor(hook) => {
                    let _floor = floor(bin, hook, target.port)?;
                    target.drive(target.url, s.connections, s.seconds)?
                }
                Arm::Tracer { bin, args, .. } => {
                    let (report, t) = traced(bin, target.port, args, || {
                        let report = target.drive(target.url, s.connections, s.seconds)?;
                        Ok((report.requests, report))
                    })?;
                    result.traced.push(t);
                    report
                }
            };
            println!(
                "round {round} {:<44} {:>8.0} req/s",
                result.arm.label(),
                report.requests_per_sec
            );
            result.reports.push(report);
        }
    }
    Ok(results)
}

/// The arms' order in round `round` (from 1): each round starts one arm further along, so
/// no arm always comes first, and every second round runs backwards from there, so two
/// arms next to each other (two tracer builds) take turns at following the other. Rotation alone
/// kept one of them right after the arms without a tracer in most rounds, and that one
/// paid more CPU per request (its file sink took pages the VM had handed back to its
/// host; the second reused the first's): 2.95 against 2.68 us in one run.
fn round_order(arms: usize, round: usize) -> Vec<usize> {
    let start = (round - 1) % arms;
    (0..arms)
        .map(|place| {
            if round % 2 == 1 {
                (start + place) % arms
            } else {
                (start + arms - place) % arms
            }
        })
        .collect()
}

/// Median over rounds of this arm's throughput divided by the baseline's in that round.
pub fn ratio(result: &ArmResult, baseline: &ArmResult) -> Option<f64> {
    median(
        result
            .reports
            .iter()
            .zip(&baseline.reports)
            .filter(|(_, base)| base.requests_per_sec > 0.0)
            .map(|(r, base)| r.requests_per_sec / base.requests_per_sec)
            .collect(),
    )
}

/// The lowest and highest per-round ratio: how far to trust the median.
pub fn ratio_range(result: &ArmResult, baseline: &ArmResult) -> Option<(f64, f64)> {
    let ratios: Vec<f64> = result
        .reports
        .iter()
        .zip(&baseline.reports)
        .filter(|(_, base)| base.requests_per_sec > 0.0)
        .map(|(r, base)| r.requests_per_sec / base.requests_per_sec)
        .collect();
    let min = ratios.iter().copied().reduce(f64::min)?;
    let max = ratios.iter().copied().reduce(f64::max)?;
    Some((min, max))
}

pub fn median_rps(result: &ArmResult) -> Option<f64> {
    median(result.reports.iter().map(|r| r.requests_per_sec).collect())
}

/// `tracer floor HOOK`, once its programs are attached; killed on drop. The OpenSSL
/// probes go to the processes serving `port`.
fn floor(bin: &Path, hook: &str, port: u16) -> Result<Guarded> {
    let mut command = Command::new(bin);
    command.args(["floor", hook]);
    if hook == OPENSSL_PROBES {
        command.args(["--port", &port.to_string()]);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Guarded::spawn(&mut command, "tracer floor")?;
    let stderr = child
        .child_mut()
        .stderr
        .take()
        .context("tracer floor's stderr was not piped")?;
    // Attaching may say what it attached to first (the OpenSSL probes do).
    let mut said = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading tracer floor's stderr")?;
        if line.starts_with("tracer: floor ready") {
            return Ok(child);
        }
        said.push(line);
    }
    bail!("tracer floor {hook} did not start: {}", said.join("\n"))
}

#[cfg(test)]
mod unit {
    use super::round_order;

    #[test]
    fn neighbouring_arms_take_turns_and_every_arm_leads_a_round() {
        let (arms, rounds) = (6, 6);
        let orders: Vec<Vec<usize>> = (1..=rounds).map(|r| round_order(arms, r)).collect();
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..arms).collect::<Vec<_>>(), "{order:?}");
        }
        let position = |order: &Vec<usize>, arm| order.iter().position(|&a| a == arm).unwrap();
        for (a, b) in [(4, 5), (0, 1)] {
            let first = orders
                .iter()
                .filter(|o| position(o, a) < position(o, b))
                .count();
            assert!(
                first > 0 && first < rounds,
                "{a} before {b} in {first} of {rounds}"
            );
        }
        let leaders: std::collections::HashSet<usize> = orders.iter().map(|o| o[0]).collect();
        assert_eq!(leaders.len(), arms, "{orders:?}");
    }
}
