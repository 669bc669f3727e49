//! The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright
//! (tests/browser/dashboard.mjs) against a hub fed by the tracer through NATS. It logs
//! in (a wrong password is refused), watches a request nginx serves appear in the
//! live view, filters by user, opens a record and its chain status, and finds the
//! break a tampered import left on the integrity page. Screenshots go to
//! target/dashboard-screenshots.
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
    let data = dir.path().join("hub");
    let mut hub = Hub::serve(&data, &["--nats", &nats_url, "--key", &key_arg])?;
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

    let screenshots = workspace::root().join("target/dashboard-screenshots");
    let live_path = "/live/probe-4711";
    let mut browser = Command::new("node")
        .arg(workspace::root().join("tests/browser/dashboard.mjs"))
        .env("HUB_URL", hub.url(""))
        .env("HUB_PASSWORD", TOKEN)
        .env("SCREENSHOT_DIR", &screenshots)
        .env("EXPECT_USER", "alice")
        .env("EXPECT_PATH", live_path)
        .env("EXPECT_BREAK_STREAM", "web2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(
            "running node tests/browser/dashboard.mjs (scripts/setup.sh installs playwright-core)",
        )?;
    let stdout = browser.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line?;
        seen.push(line.clone());
        if line.trim() == "READY_FOR_LIVE" {
            curl(&["-u", "alice:alice-password-1", &url(port, live_path)])?;
            let mut stdin = browser.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
            writeln!(stdin, "go")?;
            break;
        }
    }
    seen.extend(lines.map_while(Result::ok));
    let output = browser.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("the browser test failed:\n{}\n{stderr}", seen.join("\n"));
    }
    assert!(
        seen.iter().any(|l| l.starts_with("ok - ")),
        "{}",
        seen.join("\n")
    );
    tracer.stop()?;
    let hub_stderr = hub.stop()?;
    for secret in ["alice-password-1", "bob-password-22", TOKEN] {
        assert!(
            !hub_stderr.contains(secret),
            "the hub's stderr holds {secret}"
        );
    }
    Ok(())
}
