//! Activation tracking and metrics (seed paths): `POST /activation/track` for the tenant's own
//! apps (its API key or session; the operator token for any tenant), and for operators `GET
//! /activation/metrics` and the stuck customers (`GET /activation/at-risk`, `POST
//! /activation/at-risk/{tenant_id}/resolve`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::admin::Operator;
use super::error::{ApiError, AppResult, ErrorBody};
use super::extract::{
    JsonBody, PathParam, QueryParams, is_json, media_type, parse_json, read_body,
};
use super::login::session::current_session;
use crate::analytics::at_risk::{self, AtRiskEntry, Cursor, Reason};
use crate::analytics::metrics::{self, Metrics};
use crate::analytics::wizard::Wizard;
use crate::analytics::{EVENT_TYPES, TrackedEvent};
use crate::domain::{Plan, TenantId};

/// Most bytes a tracked event's metadata may take, as JSON.
pub const MAX_METADATA_BYTES: usize = 4096;

/// An activation event reported by the tenant's app (seed shape, plus an optional `event_id`).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TrackRequest {
    /// The tenant the event is about; must be the caller's own.
    #[schema(
        example = "tenant_01J9Z5QW3Y8K7V6T5R4E3W2Q1A",
        required = true,
        nullable = false
    )]
    pub tenant_id: Option<String>,
    /// One of the seed's six milestones or the wizard's three events.
    #[schema(example = "first_query_executed", required = true, nullable = false)]
    pub event_type: Option<String>,
    /// A JSON object of at most 4 KiB.
    #[schema(value_type = Option<Object>, example = json!({"query": "test query"}))]
    pub metadata: Option<serde_json::Value>,
    /// The client's id for this event: a retry with the same id is stored once.
    #[schema(example = "evt-42", nullable = false, min_length = 1, max_length = 128)]
    pub event_id: Option<String>,
}

/// What was tracked.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TrackResponse {
    /// `tracked`.
    pub status: &'static str,
    pub event: TrackedEvent,
}

/// Who is tracking: the operator, or one tenant.
enum Tracker {
    Operator,
    Tenant(TenantId),
}

/// The tenant a request speaks for, by its API key or session; `None` when it sends neither.
async fn optional_tenant(state: &AppState, headers: &HeaderMap) -> AppResult<Option<TenantId>> {
    let has_bearer = headers.contains_key(header::AUTHORIZATION);
    let has_cookie = headers.contains_key(header::COOKIE);
    if !has_bearer && !has_cookie {
        return Ok(None);
    }
    match tracker(state, headers).await {
        Ok(Tracker::Tenant(t)) => Ok(Some(t)),
        Ok(Tracker::Operator) => Ok(None),
        // A cookie that is no (longer a) session: the anonymous wizard.
        Err(_) if !has_bearer => Ok(None),
        Err(e) => Err(e),
    }
}

async fn tracker(state: &AppState, headers: &HeaderMap) -> AppResult<Tracker> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let Some(token) = bearer {
        if super::admin::require_admin(state, headers).is_ok() {
            return Ok(Tracker::Operator);
        }
        return match state
            .keys
            .authenticate(&state.store, &state.signer, token)
            .await
        {
            Ok(caller) => Ok(Tracker::Tenant(caller.tenant().clone())),
            Err(_) => Err(ApiError::unauthorized(
                "the API key is not valid (wrong, revoked or expired); track with one of the tenant's live keys",
            )),
        };
    }
    match current_session(state, headers).await? {
        Some((_, tenant)) => Ok(Tracker::Tenant(tenant.id)),
        None => Err(ApiError::unauthorized(
            "send one of the tenant's API keys as 'Authorization: Bearer onb_…', or sign in",
        )),
    }
}

/// Records an activation event the tenant's app saw. A milestone the server has no record of is
/// kept and flagged (and counted in the metrics' discrepancy rates).
#[utoipa::path(post, path = "/activation/track", tag = "activation",
    request_body = TrackRequest,
    responses(
        (status = 200, description = "Tracked (or, for a repeated event_id, the first record)", body = TrackResponse),
        (status = 400, description = "A field is invalid; `field` names it", body = ErrorBody),
        (status = 401, description = "No valid API key, session or operator token", body = ErrorBody),
        (status = 403, description = "The key or session belongs to another tenant", body = ErrorBody),
        (status = 404, description = "No such tenant (operator token)", body = ErrorBody),
    ))]
pub async fn track(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<TrackRequest>,
) -> AppResult<Json<TrackResponse>> {
    let who = tracker(&state, &headers).await?;
    let field = |f: &'static str, code: &'static str, msg: String| {
        ApiError::bad_request(code, msg).with_field(f)
    };
    let raw_tenant = req.tenant_id.ok_or_else(|| {
        field(
            "tenant_id",
            "invalid_tenant_id",
            "tenant_id is required".into(),
        )
    })?;
    let tenant = TenantId::parse(&raw_tenant).ok_or_else(|| {
        field(
            "tenant_id",
            "invalid_tenant_id",
            format!("'{raw_tenant}' is not a tenant id (tenant_…)"),
        )
    })?;
    let event_type = req.event_type.unwrap_or_default();
    if !EVENT_TYPES.contains(&event_type.as_str()) {
        return Err(field(
            "event_type",
            "invalid_event_type",
            format!("event_type must be one of {}", EVENT_TYPES.join(", ")),
        ));
    }
    let metadata = req.metadata.unwrap_or_else(|| serde_json::json!({}));
    if !metadata.is_object() {
        return Err(field(
            "metadata",
            "invalid_metadata",
            "metadata must be a JSON object".into(),
        ));
    }
    let size = metadata.to_string().len();
    if size > MAX_METADATA_BYTES {
        return Err(field(
            "metadata",
            "invalid_metadata",
            format!("metadata takes {size} bytes as JSON; at most {MAX_METADATA_BYTES} are kept"),
        ));
    }
    if let Some(id) = &req.event_id
        && (id.is_empty() || id.chars().count() > 128)
    {
        return Err(field(
            "event_id",
            "invalid_event_id",
            "event_id must be 1 to 128 characters".into(),
        ));
    }
    match who {
        Tracker::Tenant(own) if own != tenant => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong_tenant",
                "this key or session belongs to another tenant; track events for your own tenant_id",
            ));
        }
        Tracker::Operator if state.store.tenant(&tenant).await?.is_none() => {
            return Err(ApiError::not_found("tenant"));
        }
        _ => {}
    }
    let event = state
        .ingest
        .track(
            &state.store,
            crate::analytics::ClientEvent {
                tenant,
                event_type,
                metadata,
                client_event_id: req.event_id,
            },
        )
        .await?;
    Ok(Json(TrackResponse {
        status: "tracked",
        event,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// Tenants that signed up on or after this date (YYYY-MM-DD, UTC, or RFC 3339).
    pub from: Option<String>,
    /// Tenants that signed up before this date (YYYY-MM-DD, UTC, or RFC 3339).
    pub to: Option<String>,
    /// Only tenants on this plan.
    #[param(value_type = Option<Plan>)]
    pub plan: Option<String>,
    /// Only tenants given this wizard variant (`quick` or `guided`).
    #[param(value_type = Option<crate::analytics::wizard::Variant>)]
    pub variant: Option<String>,
}

/// The seed's envelope: the metrics, how many events are stored, and when.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MetricsResponse {
    pub metrics: Metrics,
    pub total_events: i64,
    /// RFC 3339.
    pub timestamp: String,
}

fn date_param(name: &'static str, value: Option<&str>) -> AppResult<Option<i64>> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    crate::domain::parse_day_or_time(v)
        .map(|t| Some(t.timestamp_millis()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query_parameter",
                format!("{name} must be a date (YYYY-MM-DD) or an RFC 3339 time"),
            )
            .with_field(name)
        })
}

/// Operator: activation over distinct tenants — the seed's counts and rates (`login_rate`,
/// `activation_rate`), the funnel with conversion and drop-off, time to activation and the
/// client-tracking discrepancy per event type.
#[utoipa::path(get, path = "/activation/metrics", tag = "activation",
    params(MetricsQuery),
    responses(
        (status = 200, description = "The metrics", body = MetricsResponse),
        (status = 400, description = "A filter is invalid; `field` names it", body = ErrorBody),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
pub async fn metrics(
    State(state): State<AppState>,
    _operator: Operator,
    QueryParams(q): QueryParams<MetricsQuery>,
) -> AppResult<Json<MetricsResponse>> {
    let plan = match q.plan.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => Some(p.parse::<Plan>().map_err(|e| {
            ApiError::bad_request("invalid_query_parameter", e.message).with_field("plan")
        })?),
        None => None,
    };
    let variant = match q.variant.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => Some(crate::analytics::wizard::Variant::parse(v).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query_parameter",
                format!("variant must be quick or guided, not '{v}'"),
            )
            .with_field("variant")
        })?),
        None => None,
    };
    let filter = metrics::Filter {
        from: date_param("from", q.from.as_deref())?,
        to: date_param("to", q.to.as_deref())?,
        plan,
        variant,
    };
    let metrics = state.store.activation_metrics(&filter).await?;
    Ok(Json(MetricsResponse {
        metrics,
        total_events: state.store.activation_event_count().await?,
        timestamp: metrics::timestamp(),
    }))
}

/// The setup wizard: the caller's variant with each step's state and the call that completes
/// it (by API key or session); without credentials, the default variant's steps (seed shape).
#[utoipa::path(get, path = "/wizard/steps", tag = "activation",
    responses(
        (status = 200, description = "The wizard", body = Wizard),
        (status = 401, description = "An API key was sent and is not valid", body = ErrorBody),
    ))]
pub async fn wizard_steps(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> AppResult<Json<Wizard>> {
    let wizard = match optional_tenant(&state, &headers).await? {
        Some(tenant) => {
            let wizard = state
                .store
                .wizard(&tenant, state.settings.wizard_split)
                .await?;
            state.store.note_wizard_progress(&tenant, &wizard).await?;
            wizard
        }
        None => crate::analytics::wizard::anonymous(),
    };
    Ok(Json(wizard))
}

/// Skips a step of the caller's wizard (recorded once, with a `wizard_step_skipped` event);
/// answers the wizard as it now stands.
#[utoipa::path(post, path = "/wizard/steps/{step}/skip", tag = "activation",
    params(("step" = u32, Path, description = "The step's number, from 1", minimum = 1, maximum = 10)),
    responses(
        (status = 200, description = "Skipped; the wizard", body = Wizard),
        (status = 400, description = "Not a step number", body = ErrorBody),
        (status = 401, description = "No valid API key or session", body = ErrorBody),
        (status = 404, description = "The caller's wizard has no such step", body = ErrorBody),
    ))]
pub async fn skip_step(
    State(state): State<AppState>,
    headers: HeaderMap,
    PathParam(step): PathParam<String>,
) -> AppResult<Json<Wizard>> {
    let n = step_number(&step)?;
    let tenant = match tracker(&state, &headers).await? {
        Tracker::Tenant(t) => t,
        Tracker::Operator => {
            return Err(ApiError::unauthorized(
                "skipping is the customer's choice: use one of the tenant's API keys or its session",
            ));
        }
    };
    skip(&state, &tenant, n).await?;
    let split = state.settings.wizard_split;
    let wizard = state.store.wizard(&tenant, split).await?;
    state.store.note_wizard_progress(&tenant, &wizard).await?;
    Ok(Json(wizard))
}

/// A wizard step's number from a path: 1–10.
pub(super) fn step_number(step: &str) -> AppResult<u32> {
    step.parse()
        .ok()
        .filter(|n| (1..=10).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_path_parameter",
                format!("'{step}' is not a step number (1, 2, …)"),
            )
            .with_field("step")
        })
}

/// Skips step `n` of the tenant's wizard (once, with its `wizard_step_skipped` event); 404 when
/// its variant has no such step.
pub(super) async fn skip(state: &AppState, tenant: &TenantId, n: u32) -> AppResult<()> {
    if !state
        .store
        .skip_wizard_step(tenant, state.settings.wizard_split, n)
        .await?
    {
        return Err(ApiError::not_found("wizard step"));
    }
    Ok(())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AtRiskQuery {
    /// Only tenants stuck for this reason.
    #[param(value_type = Option<Reason>)]
    pub reason: Option<String>,
    /// `true`: only tenants a digest flagged and nobody resolved yet; `false`: the others.
    #[param(value_type = Option<bool>)]
    pub needs_human: Option<String>,
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of stuck tenants, oldest stuck first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AtRiskList {
    pub tenants: Vec<AtRiskEntry>,
    /// Stuck tenants matching the filters, over every page.
    pub total: i64,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// RFC 3339: the time the list was computed for.
    pub timestamp: String,
}

/// Operator: tenants stuck in onboarding — paid but no sign-in after 24 h, signed in but no
/// document after 24 h, a document but no query after 48 h, provisioning failed and not
/// retried — each with the reason, since when, a suggested intervention and whether it needs a
/// human (flagged by the daily digest, not yet resolved). Oldest stuck first.
#[utoipa::path(get, path = "/activation/at-risk", tag = "activation",
    params(AtRiskQuery),
    responses(
        (status = 200, description = "Stuck tenants", body = AtRiskList),
        (status = 400, description = "A filter is invalid; `field` names it", body = ErrorBody),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN", body = ErrorBody),
        (status = 403, description = "Operator endpoints are disabled (no ADMIN_TOKEN)", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
pub async fn at_risk(
    State(state): State<AppState>,
    _operator: Operator,
    QueryParams(q): QueryParams<AtRiskQuery>,
) -> AppResult<Json<AtRiskList>> {
    let invalid = |field: &'static str, message: String| {
        ApiError::bad_request("invalid_query_parameter", message).with_field(field)
    };
    let reason = match q.reason.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => Some(Reason::parse(r).ok_or_else(|| {
            let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
            invalid(
                "reason",
                format!("reason must be one of {}, not '{r}'", all.join(", ")),
            )
        })?),
        None => None,
    };
    let needs_human = match q.needs_human.as_deref().filter(|v| !v.is_empty()) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(v) => {
            return Err(invalid(
                "needs_human",
                format!("needs_human must be true or false, not '{v}'"),
            ));
        }
        None => None,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(invalid("limit", "limit must be 1–100".into()));
    }
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(Cursor::parse(c).ok_or_else(|| {
            ApiError::bad_request("invalid_cursor", "cursor is not one this API returned")
                .with_field("cursor")
        })?),
        None => None,
    };
    let now = crate::store::now_ms();
    let page = state
        .store
        .at_risk(
            &at_risk::Filter {
                reason,
                needs_human,
            },
            limit,
            cursor.as_ref(),
            now,
        )
        .await?;
    Ok(Json(AtRiskList {
        tenants: page.tenants,
        total: page.total,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
        timestamp: crate::store::ms_to_datetime(now)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
}

/// What the operator says when resolving (optional).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveAtRiskRequest {
    /// What was done, by whom (kept with the flag), 1–500 characters.
    #[schema(
        example = "Called them; they start on Monday",
        min_length = 1,
        max_length = 500,
        nullable = false
    )]
    pub note: Option<String>,
}

/// Operator: marks every open "needs a human" flag of a tenant resolved (someone reached out);
/// answers the tenant's entry. The body (`{"note": …}`) is optional.
#[utoipa::path(post, path = "/activation/at-risk/{tenant_id}/resolve", tag = "activation",
    params(("tenant_id" = String, Path, description = "The stuck tenant's id")),
    request_body(content = Option<ResolveAtRiskRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Resolved; the entry", body = AtRiskEntry),
        (status = 400, description = "Not a tenant id, or the note is invalid; `field` names it", body = ErrorBody),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN", body = ErrorBody),
        (status = 403, description = "Operator endpoints are disabled (no ADMIN_TOKEN)", body = ErrorBody),
        (status = 404, description = "The tenant has no open flag", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
pub async fn resolve_at_risk(
    State(state): State<AppState>,
    _operator: Operator,
    PathParam(tenant_id): PathParam<String>,
    req: axum::extract::Request,
) -> AppResult<Json<AtRiskEntry>> {
    let tenant = TenantId::parse(&tenant_id).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_tenant_id",
            format!("'{tenant_id}' is not a tenant id (tenant_…)"),
        )
        .with_field("tenant_id")
    })?;
    let media = media_type(req.headers());
    let body = read_body(req, &state).await?;
    let trimmed = body.trim_ascii();
    // No body, or JSON `null` (as documented): no note.
    let note = if trimmed.is_empty() || trimmed == b"null" {
        None
    } else {
        if !is_json(&media) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let ResolveAtRiskRequest { note } = parse_json(&body)?;
        note
    };
    let note = note.map(|n| n.trim().to_string());
    if let Some(n) = &note
        && (n.is_empty() || n.chars().count() > 500)
    {
        return Err(ApiError::bad_request(
            "invalid_note",
            "note must be 1 to 500 characters (or left out)",
        )
        .with_field("note"));
    }
    let entry = state
        .store
        .resolve_at_risk(&tenant, "operator", note.as_deref(), crate::store::now_ms())
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "this tenant has no open at-risk flag (never flagged by a digest, or already resolved)",
            )
        })?;
    tracing::info!(tenant_id = %tenant, reason = entry.reason.as_str(), "at-risk flag resolved by the operator");
    Ok(Json(entry))
}
