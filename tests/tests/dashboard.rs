//! The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright
//! (tests/browser/dashboard.mjs) against a hub fed by the tracer through NATS. It logs
//! in (a wrong password is refused), watches a request nginx serves appear in the
//! live view, filters by user, opens a record and its chain status, and finds the
//! break a tampered import left on the integrity page. A request for a restricted
//! asset (the catalog lists only hank for /hr/**) raises a real alert: the Alerts page
//! lists and counts it, filters by rule, severity and entity, shows a new one without
//! a reload, and its detail shows what the store holds (compared with `tracer-hub
//! alerts`), its NATS delivery, and links to its record and its entity's requests. No
//! page or API answer the browser saw holds a password or the token. Screenshots go
//! to target/dashboard-screenshots.
use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use tests::{
    audit::key_show,
    clients::{curl, url},
    hub::{self, Hub, TOKEN},
    ports::free_port,
    servers::{NatsServer, Nginx, NginxConfig},
    tracer::Tracer,
    workspace,
};

fn path_str(path: &std::path::Path) -> Result<&str> {
    path.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))
}

#[test]
fn a_security_engineer_logs_in_watches_live_traffic_and_finds_the_break() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let nats = NatsServer::start()?;
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let key = dir.path().join("audit.key");
    let public = dir.path().join("audit.pub");
    std::fs::write(&public, key_show(&key)?)?;
    let nats_url = nats.url();
    let tracer = Tracer::start_with_args(
        &[port],
        &[
            "--audit-key",
            path_str(&key)?,
            "--stream-id",
            "web1",
            "--nats",
            &nats_url,
            "--nats-create-stream",
        ],
        &[],
    )?;
    let key_arg = format!("web1={}", public.display());
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        "[[asset]]\nname = \"hr-salaries\"\nsensitivity = \"restricted\"\nallowed_roles = [\"hr-admin\"]\nallowed_users = [\"hank\"]\npaths = [\"/hr/**\"]\n",
    )?;
    // One rule switched off, which the rules page must show.
    let detections = dir.path().join("detections.toml");
    std::fs::write(&detections, "[rules.scraping]\nenabled = false\n")?;
    let data = dir.path().join("hub");
    let mut hub = Hub::serve(
        &data,
        &[
            "--nats",
            &nats_url,
            "--key",
            &key_arg,
            "--catalog",
            path_str(&catalog)?,
            "--detections",
            path_str(&detections)?,
        ],
    )?;
    for n in 1..=3 {
        curl(&[
            "-u",
            "alice:alice-password-1",
            &url(port, &format!("/orders/{n}")),
        ])?;
    }
    curl(&["-u", "bob:bob-password-22", &url(port, "/hr/salaries")])?;
    hub.wait_until(
        Duration::from_secs(30),
        "holding the first requests",
        |hub| Ok(hub.stored()? >= 4),
    )?;

    // A second host's file, altered after the fact, imported while the hub serves.
    let other = Tracer::start_with_args(&[port], &["--stream-id", "web2", "--stdout"], &[])?;
    curl(&[
        &url(port, "/web2/a"),
        &url(port, "/web2/b"),
        &url(port, "/web2/c"),
    ])?;
    let run = other.stop()?;
    let tampered = run.stdout.replacen("/web2/b", "/web2/B", 1);
    let file = dir.path().join("web2.jsonl");
    std::fs::write(&file, tampered)?;
    hub::ok(&["import", "--data", path_str(&data)?, path_str(&file)?])?;

    // bob read the restricted salaries: one alert, delivered on NATS, as the store says.
    let mut alert_id = None;
    hub.wait_until(
        Duration::from_secs(30),
        "raising restricted_access for bob",
        |hub| {
            let page = hub.api("/api/alerts?rule=restricted_access&entity=user:bob")?;
            alert_id = page["alerts"][0]["id"].as_i64();
            Ok(alert_id.is_some())
        },
    )?;
    let alert_id = alert_id.ok_or_else(|| anyhow!("no alert id"))?;
    hub.wait_until(
        Duration::from_secs(30),
        "delivering the alert on NATS",
        |hub| {
            let detail = hub.api(&format!("/api/alerts/{alert_id}"))?;
            Ok(detail["deliveries"].as_array().is_some_and(|d| {
                d.iter().any(|d| {
                    d["state"] == "delivered"
                        && d["target"].as_str().is_some_and(|t| t.starts_with("nats "))
                })
            }))
        },
    )?;
    let stored = hub::ok(&[
        "alerts",
        "--data",
        path_str(&data)?,
        "--format",
        "jsonl",
        "--rule",
        "restricted_access",
    ])?;
    let expected_alert = stored
        .lines()
        .map(serde_json::from_str::<serde_json::Value>)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|a| a["id"] == alert_id)
        .ok_or_else(|| anyhow!("alert {alert_id} not in `tracer-hub alerts`:\n{stored}"))?;

    let screenshots = workspace::root().join("target/dashboard-screenshots");
    let live_path = "/live/probe-4711";
    let secrets = [
        "alice-password-1",
        "bob-password-22",
        "carol-password-333",
        TOKEN,
    ];
    let mut browser = Command::new("node")
        .arg(workspace::root().join("tests/browser/dashboard.mjs"))
        .env("HUB_URL", hub.url(""))
        .env("HUB_PASSWORD", TOKEN)
        .env("SCREENSHOT_DIR", &screenshots)
        .env("EXPECT_USER", "alice")
        .env("EXPECT_PATH", live_path)
        .env("EXPECT_BREAK_STREAM", "web2")
        .env("EXPECT_ALERT", expected_alert.to_string())
        .env("EXPECT_ALERT_PATH", "/hr/salaries")
        .env("EXPECT_LIVE_ALERT_ENTITY", "user:carol")
        .env("EXPECT_RULE_OFF", "scraping")
        .env("FORBIDDEN", secrets.join("\n"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(
            "running node tests/browser/dashboard.mjs (scripts/setup.sh installs playwright-core)",
        )?;
    let stdout = browser.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut stdin = browser.stdin.take();
    let mut seen = Vec::new();
    // The browser asks for a request at two points: one for the live tail, one that
    // raises a new alert while the Alerts page is open.
    let driven = (|| -> Result<()> {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            seen.push(line.clone());
            let request = match line.trim() {
                "READY_FOR_LIVE" => ("alice:alice-password-1", live_path),
                "READY_FOR_ALERT" => ("carol:carol-password-333", "/hr/salaries"),
                _ => continue,
            };
            curl(&["-u", request.0, &url(port, request.1)])?;
            let pipe = stdin.as_mut().ok_or_else(|| anyhow!("no stdin"))?;
            writeln!(pipe, "go")?;
        }
        Ok(())
    })();
    drop(stdin);
    if let Err(e) = driven {
        let _ = browser.kill();
        return Err(e.context(seen.join("\n")));
    }
    let output = browser.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("the browser test failed:\n{}\n{stderr}", seen.join("\n"));
    }
    eprintln!("{}", seen.join("\n"));
    assert!(
        seen.iter().any(|l| l.starts_with("ok - ")),
        "{}",
        seen.join("\n")
    );
    tracer.stop()?;
    let hub_stderr = hub.stop()?;
    for secret in secrets {
        assert!(
            !hub_stderr.contains(secret),
            "the hub's stderr holds {secret}"
        );
    }
    Ok(())
}
