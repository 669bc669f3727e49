//! Identity fixtures: signing keys made by the openssl CLI, JWTs signed with them, and a
//! local OIDC issuer serving discovery and a JWKS that a test can rotate.

use anyhow::{Context, Result, bail};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A private key with the algorithm it signs with and its `kid`.
pub struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    key: EncodingKey,
}

impl SigningKey {
    /// A fresh key for `alg` (RS*, PS*, ES256, ES384 or EdDSA), generated into `dir`.
    pub fn generate(alg: Algorithm, kid: &str, dir: &Path) -> Result<Self> {
        let (args, kind): (&[&str], _) = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => (
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                'r',
            ),
            Algorithm::ES256 => (
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                'e',
            ),
            Algorithm::ES384 => (
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
                'e',
            ),
            Algorithm::EdDSA => (&["-algorithm", "ED25519"], 'd'),
            other => bail!("{other:?} is not an asymmetric algorithm"),
        };
        let path = dir.join(format!("{kid}.pem"));
        let status = Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .arg("-out")
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .context("running openssl genpkey")?;
        if !status.success() {
            bail!("openssl genpkey {args:?} failed: {status}");
        }
        let pem = std::fs::read(&path)?;
        let key = match kind {
            'r' => EncodingKey::from_rsa_pem(&pem)?,
            'e' => EncodingKey::from_ec_pem(&pem)?,
            _ => EncodingKey::from_ed_pem(&pem)?,
        };
        Ok(Self {
            alg,
            kid: kid.to_owned(),
            key,
        })
    }

    /// An HS256 key with `secret`.
    pub fn hmac(secret: &[u8]) -> Self {
        Self {
            alg: Algorithm::HS256,
            kid: String::new(),
            key: EncodingKey::from_secret(secret),
        }
    }

    /// The public JWK, with `kid` and `alg`.
    pub fn jwk(&self) -> Result<Jwk> {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg)?;
        jwk.common.key_id = Some(self.kid.clone());
        Ok(jwk)
    }

    /// A compact JWT of `claims`, with this key's `kid` (none for HMAC keys).
    pub fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = Header::new(self.alg);
        header.kid = (!self.kid.is_empty()).then(|| self.kid.clone());
        Ok(encode(&header, claims, &self.key)?)
    }
}

/// `{"keys": [...]}` for `keys`.
pub fn jwks(keys: &[&SigningKey]) -> Result<String> {
    let set = JwkSet {
        keys: keys.iter().map(|k| k.jwk()).collect::<Result<_>>()?,
    };
    Ok(serde_json::to_string(&set)?)
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An OIDC issuer on 127.0.0.1: `/.well-known/openid-configuration` and `/jwks`.
/// Lives until dropped (its thread stops accepting then).
pub struct OidcIssuer {
    pub url: String,
    jwks: Arc<Mutex<String>>,
    jwks_fetches: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl OidcIssuer {
    pub fn start(jwks: String) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let issuer = Self {
            url: url.clone(),
            jwks: Arc::new(Mutex::new(jwks)),
            jwks_fetches: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (document, fetches, stop) = (
            Arc::clone(&issuer.jwks),
            Arc::clone(&issuer.jwks_fetches),
            Arc::clone(&issuer.stop),
        );
        listener.set_nonblocking(true)?;
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = answer(stream, &url, &document, &fetches);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(issuer)
    }

    /// Serves `jwks` from now on (a key rotation).
    pub fn rotate(&self, jwks: String) {
        *self.jwks.lock().unwrap_or_else(|e| e.into_inner()) = jwks;
    }

    pub fn jwks_fetches(&self) -> u64 {
        self.jwks_fetches.load(Ordering::Relaxed)
    }
}

impl Drop for OidcIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(
    stream: std::net::TcpStream,
    base: &str,
    jwks: &Mutex<String>,
    fetches: &AtomicU64,
) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/.well-known/openid-configuration" => (
            "200 OK",
            serde_json::json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string(),
        ),
        "/jwks" => {
            fetches.fetch_add(1, Ordering::Relaxed);
            (
                "200 OK",
                jwks.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            )
        }
        _ => ("404 Not Found", String::new()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

/// A listener that accepts connections and never answers: an issuer that hangs.
pub struct SilentIssuer {
    pub url: String,
    _listener: TcpListener,
}

impl SilentIssuer {
    pub fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        Ok(Self {
            url: format!("http://{}", listener.local_addr()?),
            _listener: listener,
        })
    }
}
