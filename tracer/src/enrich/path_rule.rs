//! One path redaction rule: which segment of which paths holds a secret, such as the
//! token of `/reset/TOKEN`. Written as a segment pattern: `/reset/{secret}`, where
//! `*` stands for any one segment and `{secret}` for a segment that is redacted; a
//! leading `**` lets the pattern start at any segment (`**/reset/{secret}` matches
//! `/accounts/reset/TOKEN`). A pattern matches the start of the remaining path, so
//! segments after it are kept; literals ignore ASCII case, as many servers route.
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PathRule {
    /// Starts at any segment (`**`), not only the first.
    anywhere: bool,
    elements: Vec<Element>,
    /// Segments a path needs from where the rule starts: up to its last literal or `*`.
    required: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Element {
    /// Lowercased.
    Literal(String),
    Any,
    Secret,
}

const SECRET: &str = "{secret}";

impl TryFrom<String> for PathRule {
    type Error = String;

    fn try_from(pattern: String) -> Result<Self, String> {
        Self::parse(&pattern)
    }
}

impl PathRule {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let (anywhere, rest) = match pattern.strip_prefix("**") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let Some(rest) = rest.strip_prefix('/') else {
            return Err(format!(
                "path rule {pattern:?} does not start with `/` or `**/`"
            ));
        };
        let elements = rest
            .split('/')
            .map(|segment| match segment {
                "*" => Ok(Element::Any),
                SECRET => Ok(Element::Secret),
                "" => Err(format!("path rule {pattern:?} has an empty segment")),
                s if s.contains(['*', '{', '}']) => Err(format!(
                    "path rule {pattern:?}: a segment is a literal, `*` or `{SECRET}`, not {s:?}"
                )),
                s => Ok(Element::Literal(s.to_ascii_lowercase())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !elements.contains(&Element::Secret) {
            return Err(format!(
                "path rule {pattern:?} names no segment to redact (`{SECRET}`)"
            ));
        }
        let required = elements
            .iter()
            .rposition(|e| *e != Element::Secret)
            .map_or(0, |last| last + 1);
        Ok(Self {
            anywhere,
            elements,
            required,
        })
    }

    /// Marks in `redact` the segments this rule says are secret. `names` are the
    /// segment names to compare with literals (a segment without its `;` parameters).
    /// Work is at most segments x pattern elements.
    /// The length of the literal that every match starts with, if the rule starts
    /// with one: a path without a segment of that length cannot match.
    pub fn first_literal_len(&self) -> Option<usize> {
        match self.elements.first() {
            Some(Element::Literal(literal)) => Some(literal.len()),
            _ => None,
        }
    }

    pub fn mark(&self, names: &[&str], redact: &mut [bool]) {
        // Only starts that leave the rule's required segments can match: most paths are
        // shorter than any rule, or have few such starts.
        let Some(last_start) = names.len().checked_sub(self.required) else {
            return;
        };
        let starts = if self.anywhere {
            (last_start + 1).min(names.len())
        } else {
            1
        };
        for start in 0..starts {
            if self.matches_at(names, start) {
                for (j, element) in self.elements.iter().enumerate() {
                    if *element == Element::Secret
                        && let Some(slot) = redact.get_mut(start + j)
                    {
                        *slot = true;
                    }
                }
            }
        }
    }

    /// Literals and `*` must meet segments; a path may end where only `{secret}`s remain
    /// (nothing is left to hide there).
    fn matches_at(&self, names: &[&str], start: usize) -> bool {
        self.elements
            .iter()
            .enumerate()
            .all(|(j, element)| match (element, names.get(start + j)) {
                (Element::Secret, _) => true,
                (_, None) => false,
                (Element::Any, Some(_)) => true,
                (Element::Literal(literal), Some(name)) => literal.eq_ignore_ascii_case(name),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(rule: &str, path: &[&str]) -> Vec<bool> {
        let mut redact = vec![false; path.len()];
        PathRule::parse(rule).unwrap().mark(path, &mut redact);
        redact
    }

    #[test]
    fn marks_the_secret_segment() {
        assert_eq!(
            marked("/reset/{secret}", &["Reset", "T", "x"]),
            [false, true, false]
        );
        assert_eq!(marked("/reset/{secret}", &["a", "reset", "T"]), [false; 3]);
        assert_eq!(
            marked("**/reset/{secret}", &["a", "reset", "T"]),
            [false, false, true]
        );
        assert_eq!(
            marked("/u/*/keys/{secret}", &["u", "7", "keys", "K"]),
            [false, false, false, true]
        );
        assert_eq!(marked("/reset/{secret}", &["reset"]), [false]);
        assert_eq!(
            marked("**/reset/{secret}", &["reset", "A", "reset", "B"]),
            [false, true, false, true]
        );
    }

    #[test]
    fn rejects_patterns_that_redact_nothing_or_are_malformed() {
        for (pattern, needle) in [
            ("reset/{secret}", "start"),
            ("/reset", "no segment"),
            ("/a//{secret}", "empty"),
            ("/a*/{secret}", "literal"),
            ("**reset/{secret}", "start"),
        ] {
            let message = PathRule::parse(pattern).unwrap_err();
            assert!(message.contains(needle), "{pattern}: {message}");
        }
    }
}
