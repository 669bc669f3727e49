//! The identifier an `[identity]` table describes: key files read, the fingerprint
//! secret read or created, the OIDC fetcher started.
use std::time::Duration;

use super::{ConfigError, IdentityConfig, JwtConfig};
use crate::identity::{
    Fingerprinter, Identifier, Keys, Names, OidcSettings, Policy, ProxyTrust, Verifier,
    keys::{self as keyfiles, KeyError, VerifyKey},
};

impl IdentityConfig {
    /// The identifier this configuration describes: reads key files and the
    /// fingerprint secret (creating it), and starts the OIDC fetcher.
    pub fn identifier(&self) -> Result<Identifier, ConfigError> {
        let fingerprinter = Fingerprinter::load_or_create(&self.fingerprint_secret_file)?;
        Ok(Identifier::new(
            self.names(),
            ProxyTrust::new(self.proxy.trusted_cidrs.clone()),
            fingerprinter,
            self.jwt.verifier()?,
        ))
    }

    fn names(&self) -> Names {
        Names {
            api_key_headers: self.api_key_headers.clone(),
            api_key_query_params: self.api_key_query_params.clone(),
            session_cookies: self.session_cookies.clone(),
            proxy_user_headers: self.proxy.user_headers.clone(),
            proxy_email_headers: self.proxy.email_headers.clone(),
            role_claims: self.jwt.role_claims.clone(),
        }
    }
}

impl JwtConfig {
    pub(super) fn fixed_keys(&self) -> Result<Vec<VerifyKey>, KeyError> {
        let mut keys = match &self.jwks_file {
            Some(path) => keyfiles::load_jwks_file(path)?,
            None => Vec::new(),
        };
        if let Some(path) = &self.hmac_secret_file {
            keys.push(keyfiles::load_hmac_secret(path)?);
        }
        Ok(keys)
    }

    fn verifier(&self) -> Result<Option<Verifier>, ConfigError> {
        let fixed = self.fixed_keys()?;
        let mut issuers = self.issuers.clone();
        let keys = match &self.oidc_issuer {
            Some(issuer) => {
                if !issuers.is_empty() {
                    issuers.push(issuer.clone());
                }
                let settings = OidcSettings {
                    issuer: issuer.clone(),
                    timeout: Duration::from_millis(self.oidc_timeout_ms.get()),
                    refresh: Duration::from_secs(self.oidc_refresh_seconds.get()),
                    min_refetch: Duration::from_secs(self.oidc_min_refetch_seconds),
                    max_backoff: Duration::from_secs(self.oidc_max_backoff_seconds.get()),
                };
                Keys::with_oidc(fixed, settings).map_err(ConfigError::Fetcher)?
            }
            None if fixed.is_empty() => return Ok(None),
            None => Keys::fixed(fixed),
        };
        Ok(Some(Verifier {
            keys,
            policy: Policy {
                issuers,
                audiences: self.audiences.clone(),
            },
            leeway: i64::from(self.leeway_seconds),
        }))
    }
}
