//! `GET /tenant/{tenant_id}`: a tenant's public status.

use axum::Json;
use axum::extract::State;

use super::extract::{ClientIp, PathParam, QueryParams};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::{ApiError, AppResult, ErrorBody};
use crate::domain::audit::{Action, Actor};
use crate::domain::{Plan, TenantId, TenantStatus};
use crate::store::{AuditEntry, ms_to_datetime};

/// What anyone holding the tenant id may see.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantStatusResponse {
    pub tenant_id: String,
    pub status: TenantStatus,
    pub plan: Plan,
    pub company_name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; set once the tenant first became active.
    pub activated_at: Option<String>,
    /// Why the tenant is in its status, in a public sentence (never internal error text).
    pub status_reason: Option<String>,
}

/// Returns a tenant's status.
#[utoipa::path(get, path = "/tenant/{tenant_id}", tag = "tenants",
    params(("tenant_id" = String, Path, description = "Id returned by /signup")),
    responses(
        (status = 200, description = "The tenant", body = TenantStatusResponse),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn get_tenant(
    State(state): State<AppState>,
    PathParam(tenant_id): PathParam<String>,
) -> AppResult<Json<TenantStatusResponse>> {
    let id = TenantId::parse(&tenant_id).ok_or_else(|| ApiError::not_found("tenant"))?;
    let t = state
        .store
        .tenant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    let rfc3339 = |ms: i64| ms_to_datetime(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Ok(Json(TenantStatusResponse {
        tenant_id: t.id.to_string(),
        status: t.status,
        plan: t.plan,
        company_name: t.company_name,
        created_at: rfc3339(t.created_at),
        activated_at: t.activated_at.map(rfc3339),
        status_reason: t.status.public_reason().map(str::to_string),
    }))
}

/// Who may retry a tenant: whoever holds its checkout session id (the customer's success page
/// has it in its address).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RetryQuery {
    /// The tenant's checkout session id, as the success page's address carries it.
    pub session_id: Option<String>,
}

/// Retries provisioning of a `failed` tenant (the retry button of the progress page). Only the
/// customer who paid (holding the checkout session id) may; operators use `POST /provision`.
#[utoipa::path(post, path = "/tenant/{tenant_id}/retry", tag = "tenants",
    params(("tenant_id" = String, Path, description = "Id returned by /signup"), RetryQuery),
    responses(
        (status = 202, description = "Provisioning restarted", body = super::admin::ProvisionResponse),
        (status = 400, description = "session_id is missing", body = ErrorBody),
        (status = 403, description = "session_id is not this tenant's checkout session, or the request came from another site", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "The tenant is not failed", body = ErrorBody),
    ))]
pub async fn retry_tenant(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    PathParam(tenant_id): PathParam<String>,
    QueryParams(q): QueryParams<RetryQuery>,
) -> AppResult<(
    axum::http::StatusCode,
    Json<super::admin::ProvisionResponse>,
)> {
    let id = TenantId::parse(&tenant_id).ok_or_else(|| ApiError::not_found("tenant"))?;
    let presented = q.session_id.filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_session_id",
            "session_id is required: the checkout session id from your success page's address",
        )
        .with_field("session_id")
    })?;
    let tenant = state
        .store
        .tenant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    let owns = tenant
        .stripe_checkout_session_id
        .as_deref()
        .is_some_and(|sid| bool::from(sid.as_bytes().ct_eq(presented.as_bytes())));
    if !owns {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "not_your_tenant",
            "session_id is not this tenant's checkout session",
        )
        .with_field("session_id"));
    }
    let audit = AuditEntry::new(Actor::Tenant(id.clone()), Action::TenantRetry).ip(Some(ip));
    super::admin::retry_response(&state, &id, false, "customer", audit).await
}
