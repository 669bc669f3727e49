//! Text for stderr, where every layer reports: nothing a request carried may forge a log
//! line or drive the terminal.

/// Makes a string safe for line-oriented diagnostics (stderr): records are JSON and serde
/// escapes control characters there, but a raw CR/LF or ESC in a log line can forge entries or
/// drive the terminal. Control characters, Unicode line/paragraph separators and bidirectional
/// overrides become U+FFFD; a string longer than `max` chars is cut to `max` chars, the last of
/// which is `…`.
pub fn sanitize_for_log(s: &str, max: usize) -> String {
    let truncated = s.chars().nth(max).is_some();
    let kept = if truncated {
        max.saturating_sub(1)
    } else {
        max
    };
    let mut out: String = s
        .chars()
        .take(kept)
        .map(|c| if is_unsafe_in_log(c) { '\u{fffd}' } else { c })
        .collect();
    if truncated && max > 0 {
        out.push('…');
    }
    out
}

fn is_unsafe_in_log(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_control_characters() {
        assert_eq!(
            sanitize_for_log("a\r\nb\x1b[31mc\u{7f}d\u{85}", 100),
            "a\u{fffd}\u{fffd}b\u{fffd}[31mc\u{fffd}d\u{fffd}"
        );
        assert_eq!(
            sanitize_for_log("x\u{2028}y\u{202e}z", 100),
            "x\u{fffd}y\u{fffd}z"
        );
    }

    #[test]
    fn truncates_to_max_chars_with_ellipsis() {
        assert_eq!(sanitize_for_log("héllo wörld", 5), "héll…");
        assert_eq!(sanitize_for_log("héllo", 5), "héllo");
        assert_eq!(sanitize_for_log("héllo", 1), "…");
        assert_eq!(sanitize_for_log("héllo", 0), "");
        assert_eq!(sanitize_for_log("", 0), "");
    }
}
