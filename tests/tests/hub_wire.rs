//! What someone who can publish to the records' JetStream stream, or stop a sensor, can
//! do to the trail, and what `tracer-hub serve` says of it: a forged record that
//! continues the chain with a checkpoint signed by another key, an altered copy of a
//! stored line, the sensor SIGKILLed and started again, and then overwhelmed (a ring
//! buffer far too small, so it loses events and says so). The real tracer, nginx,
//! nats-server and hub; the attacker is this test, on the wire. On both stores, as the
//! other hub tests: SQLite, and PostgreSQL (the `_postgres` twin).
use std::{path::Path, time::Duration};

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::Value;
use tests::{
    audit::{hash_of, key_show, reseal},
    clients::{curl, url},
    hub::{self, Hub, Store},
    load::ab_keepalive,
    ports::free_port,
    servers::{NatsServer, Nginx, NginxConfig, Postgres, publish, stream_messages},
    tracer::Tracer,
};
use tracer_audit::key::AuditKey;

const STREAM_ID: &str = "web-wire";
/// The JetStream stream the tracer creates.
const JETSTREAM: &str = "TRACER";
/// The hub's `sensor_silent` threshold: short, so that the test waits seconds. The
/// tracer is kept busy for longer than this before it is killed, so the rule is also
/// shown to stay quiet while the sensor speaks.
const SILENCE_S: u64 = 4;
const WAIT: Duration = Duration::from_secs(60);

/// The tracer publishing to NATS, with its key, chain state and spool in `dir`, so that
/// a second one continues the first's chain; a checkpoint after every record, so the
/// sensor's next line after any record is a signed checkpoint. `more`: further flags.
fn start_tracer(dir: &Path, nats: &str, port: u16, more: &[&str]) -> Result<Tracer> {
    let path = |name: &str| -> Result<String> {
        Ok(dir
            .join(name)
            .to_str()
            .ok_or_else(|| anyhow!("non-UTF-8 temp dir"))?
            .to_owned())
    };
    Tracer::start_with_args(
        &[port],
        &[
            "--audit-key",
            &path("audit.key")?,
            "--audit-state",
            &path("audit.state")?,
            "--nats-spool-dir",
            &path("spool")?,
            "--stream-id",
            STREAM_ID,
            "--nats",
            nats,
            "--nats-create-stream",
            "--checkpoint-records",
            "1",
            // Only records make checkpoints, so the chain's head stays put while the
            // test forges the lines after it.
            "--checkpoint-seconds",
            "3600",
        ]
        .iter()
        .chain(more)
        .copied()
        .collect::<Vec<_>>(),
        &[],
    )
}

/// Every line of the stream, in order, with the subject it came on.
fn lines_on_the_wire(nats: &str) -> Result<Vec<(String, String)>> {
    Ok(stream_messages(nats, JETSTREAM)?
        .into_iter()
        .flat_map(|(subject, payload)| {
            payload
                .lines()
                .map(|line| (subject.clone(), line.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect())
}

/// `line` with the JSON value of `key` (a number or a string without escapes) replaced
/// by `value`, written as JSON; the rest of the line byte for byte.
fn set_field(line: &str, key: &str, value: &str) -> Result<String> {
    let name = format!("\"{key}\":");
    let at = line.find(&name).context(format!("no {key} in {line}"))? + name.len();
    let rest = &line[at..];
    let len = if let Some(text) = rest.strip_prefix('"') {
        text.find('"').context("unterminated string")? + 2
    } else {
        rest.find([',', '}']).context("unterminated value")?
    };
    Ok(format!("{}{value}{}", &line[..at], &rest[len..]))
}

fn seq_of(line: &str) -> Result<u64> {
    let value: Value = serde_json::from_str(line)?;
    value["audit.seq"]
        .as_u64()
        .ok_or_else(|| anyhow!("no audit.seq in {line}"))
}

fn kind_of(line: &str) -> String {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v["audit.kind"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The stream's breaks (or notes) in the hub's integrity report, as (kind, seq).
fn findings(hub: &Hub, which: &str) -> Result<Vec<(String, u64)>> {
    let report = hub.api("/api/integrity")?;
    let stream = report["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stream"] == STREAM_ID))
        .ok_or_else(|| anyhow!("no stream {STREAM_ID} in {report}"))?;
    Ok(stream[which]
        .as_array()
        .map(|found| {
            found
                .iter()
                .map(|f| {
                    (
                        f["kind"].as_str().unwrap_or_default().to_owned(),
                        f["seq"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The alerts of `rule`, newest first.
fn alerts(hub: &Hub, rule: &str) -> Result<Vec<Value>> {
    let page = hub.api(&format!("/api/alerts?rule={rule}&since=1h"))?;
    Ok(page["alerts"].as_array().cloned().unwrap_or_default())
}

/// The stored records of `path`, as the records API lists them.
fn records_of(hub: &Hub, path: &str) -> Result<Vec<Value>> {
    let page = hub.api(&format!(
        "/api/records?path={path}&from=1970-01-01T00:00:00Z"
    ))?;
    Ok(page["records"].as_array().cloned().unwrap_or_default())
}

#[test]
fn forgeries_on_the_wire_a_killed_sensor_and_its_losses_are_named_by_the_hub() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::Sqlite(dir.path().join("hub"));
    forgeries_killed_and_overwhelmed(dir.path(), &store)
}

#[test]
fn forgeries_on_the_wire_a_killed_sensor_and_its_losses_are_named_by_the_hub_postgres() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let postgres = Postgres::start()?;
    forgeries_killed_and_overwhelmed(dir.path(), &Store::Postgres(postgres.url()))
}

fn forgeries_killed_and_overwhelmed(dir: &Path, store: &Store) -> Result<()> {
    let nats = NatsServer::start()?;
    let nats_url = nats.url();
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let first = start_tracer(dir, &nats_url, port, &[])?;

    let public = dir.join("audit.pub");
    std::fs::write(&public, key_show(&dir.join("audit.key"))?)?;
    let detections = dir.join("detections.toml");
    std::fs::write(
        &detections,
        format!("[rules.integrity]\nsilence = \"{SILENCE_S}s\"\n"),
    )?;
    let key_arg = format!("{STREAM_ID}={}", public.display());
    let mut hub = Hub::serve_store(
        store,
        &dir.join("hub"),
        &[
            "--nats",
            &nats_url,
            "--key",
            &key_arg,
            "--detections",
            detections.to_str().context("path")?,
        ],
    )?;

    // An honest sensor that speaks more often than the silence, for longer than the
    // silence and the hub's 5 s clock: nothing is raised.
    let honest = (SILENCE_S + 6) as u32;
    for n in 0..honest {
        curl(&[&url(port, &format!("/honest/{n}"))])?;
        std::thread::sleep(Duration::from_secs(1));
    }
    hub.wait_until(WAIT, "holding the honest records", |hub| {
        Ok(hub.stored()? == u64::from(honest))
    })?;
    ensure!(
        alerts(&hub, "sensor_silent")?.is_empty(),
        "a live sensor was reported silent"
    );
    ensure!(
        findings(&hub, "breaks")?.is_empty(),
        "breaks in an honest stream"
    );

    // The attacker reads the stream, and continues the chain after its last line with a
    // record of a request nobody made and a checkpoint that covers it, signed with a
    // key of their own. Both hash correctly: only the signature can tell.
    let wire = lines_on_the_wire(&nats_url)?;
    let (subject, last) = wire.last().context("nothing on the wire")?.clone();
    let head = seq_of(&last)?;
    let template = wire
        .iter()
        .rev()
        .map(|(_, line)| line)
        .find(|line| kind_of(line) == "access")
        .context("no access record on the wire")?;
    let forged = set_field(template, "audit.seq", &(head + 1).to_string())?;
    let forged = set_field(&forged, "url.path", "\"/forged-by-wire\"")?;
    let forged = reseal(&forged, &hash_of(&last)?, None)?;
    let checkpoint = wire
        .iter()
        .rev()
        .map(|(_, line)| line)
        .find(|line| kind_of(line) == "checkpoint")
        .context("no checkpoint on the wire")?;
    let attacker = dir.join("attacker.key");
    AuditKey::load_or_create(&attacker)?;
    let mut forged_checkpoint = set_field(checkpoint, "audit.seq", &(head + 2).to_string())?;
    for (key, value) in [
        ("audit.checkpoint.head_seq", (head + 1).to_string()),
        (
            "audit.checkpoint.head_hash",
            format!("\"{}\"", hex::encode(hash_of(&forged)?)),
        ),
    ] {
        forged_checkpoint = set_field(&forged_checkpoint, key, &value)?;
    }
    let forged_checkpoint = reseal(&forged_checkpoint, &hash_of(&forged)?, Some(&attacker))?;
    publish(&nats_url, &subject, &forged)?;
    publish(&nats_url, &subject, &forged_checkpoint)?;
    hub.wait_until(WAIT, "naming the forged checkpoint", |hub| {
        Ok(findings(hub, "breaks")?.contains(&("signature".to_owned(), head + 2)))
    })?;

    // And an altered copy of a stored record, its hash left as it was: the hub keeps
    // the line it has and says that this one is not it.
    let stored = wire
        .iter()
        .map(|(_, line)| line)
        .find(|line| line.contains("\"/honest/3\""))
        .context("no /honest/3 on the wire")?;
    let altered = stored.replacen("\"/honest/3\"", "\"/honest/X\"", 1);
    publish(&nats_url, &subject, &altered)?;
    let altered_seq = seq_of(stored)?;
    hub.wait_until(WAIT, "naming the altered copy", |hub| {
        Ok(findings(hub, "breaks")?.contains(&("modified".to_owned(), altered_seq)))
    })?;
    ensure!(
        records_of(&hub, "/honest/X")?.is_empty(),
        "the altered copy was stored"
    );

    // The sensor's own next lines take the forged seqs. Its record is refused (a
    // conflict) and kept; its checkpoint, which follows the stored one before the
    // forgery, chains to that record: both stored lines were forged, and the sensor's
    // own take their places.
    for n in 0..4 {
        curl(&[&url(port, &format!("/after/{n}"))])?;
    }
    hub.wait_until(WAIT, "replacing the forged lines", |hub| {
        let breaks = findings(hub, "breaks")?;
        Ok([
            ("conflict", head + 1),
            ("forged", head + 1),
            ("forged", head + 2),
        ]
        .iter()
        .all(|&(kind, seq)| breaks.contains(&(kind.to_owned(), seq)))
            && (0..4)
                .all(|n| records_of(hub, &format!("/after/{n}")).is_ok_and(|rows| rows.len() == 1)))
    })?;
    ensure!(
        !findings(&hub, "breaks")?.contains(&("conflict".to_owned(), head + 2)),
        "the sensor's checkpoint at the forged one's seq was refused"
    );
    // Every request nginx answered after the forgery is a record, once, proven by the
    // sensor's signed checkpoints; the first stands where the forged one stood.
    for n in 0..4 {
        let rows = records_of(&hub, &format!("/after/{n}"))?;
        ensure!(
            rows.len() == 1 && rows[0]["covered"] == true,
            "/after/{n}: {rows:?}"
        );
        let expected = if n == 0 { "restored" } else { "linked" };
        ensure!(rows[0]["chain"] == expected, "/after/{n}: {}", rows[0]);
    }
    ensure!(
        records_of(&hub, "/after/0")?[0]["seq"] == head + 1,
        "/after/0 is not at seq {}",
        head + 1
    );
    ensure!(
        records_of(&hub, "/forged-by-wire")?.is_empty(),
        "the forged record is still a record"
    );
    // The forged lines are kept byte for byte, as the attacker published them.
    let kept = hub::ok(&[&["conflicts"][..], &store.args()?[..]].concat())?;
    for line in [&forged, &forged_checkpoint] {
        ensure!(
            kept.lines().any(|k| k == line.as_str()),
            "a forged line is not kept:\n{line}\nkept:\n{kept}"
        );
    }
    ensure!(
        !kept.contains("\"/after/"),
        "a sensor's line is kept:\n{kept}"
    );
    // The same, asked of the running hub's API.
    let token = hub.token_file.to_str().context("path")?.to_owned();
    let remote = hub::ok(&[
        "conflicts",
        "--hub",
        &hub.url(""),
        "--token-file",
        &token,
        "--stream",
        STREAM_ID,
    ])?;
    ensure!(
        remote == kept,
        "through --hub:\n{remote}\nfrom the store:\n{kept}"
    );
    let chain_breaks = alerts(&hub, "chain_break")?;
    let signatures = alerts(&hub, "signature")?;
    ensure!(!chain_breaks.is_empty(), "no chain_break alert");
    ensure!(!signatures.is_empty(), "no signature alert");

    // The sensor is killed: once the silence has passed, the hub says so. Just before,
    // it speaks (a record, and the checkpoint it signs after it): no silence is open.
    let open_silence = |hub: &Hub| -> Result<bool> {
        Ok(alerts(hub, "sensor_silent")?
            .iter()
            .any(|a| a["entity"] == format!("stream:{STREAM_ID}") && a["resolved"].is_null()))
    };
    curl(&[&url(port, "/last-word")])?;
    hub.wait_until(WAIT, "hearing the sensor's last word", |hub| {
        Ok(records_of(hub, "/last-word")?.len() == 1 && !open_silence(hub)?)
    })?;
    first.kill()?;
    hub.wait_until(WAIT, "raising sensor_silent", |hub| open_silence(hub))?;

    // Started again on its own chain state: a restart note, and the silence is over.
    // Its ring buffer is far too small for what comes next.
    let second = start_tracer(
        dir,
        &nats_url,
        port,
        &["--ringbuf-bytes", "4096", "--stats-interval", "1"],
    )?;
    curl(&[&url(port, "/back")])?;
    hub.wait_until(WAIT, "resolving sensor_silent after the restart", |hub| {
        let silent = alerts(hub, "sensor_silent")?;
        Ok(!silent.is_empty() && silent.iter().all(|a| !a["resolved"].is_null()))
    })?;
    ensure!(
        findings(&hub, "notes")?
            .iter()
            .any(|(kind, _)| kind == "restart"),
        "no restart note"
    );
    // The start line that ends the silence and the record after it may come in two
    // batches.
    hub.wait_until(WAIT, "the restarted sensor's record", |hub| {
        Ok(records_of(hub, "/back")?.len() == 1)
    })?;

    // Overwhelmed, the sensor loses events and says so in loss lines: the hub totals
    // them per reason as the sensor counted them, and raises sensor_loss.
    let burst = ab_keepalive(&url(port, "/burst"), 20, 20_000)?;
    ensure!(burst.complete == 20_000, "{}", burst.raw);
    second.wait_for_stderr("tracer: kernel events lost:", WAIT)?;
    let run = second.stop()?;
    let counted = run.summary["kernel_lost"]
        .as_object()
        .context(format!("no kernel_lost: {}", run.summary))?
        .iter()
        .filter(|(_, n)| n.as_u64() > Some(0))
        .map(|(reason, n)| (reason.clone(), n.as_u64().unwrap_or_default()))
        .collect::<Vec<_>>();
    ensure!(
        !counted.is_empty(),
        "a 4 KiB ring lost nothing: {}",
        run.summary
    );
    hub.wait_until(WAIT, "totalling the sensor's losses", |hub| {
        let report = hub.api("/api/integrity")?;
        let losses = report["streams"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["stream"] == STREAM_ID))
            .map(|s| s["losses"].clone())
            .unwrap_or_default();
        Ok(counted.iter().all(|(reason, n)| {
            losses.as_array().is_some_and(|losses| {
                losses.iter().any(|l| {
                    l["source"] == "kernel" && l["reason"] == reason.as_str() && l["count"] == *n
                })
            })
        }))
    })?;
    ensure!(
        !alerts(&hub, "sensor_loss")?.is_empty(),
        "no sensor_loss alert"
    );
    hub.stop()?;
    Ok(())
}
