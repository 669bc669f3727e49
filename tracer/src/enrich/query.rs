//! Keeping credentials and terminal escapes out of what the tracer writes.

use std::borrow::Cow;

use super::{percent, secret_name::SecretNames};

pub const REDACTED: &str = "REDACTED";

/// Replaces the values of secret query parameters.
#[derive(Debug, Clone, Default)]
pub struct QueryRedactor {
    names: SecretNames,
}

impl QueryRedactor {
    /// A redactor for the built-in pattern of credential names (see [`SecretNames`])
    /// plus `extra` names, each matched in any spelling of its words.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(extra: I) -> Self {
        Self {
            names: SecretNames::new(extra),
        }
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
    pub fn secret_value_start(&self, segment: &str) -> Option<usize> {
        let (name, value) = segment.split_once('=')?;
        let is_secret =
            !value.is_empty() && self.names.is_secret(&percent::decode(name.as_bytes()));
        is_secret.then_some(name.len() + 1)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The fixed list this redactor had before it matched by pattern; all still match.
    const FORMER_DEFAULTS: &[&str] = &[
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

    fn redact(query: &str) -> Cow<'_, str> {
        QueryRedactor::default().redact(query)
    }

    #[test]
    fn redacts_every_former_default_name() {
        for name in FORMER_DEFAULTS {
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
    fn redacts_names_by_pattern() {
        assert_eq!(
            redact("accessToken=a&user%5Bpassword%5D=b&AWSAccessKeyId=c&page=2&X-Amz-Signature=d"),
            "accessToken=REDACTED&user%5Bpassword%5D=REDACTED&AWSAccessKeyId=REDACTED&page=2\
             &X-Amz-Signature=REDACTED"
        );
        assert_eq!(
            redact("pwd=a&otp=1&pin=2&jwt=x"),
            "pwd=REDACTED&otp=REDACTED&pin=REDACTED&jwt=REDACTED"
        );
    }

    #[test]
    fn configured_names_add_to_the_pattern() {
        let redactor = QueryRedactor::new(["tenant"]);
        assert_eq!(
            redactor.redact("tenant=1&token=2&page=3"),
            "tenant=REDACTED&token=REDACTED&page=3"
        );
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
        prop::sample::select(FORMER_DEFAULTS).prop_flat_map(|name| {
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
        // output is a leak. Other names are "n_" and digits, which no secret name is.
        let secret = (secret_name(), "~[A-Za-z0-9%+.=~-]{0,8}", any::<bool>()).prop_map(
            |(name, value, has_value)| Param {
                name,
                secret: true,
                value: has_value.then_some(value),
            },
        );
        let other = ("n_[0-9]{0,6}", prop::option::of("[A-Za-z0-9%+.=-]{0,8}")).prop_map(
            |(name, value)| Param {
                name,
                secret: false,
                value,
            },
        );
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
