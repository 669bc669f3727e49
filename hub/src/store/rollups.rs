//! A batch's per-minute rollups (requests, failures, distinct users per template,
//! asset, user, client, credential, status class and stream), counted from the access
//! records it stores and written in its transaction. They are counted on the detection
//! thread, which meets every stored access record anyway, so the writer thread only
//! writes them: importing 200,000 records, counting, sorting and converting them had
//! taken ~1 s of the writer's ~7.5 s.
use std::collections::{BTreeMap, BTreeSet};

use super::{
    columns::{Derived, columns},
    db::Value,
    schema::{Dim, NANOS_PER_MINUTE, USERS_BUCKET_MINUTES},
};
use crate::{enrich::Enrichment, ingest::record::Fields};

/// Kept in each table's primary key order as they are counted, so that the batch's
/// rows come out sorted: sorting them all at the end had been 60-130 ms of each
/// 50,000-record batch that the writer waited for, where ordered maps spread the same
/// work over the batch, on the detection thread, beside the writer.
#[derive(Default)]
pub struct Rollups {
    /// `rollup`'s key order: dim, bucket, key.
    counts: BTreeMap<Dim, BTreeMap<i64, Counts>>,
    /// `rollup_users`' key order: dim, key, hour, user.
    users: BTreeMap<Dim, BTreeMap<String, Users>>,
}

/// (requests, failures) by key.
type Counts = BTreeMap<String, (i64, i64)>;
/// Users by hour.
type Users = BTreeMap<i64, BTreeSet<String>>;

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
        let class = f
            .status
            .map_or("other".to_owned(), |s| format!("{}xx", s / 100));
        let keys = [
            (Dim::All, Some("")),
            (Dim::Template, Some(e.template.as_str())),
            (Dim::Asset, columns(e).asset),
            (Dim::User, f.user()),
            (Dim::Client, derived.client.as_deref()),
            (Dim::Credential, f.credential.as_deref()),
            (Dim::StatusClass, Some(class.as_str())),
            (Dim::Stream, Some(f.stream.as_str())),
        ];
        for (dim, key) in keys {
            let Some(key) = key else { continue };
            let counts = entry(
                self.counts
                    .entry(dim)
                    .or_default()
                    .entry(dim.bucket(minute))
                    .or_default(),
                key,
            );
            counts.0 += weight;
            counts.1 += weight * failed;
            if let Some(user) = f.user()
                && weight > 0
                && matches!(dim, Dim::All | Dim::Template | Dim::Asset | Dim::Client)
            {
                let users = entry(self.users.entry(dim).or_default(), key)
                    .entry(hour)
                    .or_default();
                // Looked up by the borrowed name first: a batch's keys repeat, and
                // each owned copy is an allocation.
                if !users.contains(user) {
                    users.insert(user.to_owned());
                }
            }
        }
    }

    pub fn into_rows(self) -> RollupRows {
        let counts = self
            .counts
            .into_iter()
            .flat_map(|(dim, buckets)| {
                buckets.into_iter().flat_map(move |(minute, keys)| {
                    keys.into_iter().map(move |(key, (requests, failures))| {
                        vec![
                            Value::Integer(dim as i64),
                            Value::Text(key),
                            Value::Integer(minute),
                            Value::Integer(requests),
                            Value::Integer(failures),
                        ]
                    })
                })
            })
            .collect();
        let users = self
            .users
            .into_iter()
            .flat_map(|(dim, keys)| {
                keys.into_iter().flat_map(move |(key, hours)| {
                    hours.into_iter().flat_map(move |(hour, users)| {
                        let key = key.clone();
                        users.into_iter().map(move |user| {
                            vec![
                                Value::Integer(dim as i64),
                                Value::Text(key.clone()),
                                Value::Integer(hour),
                                Value::Text(user),
                            ]
                        })
                    })
                })
            })
            .collect();
        RollupRows { counts, users }
    }
}

/// The value under `key`, inserted empty if missing; looked up by the borrowed key
/// first, so a key met before costs no allocation.
fn entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}
