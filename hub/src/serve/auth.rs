//! Who may use the dashboard and the API: a password checked against an argon2 hash,
//! or a token, both read from files; there is no default. A login gives a session
//! cookie (`HttpOnly`, `SameSite=Strict`, `Secure` behind TLS); the API also takes
//! the token as `Authorization: Bearer`. Failed logins are limited per client address.
use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use argon2::{Argon2, PasswordHash, PasswordVerifier as _};
use sha2::{Digest as _, Sha256};

pub const COOKIE: &str = "tracer_hub_session";
/// A session lasts a working day.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed per client address in [`FAILURE_WINDOW`].
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Sessions held at once; the oldest goes first.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "the dashboard needs a login and there is no default password: give --password-hash-file FILE (an argon2 hash from `tracer-hub password-hash`) or --token-file FILE"
    )]
    Missing,
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
}

/// What proves a user may log in.
pub enum Secret {
    /// An argon2 PHC string.
    PasswordHash(String),
    /// A token; kept as its SHA-256 so comparison time says nothing about it.
    Token([u8; 32]),
}

impl Secret {
    pub fn from_files(hash: Option<&Path>, token: Option<&Path>) -> Result<Self, AuthConfigError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map(|t| t.trim().to_owned())
                .map_err(|e| AuthConfigError::File {
                    path: path.to_owned(),
                    detail: e.to_string(),
                })
        };
        match (hash, token) {
            (Some(path), _) => {
                let hash = read(path)?;
                PasswordHash::new(&hash).map_err(|e| AuthConfigError::File {
                    path: path.to_owned(),
                    detail: format!(
                        "not an argon2 PHC hash ({e}); make one with `tracer-hub password-hash`"
                    ),
                })?;
                Ok(Secret::PasswordHash(hash))
            }
            (None, Some(path)) => {
                let token = read(path)?;
                if token.len() < 16 {
                    return Err(AuthConfigError::File {
                        path: path.to_owned(),
                        detail: "a token needs at least 16 characters".to_owned(),
                    });
                }
                Ok(Secret::Token(Sha256::digest(token.as_bytes()).into()))
            }
            (None, None) => Err(AuthConfigError::Missing),
        }
    }

    fn accepts(&self, attempt: &str) -> bool {
        match self {
            Secret::PasswordHash(hash) => PasswordHash::new(hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(attempt.as_bytes(), &h)
                    .is_ok()
            }),
            Secret::Token(digest) => {
                let attempt: [u8; 32] = Sha256::digest(attempt.as_bytes()).into();
                // Equal-length digests compared without an early exit.
                attempt
                    .iter()
                    .zip(digest)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
        }
    }

    /// Tokens are also accepted as bearer credentials by the API; passwords are not.
    fn accepts_bearer(&self, bearer: &str) -> bool {
        matches!(self, Secret::Token(_)) && self.accepts(bearer)
    }
}

pub enum Login {
    Session(String),
    Refused,
    TooMany,
}

pub struct Auth {
    secret: Secret,
    sessions: Mutex<HashMap<String, Instant>>,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl Auth {
    pub fn new(secret: Secret) -> Self {
        Self {
            secret,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn login(&self, client: IpAddr, password: &str) -> Login {
        let now = Instant::now();
        {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let recent = failures.entry(client).or_default();
            recent.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
            if recent.len() >= MAX_FAILURES {
                return Login::TooMany;
            }
        }
        if !self.secret.accepts(password) {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            failures.entry(client).or_default().push(now);
            return Login::Refused;
        }
        let id = match tracer_audit::secret_file::random_bytes(32) {
            Ok(bytes) => hex::encode(bytes),
            Err(_) => return Login::Refused,
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, expiry| *expiry > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), now + SESSION_LIFETIME);
        Login::Session(id)
    }

    pub fn logout(&self, session: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session);
    }

    pub fn session_valid(&self, session: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(session)
            .is_some_and(|expiry| *expiry > Instant::now())
    }

    pub fn bearer_valid(&self, token: &str) -> bool {
        self.secret.accepts_bearer(token)
    }
}

/// `tracer-hub password-hash`: an argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let salt_bytes = tracer_audit::secret_file::random_bytes(16)?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_accepts_its_password_only_and_failures_are_limited() {
        let auth = Auth::new(Secret::PasswordHash(
            hash_password("correct horse").unwrap(),
        ));
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(matches!(auth.login(client, "wrong"), Login::Refused));
        let Login::Session(id) = auth.login(client, "correct horse") else {
            panic!("refused the right password");
        };
        assert!(auth.session_valid(&id));
        assert!(
            !auth.bearer_valid("correct horse"),
            "a password is not a bearer token"
        );
        auth.logout(&id);
        assert!(!auth.session_valid(&id));
        for _ in 0..4 {
            assert!(matches!(auth.login(client, "wrong"), Login::Refused));
        }
        assert!(matches!(
            auth.login(client, "correct horse"),
            Login::TooMany
        ));
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(matches!(
            auth.login(other, "correct horse"),
            Login::Session(_)
        ));
    }

    #[test]
    fn no_secret_is_a_clear_error_and_short_tokens_are_refused() {
        assert!(matches!(
            Secret::from_files(None, None),
            Err(AuthConfigError::Missing)
        ));
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "short\n").unwrap();
        assert!(Secret::from_files(None, Some(&token)).is_err());
        std::fs::write(&token, "a-long-enough-token-0123456789\n").unwrap();
        let auth = Auth::new(Secret::from_files(None, Some(&token)).unwrap());
        assert!(auth.bearer_valid("a-long-enough-token-0123456789"));
        assert!(!auth.bearer_valid("a-long-enough-token-012345678"));
    }
}
