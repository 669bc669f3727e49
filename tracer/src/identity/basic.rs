//! `Authorization: Basic`: the user name, never the password.
use base64::{Engine as _, engine::general_purpose::STANDARD};

/// User names longer than this are cut: a name is an identifier, not a payload.
pub const MAX_USER_CHARS: usize = 256;

/// The user name of a Basic credential (`base64(user:password)`), or None when the
/// credential does not decode, is not UTF-8 or has an empty user. The decoded buffer,
/// which holds the password, is zeroed before it is dropped.
pub fn user_name(credential: &[u8]) -> Option<String> {
    let mut decoded = STANDARD.decode(credential.trim_ascii()).ok()?;
    let user = decoded
        .iter()
        .position(|&b| b == b':')
        .and_then(|colon| std::str::from_utf8(&decoded[..colon]).ok())
        .filter(|u| !u.is_empty())
        .map(|u| u.chars().take(MAX_USER_CHARS).collect());
    decoded.fill(0);
    user
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_user_only() {
        // alice:S3CRET:with:colons
        let cred = STANDARD.encode("alice:S3CRET:with:colons");
        assert_eq!(user_name(cred.as_bytes()).as_deref(), Some("alice"));
        assert_eq!(user_name(STANDARD.encode(":pw").as_bytes()), None);
        assert_eq!(user_name(STANDARD.encode("nocolon").as_bytes()), None);
        assert_eq!(user_name(b"%%%not base64"), None);
    }
}
