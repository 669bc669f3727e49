//! JWT claims: decoding a compact JWS into the record's identity fields, once per token.
//!
//! Decoding is done here rather than by `jsonwebtoken::decode` because the claims are
//! wanted even when the signature cannot be checked, and each way verification can
//! fail has its own reason in the record.
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Longest claim string written; longer ones are cut (claims are client-controlled).
pub const MAX_CLAIM_CHARS: usize = 512;
/// Most roles written per token.
pub const MAX_ROLES: usize = 64;
/// Longest token decoded; longer bearer values are treated as malformed.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token is not marked verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unverified {
    Expired,
    NotYetValid,
    BadSignature,
    UnknownKey,
    UntrustedIssuer,
    WrongAudience,
    Malformed,
    /// No keys are configured: the claims are reported as sent.
    NoKeys,
}

impl Unverified {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey => "unknown_key",
            Self::UntrustedIssuer => "untrusted_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Malformed => "malformed",
            Self::NoKeys => "unverified",
        }
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

/// The parts of a JWT the tracer needs, with no secret in it: the signature is not
/// kept (verification reads it from the request's token).
#[derive(Debug)]
pub struct DecodedJwt {
    pub alg: String,
    pub kid: Option<String>,
    /// `,"user.id":...` ready to splice into a record.
    pub fragment: Box<[u8]>,
    pub expires: Option<i64>,
    pub not_before: Option<i64>,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
}

/// Splits `header.payload.signature`; None unless there are exactly three non-empty
/// header and payload parts.
pub fn split(token: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut parts = token.splitn(3, |&b| b == b'.');
    let header = parts.next().filter(|p| !p.is_empty())?;
    let payload = parts.next().filter(|p| !p.is_empty())?;
    let signature = parts.next()?;
    if signature.contains(&b'.') {
        return None;
    }
    Some((header, payload, signature))
}

/// Decodes header and claims. `role_claims` are dotted paths (`realm_access.roles`);
/// each may hold an array of strings or one space-separated string (`scope`).
pub fn decode(token: &[u8], role_claims: &[String]) -> Option<DecodedJwt> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let (header, payload, _) = split(token)?;
    let header: RawHeader = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let claims = claims.as_object()?;
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(clip)
    };
    let time = |name: &str| claims.get(name).and_then(Value::as_f64).map(|t| t as i64);
    let audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![clip(a)],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .take(MAX_ROLES)
            .map(clip)
            .collect(),
        _ => Vec::new(),
    };
    let roles = roles(claims, role_claims);
    let expires = time("exp");
    let fields = Fields {
        user_id: text("sub"),
        user_name: text("preferred_username").or_else(|| text("name")),
        user_email: text("email"),
        user_roles: (!roles.is_empty()).then_some(roles),
        issuer: text("iss"),
        audience: (!audiences.is_empty()).then_some(&audiences),
        client_id: text("azp").or_else(|| text("client_id")),
        token_id: text("jti"),
        expires_at: expires.and_then(rfc3339_seconds),
    };
    let mut fragment = serde_json::to_vec(&fields).ok()?;
    // `{...}` -> `,...`; an empty object becomes nothing.
    fragment.pop();
    fragment[0] = b',';
    if fragment.len() == 1 {
        fragment.clear();
    }
    Some(DecodedJwt {
        alg: header.alg,
        kid: header.kid,
        fragment: fragment.into_boxed_slice(),
        expires,
        not_before: time("nbf"),
        issuer: fields.issuer,
        audiences,
    })
}

#[serde_with::skip_serializing_none]
#[derive(serde::Serialize)]
struct Fields<'a> {
    #[serde(rename = "user.id")]
    user_id: Option<String>,
    #[serde(rename = "user.name")]
    user_name: Option<String>,
    #[serde(rename = "user.email")]
    user_email: Option<String>,
    #[serde(rename = "user.roles")]
    user_roles: Option<Vec<String>>,
    #[serde(rename = "audit.auth.issuer")]
    issuer: Option<String>,
    #[serde(rename = "audit.auth.audience")]
    audience: Option<&'a Vec<String>>,
    #[serde(rename = "audit.auth.client_id")]
    client_id: Option<String>,
    #[serde(rename = "audit.auth.token_id")]
    token_id: Option<String>,
    #[serde(rename = "audit.auth.expires_at")]
    expires_at: Option<String>,
}

fn roles(claims: &serde_json::Map<String, Value>, paths: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for path in paths {
        let mut parts = path.split('.');
        let mut node = parts.next().and_then(|first| claims.get(first));
        for part in parts {
            node = node.and_then(|n| n.get(part));
        }
        let found: Box<dyn Iterator<Item = &str>> = match node {
            Some(Value::Array(list)) => Box::new(list.iter().filter_map(Value::as_str)),
            Some(Value::String(s)) => Box::new(s.split_ascii_whitespace()),
            _ => continue,
        };
        for role in found {
            if out.len() >= MAX_ROLES {
                return out;
            }
            if !role.is_empty() && !out.iter().any(|r| r == role) {
                out.push(clip(role));
            }
        }
    }
    out
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_CLAIM_CHARS).collect()
}

fn rfc3339_seconds(t: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn unsigned(claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{header}.{payload}.c2lnbmF0dXJl")
    }

    fn fragment(d: &DecodedJwt) -> Value {
        let text = format!("{{{}}}", std::str::from_utf8(&d.fragment[1..]).unwrap());
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn maps_claims_to_record_fields() {
        let token = unsigned(&serde_json::json!({
            "sub": "u-1", "name": "Alice A", "preferred_username": "alice",
            "email": "alice@example.com", "iss": "https://idp", "aud": ["api", "web"],
            "azp": "cli", "jti": "t-9", "exp": 1_900_000_000, "nbf": 1_800_000_000,
            "roles": ["admin"], "realm_access": {"roles": ["admin", "dev"]},
            "scope": "openid profile"
        }));
        let roles = ["roles", "realm_access.roles", "scope"].map(String::from);
        let d = decode(token.as_bytes(), &roles).unwrap();
        assert_eq!((d.alg.as_str(), d.kid.as_deref()), ("RS256", Some("k1")));
        assert_eq!(d.expires, Some(1_900_000_000));
        assert_eq!(d.not_before, Some(1_800_000_000));
        let v = fragment(&d);
        assert_eq!(v["user.id"], "u-1");
        assert_eq!(v["user.name"], "alice");
        assert_eq!(v["user.email"], "alice@example.com");
        assert_eq!(
            v["user.roles"],
            serde_json::json!(["admin", "dev", "openid", "profile"])
        );
        assert_eq!(v["audit.auth.audience"], serde_json::json!(["api", "web"]));
        assert_eq!(v["audit.auth.client_id"], "cli");
        assert_eq!(v["audit.auth.token_id"], "t-9");
        assert_eq!(v["audit.auth.expires_at"], "2030-03-17T17:46:40Z");
        assert!(!String::from_utf8_lossy(&d.fragment).contains("c2lnbmF0dXJl"));
    }

    #[test]
    fn rejects_what_is_not_a_jwt() {
        for bad in ["opaque-token", "a.b", "a.b.c.d", "..", "e30.e30.x"] {
            assert!(decode(bad.as_bytes(), &[]).is_none(), "{bad}");
        }
        // `{}` header lacks alg; a payload that is not an object is not claims.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(b"[1]");
        assert!(decode(format!("{header}.{payload}.").as_bytes(), &[]).is_none());
        let payload = URL_SAFE_NO_PAD.encode(b"{}");
        let d = decode(format!("{header}.{payload}.").as_bytes(), &[]).unwrap();
        assert!(d.fragment.is_empty());
    }
}
