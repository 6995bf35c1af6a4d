//! Unsubscribing from an email's signed link: `GET /unsubscribe` shows a confirmation (a link
//! opened by a mail scanner changes nothing), `POST /unsubscribe` is the RFC 8058 one-click
//! unsubscribe (a mail provider posts `List-Unsubscribe=One-Click` to the link) and the
//! confirmation's button: 200 and a page, no redirect. A forged or altered token gets 400. The
//! token is the authorization (no cookie is involved), so the cross-site guard lets these
//! through.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, AppResult};
use super::extract::{ClientIp, QueryParams};
use crate::domain::TenantId;
use crate::email::consent::source;
use crate::email::unsubscribe;

#[derive(Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

#[derive(Template)]
#[template(path = "unsubscribe.html")]
struct ConfirmPage<'a> {
    email: &'a str,
    token: &'a str,
    already: bool,
}

pub fn router() -> Router<AppState> {
    Router::new().route("/unsubscribe", get(confirm).post(one_click))
}

/// What a token says: its tenant, address and whether it is already unsubscribed; or why the
/// link does not work.
enum Verified {
    Good(TenantId, String, bool),
    Bad(&'static str),
}

/// The page a person gets for a bad link.
fn bad_link(why: &str) -> Response {
    super::message_page(
        StatusCode::BAD_REQUEST,
        "This unsubscribe link does not work",
        &format!(
            "{why} Use the link from the email itself, or change your email settings on your account page."
        ),
        ("/account", "Go to your account"),
    )
}

async fn verified(state: &AppState, q: &TokenQuery) -> AppResult<Verified> {
    let Some(token) = q.token.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(Verified::Bad("The link has no token."));
    };
    let Ok(who) = unsubscribe::verify(state.mailer.brand().unsubscribe_key(), token) else {
        return Ok(Verified::Bad("The link is incomplete or was altered."));
    };
    let Some(id) = TenantId::parse(&who.tenant_id) else {
        return Ok(Verified::Bad("The link names no account."));
    };
    let already = match state.store.billing(&id).await? {
        Some(b) => b.unsubscribed_at.is_some(),
        // The account is gone (erased): nothing is sent to it any more.
        None => true,
    };
    Ok(Verified::Good(id, who.email, already))
}

async fn confirm(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<TokenQuery>,
) -> AppResult<Response> {
    let (email, already) = match verified(&state, &q).await? {
        Verified::Good(_, email, already) => (email, already),
        Verified::Bad(why) => return Ok(bad_link(why)),
    };
    let html = ConfirmPage {
        email: &email,
        token: q.token.as_deref().unwrap_or_default(),
        already,
    }
    .render()
    .map_err(|e| ApiError::internal("render unsubscribe page", e))?;
    Ok(Html(html).into_response())
}

async fn one_click(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    QueryParams(q): QueryParams<TokenQuery>,
    body: String,
) -> AppResult<Response> {
    let (id, email, already) = match verified(&state, &q).await? {
        Verified::Good(id, email, already) => (id, email, already),
        Verified::Bad(why) => return Ok(bad_link(why)),
    };
    if !already {
        let how = if body.contains("List-Unsubscribe=One-Click") {
            source::ONE_CLICK
        } else {
            source::UNSUBSCRIBE_LINK
        };
        let mut tx = state.store.begin().await?;
        tx.record_marketing_consent(&id, false, how, Some(&ip.to_string()))
            .await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %id, how, "unsubscribed");
    }
    Ok(super::message_page(
        StatusCode::OK,
        "You are unsubscribed",
        &format!(
            "We will not send reminders, tips or news to {email} any more. Emails you need to use your account (sign-in links, receipts, billing and security notices) still arrive."
        ),
        ("/account", "Email settings"),
    ))
}
