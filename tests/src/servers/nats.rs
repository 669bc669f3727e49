//! nats-server (Debian's package) with JetStream, its file store in a temp dir that
//! outlives restarts.

use super::{spawn_logged, wait_listening};
use crate::ports::free_port;
use crate::process::Guarded;
use anyhow::{Context, Result, bail};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub struct NatsServer {
    // Declared first: the server stops before its store is removed.
    child: Option<Guarded>,
    port: u16,
    dir: TempDir,
    starts: u32,
}

impl NatsServer {
    /// `nats-server -js` on 127.0.0.1 and a free port, with its own store dir.
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir().context("creating nats-server dir")?;
        let mut server = Self {
            child: None,
            port: free_port(),
            dir,
            starts: 0,
        };
        server.spawn()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL a client (the tracer) is given.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream file store.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Stops the server with SIGTERM (a clean shutdown that keeps the store) and
    /// waits for it to exit.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("nats-server is not running");
        };
        child.signal(libc::SIGTERM)?;
        child.wait_timeout(Duration::from_secs(30))?;
        Ok(())
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("nats-server is already running");
        }
        self.spawn()
    }

    fn spawn(&mut self) -> Result<()> {
        self.starts += 1;
        let log = self.dir.path().join(format!("server-{}.log", self.starts));
        let mut command = Command::new("nats-server");
        command
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.store_dir());
        let mut child = spawn_logged(&mut command, "nats-server", &log)?;
        wait_listening(
            &mut child,
            SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            &log,
        )?;
        self.child = Some(child);
        Ok(())
    }
}

/// A message received by [`subscribe`], with when it arrived.
pub struct Message {
    pub subject: String,
    pub payload: String,
    pub at: Instant,
}

/// A JetStream API request (`$JS.API.<api>`) and its JSON answer; an answer with an
/// `error` is an error.
pub fn jetstream_api(url: &str, api: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime.block_on(async {
        let client = async_nats::connect(url).await?;
        let reply = client
            .request(format!("$JS.API.{api}"), serde_json::to_vec(body)?.into())
            .await?;
        anyhow::Ok(serde_json::from_slice::<serde_json::Value>(&reply.payload)?)
    })?;
    if let Some(error) = answer.get("error") {
        bail!("$JS.API.{api}: {error}");
    }
    Ok(answer)
}

/// Publishes `payload` on `subject` as any client with publish rights could, and waits
/// for the server to take it.
pub fn publish(url: &str, subject: &str, payload: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = async_nats::connect(url).await?;
        client
            .publish(subject.to_owned(), payload.to_owned().into())
            .await?;
        client.flush().await?;
        anyhow::Ok(())
    })
}

/// Every message of the JetStream `stream` in order, as (subject, payload): what anyone
/// allowed to read the stream sees.
pub fn stream_messages(url: &str, stream: &str) -> Result<Vec<(String, String)>> {
    use base64::Engine as _;
    let info = jetstream_api(
        url,
        &format!("STREAM.INFO.{stream}"),
        &serde_json::json!({}),
    )?;
    let (first, last) = (
        info["state"]["first_seq"].as_u64().unwrap_or(1),
        info["state"]["last_seq"].as_u64().unwrap_or(0),
    );
    (first..=last)
        .map(|seq| {
            let got = jetstream_api(
                url,
                &format!("STREAM.MSG.GET.{stream}"),
                &serde_json::json!({ "seq": seq }),
            )?;
            let message = &got["message"];
            let data = base64::engine::general_purpose::STANDARD
                .decode(message["data"].as_str().unwrap_or_default())?;
            Ok((
                message["subject"].as_str().unwrap_or_default().to_owned(),
                String::from_utf8(data)?,
            ))
        })
        .collect()
}

/// What nats-server says of a consumer: its configuration, what it delivered and what
/// waits for an acknowledgement.
pub fn consumer_info(url: &str, stream: &str, consumer: &str) -> Result<serde_json::Value> {
    jetstream_api(
        url,
        &format!("CONSUMER.INFO.{stream}.{consumer}"),
        &serde_json::json!({}),
    )
}

/// Messages received so far, shared with the collecting thread.
pub type Inbox = Arc<Mutex<Vec<Message>>>;

/// Every message on `subject` (wildcards allowed), collected on a thread of its own
/// from the moment this returns.
pub fn subscribe(url: &str, subject: &str) -> Result<Inbox> {
    let inbox: Inbox = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&inbox);
    let (ready, subscribed) = std::sync::mpsc::channel();
    let (url, subject) = (url.to_owned(), subject.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            use futures_util::StreamExt as _;
            let client = async_nats::connect(url).await.expect("connect to NATS");
            let mut sub = client.subscribe(subject).await.expect("subscribe");
            client.flush().await.expect("flush");
            ready.send(()).expect("ready");
            while let Some(m) = sub.next().await {
                kept.lock().expect("lock").push(Message {
                    subject: m.subject.to_string(),
                    payload: String::from_utf8_lossy(&m.payload).into_owned(),
                    at: Instant::now(),
                });
            }
        });
    });
    subscribed
        .recv_timeout(Duration::from_secs(30))
        .context("subscribing on NATS")?;
    Ok(inbox)
}
