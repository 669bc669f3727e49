//! `tracer-hub serve --nats URL`: a durable pull consumer on the sensors' JetStream
//! stream. A message is acknowledged only after its batch is committed, so a hub
//! killed mid-batch gets the batch again; the store drops what it already holds.
//! Several hubs sharing one store may share the consumer (same `--nats-consumer`).
//!
//! Messages come from the consumer's continuous pull stream, and batches are cut on the
//! hub's own clock. (async-nats' one-shot `batch()` waits its expiry plus 5 s when the
//! server's timeout status does not come, which stalled live alerts for ~5 s.)
use std::{collections::VecDeque, time::Duration};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    context::ConsumerInfoErrorKind,
};
use futures_util::future::join_all;

use super::{
    Line, Next, Pulled,
    delivered::{Delivered, Delivery},
    working::Working,
};

/// The stream the sensor publishes to by default (`tracer run --nats-stream`).
pub const DEFAULT_STREAM: &str = "TRACER";
pub const DEFAULT_CONSUMER: &str = "tracer-hub";
/// Unacknowledged messages redeliver after this: longer than any batch commit, short
/// enough that the batch a killed hub held comes back soon after it restarts.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// A batch ends once its messages hold this many records (`--nats-batch`), or
/// [`BATCH_WAIT`] after its first message. A backlog drains in large batches, because each commit rewrites every
/// index page the batch touched (see `import`); live traffic is cut by the wait long
/// before. The consumer hands out no more than two batches unacknowledged (the one
/// being stored, and the next, whose lines are taken apart while the first commits),
/// so a batch's messages wait for the commit before theirs and their own, within
/// [`ACK_WAIT`] (50,000 commit in 2-4 s here). With 20,000 and four batches in flight, the same 200,000 messages
/// drained 21,098/s into SQLite and 12,692/s into PostgreSQL; with this, 29,055/s and
/// 14,776/s (one bench run each, back to back).
pub const DEFAULT_BATCH: usize = 50_000;
const BATCH_WAIT: Duration = Duration::from_millis(50);
/// How long [`Source::next_batch`] waits for a first message before it returns an empty
/// batch, so that the caller's periodic work runs on an idle stream too.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// Bytes a pull asks for. The server keeps at most 64 MiB waiting to be written to a
/// client (`max_pending`) and drops what passes it (a "slow consumer"): the messages
/// then come again only after [`ACK_WAIT`], behind later ones. A pull of 50,000 messages
/// of 1 KiB each stayed just under it; one of 64 records per message (60 KiB each) went
/// far past it and left gaps of thousands of records open for 10 s. Further pulls follow
/// as the messages are read.
const PULL_BYTES: usize = 16 << 20;
/// The server proves the pull stream alive this often when no message flows.
const HEARTBEAT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct NatsSettings {
    pub url: String,
    pub stream: String,
    pub consumer: String,
    /// The most records in one batch; twice as many messages may be unacknowledged.
    pub batch: usize,
    pub readers: Readers,
}

/// Who reads the durable consumer, which decides how a stored batch is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readers {
    /// This hub alone: its store is its own (SQLite). A consumer it creates acknowledges
    /// every earlier message with each acknowledgement (`AckPolicy::All`), so one
    /// acknowledgement, of the batch's newest message, covers the batch: nats-server
    /// and the hub then do one instead of one per message. NATS -> SQLite drained
    /// faster in all eight interleaved rounds of two runs of `cargo xtask bench --hub
    /// --hub-compare-bin` (medians 25,860 against 20,564 records/s and 21,784 against
    /// 20,393).
    Alone,
    /// Hubs sharing one PostgreSQL store share the consumer, and each message is
    /// acknowledged by itself: acknowledging every earlier message would acknowledge
    /// those another hub holds and has not committed yet.
    Shared,
}

/// How the consumer acknowledges, given the one it already has (if any), for its
/// readers; an error says why the existing consumer cannot be used.
fn ack_policy(existing: Option<AckPolicy>, readers: Readers) -> Result<AckPolicy, String> {
    match (existing, readers) {
        (None, Readers::Alone) => Ok(AckPolicy::All),
        (None, Readers::Shared) => Ok(AckPolicy::Explicit),
        (Some(AckPolicy::Explicit), _) => Ok(AckPolicy::Explicit),
        (Some(AckPolicy::All), Readers::Alone) => Ok(AckPolicy::All),
        (Some(AckPolicy::All), Readers::Shared) => Err(
            "it acknowledges every earlier message with each acknowledgement (a hub with a \
             SQLite store of its own created it), so hubs sharing a PostgreSQL store would \
             acknowledge each other's uncommitted messages: give them another \
             --nats-consumer"
                .to_owned(),
        ),
        (Some(other), _) => Err(format!(
            "its acknowledgement policy is {other:?}: a hub killed before its batch was \
             committed would lose the batch; give the hub another --nats-consumer"
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("nats: cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error(
        "nats: stream {stream}: {detail} (is a sensor publishing with --nats-create-stream, or was the stream created?)"
    )]
    Stream { stream: String, detail: String },
    #[error("nats: consumer {consumer} on stream {stream}: {detail}")]
    Consumer {
        stream: String,
        consumer: String,
        detail: String,
    },
    #[error("nats: fetching from stream {stream}: {detail}")]
    Fetch { stream: String, detail: String },
}

pub struct Source {
    settings: NatsSettings,
    /// The pull stream's messages as they come, read by a task of their own.
    delivered: Delivered,
    /// Messages taken while a batch was stored ([`Next`]): the next batch begins with
    /// them.
    ahead: VecDeque<Delivery>,
    ahead_lines: usize,
    /// What the reader met after the messages taken ahead: the next batch ends there.
    failed: Option<NatsError>,
    acks: AckPolicy,
    resumed: Option<Resumed>,
    stream_created_ns: i64,
}

/// A consumer that was missing, created again at a point the store kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// A restart of it was under way: at the message after the acknowledged floor.
    Restart(u64),
    /// At the message after the last this hub, reading it alone, committed; or, where
    /// each message is acknowledged by itself (hubs sharing it), after the messages
    /// from the stream's first that the hubs committed, all of them.
    Committed(u64),
}

/// Where a consumer that must start again (see [`Source::connect`]) starts: the
/// message after the acknowledged floor, on the stream created at `stream_created_ns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restart {
    pub stream: String,
    pub consumer: String,
    pub stream_created_ns: i64,
    pub start_sequence: u64,
}

/// Keeps a [`Restart`] from before a consumer is deleted until it is created again
/// (the hub's store).
pub trait Restarts {
    /// The restart begun and not finished for this consumer, if any.
    fn saved(&mut self, stream: &str, consumer: &str) -> Result<Option<Restart>, String>;
    fn save(&mut self, restart: &Restart) -> Result<(), String>;
    /// The consumer exists: no restart is pending any more.
    fn clear(&mut self, stream: &str, consumer: &str) -> Result<(), String>;
    /// The message after the last one a hub reading this consumer alone committed.
    fn committed(&mut self, stream: &str, consumer: &str) -> Result<Option<Restart>, String>;
    /// The runs (first, last) of stream sequences committed from this consumer of the
    /// stream created at `stream_created_ns`, in order.
    fn committed_runs(
        &mut self,
        stream: &str,
        consumer: &str,
        stream_created_ns: i64,
    ) -> Result<Vec<(u64, u64)>, String>;
}

/// What to keep once a batch is committed, for a consumer an operator deletes to be
/// created again where the store's messages end.
pub enum Committed {
    /// The message after the batch's newest: this hub reads the consumer alone, and
    /// its acknowledgement covers every earlier message, so all of them are committed.
    After(Restart),
    /// The batch's messages by stream sequence: each is acknowledged by itself (hubs
    /// sharing the consumer), so the messages before them need not all be committed.
    Messages {
        stream: String,
        consumer: String,
        stream_created_ns: i64,
        sequences: Vec<u64>,
    },
}

/// The message after the committed ones that begin at the stream's `first` (the
/// messages before it are gone from the stream); `None` when `first` itself is not
/// committed. `runs` are in order and joined where adjacent.
fn after_committed(runs: &[(u64, u64)], first: u64) -> Option<u64> {
    runs.iter()
        .find(|&&(from, to)| from <= first && first <= to)
        .map(|&(_, to)| to.saturating_add(1))
}

/// When the stream was created, which tells a stream from one of the same name created
/// again (its sequence numbers start over).
fn stream_created_ns(info: &jetstream::stream::Info) -> i64 {
    i64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

impl Source {
    /// Connects to the consumer, creating it if it is missing. `restarts` keeps where a
    /// consumer that must start again starts, while it is deleted and created again.
    pub async fn connect(
        settings: &NatsSettings,
        restarts: &mut (dyn Restarts + Send),
    ) -> Result<Self, NatsError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(&settings.url)
            .await
            .map_err(|e| NatsError::Connect {
                url: redact_url(&settings.url),
                detail: e.to_string(),
            })?;
        let js = jetstream::new(client.clone());
        let stream = js
            .get_stream(&settings.stream)
            .await
            .map_err(|e| NatsError::Stream {
                stream: settings.stream.clone(),
                detail: e.to_string(),
            })?;
        let consumer_error = |detail: String| NatsError::Consumer {
            stream: settings.stream.clone(),
            consumer: settings.consumer.clone(),
            detail,
        };
        // A consumer's acknowledgement and delivery policies cannot change: an existing
        // one keeps its own (an error when they do not suit these readers).
        let existing = match stream.consumer_info(&settings.consumer).await {
            Ok(info) => Some(info),
            Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => None,
            // Not knowing what pending messages it has, the hub must not take it.
            Err(e) => return Err(consumer_error(e.to_string())),
        };
        let acks = ack_policy(
            existing.as_ref().map(|info| info.config.ack_policy),
            settings.readers,
        )
        .map_err(consumer_error)?;
        let created_ns = stream_created_ns(stream.cached_info());
        let saved = restarts
            .saved(&settings.stream, &settings.consumer)
            .map_err(consumer_error)?;
        let mut resumed = None;
        let mut restarting = saved.is_some();
        let deliver_policy = match &existing {
            // A reader that went away holding messages (a killed hub, a lost
            // connection, a batch that failed to store) left them pending: they come
            // again only after the ack wait, and acknowledging a newer message first
            // would cover them unstored. So the consumer starts again right after what
            // was acknowledged, and they come first, in order. Where is kept first: a
            // hub that dies between the delete and the create finds no consumer, and
            // would otherwise read the whole stream again.
            Some(info) if acks == AckPolicy::All && info.num_ack_pending > 0 => {
                let start_sequence = info.ack_floor.stream_sequence + 1;
                restarting = true;
                restarts
                    .save(&Restart {
                        stream: settings.stream.clone(),
                        consumer: settings.consumer.clone(),
                        stream_created_ns: created_ns,
                        start_sequence,
                    })
                    .map_err(consumer_error)?;
                stream
                    .delete_consumer(&settings.consumer)
                    .await
                    .map_err(|e| consumer_error(e.to_string()))?;
                DeliverPolicy::ByStartSequence { start_sequence }
            }
            Some(info) => info.config.deliver_policy,
            // A restart that did not finish. Only on the stream it was begun on: one
            // deleted and created again numbers its messages from 1.
            None => match &saved {
                Some(restart) if restart.stream_created_ns == created_ns => {
                    resumed = Some(Resumed::Restart(restart.start_sequence));
                    DeliverPolicy::ByStartSequence {
                        start_sequence: restart.start_sequence,
                    }
                }
                // Deleted by someone else (an operator): a stream read again from
                // its first message takes as long as the stream is big. A hub reading
                // it alone kept the message after what it committed; hubs sharing it,
                // and a hub alone on a consumer that acknowledged each message, each
                // kept the messages they committed, which together say how far from
                // the stream's first message every one was.
                _ => {
                    let point = match acks {
                        AckPolicy::All => restarts
                            .committed(&settings.stream, &settings.consumer)
                            .map_err(consumer_error)?
                            .filter(|point| point.stream_created_ns == created_ns),
                        _ => None,
                    };
                    let start = match point {
                        Some(point) => Some(point.start_sequence),
                        None => after_committed(
                            &restarts
                                .committed_runs(&settings.stream, &settings.consumer, created_ns)
                                .map_err(consumer_error)?,
                            stream.cached_info().state.first_sequence,
                        ),
                    };
                    match start {
                        Some(start_sequence) => {
                            resumed = Some(Resumed::Committed(start_sequence));
                            DeliverPolicy::ByStartSequence { start_sequence }
                        }
                        None => DeliverPolicy::All,
                    }
                }
            },
        };
        // Create or update: a consumer made by a hub with another --nats-batch takes
        // this one's bound on unacknowledged messages.
        let consumer: PullConsumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(settings.consumer.clone()),
                deliver_policy,
                ack_policy: acks,
                ack_wait: ACK_WAIT,
                max_ack_pending: 2 * settings.batch as i64,
                ..Default::default()
            })
            .await
            .map_err(|e| consumer_error(e.to_string()))?;
        if restarting {
            restarts
                .clear(&settings.stream, &settings.consumer)
                .map_err(consumer_error)?;
        }
        let messages =
            pull_stream(&consumer, settings.batch)
                .await
                .map_err(|e| NatsError::Fetch {
                    stream: settings.stream.clone(),
                    detail: e.to_string(),
                })?;
        Ok(Self {
            settings: settings.clone(),
            // Lines held delivered and not yet taken: a batch's worth, so messages of
            // many records cannot pile up in the hub while a batch is stored.
            delivered: Delivered::start(messages, settings.batch, Working::start(client, ACK_WAIT)),
            ahead: VecDeque::new(),
            ahead_lines: 0,
            failed: None,
            acks,
            resumed,
            stream_created_ns: created_ns,
        })
    }

    /// Where the consumer was created, when it was missing and the store kept a point
    /// for it (see [`Restarts`]).
    pub fn resumed(&self) -> Option<Resumed> {
        self.resumed
    }

    /// What to keep once `batch` is committed (see [`Committed`]).
    pub fn committed(&self, batch: &[Delivery]) -> Option<Committed> {
        let (stream, consumer) = (self.settings.stream.clone(), self.settings.consumer.clone());
        let stream_created_ns = self.stream_created_ns;
        // 0: a message without its JetStream metadata, which no consumer delivers.
        let sequences = batch
            .iter()
            .map(Delivery::stream_sequence)
            .filter(|&s| s > 0);
        if self.acks == AckPolicy::All {
            return Some(Committed::After(Restart {
                stream,
                consumer,
                stream_created_ns,
                start_sequence: sequences.max()? + 1,
            }));
        }
        let sequences: Vec<u64> = sequences.collect();
        (!sequences.is_empty()).then_some(Committed::Messages {
            stream,
            consumer,
            stream_created_ns,
            sequences,
        })
    }

    /// Whether each message is acknowledged by itself, though this hub reads its
    /// consumer alone (the consumer was created so, by an earlier version or a hub
    /// sharing a store).
    pub fn acknowledges_each_alone(&self) -> bool {
        self.settings.readers == Readers::Alone && self.acks == AckPolicy::Explicit
    }

    /// Acknowledges a stored batch: each message, or only its newest (by stream
    /// sequence: a message delivered again sorts before newer ones) when one
    /// acknowledgement covers every earlier message. How many acknowledgements failed;
    /// their messages come again and are recognised as stored.
    pub async fn acknowledge(&self, batch: &[Delivery]) -> usize {
        let acks = match self.acks {
            AckPolicy::All => {
                join_all(
                    batch
                        .iter()
                        .max_by_key(|d| d.stream_sequence())
                        .map(Delivery::ack),
                )
                .await
            }
            _ => join_all(batch.iter().map(Delivery::ack)).await,
        };
        acks.iter().filter(|a| a.is_err()).count()
    }

    /// A batch that could not be stored comes again after `delay`. Returns whether the
    /// hub must connect again for that: when one acknowledgement covers every earlier
    /// message, a newer batch stored first would cover this one, so it must come first
    /// (`connect` starts the consumer again after what was acknowledged).
    pub async fn reject(&self, batch: &[Delivery], delay: Duration) -> bool {
        if self.acks == AckPolicy::All {
            return true;
        }
        join_all(batch.iter().map(|d| d.nak(AckKind::Nak(Some(delay))))).await;
        false
    }

    fn fetch_error(&self, detail: String) -> NatsError {
        NatsError::Fetch {
            stream: self.settings.stream.clone(),
            detail,
        }
    }

    /// The next messages: until they hold [`NatsSettings::batch`] records, or what came
    /// within [`BATCH_WAIT`] of the first; empty when nothing came for [`IDLE_WAIT`].
    pub async fn next_batch(&mut self) -> Result<Vec<Delivery>, NatsError> {
        let mut batch = Vec::new();
        let mut lines = 0;
        while lines < self.settings.batch
            && let Some(delivery) = self.ahead.pop_front()
        {
            self.ahead_lines -= delivery.lines.len();
            lines += delivery.lines.len();
            batch.push(delivery);
        }
        if !self.ahead.is_empty() {
            return Ok(batch);
        }
        if let Some(failed) = self.failed.take() {
            return if batch.is_empty() {
                Err(failed)
            } else {
                self.failed = Some(failed);
                Ok(batch)
            };
        }
        let wait = if batch.is_empty() {
            IDLE_WAIT
        } else {
            BATCH_WAIT
        };
        let mut deadline = tokio::time::Instant::now() + wait;
        while lines < self.settings.batch {
            let delivery = match tokio::time::timeout_at(deadline, self.delivered.next()).await {
                Err(_elapsed) => break,
                Ok(delivery) => delivery.map_err(|detail| self.fetch_error(detail))?,
            };
            if batch.is_empty() {
                deadline = tokio::time::Instant::now() + BATCH_WAIT;
            }
            lines += delivery.lines.len();
            batch.push(delivery);
        }
        Ok(batch)
    }
}

/// The messages delivered while a batch is stored, taken without waiting, up to a
/// batch: the next batch begins with them.
impl Next for Source {
    fn pull(&mut self, take: &mut dyn FnMut(&Line)) -> Pulled {
        if self.ahead_lines >= self.settings.batch || self.failed.is_some() {
            return Pulled::Done;
        }
        match self.delivered.try_next() {
            Some(Ok(delivery)) => {
                delivery.lines.iter().for_each(take);
                self.ahead_lines += delivery.lines.len();
                self.ahead.push_back(delivery);
                Pulled::Lines
            }
            Some(Err(detail)) => {
                self.failed = Some(self.fetch_error(detail));
                Pulled::Done
            }
            None => Pulled::NotYet,
        }
    }
}

/// Messages are pulled by count and by bytes ([`PULL_BYTES`]).
async fn pull_stream(consumer: &PullConsumer, batch: usize) -> Result<pull::Stream, String> {
    consumer
        .stream()
        .max_messages_per_batch(batch)
        .max_bytes_per_batch(PULL_BYTES)
        .heartbeat(HEARTBEAT)
        .messages()
        .await
        .map_err(|e| e.to_string())
}

/// A URL without its user and password, for messages.
pub fn redact_url(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((before, after)) => match before.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***@{after}"),
            None => format!("***@{after}"),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_alone_acknowledges_batches_at_once_and_hubs_sharing_a_store_each_message() {
        use AckPolicy::{All, Explicit, None as Never};
        use Readers::{Alone, Shared};
        assert_eq!(ack_policy(None, Alone), Ok(All));
        assert_eq!(ack_policy(None, Shared), Ok(Explicit));
        // An existing consumer keeps its policy where it is safe.
        assert_eq!(ack_policy(Some(Explicit), Alone), Ok(Explicit));
        assert_eq!(ack_policy(Some(Explicit), Shared), Ok(Explicit));
        assert_eq!(ack_policy(Some(All), Alone), Ok(All));
        // Not where a hub's acknowledgement would cover another's uncommitted batch, or
        // where nothing waits for the commit.
        assert!(ack_policy(Some(All), Shared).is_err_and(|e| e.contains("--nats-consumer")));
        assert!(ack_policy(Some(Never), Alone).is_err_and(|e| e.contains("lose the batch")));
    }

    #[test]
    fn a_shared_consumer_starts_again_after_the_messages_committed_from_the_streams_first() {
        let runs = [(1, 40), (46, 90)];
        assert_eq!(after_committed(&runs, 1), Some(41));
        // Messages before the stream's first are gone, committed or not.
        assert_eq!(after_committed(&runs, 30), Some(41));
        assert_eq!(after_committed(&runs, 50), Some(91));
        // The stream's first message was never committed: from the first message.
        assert_eq!(after_committed(&runs, 42), None);
        assert_eq!(after_committed(&[], 1), None);
        assert_eq!(after_committed(&[(1, u64::MAX)], 1), Some(u64::MAX));
    }
}
