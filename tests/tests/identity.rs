//! Identity end to end: real servers, real clients, the real eBPF path; JWTs signed here
//! with RSA, EC, Ed25519 and HMAC keys, a local OIDC issuer, proxies, and a search of
//! every output for the secrets sent.

use anyhow::Result;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tests::clients::{RawConn, curl, url};
use tests::identity::{OidcIssuer, SigningKey, SilentIssuer, jwks, unix_now};
use tests::ports::free_port;
use tests::record::RecordExt;
use tests::servers::ScriptServer;
use tests::tracer::{Tracer, TracerRun};

const HMAC_SECRET: &str = "hs256-S3CRET-shared-key";

/// Writes `toml` (with a fingerprint secret in `dir`) and returns its path.
fn config(dir: &Path, toml: &str) -> Result<String> {
    let path = dir.join("tracer.toml");
    let secret = dir.join("fingerprint.key");
    let text = format!(
        "[identity]\nfingerprint_secret_file = {:?}\n{toml}",
        secret.display().to_string()
    );
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

fn start(port: u16, config: &str) -> Result<Tracer> {
    Tracer::start_with_args(&[port], &["--config", config], &[])
}

/// `curl -H Authorization: Bearer TOKEN` on `/case/NAME`.
fn bearer(port: u16, case: &str, token: &str) -> Result<()> {
    curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &url(port, &format!("/case/{case}")),
    ])?;
    Ok(())
}

fn by_case<'a>(run: &'a TracerRun, case: &str) -> &'a Value {
    let path = format!("/case/{case}");
    let found: Vec<&Value> = run
        .records
        .iter()
        .filter(|r| r.get("url.path").and_then(Value::as_str) == Some(path.as_str()))
        .collect();
    match found.last() {
        Some(r) => r,
        None => panic!("no record for {path}; records: {:#?}", run.records),
    }
}

fn assert_verified(r: &Value) {
    assert_eq!(r["audit.auth.verified"], true, "{r}");
    assert!(!r.has("audit.auth.failure_reason"), "{r}");
}

fn assert_reason(r: &Value, reason: &str) {
    assert_eq!(r["audit.auth.verified"], false, "{r}");
    assert_eq!(r.str_field("audit.auth.failure_reason"), reason);
}

fn claims(sub: &str) -> Value {
    json!({
        "sub": sub, "preferred_username": format!("{sub}-name"), "email": format!("{sub}@example.com"),
        "iss": "https://issuer.test", "aud": "api", "azp": "web-client", "jti": format!("jti-{sub}"),
        "exp": unix_now() + 600, "roles": ["reader"],
    })
}

#[test]
fn jwts_of_every_algorithm_verify_against_a_jwks_file_and_hmac_secret() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let algs = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];
    let keys: Vec<SigningKey> = algs
        .iter()
        .map(|alg| SigningKey::generate(*alg, &format!("{alg:?}"), dir.path()))
        .collect::<Result<_>>()?;
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks(&keys.iter().collect::<Vec<_>>())?)?;
    let hmac_path = dir.path().join("hs256.secret");
    std::fs::write(&hmac_path, format!("{HMAC_SECRET}\n"))?;
    let config = config(
        dir.path(),
        &format!(
            "[identity.jwt]\njwks_file = {:?}\nhmac_secret_file = {:?}\nissuers = [\"https://issuer.test\"]\naudiences = [\"api\"]\nleeway_seconds = 5\n",
            jwks_path.display().to_string(),
            hmac_path.display().to_string()
        ),
    )?;
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let tracer = start(port, &config)?;
    let hmac = SigningKey::hmac(HMAC_SECRET.as_bytes());
    for key in keys.iter().chain([&hmac]) {
        bearer(
            port,
            &format!("{:?}", key.alg),
            &key.sign(&claims("alice"))?,
        )?;
    }
    let rs = &keys[0];
    let mut expired = claims("old");
    expired["exp"] = json!(unix_now() - 3600);
    bearer(port, "expired", &rs.sign(&expired)?)?;
    let mut early = claims("early");
    early["nbf"] = json!(unix_now() + 3600);
    bearer(port, "not_yet_valid", &rs.sign(&early)?)?;
    let good = rs.sign(&claims("alice"))?;
    let parts: Vec<&str> = good.split('.').collect();
    let forged_claims = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        claims("admin").to_string(),
    );
    bearer(
        port,
        "tampered",
        &format!("{}.{forged_claims}.{}", parts[0], parts[2]),
    )?;
    let stranger = SigningKey::generate(Algorithm::RS256, "not-published", dir.path())?;
    bearer(port, "unknown_key", &stranger.sign(&claims("x"))?)?;
    let mut other_aud = claims("aud");
    other_aud["aud"] = json!("other-api");
    bearer(port, "wrong_audience", &rs.sign(&other_aud)?)?;
    let mut other_iss = claims("iss");
    other_iss["iss"] = json!("https://evil.test");
    bearer(port, "untrusted_issuer", &rs.sign(&other_iss)?)?;
    bearer(port, "malformed", "not-a-jwt-S3CRET")?;
    let run = tracer.stop()?;

    for key in keys.iter().chain([&hmac]) {
        let r = by_case(&run, &format!("{:?}", key.alg));
        assert_verified(r);
        assert_eq!(r.str_field("user.id"), "alice");
        assert_eq!(r.str_field("user.name"), "alice-name");
        assert_eq!(r.str_field("user.email"), "alice@example.com");
        assert_eq!(r["user.roles"], json!(["reader"]));
        assert_eq!(r.str_field("audit.auth.method"), "bearer");
        assert_eq!(r.str_field("audit.auth.issuer"), "https://issuer.test");
        assert_eq!(r["audit.auth.audience"], json!(["api"]));
        assert_eq!(r.str_field("audit.auth.client_id"), "web-client");
        assert_eq!(r.str_field("audit.auth.token_id"), "jti-alice");
        r.str_field("audit.auth.expires_at");
    }
    for reason in [
        "expired",
        "not_yet_valid",
        "unknown_key",
        "wrong_audience",
        "untrusted_issuer",
        "malformed",
    ] {
        assert_reason(by_case(&run, reason), reason);
    }
    let tampered = by_case(&run, "tampered");
    assert_reason(tampered, "bad_signature");
    assert_eq!(
        tampered.str_field("user.id"),
        "admin",
        "claims are kept, marked"
    );
    assert!(!run.stdout.contains(parts[2]), "a JWT signature leaked");
    Ok(())
}

#[test]
fn basic_api_keys_cookies_and_none_without_verification() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config(dir.path(), "")?;
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let mut fingerprints = Vec::new();
    // Two tracer runs: a fingerprint must survive a restart.
    for round in 0..2 {
        let tracer = start(port, &config)?;
        let unsigned = SigningKey::hmac(b"irrelevant").sign(&claims("carol"))?;
        bearer(port, "unverified", &unsigned)?;
        curl(&["-u", "bob:S3CRET-PASSWORD", &url(port, "/case/basic")])?;
        curl(&[
            "-H",
            "X-API-Key: K3Y-S3CRET",
            &url(port, "/case/key-header"),
        ])?;
        curl(&[&url(port, "/case/key-query?api_key=K3Y-S3CRET&page=2")])?;
        curl(&[
            "-b",
            "theme=dark; session=C00KIE-S3CRET",
            &url(port, "/case/cookie"),
        ])?;
        curl(&[&url(port, "/case/none")])?;
        let run = tracer.stop()?;

        let r = by_case(&run, "unverified");
        assert_reason(r, "unverified");
        assert_eq!(r.str_field("user.id"), "carol");
        let r = by_case(&run, "basic");
        assert_eq!(r.str_field("user.name"), "bob");
        assert_eq!(r.str_field("audit.auth.method"), "basic");
        let header = by_case(&run, "key-header");
        let query = by_case(&run, "key-query");
        assert_eq!(header.str_field("audit.auth.method"), "api_key");
        assert_eq!(query.str_field("audit.auth.method"), "api_key");
        let fp = header.str_field("audit.credential.fingerprint");
        assert_eq!(fp.len(), 16);
        assert_eq!(query.str_field("audit.credential.fingerprint"), fp);
        assert_eq!(query.str_field("url.query"), "api_key=REDACTED&page=2");
        let cookie = by_case(&run, "cookie");
        assert_eq!(cookie.str_field("audit.auth.method"), "session");
        assert_eq!(cookie.str_field("audit.session.fingerprint").len(), 16);
        let none = by_case(&run, "none");
        assert_eq!(none.str_field("audit.auth.method"), "none");
        assert!(!none.has("user.name") && !none.has("audit.credential.fingerprint"));
        assert!(!run.stdout.contains("S3CRET") && !run.stderr.contains("S3CRET"));
        fingerprints.push((
            fp.to_owned(),
            cookie.str_field("audit.session.fingerprint").to_owned(),
        ));
        if round == 0 {
            let mode = std::fs::metadata(dir.path().join("fingerprint.key"))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
    assert_eq!(fingerprints[0], fingerprints[1]);
    Ok(())
}

#[test]
fn proxy_headers_count_only_from_trusted_peers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config(
        dir.path(),
        "[identity.proxy]\ntrusted_cidrs = [\"127.0.0.2/32\", \"10.0.0.0/8\"]\n",
    )?;
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let tracer = start(port, &config)?;
    let identity_headers = [
        "-H",
        "X-Forwarded-User: dave",
        "-H",
        "X-Forwarded-Email: dave@example.com",
        "-H",
        "X-Forwarded-For: 203.0.113.50, 198.51.100.7, 10.1.2.3",
    ];
    // From the trusted proxy address...
    let trusted_url = url(port, "/case/trusted");
    let mut args = vec!["--interface", "127.0.0.2"];
    args.extend(identity_headers);
    args.push(&trusted_url);
    curl(&args)?;
    let forwarded_url = url(port, "/case/forwarded");
    curl(&[
        "--interface",
        "127.0.0.2",
        "-H",
        "Forwarded: for=192.0.2.60;proto=http, for=\"[2001:db8::17]:4711\", for=10.0.0.9",
        &forwarded_url,
    ])?;
    // ... and from an untrusted one.
    let untrusted_url = url(port, "/case/untrusted");
    let mut args: Vec<&str> = identity_headers.to_vec();
    args.push(&untrusted_url);
    curl(&args)?;
    let run = tracer.stop()?;

    let r = by_case(&run, "trusted");
    assert_eq!(r.str_field("user.name"), "dave");
    assert_eq!(r.str_field("user.email"), "dave@example.com");
    assert_eq!(r.str_field("audit.auth.method"), "proxy");
    assert_eq!(r.str_field("client.address"), "198.51.100.7");
    assert!(!r.has("client.port"), "{r}");
    assert_eq!(r.str_field("network.peer.address"), "127.0.0.2");
    assert!(!r.has("audit.auth.untrusted_header"));

    let r = by_case(&run, "forwarded");
    assert_eq!(r.str_field("client.address"), "2001:db8::17");
    assert_eq!(r.u64_field("client.port"), 4711);

    let r = by_case(&run, "untrusted");
    assert!(!r.has("user.name") && !r.has("user.email"), "{r}");
    assert_eq!(r.str_field("audit.auth.method"), "none");
    assert_eq!(r.str_field("client.address"), "127.0.0.1");
    assert_eq!(r["client.port"], r["network.peer.port"]);
    assert_eq!(
        r["audit.auth.untrusted_header"],
        json!([
            "x-forwarded-user: dave",
            "x-forwarded-email: dave@example.com",
            "x-forwarded-for: 203.0.113.50, 198.51.100.7, 10.1.2.3"
        ])
    );
    Ok(())
}

#[test]
fn oidc_discovery_follows_key_rotation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let old = SigningKey::generate(Algorithm::ES256, "old", dir.path())?;
    let new = SigningKey::generate(Algorithm::RS256, "new", dir.path())?;
    let issuer = OidcIssuer::start(jwks(&[&old])?)?;
    let config = config(
        dir.path(),
        &format!(
            "[identity.jwt]\noidc_issuer = {:?}\noidc_min_refetch_seconds = 1\noidc_timeout_ms = 2000\n",
            issuer.url
        ),
    )?;
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let tracer = start(port, &config)?;
    let mut c = claims("erin");
    c["iss"] = json!(issuer.url);
    bearer(port, "old-key", &old.sign(&c)?)?;
    issuer.rotate(jwks(&[&old, &new])?);
    let token = new.sign(&c)?;
    // The first use of the new kid asks for a refetch; a later one is verified.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut attempt = 0;
    loop {
        bearer(port, &format!("new-key-{attempt}"), &token)?;
        if issuer.jwks_fetches() >= 2 || Instant::now() > deadline {
            break;
        }
        attempt += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(300));
    bearer(port, "new-key-after", &token)?;
    let run = tracer.stop()?;

    assert_verified(by_case(&run, "old-key"));
    assert_reason(by_case(&run, "new-key-0"), "unknown_key");
    assert_verified(by_case(&run, "new-key-after"));
    assert!(issuer.jwks_fetches() >= 2);
    Ok(())
}

#[test]
fn a_down_or_hanging_issuer_never_stalls_the_pipeline() -> Result<()> {
    const REQUESTS: usize = 100;
    let dir = tempfile::tempdir()?;
    let silent = SilentIssuer::start()?;
    let down = format!("http://127.0.0.1:{}", free_port());
    let key = SigningKey::generate(Algorithm::EdDSA, "k", dir.path())?;
    for (name, issuer) in [("hanging", silent.url.as_str()), ("down", down.as_str())] {
        let config = config(
            dir.path(),
            &format!(
                "[identity.jwt]\noidc_issuer = {issuer:?}\noidc_timeout_ms = 700\noidc_min_refetch_seconds = 0\n"
            ),
        )?;
        let port = free_port();
        let _server = ScriptServer::start(port)?;
        let tracer = start(port, &config)?;
        let token = key.sign(&claims("frank"))?;
        // Every request names an unknown key and asks for a refetch. A pipeline that
        // waited for the issuer would need 100 x 700 ms to write these records, beyond
        // the harness's exit timeout: a stall fails as a hang, with no timing threshold.
        for i in 0..REQUESTS {
            bearer(port, &format!("{name}-{i}"), &token)?;
        }
        let run = tracer.stop()?;
        assert_eq!(run.records.len(), REQUESTS, "{name}: {:#?}", run.records);
        for i in 0..REQUESTS {
            let r = by_case(&run, &format!("{name}-{i}"));
            assert_reason(r, "unknown_key");
            assert_eq!(r.str_field("user.id"), "frank");
        }
        assert!(
            run.stderr.contains("fetching OIDC keys failed"),
            "{name}: {}",
            run.stderr
        );
    }
    Ok(())
}

#[test]
fn secrets_appear_in_no_output_even_with_trace_logging() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let hmac_path = dir.path().join("hs.secret");
    std::fs::write(&hmac_path, HMAC_SECRET)?;
    let config = config(
        dir.path(),
        &format!(
            "[identity.jwt]\nhmac_secret_file = {:?}\n[identity.proxy]\ntrusted_cidrs = [\"127.0.0.0/8\"]\n",
            hmac_path.display().to_string()
        ),
    )?;
    let port = free_port();
    let _server = ScriptServer::start(port)?;
    let tracer =
        Tracer::start_with_args(&[port], &["--config", &config], &[("RUST_LOG", "trace")])?;
    let jwt = SigningKey::hmac(HMAC_SECRET.as_bytes()).sign(&claims("gina"))?;
    let signature = jwt.rsplit('.').next().unwrap_or_default().to_owned();
    let mut secrets = vec![
        jwt.clone(),
        signature,
        HMAC_SECRET.to_owned(),
        "opaque-S3CRET-token".to_owned(),
        "PASSW0RD-S3CRET".to_owned(),
        "K3Y-S3CRET".to_owned(),
        "C00KIE-S3CRET".to_owned(),
    ];
    bearer(port, "jwt", &jwt)?;
    bearer(port, "opaque", "opaque-S3CRET-token")?;
    curl(&["-u", "gina:PASSW0RD-S3CRET", &url(port, "/case/basic")])?;
    curl(&["-H", "X-API-Key: K3Y-S3CRET", &url(port, "/case/key")])?;
    curl(&[
        "-H",
        "Cookie: session=C00KIE-S3CRET; other=C00KIE-S3CRET-2",
        "-H",
        "X-Forwarded-User: gina",
        &url(port, "/case/cookie"),
    ])?;
    let params = [
        "access_token",
        "token",
        "api_key",
        "key",
        "password",
        "sig",
        "signature",
        "X-Amz-Signature",
    ];
    let query: Vec<String> = params.iter().map(|p| format!("{p}=Q-{p}-S3CRET")).collect();
    secrets.extend(params.iter().map(|p| format!("Q-{p}-S3CRET")));
    curl(&[&url(port, &format!("/case/query?{}", query.join("&")))])?;
    // Names caught by pattern, in the spellings applications use.
    let pattern_params = [
        "accessToken",
        "authToken",
        "auth_token",
        "private_token",
        "refresh-token",
        "pwd",
        "pass",
        "passphrase",
        "otp",
        "pin",
        "user[password]",
        "credentials",
        "client_assertion",
        "assertion",
        "jwt",
        "auth",
        "AWSAccessKeyId",
        "apikey",
        "session",
        "sessionid",
        "code",
    ];
    let query: Vec<String> = pattern_params
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{p}=P{i}-S3CRET"))
        .chain(["page=2".to_owned()])
        .collect();
    curl(&[
        "--globoff",
        &url(port, &format!("/case/pattern?{}", query.join("&"))),
    ])?;
    // API keys sent as the Basic user name.
    let token_users = [
        ("stripe", "sk_live_S3CRET4eC39HqLyjWDarjt:"),
        ("github", "ghp_S3CRET16C7e42F292c6912E7710c8:x-oauth-basic"),
        ("slack", "xoxb-S3CRET-1234567890-AbCdEf:"),
        ("aws", "AKIAS3CRET0123456789:x"),
        ("jwt", "eyJS3CRET.eyJzdWIiOiJ4In0.c2ln:"),
        ("random", "Zq8S3CRETr2LmX0vTe7KpW3nYb:"),
    ];
    for (case, user) in token_users {
        curl(&["-u", user, &url(port, &format!("/case/token-{case}"))])?;
    }
    curl(&[
        "-H",
        "Host: hostuser:HOST-S3CRET@host.example:8080",
        &url(port, "/case/host"),
    ])?;
    // Secrets in paths: token links, a session id path parameter, and the same links
    // disguised by escapes and dot segments (sent as they are, hence --path-as-is).
    for path in [
        "/reset/RESET-S3CRET",
        "/password-reset/PWRESET-S3CRET",
        "/invite/INVITE-S3CRET/accept",
        "/magic-link/MAGIC-S3CRET",
        "/app;jsessionid=JSESSION-S3CRET/cart",
        "/x/../%72eset/DOT-S3CRET",
        "//invite/SLASH-S3CRET",
        "/case/%61dmin",
    ] {
        curl(&["--path-as-is", &url(port, path)])?;
    }
    // Line separators and bidi overrides are escaped, never written raw.
    curl(&[
        "-A",
        "agent\u{2028}{\"forged\":1}\u{202e}txt.exe",
        &url(port, "/case/agent"),
    ])?;
    // Heads a reset cut off: whole header lines are read (fingerprinted), the raw start
    // of the request line is written redacted.
    for head in [
        &b"GET /case/cut-head?access_token=CUT-Q-S3CRET HTTP/1.1\r\nHost: a\r\n\
           Authorization: Bearer CUT-BEARER-S3CRET\r\nCookie: session=CUT-COOKIE-S3CRET\r\n"[..],
        b"GET /reset/CUTLINE-S3CRET",
    ] {
        let mut conn = RawConn::connect(("127.0.0.1", port))?;
        conn.send(head)?;
        // Read by the server before the reset, which would discard it unread.
        conn.wait_until_read()?;
        conn.reset()?;
    }
    secrets.extend(
        [
            "CUT-Q-S3CRET",
            "CUT-BEARER-S3CRET",
            "CUT-COOKIE-S3CRET",
            "CUTLINE-S3CRET",
        ]
        .map(str::to_owned),
    );
    // A config check that reads the secret files says nothing of their contents.
    let check = std::process::Command::new(tests::workspace::tracer_bin()?)
        .args(["config", "check", &config])
        .output()?;
    assert!(check.status.success(), "{check:?}");
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 25, "{:#?}", run.records);
    let cut: Vec<&Value> = run
        .records
        .iter()
        .filter(|r| r.str_field("tracer.outcome") == "connection_closed")
        .collect();
    assert_eq!(cut.len(), 2, "{cut:#?}");
    // The server's threads close the two in either order.
    let line_only = |r: &&&Value| {
        r.has("tracer.request.line")
            && r.str_field("tracer.request.line")
                .starts_with("GET /reset/")
    };
    let line = cut
        .iter()
        .find(line_only)
        .expect("the cut request line's record");
    let head = cut
        .iter()
        .find(|r| !line_only(r))
        .expect("the cut head's record");
    assert_eq!(head.str_field("audit.auth.method"), "bearer", "{head}");
    assert!(
        line.str_field("tracer.request.line").contains("REDACTED"),
        "{line}"
    );
    let p = by_case(&run, "pattern");
    let expected: Vec<String> = pattern_params
        .iter()
        .map(|p| format!("{p}=REDACTED"))
        .chain(["page=2".to_owned()])
        .collect();
    assert_eq!(p.str_field("url.query"), expected.join("&"));
    let mut token_fingerprints = Vec::new();
    for (case, _) in token_users {
        let r = by_case(&run, &format!("token-{case}"));
        assert_eq!(r.str_field("audit.auth.method"), "basic", "{case}");
        assert!(!r.has("user.name"), "{case}: {r}");
        token_fingerprints.push(r.str_field("audit.credential.fingerprint").to_owned());
    }
    token_fingerprints.dedup();
    assert_eq!(token_fingerprints.len(), token_users.len());
    assert_eq!(
        by_case(&run, "host").str_field("server.address"),
        "host.example"
    );
    let by_path = |path: &str| {
        run.records
            .iter()
            .find(|r| r.str_field("url.path") == path)
            .unwrap_or_else(|| panic!("no record for {path}: {:#?}", run.records))
    };
    for (path, normalized) in [
        ("/reset/REDACTED", "/reset/REDACTED"),
        ("/password-reset/REDACTED", "/password-reset/REDACTED"),
        ("/invite/REDACTED/accept", "/invite/REDACTED/accept"),
        ("/magic-link/REDACTED", "/magic-link/REDACTED"),
        (
            "/app;jsessionid=REDACTED/cart",
            "/app;jsessionid=REDACTED/cart",
        ),
        ("/x/../%72eset/REDACTED", "/reset/REDACTED"),
        ("//invite/REDACTED", "/invite/REDACTED"),
        ("/case/%61dmin", "/case/admin"),
    ] {
        assert_eq!(
            by_path(path).str_field("url.path.normalized"),
            normalized,
            "{path}"
        );
    }
    let agent = by_case(&run, "agent");
    assert_eq!(
        agent.str_field("user_agent.original"),
        "agent\u{2028}{\"forged\":1}\u{202e}txt.exe",
        "the escapes decode to the characters sent"
    );
    assert!(
        run.stdout
            .contains(r#"agent\u2028{\"forged\":1}\u202etxt.exe"#)
            && !run.stdout.contains('\u{2028}')
            && !run.stdout.contains('\u{202e}'),
        "raw separators or overrides in stdout"
    );
    let q = by_case(&run, "query");
    assert_eq!(
        q.str_field("url.query"),
        params
            .iter()
            .map(|p| format!("{p}=REDACTED"))
            .collect::<Vec<_>>()
            .join("&")
    );
    let outputs = [
        ("stdout", run.stdout.clone()),
        ("stderr", run.stderr.clone()),
        (
            "config check",
            String::from_utf8_lossy(&[check.stdout, check.stderr].concat()).into_owned(),
        ),
    ];
    for (name, text) in &outputs {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{secret:?} reached {name}:\n{text}"
            );
        }
        assert!(!text.contains("S3CRET"), "a secret reached {name}:\n{text}");
    }
    Ok(())
}
