//! Characters a JSON encoder may leave raw but a log viewer must not see raw: line and
//! paragraph separators and NEL, which some viewers and JavaScript-based tools treat
//! as line breaks (a forged line), and bidirectional controls, which reorder what is
//! shown (a name or path that displays as another). They can only arrive inside
//! strings, where `\uXXXX` means the same character to every JSON reader.

/// UTF-8 encodings of the characters written as escapes, and their escapes.
const ESCAPED: &[(&[u8], &[u8])] = &[
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\x8e", b"\\u200e"),
    (b"\xe2\x80\x8f", b"\\u200f"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
    (b"\xe2\x80\xaa", b"\\u202a"),
    (b"\xe2\x80\xab", b"\\u202b"),
    (b"\xe2\x80\xac", b"\\u202c"),
    (b"\xe2\x80\xad", b"\\u202d"),
    (b"\xe2\x80\xae", b"\\u202e"),
    (b"\xe2\x81\xa6", b"\\u2066"),
    (b"\xe2\x81\xa7", b"\\u2067"),
    (b"\xe2\x81\xa8", b"\\u2068"),
    (b"\xe2\x81\xa9", b"\\u2069"),
];

/// Rewrites those characters in `out[start..]`, JSON text serialized by serde_json
/// (valid UTF-8, so 0xC2 and 0xE2 there always start a character).
pub fn escape_invisible_breaks(out: &mut Vec<u8>, start: usize) {
    // Nearly every record has neither lead byte: a vectorised search keeps that path
    // cheap (a plain byte loop here was 7% of the tracer's CPU at saturation).
    if memchr::memchr2(0xc2, 0xe2, &out[start..]).is_none() {
        return;
    }
    let json = out.split_off(start);
    let mut i = 0;
    while i < json.len() {
        let rest = &json[i..];
        match ESCAPED.iter().find(|(raw, _)| rest.starts_with(raw)) {
            Some((raw, escape)) => {
                out.extend_from_slice(escape);
                i += raw.len();
            }
            None => {
                out.push(json[i]);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_breaks_and_bidi_controls_only() {
        let mut out = b"prefix\xe2\x80\xa8".to_vec();
        let value =
            "a\u{2028}b\u{2029}c\u{85}d\u{202e}e\u{2066}f\u{2069}g\u{200e}h\u{200f}é€\u{2027}";
        serde_json::to_writer(&mut out, &serde_json::json!({ "k": value })).unwrap();
        escape_invisible_breaks(&mut out, 9);
        let json = &out[9..];
        assert_eq!(
            std::str::from_utf8(json).unwrap(),
            r#"{"k":"a\u2028b\u2029c\u0085d\u202ee\u2066f\u2069g\u200eh\u200fé€"#.to_owned()
                + "\u{2027}\"}"
        );
        assert_eq!(
            &out[..9],
            b"prefix\xe2\x80\xa8",
            "bytes before start are kept"
        );
        let back: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(back["k"], value, "the escapes mean the same characters");
    }

    #[test]
    fn leaves_plain_json_alone() {
        let mut out = br#"{"a":"b"}"#.to_vec();
        escape_invisible_breaks(&mut out, 0);
        assert_eq!(out, br#"{"a":"b"}"#);
    }
}
