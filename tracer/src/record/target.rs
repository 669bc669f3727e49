//! Splits an HTTP request-target (RFC 9112 section 3.2) into the parts a record names.

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Target<'a> {
    /// Host of an absolute-form or authority-form target.
    pub authority: Option<&'a str>,
    pub path: Option<&'a str>,
    pub query: Option<&'a str>,
}

pub fn split(target: &str) -> Target<'_> {
    if target.starts_with('/') || target == "*" {
        return path_and_query(None, target);
    }
    if let Some((scheme, rest)) = target.split_once("://")
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let authority = without_userinfo(authority);
        let tail = if tail.is_empty() { "/" } else { tail };
        return path_and_query(Some(authority), tail);
    }
    // authority-form (CONNECT host:port).
    Target {
        authority: Some(without_userinfo(target)),
        path: None,
        query: None,
    }
}

/// `user:password@host:port` -> `host:port`. Userinfo is a credential wherever it is
/// sent (absolute-form targets, CONNECT targets, `Host` headers): never reported.
pub fn without_userinfo(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

fn path_and_query<'a>(authority: Option<&'a str>, target: &'a str) -> Target<'a> {
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    Target {
        authority,
        path: Some(if path.is_empty() { "/" } else { path }),
        query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form() {
        assert_eq!(
            split("/a/b?x=1&y"),
            Target {
                authority: None,
                path: Some("/a/b"),
                query: Some("x=1&y")
            }
        );
        assert_eq!(split("/").query, None);
        assert_eq!(split("/p?").query, Some(""));
    }

    #[test]
    fn absolute_form_drops_userinfo() {
        let t = split("http://user:pw@example.com:80/x?q=1");
        assert_eq!(t.authority, Some("example.com:80"));
        assert_eq!((t.path, t.query), (Some("/x"), Some("q=1")));
        assert_eq!(split("http://h?q").path, Some("/"));
        assert_eq!(split("http://a@b@h/").authority, Some("h"));
    }

    #[test]
    fn connect_targets_and_hosts_drop_userinfo() {
        assert_eq!(
            split("u:S3CRET@example.com:443").authority,
            Some("example.com:443")
        );
        assert_eq!(without_userinfo("u:S3CRET@a"), "a");
        assert_eq!(without_userinfo("a:80"), "a:80");
    }

    #[test]
    fn authority_and_asterisk_forms() {
        assert_eq!(split("example.com:443").authority, Some("example.com:443"));
        assert_eq!(split("example.com:443").path, None);
        assert_eq!(split("*").path, Some("*"));
    }
}
