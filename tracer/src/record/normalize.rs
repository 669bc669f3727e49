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
    if !path.starts_with('/') {
        return Cow::Borrowed(path);
    }
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
