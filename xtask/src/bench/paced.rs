//! A fixed-rate HTTP load generator (wrk2 is not packaged here).
//!
//! Each connection sends `GET /` at its own fixed schedule and waits for the
//! response. Latency is measured from when a request was due, not when it was
//! sent, so a stalled server is not hidden by the generator waiting for it
//! (coordinated omission).

use anyhow::{Result, anyhow};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tests::clients::{RawConn, get};

pub struct PacedReport {
    pub due: u64,
    pub completed: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Sorted, in microseconds.
    pub latencies_us: Vec<u64>,
}

impl PacedReport {
    pub fn percentile_us(&self, p: f64) -> Option<u64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        Some(self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1])
    }
}

struct ConnResult {
    due: u64,
    completed: u64,
    errors: u64,
    latencies_us: Vec<u64>,
}

pub fn run(
    addr: SocketAddr,
    rate: u32,
    connections: u32,
    duration: Duration,
) -> Result<PacedReport> {
    let interval = Duration::from_secs_f64(f64::from(connections) / f64::from(rate.max(1)));
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + duration;
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            // Staggered so the connections' sends interleave evenly.
            let first = start + interval.mul_f64(f64::from(i) / f64::from(connections));
            std::thread::spawn(move || connection(addr, first, interval, end))
        })
        .collect();
    let mut report = PacedReport {
        due: 0,
        completed: 0,
        errors: 0,
        elapsed: duration,
        latencies_us: Vec::new(),
    };
    for worker in workers {
        let result = worker.join().map_err(|_| anyhow!("load thread panicked"))?;
        report.due += result.due;
        report.completed += result.completed;
        report.errors += result.errors;
        report.latencies_us.extend(result.latencies_us);
    }
    report.elapsed = start.elapsed();
    report.latencies_us.sort_unstable();
    Ok(report)
}

fn connection(addr: SocketAddr, first: Instant, interval: Duration, end: Instant) -> ConnResult {
    let request = get("/", "bench");
    let mut result = ConnResult {
        due: 0,
        completed: 0,
        errors: 0,
        latencies_us: Vec::new(),
    };
    let mut conn = None;
    let mut due = first;
    while due < end {
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        result.due += 1;
        let outcome = (|| -> Result<()> {
            let c = match &mut conn {
                Some(c) => c,
                None => conn.insert(RawConn::connect(addr)?),
            };
            c.send(&request)?;
            c.read_response("GET")?;
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                result.completed += 1;
                result.latencies_us.push(due.elapsed().as_micros() as u64);
            }
            Err(_) => {
                result.errors += 1;
                conn = None;
            }
        }
        due += interval;
    }
    result
}
