//! `tracer run`: kernel events -> connections -> HTTP exchanges -> records -> sinks.
//!
//! `startup` checks the host and sets everything up, `state` turns each batch of
//! ring-buffer events into sealed records, and `report` says how it went. One thread
//! does all of it: a batch of events is decoded, parsed and written, then the output is
//! flushed once. At the rates a single host serves, parsing is far cheaper than the
//! syscalls that produced the bytes, and one thread keeps the record order equal to the
//! kernel's event order.
mod counters;
mod report;
mod startup;
mod state;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::MissedTickBehavior,
};

use self::{
    report::{Report, Summary},
    startup::Started,
};
use crate::{
    config::RunSettings,
    kernel::{loader, losses::KernelLosses},
};

/// The kernel wakes the tracer only when 1 MiB (a quarter of a smaller ring) of events
/// are waiting (see tracer-ebpf/src/emit.rs); this timer picks up smaller amounts. It
/// bounds how late a record is written and replaces one wakeup per event by one per batch.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);
/// How often loss counters are compared for loss records, an idle sink is offered its
/// rotation, and the chain head is saved to the state file.
const LOSS_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// After SIGINT or SIGTERM the programs stay attached this long at most, while requests
/// already read still await their responses: a request the server answered just
/// after the stop is then recorded with its status, not as cut off. A second signal
/// ends the wait.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub fn run(settings: RunSettings) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run_async(settings))
}

async fn run_async(config: RunSettings) -> Result<()> {
    let Started {
        mut state,
        mut ebpf,
        mut ring,
        losses,
        bpf_stats,
        existing,
    } = startup::start(&config)?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let started = state.output.write_start();
    state.settle(started)?;
    eprintln!(
        "tracer: ready: watching port(s) {} ({} process(es) already serving them: {:?})",
        config
            .ports
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
    // Set by the first signal: from then on the loop runs only until no request awaits
    // its response, or the grace ends.
    let mut stopping: Option<Instant> = None;
    while !state.stdout_closed {
        if stopping
            .is_some_and(|at| at.elapsed() >= STOP_GRACE || state.tracker.awaiting_responses() == 0)
        {
            break;
        }
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting for the ring buffer")?;
                state.drain(guard.get_inner_mut())?;
                guard.clear_ready();
                state.inspect_tls(&mut ebpf);
            }
            _ = drain_timer.tick() => {
                state.drain(ring.get_mut())?;
                state.inspect_tls(&mut ebpf);
            }
            _ = sigint.recv() => if stop(&mut stopping) { break } else { state.drain(ring.get_mut())? },
            _ = sigterm.recv() => if stop(&mut stopping) { break } else { state.drain(ring.get_mut())? },
            _ = ticker.tick() => {
                reported = Report::changes(&state, &losses, reported)?;
            }
            _ = loss_ticker.tick() => {
                let kernel = KernelLosses::read(&losses).context("reading the kernel loss counters")?;
                state.check_losses(&kernel)?;
            }
            _ = checkpoint_ticker.tick() => {
                let written = state.output.periodic_checkpoint();
                state.settle(written)?;
            }
        }
    }

    let bpf = match bpf_stats {
        Some(_) => Some(loader::program_run_time(&ebpf)?),
        None => None,
    };
    // Detach first so no new events arrive, then take what is still in the ring.
    loader::detach(ebpf)?;
    state.drain(ring.get_mut())?;
    // One reading of the counters for the last loss records and the summary, so the
    // two agree.
    let kernel = KernelLosses::read(&losses).context("reading the kernel loss counters")?;
    state.shutdown(&kernel)?;
    Summary::of(&state, kernel, bpf).print()
}

/// A stop signal: the first starts the grace (the caller drains at once, so the
/// requests read so far are known), a second one ends it: true.
fn stop(stopping: &mut Option<Instant>) -> bool {
    stopping.replace(Instant::now()).is_some()
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
