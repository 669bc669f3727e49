//! `cargo xtask demo`: the whole path for a handful of real requests. A Python and an
//! nginx server are traced; the tracer publishes to a local nats-server; tracer-hub
//! consumes, verifies and stores the records, answers a query and a top table, and
//! serves the dashboard.

use crate::cargo;
use anyhow::{Context, Result};
use std::io::IsTerminal as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tests::audit::key_show;
use tests::clients::curl;
use tests::hub::{self, Hub};
use tests::servers::{NatsServer, Nginx, NginxConfig, PyHttpServer};
use tests::tracer::{RecordSink, Tracer};

const PYTHON_PORT: u16 = 8080;
const NGINX_PORT: u16 = 8081;
const NGINX_TLS_PORT: u16 = 8443;
const HUB_PORT: u16 = 8686;
const STREAM_ID: &str = "demo-host";

pub fn run() -> Result<()> {
    let bins = cargo::build_release_for_harness()?;
    let dir = tempfile::Builder::new().prefix("tracer-demo-").tempdir()?;
    let nats = NatsServer::start().context("starting nats-server")?;
    println!("nats-server with JetStream on {}", nats.url());
    let python = PyHttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), PYTHON_PORT, "HTTP/1.1")
        .with_context(|| format!("starting python3 -m http.server on {PYTHON_PORT}"))?;
    std::fs::write(python.www().join("notes.txt"), "some notes\n")?;
    let mut nginx_config = NginxConfig::new(NGINX_PORT);
    nginx_config.tls_port = Some(NGINX_TLS_PORT);
    let _nginx = Nginx::start(nginx_config)
        .with_context(|| format!("starting nginx on {NGINX_PORT} and {NGINX_TLS_PORT}"))?;
    println!(
        "python3 -m http.server (pid {}) on 127.0.0.1:{PYTHON_PORT}",
        python.pid()
    );
    println!("nginx (master + 2 workers) on 127.0.0.1:{NGINX_PORT}, and HTTPS on {NGINX_TLS_PORT}");

    let key = dir.path().join("audit.key");
    let key_text = dir.path().join("audit.pub");
    std::fs::write(&key_text, key_show(&key)?)?;
    let nats_url = nats.url();
    let tracer = Tracer::spawn_with_args(
        &bins.tracer,
        &[PYTHON_PORT, NGINX_PORT, NGINX_TLS_PORT],
        &[
            "--audit-key",
            path_str(&key)?,
            "--stream-id",
            STREAM_ID,
            "--nats",
            &nats_url,
            "--nats-create-stream",
            "--stdout",
        ],
        &[],
        RecordSink::File,
    )?;
    println!(
        "tracer (pid {}) is ready, publishing to NATS; sending traffic:",
        tracer.pid()
    );
    let py = |path: &str| format!("http://127.0.0.1:{PYTHON_PORT}{path}");
    let ngx = |path: &str| format!("http://127.0.0.1:{NGINX_PORT}{path}");
    let traffic: Vec<(&str, Vec<String>)> = vec![
        (
            "GET with a query holding a credential",
            vec![py("/hello.txt?q=1&access_token=SECRET")],
        ),
        (
            "POST with a form body",
            vec!["-d".into(), "name=demo&value=42".into(), ngx("/submit")],
        ),
        ("HEAD of a 100 KiB file", vec!["-I".into(), ngx("/big")]),
        (
            "GET with X-Request-Id and a W3C traceparent",
            vec![
                "-H".into(),
                "X-Request-Id: demo-request-1".into(),
                "-H".into(),
                "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                ngx("/"),
            ],
        ),
        (
            "GET as a Basic-auth user",
            vec!["-u".into(), "alice:wonderland".into(), py("/notes.txt")],
        ),
        ("GET of a missing file (404)", vec![py("/missing.txt")]),
        (
            "three orders as Basic-auth users (the hub folds ids into /orders/{id})",
            vec![
                "-u".into(),
                "alice:wonderland".into(),
                ngx("/orders/1"),
                ngx("/orders/2"),
                "--next".into(),
                "-u".into(),
                "bob:builder".into(),
                ngx("/orders/3"),
            ],
        ),
        (
            "two URLs on one keep-alive connection",
            vec![ngx("/big"), ngx("/")],
        ),
        (
            "HTTPS with a bearer token (read through the OpenSSL probes)",
            vec![
                "-k".into(),
                "-H".into(),
                "Authorization: Bearer not-a-jwt-but-never-written".into(),
                format!("https://127.0.0.1:{NGINX_TLS_PORT}/secure?page=1"),
            ],
        ),
    ];
    for (what, args) in &traffic {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let shown: Vec<String> = args.iter().map(|a| shell_quoted(a)).collect();
        println!("  curl {}  # {what}", shown.join(" "));
        curl(&args)?;
    }

    let run = tracer.stop()?;
    println!(
        "\none record as the tracer wrote it (every line carries the audit.* chain fields; \
         the stream also holds start and checkpoint lines: docs/audit.md):"
    );
    if let Some(record) = run.records.iter().find(|r| r["user.name"] == "alice") {
        println!("{record}");
    }
    println!("tracer: summary {}", run.summary);

    let token = hex_token()?;
    let data = dir.path().join("hub");
    let key_arg = format!("{STREAM_ID}={}", key_text.display());
    let mut hub = Hub::serve_with(
        &data,
        &token,
        HUB_PORT,
        &["--nats", &nats_url, "--key", &key_arg],
    )
    .context("starting tracer-hub")?;
    let expected = run.records.len() as u64;
    hub.wait_until(
        Duration::from_secs(60),
        "holding the demo's records",
        |hub| Ok(hub.stored()? >= expected),
    )?;
    let data_arg = path_str(&data)?.to_owned();
    println!("\ntracer-hub stored all {expected} records from NATS, verified against the key.");
    for args in [
        vec![
            "query", "--data", &data_arg, "--since", "1h", "--user", "alice",
        ],
        vec!["top", "endpoints", "--data", &data_arg, "--since", "1h"],
        vec!["top", "users", "--data", &data_arg, "--since", "1h"],
        vec!["integrity", "--data", &data_arg],
    ] {
        println!("\n$ tracer-hub {}", args.join(" "));
        print!("{}", hub::ok(&args)?);
    }
    println!(
        "\ndashboard: {}  (log in with the token in {})",
        hub.url("/"),
        hub.token_file.display()
    );
    if std::io::stdin().is_terminal() {
        println!("press Enter to stop the demo");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
    }
    hub.stop()?;
    Ok(())
}

fn path_str(path: &std::path::Path) -> Result<&str> {
    path.to_str().context("a non-UTF-8 temp path")
}

/// A random login token for this demo's dashboard.
fn hex_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `arg` as a shell would need it, so the printed commands can be pasted.
fn shell_quoted(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@,".contains(c);
    if arg.chars().all(plain) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
