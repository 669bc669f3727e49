//! Load generators: wrk and ab, with the numbers parsed from their reports.

use anyhow::{Context, Result, anyhow, bail};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct WrkReport {
    /// Completed requests ("N requests in ..."). Requests still in flight when
    /// wrk stops are not counted although the server may have answered them.
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p99_latency_us: Option<f64>,
    pub raw: String,
}

/// `wrk -t<threads> -c<connections> -d<secs>s --latency URL`.
pub fn wrk(url: &str, threads: u32, connections: u32, secs: u32) -> Result<WrkReport> {
    run_wrk(url, threads, connections, secs, &[])
}

/// The same load, each request a POST of `body_bytes` (wrk's Lua `wrk.body`).
pub fn wrk_upload(url: &str, connections: u32, secs: u32, body_bytes: usize) -> Result<WrkReport> {
    let mut script = tempfile::Builder::new()
        .suffix(".lua")
        .tempfile()
        .context("creating wrk's script")?;
    std::io::Write::write_all(
        &mut script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = string.rep(\"a\", {body_bytes})\n\
             wrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n"
        )
        .as_bytes(),
    )
    .context("writing wrk's script")?;
    let path = script.path().to_string_lossy().into_owned();
    run_wrk(url, 1, connections, secs, &["-s", &path])
}

fn run_wrk(
    url: &str,
    threads: u32,
    connections: u32,
    secs: u32,
    extra: &[&str],
) -> Result<WrkReport> {
    let output = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .args(extra)
        .arg(url)
        .output()
        .context("running wrk")?;
    let raw = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {raw}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&raw)
}

/// `h2load -t1 -c<connections> -m<streams> -D<secs> URL`: HTTP/2 load (h2c with prior
/// knowledge for `http://`, ALPN h2 for `https://`), reported in wrk's terms. h2load
/// prints no latency percentiles, so `p99_latency_us` is `None`.
pub fn h2load(url: &str, connections: u32, streams: u32, secs: u32) -> Result<WrkReport> {
    let output = Command::new("h2load")
        .args(["-t1", &format!("-c{connections}"), &format!("-m{streams}")])
        .arg(format!("-D{secs}"))
        .arg(url)
        .output()
        .context("running h2load (Debian package nghttp2-client)")?;
    let raw = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "h2load failed ({}): {raw}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_h2load(&raw)
}

/// From `finished in 10.00s, 65615.20 req/s, ...` and
/// `requests: N total, N started, N done, N succeeded, ...`.
pub fn parse_h2load(raw: &str) -> Result<WrkReport> {
    let requests_per_sec = raw
        .lines()
        .find_map(|line| line.strip_prefix("finished in "))
        .and_then(|rest| rest.split(", ").nth(1))
        .and_then(|rate| rate.strip_suffix(" req/s"))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no `finished in ..., N req/s` line in h2load output:\n{raw}"))?;
    let requests = raw
        .lines()
        .find_map(|line| line.strip_prefix("requests: "))
        .and_then(|rest| rest.split(", ").find_map(|p| p.strip_suffix(" succeeded")))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no `N succeeded` in h2load output:\n{raw}"))?;
    Ok(WrkReport {
        requests,
        requests_per_sec,
        p99_latency_us: None,
        raw: raw.to_owned(),
    })
}

pub fn parse_wrk(raw: &str) -> Result<WrkReport> {
    let requests = raw
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .ok_or_else(|| anyhow!("no `N requests in` line in wrk output:\n{raw}"))?;
    let requests_per_sec = raw
        .lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no `Requests/sec:` line in wrk output:\n{raw}"))?;
    let p99_latency_us = raw
        .lines()
        .find_map(|line| line.trim().strip_prefix("99%"))
        .and_then(|v| duration_us(v.trim()));
    Ok(WrkReport {
        requests,
        requests_per_sec,
        p99_latency_us,
        raw: raw.to_owned(),
    })
}

/// wrk's `1.47ms` / `590.91us` / `2.00s` as microseconds.
fn duration_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "ns" => 1e-3,
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        _ => return None,
    };
    Some(number * scale)
}

#[derive(Debug, Clone)]
pub struct AbReport {
    pub complete: u64,
    pub failed: u64,
    pub non_2xx: u64,
    pub raw: String,
}

/// `ab -k -c<concurrency> -n<requests> URL` (keep-alive).
pub fn ab_keepalive(url: &str, concurrency: u32, requests: u32) -> Result<AbReport> {
    let output = Command::new("ab")
        .arg("-k")
        .arg("-q")
        .arg(format!("-c{concurrency}"))
        .arg(format!("-n{requests}"))
        .arg(url)
        .output()
        .context("running ab")?;
    let raw = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "ab failed ({}): {raw}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_ab(&raw)
}

pub fn parse_ab(raw: &str) -> Result<AbReport> {
    let field = |name: &str| {
        raw.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Ok(AbReport {
        complete: field("Complete requests:")
            .ok_or_else(|| anyhow!("no `Complete requests:` in ab output:\n{raw}"))?,
        failed: field("Failed requests:").unwrap_or(0),
        non_2xx: field("Non-2xx responses:").unwrap_or(0),
        raw: raw.to_owned(),
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    const WRK: &str = "Running 5s test @ http://127.0.0.1:8080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   590.91us  210.00us   8.00ms   90.00%
  Latency Distribution
     50%  524.00us
     75%  600.00us
     90%  700.00us
     99%    1.47ms
  412345 requests in 5.00s, 55.44MB read
Requests/sec:  82469.10
Transfer/sec:     11.09MB
";

    #[test]
    fn wrk_report() {
        let report = parse_wrk(WRK).unwrap();
        assert_eq!(report.requests, 412_345);
        assert!((report.requests_per_sec - 82_469.10).abs() < 1e-6);
        assert!((report.p99_latency_us.unwrap() - 1470.0).abs() < 1e-6);
    }

    #[test]
    fn ab_report() {
        let raw =
            "Concurrency Level:      20\nComplete requests:      2000\nFailed requests:        0\n";
        let report = parse_ab(raw).unwrap();
        assert_eq!(
            (report.complete, report.failed, report.non_2xx),
            (2000, 0, 0)
        );
    }
}
