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
        alerts as query_alerts,
        filter::{Filter, FilterArgs, parse_duration},
        integrity, records,
        series::{timeseries, totals},
        top::{TopKind, top},
    },
    store::alerts::{self as store_alerts, AlertFilter, Severity},
    when::now_ns,
};

/// Rows a page may ask for.
const MAX_LIMIT: u64 = 1_000;
/// Rows an export holds.
const MAX_EXPORT: u64 = 100_000;
const DAY_NS: i64 = 86_400_000_000_000;

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
    work: impl FnOnce(&rusqlite::Connection) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let store = hub.store.clone();
    tokio::task::spawn_blocking(move || {
        let conn = store.open_reader()?;
        work(&conn)
    })
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
        Some("jsonl") => {
            let mut body = Vec::new();
            for (_, line) in &page.rows {
                body.extend_from_slice(line);
                body.push(b'\n');
            }
            (
                [
                    (header::CONTENT_TYPE, "application/jsonl"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"records.jsonl\"",
                    ),
                ],
                body,
            )
                .into_response()
        }
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

pub async fn integrity_view(State(hub): State<Arc<Hub>>) -> Result<Response, ApiError> {
    let report = blocking(&hub, integrity::integrity).await?;
    Ok(Json(report).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct AlertParams {
    /// `24h`, `7d`: alerts last seen within it; default 7 days.
    since: Option<String>,
    rule: Option<String>,
    severity: Option<String>,
    limit: Option<String>,
}

pub async fn alerts_list(
    State(hub): State<Arc<Hub>>,
    Query(params): Query<AlertParams>,
) -> Result<Response, ApiError> {
    let since = match params.since.as_deref().filter(|s| !s.is_empty()) {
        None => 7 * DAY_NS,
        Some(text) => parse_duration(text)
            .and_then(|d| i64::try_from(d.as_nanos()).ok())
            .ok_or_else(|| bad_request(format!("since {text:?} is not a duration (24h, 7d)")))?,
    };
    let min_severity = match params.severity.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(Severity::parse(text).ok_or_else(|| {
            bad_request(format!("severity {text:?}: low, medium, high or critical"))
        })?),
    };
    let filter = AlertFilter {
        since_ns: Some(now_ns() - since),
        rule: params.rule.filter(|r| !r.is_empty()),
        min_severity,
        limit: number("limit", &params.limit, 200)?.min(MAX_LIMIT) as u32,
    };
    let alerts = blocking(&hub, move |conn| store_alerts::list(conn, &filter)).await?;
    let alerts: Vec<_> = alerts.iter().map(query_alerts::json).collect();
    Ok(Json(json!({ "alerts": alerts })).into_response())
}

pub async fn alert_detail(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    match blocking(&hub, move |conn| store_alerts::get(conn, id)).await? {
        Some(alert) => Ok(Json(query_alerts::json(&alert)).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, "no such alert".to_owned())),
    }
}

/// New access records as they are committed. A client too slow to keep up is told how
/// many it missed (`event: lagged`) instead of silently skipping them.
pub async fn live(
    State(hub): State<Arc<Hub>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = hub.live.subscribe();
    let events = stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(row) => Event::default()
                .event("record")
                .json_data(&*row)
                .unwrap_or_default(),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                Event::default().event("lagged").data(n.to_string())
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), receiver))
    });
    Sse::new(events.boxed()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
