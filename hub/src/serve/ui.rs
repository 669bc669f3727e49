//! The dashboard's files, embedded at build time from `hub/ui/`, each at its path
//! under `/`. They are code and styles, no data, so they are served without a login
//! (the login page needs some of them); every answer with data is under `/api`.
use axum::{
    http::{StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

fn asset(name: &str) -> Option<&'static [u8]> {
    ASSETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

pub fn page(name: &str) -> Response {
    match asset(name) {
        Some(bytes) => ([(header::CONTENT_TYPE, content_type(name))], bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

pub async fn file(uri: Uri) -> Response {
    match uri.path().trim_start_matches('/') {
        // The pages themselves have their own routes.
        "index.html" | "login.html" => (StatusCode::NOT_FOUND, "not found").into_response(),
        name => page(name),
    }
}
