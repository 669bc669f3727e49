//! Verification keys and the checks a token must pass to be marked verified.
use std::{fmt, fs, io, path::Path, str::FromStr as _};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{Jwk, JwkSet, PublicKeyUse},
};

use super::jwt::{self, DecodedJwt, Unverified};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} is not a JWKS document: {source}")]
    NotJwks {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} is empty")]
    EmptySecret { path: String },
}

/// One key tokens may be verified with.
#[derive(Clone)]
pub struct VerifyKey {
    kid: Option<String>,
    /// The JWK's `alg`, when it names one: the key then verifies nothing else.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.key.family())
            .finish_non_exhaustive()
    }
}

/// Every key known at one moment; `generation` changes whenever the set does, so a
/// cached verdict made under an older set is recomputed.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<VerifyKey>,
    pub generation: u64,
}

impl KeySet {
    /// Keys of a JWKS; keys marked for encryption or of an unsupported kind are skipped.
    pub fn from_jwks(set: &JwkSet) -> Vec<VerifyKey> {
        set.keys.iter().filter_map(key_from_jwk).collect()
    }
}

fn key_from_jwk(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        alg: jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::try_from(a).ok()),
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

/// Keys of a JWKS file (`{"keys": [...]}`).
pub fn load_jwks_file(path: &Path) -> Result<Vec<VerifyKey>, KeyError> {
    let display = path.display().to_string();
    let text = fs::read(path).map_err(|source| KeyError::Read {
        path: display.clone(),
        source,
    })?;
    let set: JwkSet = serde_json::from_slice(&text).map_err(|source| KeyError::NotJwks {
        path: display,
        source,
    })?;
    Ok(KeySet::from_jwks(&set))
}

/// An HMAC (HS256/384/512) secret: the file's bytes without a trailing newline.
pub fn load_hmac_secret(path: &Path) -> Result<VerifyKey, KeyError> {
    let display = path.display().to_string();
    let mut secret = fs::read(path).map_err(|source| KeyError::Read {
        path: display.clone(),
        source,
    })?;
    while matches!(secret.last(), Some(b'\n' | b'\r')) {
        secret.pop();
    }
    if secret.is_empty() {
        return Err(KeyError::EmptySecret { path: display });
    }
    let key = DecodingKey::from_secret(&secret);
    secret.fill(0);
    Ok(VerifyKey {
        kid: None,
        alg: None,
        key,
    })
}

/// What a token must carry besides a good signature.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Empty: any issuer.
    pub issuers: Vec<String>,
    /// Empty: any audience.
    pub audiences: Vec<String>,
}

/// Checks the signature, then issuer and audience; times are checked per request by
/// the caller since they change while a verdict is cached. An empty set (an OIDC issuer
/// not reached yet) makes every token `unknown_key`, which asks for a refetch.
pub fn verify(
    token: &[u8],
    decoded: &DecodedJwt,
    keys: &KeySet,
    policy: &Policy,
) -> Result<(), Unverified> {
    let (header, payload, signature) = jwt::split(token).ok_or(Unverified::Malformed)?;
    // "none" and unknown algorithms carry no signature the tracer can accept.
    let alg = Algorithm::from_str(&decoded.alg).map_err(|_| Unverified::BadSignature)?;
    let signature = std::str::from_utf8(signature).map_err(|_| Unverified::Malformed)?;
    let message = &token[..header.len() + 1 + payload.len()];
    let mut candidates = keys.keys.iter().filter(|k| {
        k.key.family() == alg.family()
            && k.alg.is_none_or(|a| a == alg)
            // A kid-less key (a shared secret) answers to any kid, and a kid-less
            // token to any key of its algorithm.
            && decoded
                .kid
                .as_ref()
                .zip(k.kid.as_ref())
                .is_none_or(|(wanted, have)| wanted == have)
    });
    let mut tried = false;
    let good = candidates.any(|k| {
        tried = true;
        jsonwebtoken::crypto::verify(signature, message, &k.key, alg).unwrap_or(false)
    });
    if !tried {
        return Err(Unverified::UnknownKey);
    }
    if !good {
        return Err(Unverified::BadSignature);
    }
    if !policy.issuers.is_empty()
        && !decoded
            .issuer
            .as_ref()
            .is_some_and(|iss| policy.issuers.contains(iss))
    {
        return Err(Unverified::UntrustedIssuer);
    }
    if !policy.audiences.is_empty()
        && !decoded
            .audiences
            .iter()
            .any(|aud| policy.audiences.contains(aud))
    {
        return Err(Unverified::WrongAudience);
    }
    Ok(())
}

/// Expiry and not-before against `now` (Unix seconds), with `leeway` seconds of
/// tolerated clock skew.
pub fn check_times(decoded: &DecodedJwt, now: i64, leeway: i64) -> Result<(), Unverified> {
    if decoded
        .expires
        .is_some_and(|exp| now > exp.saturating_add(leeway))
    {
        return Err(Unverified::Expired);
    }
    if decoded
        .not_before
        .is_some_and(|nbf| now.saturating_add(leeway) < nbf)
    {
        return Err(Unverified::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    fn hmac_set(secret: &[u8]) -> KeySet {
        KeySet {
            keys: vec![VerifyKey {
                kid: None,
                alg: None,
                key: DecodingKey::from_secret(secret),
            }],
            generation: 1,
        }
    }

    fn sign(claims: &serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn check(token: &str, keys: &KeySet, policy: &Policy) -> Result<(), Unverified> {
        let decoded = jwt::decode(token.as_bytes(), &[]).unwrap();
        verify(token.as_bytes(), &decoded, keys, policy)?;
        check_times(&decoded, 1_800_000_000, 60)
    }

    #[test]
    fn reasons() {
        let keys = hmac_set(b"s3cret");
        let open = Policy::default();
        let claims = json!({"sub": "a", "iss": "i", "aud": "api", "exp": 1_900_000_000});
        let good = sign(&claims, b"s3cret");
        assert_eq!(check(&good, &keys, &open), Ok(()));
        assert_eq!(
            check(&sign(&claims, b"other"), &keys, &open),
            Err(Unverified::BadSignature)
        );
        let parts: Vec<&str> = good.split('.').collect();
        let forged = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"sub":"admin","iss":"i","aud":"api","exp":1900000000}"#,
        );
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(
            check(&tampered, &keys, &open),
            Err(Unverified::BadSignature)
        );
        assert_eq!(
            check(&good, &KeySet::default(), &open),
            Err(Unverified::UnknownKey)
        );
        let strict = Policy {
            issuers: vec!["j".into()],
            audiences: vec![],
        };
        assert_eq!(
            check(&good, &keys, &strict),
            Err(Unverified::UntrustedIssuer)
        );
        let strict = Policy {
            issuers: vec!["i".into()],
            audiences: vec!["web".into()],
        };
        assert_eq!(check(&good, &keys, &strict), Err(Unverified::WrongAudience));
        let old = sign(&json!({"exp": 1_799_999_000}), b"s3cret");
        assert_eq!(check(&old, &keys, &open), Err(Unverified::Expired));
        let early = sign(&json!({"nbf": 1_800_001_000}), b"s3cret");
        assert_eq!(check(&early, &keys, &open), Err(Unverified::NotYetValid));
        let skewed = sign(&json!({"exp": 1_799_999_990}), b"s3cret");
        assert_eq!(check(&skewed, &keys, &open), Ok(()));
    }

    #[test]
    fn kids_and_families_select_keys() {
        let set: JwkSet = serde_json::from_value(json!({"keys": [
            {"kty": "oct", "kid": "h1", "alg": "HS256", "k": "czNjcmV0"}
        ]}))
        .unwrap();
        let keys = KeySet {
            keys: KeySet::from_jwks(&set),
            generation: 1,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("h2".into());
        let token = encode(&header, &json!({}), &EncodingKey::from_secret(b"s3cret")).unwrap();
        assert_eq!(
            check(&token, &keys, &Policy::default()),
            Err(Unverified::UnknownKey)
        );
        header.kid = Some("h1".into());
        let token = encode(&header, &json!({}), &EncodingKey::from_secret(b"s3cret")).unwrap();
        assert_eq!(check(&token, &keys, &Policy::default()), Ok(()));
        // An RSA-family token never meets the HMAC key (no algorithm confusion).
        let forged = token.replacen(
            &token[..token.find('.').unwrap()],
            &base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                br#"{"alg":"RS256","kid":"h1"}"#,
            ),
            1,
        );
        assert_eq!(
            check(&forged, &keys, &Policy::default()),
            Err(Unverified::UnknownKey)
        );
    }
}
