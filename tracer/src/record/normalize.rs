//! `url.path.normalized`: the path as a server routes it, the way nginx normalizes a
//! URI before matching locations, so a query for `/admin` also finds `/%61dmin`,
//! `//admin` and `/x/../admin`. Only escapes of unreserved characters are decoded
//! (decoding `%2F` would change which resource is meant); then duplicate slashes are
//! merged and `.` and `..` segments removed, never climbing above the root. One pass
//! over the path: work and memory are linear in its length, whatever it holds.
use std::borrow::Cow;

use crate::enrich::percent;

/// The normalized form of an origin-form path; other targets (`*`) are returned as
/// they are. Borrows when the path is already normal.
pub fn normalize(path: &str) -> Cow<'_, str> {
    if !path.starts_with('/') || is_normal(path) {
        return Cow::Borrowed(path);
    }
    rebuild(path)
}

/// Whether `path` (which starts with `/`) is its own normal form, without allocating:
/// nearly every path is, and this runs for every record. No escape (one might decode to
/// an unreserved character), no `.` or `..` segment, and no empty segment but a
/// trailing one.
fn is_normal(path: &str) -> bool {
    if path.contains('%') {
        return false;
    }
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if matches!(segment, "." | "..") || (segment.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// The normal form of a path that is not normal already.
fn rebuild(path: &str) -> Cow<'_, str> {
    let decoded = percent::decode_unreserved(path);
    let mut kept: Vec<&str> = Vec::new();
    // Whether the path ends in a directory (`/a/`, `/a/.`, `/a/b/..`).
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_nginx() {
        for (path, expected) in [
            ("/%61dmin", "/admin"),
            ("/x/../admin", "/admin"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/./a/./b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../../a", "/a"),
            ("/%2e%2E/admin", "/admin"),
            ("/a/%2F/b", "/a/%2F/b"),
            ("/a%20b/%7Euser", "/a%20b/~user"),
            ("/", "/"),
            ("/..", "/"),
            ("/a/", "/a/"),
            ("/é/./ü", "/é/ü"),
            ("*", "*"),
        ] {
            assert_eq!(normalize(path), expected, "{path}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_shortcut_agrees_with_rebuilding(
            path in "/[a/.%2eEF]{0,12}",
        ) {
            proptest::prop_assert_eq!(normalize(&path), rebuild(&path));
        }
    }

    #[test]
    fn borrows_normal_paths() {
        assert!(matches!(normalize("/a/b/c"), Cow::Borrowed(_)));
        assert!(matches!(normalize("/a/"), Cow::Borrowed(_)));
    }

    #[test]
    fn hostile_paths_take_linear_work() {
        let long = format!("/{}admin", "../".repeat(100_000));
        let start = std::time::Instant::now();
        assert_eq!(normalize(&long), "/admin");
        let deep = "/a".repeat(100_000) + &"/..".repeat(100_000);
        assert_eq!(normalize(&deep), "/");
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
