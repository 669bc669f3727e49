//! Is a parameter name one that carries a credential? Names come in every spelling
//! (`access_token`, `accessToken`, `Access-Token`, `user[password]`), so a name is
//! compared by its words, not against a fixed list of spellings: it is split into
//! words at `-`, `_`, `.`, spaces and camelCase boundaries, each bracketed part
//! (`user[password]`) is judged on its own, and a part is secret when one of its
//! words is a secret word, or its words run together are a secret name or end in a
//! secret word or suffix (which also catches `newpassword` and `aCcEsStOkEn`, whose
//! case hides the word boundaries).

/// A part with one of these words is secret wherever the word stands
/// (`private_token`, `X-Amz-Signature`, `client_assertion`, `user.password`), or
/// when its words run together end in one.
const SECRET_WORDS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "passphrase",
    "secret",
    "signature",
    "credential",
    "credentials",
    "assertion",
    "jwt",
    "otp",
];

/// Secret only as the whole part, words run together: these words, or compounds
/// of them, are too common to match alone (`key` in `sort_key`, `code` in
/// `country_code`). `code` is the OAuth authorization code: with the client's secret
/// or PKCE verifier it buys an access token, so RFC 6749 section 10.5 treats it as
/// a credential. `session` and its ids let anyone who holds them act as the user.
const SECRET_NAMES: &[&str] = &[
    "key",
    "pwd",
    "pass",
    "pin",
    "auth",
    "sig",
    "code",
    "session",
    "sessionid",
    "sessid",
    "sid",
    "jsessionid",
    "phpsessid",
    "awsaccesskeyid",
];

/// A part whose words run together end like this is secret (`api_key`, `x-api-key`,
/// `aws_secret_access_key`, `SigningKey`).
const SECRET_SUFFIXES: &[&str] = &[
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "signingkey",
    "accesskeyid",
    "sessionid",
];

/// Longest name judged; longer ones are secret (a name is short, and judging one
/// costs time linear in its length).
const MAX_NAME_BYTES: usize = 256;

/// Matches parameter names: the built-in pattern, plus configured names that are
/// secret in any spelling of their own words.
#[derive(Debug, Clone, Default)]
pub struct SecretNames {
    /// Configured names, words run together and lowercased.
    extra: Vec<String>,
}

impl SecretNames {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(extra: I) -> Self {
        Self {
            extra: extra
                .into_iter()
                .map(|name| compact(&words(name.as_ref())))
                .filter(|name| !name.is_empty())
                .collect(),
        }
    }

    /// `name` as the server decoded it (percent-escapes resolved); need not be UTF-8.
    pub fn is_secret(&self, name: &[u8]) -> bool {
        if name.len() > MAX_NAME_BYTES {
            return true;
        }
        let name = String::from_utf8_lossy(name);
        name.split(['[', ']']).any(|part| {
            let words = words(part);
            let compact = compact(&words);
            words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
                || SECRET_NAMES.contains(&compact.as_str())
                || SECRET_SUFFIXES
                    .iter()
                    .chain(SECRET_WORDS)
                    .any(|s| compact.ends_with(s))
                || self.extra.contains(&compact)
        })
    }
}

/// Lowercased words: split at separators, and where lower case turns to upper
/// (`accessToken`) or an upper-case run ends in a capitalised word (`AWSAccess`).
fn words(part: &str) -> Vec<String> {
    let mut words = Vec::new();
    for piece in part.split(['-', '_', '.', ' ', '+']) {
        let chars: Vec<char> = piece.chars().collect();
        let mut start = 0;
        for i in 1..chars.len() {
            let lower_to_upper = chars[i - 1].is_lowercase() && chars[i].is_uppercase();
            let acronym_end = chars[i - 1].is_uppercase()
                && chars[i].is_uppercase()
                && chars.get(i + 1).is_some_and(|c| c.is_lowercase());
            if lower_to_upper || acronym_end {
                words.push(chars[start..i].iter().collect::<String>().to_lowercase());
                start = i;
            }
        }
        if start < chars.len() {
            words.push(chars[start..].iter().collect::<String>().to_lowercase());
        }
    }
    words
}

fn compact(words: &[String]) -> String {
    words.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str) -> bool {
        SecretNames::default().is_secret(name.as_bytes())
    }

    #[test]
    fn ignores_random_case() {
        for name in ["pAsSwOrD", "aCcEsStOkEn", "newpassword", "jSeSsIoNiD"] {
            assert!(secret(name), "{name}");
        }
    }

    #[test]
    fn splits_words() {
        assert_eq!(words("AWSAccessKeyId"), ["aws", "access", "key", "id"]);
        assert_eq!(words("accessToken"), ["access", "token"]);
        assert_eq!(words("X-Amz-Signature"), ["x", "amz", "signature"]);
        assert_eq!(words("refresh-token_v2"), ["refresh", "token", "v2"]);
    }

    #[test]
    fn credential_names_in_every_spelling() {
        for name in [
            "access_token",
            "accessToken",
            "authToken",
            "auth_token",
            "private_token",
            "refresh-token",
            "id_token",
            "token",
            "TOKEN",
            "password",
            "passwd",
            "pwd",
            "pass",
            "passphrase",
            "otp",
            "pin",
            "user[password]",
            "a[b][token]",
            "user.password",
            "credentials",
            "client_secret",
            "client_assertion",
            "assertion",
            "jwt",
            "auth",
            "AWSAccessKeyId",
            "aws_secret_access_key",
            "X-Amz-Signature",
            "X-Amz-Credential",
            "X-Amz-Security-Token",
            "X-Goog-Signature",
            "sig",
            "signature",
            "api_key",
            "apikey",
            "apiKey",
            "x-api-key",
            "key",
            "secret",
            "session",
            "sessionid",
            "session_id",
            "jsessionid",
            "PHPSESSID",
            "code",
        ] {
            assert!(secret(name), "{name}");
        }
    }

    #[test]
    fn ordinary_names_stay_visible() {
        for name in [
            "page",
            "q",
            "tokens",
            "mykey",
            "sort_key",
            "country_code",
            "passenger",
            "author",
            "signed",
            "user[name]",
            "pinned",
            "session_count_total_x",
        ] {
            assert!(!secret(name), "{name}");
        }
    }

    #[test]
    fn configured_names_match_in_any_spelling() {
        let names = SecretNames::new(["Tenant-Id"]);
        for name in ["tenant_id", "tenantId", "TENANT.ID", "x[tenantid]"] {
            assert!(names.is_secret(name.as_bytes()), "{name}");
        }
        assert!(!names.is_secret(b"tenant"));
    }

    #[test]
    fn overlong_names_are_secret() {
        assert!(secret(&"a".repeat(MAX_NAME_BYTES + 1)));
    }
}
