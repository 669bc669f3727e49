//! What the tracer tells about itself: health lines on stderr while running, the loss
//! counters as the chain's loss lines see them, and the summary line at exit.
use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray};
use serde::Serialize;
use tracer_audit::{
    LossSnapshot,
    loss::{Counter, LossSource},
};

use super::{
    counters::{Counted, Totals},
    state::State,
};
use crate::{
    connection::TrackerStats,
    kernel::{loader, losses::KernelLosses},
};

#[derive(Default)]
pub struct Report {
    kernel_lost: KernelLosses,
    stats: TrackerStats,
    decode_errors: u64,
}

impl Report {
    /// Logs kernel losses and unparseable traffic when they changed since the last report,
    /// so a reader of stderr can tell a quiet period from a gap.
    pub fn changes(
        state: &State,
        losses: &PerCpuArray<MapData, u64>,
        last: Report,
    ) -> Result<Report> {
        let now = Report {
            kernel_lost: KernelLosses::read(losses)?,
            stats: state.tracker.stats(),
            decode_errors: state.decode_errors,
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
        let unparsed = |s: &TrackerStats| {
            (
                s.http.non_http_chunks,
                s.http.desyncs,
                s.http.oversized_heads,
            )
        };
        if unparsed(&now.stats) != unparsed(&last.stats) || now.decode_errors != last.decode_errors
        {
            eprintln!(
                "tracer: traffic not parsed as HTTP so far: non_http_chunks={} non_http_bytes={} desyncs={} oversized_heads={} decode_errors={}",
                now.stats.http.non_http_chunks,
                now.stats.http.non_http_bytes,
                now.stats.http.desyncs,
                now.stats.http.oversized_heads,
                now.decode_errors
            );
        }
        Ok(now)
    }
}

/// The chain at exit.
#[derive(Serialize)]
pub struct AuditSummary {
    stream: String,
    last_seq: u64,
    /// Every line written: access, loss, checkpoint and start records.
    lines: u64,
    loss_records: u64,
    checkpoints: u64,
}

#[derive(Serialize)]
pub struct Summary {
    /// Access records (one per request).
    records: u64,
    kernel_lost: KernelLosses,
    kernel_lost_total: u64,
    decode_errors: u64,
    /// Watched processes holding an io_uring, whose ring I/O is not seen.
    io_uring_processes: u64,
    /// Files the OpenSSL probes are attached to.
    tls_libraries: usize,
    /// Processes watched because their parent became a server after forking them
    /// (`State::watch_children`).
    children_watched: u64,
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

impl Summary {
    /// The summary of a stopped run: `losses` is the one last reading of the kernel's
    /// counters, the same the last loss lines were made from.
    pub fn of(state: &State, losses: KernelLosses, bpf: Option<loader::ProgramRunTime>) -> Self {
        let counts = state.output.counts();
        Self {
            records: counts.access,
            kernel_lost_total: losses.total(),
            kernel_lost: losses,
            decode_errors: state.decode_errors,
            io_uring_processes: state.io_uring.total(),
            tls_libraries: state.tls.libraries(),
            children_watched: state.children_watched,
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
        }
    }

    pub fn print(&self) -> Result<()> {
        eprintln!(
            "tracer: summary {}",
            serde_json::to_string(self).context("serializing the summary")?
        );
        Ok(())
    }
}

/// Every loss counter of the sensor, in the order loss lines always name them.
pub fn loss_snapshot(
    kernel: &KernelLosses,
    tracker: &TrackerStats,
    decode_errors: u64,
    io_uring_processes: u64,
    discarded: u64,
) -> LossSnapshot {
    let totals = Totals {
        tracker,
        decode_errors,
        io_uring_processes,
        discarded,
    };
    let kernel = kernel.by_reason().map(|(reason, total)| Counter {
        source: LossSource::Kernel,
        reason,
        total,
    });
    let user_space = Counted::ALL.into_iter().map(|counted| Counter {
        source: counted.source(),
        reason: counted.name(),
        total: counted.total(&totals),
    });
    LossSnapshot::new(kernel.chain(user_space).collect())
}
