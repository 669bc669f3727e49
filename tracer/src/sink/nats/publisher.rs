//! The publisher thread: reads the spool in order and publishes each record to JetStream
//! with a `Nats-Msg-Id`, keeping up to `max_in_flight` publishes ahead of the oldest
//! unacknowledged one, and moves the spool's cursor as acknowledgements arrive (in order).
//!
//! Order across failures: each connection is a fresh client whose automatic reconnection
//! is disabled. async-nats would otherwise resend, after reconnecting, publishes queued
//! while it was down, ahead of earlier ones lost with the old connection. On any failure
//! the client (and its runtime, with every task it spawned) is dropped, and the next
//! connection starts again from the oldest unacknowledged record, one publish at a time
//! until the first acknowledgement; JetStream drops the copies it already stored (same
//! message id, within the stream's duplicate window).
use std::{
    collections::VecDeque,
    future::{Future, ready},
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use async_nats::{
    ConnectOptions, Event, Subject,
    jetstream::{
        self,
        context::{PublishError, PublishErrorKind},
        message::PublishMessage,
    },
};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, watch};

use super::{
    auth::Auth,
    counters::Counters,
    link::Link,
    settings::Servers,
    spool::{Position, Record, SpoolReader},
    stream::StreamSpec,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// What a client "waits" before reconnecting by itself: never, in practice; the
/// publisher drops it long before.
const NO_RECONNECT: Duration = Duration::from_secs(24 * 3600);

pub struct Publisher {
    pub servers: Servers,
    pub auth: Auth,
    pub stream: StreamSpec,
    pub ack_timeout: Duration,
    pub max_in_flight: usize,
    pub reader: SpoolReader,
    pub link: Link,
    pub stop: watch::Receiver<bool>,
    /// The last cursor write failed (reported once until one succeeds).
    pub cursor_failing: bool,
}

/// Why a connection ended.
enum Failure {
    Connect(String),
    Stream(String),
    Publish(PublishError),
    Disconnected,
    /// Reading the spool: publishing cannot go on.
    Spool(io::Error),
}

impl Failure {
    fn reason(&self, servers: &Servers) -> String {
        match self {
            Self::Connect(e) => format!("cannot connect to {servers}: {e}"),
            Self::Stream(e) => e.clone(),
            Self::Publish(e) => format!("publishing to {servers} failed: {e}"),
            Self::Disconnected => format!("lost the connection to {servers}"),
            Self::Spool(e) => format!("the spool failed: {e}"),
        }
    }
}

/// A publish waiting for its acknowledgement.
struct InFlight {
    end: Position,
    bytes: u64,
    ack: Pin<Box<dyn Future<Output = Result<Delivery, PublishError>> + Send>>,
}

enum Delivery {
    Stored {
        duplicate: bool,
    },
    /// Larger than the server accepts: skipped, counted as discarded.
    TooLarge(String),
}

impl Publisher {
    /// Runs until told to stop (or the spool fails), then persists the cursor.
    pub fn run(mut self) {
        let mut delay = Duration::ZERO;
        loop {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!(
                        "tracer: nats: cannot start the publisher's runtime: {e}; publishing stops"
                    );
                    break;
                }
            };
            let mut stop = self.stop.clone();
            let failure = runtime.block_on(async {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|stop| *stop) => None,
                    failure = self.connection(delay) => Some(failure),
                }
            });
            // Ends the client's tasks: nothing it queued is sent later.
            drop(runtime);
            let Some(failure) = failure else { break };
            if let Failure::Spool(_) = failure {
                eprintln!(
                    "tracer: nats: {}; publishing stops, records stay in the spool for the next start",
                    failure.reason(&self.servers)
                );
                break;
            }
            Counters::add(&self.reader.shared().counters.failures, 1);
            let backlog = self.reader.shared().counters.backlog();
            self.link.down(failure.reason(&self.servers), backlog);
            delay = (delay * 2).clamp(FIRST_RETRY, MAX_RETRY);
            if matches!(failure, Failure::Publish(_) | Failure::Disconnected) {
                delay = FIRST_RETRY;
            }
        }
        self.persist(true);
    }

    /// Writes the cursor. A failure (a full disk) is reported, not fatal: publishing goes
    /// on, the cursor is written again later, and until then a restart would send
    /// acknowledged records again, which JetStream drops as duplicates.
    fn persist(&mut self, force: bool) {
        match self.reader.persist(force) {
            Ok(true) if self.cursor_failing => {
                eprintln!("tracer: nats: the spool cursor is written again");
                self.cursor_failing = false;
            }
            Ok(_) => {}
            Err(e) if !self.cursor_failing => {
                eprintln!("tracer: nats: writing the spool cursor failed: {e}; retrying");
                self.cursor_failing = true;
            }
            Err(_) => {}
        }
    }

    /// One connection, from connecting to its failure.
    async fn connection(&mut self, delay: Duration) -> Failure {
        tokio::time::sleep(delay).await;
        let disconnected = Arc::new(Notify::new());
        let client = match self.connect(Arc::clone(&disconnected)).await {
            Ok(client) => client,
            Err(failure) => return failure,
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(self.ack_timeout)
            .build(client);
        if let Err(e) = self.stream.ensure(&js).await {
            return Failure::Stream(e);
        }
        self.link.up(self.reader.shared().counters.backlog());
        self.reader.rewind();
        match self.publish(&js, &disconnected).await {
            Ok(never) => match never {},
            Err(failure) => failure,
        }
    }

    async fn connect(&self, disconnected: Arc<Notify>) -> Result<async_nats::Client, Failure> {
        let first_connect = Arc::new(AtomicBool::new(true));
        let connecting = Arc::clone(&first_connect);
        let options = ConnectOptions::new()
            .name("tracer")
            .connection_timeout(CONNECT_TIMEOUT)
            .reconnect_delay_callback(move |_| {
                if connecting.load(Relaxed) {
                    Duration::ZERO
                } else {
                    NO_RECONNECT
                }
            })
            .event_callback(move |event| {
                if matches!(event, Event::Disconnected) {
                    disconnected.notify_one();
                }
                ready(())
            });
        let options = self
            .auth
            .apply(options)
            .map_err(|e| Failure::Connect(format!("credentials: {e}")))?;
        let client = options
            .connect(self.servers.addrs())
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        first_connect.store(false, Relaxed);
        Ok(client)
    }

    /// Publishes until something fails (it never returns otherwise).
    async fn publish(
        &mut self,
        js: &jetstream::Context,
        disconnected: &Notify,
    ) -> Result<std::convert::Infallible, Failure> {
        let subject = Subject::from(self.stream.subject.as_str());
        let shared = Arc::clone(self.reader.shared());
        let counters = &shared.counters;
        let mut window: VecDeque<InFlight> = VecDeque::new();
        // One publish until this connection's first acknowledgement: right after a
        // restart the server may answer before its streams are loaded.
        let mut limit = 1;
        loop {
            while window.len() < limit {
                let Some(record) = self.reader.next_record().map_err(Failure::Spool)? else {
                    break;
                };
                window.push_back(send(js, &subject, record, counters).await?);
            }
            let room = window.len() < limit;
            let Some(oldest) = window.front_mut() else {
                self.link.progress(counters.backlog());
                self.persist(true);
                tokio::select! {
                    _ = shared.data.notified() => continue,
                    _ = disconnected.notified() => return Err(Failure::Disconnected),
                }
            };
            tokio::select! {
                biased;
                delivery = &mut oldest.ack => {
                    let sent = window.len() as u64;
                    match delivery {
                        Ok(Delivery::Stored { duplicate }) => {
                            Counters::add(&counters.duplicates, u64::from(duplicate));
                        }
                        Ok(Delivery::TooLarge(e)) => {
                            Counters::add(&counters.discarded, 1);
                            eprintln!("tracer: nats: a record is not published: {e} (counted as discarded)");
                        }
                        Err(e) => {
                            Counters::add(&counters.retries, sent);
                            return Err(Failure::Publish(e));
                        }
                    }
                    if let Some(done) = window.pop_front() {
                        self.reader.ack(done.end, done.bytes);
                    }
                    self.persist(false);
                    self.link.progress(counters.backlog());
                    limit = self.max_in_flight;
                }
                _ = disconnected.notified() => {
                    Counters::add(&counters.retries, window.len() as u64);
                    return Err(Failure::Disconnected);
                }
                _ = shared.data.notified(), if room => {}
            }
        }
    }
}

/// Sends one record; its acknowledgement is awaited later, in order.
async fn send(
    js: &jetstream::Context,
    subject: &Subject,
    record: Record,
    counters: &Counters,
) -> Result<InFlight, Failure> {
    let bytes = record.spooled_bytes();
    let id = message_id(&record.payload);
    let message = PublishMessage::build()
        .payload(record.payload)
        .message_id(id);
    Counters::add(&counters.published, 1);
    let ack: Pin<Box<dyn Future<Output = _> + Send>> =
        match js.send_publish(subject.clone(), message).await {
            Ok(ack) => Box::pin(async move {
                let ack = ack.await?;
                Ok(Delivery::Stored {
                    duplicate: ack.duplicate,
                })
            }),
            Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                Box::pin(ready(Ok(Delivery::TooLarge(e.to_string()))))
            }
            Err(e) => return Err(Failure::Publish(e)),
        };
    Ok(InFlight {
        end: record.end,
        bytes,
        ack,
    })
}

/// The de-duplication id: the hex SHA-256 of the record, unique per record since each
/// carries its own time, connection and (with the audit chain) sequence number.
pub fn message_id(payload: &[u8]) -> String {
    format!("{:x}", Sha256::digest(payload))
}
