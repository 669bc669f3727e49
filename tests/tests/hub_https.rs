//! `tracer-hub serve` over HTTPS: beyond loopback only with a certificate, Secure
//! session cookies, plain HTTP to the TLS port refused and reported, and clear errors
//! for certificates that cannot be used.
use std::{
    fs,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use tests::{
    clients::curl,
    hub::{self, TOKEN},
    ports::free_port,
    process::Guarded,
    tls::Certificate,
    workspace::hub_bin,
};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn the_dashboard_is_served_over_https_beyond_loopback_with_secure_cookies() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cert = Certificate::generate_with_ca()?;
    let token = dir.path().join("token");
    fs::write(&token, format!("{TOKEN}\n"))?;
    let data = dir.path().join("data");
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let (data_arg, token_arg) = (data.to_str().unwrap(), token.to_str().unwrap());
    let serve = ["serve", "--data", data_arg, "--token-file", token_arg];

    // Without a certificate, an address beyond loopback is refused, with the way out.
    let plain = hub::run(&[&serve[..], &["--listen", &listen]].concat())?;
    assert!(!plain.ok);
    assert!(plain.stderr.contains("--tls-cert"), "{}", plain.stderr);
    // A key that is not the certificate's is named.
    let other = Certificate::generate()?;
    let (cert_arg, other_key) = (cert.cert(), other.key());
    let mismatched = hub::run(
        &[
            &serve[..],
            &[
                "--listen",
                &listen,
                "--tls-cert",
                cert_arg.to_str().unwrap(),
            ],
            &["--tls-key", other_key.to_str().unwrap()],
        ]
        .concat(),
    )?;
    assert!(!mismatched.ok);
    assert!(
        mismatched.stderr.contains("does not fit"),
        "{}",
        mismatched.stderr
    );

    let stderr = dir.path().join("serve.stderr");
    let _hub = serve_over_tls(
        &[&serve[..], &["--listen", &listen]].concat(),
        &cert,
        &stderr,
    )?;
    let base = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    // The API needs a login: 401 once the hub answers.
    loop {
        let status = curl(&[
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{base}/api/totals"),
        ]);
        match status {
            Ok(code) if code == "401" => break,
            _ if Instant::now() > deadline => {
                bail!(
                    "no HTTPS answer: {status:?}; {}",
                    fs::read_to_string(&stderr)?
                )
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let login = curl(&[
        "-k",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "Content-Type: application/json",
        "--data",
        &format!(r#"{{"password":"{TOKEN}"}}"#),
        &format!("{base}/login"),
    ])?;
    let cookie_line = login
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no session cookie: {login}"));
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie_line.contains(attribute), "{cookie_line}");
    }
    let session = cookie_line["set-cookie:".len()..]
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let totals: serde_json::Value = serde_json::from_str(&curl(&[
        "-k",
        "-H",
        &format!("Cookie: {session}"),
        &format!("{base}/api/totals"),
    ])?)?;
    assert_eq!(totals["requests"], 0, "{totals}");

    // Plain HTTP to the TLS port gets no page, and the failed handshake is reported.
    assert!(curl(&[&format!("http://127.0.0.1:{port}/api/totals")]).is_err());
    // The whole address is awaited: the hub's stderr is unbuffered, so a line can be
    // read while it is half written.
    let log = wait_for_log(&stderr, "TLS handshake from 127.0.0.1")?;
    assert!(log.contains("TLS handshake from 127.0.0.1"), "{log}");
    assert!(log.contains(&format!("https://0.0.0.0:{port}/")), "{log}");

    // `query --hub` over HTTPS: refused for a certificate the system does not trust,
    // answered with --hub-ca.
    let remote = ["query", "--hub", &base, "--token-file", token_arg];
    let untrusted = hub::run(&remote)?;
    assert!(!untrusted.ok, "{}", untrusted.stdout);
    let ca = cert.ca();
    hub::ok(&[&remote[..], &["--hub-ca", ca.to_str().unwrap()]].concat())?;

    // A renewed certificate is served without a restart. A key that does not fit is
    // reported and the previous pair kept until the files change again.
    let answers_with = |ca: &std::path::Path| {
        curl(&[
            "--cacert",
            ca.to_str().unwrap_or_default(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{base}/api/totals"),
        ])
        .is_ok_and(|code| code == "401")
    };
    let old = cert.ca();
    assert!(answers_with(&old));
    let renewed = Certificate::generate_with_ca()?;
    fs::copy(renewed.cert(), cert.cert())?;
    let log = wait_for_log(&stderr, "cannot be used")?;
    assert!(log.contains("cannot be used"), "{log}");
    assert!(answers_with(&old), "the previous pair still serves");
    fs::copy(renewed.key(), cert.key())?;
    let deadline = Instant::now() + WAIT;
    while !answers_with(&renewed.ca()) {
        if Instant::now() > deadline {
            bail!(
                "the renewed certificate is not served: {}",
                fs::read_to_string(&stderr)?
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !answers_with(&old),
        "the replaced certificate is still served"
    );
    let log = wait_for_log(&stderr, "reloaded")?;
    assert!(log.contains("TLS certificate"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
    Ok(())
}

/// `tracer-hub ARGS --tls-cert --tls-key` with `cert`'s pair, its stderr in `stderr`.
fn serve_over_tls(args: &[&str], cert: &Certificate, stderr: &std::path::Path) -> Result<Guarded> {
    Guarded::spawn(
        Command::new(hub_bin()?)
            .args(args)
            .arg("--tls-cert")
            .arg(cert.cert())
            .arg("--tls-key")
            .arg(cert.key())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(stderr)?),
        "tracer-hub",
    )
}

/// The hub's stderr once it holds `text`, or as it is at the deadline.
fn wait_for_log(stderr: &std::path::Path, text: &str) -> Result<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = fs::read_to_string(stderr)?;
        if log.contains(text) || Instant::now() > deadline {
            return Ok(log);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `serve --tls-client-ca`: a connection without a client certificate from those CAs
/// gets no page at all, not even the login; with one, the token is still asked for.
/// `query --hub` presents its certificate with --hub-cert and --hub-key.
#[test]
fn with_client_cas_only_clients_holding_their_certificates_reach_the_hub() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Certificate::generate_with_ca()?;
    let clients = Certificate::generate_with_ca()?;
    let (alice_cert, alice_key) = clients.issue_client("alice")?;
    let rogue = Certificate::generate_with_ca()?;
    let (mallory_cert, mallory_key) = rogue.issue_client("mallory")?;
    let token = dir.path().join("token");
    fs::write(&token, format!("{TOKEN}\n"))?;
    let data = dir.path().join("data");
    let port = free_port();
    let stderr = dir.path().join("serve.stderr");
    let (data, token_arg, client_ca) = (data.to_str(), token.to_str(), clients.ca());
    let listen = format!("127.0.0.1:{port}");
    let _hub = serve_over_tls(
        &[
            "serve",
            "--data",
            data.unwrap_or_default(),
            "--token-file",
            token_arg.unwrap_or_default(),
            "--listen",
            &listen,
            "--tls-client-ca",
            client_ca.to_str().unwrap_or_default(),
        ],
        &server,
        &stderr,
    )?;
    let base = format!("https://127.0.0.1:{port}");
    let server_ca = server.ca();
    let totals = format!("{base}/api/totals");
    let with_cert = |cert: &std::path::Path, key: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "--cacert",
            server_ca.to_str().unwrap_or_default(),
            "--cert",
            cert.to_str().unwrap_or_default(),
            "--key",
            key.to_str().unwrap_or_default(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ];
        args.extend_from_slice(extra);
        args.push(&totals);
        curl(&args)
    };
    // Alice's certificate without the token: the login is still asked for.
    let deadline = Instant::now() + WAIT;
    loop {
        match with_cert(&alice_cert, &alice_key, &[]) {
            Ok(code) if code == "401" => break,
            status if Instant::now() > deadline => bail!(
                "no HTTPS answer: {status:?}; {}",
                fs::read_to_string(&stderr)?
            ),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let bearer = format!("Authorization: Bearer {TOKEN}");
    assert_eq!(with_cert(&alice_cert, &alice_key, &["-H", &bearer])?, "200");
    // No certificate, or one from another CA: no answer at all, the token notwithstanding.
    let without = curl(&[
        "--cacert",
        server_ca.to_str().unwrap_or_default(),
        "-H",
        &bearer,
        &totals,
    ]);
    assert!(without.is_err(), "{without:?}");
    let rogue_answer = with_cert(&mallory_cert, &mallory_key, &["-H", &bearer]);
    assert!(rogue_answer.is_err(), "{rogue_answer:?}");
    let log = wait_for_log(&stderr, "TLS handshake from 127.0.0.1")?;
    assert!(log.contains("TLS handshake from 127.0.0.1"), "{log}");

    // `query --hub`: refused without a certificate, with the flags to give; answered
    // with Alice's.
    let remote = [
        "query",
        "--hub",
        &base,
        "--token-file",
        token.to_str().unwrap_or_default(),
        "--hub-ca",
        server_ca.to_str().unwrap_or_default(),
    ];
    let as_holder = |cert: &std::path::Path, key: &std::path::Path| {
        let (cert, key) = (
            cert.to_str().unwrap_or_default(),
            key.to_str().unwrap_or_default(),
        );
        hub::run(&[&remote[..], &["--hub-cert", cert, "--hub-key", key]].concat())
    };
    let refused = hub::run(&remote)?;
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(refused.stderr.contains("--hub-cert"), "{}", refused.stderr);
    let rogue_query = as_holder(&mallory_cert, &mallory_key)?;
    assert!(!rogue_query.ok, "{}", rogue_query.stdout);
    assert!(
        rogue_query
            .stderr
            .contains("refused the client certificate"),
        "{}",
        rogue_query.stderr
    );
    let answered = as_holder(&alice_cert, &alice_key)?;
    assert!(answered.ok, "{}", answered.stderr);
    Ok(())
}
