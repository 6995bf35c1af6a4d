//! `GET /activation/metrics`: the seed's fields and the funnel, over distinct tenants, read from
//! the per-tenant `tenant_activation` rows (kept as events arrive), never from raw event counts:
//! a double-clicked event counts once.

use serde::Serialize;

use crate::domain::Plan;
use crate::store::{Store, StoreResult, now_ms};
use crate::with_reader;

/// Which tenants count: signed up in `[from, to)` (ms), on `plan`, given wizard `variant`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub plan: Option<Plan>,
    pub variant: Option<super::wizard::Variant>,
}

/// One step of the funnel.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FunnelStep {
    pub step: &'static str,
    /// Distinct tenants that reached it.
    pub tenants: i64,
    /// Of those that reached the step before, the percentage that reached this one.
    pub step_conversion: f64,
    /// Of all signups, the percentage that reached this one.
    pub overall_conversion: f64,
    /// Tenants that reached the step before and not this one.
    pub dropped: i64,
}

/// How long signup → first query took, for tenants that got there.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimeToActivation {
    pub activated: i64,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub mean_seconds: Option<f64>,
    /// Percentage of signups that ran a first query within 24 hours of signing up.
    pub within_24h_rate: f64,
}

/// Client-reported milestones the server has no record of, per event type.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Discrepancy {
    pub event_type: String,
    pub client_events: i64,
    pub unverified: i64,
    /// Percentage of the client's reports of this type with no server record.
    pub rate: f64,
}

/// The seed's metrics (same names), computed per distinct tenant, and what they add.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Metrics {
    pub total_signups: i64,
    pub payment_confirmed: i64,
    pub first_login: i64,
    pub first_document_upload: i64,
    pub first_query_executed: i64,
    pub integration_configured: i64,
    /// first_login / total_signups, percent, one decimal.
    pub login_rate: f64,
    /// first_query_executed / total_signups, percent, one decimal.
    pub activation_rate: f64,
    pub funnel: Vec<FunnelStep>,
    pub time_to_activation: TimeToActivation,
    pub discrepancies: Vec<Discrepancy>,
    /// The wizard's A/B test: activation per variant and the z-test of the difference.
    pub wizard: super::abtest::Comparison,
}

/// `part / whole` as a percentage with one decimal (0 when `whole` is 0).
pub fn percent(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[i64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1] as f64 / 1000.0)
}

/// The funnel from the counts of each step, in order.
pub fn funnel(counts: &[(&'static str, i64)]) -> Vec<FunnelStep> {
    let total = counts.first().map_or(0, |c| c.1);
    let mut prev = total;
    counts
        .iter()
        .map(|&(step, tenants)| {
            let s = FunnelStep {
                step,
                tenants,
                step_conversion: percent(tenants, prev),
                overall_conversion: percent(tenants, total),
                dropped: (prev - tenants).max(0),
            };
            prev = tenants;
            s
        })
        .collect()
}

impl Store {
    /// The activation metrics of the tenants `filter` selects.
    pub async fn activation_metrics(&self, filter: &Filter) -> StoreResult<Metrics> {
        let plan = filter.plan.map(Plan::as_str);
        let variant = filter.variant.map(super::wizard::Variant::as_str);
        const WHERE: &str = "($1 IS NULL OR signed_up_at >= $1) AND ($2 IS NULL OR signed_up_at < $2) \
             AND ($3 IS NULL OR plan = $3) AND ($4 IS NULL OR variant = $4)";
        let counts: (i64, i64, i64, i64, i64, i64, i64) = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*), COUNT(paid_at), COUNT(provisioned_at), COUNT(first_login_at), \
                 COUNT(first_document_at), COUNT(first_query_at), COUNT(integration_at) \
                 FROM tenant_activation WHERE {WHERE}"
            )))
            .bind(filter.from)
            .bind(filter.to)
            .bind(plan)
            .bind(variant)
            .fetch_one(pool)
            .await?
        });
        let (signups, paid, provisioned, login, document, query, integration) = counts;
        let mut durations: Vec<i64> = with_reader!(self, |pool| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT first_query_at - signed_up_at FROM tenant_activation \
                 WHERE first_query_at IS NOT NULL AND {WHERE}"
            )))
            .bind(filter.from)
            .bind(filter.to)
            .bind(plan)
            .bind(variant)
            .fetch_all(pool)
            .await?
        });
        durations.sort_unstable();
        let within_day = durations.iter().filter(|d| **d <= 86_400_000).count() as i64;
        let mean = (!durations.is_empty())
            .then(|| durations.iter().sum::<i64>() as f64 / durations.len() as f64 / 1000.0);
        let reports: Vec<(String, i64, i64)> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT event_type, COUNT(*), CAST(SUM(flagged) AS BIGINT) FROM activation_events \
                 WHERE source = 'client' AND event_type IN ('signup_completed', 'payment_confirmed', 'first_login', \
                 'first_document_upload', 'first_query_executed', 'integration_configured') \
                 GROUP BY event_type ORDER BY event_type",
            )
            .fetch_all(pool)
            .await?
        });
        let wizard = self.wizard_comparison(filter).await?;
        Ok(Metrics {
            wizard,
            total_signups: signups,
            payment_confirmed: paid,
            first_login: login,
            first_document_upload: document,
            first_query_executed: query,
            integration_configured: integration,
            login_rate: percent(login, signups),
            activation_rate: percent(query, signups),
            funnel: funnel(&[
                ("signed_up", signups),
                ("paid", paid),
                ("provisioned", provisioned),
                ("first_login", login),
                ("first_document", document),
                ("first_query", query),
                ("integration", integration),
            ]),
            time_to_activation: TimeToActivation {
                activated: durations.len() as i64,
                p50_seconds: quantile(&durations, 0.5),
                p90_seconds: quantile(&durations, 0.9),
                mean_seconds: mean.map(|m| (m * 10.0).round() / 10.0),
                within_24h_rate: percent(within_day, signups),
            },
            discrepancies: reports
                .into_iter()
                .map(|(event_type, n, unverified)| Discrepancy {
                    rate: percent(unverified, n),
                    event_type,
                    client_events: n,
                    unverified,
                })
                .collect(),
        })
    }

    /// Activation per wizard variant (of the tenants `filter` selects, whatever its variant),
    /// skips per step, and the z-test of quick against guided.
    pub async fn wizard_comparison(
        &self,
        filter: &Filter,
    ) -> StoreResult<super::abtest::Comparison> {
        use super::abtest::{VariantResult, compare};
        use super::wizard::Variant;
        let plan = filter.plan.map(Plan::as_str);
        let per_variant: Vec<(String, i64, i64)> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT variant, COUNT(*), COUNT(first_query_at) FROM tenant_activation \
                 WHERE variant IS NOT NULL AND ($1 IS NULL OR signed_up_at >= $1) \
                 AND ($2 IS NULL OR signed_up_at < $2) AND ($3 IS NULL OR plan = $3) GROUP BY variant",
            )
            .bind(filter.from)
            .bind(filter.to)
            .bind(plan)
            .fetch_all(pool)
            .await?
        });
        let skips: Vec<(String, i64, i64)> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT w.variant, w.step, COUNT(*) FROM wizard_skips w \
                 JOIN tenant_activation a ON a.tenant_id = w.tenant_id \
                 WHERE ($1 IS NULL OR a.signed_up_at >= $1) AND ($2 IS NULL OR a.signed_up_at < $2) \
                 AND ($3 IS NULL OR a.plan = $3) GROUP BY w.variant, w.step",
            )
            .bind(filter.from)
            .bind(filter.to)
            .bind(plan)
            .fetch_all(pool)
            .await?
        });
        let steps = self.wizard_step_counts(filter).await?;
        let count_of = |kind: &str, v: Variant, step: u32| {
            steps
                .iter()
                .find(|(k, name, s, _)| k == kind && name == v.as_str() && *s == step)
                .map_or(0, |(_, _, _, n)| *n)
        };
        let result = |v: Variant| {
            let (tenants, activated) = per_variant
                .iter()
                .find(|(name, _, _)| name == v.as_str())
                .map_or((0, 0), |(_, n, a)| (*n, *a));
            let skips_by_step = (1..=v.steps().len() as i64)
                .map(|step| {
                    skips
                        .iter()
                        .find(|(name, s, _)| name == v.as_str() && *s == step)
                        .map_or(0, |(_, _, n)| *n)
                })
                .collect();
            let by_step = |kind: &str| {
                (1..=v.steps().len() as u32)
                    .map(|step| count_of(kind, v, step))
                    .collect()
            };
            VariantResult {
                variant: v.as_str().to_string(),
                tenants,
                activated,
                activation_rate: percent(activated, tenants),
                skips_by_step,
                views_by_step: by_step("viewed"),
                completions_by_step: by_step("completed"),
            }
        };
        let (quick, guided) = (result(Variant::Quick), result(Variant::Guided));
        let (z, p_value, verdict) = compare(&quick, &guided);
        Ok(super::abtest::Comparison {
            variants: vec![quick, guided],
            z,
            p_value,
            verdict,
        })
    }

    /// Every activation event stored (the seed's `total_events`).
    pub async fn activation_event_count(&self) -> StoreResult<i64> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM activation_events")
                .fetch_one(pool)
                .await?
        }))
    }
}

/// Now, for the envelope's `timestamp`.
pub fn timestamp() -> String {
    crate::store::ms_to_datetime(now_ms()).to_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_percentages_with_one_decimal() {
        assert_eq!(percent(1, 2), 50.0);
        assert_eq!(percent(1, 3), 33.3);
        assert_eq!(percent(2, 3), 66.7);
        assert_eq!(percent(5, 0), 0.0);
    }

    #[test]
    fn the_funnel_converts_step_by_step_and_overall() {
        let f = funnel(&[
            ("signed_up", 10),
            ("paid", 8),
            ("first_login", 4),
            ("first_query", 1),
        ]);
        assert_eq!(f[0].step_conversion, 100.0);
        assert_eq!((f[1].step_conversion, f[1].dropped), (80.0, 2));
        assert_eq!(
            (f[2].step_conversion, f[2].overall_conversion, f[2].dropped),
            (50.0, 40.0, 4)
        );
        assert_eq!(
            (f[3].step_conversion, f[3].overall_conversion),
            (25.0, 10.0)
        );
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v = [1000, 2000, 3000, 4000, 10_000];
        assert_eq!(quantile(&v, 0.5), Some(3.0));
        assert_eq!(quantile(&v, 0.9), Some(10.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
