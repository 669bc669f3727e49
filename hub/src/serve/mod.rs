//! `tracer-hub serve`'s web side: the dashboard and its JSON API behind a login, with
//! headers that keep the pages from being framed, sniffed or fed foreign scripts.
mod api;
pub mod auth;
pub mod tls;
mod ui;

/// The API's page and export bounds, which `query --hub` and `top --hub` live within.
pub use api::{MAX_EXPORT, MAX_LIMIT};

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;

use self::auth::{Auth, COOKIE, Login, SESSION_LIFETIME};
use crate::{query::records::Row, store::Readers};

/// What every handler shares.
pub struct Hub {
    /// Readers of the store, kept between requests.
    pub store: Readers,
    pub auth: Auth,
    /// Access records as they are committed, for `/api/live`.
    pub live: broadcast::Sender<Arc<Row>>,
    /// Becomes true when the hub stops: live streams end, so the server can.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Cookies get `Secure` when the page is served over TLS.
    pub secure_cookies: bool,
    /// The detections as configured at start (`tracer-hub rules`), for `/api/rules`.
    pub rules: Rules,
}

/// What `/api/rules` answers.
#[derive(serde::Serialize)]
pub struct Rules {
    /// This hub ingests, so the rules run in it; a hub serving a store only runs none.
    pub detecting: bool,
    #[serde(flatten)]
    pub listing: crate::detect::Listing,
}

pub fn router(hub: Arc<Hub>) -> Router {
    let api = Router::new()
        .route("/api/records", get(api::records_list))
        .route("/api/records/{stream}/{seq}", get(api::record_detail))
        .route("/api/top/{kind}", get(api::top_list))
        .route("/api/timeseries", get(api::series))
        .route("/api/totals", get(api::totals_view))
        .route("/api/integrity", get(api::integrity_view))
        .route("/api/conflicts", get(api::conflicts_export))
        .route("/api/alerts", get(api::alerts_list))
        .route("/api/alerts/{id}", get(api::alert_detail))
        .route("/api/rules", get(api::rules_list))
        .route("/api/live", get(api::live))
        .route_layer(middleware::from_fn_with_state(hub.clone(), require_login));
    Router::new()
        .route("/", get(index))
        .route(
            "/login",
            get(|| async { ui::page("login.html") }).post(login),
        )
        .route("/logout", post(logout))
        .merge(api)
        .fallback(get(ui::file))
        .layer(middleware::from_fn(security_headers))
        .with_state(hub)
}

fn session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn authorized(hub: &Hub, headers: &HeaderMap) -> bool {
    if session(headers).is_some_and(|s| hub.auth.session_valid(&s)) {
        return true;
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| hub.auth.bearer_valid(token.trim()))
}

async fn require_login(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    if authorized(&hub, request.headers()) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "log in first" })),
        )
            .into_response()
    }
}

async fn index(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    if authorized(&hub, &headers) {
        ui::page("index.html")
    } else {
        Redirect::to("/login").into_response()
    }
}

#[derive(Deserialize)]
struct LoginForm {
    password: String,
}

async fn login(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(form): Json<LoginForm>,
) -> Response {
    let hub2 = hub.clone();
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let outcome =
        tokio::task::spawn_blocking(move || hub2.auth.login(peer.ip(), &form.password)).await;
    match outcome {
        Ok(Login::Session(id)) => {
            let cookie = format!(
                "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                SESSION_LIFETIME.as_secs(),
                if hub.secure_cookies { "; Secure" } else { "" }
            );
            (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
        }
        Ok(Login::TooMany) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "60")],
            Json(json!({ "error": "too many failed logins from this address; wait a minute" })),
        )
            .into_response(),
        Ok(Login::Refused) | Err(_) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "wrong password" })),
        )
            .into_response(),
    }
}

async fn logout(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    if let Some(id) = session(&headers) {
        hub.auth.logout(&id);
    }
    let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired)]).into_response()
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
