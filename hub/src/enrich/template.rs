//! `url.template`: the path with its variable segments folded, so `/orders/42` and
//! `/orders/43` count as one endpoint even without a catalog rule. Numeric ids,
//! UUIDs, long hex strings and e-mail addresses become `{id}`, `{uuid}`, `{hex}` and
//! `{email}`. Paths come from clients, so the work and the result are bounded.
const MAX_TEMPLATE_BYTES: usize = 512;
/// Hex strings this long are ids or digests, not words (`/cafe` stays).
const MIN_HEX_LEN: usize = 16;

pub fn template(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut out = String::with_capacity(path.len().min(MAX_TEMPLATE_BYTES));
    for (n, segment) in path.split('/').enumerate() {
        let folded = fold(segment);
        let separator = usize::from(n > 0);
        if out.len() + separator + folded.len() > MAX_TEMPLATE_BYTES {
            out.push('…');
            return out;
        }
        if n > 0 {
            out.push('/');
        }
        out.push_str(folded);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn fold(segment: &str) -> &str {
    if segment.is_empty() || segment.starts_with('{') && segment.ends_with('}') {
        segment
    } else if segment.bytes().all(|b| b.is_ascii_digit()) {
        "{id}"
    } else if is_uuid(segment) {
        "{uuid}"
    } else if segment.len() >= MIN_HEX_LEN && segment.bytes().all(|b| b.is_ascii_hexdigit()) {
        "{hex}"
    } else if is_email(segment) {
        "{email}"
    } else {
        segment
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `local@domain.tld`, also with the `@` percent-encoded.
fn is_email(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let Some((local, domain)) = lower.split_once('@').or_else(|| lower.split_once("%40")) else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ids_uuids_hex_and_emails_fold() {
        assert_eq!(template("/orders/42"), "/orders/{id}");
        assert_eq!(
            template("/orders/42/items/7?x=1"),
            "/orders/{id}/items/{id}"
        );
        assert_eq!(
            template("/u/0f8fad5b-d9cb-469f-a165-70867728950e"),
            "/u/{uuid}"
        );
        assert_eq!(
            template("/blob/9f86d081884c7d659a2feaa0c55ad015"),
            "/blob/{hex}"
        );
        assert_eq!(
            template("/users/alice@example.com/keys"),
            "/users/{email}/keys"
        );
        assert_eq!(template("/users/alice%40example.com"), "/users/{email}");
        assert_eq!(template("/cafe/v2/index.html"), "/cafe/v2/index.html");
        assert_eq!(template(""), "/");
        assert_eq!(template("/"), "/");
    }

    #[test]
    fn a_hostile_path_gives_a_bounded_template() {
        let path = "/a".repeat(100_000);
        let t = template(&path);
        assert!(t.len() <= MAX_TEMPLATE_BYTES + '…'.len_utf8());
        assert!(t.ends_with('…'));
    }

    proptest! {
        #[test]
        fn never_panics_and_is_idempotent(path in "\\PC{0,300}") {
            let once = template(&path);
            prop_assert!(once.len() <= MAX_TEMPLATE_BYTES + '…'.len_utf8());
            if !once.ends_with('…') {
                prop_assert_eq!(template(&once), once.clone());
            }
        }
    }
}
