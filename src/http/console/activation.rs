//! `GET /admin/activation`: the activation metrics of `GET /activation/metrics` drawn for a
//! person: the funnel as a bar chart with conversion and drop-off per step (whatever steps the
//! metrics have), the wizard's A/B comparison with its verdict, the time-to-activation
//! histogram and the weekly cohorts on a heat scale. Filtered by signup dates and plan.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::chart::{self, Chart};
use super::{Chrome, SignedIn, given, render};
use crate::analytics::abtest::Comparison;
use crate::analytics::metrics::{
    ACTIVATION_BUCKETS_MS, ACTIVATION_LAST_BUCKET, Cohort, Filter, FunnelStep,
};
use crate::domain::Plan;
use crate::http::AppState;
use crate::http::error::AppResult;

#[derive(Deserialize, Default)]
pub struct ActivationQuery {
    from: Option<String>,
    to: Option<String>,
    plan: Option<String>,
}

/// A cohort's row: its week and size, then each rate with its heat class.
struct CohortRow {
    week: String,
    signups: i64,
    rates: Vec<(f64, &'static str)>,
}

impl CohortRow {
    fn from(c: &Cohort) -> Self {
        let rate = |n: i64| crate::analytics::metrics::percent(n, c.signups);
        let rates = [
            rate(c.paid),
            rate(c.first_login),
            c.activation_rate,
            c.within_24h_rate,
        ];
        CohortRow {
            week: c.week.clone(),
            signups: c.signups,
            rates: rates.into_iter().map(|r| (r, chart::heat(r))).collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/activation.html")]
struct ActivationPage {
    chrome: Chrome,
    from: String,
    to: String,
    plan: String,
    plans: [Plan; 3],
    error: Option<String>,
    signups: i64,
    activation_rate: f64,
    within_24h_rate: f64,
    p50: String,
    p90: String,
    funnel: Vec<(String, FunnelStep)>,
    funnel_chart: Chart,
    /// Optional steps after activation (an invited teammate joined), among activated tenants.
    after_activation: Vec<crate::analytics::metrics::OptionalStep>,
    wizard: Comparison,
    histogram: Chart,
    cohorts: Vec<CohortRow>,
}

/// A date filter: `YYYY-MM-DD` (midnight UTC) or RFC 3339, as `/activation/metrics` takes.
fn date(name: &str, value: Option<&str>) -> Result<Option<i64>, String> {
    value
        .map(|v| {
            crate::domain::parse_day_or_time(v)
                .map(|t| t.timestamp_millis())
                .ok_or_else(|| format!("{name} must be a date (YYYY-MM-DD), not '{v}'"))
        })
        .transpose()
}

/// The page.
pub async fn page(
    State(state): State<AppState>,
    operator: SignedIn,
    Query(q): Query<ActivationQuery>,
) -> AppResult<Response> {
    let parsed = (|| {
        let plan = given(&q.plan)
            .map(|p| p.parse::<Plan>().map_err(|e| e.message))
            .transpose()?;
        let filter = Filter {
            from: date("From", given(&q.from))?,
            to: date("To", given(&q.to))?,
            plan,
            variant: None,
        };
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && from >= to
        {
            return Err("To must be later than From.".to_string());
        }
        Ok(filter)
    })();
    let (filter, error) = match parsed {
        Ok(f) => (f, None),
        Err(e) => (Filter::default(), Some(e)),
    };
    let (metrics, histogram) = tokio::try_join!(
        state.store.activation_metrics(&filter),
        state.store.activation_histogram(&filter),
    )?;
    let buckets: Vec<(&str, i64)> = ACTIVATION_BUCKETS_MS
        .iter()
        .map(|(_, label)| *label)
        .chain([ACTIVATION_LAST_BUCKET])
        .zip(histogram)
        .collect();
    let seconds = |s: Option<f64>| {
        s.map(|s| super::duration((s * 1000.0) as i64))
            .unwrap_or_else(|| "–".into())
    };
    let ttfa = &metrics.time_to_activation;
    let page = ActivationPage {
        chrome: Chrome::new(&operator, "/admin/activation"),
        from: given(&q.from).unwrap_or_default().to_string(),
        to: given(&q.to).unwrap_or_default().to_string(),
        plan: given(&q.plan).unwrap_or_default().to_string(),
        plans: Plan::ALL,
        signups: metrics.total_signups,
        activation_rate: metrics.activation_rate,
        within_24h_rate: ttfa.within_24h_rate,
        p50: seconds(ttfa.p50_seconds),
        p90: seconds(ttfa.p90_seconds),
        funnel_chart: chart::funnel(&metrics.funnel),
        funnel: metrics
            .funnel
            .iter()
            .map(|s| (chart::humanize(s.step), s.clone()))
            .collect(),
        histogram: chart::histogram(&buckets),
        after_activation: metrics.after_activation.clone(),
        cohorts: metrics.cohorts.iter().map(CohortRow::from).collect(),
        wizard: metrics.wizard,
        error: error.clone(),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(render(status, &page))
}
