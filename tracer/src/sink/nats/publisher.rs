//! The publisher thread: reads the spool in order and publishes its records to JetStream
//! with a `Nats-Msg-Id`, keeping up to `max_in_flight` publishes ahead of the oldest
//! unacknowledged one, and moves the spool's cursor as acknowledgements arrive (in order).
//! A message carries one record, or with `records_per_message` above one as many as the
//! spool holds up to that number, one per line (within [`MAX_MESSAGE_BYTES`]).
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
use bytes::{Bytes, BytesMut};
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
/// A message of several records ends before it would pass this; a single record larger
/// than this still goes alone, as with one record per message.
const MAX_MESSAGE_BYTES: usize = 64 << 10;

pub struct Publisher {
    pub servers: Servers,
    pub auth: Auth,
    pub stream: StreamSpec,
    pub ack_timeout: Duration,
    pub max_in_flight: usize,
    pub records_per_message: usize,
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

/// Consecutive records of the spool, to be sent as one message.
struct Message {
    /// The records, one per line (no newline after the last).
    payload: Bytes,
    records: u64,
    /// Where the last record ends.
    end: Position,
    /// Bytes the records take in the spool.
    bytes: u64,
}

impl Message {
    fn single(record: Record) -> Self {
        Self {
            bytes: record.spooled_bytes(),
            end: record.end,
            records: 1,
            payload: record.payload,
        }
    }
}

/// A publish waiting for its acknowledgement.
struct InFlight {
    end: Position,
    records: u64,
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
        // A record read from the spool that did not fit the message before it.
        let mut held = None;
        // One publish until this connection's first acknowledgement: right after a
        // restart the server may answer before its streams are loaded.
        let mut limit = 1;
        loop {
            while window.len() < limit {
                let Some(message) = self.next_message(&mut held).map_err(Failure::Spool)? else {
                    break;
                };
                window.push_back(send(js, &subject, message, counters).await?);
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
                    let records = oldest.records;
                    match delivery {
                        Ok(Delivery::Stored { duplicate }) => {
                            Counters::add(&counters.duplicates, if duplicate { records } else { 0 });
                        }
                        Ok(Delivery::TooLarge(e)) => {
                            Counters::add(&counters.discarded, records);
                            eprintln!("tracer: nats: {records} record(s) not published: {e} (counted as discarded)");
                        }
                        Err(e) => {
                            Counters::add(&counters.retries, in_flight(&window));
                            return Err(Failure::Publish(e));
                        }
                    }
                    if let Some(done) = window.pop_front() {
                        self.reader.ack(done.end, done.records, done.bytes);
                    }
                    self.persist(false);
                    self.link.progress(counters.backlog());
                    limit = self.max_in_flight;
                }
                _ = disconnected.notified() => {
                    Counters::add(&counters.retries, in_flight(&window));
                    return Err(Failure::Disconnected);
                }
                _ = shared.data.notified(), if room => {}
            }
        }
    }

    /// The next message: the held record or the spool's next, then as many following
    /// records as the spool holds now, up to `records_per_message` and
    /// [`MAX_MESSAGE_BYTES`]. A record that would pass the bytes is held for the next.
    fn next_message(&mut self, held: &mut Option<Record>) -> io::Result<Option<Message>> {
        let first = match held.take() {
            Some(record) => record,
            None => match self.reader.next_record()? {
                Some(record) => record,
                None => return Ok(None),
            },
        };
        let mut message = Message::single(first);
        let mut payload: Option<BytesMut> = None;
        while (message.records as usize) < self.records_per_message {
            let Some(record) = self.reader.next_record()? else {
                break;
            };
            let len = payload
                .as_ref()
                .map_or(message.payload.len(), BytesMut::len);
            if len + 1 + record.payload.len() > MAX_MESSAGE_BYTES {
                *held = Some(record);
                break;
            }
            let joined = payload.get_or_insert_with(|| {
                let mut joined = BytesMut::with_capacity(MAX_MESSAGE_BYTES);
                joined.extend_from_slice(&message.payload);
                joined
            });
            joined.extend_from_slice(b"\n");
            joined.extend_from_slice(&record.payload);
            message.records += 1;
            message.bytes += record.spooled_bytes();
            message.end = record.end;
        }
        if let Some(joined) = payload {
            message.payload = joined.freeze();
        }
        Ok(Some(message))
    }
}

/// Records in the messages not yet acknowledged: sent again after a failure.
fn in_flight(window: &VecDeque<InFlight>) -> u64 {
    window.iter().map(|f| f.records).sum()
}

/// Sends one message; its acknowledgement is awaited later, in order.
async fn send(
    js: &jetstream::Context,
    subject: &Subject,
    message: Message,
    counters: &Counters,
) -> Result<InFlight, Failure> {
    let Message {
        payload,
        records,
        end,
        bytes,
    } = message;
    let id = message_id(&payload);
    let message = PublishMessage::build().payload(payload).message_id(id);
    Counters::add(&counters.published, records);
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
        end,
        records,
        bytes,
        ack,
    })
}

/// The de-duplication id: the hex SHA-256 of the message's records, unique per record
/// since each carries its own time, connection and (with the audit chain) sequence
/// number. With one record per message, the record's own SHA-256.
pub fn message_id(payload: &[u8]) -> String {
    format!("{:x}", Sha256::digest(payload))
}
