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
    /// The funnel per signup week (Monday, UTC), oldest first.
    pub cohorts: Vec<Cohort>,
    /// Optional steps after activation, each measured among activated tenants: today
    /// `invited_teammate` (an invited teammate joined).
    pub after_activation: Vec<OptionalStep>,
}

/// A step after activation that a tenant may or may not take.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OptionalStep {
    pub step: &'static str,
    pub label: &'static str,
    /// Activated tenants that took it.
    pub tenants: i64,
    /// Of activated tenants (a first query), the percentage that took it.
    pub conversion: f64,
}

/// `part / whole` as a percentage with one decimal (0 when `whole` is 0).
pub fn percent(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
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

/// The rollup's counted columns, in the order [`Sums`] holds them.
const SUM_COLUMNS: [&str; 22] = [
    "signups",
    "paid",
    "provisioned",
    "first_login",
    "first_document",
    "first_query",
    "integration",
    "activated_24h",
    "activation_ms_sum",
    "viewed1",
    "viewed2",
    "viewed3",
    "viewed4",
    "completed1",
    "completed2",
    "completed3",
    "completed4",
    "skipped1",
    "skipped2",
    "skipped3",
    "skipped4",
    "teammate",
];

/// One day's length in ms: the rollup's grain.
const DAY_MS: i64 = 86_400_000;

/// Summed rollup columns (see [`SUM_COLUMNS`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sums([i64; SUM_COLUMNS.len()]);

impl Sums {
    fn add(&mut self, other: &Sums) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
    fn get(&self, column: &str) -> i64 {
        SUM_COLUMNS
            .iter()
            .position(|c| *c == column)
            .map_or(0, |i| self.0[i])
    }
    /// Views, completions or skips (`kind`) of steps 1..=`steps`.
    fn by_step(&self, kind: &str, steps: usize) -> Vec<i64> {
        (1..=steps.min(4))
            .map(|n| self.get(&format!("{kind}{n}")))
            .collect()
    }
}

/// One tenant's contribution to the rollup, computed from its `tenant_activation` row exactly
/// as the rollup's triggers compute it (migration 0015), for a filter that cuts through a day.
fn per_tenant_rollup() -> String {
    let mut cols = vec![
        "signed_up_at / 86400000 AS day".to_string(),
        "signed_up_at".into(),
        "plan".into(),
        "COALESCE(variant, '') AS variant".into(),
        "1 AS signups".into(),
    ];
    for (name, column) in [
        ("paid", "paid_at"),
        ("provisioned", "provisioned_at"),
        ("first_login", "first_login_at"),
        ("first_document", "first_document_at"),
        ("first_query", "first_query_at"),
        ("integration", "integration_at"),
    ] {
        cols.push(format!(
            "CASE WHEN {column} IS NOT NULL THEN 1 ELSE 0 END AS {name}"
        ));
    }
    cols.push(
        "CASE WHEN first_query_at - signed_up_at <= 86400000 THEN 1 ELSE 0 END AS activated_24h"
            .into(),
    );
    cols.push("COALESCE(first_query_at - signed_up_at, 0) AS activation_ms_sum".into());
    cols.push(
        "CASE WHEN member_joined_at IS NOT NULL AND first_query_at IS NOT NULL THEN 1 ELSE 0 END \
         AS teammate"
            .into(),
    );
    for kind in ["viewed", "completed", "skipped"] {
        for n in 1..=4 {
            cols.push(format!("(wizard_{kind} >> {}) & 1 AS {kind}{n}", n - 1));
        }
    }
    format!("(SELECT {} FROM tenant_activation) r", cols.join(", "))
}

/// The Monday (UTC) of the week holding `day` (days since the epoch; day 0 was a Thursday).
fn week_start(week: i64) -> String {
    let day = week * 7 - 3;
    crate::store::ms_to_datetime(day * DAY_MS)
        .date_naive()
        .to_string()
}

/// One signup week's funnel (weeks start on Monday, UTC).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Cohort {
    /// The week's Monday, YYYY-MM-DD.
    pub week: String,
    pub signups: i64,
    pub paid: i64,
    pub first_login: i64,
    pub first_query: i64,
    /// first_query / signups, percent, one decimal.
    pub activation_rate: f64,
    /// Percentage of the week's signups that ran a first query within 24 hours.
    pub within_24h_rate: f64,
}

impl Store {
    /// The activation metrics of the tenants `filter` selects: read from the daily rollups
    /// (a few rows per day) when the date filter falls on whole UTC days, else from the
    /// tenants' rows with the same arithmetic; time-to-activation quantiles walk an index.
    pub async fn activation_metrics(&self, filter: &Filter) -> StoreResult<Metrics> {
        // Independent reads run at once, each on its own reader connection: the rollup with
        // the discrepancy sums, then (they need the rollup's activated count) both quantiles.
        let (rows, reports) = tokio::try_join!(self.rollup_rows(filter), self.client_reports())?;
        let variant = filter.variant.map(super::wizard::Variant::as_str);
        let selected = |v: &str| variant.is_none_or(|want| want == v);
        let mut total = Sums::default();
        let mut weeks: std::collections::BTreeMap<i64, Sums> = Default::default();
        for (week, v, sums) in &rows {
            if selected(v) {
                total.add(sums);
                weeks.entry(*week).or_default().add(sums);
            }
        }
        let g = |c: &str| total.get(c);
        let (signups, paid, provisioned) = (g("signups"), g("paid"), g("provisioned"));
        let (login, document, query, integration) = (
            g("first_login"),
            g("first_document"),
            g("first_query"),
            g("integration"),
        );
        let (p50, p90) = tokio::try_join!(
            self.activation_quantile(filter, query, 0.5),
            self.activation_quantile(filter, query, 0.9),
        )?;
        let mean = (query > 0)
            .then(|| (g("activation_ms_sum") as f64 / query as f64 / 100.0).round() / 10.0);
        Ok(Metrics {
            wizard: wizard_comparison(&rows),
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
                activated: query,
                p50_seconds: p50,
                p90_seconds: p90,
                mean_seconds: mean,
                within_24h_rate: percent(g("activated_24h"), signups),
            },
            after_activation: vec![OptionalStep {
                step: "invited_teammate",
                label: "invited a teammate",
                tenants: g("teammate"),
                conversion: percent(g("teammate"), query),
            }],
            // A week whose tenants all moved away (their signup time rewritten) nets to zero.
            cohorts: weeks
                .into_iter()
                .filter(|(_, s)| s.get("signups") > 0)
                .map(|(week, s)| Cohort {
                    week: week_start(week),
                    signups: s.get("signups"),
                    paid: s.get("paid"),
                    first_login: s.get("first_login"),
                    first_query: s.get("first_query"),
                    activation_rate: percent(s.get("first_query"), s.get("signups")),
                    within_24h_rate: percent(s.get("activated_24h"), s.get("signups")),
                })
                .collect(),
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

    /// Client-reported milestone events and how many of them the server had no record of, per
    /// event type, over all time (the discrepancy rates).
    async fn client_reports(&self) -> StoreResult<Vec<(String, i64, i64)>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT event_type, CAST(SUM(events) AS BIGINT), CAST(SUM(flagged) AS BIGINT) \
                 FROM activation_event_daily WHERE source = 'client' AND event_type IN \
                 ('signup_completed', 'payment_confirmed', 'first_login', 'first_document_upload', \
                 'first_query_executed', 'integration_configured') \
                 GROUP BY event_type ORDER BY event_type",
            )
            .fetch_all(pool)
            .await?
        }))
    }

    /// The rollup summed per signup week and variant, of the tenants `filter` selects by date
    /// and plan (the variant is left to the caller: the A/B comparison needs both).
    async fn rollup_rows(&self, filter: &Filter) -> StoreResult<Vec<(i64, String, Sums)>> {
        let whole_days = [filter.from, filter.to]
            .iter()
            .all(|b| b.is_none_or(|ms| ms % DAY_MS == 0));
        let (source, column, from, to) = if whole_days {
            (
                "activation_rollup".to_string(),
                "day",
                filter.from.map(|ms| ms.div_euclid(DAY_MS)),
                filter.to.map(|ms| ms.div_euclid(DAY_MS)),
            )
        } else {
            (per_tenant_rollup(), "signed_up_at", filter.from, filter.to)
        };
        let sums: Vec<String> = SUM_COLUMNS
            .iter()
            .map(|c| format!("CAST(SUM({c}) AS BIGINT)"))
            .collect();
        let sql = format!(
            "SELECT (day + 3) / 7 AS week, variant, {} FROM {source} \
             WHERE ($1 IS NULL OR {column} >= $1) AND ($2 IS NULL OR {column} < $2) \
             AND ($3 IS NULL OR plan = $3) GROUP BY (day + 3) / 7, variant",
            sums.join(", ")
        );
        let plan = filter.plan.map(Plan::as_str);
        Ok(with_reader!(self, |pool| {
            use sqlx::Row;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(from)
                .bind(to)
                .bind(plan)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    let mut sums = Sums::default();
                    for (i, v) in sums.0.iter_mut().enumerate() {
                        *v = row.try_get::<Option<i64>, _>(i + 2)?.unwrap_or(0);
                    }
                    Ok::<_, sqlx::Error>((row.try_get(0)?, row.try_get(1)?, sums))
                })
                .collect::<Result<Vec<_>, _>>()?
        }))
    }

    /// The `q` quantile (nearest rank) of signup → first query among the `activated` tenants
    /// `filter` selects, in seconds: one row read at the rank's offset along the index on that
    /// duration (from whichever end is nearer), instead of sorting every activated tenant.
    async fn activation_quantile(
        &self,
        filter: &Filter,
        activated: i64,
        q: f64,
    ) -> StoreResult<Option<f64>> {
        if activated == 0 {
            return Ok(None);
        }
        let rank = ((q * activated as f64).ceil() as i64).clamp(1, activated);
        let (order, offset) = if rank - 1 <= activated - rank {
            ("ASC", rank - 1)
        } else {
            ("DESC", activated - rank)
        };
        let sql = format!(
            "SELECT activation_ms FROM tenant_activation \
             WHERE activation_ms IS NOT NULL AND ($1 IS NULL OR signed_up_at >= $1) \
             AND ($2 IS NULL OR signed_up_at < $2) AND ($3 IS NULL OR plan = $3) \
             AND ($4 IS NULL OR variant = $4) \
             ORDER BY activation_ms {order} LIMIT 1 OFFSET $5"
        );
        let ms: Option<i64> = with_reader!(self, |pool| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(filter.from)
                .bind(filter.to)
                .bind(filter.plan.map(Plan::as_str))
                .bind(filter.variant.map(super::wizard::Variant::as_str))
                .bind(offset)
                .fetch_optional(pool)
                .await?
        });
        Ok(ms.map(|ms| ms as f64 / 1000.0))
    }

    /// Every activation event ever stored (the seed's `total_events`), counted in the daily
    /// aggregates so that events deleted by retention still count.
    pub async fn activation_event_count(&self) -> StoreResult<i64> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(events), 0) AS BIGINT) FROM activation_event_daily",
            )
            .fetch_one(pool)
            .await?
        }))
    }
}

/// The upper bounds (exclusive, ms) of the time-to-activation histogram's buckets; a last
/// bucket holds everything from the final bound on.
pub const ACTIVATION_BUCKETS_MS: [(i64, &str); 7] = [
    (5 * 60_000, "< 5 min"),
    (15 * 60_000, "5–15 min"),
    (3_600_000, "15–60 min"),
    (4 * 3_600_000, "1–4 h"),
    (DAY_MS, "4–24 h"),
    (3 * DAY_MS, "1–3 days"),
    (7 * DAY_MS, "3–7 days"),
];

/// The label of the histogram's last bucket (from the last bound of [`ACTIVATION_BUCKETS_MS`]).
pub const ACTIVATION_LAST_BUCKET: &str = "≥ 7 days";

impl Store {
    /// How many of the tenants `filter` selects reached their first query within each bucket
    /// of [`ACTIVATION_BUCKETS_MS`] after signing up, then the rest: one count per bucket, in
    /// order (one more than there are bounds).
    pub async fn activation_histogram(&self, filter: &Filter) -> StoreResult<Vec<i64>> {
        let cases: Vec<String> = ACTIVATION_BUCKETS_MS
            .iter()
            .enumerate()
            .map(|(i, (bound, _))| format!("WHEN activation_ms < {bound} THEN {i}"))
            .collect();
        let sql = format!(
            "SELECT CAST(CASE {} ELSE {} END AS BIGINT) AS bucket, COUNT(*) FROM tenant_activation \
             WHERE activation_ms IS NOT NULL AND ($1 IS NULL OR signed_up_at >= $1) \
             AND ($2 IS NULL OR signed_up_at < $2) AND ($3 IS NULL OR plan = $3) \
             AND ($4 IS NULL OR variant = $4) GROUP BY 1",
            cases.join(" "),
            ACTIVATION_BUCKETS_MS.len()
        );
        let rows: Vec<(i64, i64)> = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(filter.from)
                .bind(filter.to)
                .bind(filter.plan.map(Plan::as_str))
                .bind(filter.variant.map(super::wizard::Variant::as_str))
                .fetch_all(pool)
                .await?
        });
        let mut counts = vec![0; ACTIVATION_BUCKETS_MS.len() + 1];
        for (bucket, n) in rows {
            if let Some(c) = usize::try_from(bucket).ok().and_then(|b| counts.get_mut(b)) {
                *c = n;
            }
        }
        Ok(counts)
    }
}

/// Activation per wizard variant (of the tenants the filter selects by date and plan, whatever
/// their variant), views, completions and skips per step, and the z-test of quick against
/// guided.
fn wizard_comparison(rows: &[(i64, String, Sums)]) -> super::abtest::Comparison {
    use super::abtest::{VariantResult, compare};
    use super::wizard::Variant;
    let result = |v: Variant| {
        let mut s = Sums::default();
        for (_, name, sums) in rows {
            if name == v.as_str() {
                s.add(sums);
            }
        }
        let steps = v.steps().len();
        let (tenants, activated) = (s.get("signups"), s.get("first_query"));
        VariantResult {
            variant: v.as_str().to_string(),
            tenants,
            activated,
            activation_rate: percent(activated, tenants),
            skips_by_step: s.by_step("skipped", steps),
            views_by_step: s.by_step("viewed", steps),
            completions_by_step: s.by_step("completed", steps),
        }
    };
    let (quick, guided) = (result(Variant::Quick), result(Variant::Guided));
    let (z, p_value, verdict) = compare(&quick, &guided);
    super::abtest::Comparison {
        variants: vec![quick, guided],
        z,
        p_value,
        verdict,
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
}
