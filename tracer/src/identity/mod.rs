//! Who made a request: bearer JWT claims, Basic user names, fingerprints of API keys
//! and session cookies, identity headers of trusted proxies, and the original client
//! behind them. Nothing here ever keeps or writes a credential (see docs/identity.md).
mod basic;
mod credentials;
pub mod fingerprint;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod proxy;
mod token_shape;

use std::{
    borrow::Cow,
    net::IpAddr,
    num::NonZeroUsize,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use lru::LruCache;
use sha2::{Digest as _, Sha256};

pub use self::{
    fingerprint::{Fingerprint, Fingerprinter},
    jwks::{Keys, OidcSettings},
    jwt::Unverified,
    keys::Policy,
    proxy::{ForwardedClient, ProxyTrust},
};
use self::{jwt::DecodedJwt, keys::KeySet};
use crate::{http::RequestHead, json::Fields};

/// Tokens whose decoding and verdict are remembered; a client reusing one token costs
/// one verification until 4096 other tokens have been seen.
pub const TOKEN_CACHE_ENTRIES: usize = 4096;
/// Longest untrusted header value written (it is client-controlled).
pub const MAX_UNTRUSTED_VALUE_CHARS: usize = 256;

/// How the request authenticated, by the credential that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Bearer,
    Basic,
    /// An `Authorization` scheme other than Bearer or Basic (Digest, Negotiate, ...).
    OtherAuthorization,
    ApiKey,
    /// Identity headers from a trusted proxy.
    Proxy,
    Session,
    None,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Basic => "basic",
            Self::OtherAuthorization => "other",
            Self::ApiKey => "api_key",
            Self::Proxy => "proxy",
            Self::Session => "session",
            Self::None => "none",
        }
    }
}

/// What verification needs; absent when no key source is configured.
pub struct Verifier {
    pub keys: Keys,
    pub policy: Policy,
    /// Tolerated clock skew for `exp` / `nbf`, in seconds.
    pub leeway: i64,
}

/// Header, query parameter and cookie names, lowercased where matching ignores case.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub api_key_headers: Vec<String>,
    pub api_key_query_params: Vec<String>,
    pub session_cookies: Vec<String>,
    pub proxy_user_headers: Vec<String>,
    pub proxy_email_headers: Vec<String>,
    pub role_claims: Vec<String>,
}

/// Decoded once per distinct token; holds nothing secret.
#[derive(Debug)]
struct TokenInfo {
    /// None: the bearer value is not a JWT (an opaque token).
    decoded: Option<DecodedJwt>,
    fingerprint: Fingerprint,
}

struct CachedToken {
    info: Arc<TokenInfo>,
    /// Signature, issuer and audience; made under key set `generation`.
    verdict: Result<(), Unverified>,
    generation: u64,
}

pub struct Identifier {
    names: Names,
    proxy: ProxyTrust,
    fingerprinter: Fingerprinter,
    verifier: Option<Verifier>,
    tokens: LruCache<[u8; 32], CachedToken>,
}

/// The identity part of one record; borrows from the request head.
#[derive(Debug)]
pub struct Identity<'a> {
    pub method: Method,
    token: Option<(Arc<TokenInfo>, Result<(), Unverified>)>,
    user_name: Option<Cow<'a, str>>,
    user_email: Option<Cow<'a, str>>,
    credential: Option<Fingerprint>,
    session: Option<Fingerprint>,
    untrusted: Vec<(&'a str, &'a [u8])>,
    /// None: the client is the socket peer.
    pub client: Option<ForwardedClient>,
}

impl Identifier {
    pub fn new(
        names: Names,
        proxy: ProxyTrust,
        fingerprinter: Fingerprinter,
        verifier: Option<Verifier>,
    ) -> Self {
        let capacity = NonZeroUsize::new(TOKEN_CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Self {
            names,
            proxy,
            fingerprinter,
            verifier,
            tokens: LruCache::new(capacity),
        }
    }

    /// `query` is the request target's query (without `?`); `peer` the socket peer.
    pub fn identify<'a>(
        &mut self,
        head: &'a RequestHead,
        query: Option<&'a str>,
        peer: Option<IpAddr>,
    ) -> Identity<'a> {
        let mut id = Identity {
            method: Method::None,
            token: None,
            user_name: None,
            user_email: None,
            credential: None,
            session: None,
            untrusted: Vec::new(),
            client: None,
        };
        let headers = &head.headers;
        if let Some(auth) = head.header("authorization") {
            let auth = auth.trim_ascii();
            let (scheme, param) = match auth.iter().position(|&b| b == b' ') {
                Some(space) => (&auth[..space], auth[space + 1..].trim_ascii()),
                None => (auth, &b""[..]),
            };
            if scheme.eq_ignore_ascii_case(b"bearer") && !param.is_empty() {
                id.method = Method::Bearer;
                let (info, verdict) = self.token(param);
                if info.decoded.is_none() {
                    id.credential = Some(info.fingerprint);
                }
                id.token = Some((info, verdict));
            } else if scheme.eq_ignore_ascii_case(b"basic") {
                id.method = Method::Basic;
                match basic::user(param, &self.fingerprinter) {
                    Some(basic::BasicUser::Name(name)) => id.user_name = Some(Cow::Owned(name)),
                    Some(basic::BasicUser::Token(fingerprint)) => id.credential = Some(fingerprint),
                    None => {}
                }
            } else {
                id.method = Method::OtherAuthorization;
            }
        }
        let api_key = credentials::header_value(headers, &self.names.api_key_headers)
            .map(Cow::Borrowed)
            .or_else(|| {
                query.and_then(|q| credentials::query_value(q, &self.names.api_key_query_params))
            });
        if let Some(key) = api_key {
            if id.method == Method::None {
                id.method = Method::ApiKey;
            }
            if id.credential.is_none() {
                id.credential = Some(self.fingerprinter.fingerprint(&key));
            }
        }
        let trusted = peer.is_some_and(|p| self.proxy.is_trusted(p));
        let proxy_user = credentials::header_value(headers, &self.names.proxy_user_headers);
        let proxy_email = credentials::header_value(headers, &self.names.proxy_email_headers);
        if trusted {
            if proxy_user.is_some() || proxy_email.is_some() {
                if id.method == Method::None {
                    id.method = Method::Proxy;
                }
                if id.user_name.is_none() && id.token.is_none() {
                    id.user_name = proxy_user.map(String::from_utf8_lossy);
                    id.user_email = proxy_email.map(String::from_utf8_lossy);
                }
            }
            id.client = self.proxy.forwarded_client(headers);
        } else {
            id.untrusted = headers
                .iter()
                .filter(|(name, _)| self.is_proxy_header(name))
                // Header names are tokens, hence ASCII.
                .map(|(name, value)| (std::str::from_utf8(name).unwrap_or_default(), value))
                .collect();
        }
        if let Some(cookie) = credentials::cookie_value(headers, &self.names.session_cookies) {
            if id.method == Method::None {
                id.method = Method::Session;
            }
            id.session = Some(self.fingerprinter.fingerprint(cookie));
        }
        id
    }

    fn is_proxy_header(&self, name: &[u8]) -> bool {
        name.eq_ignore_ascii_case(b"forwarded")
            || name.eq_ignore_ascii_case(b"x-forwarded-for")
            || self
                .names
                .proxy_user_headers
                .iter()
                .chain(&self.names.proxy_email_headers)
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    }

    /// The token's decoding and its verdict now (times are checked per request).
    fn token(&mut self, token: &[u8]) -> (Arc<TokenInfo>, Result<(), Unverified>) {
        let key: [u8; 32] = Sha256::digest(token).into();
        let keys = self.verifier.as_ref().map(|v| v.keys.snapshot());
        let generation = keys.as_ref().map_or(0, |k| k.generation);
        let entry = match self.tokens.get_mut(&key) {
            Some(entry) if entry.generation == generation => entry,
            Some(entry) => {
                entry.verdict = verdict(token, &entry.info, keys.as_deref(), &self.verifier);
                entry.generation = generation;
                entry
            }
            None => {
                let info = Arc::new(TokenInfo {
                    decoded: jwt::decode(token, &self.names.role_claims),
                    fingerprint: self.fingerprinter.fingerprint(token),
                });
                let verdict = verdict(token, &info, keys.as_deref(), &self.verifier);
                self.tokens.get_or_insert_mut(key, || CachedToken {
                    info,
                    verdict,
                    generation,
                })
            }
        };
        let mut verdict = entry.verdict;
        let info = Arc::clone(&entry.info);
        if let (Some(verifier), Some(decoded)) = (&self.verifier, &info.decoded) {
            if verdict == Err(Unverified::UnknownKey) {
                verifier.keys.request_refetch();
            }
            if verdict.is_ok() {
                verdict = keys::check_times(decoded, unix_now(), verifier.leeway);
            }
        }
        (info, verdict)
    }
}

fn verdict(
    token: &[u8],
    info: &TokenInfo,
    keys: Option<&KeySet>,
    verifier: &Option<Verifier>,
) -> Result<(), Unverified> {
    let decoded = info.decoded.as_ref().ok_or(Unverified::Malformed)?;
    match (keys, verifier) {
        (Some(keys), Some(verifier)) => keys::verify(token, decoded, keys, &verifier.policy),
        _ => Err(Unverified::NoKeys),
    }
}

/// A fingerprint's hex digits as text (they are ASCII).
fn hex_text(hex: Option<&[u8; 16]>) -> Option<&str> {
    hex.and_then(|h| std::str::from_utf8(h).ok())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Identity<'_> {
    /// Appends `,"key":value...` (the fields, no braces) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let (verified, failure_reason) = match &self.token {
            Some((info, verdict)) => {
                if let Some(decoded) = &info.decoded {
                    out.extend_from_slice(&decoded.fragment);
                }
                (Some(verdict.is_ok()), verdict.err().map(Unverified::as_str))
            }
            None => (None, None),
        };
        let (credential, session) = (
            self.credential.map(|c| c.hex()),
            self.session.map(|c| c.hex()),
        );
        let untrusted: Vec<String> = self
            .untrusted
            .iter()
            .map(|(name, value)| {
                let value: String = String::from_utf8_lossy(value)
                    .chars()
                    .take(MAX_UNTRUSTED_VALUE_CHARS)
                    .collect();
                format!("{}: {value}", name.to_ascii_lowercase())
            })
            .collect();
        // A fragment after the record's fields: every key carries its comma.
        let mut f = Fields::open(out);
        f.opt_str(key!("user.name"), self.user_name.as_deref());
        f.opt_str(key!("user.email"), self.user_email.as_deref());
        f.str(key!("audit.auth.method"), self.method.as_str());
        f.opt_bool(key!("audit.auth.verified"), verified);
        f.opt_str(key!("audit.auth.failure_reason"), failure_reason);
        f.opt_str(
            key!("audit.credential.fingerprint"),
            hex_text(credential.as_ref()),
        );
        f.opt_str(
            key!("audit.session.fingerprint"),
            hex_text(session.as_ref()),
        );
        f.str_list(key!("audit.auth.untrusted_header"), &untrusted);
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::http::{Headers, RequestHead};

    /// A GET head for `target` with `headers`, parsed as the tracer parses heads.
    pub fn head(target: &str, headers: &[(&str, &str)]) -> RequestHead {
        let text: String = std::iter::once(format!("GET {target} HTTP/1.1\r\n"))
            .chain(headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")))
            .chain(std::iter::once("\r\n".to_owned()))
            .collect();
        let mut raw = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut raw);
        request.parse(text.as_bytes()).unwrap();
        let line = [request.method, request.path].map(|t| t.unwrap_or_default().as_bytes());
        let (headers, line) = Headers::with_texts(text.as_bytes(), request.headers, line);
        RequestHead::new(headers, line, 1, false)
    }
}

#[cfg(test)]
mod tests;
