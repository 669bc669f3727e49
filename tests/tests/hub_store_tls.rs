//! The hub's PostgreSQL store over TLS: a cluster that refuses every TCP connection
//! without TLS (`hostssl` only) and presents a certificate from a throwaway CA. The hub
//! imports and answers through it when given that CA, refuses a certificate it cannot
//! verify with the way out, and `sslmode=disable` is refused by the server.
use std::fs;

use anyhow::Result;
use tests::{
    audit::key_show,
    clients::{curl, url},
    hub,
    ports::free_port,
    servers::{Nginx, NginxConfig, Postgres},
    tls::Certificate,
    tracer::Tracer,
};

const STREAM_ID: &str = "web-tls-store";
const REQUESTS: usize = 5;

#[test]
fn a_postgres_store_over_tls_is_verified_and_plain_tcp_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cert = Certificate::generate_with_ca()?;
    let postgres = Postgres::start_tls(&cert)?;

    // Real records: nginx under the tracer, the lines it wrote, and its stream's key.
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let key = dir.path().join("audit.key");
    let key_arg = key.to_str().unwrap();
    let tracer = Tracer::start_with_args(
        &[port],
        &["--audit-key", key_arg, "--stream-id", STREAM_ID],
        &[],
    )?;
    for i in 0..REQUESTS {
        curl(&["-o", "/dev/null", &url(port, &format!("/over-tls/{i}"))])?;
    }
    let run = tracer.stop()?;
    assert_eq!(run.records.len(), REQUESTS, "{}", run.stderr);
    let lines = dir.path().join("access.jsonl");
    fs::write(&lines, &run.stdout)?;
    let public = dir.path().join("audit.pub");
    fs::write(&public, key_show(&key)?)?;
    let key_spec = format!("{STREAM_ID}={}", public.display());
    let (lines_arg, ca) = (lines.to_str().unwrap(), cert.ca());
    let ca_arg = ca.to_str().unwrap();

    let required = format!("{}?sslmode=require", postgres.url());
    let import = |store: &str, extra: &[&str]| {
        hub::run(
            &[
                &["import", "--store", store][..],
                extra,
                &["--key", &key_spec, lines_arg],
            ]
            .concat(),
        )
    };

    // The system's roots do not know the throwaway CA: refused, with the ways out.
    let unverified = import(&required, &[])?;
    assert!(!unverified.ok, "imported over an unverified channel");
    assert!(
        unverified.stderr.contains("--store-ca") && unverified.stderr.contains("sslmode=disable"),
        "{}",
        unverified.stderr
    );
    // Without TLS the server itself refuses (hostssl only), and the hub says so.
    let plain = format!("{}?sslmode=disable", postgres.url());
    let refused = import(&plain, &["--store-ca", ca_arg])?;
    assert!(!refused.ok, "the server admitted a connection without TLS");
    assert!(
        refused.stderr.contains("no encryption"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        postgres.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'streams'")?,
        "0",
        "nothing reached the database before a verified connection"
    );

    // Given the CA, the hub imports and answers over TLS; the default sslmode (prefer)
    // takes TLS too, since the server offers it.
    hub::ok(
        &[
            &["import", "--store", &required, "--store-ca", ca_arg][..],
            &["--key", &key_spec, lines_arg],
        ]
        .concat(),
    )?;
    let answer = hub::ok(&[
        "query",
        "--store",
        &postgres.url(),
        "--store-ca",
        ca_arg,
        "--path",
        "/over-tls/*",
        "--format",
        "jsonl",
    ])?;
    let mut paths: Vec<String> = answer
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line)?;
            Ok(record["url.path"].as_str().unwrap_or_default().to_owned())
        })
        .collect::<Result<_>>()?;
    paths.sort();
    let expected: Vec<String> = (0..REQUESTS).map(|i| format!("/over-tls/{i}")).collect();
    assert_eq!(paths, expected);
    // Every record is there once; the server admits TCP sessions over TLS only, so
    // they all came through it.
    assert_eq!(
        postgres.psql("SELECT count(*) FROM records WHERE kind = 'access'")?,
        REQUESTS.to_string()
    );
    Ok(())
}
