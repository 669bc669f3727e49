//! The overview's numbers: requests over time by status class with failure spikes
//! marked, and totals for a range. Both come from the rollups.
use serde::Serialize;

use super::filter::Filter;
use crate::{
    store::{
        Dim, NANOS_PER_MINUTE, USERS_BUCKET_MINUTES,
        db::{Db, args},
    },
    when::format_ns,
};

/// At most this many points, so a 30-day range is a few hundred, not 43,200.
const MAX_POINTS: i64 = 360;

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Point {
    pub t: String,
    pub s2xx: u64,
    pub s3xx: u64,
    pub s4xx: u64,
    pub s5xx: u64,
    pub other: u64,
}

#[derive(Debug, Serialize)]
pub struct Series {
    pub step_seconds: i64,
    pub points: Vec<Point>,
    /// Buckets whose failures stand out: above the range's mean plus three standard
    /// deviations, and at least 10.
    pub spikes: Vec<String>,
}

pub fn timeseries(conn: &mut Db, from_ns: i64, to_ns: i64) -> anyhow::Result<Series> {
    let first = from_ns.div_euclid(NANOS_PER_MINUTE);
    let last = (to_ns - 1).div_euclid(NANOS_PER_MINUTE).max(first);
    let step = ((last - first + 1) + MAX_POINTS - 1) / MAX_POINTS;
    let buckets = ((last - first) / step + 1) as usize;
    let mut points: Vec<Point> = (0..buckets)
        .map(|b| Point {
            t: format_ns((first + b as i64 * step) * NANOS_PER_MINUTE),
            ..Point::default()
        })
        .collect();
    let rows = conn.query(
        "SELECT minute, key, requests FROM rollup WHERE dim = ?1 AND minute BETWEEN ?2 AND ?3",
        args![Dim::StatusClass as i64, first, last],
    )?;
    for row in rows {
        let (minute, class, n): (i64, String, u64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let point = &mut points[((minute - first) / step) as usize];
        match class.as_str() {
            "2xx" => point.s2xx += n,
            "3xx" => point.s3xx += n,
            "4xx" => point.s4xx += n,
            "5xx" => point.s5xx += n,
            _ => point.other += n,
        }
    }
    let failures: Vec<f64> = points.iter().map(|p| (p.s4xx + p.s5xx) as f64).collect();
    let mean = failures.iter().sum::<f64>() / failures.len().max(1) as f64;
    let sd = (failures.iter().map(|f| (f - mean).powi(2)).sum::<f64>()
        / failures.len().max(1) as f64)
        .sqrt();
    let spikes = points
        .iter()
        .zip(&failures)
        .filter(|&(_, &f)| f >= 10.0 && f > mean + 3.0 * sd)
        .map(|(p, _)| p.t.clone())
        .collect();
    Ok(Series {
        step_seconds: step * 60,
        points,
        spikes,
    })
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub failures: u64,
    pub users: u64,
    pub clients: u64,
    pub hosts: u64,
    /// Events, bytes or records the sensors reported they could not record.
    pub losses: u64,
}

pub fn totals(conn: &mut Db, filter: &Filter) -> anyhow::Result<Totals> {
    let (first, last) = filter.minutes();
    // Sums are cast back: PostgreSQL sums BIGINT as NUMERIC.
    let sums = conn.query_row(
        "SELECT CAST(coalesce(sum(requests), 0) AS BIGINT), CAST(coalesce(sum(failures), 0) AS BIGINT)
         FROM rollup WHERE dim = ?1 AND minute BETWEEN ?2 AND ?3",
        args![Dim::All as i64, first, last],
    )?;
    // Hourly buckets are named by their first minute: round the start down to it.
    let from_bucket = |minutes: i64| {
        if first == i64::MIN {
            first
        } else {
            first - first.rem_euclid(minutes)
        }
    };
    let mut distinct = |dim: Dim| -> anyhow::Result<u64> {
        conn.query_row(
            "SELECT count(DISTINCT key) FROM rollup WHERE dim = ?1 AND minute BETWEEN ?2 AND ?3",
            args![dim as i64, from_bucket(dim.bucket_minutes()), last],
        )?
        .get(0)
    };
    let clients = distinct(Dim::Client)?;
    let hosts = distinct(Dim::Stream)?;
    let users = conn
        .query_row(
            "SELECT count(DISTINCT user) FROM rollup_users WHERE dim = ?1 AND minute BETWEEN ?2 AND ?3",
            args![Dim::All as i64, from_bucket(USERS_BUCKET_MINUTES), last],
        )?
        .get(0)?;
    let losses = conn
        .query_row(
            "SELECT CAST(coalesce(sum(count), 0) AS BIGINT) FROM losses WHERE ts >= ?1 AND ts < ?2",
            args![
                filter.from_ns.unwrap_or(i64::MIN),
                filter.to_ns.unwrap_or(i64::MAX)
            ],
        )?
        .get(0)?;
    Ok(Totals {
        requests: sums.get(0)?,
        failures: sums.get(1)?,
        users,
        clients,
        hosts,
        losses,
    })
}
