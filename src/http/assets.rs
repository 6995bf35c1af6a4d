//! Static files served from the binary (`static/`): the pages' scripts and the one
//! stylesheet of every page, so that no page needs an inline script (the Content-Security-Policy allows none)
//! and nothing is fetched from a CDN.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;

/// Every served file: name, media type, contents.
const FILES: &[(&str, &str, &str)] = &[
    (
        "onboarding.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/onboarding.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/app.js"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/console.js"),
    ),
    (
        "site.css",
        "text/css; charset=utf-8",
        include_str!("../../static/site.css"),
    ),
    (
        "docs.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/docs.js"),
    ),
];

pub fn router() -> Router<AppState> {
    Router::new().route("/static/{file}", get(file))
}

async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, body)) => {
            let mut resp = (*body).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            // Files change only with a new release; an hour keeps a deploy visible soon.
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            resp
        }
        None => ApiError::not_found("file").into_response(),
    }
}
