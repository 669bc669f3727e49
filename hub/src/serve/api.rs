//! The JSON API the dashboard and `tracer-hub query --hub` use. Every answer comes
//! from the store (rollups for overviews, indexes for lists), never by sending all
//! records to the browser.
use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::{Stream, StreamExt as _, stream};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;

use super::Hub;
use crate::{
    query::{
        alerts::{self as query_alerts, Selection},
        filter::{Filter, FilterArgs, parse_duration},
        integrity, records,
        series::{timeseries, totals},
        top::{TopKind, top},
    },
    store::{
        Db,
        alerts::{self as store_alerts, Severity},
    },
    when::{now_ns, parse_rfc3339_ns},
};

/// Rows a page may ask for.
pub const MAX_LIMIT: u64 = 1_000;
/// Rows an export holds.
pub const MAX_EXPORT: u64 = 100_000;
const DAY_NS: i64 = 86_400_000_000_000;

#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        eprintln!("tracer-hub: api: {e:#}");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store could not answer; see the hub's log".to_owned(),
        )
    }
}

fn bad_request(message: impl ToString) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.to_string())
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(flatten)]
    filter: FilterArgs,
    limit: Option<String>,
    offset: Option<String>,
    format: Option<String>,
}

fn number(name: &str, text: &Option<String>, default: u64) -> Result<u64, ApiError> {
    text.as_deref()
        .map(|t| {
            t.parse()
                .map_err(|_| bad_request(format!("{name} {t:?} is not a number")))
        })
        .transpose()
        .map(|n| n.unwrap_or(default))
}

/// The filter, defaulting to the last 24 hours when no start is given.
fn ranged(args: &FilterArgs) -> Result<Filter, ApiError> {
    let now = now_ns();
    let mut filter = args.check(now).map_err(bad_request)?;
    filter.from_ns.get_or_insert(now - DAY_NS);
    Ok(filter)
}

async fn blocking<T: Send + 'static>(
    hub: &Arc<Hub>,
    work: impl FnOnce(&mut Db) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let hub = Arc::clone(hub);
    tokio::task::spawn_blocking(move || hub.store.with(work))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

pub async fn records_list(
    State(hub): State<Arc<Hub>>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let filter = params.filter.check(now_ns()).map_err(bad_request)?;
    let export = params.format.clone();
    let (limit, offset) = match export.as_deref() {
        None | Some("json") => (
            number("limit", &params.limit, 50)?.min(MAX_LIMIT),
            number("offset", &params.offset, 0)?,
        ),
        Some("csv" | "jsonl") => (
            number("limit", &params.limit, MAX_EXPORT)?.min(MAX_EXPORT),
            0,
        ),
        Some(other) => return Err(bad_request(format!("format {other:?}: json, csv or jsonl"))),
    };
    if export.as_deref() == Some("jsonl") {
        let lines = blocking(&hub, move |conn| records::lines(conn, &filter, limit)).await?;
        return Ok(jsonl_attachment(
            &lines,
            "attachment; filename=\"records.jsonl\"",
        ));
    }
    let page = blocking(&hub, move |conn| {
        records::page(conn, &filter, limit, offset)
    })
    .await?;
    Ok(match export.as_deref() {
        Some("csv") => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"records.csv\"",
                ),
            ],
            crate::query::format::csv(page.rows.iter().map(|(row, _)| row)),
        )
            .into_response(),
        _ => {
            let rows: Vec<_> = page.rows.into_iter().map(|(row, _)| row).collect();
            Json(json!({ "records": rows, "total": page.total, "total_capped": page.total >= records::COUNT_CAP }))
                .into_response()
        }
    })
}

pub async fn record_detail(
    State(hub): State<Arc<Hub>>,
    Path((stream, seq)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    let found = blocking(&hub, move |conn| records::detail(conn, &stream, seq)).await?;
    match found {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, "no such record".to_owned())),
    }
}

pub async fn top_list(
    State(hub): State<Arc<Hub>>,
    Path(kind): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let kind: TopKind = kind.parse().map_err(bad_request)?;
    let filter = ranged(&params.filter)?;
    let limit = number("limit", &params.limit, 10)?.min(MAX_LIMIT);
    let rows = blocking(&hub, move |conn| top(conn, kind, &filter, limit)).await?;
    Ok(Json(json!({ "rows": rows })).into_response())
}

pub async fn series(
    State(hub): State<Arc<Hub>>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let filter = ranged(&params.filter)?;
    let (from, to) = (
        filter.from_ns.unwrap_or_default(),
        filter.to_ns.unwrap_or_else(now_ns),
    );
    if to <= from {
        return Err(bad_request("the range ends before it starts"));
    }
    let series = blocking(&hub, move |conn| timeseries(conn, from, to)).await?;
    Ok(Json(series).into_response())
}

pub async fn totals_view(
    State(hub): State<Arc<Hub>>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let filter = ranged(&params.filter)?;
    let totals = blocking(&hub, move |conn| totals(conn, &filter)).await?;
    Ok(Json(totals).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ConflictParams {
    stream: Option<String>,
}

/// The kept conflicting lines as JSONL, byte for byte, up to [`MAX_EXPORT`].
pub async fn conflicts_export(
    State(hub): State<Arc<Hub>>,
    Query(params): Query<ConflictParams>,
) -> Result<Response, ApiError> {
    let lines = blocking(&hub, move |conn| {
        integrity::conflict_lines(conn, params.stream.as_deref(), MAX_EXPORT)
    })
    .await?;
    Ok(jsonl_attachment(
        &lines,
        "attachment; filename=\"conflicts.jsonl\"",
    ))
}

/// Stored lines, byte for byte, one per line, as a download.
fn jsonl_attachment(lines: &[Vec<u8>], disposition: &'static str) -> Response {
    let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        body.extend_from_slice(line);
        body.push(b'\n');
    }
    (
        [
            (header::CONTENT_TYPE, "application/jsonl"),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

pub async fn integrity_view(State(hub): State<Arc<Hub>>) -> Result<Response, ApiError> {
    let report = blocking(&hub, integrity::integrity).await?;
    Ok(Json(report).into_response())
}

/// The rules as `tracer-hub rules` lists them, read when the hub started.
pub async fn rules_list(State(hub): State<Arc<Hub>>) -> Response {
    Json(&hub.rules).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct AlertParams {
    /// `24h`, `7d`: alerts last seen within it; without it and `from`, 7 days.
    since: Option<String>,
    /// Alerts last seen at or after this time (RFC 3339); instead of `since`.
    from: Option<String>,
    /// Alerts first seen before this time (RFC 3339).
    to: Option<String>,
    rule: Option<String>,
    /// This severity or higher, as `tracer-hub alerts --severity`.
    severity: Option<String>,
    /// `user:alice`, or a prefix ending in `*` (`client:203.0.113.*`).
    entity: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

fn alert_selection(params: &AlertParams, now: i64) -> Result<Selection, ApiError> {
    let text = |t: &Option<String>| t.clone().filter(|s| !s.trim().is_empty());
    let time = |name: &str, t: &Option<String>| {
        text(t)
            .map(|t| {
                parse_rfc3339_ns(t.trim()).ok_or_else(|| {
                    bad_request(format!(
                        "{name} {t:?} is not an RFC 3339 time (2026-12-03T02:00:00Z)"
                    ))
                })
            })
            .transpose()
    };
    let from_ns = match (text(&params.since), time("from", &params.from)?) {
        (Some(_), Some(_)) => return Err(bad_request("since and from both give the start")),
        (None, Some(from)) => from,
        (since, None) => {
            let span = match since {
                None => 7 * DAY_NS,
                Some(text) => parse_duration(&text)
                    .and_then(|d| i64::try_from(d.as_nanos()).ok())
                    .ok_or_else(|| {
                        bad_request(format!("since {text:?} is not a duration (24h, 7d)"))
                    })?,
            };
            now.saturating_sub(span)
        }
    };
    let min_severity = text(&params.severity)
        .map(|t| {
            Severity::parse(&t).ok_or_else(|| {
                bad_request(format!("severity {t:?}: low, medium, high or critical"))
            })
        })
        .transpose()?;
    Ok(Selection {
        from_ns: Some(from_ns),
        to_ns: time("to", &params.to)?,
        rule: text(&params.rule),
        min_severity,
        entity: text(&params.entity),
    })
}

/// A page of alerts, newest first, with the total the filters match and the counts
/// per rule and severity over the range.
pub async fn alerts_list(
    State(hub): State<Arc<Hub>>,
    Query(params): Query<AlertParams>,
) -> Result<Response, ApiError> {
    let selection = alert_selection(&params, now_ns())?;
    let limit = number("limit", &params.limit, 200)?.min(MAX_LIMIT);
    let offset = number("offset", &params.offset, 0)?;
    let (page, counts) = blocking(&hub, move |conn| {
        Ok((
            query_alerts::page(conn, &selection, limit, offset)?,
            query_alerts::counts(conn, &selection)?,
        ))
    })
    .await?;
    let alerts: Vec<_> = page.alerts.iter().map(query_alerts::listed).collect();
    Ok(Json(json!({
        "alerts": alerts,
        "total": page.total,
        "offset": offset,
        "limit": limit,
        "counts": counts,
    }))
    .into_response())
}

/// One alert with its deliveries and the searches for its entity's requests.
pub async fn alert_detail(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let found = blocking(&hub, move |conn| {
        let Some(alert) = store_alerts::get(conn, id)? else {
            return Ok(None);
        };
        let deliveries = query_alerts::deliveries(conn, &alert)?;
        Ok(Some(query_alerts::detail(&alert, &deliveries)))
    })
    .await?;
    match found {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, "no such alert".to_owned())),
    }
}

/// New access records as they are committed. A client too slow to keep up is told how
/// many it missed (`event: lagged`) instead of silently skipping them.
pub async fn live(
    State(hub): State<Arc<Hub>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = hub.live.subscribe();
    let stopping = hub.stopping.clone();
    let events = stream::unfold(
        (receiver, stopping),
        |(mut receiver, mut stopping)| async move {
            let received = tokio::select! {
                // The hub is stopping: the stream ends, or the server would wait for it.
                _ = stopping.wait_for(|stop| *stop) => return None,
                received = receiver.recv() => received,
            };
            let event = match received {
                Ok(row) => Event::default()
                    .event("record")
                    .json_data(&*row)
                    .unwrap_or_default(),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    Event::default().event("lagged").data(n.to_string())
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(event), (receiver, stopping)))
        },
    );
    Sse::new(events.boxed()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> AlertParams {
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        Query::<AlertParams>::try_from_uri(&format!("/api/alerts?{query}").parse().unwrap())
            .unwrap()
            .0
    }

    #[test]
    fn alert_filters_default_to_a_week_and_refuse_what_they_cannot_read() {
        let now = 100 * DAY_NS;
        let none = alert_selection(&params(&[]), now).unwrap();
        assert_eq!(none.from_ns, Some(now - 7 * DAY_NS));
        assert_eq!(
            (none.to_ns, none.rule, none.entity, none.min_severity),
            (None, None, None, None)
        );
        let all = alert_selection(
            &params(&[
                ("from", "2026-12-03T00:00:00Z"),
                ("to", "2026-12-04T00:00:00Z"),
                ("rule", "restricted_access"),
                ("severity", "high"),
                ("entity", "user:bob"),
                ("since", ""),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(all.from_ns, parse_rfc3339_ns("2026-12-03T00:00:00Z"));
        assert_eq!(all.to_ns, parse_rfc3339_ns("2026-12-04T00:00:00Z"));
        assert_eq!(all.min_severity, Some(Severity::High));
        assert_eq!(all.entity.as_deref(), Some("user:bob"));
        let day = alert_selection(&params(&[("since", "24h")]), now).unwrap();
        assert_eq!(day.from_ns, Some(now - DAY_NS));
        for bad in [
            &[("since", "24h"), ("from", "2026-12-03T00:00:00Z")][..],
            &[("since", "soon")],
            &[("to", "tomorrow")],
            &[("severity", "urgent")],
        ] {
            let err = alert_selection(&params(bad), now).expect_err("refused");
            assert_eq!(err.0, StatusCode::BAD_REQUEST, "{bad:?}: {}", err.1);
        }
    }
}
