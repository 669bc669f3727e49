//! Everything `tracer run` does before the first event: host checks, identity, sinks
//! and the chain (so a bad setup fails before any program loads), then the programs,
//! the servers already running, and their OpenSSL.
use std::{collections::HashSet, io, os::fd::OwnedFd};

use anyhow::{Context as _, Result, bail};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokio::io::{Interest, unix::AsyncFd};

use super::state::State;
use crate::{
    audit::Output,
    config::RunSettings,
    connection::Tracker,
    enrich::{Clock, PathRedactor, ProcessCache, QueryRedactor},
    kernel::{
        check, discovery,
        io_uring::IoUringProcesses,
        loader::{self, Options},
        tls::TlsProbes,
    },
    record::RecordContext,
    sink,
};

pub struct Started {
    pub state: State,
    /// Owns the programs and their links: dropping it detaches everything.
    pub ebpf: aya::Ebpf,
    pub ring: AsyncFd<RingBuf<MapData>>,
    pub losses: PerCpuArray<MapData, u64>,
    /// Held for the whole run: the kernel times programs while this fd is open.
    pub bpf_stats: Option<OwnedFd>,
    /// Servers already serving the ports when the tracer started.
    pub existing: Vec<u32>,
}

pub fn start(config: &RunSettings) -> Result<Started> {
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
    if output.starts_new_chain() {
        // A hub that stored this stream id before holds its seqs, and refuses a new
        // chain's lines until they pass them: say so where the operator looks first.
        eprintln!(
            "tracer: audit: no chain state in {}: stream {} begins a new chain at seq 1; if a hub stored this stream before (the state file was lost), give the sensor a new --stream-id",
            config.audit.state_file.display(),
            output.stream().as_str()
        );
    }

    let bpf_stats = config
        .bpf_stats
        .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime))
        .transpose()
        .context("enabling eBPF run-time statistics (--bpf-stats)")?;
    let mut loaded = loader::load(&Options {
        ports: &config.ports,
        ringbuf_bytes: config.ringbuf_bytes,
        tracefs: &tracefs,
    })?;
    let existing = discovery::processes_on_ports(&config.ports)?;
    let mut tls = TlsProbes::new();
    let mut io_uring = IoUringProcesses::default();
    for pid in &existing {
        io_uring.scan(*pid);
        loaded
            .tgids
            .watch(*pid)
            .context("adding a running server to WATCHED_TGIDS")?;
        tls.inspect(&mut loaded.ebpf, *pid);
    }
    let mut state = State {
        tracker: Tracker::new(),
        processes: ProcessCache::new(),
        records: RecordContext::new(
            Clock::calibrate(),
            QueryRedactor::new(&config.redact_query_params),
            PathRedactor::new(
                config.path_redaction.defaults,
                &config.path_redaction.rules,
                &config.redact_query_params,
            ),
            identifier,
        ),
        output,
        finished: Vec::new(),
        exited: Vec::new(),
        tls,
        tls_work: Vec::new(),
        decode_errors: 0,
        io_uring,
        tgids: loaded.tgids,
        children_watched: 0,
        children_examined: HashSet::new(),
        stdout_closed: false,
    };
    // Workers a running server forked before it listened.
    for pid in &existing {
        state.watch_children(*pid);
    }
    state.inspect_tls(&mut loaded.ebpf);
    // SAFETY: the RingBuf owns its map fd and keeps it open until it is dropped, which
    // happens only when the AsyncFd is dropped.
    let ring = unsafe { AsyncFd::register_with_interest(loaded.events, Interest::READABLE) }
        .map_err(io::Error::from)
        .context("polling the ring buffer")?;
    Ok(Started {
        state,
        ebpf: loaded.ebpf,
        ring,
        losses: loaded.losses,
        bpf_stats,
        existing,
    })
}
