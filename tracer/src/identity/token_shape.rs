//! Does a string that arrived where a name belongs look like a credential? Many APIs
//! take their key as the Basic user name (`sk_live_...:`, `ghp_...:x-oauth-basic`,
//! `AKIA...`), so a user name can be a secret; such a name is fingerprinted, never
//! written. Known token shapes are recognised by prefix; anything else long, random
//! looking and built of several character classes is treated as a token too, on the
//! safe side: a person's login name rarely is.

/// Prefixes of well-known API tokens, each with the fewest characters that must follow
/// it, so a name that merely starts like one (`sk-jones`) is not taken for a key.
const TOKEN_PREFIXES: &[(&str, usize)] = &[
    // Stripe secret, restricted and webhook keys.
    ("sk_live_", 10),
    ("sk_test_", 10),
    ("rk_live_", 10),
    ("rk_test_", 10),
    ("whsec_", 10),
    // GitHub personal, OAuth, user-to-server, server-to-server and refresh tokens.
    ("ghp_", 20),
    ("gho_", 20),
    ("ghu_", 20),
    ("ghs_", 20),
    ("ghr_", 20),
    ("github_pat_", 20),
    ("glpat-", 16),
    // Slack bot, user, app and refresh tokens.
    ("xoxb-", 10),
    ("xoxp-", 10),
    ("xoxa-", 10),
    ("xoxr-", 10),
    ("xoxs-", 10),
    ("xapp-", 10),
    // OpenAI and similar `sk-` keys, npm, PyPI, Google API keys, SendGrid, Hugging Face.
    ("sk-", 20),
    ("npm_", 20),
    ("pypi-", 20),
    ("AIza", 30),
    ("SG.", 20),
    ("hf_", 20),
];

/// AWS access key ids: a four-letter kind, then 16 upper-case letters and digits.
const AWS_KEY_KINDS: &[&str] = &["AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "AIPA"];
const AWS_KEY_LEN: usize = 20;

/// Shortest string judged by its randomness alone.
pub const MIN_RANDOM_LEN: usize = 20;
/// From this length, a run of letters and digits alone (hex, lower-case base32 keys)
/// is judged too; shorter strings need upper case, lower case and digits.
const LONG_RANDOM_LEN: usize = 32;
/// Bits per character. Random base62 of 20 characters averages about 4.0 and falls
/// below 3.3 about once in 10,000 draws.
const MIN_ENTROPY_BITS: f64 = 3.3;
/// For long letter-and-digit runs: random hex of 32 digits averages 3.6 and falls
/// below 3.0 about once in 10,000 draws.
const MIN_LONG_ENTROPY_BITS: f64 = 3.0;

/// True when `s` has the shape of a token rather than of a name.
pub fn looks_like_token(s: &str) -> bool {
    known_shape(s) || looks_random(s)
}

fn known_shape(s: &str) -> bool {
    let prefixed = TOKEN_PREFIXES.iter().any(|(prefix, min_rest)| {
        s.strip_prefix(prefix)
            .is_some_and(|rest| rest.len() >= *min_rest && rest.bytes().all(is_token_byte))
    });
    let aws = s.len() == AWS_KEY_LEN
        && AWS_KEY_KINDS.iter().any(|kind| s.starts_with(kind))
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    // A JWT: base64url of `{"` starts `eyJ`, and it has three dot-separated parts.
    let jwt = s.starts_with("eyJ") && s.split('.').count() == 3 && s.bytes().all(is_token_byte);
    prefixed || aws || jwt
}

fn looks_random(s: &str) -> bool {
    if s.len() < MIN_RANDOM_LEN || !s.bytes().all(is_token_byte) || is_email(s) {
        return false;
    }
    let lower = s.bytes().any(|b| b.is_ascii_lowercase());
    let upper = s.bytes().any(|b| b.is_ascii_uppercase());
    let digit = s.bytes().any(|b| b.is_ascii_digit());
    let entropy = shannon_entropy(s.as_bytes());
    let short_random = lower && upper && digit && entropy >= MIN_ENTROPY_BITS;
    // Separators (`-`, `.`, `_`) make word lists like `deploy-bot-2024-...`; a long run
    // without them is a key.
    let long_random = s.len() >= LONG_RANDOM_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric())
        && (lower || upper)
        && digit
        && entropy >= MIN_LONG_ENTROPY_BITS;
    short_random || long_random
}

/// Characters of base64, base64url, hex and the separators tokens use.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.+/=~".contains(&b)
}

/// `local@domain.tld`: a login name, however long.
fn is_email(s: &str) -> bool {
    s.split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
}

/// Shannon entropy of the byte distribution, in bits per byte.
fn shannon_entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_token_shapes() {
        for token in [
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "sk_test_51H8abcdEFGH",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "github_pat_11ABCDEFG0123456789_abcdefghij",
            "xoxb-1234567890-1234567890123-AbCdEf",
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
            "glpat-xxxxxxxxxxxxxxxxxxxx",
            "AIzaSyA-1234567890abcdefghijklmnopq",
        ] {
            assert!(looks_like_token(token), "{token}");
        }
    }

    #[test]
    fn random_strings_are_tokens() {
        for token in [
            "q8Zr2LmX0vTe7KpW3nYb",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
            "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==",
            "3a7bd3e2360a3d29eea436fcfb7e44c735d117c4",
        ] {
            assert!(looks_like_token(token), "{token}");
        }
    }

    #[test]
    fn names_are_not_tokens() {
        for name in [
            "alice",
            "bob",
            "Administrator",
            "alice.smith@example.com",
            "Alice.Smith2024@Example.com",
            "service-account-prod-01",
            "john.doe.contractor.2024",
            "sk-jones",
            "ghp_short",
            "AKIA-not-a-key",
            "x-access-token",
            "deployment-bot-for-staging-cluster",
            "deployment-bot-for-staging-cluster-0042",
            "eyJust a name",
        ] {
            assert!(!looks_like_token(name), "{name}");
        }
    }

    #[test]
    fn entropy_of_known_strings() {
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
    }
}
