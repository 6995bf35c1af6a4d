//! Development aids: the built-in checkout (when `STRIPE_SECRET_KEY` is unset) and the mailbox
//! of the `outbox` email transport. Each exists only while `Settings::dev_aids` says so: never
//! in production, and on a non-loopback address only with an explicit `APP_ENV=development`.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;

use super::extract::PathParam;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::AppState;
use super::error::{ApiError, AppResult};
use crate::billing::{account, checkout, signature};
use crate::store::Tenant;

#[derive(Template)]
#[template(path = "dev_checkout.html")]
struct CheckoutPage<'a> {
    session_id: &'a str,
    company_name: &'a str,
    email: &'a str,
    plan: &'a str,
    price: u32,
    status: &'a str,
}

#[derive(Template)]
#[template(path = "dev_billing_portal.html")]
struct PortalPage<'a> {
    company_name: &'a str,
    plan: &'a str,
    price: u32,
    status: &'a str,
    can_change: bool,
}

#[derive(Template)]
#[template(path = "dev_mailbox.html")]
struct MailboxPage {
    emails: Vec<crate::email::StoredEmail>,
}

#[derive(Template)]
#[template(path = "dev_email.html")]
struct EmailPage {
    email: crate::email::StoredEmail,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dev/checkout/{session}", get(checkout_page))
        .route("/dev/checkout/{session}/pay", post(pay))
        .route("/dev/checkout/{session}/cancel", post(cancel))
        .route("/dev/billing-portal", get(portal_page))
        .route("/dev/billing-portal/update-card", post(portal_update_card))
        .route("/dev/billing-portal/cancel", post(portal_cancel))
        .route("/dev/mailbox", get(mailbox))
        .route("/dev/mailbox/{id}", get(email_page))
}

/// 404 unless the mailbox aid is on.
fn mailbox_on(state: &AppState) -> AppResult<()> {
    if !state.settings.dev_aids().mailbox {
        return Err(ApiError::not_found("route"));
    }
    Ok(())
}

async fn dev_session(state: &AppState, session: &str) -> AppResult<Tenant> {
    if !state.settings.dev_aids().checkout {
        return Err(ApiError::not_found("route"));
    }
    if state.stripe.is_some() || !session.starts_with("cs_dev_") {
        return Err(ApiError::not_found("checkout session"));
    }
    state
        .store
        .tenant_by_checkout_session(session)
        .await?
        .ok_or_else(|| ApiError::not_found("checkout session"))
}

async fn checkout_page(
    State(state): State<AppState>,
    PathParam(session): PathParam<String>,
) -> AppResult<Response> {
    let t = dev_session(&state, &session).await?;
    let page = CheckoutPage {
        session_id: &session,
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

/// Signs `event` with the webhook secret and delivers it to our own `/webhook/stripe`, exactly
/// as Stripe would, so development exercises the production path.
async fn deliver(state: &AppState, event: &serde_json::Value) -> AppResult<()> {
    let body = serde_json::to_vec(event).map_err(|e| ApiError::internal("serialize event", e))?;
    let secret = state
        .webhook_secret
        .as_deref()
        .map(secrecy::ExposeSecret::expose_secret)
        .ok_or_else(|| ApiError::not_found("route"))?;
    let header = signature::sign(&body, secret, chrono::Utc::now().timestamp());
    let mut addr = state.settings.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let resp = state
        .http
        .post(format!("http://{addr}/webhook/stripe"))
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body)
        .send()
        .await
        .map_err(|e| ApiError::internal("deliver dev webhook", e))?;
    if !resp.status().is_success() {
        return Err(ApiError::internal(
            "deliver dev webhook",
            format!("webhook answered {}", resp.status()),
        ));
    }
    Ok(())
}

/// A dev session can be paid or canceled once, while its tenant awaits payment (like a real
/// Checkout Session, which completes or expires once).
fn require_open(t: &Tenant) -> AppResult<()> {
    if t.status != crate::domain::TenantStatus::PendingPayment {
        return Err(ApiError::conflict(
            "checkout_closed",
            format!(
                "this checkout is closed: the account is already {}",
                t.status
            ),
        ));
    }
    Ok(())
}

async fn pay(
    State(state): State<AppState>,
    PathParam(session): PathParam<String>,
) -> AppResult<Response> {
    let t = dev_session(&state, &session).await?;
    require_open(&t)?;
    deliver(&state, &checkout::dev_completed_event(&t, &session)).await?;
    Ok(Redirect::to(&format!("/onboarding/success?session_id={session}")).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    PathParam(session): PathParam<String>,
) -> AppResult<Response> {
    let t = dev_session(&state, &session).await?;
    require_open(&t)?;
    deliver(&state, &checkout::dev_expired_event(&t, &session)).await?;
    Ok(Redirect::to("/onboarding/cancel").into_response())
}

/// The signed-in tenant of the dev billing portal (the dev checkout's aid; only without Stripe).
async fn portal_tenant(state: &AppState, headers: &HeaderMap) -> AppResult<Option<Tenant>> {
    if !state.settings.dev_aids().checkout || state.stripe.is_some() {
        return Err(ApiError::not_found("route"));
    }
    Ok(super::login::session::current_session(state, headers)
        .await?
        .map(|(_, t)| t))
}

fn portal_can_change(t: &Tenant) -> bool {
    use crate::domain::TenantStatus::*;
    matches!(t.status, Active | PastDue | Suspended) && t.stripe_subscription_id.is_some()
}

async fn portal_page(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let Some(t) = portal_tenant(&state, &headers).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let html = PortalPage {
        company_name: &t.company_name,
        plan: t.plan.as_str(),
        price: t.plan.price_monthly_usd(),
        status: t.status.as_str(),
        can_change: portal_can_change(&t),
    }
    .render()
    .map_err(|e| ApiError::internal("render billing portal", e))?;
    Ok(Html(html).into_response())
}

async fn portal_action(
    state: &AppState,
    headers: &HeaderMap,
    event: fn(&Tenant) -> serde_json::Value,
) -> AppResult<Response> {
    let Some(t) = portal_tenant(state, headers).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    if !portal_can_change(&t) {
        return Err(ApiError::conflict(
            "subscription_closed",
            format!(
                "this subscription is {}; there is nothing to change",
                t.status
            ),
        ));
    }
    deliver(state, &event(&t)).await?;
    Ok(Redirect::to("/account").into_response())
}

async fn portal_update_card(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> AppResult<Response> {
    portal_action(&state, &headers, account::dev_invoice_paid_event).await
}

async fn portal_cancel(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    portal_action(&state, &headers, account::dev_subscription_deleted_event).await
}

async fn mailbox(State(state): State<AppState>) -> AppResult<Response> {
    mailbox_on(&state)?;
    let emails = state.store.list_emails(None, 200).await?;
    let html = MailboxPage { emails }
        .render()
        .map_err(|e| ApiError::internal("render mailbox", e))?;
    Ok(Html(html).into_response())
}

async fn email_page(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> AppResult<Response> {
    mailbox_on(&state)?;
    let email = state
        .store
        .email(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("email"))?;
    let html = EmailPage { email }
        .render()
        .map_err(|e| ApiError::internal("render email", e))?;
    Ok((StatusCode::OK, Html(html)).into_response())
}
