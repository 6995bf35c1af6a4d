//! `GET /tenant/{tenant_id}`: a tenant's public status.

use axum::Json;
use axum::extract::State;

use super::extract::PathParam;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, AppResult, ErrorBody};
use crate::domain::{Plan, TenantId, TenantStatus};
use crate::store::ms_to_datetime;

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
    /// Why the tenant is in its status, when there is a reason worth showing (e.g. a failure).
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
        status_reason: t.status_reason,
    }))
}

/// Retries provisioning of a `failed` tenant (the retry button of the progress page).
#[utoipa::path(post, path = "/tenant/{tenant_id}/retry", tag = "tenants",
    params(("tenant_id" = String, Path, description = "Id returned by /signup")),
    responses(
        (status = 202, description = "Provisioning restarted", body = super::admin::ProvisionResponse),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "The tenant is not failed", body = ErrorBody),
    ))]
pub async fn retry_tenant(
    State(state): State<AppState>,
    PathParam(tenant_id): PathParam<String>,
) -> AppResult<(
    axum::http::StatusCode,
    Json<super::admin::ProvisionResponse>,
)> {
    let id = TenantId::parse(&tenant_id).ok_or_else(|| ApiError::not_found("tenant"))?;
    super::admin::retry_response(&state, &id, false, "customer").await
}
