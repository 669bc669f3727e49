//! Percent-decoding (RFC 3986 section 2.1) as servers apply it before they compare
//! names and paths, so redaction and normalization see what the server saw.
use std::borrow::Cow;

/// Decodes every `%XX`; a `%` not followed by two hex digits stays literal.
pub fn decode(input: &[u8]) -> Cow<'_, [u8]> {
    decode_where(input, |_| true)
}

/// Decodes only escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`), which name
/// the same resource either way (RFC 3986 section 6.2.2.2). Other escapes, such as
/// `%2F`, change meaning when decoded and are kept. The result is UTF-8 when the
/// input is, since only ASCII is decoded.
pub fn decode_unreserved(input: &str) -> Cow<'_, str> {
    match decode_where(input.as_bytes(), is_unreserved) {
        Cow::Borrowed(_) => Cow::Borrowed(input),
        Cow::Owned(bytes) => Cow::Owned(String::from_utf8(bytes).unwrap_or_else(|e| {
            // Unreachable: only ASCII bytes replaced escapes in a UTF-8 string.
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        })),
    }
}

pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn decode_where(input: &[u8], wanted: impl Fn(u8) -> bool) -> Cow<'_, [u8]> {
    if !input.contains(&b'%') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let escaped = match input.get(i..i + 3) {
            Some([b'%', high, low]) => hex_value(*high)
                .zip(hex_value(*low))
                .map(|(h, l)| h << 4 | l)
                .filter(|&b| wanted(b)),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(input[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_valid_escapes_only() {
        assert_eq!(&*decode(b"a%41%2f%zz%4"), b"aA/%zz%4");
        assert!(matches!(decode(b"plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn decodes_unreserved_only() {
        assert_eq!(
            decode_unreserved("/%61dmin%2F%7e%2E%20%C3%A9"),
            "/admin%2F~.%20%C3%A9"
        );
        assert!(matches!(decode_unreserved("/a%2Fb"), Cow::Owned(_)));
        assert!(matches!(decode_unreserved("/ab"), Cow::Borrowed(_)));
    }
}
