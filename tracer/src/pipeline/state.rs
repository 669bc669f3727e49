//! What the event loop carries from batch to batch: connections, the process cache,
//! the record context and the sealed output. Kernel events come in, records go out.
//!
//! Control events are handled here, in one place, before the connection events go on
//! to the tracker: an Open caches the serving process (short-lived handlers may be gone
//! by the time their response completes), Exit forgets it once its records are
//! written, Listen and Tls ask for OpenSSL probes.
use std::{collections::HashSet, io, time::Instant};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use log::warn;
use tracer_audit::Kind;

use super::report::loss_snapshot;
use crate::{
    audit::Output,
    connection::{Finished, Tracker},
    enrich::ProcessCache,
    kernel::{
        discovery,
        events::{ConnectionEvent, KernelEvent, decode},
        io_uring::IoUringProcesses,
        losses::KernelLosses,
        tls::TlsProbes,
        watched::WatchedTgids,
    },
    record::RecordContext,
    sink::Sinks,
};

/// Records per batch at most. Under sustained load the ring never runs dry, so without a
/// bound one drain would be one endless batch: records would reach readers late and a
/// file would rotate only when the load pauses (sinks flush and rotate between batches).
const MAX_BATCH_RECORDS: usize = 256;

pub struct State {
    pub tracker: Tracker,
    pub processes: ProcessCache,
    pub records: RecordContext,
    /// The sealed stream and its sinks.
    pub output: Output<Sinks>,
    pub finished: Vec<Finished>,
    /// Processes that exited during the current batch.
    pub exited: Vec<u32>,
    pub tls: TlsProbes,
    /// TLS inspections asked for by the current batch; done after it, with the programs.
    pub tls_work: Vec<TlsWork>,
    pub decode_errors: u64,
    /// Watched processes whose ring I/O the capture cannot see.
    pub io_uring: IoUringProcesses,
    /// The kernel's watched-process bitmap, for children found in user space.
    pub tgids: WatchedTgids,
    /// Processes watched because their parent became a server after forking them.
    pub children_watched: u64,
    /// Servers whose children were looked at: a server listening on several ports
    /// scans /proc once, not once per port.
    pub children_examined: HashSet<u32>,
    /// The reader of stdout went away: stop tracing instead of failing every write.
    pub stdout_closed: bool,
}

pub enum TlsWork {
    Listener(u32),
    Connection(u32),
    Exited(u32),
}

impl State {
    pub fn drain(&mut self, ring: &mut RingBuf<MapData>) -> Result<()> {
        while let Some(item) = ring.next() {
            match decode(&item) {
                Ok(KernelEvent::Listen { header }) => {
                    self.tls_work.push(TlsWork::Listener(header.tgid));
                    // A process that listened or accepted (not a fork, whose parent was
                    // looked at already) may have set up a ring before it was watched.
                    if header.fd >= 0 {
                        self.io_uring.scan(header.tgid);
                        self.watch_children(header.tgid);
                    }
                }
                Ok(KernelEvent::IoUring { header }) => self.io_uring.set_up(header.tgid),
                Ok(KernelEvent::Connection(event)) => {
                    // What the pipeline needs besides the tracker's work.
                    match &event {
                        ConnectionEvent::Open { header, .. } => {
                            self.processes.get(header.tgid, Instant::now());
                        }
                        ConnectionEvent::Exit { header } => self.exited.push(header.tgid),
                        ConnectionEvent::Tls { header } => {
                            self.tls_work.push(TlsWork::Connection(header.tgid));
                        }
                        ConnectionEvent::Data { .. } | ConnectionEvent::Close { .. } => {}
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
            self.io_uring.exited(pid);
            self.children_examined.remove(&pid);
            self.tls_work.push(TlsWork::Exited(pid));
        }
        Ok(())
    }

    /// Watches the children `tgid` forked before it became a server and that run its
    /// program, as their parent is: the fork hook only sees forks of watched processes,
    /// and a server that forks its workers before it listens (Node's cluster module)
    /// hands them its connections. Their OpenSSL probes are attached with the
    /// parent's, before their first connection, where the kernel's `recvmsg` hook
    /// would find them only as it arrives, too late for the probes to see its first
    /// TLS request. Later children are the fork hook's.
    pub fn watch_children(&mut self, tgid: u32) {
        if !self.children_examined.insert(tgid) {
            return;
        }
        for child in discovery::workers_of(tgid) {
            if self.tgids.contains(child) {
                continue;
            }
            match self.tgids.watch(child) {
                Ok(()) => {
                    self.children_watched += 1;
                    self.io_uring.scan(child);
                    self.tls_work.push(TlsWork::Listener(child));
                }
                Err(e) => warn!("not watching pid {child}, a child of server {tgid}: {e:#}"),
            }
        }
    }

    /// Attaches the OpenSSL probes for servers that started listening or turned out to
    /// serve TLS during the last batch.
    pub fn inspect_tls(&mut self, ebpf: &mut aya::Ebpf) {
        for work in self.tls_work.drain(..) {
            match work {
                TlsWork::Listener(pid) => self.tls.inspect(ebpf, pid),
                TlsWork::Connection(pid) => self.tls.tls_connection(ebpf, pid),
                TlsWork::Exited(pid) => self.tls.forget(ebpf, pid),
            }
        }
    }

    /// Writes what is pending, the last loss records and the closing checkpoint.
    pub fn shutdown(&mut self, losses: &KernelLosses) -> Result<()> {
        let now = super::monotonic_ns();
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
        let now = Instant::now();
        for finished in self.finished.drain(..) {
            let process = self.processes.get(finished.meta.tgid, now);
            self.records
                .write_json(&finished, process.as_deref(), self.output.line());
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
    pub fn check_losses(&mut self, kernel: &KernelLosses) -> Result<()> {
        if self.stdout_closed {
            return Ok(());
        }
        let snapshot = loss_snapshot(
            kernel,
            &self.tracker.stats(),
            self.decode_errors,
            self.io_uring.total(),
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
    pub fn settle(&mut self, result: io::Result<()>) -> Result<()> {
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
}
