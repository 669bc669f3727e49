//! Messages the hub holds past half the consumer's ack wait are reported as in progress
//! (JetStream's `+WPI`), so the server does not deliver them again while they wait.
//!
//! A message waits for the batch before its own and for its own: one batch is stored
//! while the next is taken apart. That fits the ack wait while a batch commits in a few
//! seconds, but not when it waits too: for a slow store, or for another hub on the same
//! stream, whose batch holds the stream's lock until it commits. Two hubs sharing a
//! consumer into PostgreSQL took turns that long: their messages were delivered again
//! while held, to one hub or the other, taken apart and looked up a second time, and
//! the drain of 200,021 records took minutes instead of seconds. A message that is
//! reported in progress is still delivered again if the hub dies: the report is only
//! sent while the hub runs.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_nats::{Client, Subject};
use bytes::Bytes;
use tokio::time::Instant;

/// The acknowledgement that restarts a message's ack wait.
const IN_PROGRESS: &[u8] = b"+WPI";

/// When each held message was delivered or last reported, by its reply subject (unique
/// per delivery).
type Held = Arc<Mutex<HashMap<String, Instant>>>;

/// The task that reports held messages in progress.
pub struct Working {
    held: Held,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Working {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Working {
    /// Reports in progress, every quarter of `ack_wait`, each held message not
    /// acknowledged or reported in the last half of it.
    pub fn start(client: Client, ack_wait: Duration) -> Self {
        let held = Held::default();
        let task = tokio::spawn(report(client, held.clone(), ack_wait));
        Self { held, task }
    }

    /// What the reader of the pull stream holds messages with.
    pub fn holder(&self) -> Holder {
        Holder {
            held: self.held.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Holder {
    held: Held,
}

impl Holder {
    /// Holds the message whose acknowledgement goes to `reply` until the guard drops.
    pub fn hold(&self, reply: &Subject) -> Holding {
        let reply = reply.as_str().to_owned();
        lock(&self.held).insert(reply.clone(), Instant::now());
        Holding {
            held: self.held.clone(),
            reply,
        }
    }
}

/// A message held by the hub; dropped once it is acknowledged or given up.
pub struct Holding {
    held: Held,
    reply: String,
}

impl Drop for Holding {
    fn drop(&mut self) {
        lock(&self.held).remove(&self.reply);
    }
}

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
    // The map stays consistent whatever panicked while holding it.
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn report(client: Client, held: Held, ack_wait: Duration) {
    let mut tick = tokio::time::interval(ack_wait / 4);
    loop {
        tick.tick().await;
        for reply in due(&held, Instant::now(), ack_wait / 2) {
            // A report that fails leaves the message to be delivered again, which the
            // store recognises: no worse than without it.
            if client
                .publish(reply, Bytes::from_static(IN_PROGRESS))
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

/// The held messages not reported for `after`, marked as reported `now`.
fn due(held: &Held, now: Instant, after: Duration) -> Vec<String> {
    lock(held)
        .iter_mut()
        .filter(|(_, since)| now.duration_since(**since) >= after)
        .map(|(reply, since)| {
            *since = now;
            reply.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_held_past_half_the_wait_are_due_once_per_half() {
        let holder = Holder {
            held: Held::default(),
        };
        let held = &holder.held;
        let start = Instant::now();
        lock(held).insert("a".to_owned(), start);
        let guard = holder.hold(&Subject::from("b"));
        lock(held).insert(guard.reply.clone(), start + Duration::from_secs(4));
        let half = Duration::from_secs(5);
        assert!(due(held, start + Duration::from_secs(4), half).is_empty());
        assert_eq!(due(held, start + half, half), ["a"]);
        assert!(due(held, start + Duration::from_secs(8), half).is_empty());
        let mut both = due(held, start + Duration::from_secs(10), half);
        both.sort();
        assert_eq!(both, ["a", "b"]);
        drop(guard);
        assert_eq!(
            due(held, start + Duration::from_secs(20), half),
            ["a"],
            "an acknowledged message is not reported"
        );
    }
}
