//! `cargo xtask bench --alerts`: how long from a request to its alert, through the whole
//! path a deployment runs: nginx, the tracer (NATS sink), JetStream, `tracer-hub serve`
//! (ingest, verify, enrich, detect, commit) and the alert published on NATS. Background
//! traffic keeps every stage busy the way a live host does.

use anyhow::{Result, bail};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tests::audit::key_show;
use tests::hub::Hub;
use tests::ports::free_port;
use tests::scenario::{Clients, Request};
use tests::servers::{NatsServer, Nginx, NginxConfig, subscribe};
use tests::tracer::Tracer;

const STREAM_ID: &str = "bench-alerts";
/// How long one intrusion may take to raise its alert before the run fails.
const GIVE_UP: Duration = Duration::from_secs(30);
/// Pause between background requests: about 500 requests/s from a single client.
const BACKGROUND_PAUSE: Duration = Duration::from_millis(2);

pub fn run(samples: u32) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = |name: &str| dir.path().join(name);
    let nats = NatsServer::start()?;
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let key_file = path("audit.key");
    let tracer = Tracer::start_with_args(
        &[port],
        &[
            "--audit-key",
            &key_file.display().to_string(),
            "--stream-id",
            STREAM_ID,
            "--nats",
            &nats.url(),
            "--nats-create-stream",
        ],
        &[],
    )?;
    std::fs::write(path("audit.pub"), key_show(&key_file)?)?;
    std::fs::write(
        path("catalog.toml"),
        "[[asset]]\nname = \"hr-salaries\"\nsensitivity = \"restricted\"\nallowed_roles = [\"hr-admin\"]\npaths = [\"/hr/**\"]\n",
    )?;
    let alerts = subscribe(&nats.url(), "alerts.restricted_access")?;
    // The tracer's records as they pass through the broker, to split the latency.
    let records = subscribe(&nats.url(), ">")?;
    let key = format!("{STREAM_ID}={}", path("audit.pub").display());
    let mut hub = Hub::serve(
        &path("hub"),
        &[
            "--nats",
            &nats.url(),
            "--key",
            &key,
            "--catalog",
            &path("catalog.toml").display().to_string(),
        ],
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    let background = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || -> Result<u64> {
            let mut clients = Clients::new(port);
            let request = Request::new("192.0.2.10", "/orders/1").basic("alice", "pw");
            while !stop.load(Ordering::Relaxed) {
                clients.send(&request)?;
                std::thread::sleep(BACKGROUND_PAUSE);
            }
            Ok(clients.sent)
        }
    });
    // The first records create the stream's state in the hub; measure after that.
    hub.wait_until(GIVE_UP, "storing the background traffic", |hub| {
        Ok(hub.stored()? > 100)
    })?;

    println!(
        "alerts: {samples} intrusions (a restricted asset read by a user not allowed), one every \
         second, over ~500 req/s of background traffic; request sent -> alert received on NATS"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut intruders = Clients::new(port);
    let mut latencies = Vec::new();
    for i in 0..samples {
        let user = format!("intruder-{i}");
        let sent = Instant::now();
        intruders.send(&Request::new("192.0.2.99", "/hr/salaries").basic(&user, "pw"))?;
        let entity = format!("user:{user}");
        let received = wait_for(&alerts, &entity, sent)?;
        let latency = received - sent;
        // The sensor's share: when the record itself passed through NATS.
        let quoted = format!("\"{user}\"");
        let published = records
            .lock()
            .expect("lock")
            .iter()
            .find_map(|m| m.payload.contains(&quoted).then_some(m.at - sent));
        println!(
            "  {entity:<20} alert after {:>6.0} ms (its record on NATS after {})",
            ms(latency),
            published.map_or("?".to_owned(), |p| format!("{:.0} ms", ms(p)))
        );
        latencies.push(latency);
        std::thread::sleep(Duration::from_secs(1).saturating_sub(sent.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    let background_sent = background
        .join()
        .map_err(|_| anyhow::anyhow!("background client panicked"))??;
    drop(hub);
    drop(tracer);

    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let under = latencies
        .iter()
        .filter(|d| **d < Duration::from_secs(2))
        .count();
    println!(
        "request -> alert on NATS: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; {under} of {} under 2 s \
         ({background_sent} background requests)",
        ms(at(0.5)),
        ms(at(0.95)),
        ms(at(1.0)),
        latencies.len()
    );
    Ok(())
}

/// When the alert about `entity` arrived on NATS (after `since`).
fn wait_for(inbox: &tests::servers::Inbox, entity: &str, since: Instant) -> Result<Instant> {
    let deadline = since + GIVE_UP;
    loop {
        let found = inbox.lock().expect("lock").iter().find_map(|m| {
            let alert: Value = serde_json::from_str(&m.payload).ok()?;
            (alert["entity"] == entity).then_some(m.at)
        });
        if let Some(at) = found {
            return Ok(at);
        }
        if Instant::now() > deadline {
            bail!("no alert about {entity} within {GIVE_UP:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
