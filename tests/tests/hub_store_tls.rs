//! The hub's PostgreSQL store over TLS: a cluster that refuses every TCP connection
//! without TLS (`hostssl` only) and presents a certificate from a throwaway CA. The hub
//! imports and answers through it when given that CA, refuses a certificate it cannot
//! verify with the way out, and `sslmode=disable` is refused by the server. A cluster
//! that logs TCP sessions in by client certificate admits the hub with the certificate
//! the CA issued for its role, and no other.
use std::{
    fs,
    path::{Path, PathBuf},
};

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

/// Real records: nginx under the tracer; the file of the lines it wrote, and the
/// `--key` argument of its stream.
fn traced_lines(dir: &Path, prefix: &str) -> Result<(PathBuf, String)> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let key = dir.join("audit.key");
    let key_arg = key.to_str().unwrap();
    let tracer = Tracer::start_with_args(
        &[port],
        &["--audit-key", key_arg, "--stream-id", STREAM_ID],
        &[],
    )?;
    for i in 0..REQUESTS {
        curl(&["-o", "/dev/null", &url(port, &format!("{prefix}/{i}"))])?;
    }
    let run = tracer.stop()?;
    assert_eq!(run.records.len(), REQUESTS, "{}", run.stderr);
    let lines = dir.join("access.jsonl");
    fs::write(&lines, &run.stdout)?;
    let public = dir.join("audit.pub");
    fs::write(&public, key_show(&key)?)?;
    Ok((lines, format!("{STREAM_ID}={}", public.display())))
}

#[test]
fn a_postgres_store_over_tls_is_verified_and_plain_tcp_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cert = Certificate::generate_with_ca()?;
    let postgres = Postgres::start_tls(&cert)?;
    let (lines, key_spec) = traced_lines(dir.path(), "/over-tls")?;
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

#[test]
fn a_postgres_store_that_logs_in_by_certificate_admits_the_hub_with_its_roles_certificate()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let cert = Certificate::generate_with_ca()?;
    let postgres = Postgres::start_tls_client_certs(&cert)?;
    let (lines, key_spec) = traced_lines(dir.path(), "/by-certificate")?;
    let (own_cert, own_key) = cert.issue_client("tracer")?;
    let (other_cert, other_key) = cert.issue_client("someone-else")?;
    let ca = cert.ca();
    // The URL's password is not what lets the hub in here.
    let store = format!("{}?sslmode=require", postgres.url());
    let import = |client: &[&str]| {
        hub::run(
            &[
                &[
                    "import",
                    "--store",
                    &store,
                    "--store-ca",
                    ca.to_str().unwrap(),
                ][..],
                client,
                &["--key", &key_spec, lines.to_str().unwrap()],
            ]
            .concat(),
        )
    };

    let without = import(&[])?;
    assert!(!without.ok, "admitted without a client certificate");
    assert!(
        without
            .stderr
            .contains("requires a valid client certificate")
            && without.stderr.contains("--store-cert"),
        "{}",
        without.stderr
    );
    let (other_cert, other_key) = (other_cert.to_str().unwrap(), other_key.to_str().unwrap());
    let other = import(&["--store-cert", other_cert, "--store-key", other_key])?;
    assert!(!other.ok, "admitted with another role's certificate");
    assert!(
        other
            .stderr
            .contains("certificate authentication failed for user \"tracer\""),
        "{}",
        other.stderr
    );
    // A key that is not the certificate's is the hub's own error, before connecting.
    let own_cert = own_cert.to_str().unwrap();
    let mismatched = import(&["--store-cert", own_cert, "--store-key", other_key])?;
    assert!(!mismatched.ok);
    assert!(
        mismatched
            .stderr
            .contains("does not belong to --store-cert"),
        "{}",
        mismatched.stderr
    );
    assert_eq!(
        postgres.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'streams'")?,
        "0",
        "nothing reached the database before a certificate login"
    );

    let own = [
        "--store-cert",
        own_cert,
        "--store-key",
        own_key.to_str().unwrap(),
    ];
    let imported = import(&own)?;
    assert!(imported.ok, "{}", imported.stderr);
    let answer = hub::ok(
        &[
            &[
                "query",
                "--store",
                &store,
                "--store-ca",
                ca.to_str().unwrap(),
            ][..],
            &own,
            &["--path", "/by-certificate/*", "--format", "jsonl"],
        ]
        .concat(),
    )?;
    assert_eq!(answer.lines().count(), REQUESTS, "{answer}");
    assert_eq!(
        postgres.psql("SELECT count(*) FROM records WHERE kind = 'access'")?,
        REQUESTS.to_string()
    );
    // The key's bytes are in no output.
    let secret = fs::read_to_string(&own_key)?;
    let body: String = secret.lines().filter(|l| !l.starts_with("-----")).collect();
    for output in [&imported.stderr, &imported.stdout, &answer] {
        assert!(!output.contains(&body[..body.len().min(40)]));
    }
    Ok(())
}
