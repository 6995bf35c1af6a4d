//! Sign-in: password login (JSON or HTML form) and single-use magic links (the welcome email's,
//! and those asked for at `POST /login/link`) start a server-side session held in an HttpOnly
//! cookie; `/session` and `/account` show it, `/logout` revokes it. Repeated wrong passwords
//! lock the email for a while.
//!
//! One file per concern: [`password`] sign-in, [`magic`] links, emailing a sign-in link on
//! request ([`link`]), "forgot password" ([`reset`]), [`session`] cookies and the session
//! endpoints, and the [`account`] page. What they share (who may sign in, the cross-site check,
//! what every new session does) is here.

pub mod account;
pub mod link;
pub mod magic;
pub mod password;
pub mod reset;
pub mod session;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;

use std::net::IpAddr;

use super::AppState;
use super::error::ApiError;
use crate::analytics::Milestone;
use crate::domain::audit::{Action, Actor};
use crate::domain::{Email, TenantId, TenantStatus};
use crate::store::{AuditEntry, Tenant};
use crate::workspace::sessions::LoginMethod;

pub use password::{LoginRequest, LoginResponse, login};
pub use session::{SESSION_COOKIE, SessionResponse, logout, session};

use super::extract::FORM;

/// The HTML pages of sign-in (the JSON endpoints are registered with the OpenAPI router).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/login/magic",
            get(magic::magic_link).post(magic::magic_link_confirmed),
        )
        .route("/account/consent", axum::routing::post(account::consent))
        .route("/account/name", axum::routing::post(account::name_form))
        .route("/account/close", axum::routing::post(account::close_form))
}

/// Whether a browser says the request was made by another site (login CSRF): `Sec-Fetch-Site`
/// when sent, otherwise an `Origin` that is neither APP_URL's nor the request's own host.
/// Clients that send neither (curl, SDKs) are not browsers acting for someone else.
pub(crate) fn is_cross_site(headers: &HeaderMap, app_url: &url::Url) -> bool {
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

pub(crate) fn cross_site_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_site_request",
        "this request came from another website; sign in from the onboard sign-in page at /login",
    )
}

/// What a tenant who may not sign in is told: its status and what to do next. `None` for the
/// statuses that may sign in: `active` and `past_due`, and also `suspended` (to pay the open
/// invoice) and `canceled` (to export its data before it is erased; an erased tenant has no
/// password or address left to sign in with). The API itself works only for active and past_due.
pub fn login_refusal(status: TenantStatus, tenant_id: &str) -> Option<String> {
    let message = match status {
        TenantStatus::Active
        | TenantStatus::PastDue
        | TenantStatus::Suspended
        | TenantStatus::Canceled => return None,
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
    };
    Some(message)
}

/// The `token` of a link's query string (single-use links: sign-in, invitation), trimmed;
/// `None` when absent or empty.
pub(crate) fn token_param(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The normalised form of a stored address, as signup computed it.
pub(crate) fn normalized_email(email: &str) -> String {
    Email::parse(email)
        .map(|e| e.normalized().to_string())
        .unwrap_or_else(|_| email.trim().to_ascii_lowercase())
}

pub(crate) fn session_ttl_ms(state: &AppState) -> i64 {
    i64::from(state.settings.jwt_expiry_hours) * 3_600_000
}

/// What every session start does after the session exists: the activation milestone (never a
/// reason to fail the sign-in) and a log line.
pub(crate) async fn after_session_start(state: &AppState, tenant: &Tenant, method: LoginMethod) {
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

/// Records a sign-in in the audit log: `login.succeeded`, or `login.failed` with why
/// (`failure`). The actor is the user who signed in (`member:<user id>`), or for a refused
/// password sign-in the email as typed (`user:<email>`: what an auditor looks for; never the
/// password); the target is the tenant when one is known. Successful sign-ins name the user's
/// id rather than their email so the log, which erasure cannot change, holds no more personal
/// data than it needs.
pub(crate) async fn audit_login(
    state: &AppState,
    actor: Actor,
    tenant: Option<&TenantId>,
    ip: IpAddr,
    method: LoginMethod,
    failure: Option<&str>,
) -> Result<(), ApiError> {
    let action = match failure {
        None => Action::LoginSucceeded,
        Some(_) => Action::LoginFailed,
    };
    let mut entry = AuditEntry::new(actor, action)
        .ip(Some(ip))
        .with("method", method.as_str());
    if let Some(reason) = failure {
        entry = entry.with("reason", reason);
    }
    if let Some(tenant) = tenant {
        entry = entry.target(tenant.as_str());
    }
    state.store.audit(&entry).await?;
    Ok(())
}

/// Request headers from name/value pairs (unit tests).
#[cfg(test)]
fn test_headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, axum::http::HeaderValue::from_str(v).unwrap());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::test_headers as headers;
    use super::*;

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
    fn only_tenants_with_a_workspace_or_its_data_may_sign_in() {
        for status in TenantStatus::ALL {
            let refusal = login_refusal(status, "tenant_X");
            match status {
                TenantStatus::Active
                | TenantStatus::PastDue
                | TenantStatus::Suspended
                | TenantStatus::Canceled => assert!(refusal.is_none()),
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
}
