//! Per-connection state: kernel events in, finished HTTP exchanges out.
//!
//! Connections are keyed by the kernel's connection id, which is unique for the life of
//! the loaded programs; a descriptor number reused by the server is a new connection.
//! The kernel gives each descriptor its own id, so a socket open on several descriptors
//! (dup2 onto stdin and stdout; a fork after accept, as a CGI child writes the response
//! to the socket its parent read the request from) would split one TCP connection's
//! bytes between parsers: its later descriptors join the first one's connection, by the
//! socket's inode number, and the connection ends when the last of them closes.
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
    /// The socket's inode number; 0 when the Open event was lost.
    socket: u64,
    /// Whether the descriptor it was opened on is still open.
    own_open: bool,
    /// Other descriptors of the socket that joined it and are still open.
    others: u32,
}

impl Connection {
    fn new(meta: ConnMeta, socket: u64) -> Self {
        Self {
            meta,
            http: HttpConnection::new(),
            plaintext: false,
            buffered: 0,
            socket,
            own_open: true,
            others: 0,
        }
    }
}

/// A descriptor of a socket that was already a connection: its events go to that one.
#[derive(Clone, Copy)]
struct Joined {
    /// The key of the connection in `Tracker::conns`.
    conn: u64,
    /// The process holding the descriptor.
    tgid: u32,
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
    /// Descriptors of a socket that was already an open connection (dup2, inherited by a
    /// fork after accept) that joined it: not connections of their own.
    pub shared_descriptors: u64,
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
    /// The open connection of each socket, by inode number.
    by_socket: HashMap<u64, u64>,
    /// Descriptors that joined a connection, by their own kernel id.
    joined: HashMap<u64, Joined>,
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
            by_socket: HashMap::new(),
            joined: HashMap::new(),
            closed: TrackerStats::default(),
            buffered: 0,
            budget,
            spare: Vec::new(),
        }
    }

    /// Applies one kernel event; finished exchanges are appended to `out`.
    pub fn handle(&mut self, event: ConnectionEvent<'_>, out: &mut Vec<Finished>) {
        match event {
            ConnectionEvent::Open {
                header,
                endpoints,
                socket,
            } => {
                let forgotten = self
                    .by_fd
                    .insert((header.tgid, header.fd), header.conn_id)
                    .filter(|&id| id != header.conn_id);
                if let Some(id) = forgotten
                    && self.forgot(id, header.conn_id, endpoints, header.ts_ns, header.tid, out)
                {
                    return;
                }
                // Another descriptor of a socket already open: the same connection.
                if let Some(&key) = self.by_socket.get(&socket)
                    && let Some(conn) = self.conns.get_mut(&key)
                    && conn.meta.endpoints == Some(endpoints)
                {
                    conn.others += 1;
                    self.joined.insert(
                        header.conn_id,
                        Joined {
                            conn: key,
                            tgid: header.tgid,
                        },
                    );
                    self.closed.shared_descriptors += 1;
                    return;
                }
                let meta = ConnMeta {
                    conn_id: header.conn_id,
                    tgid: header.tgid,
                    endpoints: Some(endpoints),
                    tls: false,
                };
                self.closed.connections += 1;
                self.by_socket.insert(socket, header.conn_id);
                let previous = self
                    .conns
                    .insert(header.conn_id, Box::new(Connection::new(meta, socket)));
                if let Some(previous) = previous {
                    self.finish(
                        header.conn_id,
                        previous,
                        header.ts_ns,
                        header.tid,
                        false,
                        out,
                    );
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
                    self.joined
                        .get(&header.conn_id)
                        .map_or(header.conn_id, |j| j.conn),
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
                    self.joined
                        .get(&header.conn_id)
                        .map_or(header.conn_id, |j| j.conn),
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
                self.descriptor_closed(header.conn_id, header.ts_ns, header.tid, out);
            }
            ConnectionEvent::Exit { header } => {
                let joined = self
                    .joined
                    .iter()
                    .filter(|(_, j)| j.tgid == header.tgid)
                    .map(|(&id, _)| id);
                let own = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.meta.tgid == header.tgid && c.own_open)
                    .map(|(&id, _)| id);
                let ended: Vec<u64> = joined.chain(own).collect();
                self.by_fd.retain(|&(tgid, _), _| tgid != header.tgid);
                for id in ended {
                    self.descriptor_closed(id, header.ts_ns, header.tid, out);
                }
            }
        }
    }

    /// The kernel forgot descriptor `id` (another Open on its (tgid, fd) with no Close
    /// between) and now calls it `new_id`. Returns true when it is the same TCP
    /// connection (a 4-tuple names one while it is open), which then continues under
    /// the new id; its records keep the id they started with.
    fn forgot(
        &mut self,
        id: u64,
        new_id: u64,
        endpoints: Endpoints,
        ts_ns: u64,
        tid: u32,
        out: &mut Vec<Finished>,
    ) -> bool {
        if self.joined.contains_key(&id) {
            // A joined descriptor, forgotten: it leaves its connection, and the new
            // Open joins it again if it is the same socket.
            self.closed.connections_forgotten += 1;
            self.descriptor_closed(id, ts_ns, tid, out);
            return false;
        }
        let Some(conn) = self.conns.remove(&id) else {
            return false;
        };
        self.closed.connections_forgotten += 1;
        if conn.meta.endpoints != Some(endpoints) {
            self.finish(id, conn, ts_ns, tid, false, out);
            return false;
        }
        if self.by_socket.get(&conn.socket) == Some(&id) {
            self.by_socket.insert(conn.socket, new_id);
        }
        for joined in self.joined.values_mut().filter(|j| j.conn == id) {
            joined.conn = new_id;
        }
        self.conns.insert(new_id, conn);
        true
    }

    /// Descriptor `id` (a connection's own, or one that joined it) was closed: the
    /// connection ends with the last of its descriptors.
    fn descriptor_closed(&mut self, id: u64, ts_ns: u64, tid: u32, out: &mut Vec<Finished>) {
        let (key, own) = match self.joined.remove(&id) {
            Some(joined) => (joined.conn, false),
            None => (id, true),
        };
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if own {
            conn.own_open = false;
        } else {
            conn.others = conn.others.saturating_sub(1);
        }
        if conn.own_open || conn.others > 0 {
            return;
        }
        if let Some(conn) = self.conns.remove(&key) {
            self.finish(key, conn, ts_ns, tid, false, out);
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
            Box::new(Connection::new(
                ConnMeta {
                    conn_id,
                    tgid,
                    endpoints: None,
                    tls: false,
                },
                0,
            ))
        })
    }

    /// The tracer is stopping: every connection still open yields what it has.
    pub fn shutdown(&mut self, now_ns: u64, out: &mut Vec<Finished>) {
        self.by_fd.clear();
        for (key, conn) in std::mem::take(&mut self.conns) {
            let tgid = conn.meta.tgid;
            self.finish(key, conn, now_ns, tgid, true, out);
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

    /// Ends connection `key`, already taken out of `conns`.
    fn finish(
        &mut self,
        key: u64,
        mut conn: Box<Connection>,
        ts_ns: u64,
        tid: u32,
        cut_by_shutdown: bool,
        out: &mut Vec<Finished>,
    ) {
        if self.by_socket.get(&conn.socket) == Some(&key) {
            self.by_socket.remove(&conn.socket);
        }
        if conn.others > 0 {
            self.joined.retain(|_, j| j.conn != key);
        }
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
