//! The bench's printed results.

use super::Traced;
use super::arms::{self, ArmResult};
use super::paced::PacedReport;

fn latency(us: Option<f64>) -> String {
    match us {
        Some(us) if us >= 1000.0 => format!("{:.2} ms", us / 1000.0),
        Some(us) => format!("{us:.0} us"),
        None => "?".to_owned(),
    }
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn lost(traced: &[&Traced]) -> String {
    traced
        .iter()
        .map(|t| t.run.kernel_lost_total().ok())
        .sum::<Option<u64>>()
        .map_or_else(
            || "? (summary lacks kernel_lost_total)".to_owned(),
            |n| n.to_string(),
        )
}

fn cpu_per_1k(traced: &[&Traced]) -> String {
    let cpu: f64 = traced.iter().map(|t| t.cpu_seconds).sum();
    let requests: u64 = traced.iter().map(|t| t.requests).sum();
    if requests == 0 {
        return "?".to_owned();
    }
    format!("{:.4}", cpu / requests as f64 * 1000.0)
}

/// Kernel time in the tracer's programs per request: what tracing costs the server.
fn bpf_ns_per_request(traced: &[&Traced]) -> String {
    let ns: Option<u64> = traced
        .iter()
        .map(|t| t.run.summary_u64("bpf_run_time_ns").ok())
        .sum();
    let requests: u64 = traced.iter().map(|t| t.requests).sum();
    match ns {
        Some(ns) if requests > 0 => format!("{:.0}", ns as f64 / requests as f64),
        _ => "?".to_owned(),
    }
}

fn records_vs(traced: &[&Traced]) -> String {
    let records: u64 = traced.iter().map(|t| t.run.record_count).sum();
    let requests: u64 = traced.iter().map(|t| t.requests).sum();
    format!(
        "{records} vs {requests} ({:+})",
        records as i64 - requests as i64
    )
}

fn peak_rss(traced: &[&Traced]) -> String {
    let peak = traced.iter().map(|t| t.peak_rss_bytes).max().unwrap_or(0);
    format!("{:.1} MiB", peak as f64 / (1024.0 * 1024.0))
}

fn row(label: &str, off: &str, on: &str) {
    println!("{label:<40} {off:>16} {on:>30}");
}

/// The fixed-rate phase, then the notes that apply to every table.
pub fn print_paced(
    paced_off: &PacedReport,
    paced_on: &PacedReport,
    paced_traced: &Traced,
    rate: u32,
) {
    println!("fixed rate {rate} req/s:");
    let achieved = |r: &PacedReport| format!("{:.0}", r.completed as f64 / r.elapsed.as_secs_f64());
    row(
        "  achieved, req/s",
        &achieved(paced_off),
        &achieved(paced_on),
    );
    let pct = |r: &PacedReport, p: f64| latency(r.percentile_us(p).map(|v| v as f64));
    row("  p50 latency", &pct(paced_off, 50.0), &pct(paced_on, 50.0));
    row("  p99 latency", &pct(paced_off, 99.0), &pct(paced_on, 99.0));
    row(
        "  max latency",
        &pct(paced_off, 100.0),
        &pct(paced_on, 100.0),
    );
    let errors = |r: &PacedReport| format!("{} of {} due", r.errors, r.due);
    row("  client errors", &errors(paced_off), &errors(paced_on));
    let paced = [paced_traced];
    row("  tracer CPU s per 1k requests", "", &cpu_per_1k(&paced));
    row(
        "  eBPF ns per request (in the server)",
        "",
        &bpf_ns_per_request(&paced),
    );
    row("  records vs completed requests", "", &records_vs(&paced));
    row("  kernel lost events", "", &lost(&paced));
    println!(
        "\nwrk counts only requests answered before its deadline: records may exceed it by up \
         to the connection count; they are the tracer's own count of what its file sink \
         wrote (one growing file, its defaults, with the hash \
         chain), which fails the run if the sink discarded any.\nuser us is the tracer's \
         own process, user and system time (its file writes included); eBPF us is program \
         time charged to the traced processes (it shows in throughput, as do the uprobe \
         traps, which no counter measures). The OpenSSL probes are attached to the watched \
         nginx only: wrk runs its OpenSSL untouched."
    );
}

/// Throughput of each arm and its ratio to the first (median of per-round ratios, with
/// the lowest and highest round), p99 latency, and for tracer arms what the tracer cost:
/// user-space CPU and eBPF time per request, records against requests, lost events.
pub fn print_arms(title: &str, results: &[ArmResult<'_>]) {
    let Some(baseline) = results.first() else {
        return;
    };
    println!("\n{title} ({} rounds):", baseline.reports.len());
    println!(
        "{:<38} {:>8} {:>6} {:>10} {:>9} {:>8} {:>8} {:>10} {:>5}",
        "", "req/s", "ratio", "rounds", "p99", "user us", "eBPF us", "records", "lost"
    );
    for result in results {
        let rps = arms::median_rps(result).map_or("?".to_owned(), |v| format!("{v:.0}"));
        let ratio = arms::ratio(result, baseline).map_or("?".to_owned(), |v| format!("{v:.3}"));
        let range = arms::ratio_range(result, baseline)
            .map_or("?".to_owned(), |(lo, hi)| format!("{lo:.2}-{hi:.2}"));
        let p99 = latency(median(
            result
                .reports
                .iter()
                .filter_map(|r| r.p99_latency_us)
                .collect(),
        ));
        let traced: Vec<&Traced> = result.traced.iter().collect();
        let (user, ebpf, records, lost) = if traced.is_empty() {
            Default::default()
        } else {
            (
                us_per_request(&traced),
                bpf_us_per_request(&traced),
                records_diff(&traced),
                lost(&traced),
            )
        };
        println!(
            "{:<38} {rps:>8} {ratio:>6} {range:>10} {p99:>9} {user:>8} {ebpf:>8} {records:>10} {lost:>5}",
            result.arm.label()
        );
    }
    for result in results.iter().filter(|r| !r.traced.is_empty()) {
        let traced: Vec<&Traced> = result.traced.iter().collect();
        println!("{}: peak RSS {}", result.arm.label(), peak_rss(&traced));
    }
}

/// User-space CPU of the tracer per request, in microseconds.
fn us_per_request(traced: &[&Traced]) -> String {
    let cpu: f64 = traced.iter().map(|t| t.cpu_seconds).sum();
    let requests: u64 = traced.iter().map(|t| t.requests).sum();
    if requests == 0 {
        return "?".to_owned();
    }
    format!("{:.2}", cpu / requests as f64 * 1e6)
}

/// Kernel time in the tracer's programs per request, in microseconds.
fn bpf_us_per_request(traced: &[&Traced]) -> String {
    let ns: Option<u64> = traced
        .iter()
        .map(|t| t.run.summary_u64("bpf_run_time_ns").ok())
        .sum();
    let requests: u64 = traced.iter().map(|t| t.requests).sum();
    match ns {
        Some(ns) if requests > 0 => format!("{:.2}", ns as f64 / requests as f64 / 1000.0),
        _ => "?".to_owned(),
    }
}

/// Records minus the requests wrk counted, over all rounds.
fn records_diff(traced: &[&Traced]) -> String {
    let records: u64 = traced.iter().map(|t| t.run.record_count).sum();
    let requests: u64 = traced.iter().map(|t| t.requests).sum();
    format!("{:+}", records as i64 - requests as i64)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
