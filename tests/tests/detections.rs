//! Detections end to end: a generated population of users and a set of injected
//! attacks drive real nginx through the real tracer (a trusted proxy's
//! `X-Forwarded-For` names public clients, all on loopback), NATS and the hub; every
//! injected attack must raise its alert, normal traffic at most one false alert per
//! 10,000 requests, and the alerts must reach a real Alertmanager, NATS subscribers
//! and a webhook (that fails first, so it is retried) without a secret in any of them.
//!
//! Time: the rules run on the records' own timestamps. The scenario runs live, so the
//! detections file sets short spans (a 15 s learning period, 2 s volume buckets) and
//! gives `olga` a working day that excludes the current hour; the unit tests in
//! hub/src/detect/tests.rs replay chosen timestamps instead.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};
use tests::{
    alertmanager::Alertmanager,
    audit::key_show,
    hub::{self, Hub},
    identity::{SigningKey, unix_now},
    ports::free_port,
    scenario::{Clients, Request},
    servers::{NatsServer, Nginx, NginxConfig, subscribe},
    tracer::Tracer,
};

const STREAM_ID: &str = "web-detect";
const WAIT: Duration = Duration::from_secs(90);
const PASSWORD: &str = "pw-Scenario-never-written-4d1e";
const API_KEY: &str = "sk-live-service-key-never-written-77aa";
const HMAC_SECRET: &str = "hs256-scenario-secret-never-written";
const USERS: [&str; 12] = [
    "alice", "bob", "carol", "mallory", "victor", "sam", "uma", "walt", "xena", "yuri", "zoe",
    "hank",
];
/// Normal traffic before the attacks: longer than the learning period.
const LEARNING_ROUNDS: u32 = 90;
/// Normal traffic interleaved with the attacks.
const ATTACK_ROUNDS: u32 = 30;
const ROUND: Duration = Duration::from_millis(200);

fn client_of(user_index: usize) -> String {
    // Half the population in a network the test GeoIP places in Berlin (AS64501),
    // half in one it knows nothing about.
    if user_index.is_multiple_of(2) {
        format!("198.51.100.{}", 10 + user_index)
    } else {
        format!("192.0.2.{}", 10 + user_index)
    }
}

/// One round of normal use: each user a few pages, the service its API calls; now and
/// then a wrong password or a missing file, as real users do.
fn normal_round(clients: &mut Clients, round: u32) -> Result<u64> {
    let mut sent = 0;
    for (i, user) in USERS.iter().enumerate() {
        let client = client_of(i);
        for n in 0..7u32 {
            let step = round * 7 + n + i as u32;
            let path = match step % 7 {
                0 => "/".to_owned(),
                1..=3 => format!("/orders/{}", step % 5 + 1),
                4 => "/reports/daily".to_owned(),
                5 if step % 97 == 5 => "/login".to_owned(),
                5 if step % 89 == 5 => format!("/static/missing-{}.css", step % 3),
                _ => format!("/items/{}", step % 4 + 1),
            };
            let mut request = Request::new(&client, &path).basic(user, PASSWORD);
            // hank is the one allowed to read salaries, and does.
            if *user == "hank" && n == 0 {
                request = Request::new(&client, "/hr/salaries").basic(user, PASSWORD);
            }
            clients.send(&request)?;
            sent += 1;
        }
    }
    for n in 0..4u32 {
        clients.send(
            &Request::new(
                "198.51.100.200",
                &format!("/api/v1/stock/{}", (round + n) % 3),
            )
            .api_key(API_KEY)
            .user_agent("svc-client/2.1"),
        )?;
        sent += 1;
    }
    Ok(sent)
}

/// An attack and the alerts it must raise: (rule, entity); an entity ending in `*`
/// matches by prefix (a credential's fingerprint is the sensor's secret HMAC).
struct Attack {
    name: &'static str,
    expect: Vec<(&'static str, String)>,
}

fn attacks(clients: &mut Clients, expired_jwt: &str) -> Result<Vec<Attack>> {
    let mut attacks = Vec::new();
    let mut add = |name, expect: &[(&'static str, &str)]| {
        attacks.push(Attack {
            name,
            expect: expect.iter().map(|(r, e)| (*r, (*e).to_owned())).collect(),
        });
    };
    // Insider: mallory reads the restricted salaries (and is served: least privilege).
    clients.send(&Request::new(&client_of(3), "/hr/salaries").basic("mallory", PASSWORD))?;
    add(
        "restricted asset",
        &[
            ("restricted_access", "user:mallory"),
            ("least_privilege", "user:mallory"),
        ],
    );
    // bob reaches the admin console without the admin role.
    clients.send(&Request::new(&client_of(1), "/admin/users").basic("bob", PASSWORD))?;
    add("privilege", &[("least_privilege", "user:bob")]);
    // carol, past her learning period, opens the confidential finance report.
    clients.send(&Request::new(&client_of(2), "/finance/report").basic("carol", PASSWORD))?;
    add(
        "first confidential",
        &[("first_confidential", "user:carol")],
    );
    // alice's password used from Brazil with another device, while alice works in Berlin.
    clients.send(
        &Request::new("203.0.113.77", "/orders/1")
            .basic("alice", PASSWORD)
            .user_agent("python-requests/2.31"),
    )?;
    add(
        "stolen password",
        &[
            ("new_source", "user:alice"),
            ("credential_sharing", "user:alice"),
        ],
    );
    // The service's API key also used from Brazil.
    clients.send(
        &Request::new("203.0.113.200", "/api/v1/stock/1")
            .api_key(API_KEY)
            .user_agent("svc-client/2.1"),
    )?;
    add(
        "shared key",
        &[
            ("credential_sharing", "credential:*"),
            ("new_source", "credential:*"),
        ],
    );
    // olga works outside her working hours.
    for n in 0..3 {
        clients
            .send(&Request::new("192.0.2.200", &format!("/orders/{n}")).basic("olga", PASSWORD))?;
    }
    add("off hours", &[("off_hours", "user:olga")]);
    // A disabled account still served.
    clients.send(&Request::new("192.0.2.201", "/").basic("dora", PASSWORD))?;
    add("disabled user", &[("disabled_user", "user:dora")]);
    // An expired token the application accepted.
    clients.send(&Request::new("192.0.2.202", "/orders/3").bearer(expired_jwt))?;
    add("expired token accepted", &[("broken_auth", "user:eve")]);
    // Brute force against root.
    for _ in 0..25 {
        clients.send(&Request::new("203.0.113.66", "/login").basic("root", "guess"))?;
    }
    add(
        "brute force",
        &[
            ("auth_failures", "client:203.0.113.66"),
            ("auth_failures", "user:root"),
        ],
    );
    // Credential stuffing: many users from one client.
    for n in 0..8 {
        clients.send(&Request::new("203.0.113.67", "/login").basic(&format!("leaked{n}"), "x"))?;
    }
    add(
        "credential stuffing",
        &[("credential_stuffing", "client:203.0.113.67")],
    );
    // A scanner.
    for n in 0..40 {
        clients.send(&Request::new(
            "203.0.113.68",
            &format!("/static/probe-{n}.php"),
        ))?;
    }
    add("scanner", &[("scanning", "client:203.0.113.68")]);
    // sam walks every customer record.
    for n in 0..60 {
        clients.send(
            &Request::new(&client_of(5), &format!("/customers/{}", 1000 + n))
                .basic("sam", PASSWORD),
        )?;
    }
    add("scraping", &[("scraping", "user:sam")]);
    // victor's script pulls far more than his baseline.
    for n in 0..700 {
        clients.send(
            &Request::new(&client_of(4), &format!("/orders/{}", n % 5 + 1))
                .basic("victor", PASSWORD),
        )?;
    }
    add(
        "volume",
        &[
            ("volume", "user:victor"),
            ("volume", &format!("client:{}", client_of(4))),
        ],
    );
    // An endpoint failing for everyone.
    for (i, user) in USERS.iter().enumerate().take(10) {
        for _ in 0..3 {
            clients.send(&Request::new(&client_of(i), "/boom").basic(user, PASSWORD))?;
        }
    }
    add("server errors", &[("server_errors", "endpoint:GET /boom")]);
    // A public Sigma rule's traversal.
    clients.send(&Request::new(
        "203.0.113.69",
        "/download?file=../../etc/passwd",
    ))?;
    add(
        "sigma path traversal",
        &[("sigma.web-path-traversal", "client:203.0.113.69")],
    );
    Ok(attacks)
}

const SIGMA_RULES: &str = r#"title: Path traversal in the query string
id: web-path-traversal
status: test
description: in the shape of SigmaHQ's web path traversal rules (category webserver)
logsource:
  category: webserver
detection:
  selection:
    cs-uri-query|contains:
      - '../'
      - '..%2f'
  condition: selection
level: high
"#;

/// A webhook receiver that answers 500 to its first POST and 200 after: the hub must
/// retry. The bodies it accepted.
fn webhook() -> Result<(String, Arc<Mutex<Vec<String>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|r| r > 0) && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            if n > 0 {
                kept.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
        }
    });
    Ok((url, bodies))
}

fn matches(expected: &(&str, String), alert: &Value) -> bool {
    let (rule, entity) = expected;
    let got = alert["entity"].as_str().unwrap_or_default();
    alert["rule"] == *rule
        && match entity.strip_suffix('*') {
            Some(prefix) => got.starts_with(prefix),
            None => got == entity,
        }
}

#[test]
fn injected_attacks_are_detected_normal_use_is_not_and_alerts_reach_every_receiver() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = |name: &str| dir.path().join(name).display().to_string();
    let status = std::process::Command::new("perl")
        .arg(tests::workspace::root().join("scripts/make-test-mmdb.pl"))
        .arg(dir.path())
        .status()?;
    assert!(status.success(), "scripts/make-test-mmdb.pl");
    let nats = NatsServer::start()?;
    let port = free_port();
    let mut config = NginxConfig::new(port);
    config.access_log = true;
    config.extra_locations =
        "        location = /login { return 401; }\n        location = /boom { return 503; }\n"
            .to_owned();
    let nginx = Nginx::start(config)?;

    std::fs::write(path("hs256.secret"), format!("{HMAC_SECRET}\n"))?;
    std::fs::write(
        path("tracer.toml"),
        format!(
            "[identity]\nfingerprint_secret_file = {:?}\n[identity.proxy]\ntrusted_cidrs = [\"127.0.0.2/32\"]\n[identity.jwt]\nhmac_secret_file = {:?}\nissuers = [\"https://issuer.test\"]\naudiences = [\"api\"]\n",
            path("fingerprint.key"),
            path("hs256.secret"),
        ),
    )?;
    let nats_url = nats.url();
    let tracer = Tracer::start_with_args(
        &[port],
        &[
            "--config",
            &path("tracer.toml"),
            "--audit-key",
            &path("audit.key"),
            "--stream-id",
            STREAM_ID,
            "--nats",
            &nats_url,
            "--nats-create-stream",
            "--stdout",
        ],
        &[],
    )?;
    std::fs::write(
        path("audit.pub"),
        key_show(dir.path().join("audit.key").as_path())?,
    )?;

    std::fs::write(
        path("catalog.toml"),
        "[[asset]]\nname = \"hr-salaries\"\nsensitivity = \"restricted\"\nallowed_roles = [\"hr-admin\"]\nallowed_users = [\"hank\"]\npaths = [\"/hr/**\"]\n\n\
         [[asset]]\nname = \"admin-console\"\nsensitivity = \"internal\"\nallowed_roles = [\"admin\"]\npaths = [\"/admin/**\"]\n\n\
         [[asset]]\nname = \"finance-reports\"\nsensitivity = \"confidential\"\npaths = [\"/finance/**\"]\n",
    )?;
    std::fs::write(
        path("people.csv"),
        "user.id,full_name,email,department,status\nalice,Alice Liddell,,Finance,active\ndora,Dora Explorer,,Sales,disabled\n",
    )?;
    // Everyone works around the clock but olga, whose day is two hours long and starts
    // three hours from now (UTC).
    let hour = (unix_now() / 3600 + 3) % 24;
    std::fs::write(
        path("detections.toml"),
        format!(
            "learning = \"15s\"\n[calendar]\ntimezone = \"UTC\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\nhours = \"00:00-24:00\"\n\
             [calendar.users.olga]\nhours = \"{hour:02}:00-{:02}:00\"\n\
             [rules.volume]\nbucket = \"2s\"\nwarmup = 4\nmin_requests = 150\n\
             [rules.scraping]\ndistinct = 40\nwindow = \"1m\"\n",
            (hour + 2) % 24
        ),
    )?;
    std::fs::write(path("sigma.yml"), SIGMA_RULES)?;
    let alertmanager = Alertmanager::start()?;
    let (hook, hooked) = webhook()?;
    let nats_alerts = subscribe(&nats_url, "alerts.>")?;
    let key = format!("{STREAM_ID}={}", path("audit.pub"));
    let am = alertmanager.url("");
    let mut hub = Hub::serve(
        &dir.path().join("hub"),
        &[
            "--nats",
            &nats_url,
            "--key",
            &key,
            "--catalog",
            &path("catalog.toml"),
            "--directory",
            &path("people.csv"),
            "--geoip",
            &path("test-city.mmdb"),
            "--geoip",
            &path("test-asn.mmdb"),
            "--detections",
            &path("detections.toml"),
            "--rules",
            &path("sigma.yml"),
            "--alertmanager",
            &am,
            "--webhook",
            &hook,
        ],
    )?;

    let expired = SigningKey::hmac(HMAC_SECRET.as_bytes()).sign(&json!({
        "sub": "eve", "iss": "https://issuer.test", "aud": "api",
        "iat": unix_now() - 7200, "exp": unix_now() - 3600,
    }))?;
    let mut clients = Clients::new(port);
    let mut normal = 0;
    for round in 0..LEARNING_ROUNDS {
        let started = Instant::now();
        normal += normal_round(&mut clients, round)?;
        std::thread::sleep(ROUND.saturating_sub(started.elapsed()));
    }
    let attacked_at = Instant::now();
    let attacks = attacks(&mut clients, &expired)?;
    let attack_requests = clients.sent - normal;
    for round in LEARNING_ROUNDS..LEARNING_ROUNDS + ATTACK_ROUNDS {
        let started = Instant::now();
        normal += normal_round(&mut clients, round)?;
        std::thread::sleep(ROUND.saturating_sub(started.elapsed()));
    }
    let total = clients.sent;
    hub.wait_until(WAIT, "holding every request", |hub| {
        Ok(hub.stored()? >= total)
    })?;
    let first_alert_after = attacked_at.elapsed();
    assert_eq!(
        nginx.settled_access_log_lines()? as u64,
        total,
        "nginx logged every request of the scenario"
    );

    let data = dir.path().join("hub").display().to_string();
    let listed = hub::ok(&[
        "alerts", "--data", &data, "--format", "jsonl", "--limit", "1000",
    ])?;
    let alerts: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("alert line {l}")))
        .collect::<Result<_>>()?;

    // Precision and recall per rule.
    let mut report: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    let mut missed = Vec::new();
    for attack in &attacks {
        for expected in &attack.expect {
            let entry = report.entry(expected.0.to_owned()).or_default();
            if alerts.iter().any(|a| matches(expected, a)) {
                entry.0 += 1;
            } else {
                entry.1 += 1;
                missed.push(format!("{}: {} {}", attack.name, expected.0, expected.1));
            }
        }
    }
    let mut false_alerts = Vec::new();
    for alert in &alerts {
        if !attacks
            .iter()
            .flat_map(|a| &a.expect)
            .any(|e| matches(e, alert))
        {
            report
                .entry(alert["rule"].as_str().unwrap_or("?").to_owned())
                .or_default()
                .2 += 1;
            false_alerts.push(alert.to_string());
        }
    }
    eprintln!(
        "detections: {normal} normal and {attack_requests} attack requests through nginx, tracer, NATS and the hub"
    );
    eprintln!(
        "{:<22} {:>9} {:>7} {:>6} {:>9} {:>6}",
        "rule", "detected", "missed", "false", "precision", "recall"
    );
    for (rule, (hit, miss, wrong)) in &report {
        let precision = if hit + wrong == 0 {
            1.0
        } else {
            f64::from(*hit) / f64::from(hit + wrong)
        };
        let recall = if hit + miss == 0 {
            1.0
        } else {
            f64::from(*hit) / f64::from(hit + miss)
        };
        eprintln!("{rule:<22} {hit:>9} {miss:>7} {wrong:>6} {precision:>9.2} {recall:>6.2}");
    }
    assert!(
        missed.is_empty(),
        "attacks not detected:\n{}\nalerts:\n{listed}",
        missed.join("\n")
    );
    assert!(
        normal >= 10_000,
        "the scenario's normal traffic is {normal} requests"
    );
    let allowed = (normal / 10_000) as usize;
    assert!(
        false_alerts.len() <= allowed,
        "{} false alerts for {normal} normal requests (at most {allowed}):\n{}",
        false_alerts.len(),
        false_alerts.join("\n")
    );

    // The alert names what happened and links its records.
    let mallory = alerts
        .iter()
        .find(|a| a["rule"] == "restricted_access")
        .ok_or_else(|| anyhow!("no restricted_access alert"))?;
    let summary = mallory["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("mallory GET /hr/salaries (asset hr-salaries, restricted)"),
        "{summary}"
    );
    let record = &mallory["records"][0];
    let linked = hub.api(&format!(
        "/api/records/{}/{}",
        record["stream"].as_str().unwrap_or_default(),
        record["seq"]
    ))?;
    assert_eq!(linked["fields"]["url.path"], "/hr/salaries", "{linked}");
    // Grouped: 25 brute-force attempts are one alert per entity, not 6 of them.
    let brute: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"] == "auth_failures" && a["entity"] == "client:203.0.113.66")
        .collect();
    assert_eq!(brute.len(), 1, "{brute:?}");
    assert_eq!(brute[0]["count"], 6, "from the 20th failure to the 25th");

    // Delivered: Alertmanager shows it, NATS carried it, the webhook got it after a retry.
    let mut seen_by_am = Vec::new();
    hub.wait_until(WAIT, "delivering to Alertmanager", |_| {
        seen_by_am = alertmanager.alerts()?;
        Ok(seen_by_am.iter().any(|a| {
            a["labels"]["alertname"] == "restricted_access"
                && a["labels"]["entity"] == "user:mallory"
        }))
    })?;
    hub.wait_until(WAIT, "publishing on NATS", |_| {
        Ok(nats_alerts
            .lock()
            .expect("lock")
            .iter()
            .any(|m| m.subject == "alerts.restricted_access"))
    })?;
    hub.wait_until(WAIT, "retrying the webhook", |_| {
        Ok(hooked
            .lock()
            .expect("lock")
            .iter()
            .any(|b| b.contains("\"broken_auth\"")))
    })?;
    eprintln!(
        "detections: every alert stored {:.1} s after the attacks began (requests and ingest included)",
        first_alert_after.as_secs_f64()
    );

    // No secret anywhere the alerts went.
    let secrets = [PASSWORD, API_KEY, HMAC_SECRET, expired.as_str()];
    let mut outputs = vec![
        ("alerts", listed.clone()),
        ("alertmanager", serde_json::to_string(&seen_by_am)?),
        ("hub stderr", hub.stderr()),
    ];
    outputs.extend(
        nats_alerts
            .lock()
            .expect("lock")
            .iter()
            .map(|m| ("nats", m.payload.clone())),
    );
    outputs.extend(
        hooked
            .lock()
            .expect("lock")
            .iter()
            .map(|b| ("webhook", b.clone())),
    );
    for (what, text) in &outputs {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret in {what}");
        }
    }
    let rules: BTreeSet<&str> = alerts.iter().filter_map(|a| a["rule"].as_str()).collect();
    eprintln!("detections: rules that fired: {rules:?}");
    drop(tracer);
    Ok(())
}

/// `tracer-hub rules` checks the files as `serve` reads them and lists what they give;
/// a bad edit is the error `serve` would stop with, before any hub restarts with it.
#[test]
fn the_rules_command_lists_the_configured_rules_and_refuses_a_bad_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let detections = dir.path().join("detections.toml");
    let sigma = dir.path().join("sigma.yml");
    std::fs::write(
        &detections,
        "[rules.volume]\nenabled = false\n[rules.scraping]\ndistinct = 40\n",
    )?;
    std::fs::write(&sigma, SIGMA_RULES)?;
    let (detections, sigma) = (
        detections.to_str().context("temp path")?,
        sigma.to_str().context("temp path")?,
    );
    let listing: Value = serde_json::from_str(&hub::ok(&[
        "rules",
        "--detections",
        detections,
        "--rules",
        sigma,
        "--format",
        "json",
    ])?)?;
    assert_eq!(listing["learning"], "7days");
    let listed = listing["rules"].as_array().context("no rules listed")?;
    let rule = |id: &str| {
        listed
            .iter()
            .find(|l| l["rule"] == id)
            .ok_or_else(|| anyhow!("{id} not listed: {listed:?}"))
    };
    assert_eq!(rule("volume")?["runs"], false);
    assert_eq!(rule("scraping")?["settings"]["distinct"], 40);
    assert_eq!(rule("chain_gap")?["runs"], true);
    let traversal = rule("sigma.web-path-traversal")?;
    assert_eq!(traversal["severity"], "high");
    assert_eq!(traversal["source"], sigma);
    let table = hub::ok(&["rules", "--detections", detections, "--rules", sigma])?;
    assert!(
        table.starts_with("learning 7days,") && table.contains("08:00-18:00 UTC"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("volume ") && l.contains(" no ")),
        "{table}"
    );

    std::fs::write(detections, "[rules.volume]\nbucket = \"soon\"\n")?;
    let bad = hub::run(&["rules", "--detections", detections])?;
    assert!(
        !bad.ok,
        "a bad detections file was accepted:\n{}",
        bad.stdout
    );
    assert!(
        bad.stderr.contains("detections.toml:2:10") && bad.stderr.contains("rules.volume.bucket"),
        "{}",
        bad.stderr
    );
    std::fs::write(
        sigma,
        "title: no detection\nlogsource:\n  category: webserver\n",
    )?;
    let bad = hub::run(&["rules", "--rules", sigma])?;
    assert!(!bad.ok, "a bad Sigma file was accepted:\n{}", bad.stdout);
    assert!(bad.stderr.contains("sigma.yml"), "{}", bad.stderr);
    Ok(())
}
