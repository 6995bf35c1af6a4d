//! Single-use magic sign-in links (the welcome email's, and those asked for on `/login`).
//! `GET /login/magic?token=…` only shows a page asking to confirm, whose button POSTs the
//! token: link scanners and previews that fetch every link in an email never use it up. Only
//! `POST /login/magic` consumes it.

use std::net::IpAddr;

use askama::Template;
use axum::extract::{RawForm, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::session::{no_store, started_cookie, with_cookie};
use super::{
    after_session_start, audit_login, cross_site_refused, is_cross_site, login_refusal,
    normalized_email, session_ttl_ms, token_param,
};
use crate::domain::audit::{Action, Actor};
use crate::http::AppState;
use crate::http::error::{ApiError, AppResult};
use crate::http::extract::ClientIp;
use crate::store::AuditEntry;
use crate::workspace::sessions::{LoginMethod, MagicToken};

/// How these sign-ins are named in the audit log.
const MAGIC: LoginMethod = LoginMethod::MagicLink;

fn magic_link_page(status: StatusCode, title: &str, message: &str) -> Response {
    let mut resp = crate::http::message_page(status, title, message, ("/login", "Go to sign in"));
    no_store(&mut resp);
    resp
}

#[derive(Template)]
#[template(path = "magic_confirm.html")]
struct ConfirmPage<'a> {
    company_name: &'a str,
    email: &'a str,
    token: &'a str,
}

/// Never pass a URL that carries a token on in a Referer.
fn no_referrer(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// `GET /login/magic?token=…`: an emailed sign-in link. Shows who it signs in and a button
/// that POSTs the token; consumes nothing.
pub(crate) async fn magic_link(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    no_referrer(match confirm_page(&state, query.as_deref()).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    })
}

async fn confirm_page(state: &AppState, query: Option<&str>) -> AppResult<Response> {
    let Some(token) = token_param(query) else {
        return Ok(incomplete_link());
    };
    match state
        .store
        .login_token_state(&token, crate::workspace::sessions::TokenPurpose::MagicLogin)
        .await?
    {
        MagicToken::Consumed(owner) => {
            let tenant = state
                .store
                .tenant(&owner.tenant_id)
                .await?
                .ok_or_else(|| ApiError::not_found("tenant"))?;
            let user = state
                .store
                .user(&owner.tenant_id, &owner.user_id)
                .await?
                .ok_or_else(|| ApiError::not_found("user"))?;
            if let Some(message) = login_refusal(tenant.status, tenant.id.as_str()) {
                return Ok(magic_link_page(
                    StatusCode::FORBIDDEN,
                    "You cannot sign in yet",
                    &message,
                ));
            }
            let html = ConfirmPage {
                company_name: &tenant.company_name,
                email: &user.email,
                token: &token,
            }
            .render()
            .map_err(|e| ApiError::internal("render sign-in confirmation", e))?;
            let mut resp = Html(html).into_response();
            no_store(&mut resp);
            Ok(resp)
        }
        other => Ok(refused(&other)),
    }
}

fn incomplete_link() -> Response {
    magic_link_page(
        StatusCode::BAD_REQUEST,
        "This sign-in link is incomplete",
        "The link has no token. Open the link from your email exactly as it was sent, or sign \
         in with your email and password, or ask for a new link on the sign-in page.",
    )
}

/// `POST /login/magic` (form field `token`): the confirmation. Consuming the token, checking the
/// tenant and starting the session are one transaction: a refused sign-in leaves the link
/// unused, and two clicks at once start one session.
pub(crate) async fn magic_link_confirmed(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Response {
    if is_cross_site(&headers, &state.settings.app_url) {
        return cross_site_refused().into_response();
    }
    let token = std::str::from_utf8(&form)
        .ok()
        .and_then(|f| token_param(Some(f)));
    no_referrer(match magic_login(&state, ip, token).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    })
}

/// Signs in with a link's token. The sign-in is audited in its transaction; a refused one
/// (an account that may not sign in, a used, expired or unknown link) right after.
async fn magic_login(state: &AppState, ip: IpAddr, token: Option<String>) -> AppResult<Response> {
    let Some(token) = token else {
        return Ok(incomplete_link());
    };
    let mut tx = state.store.begin().await?;
    match tx.consume_magic_token(&token).await? {
        MagicToken::Consumed(owner) => {
            let tenant = tx
                .tenant(&owner.tenant_id)
                .await?
                .ok_or_else(|| ApiError::not_found("tenant"))?;
            let user = tx
                .user(&owner.tenant_id, &owner.user_id)
                .await?
                .ok_or_else(|| ApiError::not_found("user"))?;
            let actor = Actor::Member(user.id.clone());
            if let Some(message) = login_refusal(tenant.status, tenant.id.as_str()) {
                // Dropping the transaction rolls the consumption back: the link stays usable.
                drop(tx);
                let failure = Some("account_not_active");
                audit_login(state, actor, Some(&tenant.id), ip, MAGIC, failure).await?;
                return Ok(magic_link_page(
                    StatusCode::FORBIDDEN,
                    "You cannot sign in yet",
                    &message,
                ));
            }
            let session = tx
                .start_session(
                    &tenant.id,
                    &user.id,
                    &normalized_email(&user.email),
                    LoginMethod::MagicLink,
                    session_ttl_ms(state),
                )
                .await?;
            tx.audit(
                &AuditEntry::new(actor, Action::LoginSucceeded)
                    .target(tenant.id.as_str())
                    .ip(Some(ip))
                    .with("method", MAGIC.as_str()),
            )
            .await?;
            tx.commit().await?;
            after_session_start(state, &tenant, LoginMethod::MagicLink).await;
            let cookie = started_cookie(state, &session);
            let to = crate::http::workspace::landing(state, &tenant).await;
            with_cookie(Redirect::to(to).into_response(), &cookie)
        }
        other => {
            drop(tx);
            let reason = match other {
                MagicToken::AlreadyUsed => "link_already_used",
                MagicToken::Expired => "link_expired",
                MagicToken::Unknown | MagicToken::Consumed(_) => "link_unknown",
            };
            audit_login(state, Actor::Anonymous, None, ip, MAGIC, Some(reason)).await?;
            Ok(refused(&other))
        }
    }
}

/// The page for a link that cannot sign anyone in (used, expired or unknown).
fn refused(outcome: &MagicToken) -> Response {
    let (status, title, message) = match outcome {
        MagicToken::AlreadyUsed => (
            StatusCode::GONE,
            "This sign-in link was already used",
            "Each sign-in link works once, and this one has been used. Sign in with your email \
             and password, or ask for a new link on the sign-in page.",
        ),
        MagicToken::Expired => (
            StatusCode::GONE,
            "This sign-in link has expired",
            "Sign-in links work for a limited time, and this one has expired. Sign in with your \
             email and password, or ask for a new link on the sign-in page.",
        ),
        MagicToken::Unknown | MagicToken::Consumed(_) => (
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "We do not recognise this link; it may have been cut off when it was copied. Open \
             it from your email again, or sign in with your email and password.",
        ),
    };
    magic_link_page(status, title, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_token_is_taken_from_the_query() {
        assert_eq!(token_param(Some("token=abc_-1")).as_deref(), Some("abc_-1"));
        assert_eq!(token_param(Some("x=1&token=a%2Bb")).as_deref(), Some("a+b"));
        assert_eq!(token_param(Some("token=")), None);
        assert_eq!(token_param(None), None);
    }
}
