//! The asset catalog: which requests touch which asset, how sensitive it is and who
//! may touch it. A TOML file of rules, tried in order; the first that matches wins.
//!
//! ```toml
//! [[asset]]
//! name = "hr-salaries"
//! dataset = "payroll"
//! owner = "hr@example.com"
//! sensitivity = "restricted"          # public | internal | confidential | restricted
//! allowed_roles = ["hr-admin"]
//! hosts = ["hr.example.com", "*.hr.example.com"]   # optional, globs
//! methods = ["GET", "POST"]                         # optional
//! paths = ["/hr/salaries/**", "/api/v1/employees/{id}/salary"]
//! ```
//!
//! A path pattern is a glob over the raw path: `*` matches within one segment, `**`
//! across segments, and `{name}` is one segment (`/orders/{id}` matches `/orders/42`).
use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("{path}: {detail}")]
    Parse { path: String, detail: String },
    #[error("{path}: asset {asset:?}: {detail}")]
    Rule {
        path: String,
        asset: String,
        detail: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    Public,
    Internal,
    Confidential,
    Restricted,
}

impl Sensitivity {
    pub fn as_str(self) -> &'static str {
        match self {
            Sensitivity::Public => "public",
            Sensitivity::Internal => "internal",
            Sensitivity::Confidential => "confidential",
            Sensitivity::Restricted => "restricted",
        }
    }
}

/// What a matching rule says about the request's asset.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Asset {
    pub name: String,
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    pub sensitivity: Sensitivity,
    #[serde(default)]
    pub allowed_roles: Vec<String>,
    /// Users (`user.id` or `user.name`) allowed whatever their roles.
    #[serde(default)]
    pub allowed_users: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    sensitivity: Sensitivity,
    #[serde(default)]
    allowed_roles: Vec<String>,
    #[serde(default)]
    allowed_users: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    paths: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    asset: Vec<RawRule>,
}

struct Rule {
    asset: Asset,
    hosts: Vec<GlobMatcher>,
    methods: Vec<String>,
    paths: Vec<GlobMatcher>,
}

pub struct Catalog {
    rules: Vec<Rule>,
}

impl Catalog {
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CatalogError::Read {
            path: name.clone(),
            detail: e.to_string(),
        })?;
        Self::parse(&text, &name)
    }

    fn parse(text: &str, name: &str) -> Result<Self, CatalogError> {
        // toml's errors name the line and column.
        let raw: RawCatalog = toml::from_str(text).map_err(|e| CatalogError::Parse {
            path: name.to_owned(),
            detail: e.to_string(),
        })?;
        let rules = raw
            .asset
            .into_iter()
            .map(|r| {
                let bad = |detail: String| CatalogError::Rule {
                    path: name.to_owned(),
                    asset: r.name.clone(),
                    detail,
                };
                if r.paths.is_empty() {
                    return Err(bad("no paths".to_owned()));
                }
                let names = [
                    ("name", Some(&r.name)),
                    ("dataset", r.dataset.as_ref()),
                    ("owner", r.owner.as_ref()),
                ];
                if let Some(why) = names
                    .into_iter()
                    .find_map(|(what, value)| value.and_then(|v| super::unstorable(what, v)))
                {
                    return Err(bad(why));
                }
                let hosts = r
                    .hosts
                    .iter()
                    .map(|h| {
                        GlobBuilder::new(h)
                            .case_insensitive(true)
                            .build()
                            .map(|g| g.compile_matcher())
                            .map_err(|e| bad(format!("host {h:?}: {e}")))
                    })
                    .collect::<Result<_, _>>()?;
                let paths = r
                    .paths
                    .iter()
                    .map(|p| path_glob(p).map_err(|e| bad(format!("path {p:?}: {e}"))))
                    .collect::<Result<_, _>>()?;
                Ok(Rule {
                    hosts,
                    methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
                    paths,
                    asset: Asset {
                        name: r.name,
                        dataset: r.dataset,
                        owner: r.owner,
                        sensitivity: r.sensitivity,
                        allowed_roles: r.allowed_roles,
                        allowed_users: r.allowed_users,
                    },
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn find(&self, host: Option<&str>, method: Option<&str>, path: &str) -> Option<&Asset> {
        let host = host.map(|h| h.split(':').next().unwrap_or(h));
        self.rules
            .iter()
            .find(|rule| {
                (rule.hosts.is_empty()
                    || host.is_some_and(|h| rule.hosts.iter().any(|g| g.is_match(h))))
                    && (rule.methods.is_empty()
                        || method.is_some_and(|m| {
                            rule.methods.iter().any(|r| r.eq_ignore_ascii_case(m))
                        }))
                    && rule.paths.iter().any(|g| g.is_match(path))
            })
            .map(|rule| &rule.asset)
    }
}

/// `{name}` becomes `*` (one segment); `*` stays within a segment, `**` crosses them.
fn path_glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    let mut glob = String::with_capacity(pattern.len());
    let mut in_name = false;
    for c in pattern.chars() {
        match c {
            '{' if !in_name => in_name = true,
            '}' if in_name => {
                in_name = false;
                glob.push('*');
            }
            _ if in_name => {}
            _ => glob.push(c),
        }
    }
    Ok(GlobBuilder::new(&glob)
        .literal_separator(true)
        .build()?
        .compile_matcher())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &str = r#"
[[asset]]
name = "hr-salaries"
dataset = "payroll"
owner = "hr@example.com"
sensitivity = "restricted"
allowed_roles = ["hr-admin"]
paths = ["/hr/salaries/**", "/hr/salaries"]

[[asset]]
name = "orders"
sensitivity = "internal"
hosts = ["shop.example.com"]
methods = ["GET"]
paths = ["/orders/{id}"]
"#;

    #[test]
    fn rules_match_in_order_by_host_method_and_path() {
        let catalog = Catalog::parse(CATALOG, "catalog.toml").unwrap();
        let hr = catalog
            .find(None, Some("GET"), "/hr/salaries/2026/q1")
            .unwrap();
        assert_eq!(
            (hr.name.as_str(), hr.sensitivity),
            ("hr-salaries", Sensitivity::Restricted)
        );
        assert_eq!(
            catalog
                .find(Some("shop.example.com:8080"), Some("get"), "/orders/42")
                .unwrap()
                .name,
            "orders"
        );
        assert!(
            catalog
                .find(Some("shop.example.com"), Some("GET"), "/orders/42/items")
                .is_none()
        );
        assert!(
            catalog
                .find(Some("other.example.com"), Some("GET"), "/orders/42")
                .is_none()
        );
        assert!(
            catalog
                .find(Some("shop.example.com"), Some("DELETE"), "/orders/42")
                .is_none()
        );
    }

    #[test]
    fn a_bad_sensitivity_or_field_is_an_error_with_its_line() {
        let bad = CATALOG.replace("\"restricted\"", "\"secret\"");
        let e = Catalog::parse(&bad, "catalog.toml")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 6") && e.contains("secret"), "{e}");
        let unknown = CATALOG.replace("owner =", "ownr =");
        assert!(Catalog::parse(&unknown, "c").is_err());
    }

    #[test]
    fn names_the_store_cannot_hold_are_an_error() {
        let long = CATALOG.replace("\"hr-salaries\"", &format!("\"{}\"", "x".repeat(300)));
        let e = Catalog::parse(&long, "c").err().unwrap().to_string();
        assert!(e.contains("name is longer than 256 bytes"), "{e}");
        let nul = CATALOG.replace("\"payroll\"", "\"pay\\u0000roll\"");
        let e = Catalog::parse(&nul, "c").err().unwrap().to_string();
        assert!(e.contains("dataset holds a NUL"), "{e}");
    }
}
