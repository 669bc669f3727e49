//! The bench's printed results.

use super::arms::{self, ArmResult};
use super::paced::PacedReport;
use super::{Traced, WrkRound};
use tests::load::WrkReport;

pub fn wrk_line(report: &WrkReport) -> String {
    format!(
        "{:.0} req/s, p99 {}, {} requests",
        report.requests_per_sec,
        latency(report.p99_latency_us),
        report.requests
    )
}

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

/// The tracer off/on comparison of interleaved wrk rounds.
pub fn print_wrk(title: &str, rounds: &[WrkRound]) {
    let traced: Vec<&Traced> = rounds.iter().map(|r| &r.traced).collect();
    let rps_off = median(rounds.iter().map(|r| r.off.requests_per_sec).collect());
    let rps_on = median(rounds.iter().map(|r| r.on.requests_per_sec).collect());
    let p99_off = median(rounds.iter().filter_map(|r| r.off.p99_latency_us).collect());
    let p99_on = median(rounds.iter().filter_map(|r| r.on.p99_latency_us).collect());
    let fmt_rps = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.0}"));
    let ratio = match (rps_off, rps_on) {
        (Some(off), Some(on)) if off > 0.0 => format!("{:.3}", on / off),
        _ => "?".to_owned(),
    };

    println!();
    row("", "tracer off", "tracer on");
    println!("{title} ({} rounds each):", rounds.len());
    row(
        "  throughput, req/s (median)",
        &fmt_rps(rps_off),
        &fmt_rps(rps_on),
    );
    row("  throughput ratio on/off", "", &ratio);
    row(
        "  p99 latency (median)",
        &latency(p99_off),
        &latency(p99_on),
    );
    row("  tracer CPU s per 1k requests", "", &cpu_per_1k(&traced));
    row(
        "  eBPF ns per request (in the server)",
        "",
        &bpf_ns_per_request(&traced),
    );
    row("  tracer peak RSS (VmHWM)", "", &peak_rss(&traced));
    row(
        "  records vs wrk's completed requests",
        "",
        &records_vs(&traced),
    );
    row("  kernel lost events", "", &lost(&traced));
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
         to the connection count.\nTracer CPU is its user-space process only; eBPF program time \
         is charged to the traced processes and shows in throughput. With HTTPS, wrk's own \
         OpenSSL calls also hit the probes (they return at the first check: wrk is not watched)."
    );
}

/// Throughput of each arm and its ratio to the first (median of per-round ratios, with
/// the lowest and highest round).
pub fn print_arms(title: &str, results: &[ArmResult]) {
    let Some(baseline) = results.first() else {
        return;
    };
    println!("\n{title} ({} rounds):", baseline.reports.len());
    println!(
        "{:<44} {:>10} {:>8} {:>15}",
        "", "req/s", "ratio", "rounds min-max"
    );
    for result in results {
        let rps = arms::median_rps(result).map_or("?".to_owned(), |v| format!("{v:.0}"));
        let ratio = arms::ratio(result, baseline).map_or("?".to_owned(), |v| format!("{v:.3}"));
        let range = arms::ratio_range(result, baseline)
            .map_or("?".to_owned(), |(lo, hi)| format!("{lo:.2}-{hi:.2}"));
        println!(
            "{:<44} {rps:>10} {ratio:>8} {range:>15}",
            result.arm.label()
        );
    }
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
