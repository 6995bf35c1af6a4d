//! Development-only pages.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;
use crate::domain::TenantId;

#[derive(Template)]
#[template(path = "dev_checkout.html")]
struct CheckoutPage<'a> {
    company_name: &'a str,
    email: &'a str,
    plan: &'a str,
    price: u32,
    status: &'a str,
}

pub fn router() -> Router<AppState> {
    Router::new().route("/dev/checkout/{id}", get(checkout_page))
}

async fn checkout_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = TenantId::parse(&id).ok_or_else(|| ApiError::not_found("checkout session"))?;
    let t = state
        .store
        .tenant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("checkout session"))?;
    let page = CheckoutPage {
        company_name: &t.company_name,
        email: &t.email,
        plan: t.plan.as_str(),
        price: t.plan.price_monthly_usd(),
        status: t.status.as_str(),
    };
    let html = page
        .render()
        .map_err(|e| ApiError::internal("render checkout page", e))?;
    Ok(Html(html).into_response())
}
