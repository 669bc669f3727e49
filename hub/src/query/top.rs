//! Top-N: endpoints, assets, users, credentials, clients and failing endpoints. With
//! only a time range they come from the per-minute rollups; with other filters (one
//! user's sources, say) from the records through their indexes.
use std::{net::IpAddr, str::FromStr};

use serde::{Deserialize, Serialize};

use super::filter::Filter;
use crate::store::{
    Dim, USERS_BUCKET_MINUTES, client_key, days,
    db::{Db, Row, args, dynamic},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TopKind {
    Endpoints,
    Assets,
    Users,
    Credentials,
    Clients,
    Failures,
    Hosts,
}

impl FromStr for TopKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        <Self as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| format!("unknown top list {s:?} (endpoints, assets, users, credentials, clients, failures, hosts)"))
    }
}

impl TopKind {
    fn dim(self) -> Dim {
        match self {
            TopKind::Endpoints | TopKind::Failures => Dim::Template,
            TopKind::Assets => Dim::Asset,
            TopKind::Users => Dim::User,
            TopKind::Credentials => Dim::Credential,
            TopKind::Clients => Dim::Client,
            TopKind::Hosts => Dim::Stream,
        }
    }

    /// The records column a raw-row answer groups by.
    fn column(self) -> &'static str {
        match self {
            TopKind::Endpoints | TopKind::Failures => "template",
            TopKind::Assets => "asset",
            TopKind::Users => "user",
            TopKind::Credentials => "credential",
            TopKind::Clients => "client",
            TopKind::Hosts => "stream",
        }
    }

    pub fn heading(self) -> &'static str {
        match self {
            TopKind::Endpoints | TopKind::Failures => "endpoint",
            TopKind::Assets => "asset",
            TopKind::Users => "user",
            TopKind::Credentials => "credential",
            TopKind::Clients => "client",
            TopKind::Hosts => "host",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TopRow {
    pub key: String,
    pub requests: u64,
    pub failures: u64,
    /// Distinct users (endpoints, assets, clients).
    pub users: Option<u64>,
    pub country: Option<String>,
    pub asn: Option<i64>,
    pub as_org: Option<String>,
}

pub fn top(
    conn: &mut Db,
    kind: TopKind,
    filter: &Filter,
    limit: u64,
) -> anyhow::Result<Vec<TopRow>> {
    let order = if kind == TopKind::Failures {
        "failures"
    } else {
        "requests"
    };
    let mut rows = if filter.only_time() {
        from_rollups(conn, kind, filter, limit, order)?
    } else {
        from_records(conn, kind, filter, limit, order)?
    };
    if kind == TopKind::Failures {
        rows.retain(|r| r.failures > 0);
    }
    if kind == TopKind::Clients {
        add_geo(conn, &mut rows)?;
    }
    Ok(rows)
}

fn from_rollups(
    conn: &mut Db,
    kind: TopKind,
    filter: &Filter,
    limit: u64,
    order: &str,
) -> anyhow::Result<Vec<TopRow>> {
    let (first, last) = filter.minutes();
    let dim = kind.dim() as i64;
    // Sums are cast back: PostgreSQL sums BIGINT as NUMERIC. A key whose every record
    // was taken back (forged records the sensor's own replaced) sums to nothing.
    let mut rows: Vec<TopRow> = conn
        .query(
            &format!(
                "SELECT key, CAST(sum(requests) AS BIGINT) AS requests,
                    CAST(sum(failures) AS BIGINT) AS failures FROM rollup
                 WHERE dim = ?1 AND minute BETWEEN ?2 AND ?3
                 GROUP BY key HAVING sum(requests) > 0
                 ORDER BY {order} DESC, key LIMIT ?4"
            ),
            args![dim, first, last, limit as i64],
        )?
        .iter()
        .map(|row| counted(row, None))
        .collect::<anyhow::Result<_>>()?;
    if matches!(kind.dim(), Dim::Template | Dim::Asset | Dim::Client) {
        let first = if first == i64::MIN {
            first
        } else {
            first - first.rem_euclid(USERS_BUCKET_MINUTES)
        };
        for row in &mut rows {
            row.users = Some(
                conn.query_row(
                    "SELECT count(DISTINCT user) FROM rollup_users
                     WHERE dim = ?1 AND key = ?2 AND minute BETWEEN ?3 AND ?4",
                    args![dim, row.key, first, last],
                )?
                .get(0)?,
            );
        }
    }
    Ok(rows)
}

fn from_records(
    conn: &mut Db,
    kind: TopKind,
    filter: &Filter,
    limit: u64,
    order: &str,
) -> anyhow::Result<Vec<TopRow>> {
    let (clause, params) = filter.sql(conn.dialect());
    let column = kind.column();
    let records = days::source(conn, filter.from_ns, filter.to_ns)?;
    let sql = format!(
        "SELECT {column} AS key, count(*) AS requests,
                CAST(sum(CASE WHEN status IS NULL OR status >= 400 THEN 1 ELSE 0 END) AS BIGINT)
                    AS failures,
                count(DISTINCT user) AS users
         FROM {records} WHERE {clause} AND {column} IS NOT NULL
         GROUP BY {column} ORDER BY {order} DESC, key LIMIT {limit}"
    );
    let with_users = matches!(kind.dim(), Dim::Template | Dim::Asset | Dim::Client);
    conn.query(&sql, &dynamic(&params))?
        .iter()
        .map(|row| counted(row, with_users.then(|| row.get(3)).transpose()?))
        .collect()
}

/// A row of (key, requests, failures): geo is added later for clients.
fn counted(row: &Row, users: Option<u64>) -> anyhow::Result<TopRow> {
    Ok(TopRow {
        key: row.get(0)?,
        requests: row.get(1)?,
        failures: row.get(2)?,
        users,
        country: None,
        asn: None,
        as_org: None,
    })
}

/// Country and AS of each client, from its latest record.
fn add_geo(conn: &mut Db, rows: &mut [TopRow]) -> anyhow::Result<()> {
    for row in rows.iter_mut() {
        let Ok(ip) = row.key.parse::<IpAddr>() else {
            continue;
        };
        let key = client_key(ip);
        let latest = days::newest_first(conn, (None, None), 1, |conn, table, _| {
            conn.query(
                &format!(
                    "SELECT country, asn, as_org FROM {table} WHERE client_key = ?1
                     ORDER BY ts DESC LIMIT 1"
                ),
                args![key],
            )
        })?;
        if let Some(geo) = latest.first() {
            (row.country, row.asn, row.as_org) = (geo.get(0)?, geo.get(1)?, geo.get(2)?);
        }
    }
    Ok(())
}
