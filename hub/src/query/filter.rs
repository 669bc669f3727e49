//! The filters `tracer-hub query`, the API and the dashboard share, checked once and
//! turned into SQL with bound parameters (never spliced text).
use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;
use serde::Deserialize;

use crate::{
    ingest::record::{as_stored, as_stored_key},
    store::{Dialect, NANOS_PER_MINUTE, client_key, db::Value},
    when,
};

/// The filters as text, as the command line and the API's query string give them.
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
pub struct FilterArgs {
    /// Records at or after this time (RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Records before this time (RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// Records of the last DURATION (`15m`, `2h`, `7d`); instead of --from.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// A user: `user.id`, `user.name` or the directory's full name.
    #[arg(long)]
    pub user: Option<String>,
    /// A credential fingerprint (`audit.credential.fingerprint`).
    #[arg(long)]
    pub credential: Option<String>,
    /// A client address or CIDR (`203.0.113.0/24`).
    #[arg(long)]
    pub client: Option<String>,
    /// A path prefix (`/orders/`), or a glob with `*` (`/orders/*/items`).
    #[arg(long)]
    pub path: Option<String>,
    /// A `url.template` (`/orders/{id}`).
    #[arg(long)]
    pub template: Option<String>,
    /// An asset name from the catalog.
    #[arg(long)]
    pub asset: Option<String>,
    /// A status (`404`) or class (`4xx`).
    #[arg(long)]
    pub status: Option<String>,
    /// An HTTP method.
    #[arg(long)]
    pub method: Option<String>,
    /// A stream (the sensor's host).
    #[arg(long)]
    pub stream: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("--{0} {1:?} is not an RFC 3339 time (2026-12-03T02:00:00Z)")]
    Time(&'static str, String),
    #[error("--since {0:?} is not a duration (15m, 2h, 7d)")]
    Since(String),
    #[error("--since and --from both give the start")]
    SinceAndFrom,
    #[error("--client {0:?} is not an address or CIDR")]
    Client(String),
    #[error("--status {0:?} is not a status (404) or a class (4xx)")]
    Status(String),
}

/// Checked filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
    pub user: Option<String>,
    pub credential: Option<String>,
    pub client: Option<IpNet>,
    pub path: Option<String>,
    pub template: Option<String>,
    pub asset: Option<String>,
    pub status: Option<(u16, u16)>,
    pub method: Option<String>,
    pub stream: Option<String>,
}

impl FilterArgs {
    /// The filters given, as the API's query parameters (the same names).
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("from", &self.from),
            ("to", &self.to),
            ("since", &self.since),
            ("user", &self.user),
            ("credential", &self.credential),
            ("client", &self.client),
            ("path", &self.path),
            ("template", &self.template),
            ("asset", &self.asset),
            ("status", &self.status),
            ("method", &self.method),
            ("stream", &self.stream),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
        .collect()
    }

    pub fn check(&self, now_ns: i64) -> Result<Filter, FilterError> {
        let time = |name: &'static str, text: &Option<String>| {
            text.as_deref()
                .map(|t| {
                    when::parse_rfc3339_ns(t).ok_or_else(|| FilterError::Time(name, t.to_owned()))
                })
                .transpose()
        };
        let mut from_ns = time("from", &self.from)?;
        if let Some(since) = self.since.as_deref().filter(|s| !s.is_empty()) {
            if from_ns.is_some() {
                return Err(FilterError::SinceAndFrom);
            }
            let span = parse_duration(since).ok_or_else(|| FilterError::Since(since.to_owned()))?;
            from_ns =
                Some(now_ns.saturating_sub(i64::try_from(span.as_nanos()).unwrap_or(i64::MAX)));
        }
        let client = self
            .client
            .as_deref()
            .map(|c| {
                c.parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| FilterError::Client(c.to_owned()))
            })
            .transpose()?;
        let status = self.status.as_deref().map(parse_status).transpose()?;
        // Values as the store holds them, so a NUL or a long user finds its records.
        let text = |t: &Option<String>| t.clone().filter(|s| !s.is_empty()).map(as_stored);
        let key = |t: &Option<String>| text(t).map(as_stored_key);
        Ok(Filter {
            from_ns,
            to_ns: time("to", &self.to)?,
            user: key(&self.user),
            credential: key(&self.credential),
            client,
            path: text(&self.path),
            template: text(&self.template),
            asset: text(&self.asset),
            status,
            method: text(&self.method).map(|m| m.to_ascii_uppercase()),
            stream: text(&self.stream),
        })
    }
}

/// `15m`, `2h`, `7d`, `1h30m`: humantime's units.
pub fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text).ok()
}

/// An inclusive status range: `404` is (404, 404), `4xx` is (400, 499).
fn parse_status(text: &str) -> Result<(u16, u16), FilterError> {
    let bad = || FilterError::Status(text.to_owned());
    let lower = text.to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx") {
        let class: u16 = class.parse().map_err(|_| bad())?;
        return (1..=5)
            .contains(&class)
            .then_some((class * 100, class * 100 + 99))
            .ok_or_else(bad);
    }
    let code: u16 = text.parse().map_err(|_| bad())?;
    (100..=999)
        .contains(&code)
        .then_some((code, code))
        .ok_or_else(bad)
}

impl Filter {
    /// The WHERE clause (access records only) and its parameters.
    pub fn sql(&self, dialect: Dialect) -> (String, Vec<Value>) {
        let mut clauses = vec!["kind = 'access'".to_owned()];
        let mut params: Vec<Value> = Vec::new();
        // Each `?` becomes `?N`, numbered across the whole clause list.
        let mut push = |clause: &str, values: Vec<Value>| {
            let mut numbered = String::new();
            let mut values = values.into_iter();
            for (n, part) in clause.split('?').enumerate() {
                if n > 0 {
                    params.extend(values.next());
                    numbered.push_str(&format!("?{}", params.len()));
                }
                numbered.push_str(part);
            }
            clauses.push(numbered);
        };
        // With a filter that has its own (column, ts) index, the time bounds must not
        // tempt SQLite's planner into the time index: `+ts` keeps them off it.
        // PostgreSQL's planner weighs both with its statistics, and uses the time
        // bounds inside the (column, ts) index.
        let ts = if dialect == Dialect::Sqlite
            && (self.user.is_some()
                || self.credential.is_some()
                || self.client.is_some()
                || self.asset.is_some()
                || self.template.is_some())
        {
            "+ts"
        } else {
            "ts"
        };
        if let Some(from) = self.from_ns {
            push(&format!("{ts} >= ?"), vec![from.into()]);
        }
        if let Some(to) = self.to_ns {
            push(&format!("{ts} < ?"), vec![to.into()]);
        }
        if let Some(user) = &self.user {
            // One indexed column: names (user.name, full name) resolve to it first.
            push(
                "user IN (SELECT ? UNION SELECT user FROM user_names WHERE name = ?)",
                vec![user.clone().into(), user.clone().into()],
            );
        }
        if let Some(credential) = &self.credential {
            push("credential = ?", vec![credential.clone().into()]);
        }
        if let Some(net) = &self.client {
            let low = client_key(net.network()).to_vec();
            let high = client_key(net.broadcast()).to_vec();
            push("client_key BETWEEN ? AND ?", vec![low.into(), high.into()]);
        }
        if let Some(path) = &self.path {
            match dialect {
                Dialect::Sqlite => {
                    let glob = if path.contains('*') {
                        path.replace("**", "*")
                    } else {
                        format!("{}*", escape_glob(path))
                    };
                    push("path GLOB ?", vec![glob.into()]);
                }
                Dialect::Postgres => push("path ~ ?", vec![glob_regex(path).into()]),
            }
        }
        if let Some(template) = &self.template {
            push("template = ?", vec![template.clone().into()]);
        }
        if let Some(asset) = &self.asset {
            push("asset = ?", vec![asset.clone().into()]);
        }
        if let Some((low, high)) = self.status {
            push(
                "status BETWEEN ? AND ?",
                vec![i64::from(low).into(), i64::from(high).into()],
            );
        }
        if let Some(method) = &self.method {
            push("method = ?", vec![method.clone().into()]);
        }
        if let Some(stream) = &self.stream {
            push("stream = ?", vec![stream.clone().into()]);
        }
        (clauses.join(" AND "), params)
    }

    /// The first and last minute of the range (unbounded ends are i64::MIN/MAX).
    pub fn minutes(&self) -> (i64, i64) {
        (
            self.from_ns
                .map_or(i64::MIN, |f| f.div_euclid(NANOS_PER_MINUTE)),
            self.to_ns
                .map_or(i64::MAX, |t| (t - 1).div_euclid(NANOS_PER_MINUTE)),
        )
    }

    /// Whether only time bounds are set, so rollups can answer.
    pub fn only_time(&self) -> bool {
        *self
            == Filter {
                from_ns: self.from_ns,
                to_ns: self.to_ns,
                ..Filter::default()
            }
    }
}

/// `--path` as a PostgreSQL regular expression, as GLOB reads it in SQLite: a pattern
/// with `*` (any run, `**` the same) and `?` (one character) matches the whole path;
/// one without `*` is a prefix.
fn glob_regex(path: &str) -> String {
    let whole = path.contains('*');
    let mut out = String::from("^");
    for c in path.chars() {
        match c {
            '*' if whole => {
                if !out.ends_with(".*") {
                    out.push_str(".*");
                }
            }
            '?' if whole => out.push('.'),
            c if c.is_ascii_alphanumeric() || !c.is_ascii() => out.push(c),
            c => {
                out.push('\\');
                out.push(c);
            }
        }
    }
    if whole {
        out.push('$');
    }
    out
}

/// A literal prefix for GLOB: its special characters each in a bracket class.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classes_and_bad_input() {
        assert_eq!(parse_status("404"), Ok((404, 404)));
        assert_eq!(parse_status("4xx"), Ok((400, 499)));
        assert_eq!(parse_status("5XX"), Ok((500, 599)));
        assert!(parse_status("9xx").is_err());
        assert!(parse_status("abc").is_err());
    }

    #[test]
    fn since_and_from_exclude_each_other_and_bad_values_are_named() {
        let args = FilterArgs {
            since: Some("2h".into()),
            ..FilterArgs::default()
        };
        let filter = args.check(10_000_000_000_000).unwrap();
        assert_eq!(filter.from_ns, Some(10_000_000_000_000 - 7_200_000_000_000));
        let both = FilterArgs {
            from: Some("2026-12-03T00:00:00Z".into()),
            ..args
        };
        assert_eq!(both.check(0), Err(FilterError::SinceAndFrom));
        let client = FilterArgs {
            client: Some("10.0.0.0/33".into()),
            ..FilterArgs::default()
        };
        assert!(matches!(client.check(0), Err(FilterError::Client(_))));
    }

    #[test]
    fn parameters_are_numbered_in_order_and_never_spliced() {
        let filter = FilterArgs {
            user: Some("alice' OR 1=1 --".into()),
            status: Some("4xx".into()),
            ..FilterArgs::default()
        }
        .check(0)
        .unwrap();
        let (sql, params) = filter.sql(Dialect::Sqlite);
        assert!(!sql.contains("alice"));
        assert!(
            sql.contains("user IN (SELECT ?1 UNION SELECT user FROM user_names WHERE name = ?2)")
        );
        assert!(sql.contains("status BETWEEN ?3 AND ?4"));
        assert_eq!(params.len(), 4);
        assert!(!filter.only_time());
    }

    #[test]
    fn path_globs_read_the_same_in_both_dialects() {
        assert_eq!(glob_regex("/api/*/orders/*"), "^\\/api\\/.*\\/orders\\/.*$");
        assert_eq!(glob_regex("/a.b?c"), "^\\/a\\.b\\?c");
        assert_eq!(glob_regex("/x/**/y?"), "^\\/x\\/.*\\/y.$");
    }
}
