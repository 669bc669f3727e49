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
    let cert = Certificate::generate()?;
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
    let deadline = Instant::now() + WAIT;
    let log = loop {
        let log = fs::read_to_string(&stderr)?;
        if log.contains("TLS handshake from") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(log.contains("TLS handshake from 127.0.0.1"), "{log}");
    assert!(log.contains(&format!("https://0.0.0.0:{port}/")), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
    Ok(())
}
