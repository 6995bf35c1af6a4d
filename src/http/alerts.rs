//! `GET /admin/alerts` (operator): the Prometheus alert rules evaluated by the service itself
//! from the database (`crate::alerts`), for a team without Prometheus. A browser asking for
//! HTML gets the console's page of the same alerts instead (`console::logs`).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use super::admin::Operator;
use super::error::{AppResult, ErrorBody};
use crate::alerts::{Alert, AlertState};
use crate::store::{ms_to_datetime, now_ms};

/// Every alert rule with its state now.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertsResponse {
    /// In the order of `deploy/prometheus/alerts.yml`.
    pub alerts: Vec<Alert>,
    /// How many of them are firing.
    pub firing: usize,
    /// RFC 3339.
    pub evaluated_at: String,
}

/// Operator: the five alert rules of `deploy/prometheus/alerts.yml` (queue backlog,
/// provisioning success, Stripe event delay, provisioning p50, 7-day activation), judged now
/// from the database, each with its value, threshold and runbook.
#[utoipa::path(get, path = "/admin/alerts", tag = "operators",
    responses(
        (status = 200, description = "Every rule, firing or ok (a browser asking for HTML gets the console's page of them)",
            content((AlertsResponse = "application/json"), (String = "text/html"))),
        (status = 303, description = "A browser asking for HTML (Accept: text/html, no Authorization) without an operator console session: to /admin/login"),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN", body = ErrorBody),
        (status = 403, description = "Operator endpoints are disabled: no ADMIN_TOKEN is set", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
pub async fn alerts(
    State(state): State<AppState>,
    _operator: Operator,
) -> AppResult<Json<AlertsResponse>> {
    let now = now_ms();
    let alerts = state.store.evaluate_alerts(now).await?;
    Ok(Json(AlertsResponse {
        firing: alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .count(),
        alerts,
        evaluated_at: ms_to_datetime(now).to_rfc3339(),
    }))
}
