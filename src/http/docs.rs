//! `GET /openapi.json` and `GET /docs`, a reference page rendered in the browser from the
//! document itself, with no asset fetched from anywhere else.

use std::sync::Arc;

use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;

const DOCS_PAGE: &str = include_str!("../../templates/docs.html");

pub fn router(doc: Arc<utoipa::openapi::OpenApi>) -> Router<AppState> {
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move { Json(doc.as_ref().clone()) }),
        )
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
}
