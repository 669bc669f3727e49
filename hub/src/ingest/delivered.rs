//! A consumer's messages as they come: a task reads the pull stream into a queue, so
//! the next batch's messages are in the hub while one is stored, and each message
//! becomes its lines.
use std::sync::Arc;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt as _;
use tokio::sync::{
    Semaphore,
    mpsc::{self, error::TryRecvError},
};

use super::{
    Line, MAX_LINE_BYTES, Origin, TooLong,
    working::{Holder, Holding, Working},
};

/// One message, as its lines (one per record), until it is acknowledged.
pub struct Delivery {
    pub lines: Vec<Line>,
    message: jetstream::Message,
    /// Reported in progress while held long (`working`).
    _holding: Option<Holding>,
}

impl Delivery {
    pub(super) async fn ack(&self) -> Result<(), String> {
        self.message.ack().await.map_err(|e| e.to_string())
    }

    pub(super) fn stream_sequence(&self) -> u64 {
        self.message.info().map_or(0, |info| info.stream_sequence)
    }

    /// Asks for redelivery (after the delay the kind names).
    pub(super) async fn nak(&self, kind: AckKind) -> Result<(), String> {
        self.message.ack_with(kind).await.map_err(|e| e.to_string())
    }
}

/// The messages the reader task took from the pull stream, in order.
pub struct Delivered {
    queue: mpsc::UnboundedReceiver<Result<Delivery, String>>,
    reader: tokio::task::JoinHandle<()>,
    /// Lines the reader may hold that were not taken yet.
    budget: Arc<Semaphore>,
    limit: usize,
    _working: Working,
}

impl Drop for Delivered {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Delivered {
    /// Starts reading `messages`, holding at most `limit` lines not taken; `working`
    /// reports the messages held in progress until they are acknowledged.
    pub fn start(messages: pull::Stream, limit: usize, working: Working) -> Self {
        let (to, queue) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(limit));
        let reader = tokio::spawn(read(messages, to, budget.clone(), limit, working.holder()));
        Self {
            queue,
            reader,
            budget,
            limit,
            _working: working,
        }
    }

    /// The next message, once it comes, or why none will.
    pub async fn next(&mut self) -> Result<Delivery, String> {
        match self.queue.recv().await {
            Some(delivery) => self.taken(delivery),
            None => Err("the pull stream's reader ended".to_owned()),
        }
    }

    /// The next message if one is here; `None` if none came yet.
    pub fn try_next(&mut self) -> Option<Result<Delivery, String>> {
        match self.queue.try_recv() {
            Ok(delivery) => Some(self.taken(delivery)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                Some(Err("the pull stream's reader ended".to_owned()))
            }
        }
    }

    fn taken(&self, delivery: Result<Delivery, String>) -> Result<Delivery, String> {
        let delivery = delivery?;
        self.budget
            .add_permits(permits(&delivery, self.limit) as usize);
        Ok(delivery)
    }
}

/// The reader's hold on the lines of one message: at most the whole budget.
fn permits(delivery: &Delivery, budget: usize) -> u32 {
    u32::try_from(delivery.lines.len().min(budget)).unwrap_or(u32::MAX)
}

/// Reads the pull stream as messages come, until it fails or the source is dropped,
/// so the next batch's messages are in the hub while one is stored.
async fn read(
    mut messages: pull::Stream,
    to: mpsc::UnboundedSender<Result<Delivery, String>>,
    budget: Arc<Semaphore>,
    limit: usize,
    holder: Holder,
) {
    loop {
        let item = match messages.next().await {
            None => Err("the pull stream ended".to_owned()),
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok(message)) => {
                let stream_seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                let delivery = Delivery {
                    lines: lines_of(stream_seq, &message.payload),
                    _holding: message.reply.as_ref().map(|reply| holder.hold(reply)),
                    message,
                };
                match budget.acquire_many(permits(&delivery, limit)).await {
                    Ok(held) => held.forget(),
                    Err(_closed) => return,
                }
                Ok(delivery)
            }
        };
        let end = item.is_err();
        if to.send(item).is_err() || end {
            return;
        }
    }
}

/// A message's records, one per line. A sensor sends one record per message unless told
/// otherwise (`--nats-records-per-message`); empty lines (a trailing newline) are not
/// records, but an empty message is one empty line, rejected and counted like any junk.
fn lines_of(stream_seq: u64, payload: &[u8]) -> Vec<Line> {
    let several = payload
        .strip_suffix(b"\n")
        .unwrap_or(payload)
        .contains(&b'\n');
    let mut lines = payload
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(i, bytes)| Line {
            origin: Origin::Nats {
                stream_seq,
                line: several.then(|| u32::try_from(i + 1).unwrap_or(u32::MAX)),
            },
            bytes: if bytes.len() > MAX_LINE_BYTES {
                Err(TooLong {
                    bytes: bytes.len() as u64,
                })
            } else {
                Ok(bytes.to_vec())
            },
        })
        .collect::<Vec<_>>();
    if lines.is_empty() {
        lines.push(Line {
            origin: Origin::Nats {
                stream_seq,
                line: None,
            },
            bytes: Ok(Vec::new()),
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(lines: &[Line]) -> Vec<(String, Result<&[u8], u64>)> {
        lines
            .iter()
            .map(|l| {
                let bytes = match &l.bytes {
                    Ok(bytes) => Ok(bytes.as_slice()),
                    Err(too_long) => Err(too_long.bytes),
                };
                (l.origin.to_string(), bytes)
            })
            .collect()
    }

    #[test]
    fn a_message_of_one_record_is_one_line_named_by_its_message() {
        for payload in [&b"{\"a\":1}"[..], b"{\"a\":1}\n"] {
            assert_eq!(
                taken(&lines_of(7, payload)),
                [("nats message 7".to_owned(), Ok(&b"{\"a\":1}"[..]))]
            );
        }
        // Junk to reject and count, not to drop unseen.
        for empty in [&b""[..], b"\n", b"\n\n"] {
            assert_eq!(
                taken(&lines_of(8, empty)),
                [("nats message 8".to_owned(), Ok(&b""[..]))]
            );
        }
    }

    #[test]
    fn a_message_of_several_records_is_one_line_each_named_by_its_place() {
        let long = vec![b'x'; MAX_LINE_BYTES + 1];
        let payload = [&b"{\"a\":1}\n\n{\"a\":2}\n"[..], &long, b"\n{\"a\":3}"].concat();
        assert_eq!(
            taken(&lines_of(9, &payload)),
            [
                ("nats message 9 line 1".to_owned(), Ok(&b"{\"a\":1}"[..])),
                ("nats message 9 line 2".to_owned(), Ok(&b"{\"a\":2}"[..])),
                (
                    "nats message 9 line 3".to_owned(),
                    Err(MAX_LINE_BYTES as u64 + 1)
                ),
                ("nats message 9 line 4".to_owned(), Ok(&b"{\"a\":3}"[..])),
            ]
        );
    }
}
