//! Password sign-in: `POST /login` (JSON or an HTML form) and the `GET /login` page. Wrong
//! passwords are counted per email and lock it for a while.

use askama::Template;
use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::session::{current_session, no_store, started_cookie, with_cookie};
use super::{
    FORM, after_session_start, audit_login, cross_site_refused, is_cross_site, login_refusal,
    session_ttl_ms,
};
use crate::domain::audit::Actor;
use crate::domain::{Email, FieldError, TenantId, TenantStatus, password};
use crate::http::AppState;
use crate::http::error::{ApiError, AppResult, ErrorBody};
use crate::http::extract::{ClientIp, parse_json};
use crate::store::{Tenant, ms_to_datetime, now_ms};
use crate::workspace::hashing::HashFor;
use crate::workspace::sessions::{AttemptCheck, IssuedSession, LoginMethod};

/// Verified when the email has no account, so a miss costs as much time as a wrong password
/// (same algorithm and parameters as real hashes; a unit test keeps them in step).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$vvrtvFnJBCv9SrAzfEaSVw$AJl8xQXvIOVdb4n2cr460eYj3/99TMrbEC790OF6aRw";

/// Sign-in fields, as JSON or as an HTML form. Unknown fields are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    #[schema(example = "user@example.com", required = true, nullable = false, format = Email,
        max_length = 254)]
    pub email: Option<String>,
    #[schema(
        example = "SecurePass123!",
        required = true,
        nullable = false,
        min_length = 1
    )]
    pub password: Option<String>,
}

/// A started session (the token itself is only in the `Set-Cookie` header).
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub tenant_id: String,
    pub status: TenantStatus,
    /// Where a browser goes next: the setup wizard while a step is pending, else the workspace.
    #[schema(example = "/setup")]
    pub redirect: String,
    pub expires_at: DateTime<Utc>,
}

/// A `POST /login` body and whether it came from an HTML form (which gets HTML answers).
pub struct LoginBody {
    form: bool,
    req: LoginRequest,
}

impl<S: Send + Sync> FromRequest<S> for LoginBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mime = crate::http::extract::media_type(req.headers());
        let form = if mime == FORM {
            true
        } else if crate::http::extract::is_json(&mime) {
            false
        } else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send email and password as JSON (Content-Type: application/json) or as an HTML \
                 form (application/x-www-form-urlencoded)",
            ));
        };
        let bytes = crate::http::extract::read_body(req, state).await?;
        let req = if form {
            parse_form(&bytes)
        } else {
            parse_json(&bytes)?
        };
        Ok(LoginBody { form, req })
    }
}

/// Form fields; the first of a repeated field wins. Decoding is lossy, so no form is malformed.
fn parse_form(bytes: &[u8]) -> LoginRequest {
    let mut req = LoginRequest {
        email: None,
        password: None,
    };
    for (k, v) in url::form_urlencoded::parse(bytes) {
        match k.as_ref() {
            "email" if req.email.is_none() => req.email = Some(v.into_owned()),
            "password" if req.password.is_none() => req.password = Some(v.into_owned()),
            _ => {}
        }
    }
    req
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "the email or password is incorrect",
    )
}

fn locked(until: i64, now: i64) -> ApiError {
    let secs = u64::try_from((until - now + 999) / 1000)
        .unwrap_or(1)
        .max(1);
    let minutes = secs.div_ceil(60);
    let at = ms_to_datetime(until).format("%H:%M UTC");
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "login_locked",
        format!(
            "Too many failed sign-in attempts for this email: password sign-in is locked for \
             {minutes} more minute(s), until {at}. Try again then, or use the sign-in link from \
             your welcome email, which still works if you have not used it yet."
        ),
    );
    e.retry_after_secs = Some(secs);
    e
}

fn address_limited(until: i64, now: i64) -> ApiError {
    let secs = u64::try_from((until - now + 999) / 1000)
        .unwrap_or(1)
        .max(1);
    ApiError::too_many_requests(
        format!(
            "Too many failed sign-in attempts from your network: sign-in from it is paused for \
             {} more minute(s). Try again then.",
            secs.div_ceil(60)
        ),
        secs,
    )
}

fn required(field: &'static str, code: &'static str) -> FieldError {
    FieldError::new(field, code, format!("{field} is required"))
}

/// Checks email and password and starts a session, or says why not. The attempt is recorded
/// before the password is hashed and checked again after, so concurrent guesses cannot slip
/// past the lock (see [`crate::store::Store::begin_login_attempt`]). Every sign-in that got as
/// far as its credentials is audited, refused or not, with the client's address; malformed
/// input is not an attempt.
#[tracing::instrument(skip_all)]
async fn password_login(
    state: &AppState,
    ip: &ClientIp,
    req: LoginRequest,
) -> AppResult<(Tenant, IssuedSession)> {
    let typed = req
        .email
        .as_deref()
        .ok_or_else(|| required("email", "invalid_email"))?;
    let email = Email::parse(typed)?;
    let password = req
        .password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| required("password", "invalid_password"))?;
    // Who tried, as typed (what an auditor searches for); never the password.
    let refused = |tenant: Option<TenantId>, reason: &'static str, answer: ApiError| {
        let actor = Actor::User(typed.trim().to_string());
        async move {
            let method = LoginMethod::Password;
            audit_login(state, actor, tenant.as_ref(), ip.0, method, Some(reason)).await?;
            Err::<(Tenant, IssuedSession), ApiError>(answer)
        }
    };
    let key = email.normalized();
    let now = now_ms();
    let (attempt, check) = state
        .store
        .begin_login_attempt(key, &ip.key(), state.settings.login_failures_per_ip, now)
        .await?;
    match check {
        AttemptCheck::Allowed => {}
        AttemptCheck::Locked { until } => {
            return refused(None, "locked", locked(until, now)).await;
        }
        AttemptCheck::AddressLimited { until } => {
            return refused(None, "address_limited", address_limited(until, now)).await;
        }
    }
    let found = state.store.user_by_email(key).await?;
    let stored_hash = found.as_ref().map(|(u, _)| u.password_hash.clone());
    // argon2 takes tens of milliseconds of CPU: off the async workers, in the bounded queue
    // (a busy queue answers 503 at once; the attempt then stays counted, as a guess would).
    let verified = state
        .hashing
        .run(HashFor::SignIn, move |memory| match stored_hash {
            Some(hash) => password::verify(&password, &hash, memory),
            None => {
                let _ = password::verify(&password, DUMMY_HASH, memory);
                false
            }
        })
        .await?;
    let (user, tenant) = match found {
        Some(found) if verified => found,
        other => {
            let id = other.map(|(_, t)| t.id);
            // This attempt stays recorded as a failure; it may have completed the lock.
            let now = now_ms();
            let answer = match state.store.login_locked_after(&attempt, true, now).await? {
                Some(until) => locked(until, now),
                None => invalid_credentials(),
            };
            return refused(id, "invalid_credentials", answer).await;
        }
    };
    // The right password: still refused if failures meanwhile locked this email here.
    let now = now_ms();
    if let Some(until) = state.store.login_locked_after(&attempt, false, now).await? {
        return refused(Some(tenant.id), "locked", locked(until, now)).await;
    }
    if let Some(message) = login_refusal(tenant.status, tenant.id.as_str()) {
        state.store.forget_login_attempt(&attempt).await?;
        let answer = ApiError::new(StatusCode::FORBIDDEN, "account_not_active", message);
        return refused(Some(tenant.id), "account_not_active", answer).await;
    }
    state.store.forget_login_attempt(&attempt).await?;
    let session = state
        .store
        .start_session(
            &tenant.id,
            &user.id,
            key,
            LoginMethod::Password,
            session_ttl_ms(state),
        )
        .await?;
    audit_login(
        state,
        Actor::Member(user.id.clone()),
        Some(&tenant.id),
        ip.0,
        LoginMethod::Password,
        None,
    )
    .await?;
    after_session_start(state, &tenant, LoginMethod::Password).await;
    Ok((tenant, session))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: Option<&'a str>,
    email: &'a str,
}

fn render_login_page(status: StatusCode, error: Option<&ApiError>, email: &str) -> Response {
    let page = LoginPage {
        error: error.map(|e| e.message.as_str()),
        email,
    };
    let mut resp = match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => return ApiError::internal("render login page", e).into_response(),
    };
    if let Some(secs) = error.and_then(|e| e.retry_after_secs) {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    no_store(&mut resp);
    resp
}

/// Signs in with email and password. A JSON body gets JSON answers; an HTML form gets a 303 to
/// the setup wizard while a step is pending, else the workspace, or the sign-in page again with
/// the error and the same status code.
#[utoipa::path(post, path = "/login", tag = "login",
    request_body(content(
        (LoginRequest = "application/json"),
        (LoginRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Signed in; the `onboard_session` cookie (HttpOnly, SameSite=Lax, Secure on https) is set", body = LoginResponse),
        (status = 303, description = "Form sign-in succeeded: go to /setup while a setup step is pending, else /app (cookie set)"),
        (status = 400, description = "email or password missing or malformed; `field` names it", body = ErrorBody),
        (status = 401, description = "The email or password is incorrect", body = ErrorBody),
        (status = 403, description = "The account cannot sign in in its status (the message names it and what to do), or the request came from another site", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body is neither JSON nor a form", body = ErrorBody),
        (status = 429, description = "Five failed attempts for this email from this address, or too many from this address across all emails, in 15 minutes; see Retry-After", body = ErrorBody),
        (status = 503, description = "Too many password checks are queued; see Retry-After", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: LoginBody,
) -> Response {
    let LoginBody { form, req } = body;
    let email = req.email.clone().unwrap_or_default();
    let outcome = if is_cross_site(&headers, &state.settings.app_url) {
        Err(cross_site_refused())
    } else {
        password_login(&state, &ip, req).await
    };
    let answer = match outcome {
        Ok((tenant, session)) => {
            let cookie = started_cookie(&state, &session);
            let to = crate::http::workspace::landing(&state, &tenant).await;
            let resp = if form {
                Redirect::to(to).into_response()
            } else {
                Json(LoginResponse {
                    tenant_id: tenant.id.to_string(),
                    status: tenant.status,
                    redirect: to.into(),
                    expires_at: ms_to_datetime(session.expires_at),
                })
                .into_response()
            };
            with_cookie(resp, &cookie)
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok(resp) => resp,
        Err(e) if form => render_login_page(e.status, Some(&e), email.trim()),
        Err(e) => e.into_response(),
    }
}

/// The sign-in page (HTML), or straight to the account when already signed in.
#[utoipa::path(get, path = "/login", tag = "login",
    responses(
        (status = 200, description = "The sign-in form", content_type = "text/html", body = String),
        (status = 303, description = "Already signed in: go to /app"),
    ))]
pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    if current_session(&state, &headers).await?.is_some() {
        return Ok(Redirect::to("/app").into_response());
    }
    Ok(render_login_page(StatusCode::OK, None, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_costs_what_a_real_one_does() {
        let real = password::hash_bytes(b"SecurePass123!");
        let params = |h: &str| h.rsplitn(3, '$').nth(2).unwrap_or_default().to_string();
        assert_eq!(
            params(DUMMY_HASH),
            params(&real),
            "same algorithm and parameters"
        );
        let mut memory = password::HashMemory::new();
        assert!(!password::verify("SecurePass123!", DUMMY_HASH, &mut memory));
        assert!(password::verify(
            "onboard: no account has this email",
            DUMMY_HASH,
            &mut memory
        ));
    }

    #[test]
    fn lock_message_says_when_and_mentions_the_welcome_link() {
        let now = 1_700_000_000_000;
        let e = locked(now + 90_500, now);
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after_secs, Some(91));
        assert!(e.message.contains("2 more minute"), "{}", e.message);
        assert!(e.message.contains("UTC"), "{}", e.message);
        assert!(e.message.contains("welcome email"), "{}", e.message);
    }

    #[test]
    fn form_fields_are_decoded_and_the_first_of_a_repeat_wins() {
        let req = parse_form(b"email=a%40b.co&password=p+w%26&email=second@b.co&x=1");
        assert_eq!(req.email.as_deref(), Some("a@b.co"));
        assert_eq!(req.password.as_deref(), Some("p w&"));
        let empty = parse_form(b"\xff\xfe=%%");
        assert!(empty.email.is_none() && empty.password.is_none());
    }
}
