//! `cargo xtask demo`: what the tracer prints for a handful of real requests.

use crate::cargo;
use anyhow::{Context, Result};
use std::net::{IpAddr, Ipv4Addr};
use tests::clients::curl;
use tests::servers::{Nginx, NginxConfig, PyHttpServer};
use tests::tracer::{RecordSink, Tracer};

const PYTHON_PORT: u16 = 8080;
const NGINX_PORT: u16 = 8081;
const NGINX_TLS_PORT: u16 = 8443;

pub fn run() -> Result<()> {
    let bin = cargo::build_tracer()?;
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

    let tracer = Tracer::spawn(
        &bin,
        &[PYTHON_PORT, NGINX_PORT, NGINX_TLS_PORT],
        RecordSink::File,
    )?;
    println!("tracer (pid {}) is ready; sending traffic:", tracer.pid());
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
        "\nrecords ({} access records; every line also carries the audit.* chain fields, \
         and the stream holds start, loss and checkpoint lines too: docs/audit.md):",
        run.records.len()
    );
    for record in &run.records {
        println!("{record}");
    }
    println!("\ntracer: summary {}", run.summary);
    Ok(())
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
