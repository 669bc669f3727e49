//! `Authorization: Basic`: the user name, never the password; and not the user name
//! either when it is itself a token (APIs that take their key as the user name).
use base64::{Engine as _, engine::general_purpose::STANDARD};

use super::{
    fingerprint::{Fingerprint, Fingerprinter},
    token_shape,
};

/// User names longer than this are cut: a name is an identifier, not a payload.
pub const MAX_USER_CHARS: usize = 256;

/// Who a Basic credential names.
#[derive(Debug, PartialEq, Eq)]
pub enum BasicUser {
    Name(String),
    /// The user name has the shape of a token: its fingerprint, taken over the whole
    /// name so it matches the same key sent as a bearer token or API key header.
    Token(Fingerprint),
}

/// The user of a Basic credential (`base64(user:password)`), or None when the
/// credential does not decode, is not UTF-8 or has an empty user. The decoded buffer,
/// which holds the password (and perhaps a token as the user), is zeroed before it is
/// dropped.
pub fn user(credential: &[u8], fingerprinter: &Fingerprinter) -> Option<BasicUser> {
    let mut decoded = STANDARD.decode(credential.trim_ascii()).ok()?;
    let user = decoded
        .iter()
        .position(|&b| b == b':')
        .and_then(|colon| std::str::from_utf8(&decoded[..colon]).ok())
        .filter(|u| !u.is_empty())
        .map(|u| {
            if token_shape::looks_like_token(u) {
                BasicUser::Token(fingerprinter.fingerprint(u.as_bytes()))
            } else {
                BasicUser::Name(u.chars().take(MAX_USER_CHARS).collect())
            }
        });
    decoded.fill(0);
    user
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_of(plain: &str) -> Option<BasicUser> {
        let f = Fingerprinter::from_secret(b"k");
        user(STANDARD.encode(plain).as_bytes(), &f)
    }

    #[test]
    fn takes_the_user_only() {
        assert_eq!(
            user_of("alice:S3CRET:with:colons"),
            Some(BasicUser::Name("alice".into()))
        );
        assert_eq!(user_of(":pw"), None);
        assert_eq!(user_of("nocolon"), None);
        assert_eq!(
            user(b"%%%not base64", &Fingerprinter::from_secret(b"k")),
            None
        );
    }

    #[test]
    fn a_token_as_user_is_fingerprinted() {
        let f = Fingerprinter::from_secret(b"k");
        for (plain, token) in [
            (
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc:",
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            ),
            (
                "ghp_16C7e42F292c6912E7710c838347Ae178B4a:x-oauth-basic",
                "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            ),
            ("AKIAIOSFODNN7EXAMPLE:secret", "AKIAIOSFODNN7EXAMPLE"),
        ] {
            assert_eq!(
                user_of(plain),
                Some(BasicUser::Token(f.fingerprint(token.as_bytes()))),
                "{plain}"
            );
        }
    }
}
