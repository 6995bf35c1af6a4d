//! Operator endpoints (`ADMIN_TOKEN`) and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::{ApiError, AppResult, ErrorBody};
use super::extract::{ClientIp, JsonBody};
use crate::analytics::recent;
use crate::domain::TenantId;
use crate::domain::audit::{Action, Actor};
use crate::metrics::{JobQueue, Snapshot};
use crate::store::{AuditEntry, StoreError};

/// Proof that the request carries the operator token. As an extractor it runs before the body
/// is read, so an unauthenticated caller learns nothing about the request format.
pub struct Operator;

impl axum::extract::FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        require_admin(state, &parts.headers).map(|()| Operator)
    }
}

/// Checks `Authorization: Bearer <ADMIN_TOKEN>`; closed when no token is configured.
pub fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.settings.admin_token.as_ref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "operator_disabled",
            "operator endpoints are disabled: set ADMIN_TOKEN",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(
        presented
            .as_bytes()
            .ct_eq(expected.expose_secret().as_bytes()),
    ) {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "operator token missing or wrong: send Authorization: Bearer <ADMIN_TOKEN>",
        ))
    }
}

/// Seed-compatible operator request.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ProvisionRequest {
    pub tenant_id: String,
    /// Re-enqueue even if the tenant is still `provisioning` (e.g. stuck).
    #[serde(default)]
    pub force: bool,
}

/// Result of a (re)provisioning request.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProvisionResponse {
    pub tenant_id: String,
    pub status: String,
    pub message: String,
}

/// Operator: (re)start provisioning of a `failed` tenant (`force` also re-enqueues a stuck one).
#[utoipa::path(post, path = "/provision", tag = "operators",
    request_body = ProvisionRequest,
    responses(
        (status = 202, description = "Provisioning enqueued", body = ProvisionResponse),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "The tenant's status does not allow it", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
pub async fn provision(
    State(state): State<AppState>,
    _operator: Operator,
    ClientIp(ip): ClientIp,
    JsonBody(req): JsonBody<ProvisionRequest>,
) -> AppResult<(StatusCode, Json<ProvisionResponse>)> {
    let id = TenantId::parse(&req.tenant_id).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_tenant_id",
            format!("'{}' is not a tenant id (tenant_…)", req.tenant_id),
        )
        .with_field("tenant_id")
    })?;
    let action = if req.force {
        Action::OperatorForceProvision
    } else {
        Action::OperatorRetry
    };
    let audit = AuditEntry::new(Actor::Operator, action).ip(Some(ip));
    retry_response(&state, &id, req.force, "operator", audit).await
}

/// Retries provisioning and answers; `audit` is recorded with the retry (see
/// `provisioning::retry`).
pub(super) async fn retry_response(
    state: &AppState,
    id: &TenantId,
    force: bool,
    actor: &str,
    audit: AuditEntry,
) -> AppResult<(StatusCode, Json<ProvisionResponse>)> {
    match crate::provisioning::retry(state, id, force, actor, audit).await {
        Ok(status) => Ok((
            StatusCode::ACCEPTED,
            Json(ProvisionResponse {
                tenant_id: id.to_string(),
                status: status.to_string(),
                message: "provisioning restarted; completed steps are not repeated".into(),
            }),
        )),
        Err(StoreError::Transition(t)) => Err(ApiError::conflict(
            "invalid_transition",
            format!(
                "only a failed tenant can be retried; this tenant is {}",
                t.from
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The Prometheus text exposition: this process's metrics, and the gauges read from the
/// database now (job queues, 7-day activation), so every process reports the same figures.
/// With `METRICS_TOKEN` set, only for `Authorization: Bearer <token>`. When the database cannot
/// be read, the process's own metrics are still served, without the database's gauges.
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> axum::response::Response {
    if let Some(expected) = state.settings.metrics_token.as_ref() {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(
            presented
                .as_bytes()
                .ct_eq(expected.expose_secret().as_bytes()),
        ) {
            let mut resp =
                ApiError::unauthorized("metrics need Authorization: Bearer <METRICS_TOKEN>")
                    .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return resp;
        }
    }
    let snapshot = database_gauges(&state)
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "metrics: could not read the job queues and activation; served without them"))
        .ok();
    let body = state.metrics.render(snapshot.as_ref());
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

/// The gauges read from the database at scrape time: every registered job kind's queue (0
/// when it has no job; a kind only the database still knows is reported too) and the
/// last seven days' activation.
async fn database_gauges(state: &AppState) -> Result<Snapshot, StoreError> {
    let now = crate::store::now_ms();
    let (depths, recent) = tokio::try_join!(
        state.store.queue_depths(now),
        state.store.recent_activation(now - recent::WINDOW_MS),
    )?;
    let mut jobs: Vec<JobQueue> = crate::tasks::kind_names()
        .iter()
        .map(|kind| JobQueue {
            kind: (*kind).to_string(),
            queued: 0,
            oldest_age_seconds: 0.0,
        })
        .collect();
    for depth in depths {
        let age = depth.oldest_age_seconds(now);
        match jobs.iter_mut().find(|q| q.kind == depth.kind) {
            Some(q) => {
                q.queued = depth.queued;
                q.oldest_age_seconds = age;
            }
            None => jobs.push(JobQueue {
                kind: depth.kind,
                queued: depth.queued,
                oldest_age_seconds: age,
            }),
        }
    }
    Ok(Snapshot {
        jobs,
        activation_tenants_7d: recent.paid,
        activated_7d: recent.activated,
    })
}

/// What approving an enterprise signup did.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApproveResponse {
    pub tenant_id: String,
    pub status: String,
    /// The Stripe-hosted invoice sent to the customer, when Stripe is configured.
    pub invoice_url: Option<String>,
    pub message: String,
}

/// Operator: approves an enterprise signup in `sales_review`, taking it to provisioning (and,
/// with Stripe configured, billing it by invoice and emailing the invoice link).
#[utoipa::path(post, path = "/admin/tenants/{tenant_id}/approve", tag = "operators",
    params(("tenant_id" = String, Path, description = "The enterprise tenant")),
    responses(
        (status = 202, description = "Approved; provisioning enqueued", body = ApproveResponse),
        (status = 400, description = "Not a tenant id", body = ErrorBody),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "The tenant is not in sales_review", body = ErrorBody),
        (status = 502, description = "Stripe could not create the invoice; nothing changed", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    _operator: Operator,
    ClientIp(ip): ClientIp,
    super::extract::PathParam(tenant_id): super::extract::PathParam<String>,
) -> AppResult<(StatusCode, Json<ApproveResponse>)> {
    let id = TenantId::parse(&tenant_id).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_tenant_id",
            format!("'{tenant_id}' is not a tenant id (tenant_…)"),
        )
        .with_field("tenant_id")
    })?;
    let audit = AuditEntry::new(Actor::Operator, Action::OperatorApprove).ip(Some(ip));
    let approval = crate::billing::account::approve(&state, &id, "operator", audit).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ApproveResponse {
            tenant_id: id.to_string(),
            status: "provisioning".into(),
            message: match &approval.invoice_url {
                Some(_) => {
                    "approved: the workspace is being set up and the invoice link was emailed"
                        .into()
                }
                None => "approved: the workspace is being set up".into(),
            },
            invoice_url: approval.invoice_url,
        }),
    ))
}
