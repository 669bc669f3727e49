//! `tracer run`: kernel events -> connections -> HTTP exchanges -> records -> sink.
//!
//! One thread does all of it: a batch of ring-buffer records is decoded, parsed and
//! written, then the output is flushed once. At the rates a single host serves, parsing
//! is far cheaper than the syscalls that produced the bytes, and one thread keeps the
//! record order equal to the kernel's event order.
use std::{io, time::Duration};

use anyhow::{Context as _, Result, bail};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use log::warn;
use serde::Serialize;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::MissedTickBehavior,
};

use crate::{
    cli::RunArgs,
    config::{DEFAULT_RINGBUF_BYTES, DEFAULT_STATS_INTERVAL_SECONDS},
    connection::{Finished, Tracker, TrackerStats},
    enrich::{Clock, DEFAULT_SECRET_PARAMS, ProcessCache, QueryRedactor},
    kernel::{
        check, discovery,
        events::{KernelEvent, decode},
        loader::{self, Options},
        losses::KernelLosses,
    },
    record::RecordContext,
    sink::{NatsSink, Sink, Sinks, StdoutSink},
};

/// The kernel wakes the tracer only when 64 KiB (a quarter of a smaller ring) of events
/// are waiting (see tracer-ebpf/src/emit.rs); this timer picks up smaller amounts. It
/// bounds how late a record is written and replaces one wakeup per event by one per batch.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

pub fn run(args: RunArgs) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> Result<()> {
    let findings = check::run();
    if let Some(problems) = check::blocking_problems(&findings) {
        bail!("this host cannot run the tracer ({problems}); `tracer check` explains");
    }
    let tracefs = check::tracefs().context("tracefs is not available")?;
    let config = args.resolve()?;
    // Before loading: a bad identity setup fails fast, and the first OIDC fetch
    // happens before `ready`.
    let identifier = config
        .identity
        .identifier()
        .context("setting up identity")?;
    let stats_interval = config
        .stats_interval
        .map_or(DEFAULT_STATS_INTERVAL_SECONDS, |s| s.get());
    // Before loading: a bad sink setup fails fast.
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(StdoutSink::new())];
    if let Some(nats) = NatsSink::from_config(&config.nats, Duration::from_secs(stats_interval))? {
        sinks.push(Box::new(nats));
    }
    let mut ports: Vec<u16> = config.ports.iter().map(|p| p.get()).collect();
    ports.sort_unstable();
    ports.dedup();

    // Held for the whole run: the kernel times programs while this fd is open.
    let bpf_stats = config
        .bpf_stats
        .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime))
        .transpose()
        .context("enabling eBPF run-time statistics (--bpf-stats)")?;
    let mut loaded = loader::load(&Options {
        ports: &ports,
        ringbuf_bytes: config.ringbuf_bytes.unwrap_or(DEFAULT_RINGBUF_BYTES),
        tracefs: &tracefs,
    })?;
    let existing = discovery::processes_on_ports(&ports)?;
    for pid in &existing {
        loaded
            .tgids
            .insert(pid, &1u8, 0)
            .context("adding a running server to WATCHED_TGIDS")?;
    }
    let mut redactor_names: Vec<String> = DEFAULT_SECRET_PARAMS
        .iter()
        .map(|s| s.to_string())
        .collect();
    redactor_names.extend(config.redact_query_params.iter().cloned());
    // A query parameter that carries an API key is a credential too.
    redactor_names.extend(config.identity.api_key_query_params.iter().cloned());
    let mut state = State {
        tracker: Tracker::new(),
        processes: ProcessCache::new(),
        records: RecordContext::new(
            Clock::calibrate(),
            QueryRedactor::new(redactor_names),
            identifier,
        ),
        line: Vec::with_capacity(2048),
        sinks: Sinks::new(sinks),
        finished: Vec::new(),
        exited: Vec::new(),
        decode_errors: 0,
        stdout_closed: false,
    };
    // SAFETY: the RingBuf owns its map fd and keeps it open until it is dropped, which
    // happens only when the AsyncFd is dropped.
    let mut ring = unsafe { AsyncFd::register_with_interest(loaded.events, Interest::READABLE) }
        .map_err(io::Error::from)
        .context("polling the ring buffer")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    eprintln!(
        "tracer: ready: watching port(s) {} ({} process(es) already serving them: {:?})",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
        existing.len(),
        existing
    );

    let mut drain_timer = tokio::time::interval(DRAIN_INTERVAL);
    drain_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ticker = tokio::time::interval(Duration::from_secs(stats_interval));
    ticker.tick().await;
    let mut reported = Report::default();
    while !state.stdout_closed {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting for the ring buffer")?;
                state.drain(guard.get_inner_mut())?;
                guard.clear_ready();
            }
            _ = drain_timer.tick() => state.drain(ring.get_mut())?,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = ticker.tick() => {
                reported = state.report_changes(&loaded.losses, reported);
            }
        }
    }

    let bpf = match bpf_stats {
        Some(_) => Some(loader::program_run_time(&loaded.ebpf)?),
        None => None,
    };
    // Detach first so no new events arrive, then take what is still in the ring.
    drop(loaded.ebpf);
    state.drain(ring.get_mut())?;
    state.shutdown()?;
    let losses = KernelLosses::read(&loaded.losses)?;
    let summary = Summary {
        records: state.sinks.records,
        kernel_lost_total: losses.total(),
        kernel_lost: losses,
        decode_errors: state.decode_errors,
        tracker: state.tracker.stats(),
        bpf,
        sinks: state.sinks.stats(),
    };
    eprintln!("tracer: summary {}", serde_json::to_string(&summary)?);
    Ok(())
}

struct State {
    tracker: Tracker,
    processes: ProcessCache,
    records: RecordContext,
    sinks: Sinks,
    /// Reused buffer for one serialized record.
    line: Vec<u8>,
    finished: Vec<Finished>,
    /// Processes that exited during the current batch.
    exited: Vec<u32>,
    decode_errors: u64,
    /// The reader of stdout went away: stop tracing instead of failing every write.
    stdout_closed: bool,
}

impl State {
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> Result<()> {
        while let Some(item) = ring.next() {
            match decode(&item) {
                Ok(event) => {
                    match &event {
                        // Cache the serving process now: short-lived handlers may be gone
                        // by the time their response completes.
                        KernelEvent::Open { header, .. } => {
                            self.processes.get(header.tgid);
                        }
                        KernelEvent::Exit { header } => self.exited.push(header.tgid),
                        _ => {}
                    }
                    self.tracker.handle(event, &mut self.finished);
                }
                Err(e) => {
                    self.decode_errors += 1;
                    if self.decode_errors == 1 {
                        warn!("undecodable kernel event ({e}); counting further ones silently");
                    }
                }
            }
        }
        self.write_finished()?;
        // Only now: the records just written still needed the exited processes' details.
        for pid in self.exited.drain(..) {
            self.processes.forget(pid);
        }
        Ok(())
    }

    fn shutdown(&mut self) -> Result<()> {
        let now = monotonic_ns();
        self.tracker.shutdown(now, &mut self.finished);
        self.write_finished()?;
        match self.sinks.shutdown() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("closing the sinks"),
        }
    }

    fn write_finished(&mut self) -> Result<()> {
        if self.finished.is_empty() {
            return Ok(());
        }
        let mut result = Ok(());
        for finished in self.finished.drain(..) {
            let process = self.processes.get(finished.meta.tgid);
            self.line.clear();
            self.records
                .write_json(&finished, process.as_deref(), &mut self.line)
                .context("serializing a record")?;
            self.line.push(b'\n');
            result = self.sinks.write_line(&self.line);
            if result.is_err() {
                break;
            }
        }
        let result = result.and_then(|()| self.sinks.flush());
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                eprintln!("tracer: stdout closed by its reader; stopping");
                self.stdout_closed = true;
                Ok(())
            }
            other => other.context("writing records"),
        }
    }

    /// Logs kernel losses and unparseable traffic when they changed since the last report,
    /// so a reader of stderr can tell a quiet period from a gap.
    fn report_changes(&self, losses: &PerCpuArray<MapData, u64>, last: Report) -> Report {
        let now = Report {
            kernel_lost: KernelLosses::read(losses).unwrap_or_default(),
            stats: self.tracker.stats(),
            decode_errors: self.decode_errors,
        };
        if now.kernel_lost != last.kernel_lost {
            let detail: Vec<String> = now
                .kernel_lost
                .by_reason()
                .filter(|(_, n)| *n > 0)
                .map(|(name, n)| format!("{name}={n}"))
                .collect();
            eprintln!(
                "tracer: kernel events lost: {} new, {} total ({})",
                now.kernel_lost.total() - last.kernel_lost.total(),
                now.kernel_lost.total(),
                detail.join(" ")
            );
        }
        let unparsed = |s: &TrackerStats| (s.non_http_chunks, s.desyncs, s.oversized_heads);
        if unparsed(&now.stats) != unparsed(&last.stats) || now.decode_errors != last.decode_errors
        {
            eprintln!(
                "tracer: traffic not parsed as HTTP so far: non_http_chunks={} non_http_bytes={} desyncs={} oversized_heads={} decode_errors={}",
                now.stats.non_http_chunks,
                now.stats.non_http_bytes,
                now.stats.desyncs,
                now.stats.oversized_heads,
                now.decode_errors
            );
        }
        now
    }
}

#[derive(Default)]
struct Report {
    kernel_lost: KernelLosses,
    stats: TrackerStats,
    decode_errors: u64,
}

#[derive(Serialize)]
struct Summary {
    records: u64,
    kernel_lost: KernelLosses,
    kernel_lost_total: u64,
    decode_errors: u64,
    #[serde(flatten)]
    tracker: TrackerStats,
    /// With --bpf-stats: time the kernel spent in the tracer's programs.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    bpf: Option<loader::ProgramRunTime>,
    /// Counters of the sinks that keep some (nats), by sink name.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    sinks: serde_json::Map<String, serde_json::Value>,
}

/// The clock bpf_ktime_get_ns reads.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
