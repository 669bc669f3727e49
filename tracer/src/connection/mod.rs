//! Per-connection state: kernel events in, finished HTTP exchanges out.
//!
//! Connections are keyed by the kernel's connection id, which is unique for the life of
//! the loaded programs; a descriptor number reused by the server is a new connection.
#[cfg(test)]
pub(crate) mod tests;

use foldhash::{HashMap, HashMapExt as _};

use tracer_common::Direction;

use crate::{
    http::{Chunk, Exchange, HttpConnection, HttpStats},
    kernel::events::{BodyCopy, ConnectionEvent, Endpoints},
};

/// What the record needs to know about the connection an exchange happened on.
#[derive(Clone, Copy, Debug)]
pub struct ConnMeta {
    pub conn_id: u64,
    pub tgid: u32,
    /// None when the kernel's Open event was lost (counted as a kernel loss).
    pub endpoints: Option<Endpoints>,
    /// HTTP inside TLS, decrypted by the OpenSSL probes.
    pub tls: bool,
}

/// An exchange ready to become a record.
#[derive(Debug)]
pub struct Finished {
    pub meta: ConnMeta,
    pub exchange: Exchange,
    /// Thread that made the syscall which completed the exchange.
    pub tid: u32,
    /// Still open when the tracer stopped: the response may yet come.
    pub cut_by_shutdown: bool,
}

struct Connection {
    meta: ConnMeta,
    http: HttpConnection,
    /// Decrypted bytes arrived (only meaningful once `meta.tls` is set: the kernel sends
    /// no ciphertext after its Tls event).
    plaintext: bool,
    /// `http.buffered_bytes()` when last looked at, this connection's share of the
    /// tracker's buffered total.
    buffered: usize,
}

impl Connection {
    fn new(meta: ConnMeta) -> Self {
        Self {
            meta,
            http: HttpConnection::new(),
            plaintext: false,
            buffered: 0,
        }
    }
}

/// Heap bytes all connections together may hold in partial heads and held-back bytes.
/// One connection holds at most 64 KiB per direction; without a global bound 10,000
/// connections each trickling an unfinished head would hold 1.3 GB. Past the bound, the
/// connection that grew sheds its buffers (counted `heads_over_budget`); the server's
/// responses to what was shed still become records (`request_unparsed`).
pub const HEAD_BUDGET_BYTES: usize = 32 << 20;

/// Room for this many exchanges is kept in the tracker's spare buffer; one event rarely
/// completes more than one.
const MAX_SPARE_EXCHANGES: usize = 16;

/// Totals over all connections, including closed ones.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub struct TrackerStats {
    pub connections: u64,
    pub open_connections: u64,
    pub tls_connections: u64,
    /// TLS connections that ended without any decrypted byte: their server has no
    /// usable OpenSSL symbols, or they never carried a request.
    pub tls_without_plaintext: u64,
    /// Open connections the kernel's connection cache (CONNS: an LRU of 65,536
    /// descriptors of watched processes) dropped, found again when their descriptor
    /// showed up as new: the same TCP connection continues where it was; a different one
    /// means the forgotten one was closed unseen, and it ends there.
    pub connections_forgotten: u64,
    /// Response body bytes the kernel counted without copying them: writes wholly inside
    /// a body whose length the response head declared, and the body bytes that followed
    /// such a head in its own write.
    pub response_body_bytes_uncopied: u64,
    /// The same for request bodies: reads wholly inside an upload whose head the kernel
    /// read at a request start it knew, and the body bytes in that head's own read.
    pub request_body_bytes_uncopied: u64,
    /// Reads or writes the kernel left (partly) uncopied where the parser expected more
    /// than body bytes (a head or chunked framing): handled as lost bytes. Zero unless the
    /// kernel and the parser disagree on a message's framing, or a lost event took the
    /// head.
    pub body_skip_mismatches: u64,
    /// The HTTP counters, at the top level of the summary (HTTP/2's under `"http2"`).
    #[serde(flatten)]
    pub http: HttpStats,
}

pub struct Tracker {
    /// Boxed: a table sized for many idle connections then holds pointers, not 600-byte
    /// slots (half of the memory per connection at 10,000 open ones).
    conns: HashMap<u64, Box<Connection>>,
    /// The open connection on each (tgid, fd): a second Open there, with no Close
    /// between, means the kernel forgot the first.
    by_fd: HashMap<(u32, i32), u64>,
    closed: TrackerStats,
    /// Sum of the open connections' `buffered`.
    buffered: usize,
    budget: usize,
    /// The one buffer that connections are lent to hold the exchanges an event completes
    /// (`HttpConnection::lend_output`): an allocation per record otherwise.
    spare: Vec<Exchange>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::with_head_budget(HEAD_BUDGET_BYTES)
    }
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_head_budget(budget: usize) -> Self {
        Self {
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            closed: TrackerStats::default(),
            buffered: 0,
            budget,
            spare: Vec::new(),
        }
    }

    /// Applies one kernel event; finished exchanges are appended to `out`.
    pub fn handle(&mut self, event: ConnectionEvent<'_>, out: &mut Vec<Finished>) {
        match event {
            ConnectionEvent::Open { header, endpoints } => {
                let forgotten = self
                    .by_fd
                    .insert((header.tgid, header.fd), header.conn_id)
                    .filter(|&id| id != header.conn_id)
                    .and_then(|id| self.conns.remove(&id));
                if let Some(conn) = forgotten {
                    self.closed.connections_forgotten += 1;
                    if conn.meta.endpoints == Some(endpoints) {
                        // A 4-tuple names one TCP connection while it is open: this is
                        // the forgotten one, continuing under its new kernel id. Its
                        // records keep the id they started with.
                        self.conns.insert(header.conn_id, conn);
                        return;
                    }
                    self.finish(conn, header.ts_ns, header.tid, false, out);
                }
                let meta = ConnMeta {
                    conn_id: header.conn_id,
                    tgid: header.tgid,
                    endpoints: Some(endpoints),
                    tls: false,
                };
                self.closed.connections += 1;
                let previous = self
                    .conns
                    .insert(header.conn_id, Box::new(Connection::new(meta)));
                if let Some(previous) = previous {
                    self.finish(previous, header.ts_ns, header.tid, false, out);
                }
            }
            ConnectionEvent::Data {
                header,
                direction,
                len,
                lost_before,
                payload,
                decrypted,
                body,
            } => {
                let conn = Self::connection(
                    &mut self.conns,
                    &mut self.closed,
                    header.conn_id,
                    header.tgid,
                );
                // Ciphertext: the kernel sends none once it knows a connection is TLS,
                // but a forgotten one is new to it until the next SSL call says so.
                if conn.meta.tls && !decrypted {
                    return;
                }
                conn.plaintext = true;
                // The kernel left body bytes uncopied: the parser must agree they are.
                let uncopied = u64::from(len) - payload.len() as u64;
                if body == BodyCopy::Skipped {
                    Self::check_skip(&mut self.closed, &conn.http, direction, uncopied, uncopied);
                }
                let chunk = Chunk {
                    ts_ns: header.ts_ns,
                    data: payload,
                    missing: len.saturating_sub(payload.len() as u32),
                    gap_before: lost_before,
                };
                conn.http.lend_output(&mut self.spare);
                match direction {
                    Direction::Ingress => conn.http.on_request(chunk),
                    Direction::Egress => conn.http.on_response(chunk),
                }
                if body == BodyCopy::HeadOnly {
                    // The rest of the transfer went into a body that goes on past it.
                    Self::check_skip(&mut self.closed, &conn.http, direction, uncopied, 1);
                }
                self.buffered -= conn.buffered;
                conn.buffered = conn.http.buffered_bytes();
                if self.buffered + conn.buffered > self.budget {
                    conn.http.shed_buffers();
                    conn.buffered = conn.http.buffered_bytes();
                }
                self.buffered += conn.buffered;
                let mut completed = conn.http.take_completed();
                out.extend(completed.drain(..).map(|exchange| Finished {
                    meta: conn.meta,
                    exchange,
                    tid: header.tid,
                    cut_by_shutdown: false,
                }));
                // Taken back for the next event, unless the connection used a buffer of its
                // own or a burst of pipelined requests grew this one.
                if self.spare.capacity() == 0 && completed.capacity() <= MAX_SPARE_EXCHANGES {
                    self.spare = completed;
                }
            }
            ConnectionEvent::Tls { header } => {
                let conn = Self::connection(
                    &mut self.conns,
                    &mut self.closed,
                    header.conn_id,
                    header.tgid,
                );
                if !conn.meta.tls {
                    conn.meta.tls = true;
                    self.closed.tls_connections += 1;
                }
            }
            ConnectionEvent::Close { header } => {
                let key = (header.tgid, header.fd);
                if self.by_fd.get(&key) == Some(&header.conn_id) {
                    self.by_fd.remove(&key);
                }
                if let Some(conn) = self.conns.remove(&header.conn_id) {
                    self.finish(conn, header.ts_ns, header.tid, false, out);
                }
            }
            ConnectionEvent::Exit { header } => {
                let ended: Vec<u64> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.meta.tgid == header.tgid)
                    .map(|(&id, _)| id)
                    .collect();
                self.by_fd.retain(|&(tgid, _), _| tgid != header.tgid);
                for id in ended {
                    if let Some(conn) = self.conns.remove(&id) {
                        self.finish(conn, header.ts_ns, header.tid, false, out);
                    }
                }
            }
        }
    }

    /// Counts `uncopied` body bytes of a transfer the kernel did not copy whole, and a
    /// mismatch unless the parser's body in that direction takes the next `absorbed`.
    fn check_skip(
        stats: &mut TrackerStats,
        http: &HttpConnection,
        direction: Direction,
        uncopied: u64,
        absorbed: u64,
    ) {
        let agreed = match direction {
            Direction::Ingress => {
                stats.request_body_bytes_uncopied += uncopied;
                http.request_body_absorbs(absorbed)
            }
            Direction::Egress => {
                stats.response_body_bytes_uncopied += uncopied;
                http.response_body_absorbs(absorbed)
            }
        };
        if !agreed {
            stats.body_skip_mismatches += 1;
        }
    }

    /// The connection `conn_id`, created without endpoints if its Open event was lost.
    /// (Over the fields, not `self`, so the caller can still update the buffered total.)
    fn connection<'c>(
        conns: &'c mut HashMap<u64, Box<Connection>>,
        closed: &mut TrackerStats,
        conn_id: u64,
        tgid: u32,
    ) -> &'c mut Connection {
        conns.entry(conn_id).or_insert_with(|| {
            closed.connections += 1;
            Box::new(Connection::new(ConnMeta {
                conn_id,
                tgid,
                endpoints: None,
                tls: false,
            }))
        })
    }

    /// The tracer is stopping: every connection still open yields what it has.
    pub fn shutdown(&mut self, now_ns: u64, out: &mut Vec<Finished>) {
        self.by_fd.clear();
        for (_, conn) in std::mem::take(&mut self.conns) {
            let tgid = conn.meta.tgid;
            self.finish(conn, now_ns, tgid, true, out);
        }
    }

    /// Requests read whose responses have not been seen yet, on all connections.
    pub fn awaiting_responses(&self) -> usize {
        self.conns
            .values()
            .map(|c| c.http.awaiting_responses())
            .sum()
    }

    pub fn stats(&self) -> TrackerStats {
        let mut stats = self.closed.clone();
        for conn in self.conns.values() {
            stats.http.absorb(conn.http.stats());
        }
        stats.open_connections = self.conns.len() as u64;
        stats
    }

    fn finish(
        &mut self,
        mut conn: Box<Connection>,
        ts_ns: u64,
        tid: u32,
        cut_by_shutdown: bool,
        out: &mut Vec<Finished>,
    ) {
        self.buffered -= conn.buffered;
        let mut exchanges = conn.http.take_completed();
        exchanges.extend(conn.http.close(ts_ns));
        self.closed.http.absorb(conn.http.stats());
        if conn.meta.tls && !conn.plaintext {
            self.closed.tls_without_plaintext += 1;
        }
        out.extend(exchanges.into_iter().map(|exchange| Finished {
            meta: conn.meta,
            exchange,
            tid,
            cut_by_shutdown,
        }));
    }
}
