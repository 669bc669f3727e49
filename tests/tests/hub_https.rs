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
    let _hub = Guarded::spawn(
        Command::new(hub_bin()?)
            .args(serve)
            .args(["--listen", &listen, "--tls-cert"])
            .arg(cert.cert())
            .arg("--tls-key")
            .arg(cert.key())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr)?),
        "tracer-hub",
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
