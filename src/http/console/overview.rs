//! `GET /admin`: where things stand, with a way into each section: tenants by status, the
//! newest signups, activation at a glance, alerts firing, stuck customers and the job queue.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{Chrome, SignedIn, render, tenants::TenantRow};
use crate::analytics::at_risk;
use crate::analytics::metrics::Filter;
use crate::http::AppState;
use crate::http::error::AppResult;
use crate::store::now_ms;

#[derive(Template)]
#[template(path = "admin/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    by_status: Vec<(String, i64)>,
    tenants: i64,
    newest: Vec<TenantRow>,
    signups: i64,
    activation_rate: f64,
    /// Median time to a first query, once anyone got there.
    p50: Option<String>,
    firing: Vec<&'static str>,
    stuck: i64,
    needs_human: i64,
    queued: i64,
    dead: i64,
}

/// The overview page.
pub async fn page(State(state): State<AppState>, operator: SignedIn) -> AppResult<Response> {
    let now = now_ms();
    let store = &state.store;
    let stuck = |needs_human| async move {
        let filter = at_risk::Filter {
            reason: None,
            needs_human,
        };
        store.at_risk(&filter, 1, None, now).await.map(|p| p.total)
    };
    let everyone = Filter::default();
    let (by_status, newest, metrics, alerts, stuck, needs_human, stats) = tokio::try_join!(
        store.tenant_status_counts(),
        store.list_tenants(None, 8),
        store.activation_metrics(&everyone),
        store.evaluate_alerts(now),
        stuck(None),
        stuck(Some(true)),
        store.job_stats(),
    )?;
    let page = OverviewPage {
        chrome: Chrome::new(&operator, "/admin"),
        tenants: by_status.iter().map(|(_, n)| n).sum(),
        by_status,
        newest: newest.into_iter().map(TenantRow::from).collect(),
        signups: metrics.total_signups,
        activation_rate: metrics.activation_rate,
        p50: metrics
            .time_to_activation
            .p50_seconds
            .map(|s| super::duration((s * 1000.0) as i64)),
        firing: alerts
            .iter()
            .filter(|a| a.state == crate::alerts::AlertState::Firing)
            .map(|a| a.name)
            .collect(),
        stuck,
        needs_human,
        queued: stats
            .iter()
            .map(|s| s.queued + s.running + s.retrying)
            .sum(),
        dead: stats.iter().map(|s| s.dead).sum(),
    };
    Ok(render(StatusCode::OK, &page))
}
