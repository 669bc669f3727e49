use base64::{Engine as _, engine::general_purpose::STANDARD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::{keys::VerifyKey, test_support::head, *};

const SECRET: &[u8] = b"hmac-S3CRET-value";

fn names() -> Names {
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    Names {
        api_key_headers: v(&["X-API-Key"]),
        api_key_query_params: v(&["api_key"]),
        session_cookies: v(&["session"]),
        proxy_user_headers: v(&["X-Forwarded-User"]),
        proxy_email_headers: v(&["X-Forwarded-Email"]),
        role_claims: v(&["roles"]),
    }
}

fn identifier(verify: bool) -> Identifier {
    let verifier = verify.then(|| Verifier {
        keys: Keys::fixed(vec![hmac_key()]),
        policy: Policy::default(),
        leeway: 0,
    });
    Identifier::new(
        names(),
        ProxyTrust::new(vec!["10.0.0.0/8".parse().unwrap()]),
        Fingerprinter::from_secret(b"install-secret"),
        verifier,
    )
}

fn hmac_key() -> VerifyKey {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hs");
    std::fs::write(&path, [SECRET, b"\n"].concat()).unwrap();
    keys::load_hmac_secret(&path).unwrap()
}

fn record(id: &Identity<'_>) -> Value {
    let mut out = b"{\"a\":1".to_vec();
    id.write_json(&mut out);
    out.push(b'}');
    serde_json::from_slice(&out).unwrap()
}

fn run(
    ider: &mut Identifier,
    target: &str,
    headers: &[(&str, &str)],
    peer: &str,
) -> (Value, Option<ForwardedClient>) {
    let h = head(target, headers);
    let query = target.split_once('?').map(|(_, q)| q);
    let id = ider.identify(&h, query, Some(peer.parse().unwrap()));
    (record(&id), id.client)
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

#[test]
fn bearer_claims_without_keys_are_unverified() {
    let token = hs256(&json!({"sub": "u1", "name": "Al", "roles": ["a"]}));
    let auth = format!("Bearer {token}");
    let (r, _) = run(
        &mut identifier(false),
        "/",
        &[("Authorization", &auth)],
        "1.2.3.4",
    );
    assert_eq!(r["user.id"], "u1");
    assert_eq!(r["user.name"], "Al");
    assert_eq!(r["user.roles"], json!(["a"]));
    assert_eq!(r["audit.auth.method"], "bearer");
    assert_eq!(r["audit.auth.verified"], false);
    assert_eq!(r["audit.auth.failure_reason"], "unverified");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!r.to_string().contains(signature));
}

#[test]
fn bearer_verified_then_expired_from_cache() {
    let mut ider = identifier(true);
    let now = unix_now();
    let good = format!("Bearer {}", hs256(&json!({"sub": "u", "exp": now + 100})));
    for _ in 0..2 {
        let (r, _) = run(&mut ider, "/", &[("Authorization", &good)], "1.2.3.4");
        assert_eq!(r["audit.auth.verified"], true, "{r}");
        assert!(r.get("audit.auth.failure_reason").is_none());
    }
    let old = format!("Bearer {}", hs256(&json!({"sub": "u", "exp": now - 100})));
    let (r, _) = run(&mut ider, "/", &[("Authorization", &old)], "1.2.3.4");
    assert_eq!(r["audit.auth.failure_reason"], "expired");
    let (r, _) = run(
        &mut ider,
        "/",
        &[("Authorization", "Bearer opaque-S3CRET")],
        "1.2.3.4",
    );
    assert_eq!(r["audit.auth.failure_reason"], "malformed");
    assert_eq!(
        r["audit.credential.fingerprint"].as_str().unwrap().len(),
        16
    );
    assert!(!r.to_string().contains("S3CRET"));
}

#[test]
fn a_token_as_basic_user_is_a_credential_not_a_name() {
    let mut ider = identifier(false);
    let token = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{token}:x-oauth-basic"))
    );
    let (r, _) = run(&mut ider, "/", &[("Authorization", &basic)], "1.2.3.4");
    assert_eq!(r["audit.auth.method"], "basic");
    assert!(r.get("user.name").is_none(), "{r}");
    // The same key as a header has the same fingerprint.
    let (h, _) = run(&mut ider, "/", &[("x-api-key", token)], "1.2.3.4");
    assert_eq!(
        r["audit.credential.fingerprint"],
        h["audit.credential.fingerprint"]
    );
    assert!(!r.to_string().contains("ghp_"), "{r}");
}

#[test]
fn basic_api_key_cookie_and_none() {
    let mut ider = identifier(false);
    let basic = format!("Basic {}", STANDARD.encode("alice:S3CRET"));
    let (r, _) = run(&mut ider, "/", &[("Authorization", &basic)], "1.2.3.4");
    assert_eq!(r["user.name"], "alice");
    assert_eq!(r["audit.auth.method"], "basic");
    assert!(r.get("audit.auth.verified").is_none());

    let (h, _) = run(&mut ider, "/", &[("x-api-key", "K-S3CRET")], "1.2.3.4");
    let (q, _) = run(&mut ider, "/p?api_key=K-S3CRET", &[], "1.2.3.4");
    assert_eq!(h["audit.auth.method"], "api_key");
    assert_eq!(
        h["audit.credential.fingerprint"],
        q["audit.credential.fingerprint"]
    );

    let (c, _) = run(
        &mut ider,
        "/",
        &[("Cookie", "a=1; session=C-S3CRET")],
        "1.2.3.4",
    );
    assert_eq!(c["audit.auth.method"], "session");
    assert_eq!(c["audit.session.fingerprint"].as_str().unwrap().len(), 16);

    let (n, _) = run(&mut ider, "/", &[], "1.2.3.4");
    assert_eq!(n["audit.auth.method"], "none");
    for r in [&r, &h, &q, &c, &n] {
        assert!(!r.to_string().contains("S3CRET"), "{r}");
    }
}

#[test]
fn proxy_headers_count_only_from_trusted_peers() {
    let mut ider = identifier(false);
    let headers = [
        ("X-Forwarded-User", "bob"),
        ("X-Forwarded-Email", "bob@example.com"),
        ("X-Forwarded-For", "203.0.113.9, 10.0.0.7"),
    ];
    let (r, client) = run(&mut ider, "/", &headers, "10.0.0.1");
    assert_eq!(r["user.name"], "bob");
    assert_eq!(r["user.email"], "bob@example.com");
    assert_eq!(r["audit.auth.method"], "proxy");
    assert_eq!(
        client,
        Some(ForwardedClient::Address {
            ip: "203.0.113.9".parse().unwrap(),
            port: None
        })
    );
    let (r, client) = run(&mut ider, "/", &headers, "192.0.2.1");
    assert!(r.get("user.name").is_none());
    assert_eq!(r["audit.auth.method"], "none");
    assert_eq!(client, None);
    assert_eq!(
        r["audit.auth.untrusted_header"],
        json!([
            "x-forwarded-user: bob",
            "x-forwarded-email: bob@example.com",
            "x-forwarded-for: 203.0.113.9, 10.0.0.7"
        ])
    );
}

#[test]
fn every_listed_algorithm_verifies_through_jwks() {
    // Fresh keys from the openssl CLI, as an operator would make them.
    let dir = tempfile::tempdir().unwrap();
    let pem = |args: &[&str], name: &str| -> Vec<u8> {
        let path = dir.path().join(name);
        let status = std::process::Command::new("openssl")
            .args(args)
            .arg("-out")
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(&path).unwrap()
    };
    let rsa = pem(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        "rsa.pem",
    );
    let p256 = pem(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
        "p256.pem",
    );
    let p384 = pem(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
        ],
        "p384.pem",
    );
    let ed = pem(&["genpkey", "-algorithm", "ED25519"], "ed.pem");
    let cases = [
        (Algorithm::RS256, EncodingKey::from_rsa_pem(&rsa).unwrap()),
        (Algorithm::RS384, EncodingKey::from_rsa_pem(&rsa).unwrap()),
        (Algorithm::RS512, EncodingKey::from_rsa_pem(&rsa).unwrap()),
        (Algorithm::PS256, EncodingKey::from_rsa_pem(&rsa).unwrap()),
        (Algorithm::ES256, EncodingKey::from_ec_pem(&p256).unwrap()),
        (Algorithm::ES384, EncodingKey::from_ec_pem(&p384).unwrap()),
        (Algorithm::EdDSA, EncodingKey::from_ed_pem(&ed).unwrap()),
    ];
    let mut jwks = Vec::new();
    for (i, (alg, key)) in cases.iter().enumerate() {
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(key, *alg).unwrap();
        jwk.common.key_id = Some(format!("k{i}"));
        jwks.push(jwk);
    }
    let set = jsonwebtoken::jwk::JwkSet { keys: jwks };
    let keys = keys::KeySet::from_jwks(&set);
    assert_eq!(keys.len(), cases.len());
    let mut ider = Identifier::new(
        names(),
        ProxyTrust::default(),
        Fingerprinter::from_secret(b"x"),
        Some(Verifier {
            keys: Keys::fixed(keys),
            policy: Policy::default(),
            leeway: 0,
        }),
    );
    for (i, (alg, key)) in cases.iter().enumerate() {
        let mut header = Header::new(*alg);
        header.kid = Some(format!("k{i}"));
        let token = encode(&header, &json!({"sub": format!("{alg:?}")}), key).unwrap();
        let auth = format!("Bearer {token}");
        let (r, _) = run(&mut ider, "/", &[("Authorization", &auth)], "1.2.3.4");
        assert_eq!(r["audit.auth.verified"], true, "{alg:?}: {r}");
        // The same claims under another key's kid fail.
        header.kid = Some(format!("k{}", (i + 1) % cases.len()));
        let token = encode(&header, &json!({"sub": "x"}), key).unwrap();
        let auth = format!("Bearer {token}");
        let (r, _) = run(&mut ider, "/", &[("Authorization", &auth)], "1.2.3.4");
        assert_eq!(r["audit.auth.verified"], false, "{alg:?}: {r}");
    }
    // The HMAC secret's Debug never shows it.
    assert!(!format!("{:?}", hmac_key()).contains("S3CRET"));
}

/// `cargo test --release -p tracer --lib identity::tests::cost -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn cost_per_identify_call() {
    let mut ider = identifier(true);
    let token = format!(
        "Bearer {}",
        hs256(&json!({"sub": "u", "name": "n", "roles": ["a", "b"], "exp": unix_now() + 600}))
    );
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("no credential", vec![("Host", "x"), ("User-Agent", "curl")]),
        (
            "cached bearer JWT",
            vec![("Host", "x"), ("Authorization", &token)],
        ),
        ("api key", vec![("Host", "x"), ("X-API-Key", "k-123456789")]),
        (
            "trusted proxy + XFF + cookie",
            vec![
                ("X-Forwarded-For", "203.0.113.9, 10.0.0.7"),
                ("X-Forwarded-User", "bob"),
                ("Cookie", "a=1; session=abcdef"),
            ],
        ),
    ];
    for (name, headers) in &cases {
        let h = head("/p?q=1", headers);
        let peer = Some("10.0.0.1".parse().unwrap());
        let mut out = Vec::with_capacity(1024);
        let n = 200_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            out.clear();
            let id = ider.identify(&h, Some("q=1"), peer);
            id.write_json(&mut out);
        }
        let per = start.elapsed().as_nanos() / n;
        println!("{name}: {per} ns per identify + write_json");
    }
}
