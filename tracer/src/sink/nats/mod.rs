//! The NATS JetStream sink (docs/audit.md, "NATS JetStream"): records are appended to a
//! bounded on-disk spool on the pipeline thread, which never waits for the network; a
//! publisher thread sends them in order with acknowledgements and de-duplication ids.
mod auth;
mod counters;
mod link;
mod publisher;
mod settings;
mod spool;
mod stream;

use std::{
    io,
    path::PathBuf,
    sync::Arc,
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use tokio::sync::watch;

pub use settings::{NatsConfig, StreamName, SubjectTemplate, parse_records_per_message};

use self::{
    auth::Auth,
    counters::Counters,
    link::Link,
    publisher::Publisher,
    spool::{Appended, Shared, SpoolWriter},
    stream::StreamSpec,
};
use super::Sink;

pub struct NatsSink {
    writer: SpoolWriter,
    shared: Arc<Shared>,
    max_bytes: u64,
    drain_timeout: Duration,
    stop: watch::Sender<bool>,
    publisher: Option<JoinHandle<()>>,
    /// Discarded count when the spool became full or unwritable; `None` while it works.
    trouble_since: Option<u64>,
}

impl NatsSink {
    /// The sink `config` describes, or `None` when it names no server. Opens the spool
    /// (reporting what a previous run left in it) and starts the publisher thread; the
    /// broker itself is reached in the background.
    pub fn from_config(config: &NatsConfig, report_every: Duration) -> Result<Option<Self>> {
        let Some(servers) = config.servers().map_err(anyhow::Error::msg)? else {
            return Ok(None);
        };
        let auth = Auth::load(config).context("reading the NATS credentials")?;
        let (writer, reader, recovered) =
            spool::open(&config.spool_dir, config.spool_max_bytes.get())
                .context("opening the NATS spool")?;
        let shared = Arc::clone(reader.shared());
        let dir = config.spool_dir.display();
        if let Some(problem) = &recovered.cursor_problem {
            eprintln!(
                "tracer: nats: spool cursor unusable ({problem}); publishing resumes at the \
                 oldest segment (JetStream drops what it already has within its duplicate window)"
            );
        }
        if recovered.cut_bytes > 0 {
            eprintln!(
                "tracer: nats: the previous run stopped while writing a record to the spool; \
                 its {} bytes were cut off (counted as discarded)",
                recovered.cut_bytes
            );
        }
        if recovered.backlog.records > 0 {
            eprintln!(
                "tracer: nats: the spool {dir} holds {} from the previous run; they are published first",
                recovered.backlog
            );
        }
        let subject = config.subject.expand(&settings::host_name());
        eprintln!(
            "tracer: nats: records go to {servers}, stream {}, subject {subject}, through the \
             spool {dir} (at most {} bytes)",
            config.stream, config.spool_max_bytes
        );
        let (stop, stop_rx) = watch::channel(false);
        let publisher = Publisher {
            servers: servers.clone(),
            auth,
            stream: StreamSpec {
                name: config.stream.clone(),
                subject,
                filter: config.subject.stream_subject(),
                create: config.create_stream,
                duplicate_window: config.duplicate_window(),
            },
            ack_timeout: config.ack_timeout(),
            max_in_flight: config.max_in_flight.get(),
            records_per_message: config.records_per_message.get(),
            reader,
            link: Link::new(servers.to_string(), config.spool_dir.clone(), report_every),
            stop: stop_rx,
            cursor_failing: false,
        };
        let publisher = thread::Builder::new()
            .name("tracer-nats".to_owned())
            .spawn(move || publisher.run())
            .context("starting the NATS publisher thread")?;
        Ok(Some(Self {
            writer,
            shared,
            max_bytes: config.spool_max_bytes.get(),
            drain_timeout: config.drain_timeout(),
            stop,
            publisher: Some(publisher),
            trouble_since: None,
        }))
    }

    fn spool_dir(&self) -> PathBuf {
        self.shared.dir().to_owned()
    }

    fn discarded_now(&self) -> u64 {
        Counters::get(&self.shared.counters.discarded)
    }

    /// Reports the start of a spool that is full or failing (once per episode);
    /// `before` is the discarded count before the record that found it so.
    fn trouble(&mut self, what: &str, before: u64) {
        if self.trouble_since.is_none() {
            eprintln!(
                "tracer: nats: {what}: records are discarded (and counted) until it takes them again",
            );
            self.trouble_since = Some(before);
        }
    }

    /// Reports the end of such an episode.
    fn recovered(&mut self) {
        if let Some(before) = self.trouble_since.take() {
            eprintln!(
                "tracer: nats: the spool takes records again; {} were discarded",
                self.discarded_now() - before
            );
        }
    }

    fn note(&mut self, result: io::Result<Appended>, before: u64) {
        match result {
            Ok(Appended::Spooled) => self.recovered(),
            Ok(Appended::Full) => {
                let what = format!(
                    "the spool {} is full ({} bytes)",
                    self.spool_dir().display(),
                    self.max_bytes
                );
                self.trouble(&what, before);
            }
            Err(e) => {
                let what = format!(
                    "writing the spool {} failed ({e})",
                    self.spool_dir().display()
                );
                self.trouble(&what, before);
            }
        }
    }

    /// Asks the publisher to stop and waits for it (it persists the cursor).
    fn stop_publisher(&mut self) {
        let _ = self.stop.send(true);
        if let Some(publisher) = self.publisher.take()
            && publisher.join().is_err()
        {
            eprintln!("tracer: nats: the publisher thread panicked");
        }
    }
}

impl Sink for NatsSink {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let before = self.discarded_now();
        let result = self.writer.append(line);
        self.note(result, before);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let before = self.discarded_now();
        if let Err(e) = self.writer.commit() {
            self.note(Err(e), before);
        }
        Ok(())
    }

    fn discarded(&self) -> u64 {
        self.discarded_now()
    }

    /// Waits up to the drain timeout for the publisher to empty the spool; what is left
    /// stays there for the next start.
    fn shutdown(&mut self) -> io::Result<()> {
        let before = self.discarded_now();
        if let Err(e) = self.writer.sync() {
            self.note(Err(e), before);
        }
        let counters = &self.shared.counters;
        let deadline = Instant::now() + self.drain_timeout;
        while counters.backlog().records > 0
            && Instant::now() < deadline
            && self.publisher.as_ref().is_some_and(|p| !p.is_finished())
        {
            thread::sleep(Duration::from_millis(10));
        }
        self.stop_publisher();
        let backlog = self.shared.counters.backlog();
        if backlog.records > 0 {
            eprintln!(
                "tracer: nats: {backlog} not yet acknowledged stay in the spool {}; \
                 they are published at the next start",
                self.spool_dir().display()
            );
        }
        Ok(())
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = self.shared.counters.snapshot();
        vec![
            ("published", s.published),
            ("acked", s.acked),
            ("duplicates", s.duplicates),
            ("retries", s.retries),
            ("failures", s.failures),
            ("backlog_records", s.backlog_records),
            ("backlog_bytes", s.backlog_bytes),
            ("discarded", s.discarded),
        ]
    }
}

impl Drop for NatsSink {
    fn drop(&mut self) {
        self.stop_publisher();
    }
}
