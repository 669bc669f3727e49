//! Finding API keys and session cookies in a request, by configured names.
use std::borrow::Cow;

use crate::http::Headers;

/// First non-empty value of any of `names` among the headers (names ignore case).
pub fn header_value<'h>(headers: &'h Headers, names: &[String]) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|(n, v)| {
            !v.trim_ascii().is_empty() && names.iter().any(|x| x.as_bytes().eq_ignore_ascii_case(n))
        })
        .map(|(_, v)| v.trim_ascii())
}

/// Percent-decoded value of the first query parameter named (after percent-decoding,
/// ignoring ASCII case) like one of `names`, so a key sent in a query and in a header
/// has one fingerprint. `+` is decoded as a space, as form encoding does.
pub fn query_value<'q>(query: &'q str, names: &[String]) -> Option<Cow<'q, [u8]>> {
    query.split(['&', ';']).find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if value.is_empty() {
            return None;
        }
        let name = percent_decode(name.as_bytes());
        names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(&name))
            .then(|| percent_decode(value.as_bytes()))
    })
}

/// Value of the first cookie whose name is one of `names` (ignoring ASCII case), over
/// every `Cookie` header.
pub fn cookie_value<'h>(headers: &'h Headers, names: &[String]) -> Option<&'h [u8]> {
    headers
        .get_all("cookie")
        .flat_map(|v| v.split(|&b| b == b';'))
        .find_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            (!value.is_empty()
                && names
                    .iter()
                    .any(|n| n.as_bytes().eq_ignore_ascii_case(name)))
            .then_some(value)
        })
}

fn percent_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(input);
    }
    let hex = |d: u8| char::from(d).to_digit(16).map(|v| v as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match (input[i], input.get(i + 1..i + 3)) {
            (b'%', Some(&[h, l])) if hex(h).is_some() && hex(l).is_some() => {
                out.push(hex(h).unwrap_or(0) << 4 | hex(l).unwrap_or(0));
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_support::head;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_keys_in_headers_and_queries() {
        let h = head("/", &[("x-api-key", " k1 "), ("Other", "x")]).headers;
        assert_eq!(header_value(&h, &names(&["X-API-Key"])), Some(&b"k1"[..]));
        assert_eq!(header_value(&h, &names(&["X-Token"])), None);
        let q = query_value("a=1&Api%5Fkey=k%2B1+2&api_key=second", &names(&["api_key"]));
        assert_eq!(q.as_deref(), Some(&b"k+1 2"[..]));
        assert_eq!(query_value("api_key=&x=1", &names(&["api_key"])), None);
    }

    #[test]
    fn finds_session_cookies() {
        let h = head(
            "/",
            &[
                ("Cookie", "theme=dark; SESSIONID=abc"),
                ("Cookie", "sid=\"q\""),
            ],
        )
        .headers;
        assert_eq!(cookie_value(&h, &names(&["sessionid"])), Some(&b"abc"[..]));
        assert_eq!(cookie_value(&h, &names(&["sid"])), Some(&b"q"[..]));
        assert_eq!(cookie_value(&h, &names(&["theme2"])), None);
    }
}
