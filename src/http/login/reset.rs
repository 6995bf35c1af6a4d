//! "Forgot password": `POST /login/forgot` emails a single-use link that expires in an hour;
//! `GET /login/reset?token=…` shows the form for a new password (consuming nothing);
//! `POST /login/reset` sets it, ends every other session of the account and signs this browser
//! in. The answer to a forgot request never says whether the email has an account.

use askama::Template;
use axum::Json;
use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::session::{no_store, started_cookie, with_cookie};
use super::{FORM, after_session_start, cross_site_refused, is_cross_site, login_refusal};
use crate::domain::audit::{Action, Actor};
use crate::domain::{Email, Password, password};
use crate::email::templates;
use crate::http::AppState;
use crate::http::error::{ApiError, AppResult, ErrorBody};
use crate::http::extract::{ClientIp, parse_json};
use crate::store::{AuditEntry, now_ms};
use crate::workspace::hashing::HashFor;
use crate::workspace::sessions::{LoginMethod, MagicToken, TokenPurpose};

/// How long a reset link works.
pub const RESET_TTL_MINUTES: u32 = 60;
/// Reset emails one address receives per hour, at most (the rest are not sent). Sign-in links
/// asked for by email ([`super::link`]) are held to the same limits, counted apart.
pub(super) const EMAILS_PER_ADDRESS_PER_HOUR: u32 = 3;
/// Reset requests one client address may make per hour.
pub(super) const REQUESTS_PER_CLIENT_PER_HOUR: u32 = 20;
pub(super) const HOUR_MS: i64 = 3_600_000;
/// What every forgot request is told, whether or not the email has an account.
const SENT: &str = "If an account exists for that email, we have sent it a link to choose a new \
    password. The link works once and expires in an hour.";

/// `POST /login/forgot` fields, as JSON or an HTML form.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ForgotRequest {
    #[schema(example = "user@example.com", required = true, nullable = false, format = Email,
        max_length = 254)]
    pub email: Option<String>,
}

/// `POST /login/reset` fields, as JSON or an HTML form.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResetRequest {
    /// The token from the emailed link.
    #[schema(required = true, nullable = false, min_length = 1)]
    pub token: Option<String>,
    /// The new password, 8 to 128 characters.
    #[schema(
        example = "AnotherPass456!",
        required = true,
        nullable = false,
        min_length = 8,
        max_length = 128
    )]
    pub password: Option<String>,
}

/// The answer to a forgot request.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ForgotResponse {
    pub message: String,
}

/// A form body (`form` true) or a JSON one, parsed into `T`.
pub struct FormOrJson<T> {
    pub(super) form: bool,
    pub(super) body: T,
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for FormOrJson<T> {
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
                "send the fields as JSON (Content-Type: application/json) or as an HTML form \
                 (application/x-www-form-urlencoded)",
            ));
        };
        let bytes = crate::http::extract::read_body(req, state).await?;
        let body = if form {
            // Lossy decoding, first of a repeated field wins: no form is malformed.
            let mut seen = serde_json::Map::new();
            for (k, v) in url::form_urlencoded::parse(&bytes) {
                seen.entry(k.into_owned())
                    .or_insert_with(|| serde_json::Value::String(v.into_owned()));
            }
            serde_json::from_value(serde_json::Value::Object(seen))
                .map_err(|e| ApiError::bad_request("invalid_form", e.to_string()))?
        } else {
            parse_json(&bytes)?
        };
        Ok(FormOrJson { form, body })
    }
}

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage<'a> {
    sent: Option<&'a str>,
    error: Option<&'a str>,
    email: &'a str,
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage<'a> {
    email: &'a str,
    token: &'a str,
    error: Option<&'a str>,
}

fn page(status: StatusCode, html: Result<String, askama::Error>) -> Response {
    match html {
        Ok(html) => {
            let mut resp = (status, Html(html)).into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) => ApiError::internal("render password page", e).into_response(),
    }
}

fn forgot_page(
    status: StatusCode,
    sent: Option<&str>,
    error: Option<&str>,
    email: &str,
) -> Response {
    page(status, ForgotPage { sent, error, email }.render())
}

/// The "forgot password" page (HTML): asks for the account's email.
#[utoipa::path(get, path = "/login/forgot", tag = "login",
    responses((status = 200, description = "The form", content_type = "text/html", body = String)))]
pub async fn forgot_form() -> Response {
    forgot_page(StatusCode::OK, None, None, "")
}

/// Sends a reset link, if the email has an account that may sign in.
#[utoipa::path(post, path = "/login/forgot", tag = "login",
    request_body(content(
        (ForgotRequest = "application/json"),
        (ForgotRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 202, description = "Accepted: a link was sent if the email has an account (the answer is the same either way)", body = ForgotResponse),
        (status = 200, description = "From an HTML form: the page saying so"),
        (status = 400, description = "The email is missing or malformed; `field` names it", body = ErrorBody),
        (status = 403, description = "The request came from another site", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body is neither JSON nor a form", body = ErrorBody),
        (status = 429, description = "Too many reset requests from this address; see Retry-After", body = ErrorBody),
    ))]
pub async fn forgot(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: FormOrJson<ForgotRequest>,
) -> Response {
    let FormOrJson { form, body } = body;
    let typed = body.email.clone().unwrap_or_default();
    let outcome = if is_cross_site(&headers, &state.settings.app_url) {
        Err(cross_site_refused())
    } else {
        send_reset_link(&state, &ip, body).await
    };
    match (outcome, form) {
        (Ok(()), true) => forgot_page(StatusCode::OK, Some(SENT), None, ""),
        (Ok(()), false) => (
            StatusCode::ACCEPTED,
            Json(ForgotResponse {
                message: SENT.into(),
            }),
        )
            .into_response(),
        (Err(e), true) => forgot_page(e.status, None, Some(&e.message), typed.trim()),
        (Err(e), false) => e.into_response(),
    }
}

async fn send_reset_link(state: &AppState, ip: &ClientIp, req: ForgotRequest) -> AppResult<()> {
    email_link(state, ip, req.email.as_deref(), &RESET_LINK).await
}

/// A kind of single-use link sent by email on request: what it is called in messages and logs,
/// its rate-limit keys, its token, lifetime and page, and its email.
pub(super) struct EmailedLink {
    /// "password reset", "sign-in link".
    pub what: &'static str,
    /// Prefixes of the rate-limit keys: per client address, per mailbox.
    pub client_key: &'static str,
    pub mailbox_key: &'static str,
    pub purpose: TokenPurpose,
    pub ttl_minutes: u32,
    /// The page the link opens, under APP_URL (`login/reset`).
    pub path: &'static str,
    pub email: fn(&crate::email::Brand, &str, &str, &str, &str, u32) -> crate::email::OutgoingEmail,
}

const RESET_LINK: EmailedLink = EmailedLink {
    what: "password reset",
    client_key: "reset-client",
    mailbox_key: "reset-email",
    purpose: TokenPurpose::PasswordReset,
    ttl_minutes: RESET_TTL_MINUTES,
    path: "login/reset",
    email: templates::password_reset,
};

/// Checks the email and the client's hourly limit, then, for an account that may sign in and
/// whose mailbox is under its hourly limit, stores a token and queues the email with its link in
/// one transaction. Every other case ends in the same `Ok(())`: the answer never says whether
/// an account exists.
pub(super) async fn email_link(
    state: &AppState,
    ip: &ClientIp,
    email: Option<&str>,
    link: &EmailedLink,
) -> AppResult<()> {
    let email = Email::parse(email.ok_or_else(|| {
        crate::domain::FieldError::new("email", "invalid_email", "email is required")
    })?)?;
    let now = now_ms();
    let per_client = state
        .store
        .hit_rate_limit(
            &format!("{}:{}", link.client_key, ip.key()),
            REQUESTS_PER_CLIENT_PER_HOUR,
            HOUR_MS,
            now,
        )
        .await?;
    if !per_client.allowed {
        return Err(ApiError::too_many_requests(
            format!(
                "too many {} requests from your address; try again in {} seconds",
                link.what, per_client.retry_after_secs
            ),
            per_client.retry_after_secs,
        ));
    }
    let what = link.what;
    let Some((user, tenant)) = state.store.user_by_email(email.normalized()).await? else {
        tracing::info!("{what} asked for an email with no account");
        return Ok(());
    };
    if login_refusal(tenant.status, tenant.id.as_str()).is_some() {
        tracing::info!(tenant_id = %tenant.id, status = %tenant.status, "{what} asked for an account that cannot sign in");
        return Ok(());
    }
    // A mailbox is not flooded, whoever asks: past the limit nothing more is sent.
    let per_address = state
        .store
        .hit_rate_limit(
            &format!("{}:{}", link.mailbox_key, email.normalized()),
            EMAILS_PER_ADDRESS_PER_HOUR,
            HOUR_MS,
            now,
        )
        .await?;
    if !per_address.allowed {
        tracing::warn!(tenant_id = %tenant.id, "{what} emails for this account are paused for the hour");
        return Ok(());
    }
    let mut tx = state.store.begin().await?;
    let token = tx
        .create_login_token(
            &tenant.id,
            &user.id,
            link.purpose,
            i64::from(link.ttl_minutes) * 60_000,
        )
        .await?;
    let url = state
        .settings
        .app_url
        .join(&format!("{}?token={token}", link.path))
        .map_err(|e| ApiError::internal(what, e))?;
    let mail = (link.email)(
        state.mailer.brand(),
        tenant.id.as_str(),
        &user.email,
        &tenant.company_name,
        url.as_str(),
        link.ttl_minutes,
    );
    tx.queue_email(&mail, &state.settings.sendgrid_from_email)
        .await?;
    tx.commit().await?;
    state.jobs_ready.notify_one();
    tracing::info!(tenant_id = %tenant.id, "{what} sent");
    Ok(())
}

fn token_of(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The page for a link that cannot be used (used, expired, unknown or incomplete).
fn unusable(outcome: Option<&MagicToken>) -> Response {
    let (status, title, message) = match outcome {
        Some(MagicToken::AlreadyUsed) => (
            StatusCode::GONE,
            "This reset link was already used",
            "Each reset link works once. Ask for a new one if you still need to change your password.",
        ),
        Some(MagicToken::Expired) => (
            StatusCode::GONE,
            "This reset link has expired",
            "Reset links work for an hour. Ask for a new one.",
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "This reset link is not valid",
            "We do not recognise this link; it may have been cut off when it was copied. Open it \
             from the email again, or ask for a new one.",
        ),
    };
    let mut resp = crate::http::message_page(
        status,
        title,
        message,
        ("/login/forgot", "Ask for a new link"),
    );
    no_store(&mut resp);
    resp
}

/// The page (HTML) of an emailed reset link: the form for a new password if the link is live,
/// otherwise why not. Consumes nothing.
#[utoipa::path(get, path = "/login/reset", tag = "login",
    params(("token" = Option<String>, Query, description = "The token from the emailed link")),
    responses(
        (status = 200, description = "The form for a new password", content_type = "text/html", body = String),
        (status = 400, description = "The link is incomplete or unknown", content_type = "text/html", body = String),
        (status = 410, description = "The link was already used or has expired", content_type = "text/html", body = String),
    ))]
pub async fn reset_form(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> AppResult<Response> {
    let Some(token) = token_of(query.as_deref()) else {
        return Ok(unusable(None));
    };
    match state
        .store
        .login_token_state(&token, TokenPurpose::PasswordReset)
        .await?
    {
        MagicToken::Consumed(owner) => {
            let user = state
                .store
                .user(&owner.tenant_id, &owner.user_id)
                .await?
                .ok_or_else(|| ApiError::not_found("user"))?;
            Ok(page(
                StatusCode::OK,
                ResetPage {
                    email: &user.email,
                    token: &token,
                    error: None,
                }
                .render(),
            ))
        }
        other => Ok(unusable(Some(&other))),
    }
}

/// Sets a new password with a reset link's token; every other session of the account ends.
#[utoipa::path(post, path = "/login/reset", tag = "login",
    request_body(content(
        (ResetRequest = "application/json"),
        (ResetRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Password changed and signed in; the `onboard_session` cookie is set", body = super::LoginResponse),
        (status = 303, description = "From an HTML form: password changed, go to /account (cookie set)"),
        (status = 400, description = "The password is not acceptable (`field` names it), or the token is unknown", body = ErrorBody),
        (status = 403, description = "The account cannot sign in in its status, or the request came from another site", body = ErrorBody),
        (status = 410, description = "The link was already used or has expired", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body is neither JSON nor a form", body = ErrorBody),
        (status = 503, description = "Too many password checks are queued; see Retry-After", body = ErrorBody),
    ))]
pub async fn reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: FormOrJson<ResetRequest>,
) -> Response {
    let FormOrJson { form, body } = body;
    if is_cross_site(&headers, &state.settings.app_url) {
        return cross_site_refused().into_response();
    }
    let token = body.token.clone().unwrap_or_default();
    match reset_password(&state, ip, body).await {
        Ok((tenant, session)) => {
            let cookie = started_cookie(&state, &session);
            let resp = if form {
                Redirect::to("/account").into_response()
            } else {
                Json(super::LoginResponse {
                    tenant_id: tenant.id.to_string(),
                    status: tenant.status,
                    redirect: "/account".into(),
                    expires_at: crate::store::ms_to_datetime(session.expires_at),
                })
                .into_response()
            };
            with_cookie(resp, &cookie).unwrap_or_else(IntoResponse::into_response)
        }
        Err(ResetError::Link(outcome)) if form => unusable(Some(&outcome)),
        Err(ResetError::Link(outcome)) => {
            let (status, code) = match outcome {
                MagicToken::AlreadyUsed | MagicToken::Expired => (StatusCode::GONE, "link_gone"),
                _ => (StatusCode::BAD_REQUEST, "invalid_token"),
            };
            ApiError::new(
                status,
                code,
                "this reset link cannot be used (used, expired or unknown); ask for a new one at POST /login/forgot",
            )
            .with_field("token")
            .into_response()
        }
        Err(ResetError::Api(e)) if form && e.status.is_client_error() => {
            // Back to the form, with the reason, while the link still works.
            match state
                .store
                .login_token_state(&token, TokenPurpose::PasswordReset)
                .await
            {
                Ok(MagicToken::Consumed(owner)) => {
                    let email = match state.store.user(&owner.tenant_id, &owner.user_id).await {
                        Ok(Some(u)) => u.email,
                        _ => String::new(),
                    };
                    page(
                        e.status,
                        ResetPage {
                            email: &email,
                            token: &token,
                            error: Some(&e.message),
                        }
                        .render(),
                    )
                }
                Ok(other) => unusable(Some(&other)),
                Err(_) => e.into_response(),
            }
        }
        Err(ResetError::Api(e)) => e.into_response(),
    }
}

enum ResetError {
    /// The link cannot be used.
    Link(MagicToken),
    Api(ApiError),
}

macro_rules! reset_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ResetError {
            fn from(e: $t) -> Self {
                ResetError::Api(e.into())
            }
        }
    )*};
}
reset_error_from!(
    ApiError,
    crate::store::StoreError,
    crate::domain::FieldError,
    crate::workspace::hashing::HashError
);

/// Sets the new password and signs in, ending every other session; the sign-in is audited
/// (`login.succeeded`, method `password_reset`) in the same transaction.
async fn reset_password(
    state: &AppState,
    ip: std::net::IpAddr,
    req: ResetRequest,
) -> Result<
    (
        crate::store::Tenant,
        crate::workspace::sessions::IssuedSession,
    ),
    ResetError,
> {
    let token = req
        .token
        .filter(|t| !t.trim().is_empty())
        .ok_or(ResetError::Link(MagicToken::Unknown))?;
    let token = token.trim().to_string();
    let new_password = Password::parse(req.password.unwrap_or_default())?;
    // A dead link costs no hash.
    match state
        .store
        .login_token_state(&token, TokenPurpose::PasswordReset)
        .await?
    {
        MagicToken::Consumed(_) => {}
        other => return Err(ResetError::Link(other)),
    }
    let hash = state
        .hashing
        .run(HashFor::SignIn, move |memory| {
            password::hash(&new_password, memory)
        })
        .await?;
    let mut tx = state.store.begin().await?;
    let owner = match tx
        .consume_login_token(&token, TokenPurpose::PasswordReset)
        .await?
    {
        MagicToken::Consumed(owner) => owner,
        other => return Err(ResetError::Link(other)),
    };
    let tenant = tx
        .tenant(&owner.tenant_id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    let user = tx
        .user(&owner.tenant_id, &owner.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    if let Some(message) = login_refusal(tenant.status, tenant.id.as_str()) {
        return Err(ResetError::Api(ApiError::new(
            StatusCode::FORBIDDEN,
            "account_not_active",
            message,
        )));
    }
    tx.set_user_password(&user.id, &hash).await?;
    let ended = tx.revoke_user_sessions(&user.id).await?;
    let session = tx
        .start_session(
            &tenant.id,
            &user.id,
            &super::normalized_email(&user.email),
            LoginMethod::Password,
            super::session_ttl_ms(state),
        )
        .await?;
    tx.audit(
        &AuditEntry::new(Actor::Member(user.id.clone()), Action::LoginSucceeded)
            .target(tenant.id.as_str())
            .ip(Some(ip))
            .with("method", "password_reset")
            .with("sessions_ended", ended),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(tenant_id = %tenant.id, sessions_ended = ended, "password reset");
    after_session_start(state, &tenant, LoginMethod::Password).await;
    Ok((tenant, session))
}
