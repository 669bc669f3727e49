//! A batch's per-minute rollups (requests, failures, distinct users per template,
//! asset, user, client, credential, status class and stream), counted from the access
//! records it stores and written in its transaction. They are counted on the detection
//! thread, which meets every stored access record anyway, so the writer thread only
//! writes them: importing 200,000 records, counting, sorting and converting them had
//! taken ~1 s of the writer's ~7.5 s.
use hashbrown::{Equivalent, HashMap, HashSet};

use super::{
    columns::{Derived, columns},
    db::Value,
    schema::{Dim, NANOS_PER_MINUTE, USERS_BUCKET_MINUTES},
};
use crate::{enrich::Enrichment, ingest::record::Fields};

/// Counted in hash maps probed with borrowed keys, and sorted into each table's
/// primary key order once, off the writer's thread, when the batch's rows are taken:
/// ordered maps had compared every key's bytes a dozen times per record, a third of
/// the detection thread's time (`perf`, `import` of 200,000 records).
#[derive(Default)]
pub struct Rollups {
    /// (requests, failures) per (dim, bucket, key).
    counts: HashMap<CountKey, (i64, i64)>,
    /// The distinct users per (dim, key, hour).
    users: HashSet<UserKey>,
}

/// Ordered as `rollup`'s primary key: dim, bucket, key.
#[derive(Hash, PartialEq, Eq, PartialOrd, Ord)]
struct CountKey {
    dim: Dim,
    bucket: i64,
    key: String,
}

/// A [`CountKey`] borrowed: it hashes alike (a `String` hashes as its `str`).
#[derive(Hash)]
struct CountRef<'a> {
    dim: Dim,
    bucket: i64,
    key: &'a str,
}

impl Equivalent<CountKey> for CountRef<'_> {
    fn equivalent(&self, owned: &CountKey) -> bool {
        self.dim == owned.dim && self.bucket == owned.bucket && self.key == owned.key
    }
}

impl From<&CountRef<'_>> for CountKey {
    fn from(r: &CountRef<'_>) -> Self {
        Self {
            dim: r.dim,
            bucket: r.bucket,
            key: r.key.to_owned(),
        }
    }
}

/// Ordered as `rollup_users`' primary key: dim, key, hour, user.
#[derive(Hash, PartialEq, Eq, PartialOrd, Ord)]
struct UserKey {
    dim: Dim,
    key: String,
    hour: i64,
    user: String,
}

/// A [`UserKey`] borrowed.
#[derive(Hash)]
struct UserRef<'a> {
    dim: Dim,
    key: &'a str,
    hour: i64,
    user: &'a str,
}

impl Equivalent<UserKey> for UserRef<'_> {
    fn equivalent(&self, owned: &UserKey) -> bool {
        self.dim == owned.dim
            && self.hour == owned.hour
            && self.key == owned.key
            && self.user == owned.user
    }
}

/// A batch's rollup rows, each table in its primary key's order, so that every insert
/// lands beside the last in the b-tree instead of on a random page.
#[derive(Default)]
pub struct RollupRows {
    /// (dim, key, minute, requests, failures).
    pub(super) counts: Vec<Vec<Value>>,
    /// (dim, key, minute, user).
    pub(super) users: Vec<Vec<Value>>,
}

impl Rollups {
    /// Counts one stored access record.
    pub fn count(&mut self, f: &Fields, e: &Enrichment, derived: &Derived) {
        self.add(f, e, derived, 1);
    }

    /// Takes back the requests and failures of a stored access record that the
    /// sensor's own line replaced (a forgery). Its user stays among the hour's distinct
    /// users, which are a set per hour, not a count.
    pub fn retract(&mut self, f: &Fields, e: &Enrichment, derived: &Derived) {
        self.add(f, e, derived, -1);
    }

    fn add(&mut self, f: &Fields, e: &Enrichment, derived: &Derived, weight: i64) {
        let minute = f.ts_ns.div_euclid(NANOS_PER_MINUTE);
        let hour = minute - minute.rem_euclid(USERS_BUCKET_MINUTES);
        let failed = i64::from(f.status.is_none_or(|s| s >= 400));
        let class = status_class(f.status);
        let keys = [
            (Dim::All, Some("")),
            (Dim::Template, Some(e.template.as_str())),
            (Dim::Asset, columns(e).asset),
            (Dim::User, f.user()),
            (Dim::Client, derived.client.as_deref()),
            (Dim::Credential, f.credential.as_deref()),
            (Dim::StatusClass, Some(&*class)),
            (Dim::Stream, Some(f.stream.as_str())),
        ];
        for (dim, key) in keys {
            let Some(key) = key else { continue };
            let counts = self
                .counts
                .entry_ref(&CountRef {
                    dim,
                    bucket: dim.bucket(minute),
                    key,
                })
                .or_default();
            counts.0 += weight;
            counts.1 += weight * failed;
            if let Some(user) = f.user()
                && weight > 0
                && matches!(dim, Dim::All | Dim::Template | Dim::Asset | Dim::Client)
            {
                self.users.get_or_insert_with(
                    &UserRef {
                        dim,
                        key,
                        hour,
                        user,
                    },
                    |r| UserKey {
                        dim: r.dim,
                        key: r.key.to_owned(),
                        hour: r.hour,
                        user: r.user.to_owned(),
                    },
                );
            }
        }
    }

    pub fn into_rows(self) -> RollupRows {
        let mut counts: Vec<_> = self.counts.into_iter().collect();
        counts.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        let counts = counts
            .into_iter()
            .map(|(k, (requests, failures))| {
                vec![
                    Value::Integer(k.dim as i64),
                    Value::Text(k.key),
                    Value::Integer(k.bucket),
                    Value::Integer(requests),
                    Value::Integer(failures),
                ]
            })
            .collect();
        let mut users: Vec<_> = self.users.into_iter().collect();
        users.sort_unstable();
        let users = users
            .into_iter()
            .map(|k| {
                vec![
                    Value::Integer(k.dim as i64),
                    Value::Text(k.key),
                    Value::Integer(k.hour),
                    Value::Text(k.user),
                ]
            })
            .collect();
        RollupRows { counts, users }
    }
}

/// `2xx`, `4xx`: how the status class is keyed (`other` without a status); the
/// hundreds of whatever status a server sent, without an allocation for the usual.
fn status_class(status: Option<u16>) -> std::borrow::Cow<'static, str> {
    const CLASSES: [&str; 10] = [
        "0xx", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx",
    ];
    match status.map(|s| usize::from(s / 100)) {
        Some(class) if class < CLASSES.len() => CLASSES[class].into(),
        Some(class) => format!("{class}xx").into(),
        None => "other".into(),
    }
}
