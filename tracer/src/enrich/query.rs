//! Keeping credentials and terminal escapes out of what the tracer writes.

use std::{borrow::Cow, collections::HashSet};

/// Query parameter names whose values carry credentials (OWASP / OTel `url.query` guidance).
pub const DEFAULT_SECRET_PARAMS: &[&str] = &[
    "access_token",
    "token",
    "id_token",
    "refresh_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "code",
    "session",
    "sessionid",
    "jsessionid",
];

const REDACTED: &str = "REDACTED";

/// Replaces the values of secret query parameters.
#[derive(Debug, Clone)]
pub struct QueryRedactor {
    /// ASCII-lowercased names, as bytes because a percent-decoded name need not be UTF-8.
    names: HashSet<Vec<u8>>,
}

impl QueryRedactor {
    /// A redactor for the given parameter names, matched case-insensitively (ASCII) against the
    /// percent-decoded parameter name.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> Self {
        let names = names
            .into_iter()
            .map(|name| name.as_ref().as_bytes().to_ascii_lowercase())
            .collect();
        Self { names }
    }

    /// A redactor for [`DEFAULT_SECRET_PARAMS`].
    #[cfg(test)]
    pub fn default_set() -> Self {
        Self::new(DEFAULT_SECRET_PARAMS)
    }

    /// Returns the query (the part after `?`) with the value of every secret parameter replaced
    /// by `REDACTED`, keeping the name and `=`, the order, the separators (`&` and `;`) and all
    /// other bytes exactly. Names are compared after percent-decoding, so `acc%65ss_token` is
    /// caught as a server would see it. A parameter without `=` and an empty value carry nothing
    /// to hide and are kept as they are. Borrows when nothing changed.
    pub fn redact<'a>(&self, query: &'a str) -> Cow<'a, str> {
        let mut out = String::new();
        let mut copied = 0;
        let mut start = 0;
        for segment in query.split(['&', ';']) {
            let end = start + segment.len();
            if let Some(value_start) = self.secret_value_start(segment) {
                out.push_str(&query[copied..start + value_start]);
                out.push_str(REDACTED);
                copied = end;
            }
            start = end + 1;
        }
        // A redacted value is never empty, so `copied` moved iff something was replaced.
        if copied == 0 {
            return Cow::Borrowed(query);
        }
        out.push_str(&query[copied..]);
        Cow::Owned(out)
    }

    /// Offset of the value within `name=value` when the name is a secret one and the value is
    /// not empty.
    fn secret_value_start(&self, segment: &str) -> Option<usize> {
        let (name, value) = segment.split_once('=')?;
        let is_secret = !value.is_empty()
            && self
                .names
                .contains(&percent_decode(name.as_bytes()).to_ascii_lowercase());
        is_secret.then_some(name.len() + 1)
    }
}

/// Percent-decodes like a server would; a `%` not followed by two hex digits stays literal.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let escaped = match input.get(i..i + 3) {
            Some([b'%', high, low]) => hex_value(*high).zip(hex_value(*low)),
            _ => None,
        };
        match escaped {
            Some((high, low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            None => {
                out.push(input[i]);
                i += 1;
            }
        }
    }
    out
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn redact(query: &str) -> Cow<'_, str> {
        QueryRedactor::default_set().redact(query)
    }

    #[test]
    fn redacts_every_default_name() {
        for name in DEFAULT_SECRET_PARAMS {
            let query = format!("a=1&{name}=s3cr3t&b=2");
            assert_eq!(redact(&query), format!("a=1&{name}=REDACTED&b=2"), "{name}");
        }
    }

    #[test]
    fn matches_percent_encoded_names() {
        assert_eq!(redact("acc%65ss_token=abc"), "acc%65ss_token=REDACTED");
        assert_eq!(
            redact("%74%6F%6b%65%6e=abc&x=1"),
            "%74%6F%6b%65%6e=REDACTED&x=1"
        );
        assert_eq!(
            redact("X%2DAmz%2DSignature=f00"),
            "X%2DAmz%2DSignature=REDACTED"
        );
    }

    #[test]
    fn invalid_escapes_stay_literal() {
        assert_eq!(redact("tok%zzen=abc&%=1&%4=2"), "tok%zzen=abc&%=1&%4=2");
    }

    #[test]
    fn matches_names_case_insensitively() {
        assert_eq!(
            redact("Access_Token=a&PASSWORD=b&X-Amz-Credential=c"),
            "Access_Token=REDACTED&PASSWORD=REDACTED&X-Amz-Credential=REDACTED"
        );
    }

    #[test]
    fn keeps_empty_values_and_bare_names() {
        assert!(matches!(redact("token=&password&key"), Cow::Borrowed(_)));
        assert_eq!(redact("token=&sig=x"), "token=&sig=REDACTED");
    }

    #[test]
    fn redacts_repeated_params() {
        assert_eq!(
            redact("key=a&q=1&key=b&key=c"),
            "key=REDACTED&q=1&key=REDACTED&key=REDACTED"
        );
    }

    #[test]
    fn honours_semicolon_separators() {
        assert_eq!(
            redact("q=1;session=abc&code=xyz;page=2"),
            "q=1;session=REDACTED&code=REDACTED;page=2"
        );
    }

    #[test]
    fn replaces_the_whole_value_after_the_first_equals() {
        assert_eq!(redact("sig=a=b==&x=y"), "sig=REDACTED&x=y");
    }

    #[test]
    fn keeps_other_bytes_exactly() {
        assert_eq!(
            redact("&&a=%20+x&;token=t&é=ü&"),
            "&&a=%20+x&;token=REDACTED&é=ü&"
        );
    }

    #[test]
    fn borrows_when_nothing_is_secret() {
        for query in ["", "a=1&b=2", "tokens=1&mykey=2", "q=token%3Dabc"] {
            assert!(
                matches!(redact(query), Cow::Borrowed(q) if q == query),
                "{query}"
            );
        }
    }

    #[test]
    fn custom_names_replace_the_default_set() {
        let redactor = QueryRedactor::new(["Auth"]);
        assert_eq!(redactor.redact("auth=1&token=2"), "auth=REDACTED&token=2");
    }

    /// One generated parameter: a name, whether it is secret, and an optional `=value`.
    #[derive(Debug, Clone)]
    struct Param {
        name: String,
        secret: bool,
        value: Option<String>,
    }

    /// A default secret name with random letter case and random percent-encoding per byte.
    fn secret_name() -> impl Strategy<Value = String> {
        prop::sample::select(DEFAULT_SECRET_PARAMS).prop_flat_map(|name| {
            prop::collection::vec((any::<bool>(), any::<bool>()), name.len()).prop_map(
                move |styles| {
                    name.bytes()
                        .zip(styles)
                        .map(|(byte, (upper, encode))| {
                            let byte = if upper {
                                byte.to_ascii_uppercase()
                            } else {
                                byte
                            };
                            if encode {
                                format!("%{byte:02X}")
                            } else {
                                char::from(byte).to_string()
                            }
                        })
                        .collect()
                },
            )
        })
    }

    fn param() -> impl Strategy<Value = Param> {
        // Secret values carry '~', which nothing else generated contains, so any '~' in the
        // output is a leak. Other names start with "n_", which no secret name does.
        let secret = (secret_name(), "~[A-Za-z0-9%+.=~-]{0,8}", any::<bool>()).prop_map(
            |(name, value, has_value)| Param {
                name,
                secret: true,
                value: has_value.then_some(value),
            },
        );
        let other = (
            "n_[a-z%0-9]{0,6}",
            prop::option::of("[A-Za-z0-9%+.=-]{0,8}"),
        )
            .prop_map(|(name, value)| Param {
                name,
                secret: false,
                value,
            });
        prop_oneof![secret, other]
    }

    fn render(params: &[Param], separators: &[bool], redacted: bool) -> String {
        let mut out = String::new();
        for (i, param) in params.iter().enumerate() {
            if i > 0 {
                out.push(if separators[i] { ';' } else { '&' });
            }
            out.push_str(&param.name);
            if let Some(value) = &param.value {
                out.push('=');
                out.push_str(if redacted && param.secret {
                    REDACTED
                } else {
                    value
                });
            }
        }
        out
    }

    proptest! {
        #[test]
        fn never_leaks_secret_values_and_keeps_the_rest(
            params in prop::collection::vec(param(), 0..8),
            separators in prop::collection::vec(any::<bool>(), 8),
        ) {
            let query = render(&params, &separators, false);
            let redacted = redact(&query);
            prop_assert!(!redacted.contains('~'), "{} -> {}", query, redacted);
            prop_assert_eq!(redacted, render(&params, &separators, true));
        }
    }
}
