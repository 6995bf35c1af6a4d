//! The session cookie, the signed-in session and its tenant, `GET /session` and `POST /logout`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{FORM, cross_site_refused, is_cross_site, login_refusal};
use crate::domain::{Plan, TenantStatus};
use crate::http::AppState;
use crate::http::error::{ApiError, AppResult, ErrorBody};
use crate::store::{Tenant, ms_to_datetime, now_ms};
use crate::workspace::sessions::{IssuedSession, Session};

/// Name of the session cookie over plain http (development on a loopback address).
pub const SESSION_COOKIE: &str = "onboard_session";
/// Name of the session cookie over https: the `__Host-` prefix makes browsers refuse it unless
/// it is `Secure`, for `Path=/` and set by this very host (no subdomain can plant or widen it).
pub const SECURE_SESSION_COOKIE: &str = "__Host-onboard_session";

fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The signed-in user and their tenant.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionResponse {
    pub tenant_id: String,
    pub user_id: String,
    /// The signed-in user's email.
    pub email: String,
    pub role: crate::domain::Role,
    pub company_name: String,
    pub plan: Plan,
    pub status: TenantStatus,
    pub expires_at: DateTime<Utc>,
}

/// `Set-Cookie` value that stores a session token.
pub fn session_cookie(token: &str, max_age_secs: i64, secure: bool) -> String {
    let name = cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        max_age_secs.max(0)
    )
}

/// `Set-Cookie` value that deletes the session cookie.
pub fn clear_session_cookie(secure: bool) -> String {
    session_cookie("", 0, secure)
}

pub(crate) fn secure_cookies(state: &AppState) -> bool {
    state.settings.app_url.scheme() == "https"
}

/// The session token from the request's `Cookie` headers, if any (under the name this
/// deployment's scheme uses).
pub(crate) fn session_token(headers: &HeaderMap, secure: bool) -> Option<String> {
    cookie(headers, cookie_name(secure))
}

/// The value of the cookie `name` in the request's `Cookie` headers, if it is there and not
/// empty.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// A form post of one of the signed-in customer's pages (`page`, e.g. "the members page"): a
/// form, from our own site, with a session. The session and its tenant, or the answer to give
/// instead: 415, 403 for another site, or to `/login` when not signed in.
pub(crate) async fn form_session(
    state: &AppState,
    headers: &HeaderMap,
    page: &str,
) -> Result<(Session, Tenant), Response> {
    if crate::http::extract::media_type(headers) != crate::http::extract::FORM {
        return Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send {page}'s form (application/x-www-form-urlencoded)"),
        )
        .into_response());
    }
    if super::is_cross_site(headers, &state.settings.app_url) {
        return Err(super::cross_site_refused().into_response());
    }
    match current_session(state, headers).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(axum::response::Redirect::to("/login").into_response()),
        Err(e) => Err(e.into_response()),
    }
}

pub(crate) fn no_store(resp: &mut Response) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

pub(crate) fn with_cookie(mut resp: Response, cookie: &str) -> AppResult<Response> {
    let value =
        HeaderValue::from_str(cookie).map_err(|e| ApiError::internal("session cookie", e))?;
    resp.headers_mut().insert(header::SET_COOKIE, value);
    no_store(&mut resp);
    Ok(resp)
}

pub(crate) fn started_cookie(state: &AppState, session: &IssuedSession) -> String {
    session_cookie(
        session.token.expose_secret(),
        (session.expires_at - now_ms()) / 1000,
        secure_cookies(state),
    )
}

/// The live session and its tenant, when the request carries one whose tenant may still sign in.
pub(crate) async fn current_session(
    state: &AppState,
    headers: &HeaderMap,
) -> AppResult<Option<(Session, Tenant)>> {
    let Some(token) = session_token(headers, secure_cookies(state)) else {
        return Ok(None);
    };
    let Some((session, tenant)) = state.store.session_with_tenant(&token).await? else {
        return Ok(None);
    };
    if login_refusal(tenant.status, tenant.id.as_str()).is_some() {
        return Ok(None);
    }
    Ok(Some((session, tenant)))
}

/// Refused with a 403 naming the role that may, unless the session's user may do `p`.
pub(crate) fn require(session: &Session, p: crate::domain::Permission) -> AppResult<()> {
    ApiError::require_role(session.role, p)
}

/// The signed-in tenant.
#[utoipa::path(get, path = "/session", tag = "login",
    responses(
        (status = 200, description = "The session's tenant", body = SessionResponse),
        (status = 401, description = "No valid session cookie", body = ErrorBody),
    ))]
pub async fn session(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let (session, tenant) = current_session(&state, &headers)
        .await?
        .ok_or_else(|| ApiError::unauthorized("you are not signed in; sign in with POST /login"))?;
    let mut resp = Json(SessionResponse {
        tenant_id: tenant.id.to_string(),
        user_id: session.user_id,
        email: session.email,
        role: session.role,
        company_name: tenant.company_name,
        plan: tenant.plan,
        status: tenant.status,
        expires_at: ms_to_datetime(session.expires_at),
    })
    .into_response();
    no_store(&mut resp);
    Ok(resp)
}

/// Signs out: revokes the session and clears its cookie. Always succeeds, signed in or not.
#[utoipa::path(post, path = "/logout", tag = "login",
    responses(
        (status = 204, description = "Signed out (JSON or empty body); the cookie is cleared"),
        (status = 303, description = "Signed out from an HTML form: go to /login"),
        (status = 403, description = "The request came from another site", body = ErrorBody),
    ))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    if is_cross_site(&headers, &state.settings.app_url) {
        return Err(cross_site_refused());
    }
    if let Some(token) = session_token(&headers, secure_cookies(&state))
        && state.store.revoke_session(&token).await?
    {
        tracing::info!("session revoked");
    }
    let resp = if crate::http::extract::media_type(&headers) == FORM {
        Redirect::to("/login").into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    with_cookie(resp, &clear_session_cookie(secure_cookies(&state)))
}

#[cfg(test)]
mod tests {
    use super::super::test_headers as headers;
    use super::*;

    #[test]
    fn session_cookie_is_httponly_lax_and_secure_only_on_https() {
        let plain = session_cookie("tok", 3600, false);
        assert_eq!(
            plain,
            "onboard_session=tok; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"
        );
        let secure = session_cookie("tok", 3600, true);
        assert!(secure.ends_with("; Secure"), "{secure}");
        assert!(
            secure.starts_with("__Host-onboard_session=tok; Path=/;"),
            "{secure}"
        );
        assert!(secure.contains("HttpOnly") && secure.contains("SameSite=Lax"));
        let cleared = clear_session_cookie(true);
        assert!(cleared.starts_with("__Host-onboard_session=;"), "{cleared}");
        assert!(cleared.contains("Max-Age=0") && cleared.contains("Secure"));
    }

    #[test]
    fn session_token_is_read_from_any_cookie_header() {
        let h = headers(&[
            ("cookie", "theme=dark"),
            ("cookie", "a=b; onboard_session=abc123 ; c=d"),
        ]);
        assert_eq!(session_token(&h, false).as_deref(), Some("abc123"));
        assert_eq!(
            session_token(&headers(&[("cookie", "onboard_session=")]), false),
            None
        );
        assert_eq!(
            session_token(&headers(&[("cookie", "other_session=x")]), false),
            None
        );
        assert_eq!(session_token(&HeaderMap::new(), false), None);
        // Over https only the __Host- cookie counts.
        let both = headers(&[(
            "cookie",
            "onboard_session=plain; __Host-onboard_session=hosted",
        )]);
        assert_eq!(session_token(&both, true).as_deref(), Some("hosted"));
        assert_eq!(session_token(&both, false).as_deref(), Some("plain"));
    }
}
