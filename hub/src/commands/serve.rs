//! `tracer-hub serve`: JetStream ingest and the web server in one process. Ingest is
//! one task (the store has one writer); a failed batch is not acknowledged, so
//! JetStream delivers it again, and a broker that is down is retried, logged once per
//! change of error, while the dashboard keeps answering from the store.
use std::{
    net::SocketAddr,
    sync::{Arc, mpsc},
    time::Duration,
};

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use tokio::sync::{broadcast, watch};

use crate::{
    cli::ServeArgs,
    deliver::{self, Alertmanager, NatsAlerts, Target, Webhook},
    ingest::nats::{Committed, NatsSettings, Restart, Restarts, Resumed, Source},
    pipeline::{Expiry, Leader, Outcome, Pipeline},
    serve::{
        Hub, Rules,
        auth::{Auth, Secret},
        router,
        tls::{self, TlsListener},
    },
    store::{NatsPoint, Readers, StoreAt, Writer},
    when::now_ns,
};

/// Live-feed records buffered per slow client before it is told it lagged.
const LIVE_BUFFER: usize = 4_096;
const RETRY: Duration = Duration::from_secs(2);
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// The planner's statistics are refreshed this often while ingesting.
const ANALYZE_EVERY: Duration = Duration::from_secs(300);
/// Enrichment files are checked for changes this often.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Silent sensors are looked for this often.
const TICK_EVERY: Duration = Duration::from_secs(5);
/// The detection feed is read this often while this hub leads (and the lead tried
/// this often while another hub has it).
const LEAD_POLL: Duration = Duration::from_millis(250);
/// Batches of the detection feed waiting beyond which the leader says it is behind: a
/// few are always just committed.
const BEHIND_REPORTED: i64 = 16;
/// Retention runs this often (and at start), a chunk per turn of the ingest loop.
const EXPIRE_EVERY: Duration = Duration::from_secs(600);

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::Certified::load(tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.tls_client_ca.clone(),
        })?),
        _ => None,
    };
    anyhow::ensure!(
        tls.is_some() || args.listen.ip().is_loopback(),
        "--listen {}: without --tls-cert and --tls-key the hub serves plain HTTP, so it listens on loopback only; give it a certificate or put a TLS proxy in front",
        args.listen
    );
    let secret = Secret::from_files(
        args.password_hash_file.as_deref(),
        args.token_file.as_deref(),
    )?;
    let mut pipeline = super::pipeline(&args.ingest)?;
    // Hubs sharing a PostgreSQL store each ingest a share of every stream: one of them
    // runs the detections for all, fed by every hub's batches.
    let leader = match args.ingest.store.at()? {
        StoreAt::Postgres { .. } if args.nats().is_some() => {
            pipeline.feed_detections();
            Some(super::leader(&args.ingest)?)
        }
        _ => None,
    };
    // Built before the runtime: the NATS publisher runs one of its own on its thread.
    let dashboard = args
        .public_url
        .clone()
        .map(|u| format!("{}/", u.trim_end_matches('/')))
        .unwrap_or_else(|| format!("{}://{}/", scheme(tls.is_some()), args.listen));
    let targets = targets(args, &dashboard)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, tls, secret, pipeline, leader, targets))
}

fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

async fn serve(
    args: &ServeArgs,
    tls: Option<tls::Certified>,
    secret: Secret,
    pipeline: Pipeline,
    leader: Option<Leader>,
    targets: Vec<Box<dyn Target>>,
) -> anyhow::Result<()> {
    let (live, _) = broadcast::channel(LIVE_BUFFER);
    // One signal for everything that must end before the process: the ingest loop,
    // and the live streams, which the HTTP server's graceful shutdown waits for.
    let (stop, stopping) = watch::channel(false);
    let stop = Arc::new(stop);
    let hub = Arc::new(Hub {
        store: Readers::new(args.ingest.store.at()?),
        auth: Auth::new(secret),
        live: live.clone(),
        stopping: stopping.clone(),
        secure_cookies: args.behind_tls || tls.is_some(),
        rules: Rules {
            detecting: args.nats().is_some(),
            listing: crate::detect::listing(
                args.ingest.detect.detections.as_deref(),
                &args.ingest.detect.rules,
            )?,
        },
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    let (alerted, changed) = mpsc::channel();
    if !targets.is_empty() {
        let store = args.ingest.store.at()?;
        std::thread::Builder::new()
            .name("alert-delivery".to_owned())
            .spawn(move || {
                if let Err(e) = deliver::run(&store, targets, &changed) {
                    eprintln!("tracer-hub: alert delivery stopped: {e:#}");
                }
            })
            .context("starting alert delivery")?;
    }
    if let Some(leader) = leader {
        let alerted = alerted.clone();
        let stopping = stopping.clone();
        std::thread::Builder::new()
            .name("detect-leader".to_owned())
            .spawn(move || lead(leader, &alerted, &stopping))
            .context("starting the fleet's detections")?;
    }
    eprintln!(
        "tracer-hub: dashboard and API at {}://{address}/ (log in with the password or token given to serve)",
        scheme(tls.is_some())
    );
    let ingesting = match args.nats() {
        Some(settings) => {
            eprintln!(
                "tracer-hub: ingesting from {} stream {} as durable consumer {}",
                crate::ingest::nats::redact_url(&settings.url),
                settings.stream,
                settings.consumer
            );
            let retention = args.ingest.retain.map(Retention::new);
            Some(tokio::spawn(ingest(
                settings, pipeline, retention, live, alerted, stopping,
            )))
        }
        None if args.ingest.retain.is_some() => anyhow::bail!(
            "--retain needs --nats: retention runs beside ingest, in the hub that writes the store"
        ),
        None => {
            eprintln!("tracer-hub: no --nats: serving the store without ingesting");
            None
        }
    };
    let app = router(hub).into_make_service_with_connect_info::<SocketAddr>();
    let signalled = {
        let stop = Arc::clone(&stop);
        async move {
            stopped().await;
            stop.send_replace(true);
        }
    };
    let served = match tls {
        // `tap_io` with nothing to do: axum gives the peer address as connect info only
        // to its own listeners and to tapped ones.
        Some(config) => match TlsListener::new(listener, config) {
            Ok(listener) => axum::serve(listener.tap_io(|_| {}), app)
                .with_graceful_shutdown(signalled)
                .await
                .context("serving HTTPS"),
            Err(e) => Err(anyhow::Error::from(e)),
        },
        None => axum::serve(listener, app)
            .with_graceful_shutdown(signalled)
            .await
            .context("serving HTTP"),
    };
    // The batch being stored is committed and acknowledged before the runtime goes,
    // whether the server stopped on a signal or failed.
    stop.send_replace(true);
    if let Some(task) = ingesting {
        let _ = task.await;
    }
    served?;
    eprintln!("tracer-hub: stopped");
    Ok(())
}

/// Where alerts go: NATS with --nats (unless --no-nats-alerts), Alertmanager, webhooks.
fn targets(args: &ServeArgs, dashboard: &str) -> anyhow::Result<Vec<Box<dyn Target>>> {
    let mut targets: Vec<Box<dyn Target>> = Vec::new();
    if let Some(url) = args.nats.as_deref().filter(|_| !args.no_nats_alerts) {
        let shown = crate::ingest::nats::redact_url(url);
        targets.push(Box::new(NatsAlerts::connect(
            url,
            shown,
            dashboard.to_owned(),
        )?));
    }
    if let Some(url) = &args.alertmanager {
        targets.push(Box::new(Alertmanager::new(url, dashboard.to_owned())));
    }
    for url in &args.webhook {
        targets.push(Box::new(Webhook::new(url.clone(), dashboard.to_owned())));
    }
    for target in &targets {
        eprintln!("tracer-hub: alerts go to {}", target.name());
    }
    Ok(targets)
}

async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Resolves once the hub is told to stop (or whoever could tell it is gone).
async fn stopped_by(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Waits [`RETRY`]; true if the hub is told to stop meanwhile.
async fn pause(stopping: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stopped_by(stopping) => true,
        _ = tokio::time::sleep(RETRY) => false,
    }
}

/// The fleet's detections on a thread of their own: this hub tries to lead at each
/// poll, and while it leads, runs them over the detection feed as batches commit.
fn lead(mut leader: Leader, alerted: &mpsc::Sender<()>, stopping: &watch::Receiver<bool>) {
    let mut ticked = std::time::Instant::now();
    let mut refreshed = std::time::Instant::now();
    let mut reported = std::time::Instant::now();
    let mut leads = false;
    let mut last_error = String::new();
    while !*stopping.borrow() {
        if refreshed.elapsed() >= REFRESH_EVERY {
            leader.refresh_enrichment();
            refreshed = std::time::Instant::now();
        }
        if reported.elapsed() >= REPORT_EVERY {
            match leader.backlog() {
                Ok(Some(behind)) if behind > BEHIND_REPORTED => eprintln!(
                    "tracer-hub: detections: {behind} of the fleet's batches wait for them; their alerts come late"
                ),
                Ok(_) => {}
                Err(e) => eprintln!("tracer-hub: detections: reading the feed's backlog: {e:#}"),
            }
            reported = std::time::Instant::now();
        }
        let clock = (ticked.elapsed() >= TICK_EVERY).then(now_ns);
        let more = match leader.step(clock) {
            Ok(stepped) => {
                if clock.is_some() {
                    ticked = std::time::Instant::now();
                }
                if stepped.leads != leads {
                    leads = stepped.leads;
                    if leads {
                        eprintln!(
                            "tracer-hub: this hub runs the detections for every hub sharing the store"
                        );
                    }
                }
                if stepped.unreadable > 0 {
                    eprintln!(
                        "tracer-hub: detections: {} fed record(s) did not parse and were left out",
                        stepped.unreadable
                    );
                }
                for damaged in &stepped.damaged {
                    eprintln!("tracer-hub: detections: {damaged}; left out");
                }
                if !stepped.alerts.is_empty() {
                    let _ = alerted.send(());
                }
                last_error.clear();
                stepped.more
            }
            Err(e) => {
                let message = format!("{e:#}");
                if message != last_error {
                    eprintln!("tracer-hub: detections: {message}; retrying");
                    last_error = message;
                }
                leads = false;
                false
            }
        };
        if !more {
            std::thread::sleep(LEAD_POLL);
        }
    }
}

/// Retention beside ingest: a run every [`EXPIRE_EVERY`], one chunk per turn of the
/// ingest loop, so batches keep flowing while a large backlog of old lines goes.
struct Retention {
    retain: Duration,
    next_run: tokio::time::Instant,
    /// The cutoff of the run under way and what it deleted so far.
    running: Option<(i64, Expiry)>,
}

impl Retention {
    fn new(retain: Duration) -> Self {
        Self {
            retain,
            next_run: tokio::time::Instant::now(),
            running: None,
        }
    }

    fn step(&mut self, pipeline: &mut Pipeline) {
        let now = tokio::time::Instant::now();
        if self.running.is_none() && now >= self.next_run {
            self.running = Some((super::retention_cutoff(self.retain), Expiry::default()));
        }
        let Some((cutoff, total)) = &mut self.running else {
            return;
        };
        match tokio::task::block_in_place(|| pipeline.expire(*cutoff, super::EXPIRE_CHUNK)) {
            Ok(step) => {
                total.lines += step.lines;
                total.other_rows += step.other_rows;
                if step.done {
                    if total.lines + total.other_rows > 0 {
                        eprintln!("tracer-hub: {}", super::expiry_summary(total, *cutoff));
                    }
                    self.running = None;
                    self.next_run = now + EXPIRE_EVERY;
                }
            }
            Err(e) => {
                eprintln!(
                    "tracer-hub: retention: {e:#}; retrying in {}s",
                    RETRY.as_secs()
                );
                self.running = None;
                self.next_run = now + RETRY;
            }
        }
    }
}

async fn ingest(
    settings: NatsSettings,
    mut pipeline: Pipeline,
    mut retention: Option<Retention>,
    live: broadcast::Sender<Arc<crate::query::records::Row>>,
    alerted: mpsc::Sender<()>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut ticked = tokio::time::Instant::now();
    let mut last_error = String::new();
    let mut total = Outcome::default();
    let mut reported = tokio::time::Instant::now();
    let mut refreshed = tokio::time::Instant::now();
    // The first statistics soon after start, then every few minutes.
    let mut analyzed = tokio::time::Instant::now() - ANALYZE_EVERY + Duration::from_secs(30);
    loop {
        let mut restarts = StoredRestarts(pipeline.writer());
        let connected = tokio::select! {
            _ = stopped_by(&mut stopping) => return,
            connected = Source::connect(&settings, &mut restarts) => connected,
        };
        let mut source = match connected {
            Ok(source) => {
                eprintln!("tracer-hub: nats: consuming");
                match source.resumed() {
                    Some(Resumed::Restart(sequence)) => eprintln!(
                        "tracer-hub: nats: consumer {} was missing while a restart of it was under way; created again from stream message {sequence}, the first not acknowledged",
                        settings.consumer
                    ),
                    Some(Resumed::Committed(sequence)) => eprintln!(
                        "tracer-hub: nats: consumer {} was missing (deleted); created again from stream message {sequence}, the first after what this store committed",
                        settings.consumer
                    ),
                    None => {}
                }
                if source.acknowledges_each_alone() {
                    eprintln!(
                        "tracer-hub: nats: consumer {} acknowledges each message, as it was created; a new consumer (another --nats-consumer) would acknowledge a batch at once, which drains faster",
                        settings.consumer
                    );
                }
                last_error.clear();
                source
            }
            Err(e) => {
                let message = e.to_string();
                if message != last_error {
                    eprintln!("tracer-hub: {message}; retrying every {}s", RETRY.as_secs());
                    last_error = message;
                }
                if pause(&mut stopping).await {
                    return;
                }
                continue;
            }
        };
        loop {
            if analyzed.elapsed() >= ANALYZE_EVERY {
                if let Err(e) = tokio::task::block_in_place(|| pipeline.analyze()) {
                    eprintln!("tracer-hub: {e:#}");
                }
                analyzed = tokio::time::Instant::now();
            }
            if refreshed.elapsed() >= REFRESH_EVERY {
                for message in pipeline.refresh_enrichment() {
                    eprintln!("tracer-hub: {message}");
                }
                refreshed = tokio::time::Instant::now();
            }
            if ticked.elapsed() >= TICK_EVERY {
                match tokio::task::block_in_place(|| pipeline.tick(now_ns())) {
                    Ok(ids) if !ids.is_empty() => {
                        let _ = alerted.send(());
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("tracer-hub: detections on the clock: {e:#}"),
                }
                ticked = tokio::time::Instant::now();
            }
            if let Some(retention) = &mut retention {
                retention.step(&mut pipeline);
            }
            let next = tokio::select! {
                // What was read and not stored is not acknowledged: it comes again.
                _ = stopped_by(&mut stopping) => return,
                next = source.next_batch() => next,
            };
            let batch = match next {
                Ok(batch) => batch,
                Err(e) => {
                    eprintln!("tracer-hub: {e}; reconnecting");
                    break;
                }
            };
            if batch.is_empty() {
                continue;
            }
            pipeline.keep_rows(live.receiver_count() > 0);
            let result = tokio::task::block_in_place(|| {
                pipeline.ingest_before(batch.iter().flat_map(|d| &d.lines), &mut source)
            });
            match result {
                Ok(mut outcome) => {
                    // Kept after the commit, outside it: a hub killed in between keeps
                    // an older point, whose messages are then recognised as stored.
                    if let Some(committed) = source.committed(&batch)
                        && let Err(e) = tokio::task::block_in_place(|| match committed {
                            Committed::After(point) => pipeline.writer().save_nats_point(
                                NatsPoint::Committed,
                                &point.stream,
                                &point.consumer,
                                point.stream_created_ns,
                                point.start_sequence,
                            ),
                            Committed::Messages {
                                stream,
                                consumer,
                                stream_created_ns,
                                sequences,
                            } => pipeline.writer().save_committed(
                                &stream,
                                &consumer,
                                stream_created_ns,
                                &sequences,
                            ),
                        })
                    {
                        eprintln!("tracer-hub: nats: keeping the committed point: {e:#}");
                    }
                    let failed = source.acknowledge(&batch).await;
                    if failed > 0 {
                        eprintln!(
                            "tracer-hub: nats: {failed} acknowledgements failed; those messages come again and are recognised as stored"
                        );
                    }
                    if !outcome.alerts.is_empty() {
                        let _ = alerted.send(());
                    }
                    for row in outcome.rows.drain(..) {
                        let _ = live.send(Arc::new(row));
                    }
                    for event in outcome.events.iter().filter(|e| e.kind.is_break()) {
                        eprintln!(
                            "tracer-hub: integrity: stream {} seq {}: {}: {}",
                            event.stream,
                            event.seq,
                            event.kind.as_str(),
                            event.detail
                        );
                    }
                    total.add(outcome);
                }
                Err(e) => {
                    eprintln!(
                        "tracer-hub: storing a batch of {} records failed, it will be delivered again: {e:#}",
                        batch.iter().map(|d| d.lines.len()).sum::<usize>()
                    );
                    let reconnect = source.reject(&batch, RETRY).await;
                    if pause(&mut stopping).await {
                        return;
                    }
                    if reconnect {
                        break;
                    }
                }
            }
            if *stopping.borrow() {
                return;
            }
            if reported.elapsed() >= REPORT_EVERY
                && total.stored + total.rejected + total.duplicates > 0
            {
                eprintln!("tracer-hub: {}", super::summary(&total));
                total = Outcome::default();
                reported = tokio::time::Instant::now();
            }
        }
    }
}

/// The store as the keeper of NATS consumer restarts, read and written from the async
/// ingest loop (each a short statement outside any batch).
struct StoredRestarts<'a>(&'a mut Writer);

impl StoredRestarts<'_> {
    fn point(
        &mut self,
        point: NatsPoint,
        stream: &str,
        consumer: &str,
    ) -> Result<Option<Restart>, String> {
        let kept = tokio::task::block_in_place(|| self.0.nats_point(point, stream, consumer))
            .map_err(|e| format!("{e:#}"))?;
        Ok(kept.map(|(stream_created_ns, start_sequence)| Restart {
            stream: stream.to_owned(),
            consumer: consumer.to_owned(),
            stream_created_ns,
            start_sequence,
        }))
    }
}

impl Restarts for StoredRestarts<'_> {
    fn saved(&mut self, stream: &str, consumer: &str) -> Result<Option<Restart>, String> {
        self.point(NatsPoint::Restart, stream, consumer)
            .map_err(|e| format!("reading its restart point from the store: {e}"))
    }

    fn save(&mut self, restart: &Restart) -> Result<(), String> {
        tokio::task::block_in_place(|| {
            self.0.save_nats_point(
                NatsPoint::Restart,
                &restart.stream,
                &restart.consumer,
                restart.stream_created_ns,
                restart.start_sequence,
            )
        })
        .map_err(|e| format!("keeping its restart point in the store: {e:#}"))
    }

    fn committed(&mut self, stream: &str, consumer: &str) -> Result<Option<Restart>, String> {
        self.point(NatsPoint::Committed, stream, consumer)
            .map_err(|e| format!("reading its committed point from the store: {e}"))
    }

    fn committed_runs(
        &mut self,
        stream: &str,
        consumer: &str,
        stream_created_ns: i64,
    ) -> Result<Vec<(u64, u64)>, String> {
        tokio::task::block_in_place(|| self.0.committed_runs(stream, consumer, stream_created_ns))
            .map_err(|e| format!("reading the messages committed from the store: {e:#}"))
    }

    fn clear(&mut self, stream: &str, consumer: &str) -> Result<(), String> {
        tokio::task::block_in_place(|| {
            self.0
                .clear_nats_point(NatsPoint::Restart, stream, consumer)
        })
        .map_err(|e| format!("clearing its restart point in the store: {e:#}"))
    }
}
