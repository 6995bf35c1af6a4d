//! Sign-in: password login (JSON or HTML form) and the welcome email's single-use magic link
//! start a server-side session held in an HttpOnly cookie; `/session` and `/account` show it,
//! `/logout` revokes it. Repeated wrong passwords lock the email for a while.

use askama::Template;
use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, AppResult, ErrorBody};
use super::extract::parse_json;
use crate::analytics::Milestone;
use crate::domain::{Email, FieldError, Plan, TenantStatus, password};
use crate::store::{Tenant, ms_to_datetime, now_ms};
use crate::workspace::sessions::{IssuedSession, LoginMethod, MagicToken, Session};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "onboard_session";

/// Verified when the email has no account, so a miss costs as much time as a wrong password
/// (same algorithm and parameters as real hashes; a unit test keeps them in step).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$vvrtvFnJBCv9SrAzfEaSVw$AJl8xQXvIOVdb4n2cr460eYj3/99TMrbEC790OF6aRw";
/// The media type of an HTML form post.
const FORM: &str = "application/x-www-form-urlencoded";

/// The HTML pages of sign-in (the JSON endpoints are registered with the OpenAPI router).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page))
        .route("/login/magic", get(magic_link))
        .route("/account", get(account_page))
}

/// Sign-in fields, as JSON or as an HTML form. Unknown fields are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    #[schema(example = "user@example.com")]
    pub email: Option<String>,
    #[schema(example = "SecurePass123!")]
    pub password: Option<String>,
}

/// A started session (the token itself is only in the `Set-Cookie` header).
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub tenant_id: String,
    pub status: TenantStatus,
    /// Where a browser goes next.
    #[schema(example = "/account")]
    pub redirect: String,
    pub expires_at: DateTime<Utc>,
}

/// The signed-in tenant.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionResponse {
    pub tenant_id: String,
    pub email: String,
    pub company_name: String,
    pub plan: Plan,
    pub status: TenantStatus,
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
        let mime = super::extract::media_type(req.headers());
        let form = if mime == FORM {
            true
        } else if super::extract::is_json(&mime) {
            false
        } else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send email and password as JSON (Content-Type: application/json) or as an HTML \
                 form (application/x-www-form-urlencoded)",
            ));
        };
        let bytes = super::extract::read_body(req, state).await?;
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

/// `Set-Cookie` value that stores a session token.
pub fn session_cookie(token: &str, max_age_secs: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        max_age_secs.max(0)
    )
}

/// `Set-Cookie` value that deletes the session cookie.
pub fn clear_session_cookie(secure: bool) -> String {
    session_cookie("", 0, secure)
}

fn secure_cookies(state: &AppState) -> bool {
    state.settings.app_url.scheme() == "https"
}

/// The session token from the request's `Cookie` headers, if any.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// Whether a browser says the request was made by another site (login CSRF): `Sec-Fetch-Site`
/// when sent, otherwise an `Origin` that is neither APP_URL's nor the request's own host.
/// Clients that send neither (curl, SDKs) are not browsers acting for someone else.
fn is_cross_site(headers: &HeaderMap, app_url: &url::Url) -> bool {
    let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get(header::HeaderName::from_static("sec-fetch-site")) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = get(header::ORIGIN) else {
        return false;
    };
    if origin == app_url.origin().ascii_serialization() {
        return false;
    }
    let authority = origin.split_once("://").map(|(_, a)| a);
    authority.is_none() || authority != get(header::HOST)
}

fn cross_site_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_site_request",
        "this request came from another website; sign in from the onboard sign-in page at /login",
    )
}

/// What a tenant who may not sign in is told: its status and what to do next. `None` for the
/// statuses that may sign in (`active`, `past_due`).
pub fn login_refusal(status: TenantStatus, tenant_id: &str) -> Option<String> {
    let message = match status {
        TenantStatus::Active | TenantStatus::PastDue => return None,
        TenantStatus::PendingPayment => "This account is waiting for payment (status: \
            pending_payment). Finish checkout with the link you received at signup; you can sign \
            in as soon as your workspace is ready."
            .to_string(),
        TenantStatus::Provisioning => "Your workspace is being set up (status: provisioning). \
            This usually takes under a minute: please try again in a minute."
            .to_string(),
        TenantStatus::Failed => format!(
            "Setting up your workspace failed (status: failed). We were alerted and are looking \
             into it; you can also retry the setup with POST /tenant/{tenant_id}/retry."
        ),
        TenantStatus::Abandoned => "The checkout for this account expired before payment \
            (status: abandoned). Sign up again to start over."
            .to_string(),
        TenantStatus::SalesReview => "Your enterprise signup is with our sales team (status: \
            sales_review); they will be in touch to set up your account."
            .to_string(),
        TenantStatus::Suspended => "This account is suspended because of unpaid invoices \
            (status: suspended). Contact billing to restore access."
            .to_string(),
        TenantStatus::Canceled => "This account's subscription is canceled (status: canceled). \
            Contact support if you want to reactivate it."
            .to_string(),
    };
    Some(message)
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

fn required(field: &'static str, code: &'static str) -> FieldError {
    FieldError::new(field, code, format!("{field} is required"))
}

/// The normalised form of a stored address, as signup computed it.
fn normalized_email(tenant: &Tenant) -> String {
    Email::parse(&tenant.email)
        .map(|e| e.normalized().to_string())
        .unwrap_or_else(|_| tenant.email.trim().to_ascii_lowercase())
}

fn session_ttl_ms(state: &AppState) -> i64 {
    i64::from(state.settings.jwt_expiry_hours) * 3_600_000
}

/// What every session start does after the session exists: the activation milestone (never a
/// reason to fail the sign-in) and a log line.
async fn after_session_start(state: &AppState, tenant: &Tenant, method: LoginMethod) {
    if let Err(e) = state
        .milestones
        .record(
            &state.store,
            &tenant.id,
            Milestone::FirstLogin,
            Some(method.as_str()),
        )
        .await
    {
        tracing::warn!(error = %e, tenant_id = %tenant.id, "could not record the first_login milestone");
    }
    tracing::info!(tenant_id = %tenant.id, method = method.as_str(), "session started");
}

/// Checks email and password and starts a session, or says why not.
#[tracing::instrument(skip_all)]
async fn password_login(state: &AppState, req: LoginRequest) -> AppResult<(Tenant, IssuedSession)> {
    let email = Email::parse(
        req.email
            .as_deref()
            .ok_or_else(|| required("email", "invalid_email"))?,
    )?;
    let password = req
        .password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| required("password", "invalid_password"))?;
    let key = email.normalized();
    let now = now_ms();
    // The lock is checked first: while it lasts, not even the right password gets in.
    if let Some(until) = state.store.login_locked_until(key, now).await? {
        return Err(locked(until, now));
    }
    let tenant = state.store.tenant_by_email(key).await?;
    let stored_hash = tenant.as_ref().map(|t| t.password_hash.clone());
    // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let verified = state
        .hash(move || match stored_hash {
            Some(hash) => password::verify(&password, &hash),
            None => {
                let _ = password::verify(&password, DUMMY_HASH);
                false
            }
        })
        .await
        .map_err(|e| ApiError::internal("password check task", e))?;
    let tenant = match tenant {
        Some(t) if verified => t,
        _ => {
            let now = now_ms();
            state.store.record_login_failure(key, now).await?;
            if let Some(until) = state.store.login_locked_until(key, now).await? {
                return Err(locked(until, now));
            }
            return Err(invalid_credentials());
        }
    };
    if let Some(message) = login_refusal(tenant.status, tenant.id.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "account_not_active",
            message,
        ));
    }
    let session = state
        .store
        .start_session(
            &tenant.id,
            key,
            LoginMethod::Password,
            session_ttl_ms(state),
        )
        .await?;
    after_session_start(state, &tenant, LoginMethod::Password).await;
    Ok((tenant, session))
}

fn no_store(resp: &mut Response) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn with_cookie(mut resp: Response, cookie: &str) -> AppResult<Response> {
    let value =
        HeaderValue::from_str(cookie).map_err(|e| ApiError::internal("session cookie", e))?;
    resp.headers_mut().insert(header::SET_COOKIE, value);
    no_store(&mut resp);
    Ok(resp)
}

fn started_cookie(state: &AppState, session: &IssuedSession) -> String {
    session_cookie(
        session.token.expose_secret(),
        (session.expires_at - now_ms()) / 1000,
        secure_cookies(state),
    )
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
/// `/account`, or the sign-in page again with the error and the same status code.
#[utoipa::path(post, path = "/login", tag = "login",
    request_body(content(
        (LoginRequest = "application/json"),
        (LoginRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Signed in; the `onboard_session` cookie (HttpOnly, SameSite=Lax, Secure on https) is set", body = LoginResponse),
        (status = 303, description = "Form sign-in succeeded: go to /account (cookie set)"),
        (status = 400, description = "email or password missing or malformed; `field` names it", body = ErrorBody),
        (status = 401, description = "The email or password is incorrect", body = ErrorBody),
        (status = 403, description = "The account cannot sign in in its status (the message names it and what to do), or the request came from another site", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body is neither JSON nor a form", body = ErrorBody),
        (status = 429, description = "Too many failed attempts for this email in 15 minutes; see Retry-After", body = ErrorBody),
    ))]
pub async fn login(State(state): State<AppState>, headers: HeaderMap, body: LoginBody) -> Response {
    let LoginBody { form, req } = body;
    let email = req.email.clone().unwrap_or_default();
    let outcome = if is_cross_site(&headers, &state.settings.app_url) {
        Err(cross_site_refused())
    } else {
        password_login(&state, req).await
    };
    let answer = match outcome {
        Ok((tenant, session)) => {
            let cookie = started_cookie(&state, &session);
            let resp = if form {
                Redirect::to("/account").into_response()
            } else {
                Json(LoginResponse {
                    tenant_id: tenant.id.to_string(),
                    status: tenant.status,
                    redirect: "/account".into(),
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

/// The live session and its tenant, when the request carries one whose tenant may still sign in.
async fn current_session(
    state: &AppState,
    headers: &HeaderMap,
) -> AppResult<Option<(Session, Tenant)>> {
    let Some(token) = session_token(headers) else {
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
        email: tenant.email,
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
    if let Some(token) = session_token(&headers)
        && state.store.revoke_session(&token).await?
    {
        tracing::info!("session revoked");
    }
    let resp = if super::extract::media_type(&headers) == FORM {
        Redirect::to("/login").into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    with_cookie(resp, &clear_session_cookie(secure_cookies(&state)))
}

/// `GET /login`: the sign-in form, or straight to the account when already signed in.
async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    if current_session(&state, &headers).await?.is_some() {
        return Ok(Redirect::to("/account").into_response());
    }
    Ok(render_login_page(StatusCode::OK, None, ""))
}

fn magic_link_page(status: StatusCode, title: &str, message: &str) -> Response {
    let mut resp = super::message_page(status, title, message, ("/login", "Go to sign in"));
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
async fn magic_link(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
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

/// One API key as listed on the account page.
struct KeyView {
    id: String,
    name: String,
    prefix: String,
    scopes: String,
    created: String,
    last_used: String,
    revoked: String,
}

/// One activation milestone as listed on the account page.
struct MilestoneView {
    name: String,
    when: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    tenant_id: String,
    company_name: String,
    email: String,
    plan: String,
    status: String,
    past_due: bool,
    session_expires: String,
    keys: Vec<KeyView>,
    milestones: Vec<MilestoneView>,
}

fn when(ms: i64) -> String {
    ms_to_datetime(ms).format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `GET /account`: the signed-in tenant's account, keys and progress; `/login` otherwise.
async fn account_page(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let Some((session, tenant)) = current_session(&state, &headers).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let keys = state
        .store
        .list_api_keys(&tenant.id)
        .await?
        .into_iter()
        .map(|k| KeyView {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            created: when(k.created_at),
            last_used: k.last_used_at.map(when).unwrap_or_else(|| "never".into()),
            revoked: k.revoked_at.map(when).unwrap_or_else(|| "no".into()),
        })
        .collect();
    let milestones = state
        .store
        .milestones(&tenant.id)
        .await?
        .into_iter()
        .map(|m| MilestoneView {
            name: m.milestone,
            when: when(m.occurred_at),
            detail: match m.detail {
                Some(d) => format!("{} ({d})", m.source),
                None => m.source,
            },
        })
        .collect();
    let page = AccountPage {
        tenant_id: tenant.id.to_string(),
        company_name: tenant.company_name,
        email: tenant.email,
        plan: tenant.plan.to_string(),
        status: tenant.status.to_string(),
        past_due: tenant.status == TenantStatus::PastDue,
        session_expires: when(session.expires_at),
        keys,
        milestones,
    };
    let html = page
        .render()
        .map_err(|e| ApiError::internal("render account page", e))?;
    let mut resp = Html(html).into_response();
    no_store(&mut resp);
    Ok(resp)
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
        assert!(!password::verify("SecurePass123!", DUMMY_HASH));
        assert!(password::verify(
            "onboard: no account has this email",
            DUMMY_HASH
        ));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn session_cookie_is_httponly_lax_and_secure_only_on_https() {
        let plain = session_cookie("tok", 3600, false);
        assert_eq!(
            plain,
            "onboard_session=tok; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"
        );
        let secure = session_cookie("tok", 3600, true);
        assert!(secure.ends_with("; Secure"), "{secure}");
        assert!(secure.contains("HttpOnly") && secure.contains("SameSite=Lax"));
        let cleared = clear_session_cookie(true);
        assert!(cleared.starts_with("onboard_session=;"), "{cleared}");
        assert!(cleared.contains("Max-Age=0") && cleared.contains("Secure"));
    }

    #[test]
    fn session_token_is_read_from_any_cookie_header() {
        let h = headers(&[
            ("cookie", "theme=dark"),
            ("cookie", "a=b; onboard_session=abc123 ; c=d"),
        ]);
        assert_eq!(session_token(&h).as_deref(), Some("abc123"));
        assert_eq!(
            session_token(&headers(&[("cookie", "onboard_session=")])),
            None
        );
        assert_eq!(
            session_token(&headers(&[("cookie", "other_session=x")])),
            None
        );
        assert_eq!(session_token(&HeaderMap::new()), None);
    }

    #[test]
    fn cross_site_form_posts_are_recognised() {
        let app: url::Url = "https://app.example.com".parse().unwrap();
        assert!(
            !is_cross_site(&HeaderMap::new(), &app),
            "non-browser client"
        );
        assert!(!is_cross_site(
            &headers(&[("origin", "https://app.example.com")]),
            &app
        ));
        assert!(!is_cross_site(
            &headers(&[
                ("origin", "http://localhost:8080"),
                ("host", "localhost:8080")
            ]),
            &app
        ));
        assert!(is_cross_site(
            &headers(&[
                ("origin", "https://evil.example"),
                ("host", "app.example.com")
            ]),
            &app
        ));
        assert!(is_cross_site(&headers(&[("origin", "null")]), &app));
        assert!(is_cross_site(
            &headers(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://app.example.com")
            ]),
            &app
        ));
        assert!(!is_cross_site(
            &headers(&[("sec-fetch-site", "same-origin")]),
            &app
        ));
    }

    #[test]
    fn only_active_and_past_due_tenants_may_sign_in() {
        for status in TenantStatus::ALL {
            let refusal = login_refusal(status, "tenant_X");
            match status {
                TenantStatus::Active | TenantStatus::PastDue => assert!(refusal.is_none()),
                other => {
                    let message = refusal.unwrap_or_default();
                    assert!(
                        message.contains(other.as_str()),
                        "{other}: the message names the status: {message}"
                    );
                }
            }
        }
        let failed = login_refusal(TenantStatus::Failed, "tenant_X").unwrap();
        assert!(failed.contains("POST /tenant/tenant_X/retry"), "{failed}");
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

    #[test]
    fn magic_token_is_taken_from_the_query() {
        assert_eq!(token_param(Some("token=abc_-1")).as_deref(), Some("abc_-1"));
        assert_eq!(token_param(Some("x=1&token=a%2Bb")).as_deref(), Some("a+b"));
        assert_eq!(token_param(Some("token=")), None);
        assert_eq!(token_param(None), None);
    }
}
