//! `tracer run`: kernel events -> connections -> HTTP exchanges -> records -> sink.
//!
//! One thread does all of it: a batch of ring-buffer records is decoded, parsed and
//! written, then the output is flushed once. At the rates a single host serves, parsing
//! is far cheaper than the syscalls that produced the bytes, and one thread keeps the
//! record order equal to the kernel's event order.
use std::{collections::BTreeMap, io, time::Duration};

use anyhow::{Context as _, Result, bail};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use log::warn;
use serde::Serialize;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::MissedTickBehavior,
};
use tracer_audit::{Kind, LossSnapshot, loss::Counter};

use crate::{
    audit::Output,
    config::RunSettings,
    connection::{Finished, Tracker, TrackerStats},
    enrich::{Clock, ProcessCache, QueryRedactor},
    kernel::{
        check, discovery,
        events::{KernelEvent, decode},
        loader::{self, Options},
        losses::KernelLosses,
        tls::TlsProbes,
    },
    record::RecordContext,
    sink::{self, Sinks},
};

/// The kernel wakes the tracer only when 64 KiB (a quarter of a smaller ring) of events
/// are waiting (see tracer-ebpf/src/emit.rs); this timer picks up smaller amounts. It
/// bounds how late a record is written and replaces one wakeup per event by one per batch.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);
/// How often loss counters are compared for loss records, an idle sink is offered its
/// rotation, and the chain head is saved to the state file.
const LOSS_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Records per batch at most. Under sustained load the ring never runs dry, so without a
/// bound one drain would be one endless batch: records would reach readers late and a
/// file would rotate only when the load pauses (sinks flush and rotate between batches).
const MAX_BATCH_RECORDS: usize = 256;

pub fn run(settings: RunSettings) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run_async(settings))
}

async fn run_async(config: RunSettings) -> Result<()> {
    let findings = check::run();
    if let Some(problems) = check::blocking_problems(&findings) {
        bail!("this host cannot run the tracer ({problems}); `tracer check` explains");
    }
    let tracefs = check::tracefs().context("tracefs is not available")?;
    // Before loading: a bad identity setup fails fast, and the first OIDC fetch
    // happens before `ready`.
    let identifier = config
        .identity
        .identifier()
        .context("setting up identity")?;
    // Also before loading: an output that cannot be written or a bad NATS setup is a
    // configuration error, and an unusable key or state file fails fast.
    let sinks = sink::open(&config.output, &config.nats, config.stats_interval)?;
    let output = Output::open(&config.audit, sinks).context("setting up the audit chain")?;
    let ports = &config.ports;

    // Held for the whole run: the kernel times programs while this fd is open.
    let bpf_stats = config
        .bpf_stats
        .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime))
        .transpose()
        .context("enabling eBPF run-time statistics (--bpf-stats)")?;
    let mut loaded = loader::load(&Options {
        ports,
        ringbuf_bytes: config.ringbuf_bytes,
        tracefs: &tracefs,
    })?;
    let existing = discovery::processes_on_ports(ports)?;
    let mut tls = TlsProbes::new();
    tls.attach_host_libraries(&mut loaded.ebpf);
    for pid in &existing {
        loaded
            .tgids
            .insert(pid, &1u8, 0)
            .context("adding a running server to WATCHED_TGIDS")?;
        tls.inspect(&mut loaded.ebpf, *pid);
    }
    let mut state = State {
        tracker: Tracker::new(),
        processes: ProcessCache::new(),
        records: RecordContext::new(
            Clock::calibrate(),
            QueryRedactor::new(&config.redact_query_params),
            identifier,
        ),
        output,
        finished: Vec::new(),
        exited: Vec::new(),
        tls,
        tls_work: Vec::new(),
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
    let started = state.output.write_start();
    state.settle(started)?;
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
    let mut ticker = tokio::time::interval(config.stats_interval);
    ticker.tick().await;
    let mut loss_ticker = tokio::time::interval(LOSS_CHECK_INTERVAL);
    loss_ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loss_ticker.tick().await;
    let mut checkpoint_ticker = tokio::time::interval(config.audit.checkpoint_interval);
    checkpoint_ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    checkpoint_ticker.tick().await;
    let mut reported = Report::default();
    while !state.stdout_closed {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting for the ring buffer")?;
                state.drain(guard.get_inner_mut())?;
                guard.clear_ready();
                state.inspect_tls(&mut loaded.ebpf);
            }
            _ = drain_timer.tick() => {
                state.drain(ring.get_mut())?;
                state.inspect_tls(&mut loaded.ebpf);
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = ticker.tick() => {
                reported = state.report_changes(&loaded.losses, reported);
            }
            _ = loss_ticker.tick() => {
                state.check_losses(&KernelLosses::read(&loaded.losses).unwrap_or_default())?;
            }
            _ = checkpoint_ticker.tick() => {
                let written = state.output.checkpoint_if_written();
                state.settle(written)?;
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
    // One reading of the counters for the last loss records and the summary, so the
    // two agree.
    let losses = KernelLosses::read(&loaded.losses)?;
    state.shutdown(&losses)?;
    let counts = state.output.counts();
    let summary = Summary {
        records: counts.access,
        kernel_lost_total: losses.total(),
        kernel_lost: losses,
        decode_errors: state.decode_errors,
        tls_libraries: state.tls.libraries(),
        tracker: state.tracker.stats(),
        bpf,
        sinks: state.output.sinks().counters(),
        audit: AuditSummary {
            stream: state.output.stream().to_string(),
            last_seq: state.output.head().seq,
            lines: state.output.sinks().records,
            loss_records: counts.loss,
            checkpoints: counts.checkpoint,
        },
    };
    eprintln!("tracer: summary {}", serde_json::to_string(&summary)?);
    Ok(())
}

struct State {
    tracker: Tracker,
    processes: ProcessCache,
    records: RecordContext,
    /// The sealed stream and its sinks.
    output: Output<Sinks>,
    finished: Vec<Finished>,
    /// Processes that exited during the current batch.
    exited: Vec<u32>,
    tls: TlsProbes,
    /// TLS inspections asked for by the current batch; done after it, with the programs.
    tls_work: Vec<TlsWork>,
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
                        KernelEvent::Listen { header } => {
                            self.tls_work.push(TlsWork::Listener(header.tgid));
                        }
                        KernelEvent::Tls { header } => {
                            self.tls_work.push(TlsWork::Connection(header.tgid));
                        }
                        _ => {}
                    }
                    self.tracker.handle(event, &mut self.finished);
                    if self.finished.len() >= MAX_BATCH_RECORDS {
                        self.write_finished()?;
                    }
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
            self.tls.forget(pid);
        }
        Ok(())
    }

    /// Attaches the OpenSSL probes for servers that started listening or turned out to
    /// serve TLS during the last batch.
    fn inspect_tls(&mut self, ebpf: &mut aya::Ebpf) {
        for work in self.tls_work.drain(..) {
            match work {
                TlsWork::Listener(pid) => self.tls.inspect(ebpf, pid),
                TlsWork::Connection(pid) => self.tls.tls_connection(ebpf, pid),
            }
        }
    }

    /// Writes what is pending, the last loss records and the closing checkpoint.
    fn shutdown(&mut self, losses: &KernelLosses) -> Result<()> {
        let now = monotonic_ns();
        self.tracker.shutdown(now, &mut self.finished);
        self.write_finished()?;
        self.check_losses(losses)?;
        match self.output.shutdown() {
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
            self.records
                .write_json(&finished, process.as_deref(), self.output.line())
                .context("serializing a record")?;
            result = self.output.commit(Kind::Access);
            if result.is_err() {
                break;
            }
        }
        let result = result.and_then(|()| self.output.end_batch());
        self.settle(result)
    }

    /// A loss record for every counter that grew; also gives an idle sink its rotation
    /// and saves the chain head.
    fn check_losses(&mut self, kernel: &KernelLosses) -> Result<()> {
        if self.stdout_closed {
            return Ok(());
        }
        let snapshot = loss_snapshot(
            kernel,
            &self.tracker.stats(),
            self.decode_errors,
            self.output.sinks().discarded(),
        );
        let result = self
            .output
            .check_losses(&snapshot)
            .and_then(|()| self.output.end_batch());
        self.output.save_head();
        self.settle(result)
    }

    /// A closed stdout stops the tracer; any other write error is fatal.
    fn settle(&mut self, result: io::Result<()>) -> Result<()> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                if !self.stdout_closed {
                    eprintln!("tracer: stdout closed by its reader; stopping");
                }
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

enum TlsWork {
    Listener(u32),
    Connection(u32),
}

#[derive(Default)]
struct Report {
    kernel_lost: KernelLosses,
    stats: TrackerStats,
    decode_errors: u64,
}

/// The chain at exit.
#[derive(Serialize)]
struct AuditSummary {
    stream: String,
    last_seq: u64,
    /// Every line written: access, loss, checkpoint and start records.
    lines: u64,
    loss_records: u64,
    checkpoints: u64,
}

#[derive(Serialize)]
struct Summary {
    /// Access records (one per request).
    records: u64,
    kernel_lost: KernelLosses,
    kernel_lost_total: u64,
    decode_errors: u64,
    /// Files the OpenSSL probes are attached to.
    tls_libraries: usize,
    #[serde(flatten)]
    tracker: TrackerStats,
    /// With --bpf-stats: time the kernel spent in the tracer's programs.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    bpf: Option<loader::ProgramRunTime>,
    /// Per-sink counters, e.g. `"sinks": {"file": {"bytes_written": ..}}`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    sinks: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    audit: AuditSummary,
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

/// Every loss counter of the sensor, in the order loss lines always name them.
fn loss_snapshot(
    kernel: &KernelLosses,
    tracker: &TrackerStats,
    decode_errors: u64,
    discarded: u64,
) -> LossSnapshot {
    let counter = |source, reason, total| Counter {
        source,
        reason,
        total,
    };
    let mut counters: Vec<Counter> = kernel
        .by_reason()
        .map(|(reason, total)| counter("kernel", reason, total))
        .collect();
    counters.extend([
        counter("http", "non_http_chunks", tracker.non_http_chunks),
        counter("http", "non_http_bytes", tracker.non_http_bytes),
        counter("http", "desyncs", tracker.desyncs),
        counter("http", "oversized_heads", tracker.oversized_heads),
        counter("http", "orphan_responses", tracker.orphan_responses),
        // Requests that exist but are not recorded: inside TLS the tracer cannot
        // decrypt, or in HTTP/2 connections it does not decode.
        counter(
            "tls",
            "tls_without_plaintext",
            tracker.tls_without_plaintext,
        ),
        counter("http", "http2_connections", tracker.http2_connections),
        counter("decoder", "decode_errors", decode_errors),
        counter("sink", "discarded_records", discarded),
    ]);
    LossSnapshot::new(counters)
}
