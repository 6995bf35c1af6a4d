//! The signed-in customer's own account: the billing portal, a data export, and closing the
//! account (`DELETE /account`). Each needs the session cookie of `/login`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, AppResult, ErrorBody};
use super::extract::ClientIp;
use super::login::session::current_session;
use crate::billing::account::{self, AccountError};
use crate::domain::audit::{Action, Actor};
use crate::store::{AuditEntry, Tenant, ms_to_datetime, now_ms};

/// The signed-in tenant, when the user's role may do `p`; else a 401 naming how to sign in, or
/// a 403 naming the role that may.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    p: crate::domain::Permission,
) -> AppResult<(crate::workspace::sessions::Session, Tenant)> {
    let (session, tenant) = current_session(state, headers)
        .await?
        .ok_or_else(|| ApiError::unauthorized("you are not signed in; sign in at /login first"))?;
    super::login::session::require(&session, p)?;
    Ok((session, tenant))
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Refused(message) => ApiError::conflict("not_possible", message),
            AccountError::Stripe(e) => {
                tracing::error!(error = %e, "Stripe refused or failed an account action");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "payment_provider_error",
                    "our payment provider could not do this right now; nothing changed, please try again in a moment",
                )
            }
            AccountError::Store(e) => e.into(),
        }
    }
}

/// Opens the billing portal (update the card, see invoices, cancel): a redirect to Stripe's
/// Customer Portal, or to the dev portal when Stripe is not configured.
#[utoipa::path(post, path = "/account/billing-portal", tag = "account",
    responses(
        (status = 303, description = "Redirect to the billing portal (Location)"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only an owner may manage billing", body = ErrorBody),
        (status = 409, description = "The account has no billing account yet", body = ErrorBody),
        (status = 502, description = "Stripe could not open a portal session", body = ErrorBody),
    ))]
pub async fn billing_portal(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let (_, tenant) = signed_in(&state, &headers, crate::domain::Permission::ManageBilling).await?;
    let url = account::portal_url(&state, &tenant).await?;
    Ok(Redirect::to(&url).into_response())
}

/// Downloads everything held about the account as one JSON document (account, documents with
/// their content, API keys' metadata, events), and emails a notice that it was exported. The
/// download is audited (`export.downloaded`) before it is answered.
#[utoipa::path(post, path = "/account/export", tag = "account",
    responses(
        (status = 200, description = "The export, as an attachment", content_type = "application/json", body = Object),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only an owner may export the account's data", body = ErrorBody),
    ))]
pub async fn export(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> AppResult<Response> {
    let (session, tenant) =
        signed_in(&state, &headers, crate::domain::Permission::ExportData).await?;
    let now = now_ms();
    let doc = crate::workspace::export::export(&state.store, &tenant.id, now).await?;
    crate::workspace::export::notify_exported(&state, &tenant, now).await?;
    let body = serde_json::to_vec_pretty(&doc).map_err(|e| ApiError::internal("export", e))?;
    state
        .store
        .audit(
            &AuditEntry::new(
                Actor::Member(session.user_id.clone()),
                Action::ExportDownloaded,
            )
            .target(tenant.id.as_str())
            .ip(Some(ip))
            .with("what", "account data export")
            .with("bytes", body.len()),
        )
        .await?;
    let disposition = format!("attachment; filename=\"onboard-export-{}.json\"", tenant.id);
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// What closing an account did.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClosedAccount {
    pub tenant_id: String,
    pub status: String,
    /// When the workspace and personal data will be erased (RFC 3339); export before then.
    pub data_erased_after: String,
    pub message: String,
}

/// Closes the account: cancels the subscription now and schedules the erasure of the
/// workspace and personal data `DEPROVISION_GRACE_DAYS` later. Repeating it changes nothing.
#[utoipa::path(delete, path = "/account", tag = "account",
    responses(
        (status = 200, description = "Canceled; erasure scheduled", body = ClosedAccount),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only an owner may close the account", body = ErrorBody),
        (status = 409, description = "The account has no subscription to cancel", body = ErrorBody),
        (status = 502, description = "Stripe could not cancel the subscription; nothing changed", body = ErrorBody),
    ))]
pub async fn close(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> AppResult<Json<ClosedAccount>> {
    let (_, tenant) = signed_in(&state, &headers, crate::domain::Permission::CloseAccount).await?;
    let erase_at = account::cancel(&state, &tenant, "customer").await?;
    let when = ms_to_datetime(erase_at);
    Ok(Json(ClosedAccount {
        tenant_id: tenant.id.to_string(),
        status: "canceled".into(),
        data_erased_after: when.to_rfc3339(),
        message: format!(
            "your subscription is canceled; your workspace and personal data will be erased after {}. Export them before then from your account page.",
            when.format("%-d %B %Y")
        ),
    }))
}
