//! Keeping secrets out of `url.path` and `url.path.normalized`: segments that path
//! rules mark (`/reset/TOKEN`), and the values of `;name=value` path parameters whose
//! names are secret (`;jsessionid=...`), become `REDACTED`, as query values do.
//!
//! Rules are matched on the normalized path, which is what the server routed, so
//! `/x/../reset/TOKEN` or `/%72eset/TOKEN` cannot slip past them; the raw path then
//! loses every segment that decodes to a value redacted in the normalized one.
use std::borrow::Cow;

use smallvec::SmallVec;

use super::{path_rule::PathRule, percent, query::REDACTED, secret_name::SecretNames};

/// Rules on by default: links that carry one-time tokens in the path. Django's
/// `/reset/<uid>/<token>/` puts the token second, hence two segments there.
pub const DEFAULT_PATH_RULES: &[&str] = &[
    "**/reset/{secret}/{secret}",
    "**/password-reset/{secret}/{secret}",
    "**/reset-password/{secret}",
    "**/password/reset/{secret}",
    "**/invite/{secret}",
    "**/invites/{secret}",
    "**/invitation/{secret}",
    "**/invitations/{secret}",
    "**/magic-link/{secret}",
    "**/magic/{secret}",
    "**/verify-email/{secret}",
    "**/confirm-email/{secret}",
    "**/activate/{secret}",
    "**/unsubscribe/{secret}",
];

#[derive(Debug, Clone, Default)]
pub struct PathRedactor {
    rules: Vec<PathRule>,
    names: SecretNames,
}

impl PathRedactor {
    /// `rules` in addition to [`DEFAULT_PATH_RULES`] when `defaults`; path parameter
    /// names are judged like query parameter names, with the same `extra_names`.
    pub fn new<I, S>(defaults: bool, rules: &[PathRule], extra_names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let builtin = DEFAULT_PATH_RULES
            .iter()
            .filter(|_| defaults)
            .filter_map(|p| PathRule::parse(p).ok());
        Self {
            rules: builtin.chain(rules.iter().cloned()).collect(),
            names: SecretNames::new(extra_names),
        }
    }

    /// `(raw, normalized)` with secrets replaced; borrowed when nothing changed.
    /// `normalized` is `raw` after normalization (see `record`).
    pub fn redact<'a>(
        &self,
        raw: &'a str,
        normalized: Cow<'a, str>,
    ) -> (Cow<'a, str>, Cow<'a, str>) {
        // The lists borrow `normalized`, which is returned below: they end in this block.
        let (new_raw, new_normalized) = {
            // Inline up to 16 segments: this runs for every record, and paths are short.
            let segments: SmallVec<[&str; 16]> = normalized.split('/').collect();
            let names: SmallVec<[&str; 16]> = segments
                .iter()
                .map(|s| s.split(';').next().unwrap_or_default())
                .collect();
            let mut marked: SmallVec<[bool; 16]> = smallvec::smallvec![false; segments.len()];
            // The first piece is what precedes the leading `/`.
            let names = names.get(1..).unwrap_or_default();
            // Which segment lengths the path has (63 for any longer): a rule that starts
            // with a literal of a length no segment has cannot match, and is skipped
            // without comparing. Most paths meet no rule at all.
            let lengths = names
                .iter()
                .fold(0u64, |mask, name| mask | 1 << name.len().min(63));
            for rule in &self.rules {
                let possible = rule
                    .first_literal_len()
                    .is_none_or(|len| lengths & 1 << len.min(63) != 0);
                if possible {
                    rule.mark(names, &mut marked[1..]);
                }
            }
            let secrets: SmallVec<[&str; 4]> = segments
                .iter()
                .zip(&marked)
                .filter(|(s, m)| **m && !s.is_empty())
                .map(|(s, _)| *s)
                .collect();
            // Nearly every path has no marked segment and no `;` parameter: then neither
            // is rebuilt (two allocations per record, most of this function's cost).
            let new_normalized = (marked.contains(&true) || normalized.contains(';'))
                .then(|| self.rebuild(segments.iter().copied(), |i, _| marked[i]))
                .flatten();
            let new_raw = (!secrets.is_empty() || raw.contains(';'))
                .then(|| {
                    self.rebuild(raw.split('/'), |_, segment| {
                        !secrets.is_empty()
                            && secrets.contains(&&*percent::decode_unreserved(segment))
                    })
                })
                .flatten();
            (new_raw, new_normalized)
        };
        let normalized = match new_normalized {
            Some(changed) => Cow::Owned(changed),
            None => normalized,
        };
        (new_raw.map_or(Cow::Borrowed(raw), Cow::Owned), normalized)
    }

    /// The segments joined by `/`, each replaced by `REDACTED` when `secret(i, segment)`
    /// or else with its secret parameters redacted; None when nothing changed.
    fn rebuild<'s>(
        &self,
        segments: impl Iterator<Item = &'s str>,
        secret: impl Fn(usize, &str) -> bool,
    ) -> Option<String> {
        let mut out = String::new();
        let mut changed = false;
        for (i, segment) in segments.enumerate() {
            if i > 0 {
                out.push('/');
            }
            if !segment.is_empty() && secret(i, segment) {
                out.push_str(REDACTED);
                changed = true;
            } else {
                changed |= self.push_params_redacted(segment, &mut out);
            }
        }
        changed.then_some(out)
    }

    /// Appends `segment` with the values of its secret `;name=value` parameters
    /// replaced; true when one was.
    fn push_params_redacted(&self, segment: &str, out: &mut String) -> bool {
        let mut changed = false;
        for (i, piece) in segment.split(';').enumerate() {
            if i > 0 {
                out.push(';');
            }
            match piece.split_once('=') {
                Some((name, value))
                    if i > 0
                        && !value.is_empty()
                        && self.names.is_secret(&percent::decode(name.as_bytes())) =>
                {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                    changed = true;
                }
                _ => out.push_str(piece),
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(raw: &str, normalized: &str) -> (String, String) {
        let redactor = PathRedactor::new(true, &[], ["tenant"]);
        let (r, n) = redactor.redact(raw, Cow::Owned(normalized.to_owned()));
        (r.into_owned(), n.into_owned())
    }

    #[test]
    fn default_rules_redact_token_segments() {
        for (path, expected) in [
            ("/reset/T0K", "/reset/REDACTED"),
            (
                "/accounts/reset/MQ/T0K/",
                "/accounts/reset/REDACTED/REDACTED/",
            ),
            ("/password-reset/T0K", "/password-reset/REDACTED"),
            ("/invite/T0K/accept", "/invite/REDACTED/accept"),
            ("/magic-link/T0K", "/magic-link/REDACTED"),
            ("/Invite/T0K", "/Invite/REDACTED"),
            ("/invite", "/invite"),
        ] {
            assert_eq!(redact(path, path), (expected.into(), expected.into()));
        }
    }

    #[test]
    fn secret_path_parameters() {
        assert_eq!(
            redact(
                "/app;jsessionid=S1/x;v=2;token=T",
                "/app;jsessionid=S1/x;v=2;token=T"
            )
            .0,
            "/app;jsessionid=REDACTED/x;v=2;token=REDACTED"
        );
        assert_eq!(redact("/a;tenant=7", "/a;tenant=7").0, "/a;tenant=REDACTED");
        assert_eq!(
            redact("/a;jsessionid=", "/a;jsessionid=").0,
            "/a;jsessionid="
        );
    }

    #[test]
    fn rules_see_through_encoding_and_dot_segments() {
        assert_eq!(
            redact("/x/../%72eset/T%30K", "/reset/T0K"),
            ("/x/../%72eset/REDACTED".into(), "/reset/REDACTED".into())
        );
    }

    #[test]
    fn custom_rules_and_defaults_off() {
        let rule = PathRule::parse("/s/{secret}").unwrap();
        let only_custom = PathRedactor::new(false, std::slice::from_ref(&rule), [""; 0]);
        let (raw, _) = only_custom.redact("/s/x/reset/T", Cow::Borrowed("/s/x/reset/T"));
        assert_eq!(raw, "/s/REDACTED/reset/T");
    }

    #[test]
    fn rules_are_skipped_only_when_no_segment_has_their_literal_length() {
        let long = "l".repeat(70);
        let rules = [
            PathRule::parse(&format!("**/{long}/{{secret}}")).unwrap(),
            PathRule::parse("/*/k/{secret}").unwrap(),
            PathRule::parse("**/KEY/{secret}").unwrap(),
        ];
        let redactor = PathRedactor::new(false, &rules, [""; 0]);
        let redact = |path: &str| redactor.redact(path, Cow::Borrowed(path)).0.into_owned();
        // A literal longer than the length mask holds.
        assert_eq!(
            redact(&format!("/a/{long}/t")),
            format!("/a/{long}/REDACTED")
        );
        // A rule that starts with `*` is always tried.
        assert_eq!(redact("/x/k/t"), "/x/k/REDACTED");
        // Case-insensitive, and a segment of another length does not hide the match.
        assert_eq!(redact("/abcdef/Key/t"), "/abcdef/Key/REDACTED");
        assert_eq!(redact("/keys/t"), "/keys/t");
    }

    #[test]
    fn borrows_when_nothing_is_secret() {
        let redactor = PathRedactor::new(true, &[], [""; 0]);
        let (raw, normalized) = redactor.redact("/a/b;v=1", Cow::Borrowed("/a/b;v=1"));
        assert!(matches!(raw, Cow::Borrowed(_)) && matches!(normalized, Cow::Borrowed(_)));
    }
}
