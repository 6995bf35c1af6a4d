//! After checkout: the success page (which fulfils the checkout itself if it beats the webhook),
//! the live provisioning progress it polls and its retry, and the page a customer who left the
//! checkout comes back to (which offers the way back to it).

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;

use super::extract::{ClientIp, QueryParams};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, AppResult, ErrorBody};
use crate::billing::{checkout, events};
use crate::domain::TenantStatus;
use crate::provisioning::StepRecord;
use crate::store::Tenant;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// The checkout session id Stripe appends to the success URL.
    pub session_id: Option<String>,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/onboarding/success", get(success_page))
        .route("/onboarding/checkout", get(resume_checkout))
        .route("/onboarding/cancel", get(cancel_page))
        // The address of checkouts created before the page was renamed.
        .route("/onboarding/canceled", get(cancel_page))
        .route("/onboarding/retry", post(retry_form))
}

/// The cookie the sign-up form sets to the checkout it opens: the checkout's cancel URL carries
/// no session id (Stripe substitutes it in the success URL only), so this is how the cancel
/// page, in the same browser, knows which checkout to offer again.
pub const CHECKOUT_COOKIE: &str = "onboard_checkout";

/// The `Set-Cookie` value remembering `session_id` for the cancel page (a day: a checkout
/// expires after 24 hours).
pub fn checkout_cookie(state: &AppState, session_id: &str) -> String {
    let secure = if state.settings.app_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{CHECKOUT_COOKIE}={session_id}; Path=/onboarding; Max-Age=86400; HttpOnly; SameSite=Lax{secure}"
    )
}

#[derive(Template)]
#[template(path = "onboarding_canceled.html")]
struct CancelPage {
    company_name: Option<String>,
    checkout_href: Option<String>,
}

/// `GET /onboarding/cancel`: the checkout's cancel URL. No payment was taken; when this browser
/// signed up and its checkout is still open, a button goes back to it.
async fn cancel_page(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let mut page = CancelPage {
        company_name: None,
        checkout_href: None,
    };
    if let Some(sid) =
        super::login::session::cookie(&headers, CHECKOUT_COOKIE).filter(|s| s.len() <= 255)
        && let Some(tenant) = state.store.tenant_by_checkout_session(&sid).await?
        && tenant.status == TenantStatus::PendingPayment
    {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("session_id", &sid)
            .finish();
        page.checkout_href = Some(format!("/onboarding/checkout?{query}"));
        page.company_name = Some(tenant.company_name);
    }
    let html = page
        .render()
        .map_err(|e| ApiError::internal("render cancel page", e))?;
    let mut resp = Html(html).into_response();
    super::login::session::no_store(&mut resp);
    Ok(resp)
}

/// `POST /onboarding/retry`: the success page's Retry button as a form (`session_id`); back to
/// the page, which shows the new attempt. Only a failed tenant is retried.
async fn retry_form(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    if super::extract::media_type(&headers) != super::extract::FORM {
        return Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the success page's retry form (application/x-www-form-urlencoded)",
        ));
    }
    let session_id = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "session_id")
        .map(|(_, v)| v.into_owned());
    let q = SessionQuery { session_id };
    let tenant = tenant_for_session(&state, &q).await?;
    if tenant.status == TenantStatus::Failed {
        let audit = crate::store::AuditEntry::new(
            crate::domain::audit::Actor::Tenant(tenant.id.clone()),
            crate::domain::audit::Action::TenantRetry,
        )
        .ip(Some(ip));
        match super::admin::retry_response(&state, &tenant.id, false, "customer", audit).await {
            // Retried, or retried meanwhile by another click: the page shows which.
            Ok(_) => {}
            Err(e) if e.status == axum::http::StatusCode::CONFLICT => {}
            Err(e) => return Err(e),
        }
    }
    let sid = q.session_id.unwrap_or_default();
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("session_id", &sid)
        .finish();
    Ok(Redirect::to(&format!("/onboarding/success?{query}")).into_response())
}

async fn tenant_for_session(state: &AppState, q: &SessionQuery) -> AppResult<Tenant> {
    let invalid =
        |why: &str| ApiError::bad_request("invalid_session_id", why).with_field("session_id");
    let sid = match q.session_id.as_deref() {
        None | Some("") => return Err(invalid("session_id is required")),
        Some(s) if s.len() > 255 => {
            return Err(invalid("session_id is longer than 255 characters"));
        }
        Some(s) => s,
    };
    state
        .store
        .tenant_by_checkout_session(sid)
        .await?
        .ok_or_else(|| ApiError::not_found("checkout session"))
}

/// Asks Stripe (or the dev checkout) about the session and fulfils it if it is paid, so a
/// customer who arrives before the webhook does not wait for it. True when it tried to
/// fulfil: the tenant may then have moved on (by this call or by the webhook meanwhile), so
/// the caller's copy of it may be stale.
async fn fulfil_from_session(state: &AppState, tenant: &Tenant) -> AppResult<bool> {
    if tenant.status != TenantStatus::PendingPayment {
        return Ok(false);
    }
    let Some(sid) = tenant.stripe_checkout_session_id.as_deref() else {
        return Ok(false);
    };
    let session = match &state.stripe {
        // The webhook will deliver anyway; this only saves a wait, so it is rationed.
        Some(_) if !state.checkout_lookups.allow(sid) => None,
        Some(stripe) => match stripe.retrieve_checkout_session(sid).await {
            Ok(s) => Some(s),
            Err(e) => {
                // The webhook will still deliver; the page keeps polling.
                tracing::warn!(error = %e, "could not retrieve the checkout session from Stripe");
                None
            }
        },
        None => events::stored_completed_session(state, sid).await?,
    };
    let Some(session) = session else {
        return Ok(false);
    };
    checkout::fulfill(state, &session, "success page").await?;
    Ok(true)
}

/// The checkout reminder's link: back to the signup's checkout while it is open (Stripe's
/// hosted page, or the dev checkout), else to the success page, which explains where the
/// signup stands. Our own address, so emails link only to APP_URL.
async fn resume_checkout(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<SessionQuery>,
) -> AppResult<Response> {
    let tenant = match tenant_for_session(&state, &q).await {
        Ok(t) => t,
        Err(e) if e.status.is_client_error() => {
            return Ok(super::message_page(
                e.status,
                "We could not find your checkout",
                "This checkout link is incomplete or unknown. You can sign up again at any time.",
                ("/login", "Go to sign in"),
            ));
        }
        Err(e) => return Err(e),
    };
    let sid = tenant
        .stripe_checkout_session_id
        .clone()
        .unwrap_or_default();
    let success = format!("/onboarding/success?session_id={sid}");
    if tenant.status != TenantStatus::PendingPayment {
        return Ok(axum::response::Redirect::to(&success).into_response());
    }
    let target = match &state.stripe {
        None => format!("/dev/checkout/{sid}"),
        Some(stripe) if state.checkout_lookups.allow(&sid) => {
            match stripe.retrieve_checkout_session(&sid).await {
                Ok(session) if session.status.as_deref() == Some("open") => {
                    session.url.unwrap_or(success)
                }
                Ok(_) => success,
                Err(e) => {
                    tracing::warn!(error = %e, "could not retrieve the checkout session from Stripe");
                    success
                }
            }
        }
        Some(_) => success,
    };
    Ok(axum::response::Redirect::to(&target).into_response())
}

#[derive(Template)]
#[template(path = "onboarding_success.html")]
struct SuccessPage<'a> {
    company_name: &'a str,
    session_id: &'a str,
    tenant_id: &'a str,
    p: ProgressView,
}

/// One step as the page lists it.
struct StepLine {
    label: &'static str,
    state: String,
}

/// The progress as the page first shows it (the script then keeps it current).
struct ProgressView {
    headline: &'static str,
    steps: Vec<StepLine>,
    done: usize,
    total: usize,
    api_key: Option<String>,
    notices: Vec<String>,
    failed: bool,
    reason: String,
    active: bool,
    /// Active or failed: nothing more happens without the customer.
    settled: bool,
}

impl From<ProgressResponse> for ProgressView {
    fn from(p: ProgressResponse) -> Self {
        let active = p.status == TenantStatus::Active;
        let failed = p.status == TenantStatus::Failed;
        let label = |step: &str| match step {
            "namespace" => "Vector namespace",
            "api_key" => "API key",
            "sample_data" => "Sample documents",
            "welcome_email" => "Welcome email",
            _ => "Step",
        };
        ProgressView {
            headline: if active {
                "Your workspace is ready."
            } else if failed {
                "Setup stopped before it finished."
            } else {
                "Payment received. We are setting up your workspace…"
            },
            done: p
                .steps
                .iter()
                .filter(|s| s.state == "done" || s.state == "skipped")
                .count(),
            total: p.steps.len(),
            steps: p
                .steps
                .into_iter()
                .map(|s| StepLine {
                    label: label(&s.step),
                    state: s.state,
                })
                .collect(),
            api_key: p.api_key,
            notices: p.notices,
            failed,
            reason: p.status_reason.unwrap_or_else(|| "unknown error".into()),
            active,
            settled: active || failed,
        }
    }
}

/// The page Stripe (or the dev checkout) sends the customer back to. It is a page for a person,
/// so a missing, malformed or unknown session is explained in HTML, not JSON.
async fn success_page(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<SessionQuery>,
) -> AppResult<Response> {
    let tenant = match tenant_for_session(&state, &q).await {
        Ok(t) => t,
        Err(e) if e.status.is_client_error() => {
            let what = if e.status == axum::http::StatusCode::NOT_FOUND {
                "There is no checkout with this session id".to_string()
            } else {
                format!("The link is incomplete ({})", e.message)
            };
            return Ok(super::message_page(
                e.status,
                "We could not find your checkout",
                &format!(
                    "{what}. Open the link from your checkout again; if you already paid, your \
                     welcome email has a sign-in link."
                ),
                ("/login", "Go to sign in"),
            ));
        }
        Err(e) => return Err(e),
    };
    let tenant = if fulfil_from_session(&state, &tenant).await? {
        state
            .store
            .tenant(&tenant.id)
            .await?
            .ok_or_else(|| ApiError::not_found("tenant"))?
    } else {
        tenant
    };
    let sid = tenant
        .stripe_checkout_session_id
        .clone()
        .unwrap_or_default();
    let p = progress(&state, &tenant).await?;
    let page = SuccessPage {
        company_name: &tenant.company_name,
        session_id: &sid,
        tenant_id: tenant.id.as_str(),
        p: p.into(),
    };
    let html = page
        .render()
        .map_err(|e| ApiError::internal("render success page", e))?;
    let mut resp = Html(html).into_response();
    // The page may hold the key, shown once: never from a cache.
    super::login::session::no_store(&mut resp);
    Ok(resp)
}

/// Live provisioning progress.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProgressResponse {
    pub tenant_id: String,
    pub status: TenantStatus,
    pub status_reason: Option<String>,
    pub steps: Vec<StepView>,
    /// The first API key, included exactly once (the first poll after it exists), and only
    /// within `FIRST_KEY_REVEAL_MINUTES` of activation.
    pub api_key: Option<String>,
    /// Notices worth showing (e.g. sample data could not be loaded).
    pub notices: Vec<String>,
}

/// One pipeline step as shown on the progress page.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepView {
    pub step: String,
    /// `pending`, `done`, `skipped` or `failed`.
    pub state: String,
    pub duration_ms: Option<i64>,
}

/// Provisioning progress of the tenant behind a checkout session.
#[utoipa::path(get, path = "/onboarding/status", tag = "onboarding",
    params(SessionQuery),
    responses(
        (status = 200, description = "Progress", body = ProgressResponse),
        (status = 400, description = "session_id missing", body = ErrorBody),
        (status = 404, description = "Unknown session", body = ErrorBody),
    ))]
pub async fn status(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<SessionQuery>,
) -> AppResult<Json<ProgressResponse>> {
    let mut tenant = tenant_for_session(&state, &q).await?;
    if fulfil_from_session(&state, &tenant).await? {
        tenant = state
            .store
            .tenant(&tenant.id)
            .await?
            .ok_or_else(|| ApiError::not_found("tenant"))?;
    }
    Ok(Json(progress(&state, &tenant).await?))
}

/// The tenant's provisioning progress; reveals the first key if this is its one showing.
async fn progress(state: &AppState, tenant: &Tenant) -> AppResult<ProgressResponse> {
    let records: Vec<StepRecord> = state.store.provisioning_steps(&tenant.id).await?;
    let steps = crate::provisioning::STEPS
        .iter()
        .map(|name| {
            let r = records.iter().find(|r| r.step == *name);
            StepView {
                step: name.to_string(),
                state: r
                    .map(|r| r.outcome.clone())
                    .unwrap_or_else(|| "pending".into()),
                duration_ms: r.map(|r| r.duration_ms),
            }
        })
        .collect();
    // The step's own detail may carry a provider's error text; operators see it, the page a
    // sentence of ours.
    let notices = records
        .iter()
        .filter(|r| r.outcome == "failed")
        .map(|r| match r.step.as_str() {
            "sample_data" => {
                "Sample documents could not be loaded; your workspace is empty but works.".into()
            }
            other => format!("The {other} step did not complete."),
        })
        .collect();
    // The first key is shown once, and only within FIRST_KEY_REVEAL_MINUTES of activation:
    // after that, whoever holds the session id (it is in the success page's address) can no
    // longer reveal it, and the customer creates a new key instead.
    let window_ms = i64::from(state.settings.first_key_reveal_minutes) * 60_000;
    let in_window = tenant
        .activated_at
        .is_some_and(|at| crate::store::now_ms() - at <= window_ms);
    let mut api_key = None;
    if tenant.status == TenantStatus::Active
        && in_window
        && let Some(key_id) = records
            .iter()
            .find(|r| r.step == "api_key")
            .and_then(|r| r.detail.clone())
    {
        api_key = state
            .store
            .reveal_api_key_once(&state.signer, &key_id)
            .await?
            .map(|s| s.expose_secret().to_string());
    }
    Ok(ProgressResponse {
        tenant_id: tenant.id.to_string(),
        status: tenant.status,
        status_reason: tenant.status.public_reason().map(str::to_string),
        steps,
        api_key,
        notices,
    })
}
