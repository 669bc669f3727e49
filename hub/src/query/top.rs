//! Top-N: endpoints, assets, users, credentials, clients and failing endpoints. With
//! only a time range they come from the per-minute rollups; with other filters (one
//! user's sources, say) from the records through their indexes.
use std::{net::IpAddr, str::FromStr};

use rusqlite::{Connection, OptionalExtension as _, params, params_from_iter};
use serde::{Deserialize, Serialize};

use super::filter::Filter;
use crate::store::{Dim, USERS_BUCKET_MINUTES, client_key};

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
    conn: &Connection,
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
    conn: &Connection,
    kind: TopKind,
    filter: &Filter,
    limit: u64,
    order: &str,
) -> anyhow::Result<Vec<TopRow>> {
    let (first, last) = filter.minutes();
    let dim = kind.dim() as i64;
    let mut stmt = conn.prepare(&format!(
        "SELECT key, sum(requests) AS requests, sum(failures) AS failures FROM rollup
         WHERE dim = ?1 AND minute BETWEEN ?2 AND ?3 GROUP BY key ORDER BY {order} DESC, key LIMIT ?4"
    ))?;
    let mut rows: Vec<TopRow> = stmt
        .query_map(params![dim, first, last, limit as i64], |row| {
            counted(row, None)
        })?
        .collect::<Result<_, _>>()?;
    if matches!(kind.dim(), Dim::Template | Dim::Asset | Dim::Client) {
        let mut users = conn.prepare(
            "SELECT count(DISTINCT user) FROM rollup_users WHERE dim = ?1 AND key = ?2 AND minute BETWEEN ?3 AND ?4",
        )?;
        let first = if first == i64::MIN {
            first
        } else {
            first - first.rem_euclid(USERS_BUCKET_MINUTES)
        };
        for row in &mut rows {
            let n: i64 = users.query_row(params![dim, row.key, first, last], |r| r.get(0))?;
            row.users = Some(n as u64);
        }
    }
    Ok(rows)
}

fn from_records(
    conn: &Connection,
    kind: TopKind,
    filter: &Filter,
    limit: u64,
    order: &str,
) -> anyhow::Result<Vec<TopRow>> {
    let (clause, params) = filter.sql();
    let column = kind.column();
    let sql = format!(
        "SELECT {column} AS key, count(*) AS requests,
                sum(CASE WHEN status IS NULL OR status >= 400 THEN 1 ELSE 0 END) AS failures,
                count(DISTINCT user) AS users
         FROM records WHERE {clause} AND {column} IS NOT NULL
         GROUP BY {column} ORDER BY {order} DESC, key LIMIT {limit}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let with_users = matches!(kind.dim(), Dim::Template | Dim::Asset | Dim::Client);
    let rows = stmt
        .query_map(params_from_iter(params.iter()), |row| {
            let users = with_users.then(|| row.get::<_, i64>(3)).transpose()?;
            counted(row, users.map(|n| n as u64))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A row of (key, requests, failures): geo is added later for clients.
fn counted(row: &rusqlite::Row<'_>, users: Option<u64>) -> rusqlite::Result<TopRow> {
    Ok(TopRow {
        key: row.get(0)?,
        requests: row.get::<_, i64>(1)? as u64,
        failures: row.get::<_, i64>(2)? as u64,
        users,
        country: None,
        asn: None,
        as_org: None,
    })
}

/// Country and AS of each client, from its latest record.
fn add_geo(conn: &Connection, rows: &mut [TopRow]) -> anyhow::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT country, asn, as_org FROM records WHERE client_key = ?1 ORDER BY ts DESC LIMIT 1",
    )?;
    for row in rows.iter_mut() {
        let Ok(ip) = row.key.parse::<IpAddr>() else {
            continue;
        };
        if let Some(geo) = stmt
            .query_row([client_key(ip).to_vec()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?
        {
            (row.country, row.asn, row.as_org) = geo;
        }
    }
    Ok(())
}
