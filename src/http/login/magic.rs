//! The welcome email's single-use magic sign-in link, `GET /login/magic?token=…`.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::session::{no_store, started_cookie, with_cookie};
use super::{after_session_start, login_refusal, normalized_email, session_ttl_ms};
use crate::http::AppState;
use crate::http::error::{ApiError, AppResult};
use crate::workspace::sessions::{LoginMethod, MagicToken};

fn magic_link_page(status: StatusCode, title: &str, message: &str) -> Response {
    let mut resp = crate::http::message_page(status, title, message, ("/login", "Go to sign in"));
    no_store(&mut resp);
    resp
}

fn token_param(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `GET /login/magic?token=…`: the welcome email's link. Consuming the token, checking the
/// tenant and starting the session are one transaction: a refused sign-in leaves the link
/// unused, and two clicks at once start one session.
pub(crate) async fn magic_link(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut resp = match magic_login(&state, query.as_deref()).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    // The URL carries the token: never pass it on in a Referer.
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

async fn magic_login(state: &AppState, query: Option<&str>) -> AppResult<Response> {
    let Some(token) = token_param(query) else {
        return Ok(magic_link_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is incomplete",
            "The link has no token. Open the link from your welcome email exactly as it was sent, \
             or sign in with your email and password.",
        ));
    };
    let mut tx = state.store.begin().await?;
    let (gone, title, message) = match tx.consume_magic_token(&token).await? {
        MagicToken::Consumed(tenant_id) => {
            let tenant = tx
                .tenant(&tenant_id)
                .await?
                .ok_or_else(|| ApiError::not_found("tenant"))?;
            if let Some(message) = login_refusal(tenant.status, tenant.id.as_str()) {
                // Dropping the transaction rolls the consumption back: the link stays usable.
                drop(tx);
                return Ok(magic_link_page(
                    StatusCode::FORBIDDEN,
                    "You cannot sign in yet",
                    &message,
                ));
            }
            let session = tx
                .start_session(
                    &tenant.id,
                    &normalized_email(&tenant),
                    LoginMethod::MagicLink,
                    session_ttl_ms(state),
                )
                .await?;
            tx.commit().await?;
            after_session_start(state, &tenant, LoginMethod::MagicLink).await;
            let cookie = started_cookie(state, &session);
            return with_cookie(Redirect::to("/account").into_response(), &cookie);
        }
        MagicToken::AlreadyUsed => (
            true,
            "This sign-in link was already used",
            "Each sign-in link works once, and this one has been used. Sign in with your email \
             and password instead.",
        ),
        MagicToken::Expired => (
            true,
            "This sign-in link has expired",
            "Sign-in links work for a limited time, and this one has expired. Sign in with your \
             email and password instead.",
        ),
        MagicToken::Unknown => (
            false,
            "This sign-in link is not valid",
            "We do not recognise this link; it may have been cut off when it was copied. Open \
             it from your welcome email again, or sign in with your email and password.",
        ),
    };
    drop(tx);
    let status = if gone {
        StatusCode::GONE
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(magic_link_page(status, title, message))
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
