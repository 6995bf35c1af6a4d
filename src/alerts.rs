//! Alerts: the five conditions of `deploy/prometheus/alerts.yml` (README.md "Alerts") in one
//! table, [`RULES`], and their evaluation from the database for `GET /admin/alerts`, so that a
//! team without Prometheus sees the same alerts. Names, thresholds, severities, summaries and
//! runbooks live here and in the rules file; `tests/api/alerts.rs` reads the file and fails when
//! the two differ.
//!
//! Every value is read from durable records (the `jobs` table, the tenants' status history,
//! stored Stripe events, the per-tenant funnel times), never from a process's counters, so every
//! process answers the same. The service judges the condition as it is now; Prometheus also
//! waits each rule's `for:` before firing.
//!
//! Uses only `store` (checked by `tests/layout.rs`); must not import `app`, `http`, `jobs`,
//! `tasks` or a feature module.

use serde::Serialize;

use crate::store::{Store, StoreResult};
use crate::with_reader;

/// Which side of its threshold a rule fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Fires when the value is strictly greater than the threshold (`>` in PromQL).
    Above,
    /// Fires when the value is strictly less than the threshold (`<` in PromQL).
    Below,
}

impl Comparison {
    /// The PromQL operator, as the rules file writes it.
    pub fn operator(self) -> &'static str {
        match self {
            Comparison::Above => ">",
            Comparison::Below => "<",
        }
    }
}

/// One alert rule, as `deploy/prometheus/alerts.yml` states it.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The Prometheus alert name, also the name `GET /admin/alerts` answers.
    pub name: &'static str,
    /// The `severity` label: `critical` pages someone, `warning` can wait for working hours.
    pub severity: &'static str,
    pub comparison: Comparison,
    /// In `unit`; the rules file's `threshold` annotation and its expression use the same number.
    pub threshold: f64,
    /// `jobs`, `ratio` (0..1) or `seconds`.
    pub unit: &'static str,
    /// How far back the value looks, in seconds (0: the state now).
    pub window_secs: i64,
    /// Fewest observations (runs, events, tenants) in the window for the value to be judged:
    /// below it the rule stays `ok`, so a quiet hour or a handful of tenants cannot fire it.
    pub min_samples: i64,
    /// Prometheus's `for:`, how long the condition must hold before the alert fires there.
    pub pending_for: &'static str,
    pub summary: &'static str,
    /// What the operator checks and does, naming our real commands and endpoints.
    pub runbook: &'static str,
}

/// The seed's "task queue backlog > 100 jobs": jobs not yet done or dead.
pub const QUEUE_BACKLOG: Rule = Rule {
    name: "OnboardJobQueueBacklog",
    severity: "warning",
    comparison: Comparison::Above,
    threshold: 100.0,
    unit: "jobs",
    window_secs: 0,
    min_samples: 0,
    pending_for: "10m",
    summary: "More than 100 jobs are waiting or running.",
    runbook: "Run `onboard jobs stats` to see which kind piles up and how long its oldest job has \
              waited; if nothing claims them, start workers (`onboard worker`, or raise \
              `WORKER_CONCURRENCY`), and once the cause is fixed put dead jobs back with \
              `onboard jobs retry <job_id>`.",
};

/// The seed's "provisioning success rate < 95%", over the runs that ended in the last hour.
pub const PROVISIONING_SUCCESS: Rule = Rule {
    name: "OnboardProvisioningSuccessLow",
    severity: "critical",
    comparison: Comparison::Below,
    threshold: 0.95,
    unit: "ratio",
    window_secs: 3600,
    min_samples: 1,
    pending_for: "5m",
    summary: "Fewer than 95% of provisioning runs succeeded in the last hour.",
    runbook: "List the paying customers left without a workspace with `onboard tenants list \
              --status failed` and read each reason (vector store, embeddings API, email); once \
              the cause is fixed, restart each with `onboard tenants retry <tenant_id>` or \
              `POST /provision`, which does not repeat completed steps.",
};

/// The seed's "webhook latency > 30 seconds" (Stripe → provisioning trigger): the p95 of Stripe
/// event `created` → received by us, over the last 5 minutes.
pub const WEBHOOK_LATENCY: Rule = Rule {
    name: "OnboardWebhookLatencyHigh",
    severity: "warning",
    comparison: Comparison::Above,
    threshold: 30.0,
    unit: "seconds",
    window_secs: 300,
    min_samples: 1,
    pending_for: "10m",
    summary: "Stripe events reach us more than 30 s after Stripe created them (p95, 5 min).",
    runbook: "Check `GET /health` and the server logs for refused deliveries (a 400 `Invalid \
              signature` means `STRIPE_WEBHOOK_SECRET` is not the endpoint's), then the \
              endpoint's failed delivery attempts in Stripe's dashboard; `onboard events list` \
              shows what arrived and when.",
};

/// Provisioning p50 (payment confirmed → tenant active) over the last hour above two minutes.
pub const PROVISIONING_SLOW: Rule = Rule {
    name: "OnboardProvisioningSlow",
    severity: "warning",
    comparison: Comparison::Above,
    threshold: 120.0,
    unit: "seconds",
    window_secs: 3600,
    min_samples: 1,
    pending_for: "15m",
    summary: "Provisioning (payment to active workspace) took more than 120 s at the median over \
              the last hour.",
    runbook: "Run `onboard jobs stats`: `provision_tenant` jobs that wait call for more workers \
              (`onboard worker`, `WORKER_CONCURRENCY`), jobs that retry point at a slow vector \
              store or embeddings API (`GET /health`); tenants stuck past \
              `PROVISIONING_TIMEOUT_SECONDS` go `failed` and are restarted with `onboard tenants \
              retry <tenant_id>`.",
};

/// Of the tenants whose payment was confirmed in the last 7 days, fewer than 40% ran a first
/// query; judged from 10 such tenants on.
pub const ACTIVATION_RATE: Rule = Rule {
    name: "OnboardActivationRateLow",
    severity: "warning",
    comparison: Comparison::Below,
    threshold: 0.4,
    unit: "ratio",
    window_secs: 7 * 86_400,
    min_samples: 10,
    pending_for: "1h",
    summary: "Fewer than 40% of the tenants who paid in the last 7 days ran a first query.",
    runbook: "`GET /activation/metrics` shows the funnel step where recent tenants stop and `GET \
              /activation/at-risk` lists who is stuck with a suggested intervention; contact \
              them, and compare the wizard variants in the metrics before changing \
              `WIZARD_SPLIT`.",
};

/// Every rule, in the order of the rules file and of `GET /admin/alerts`.
pub const RULES: [Rule; 5] = [
    QUEUE_BACKLOG,
    PROVISIONING_SUCCESS,
    WEBHOOK_LATENCY,
    PROVISIONING_SLOW,
    ACTIVATION_RATE,
];

/// What was measured for a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// In the rule's unit; `None` when there was nothing to measure (no run, no event).
    pub value: Option<f64>,
    /// The observations the value rests on.
    pub samples: i64,
    /// The same in words, for the operator.
    pub basis: String,
}

/// Whether a rule's condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Ok,
}

/// One rule, evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Alert {
    /// The Prometheus alert name (`deploy/prometheus/alerts.yml`).
    #[schema(example = "OnboardJobQueueBacklog")]
    pub name: &'static str,
    pub state: AlertState,
    /// The measured value in `unit`; null when there was nothing to measure.
    pub value: Option<f64>,
    /// In `unit`: the queue and the two durations fire strictly above it, the two ratios
    /// strictly below it.
    pub threshold: f64,
    /// `jobs`, `ratio` (0..1) or `seconds`.
    pub unit: &'static str,
    /// `critical` or `warning`.
    pub severity: &'static str,
    /// What the value rests on, in words (e.g. "19 of 20 provisioning runs … succeeded").
    pub basis: String,
    /// What is wrong when it fires, in one line.
    pub summary: &'static str,
    /// What to check and do, naming the commands and endpoints to use.
    pub runbook: &'static str,
}

impl Rule {
    /// Whether `value` is on the firing side of the threshold.
    pub fn breached(&self, value: f64) -> bool {
        match self.comparison {
            Comparison::Above => value > self.threshold,
            Comparison::Below => value < self.threshold,
        }
    }

    /// The rule's verdict on a measurement: firing when there are enough observations and the
    /// value is past the threshold.
    pub fn judge(&self, m: Measured) -> Alert {
        let firing =
            m.samples >= self.min_samples && m.value.is_some_and(|value| self.breached(value));
        Alert {
            name: self.name,
            state: if firing {
                AlertState::Firing
            } else {
                AlertState::Ok
            },
            value: m.value,
            threshold: self.threshold,
            unit: self.unit,
            severity: self.severity,
            basis: m.basis,
            summary: self.summary,
            runbook: self.runbook,
        }
    }

    /// The start of the rule's window at `now` (ms).
    fn since(&self, now: i64) -> i64 {
        now - self.window_secs * 1000
    }
}

/// The `percent` quantile (nearest rank, as `/activation/metrics` computes its own) of the
/// values `values_sql` selects as `d` with `$1` its window's start; and how many values there
/// were. Ranked in the database, so only one row comes back however many there are.
const NEAREST_RANK_SQL: &str = "SELECT d, n FROM (SELECT d, ROW_NUMBER() OVER (ORDER BY d) AS rn, \
     COUNT(*) OVER () AS n FROM ({values}) v) r WHERE rn = ($2 * n + 99) / 100";

/// Stripe `created` (seconds) → our `received_at` (ms), in ms; never negative, whatever the
/// clocks say.
const STRIPE_DELAYS_SQL: &str = "SELECT CASE WHEN received_at > created * 1000 \
     THEN received_at - created * 1000 ELSE 0 END AS d FROM webhook_events WHERE received_at >= $1";

/// Payment confirmed → tenant active, in ms, for tenants that became active in the window.
const PROVISIONING_DURATIONS_SQL: &str = "SELECT provisioned_at - paid_at AS d FROM tenant_activation \
     WHERE provisioned_at >= $1 AND paid_at IS NOT NULL";

impl Store {
    /// Evaluates every rule of [`RULES`] as of `now` (ms), in their order.
    #[tracing::instrument(skip_all)]
    pub async fn evaluate_alerts(&self, now: i64) -> StoreResult<Vec<Alert>> {
        Ok(vec![
            QUEUE_BACKLOG.judge(self.measure_queue().await?),
            PROVISIONING_SUCCESS.judge(
                self.measure_provisioning_success(PROVISIONING_SUCCESS.since(now))
                    .await?,
            ),
            WEBHOOK_LATENCY.judge(
                self.measure_webhook_latency(WEBHOOK_LATENCY.since(now))
                    .await?,
            ),
            PROVISIONING_SLOW.judge(
                self.measure_provisioning_p50(PROVISIONING_SLOW.since(now))
                    .await?,
            ),
            ACTIVATION_RATE.judge(self.measure_activation(ACTIVATION_RATE.since(now)).await?),
        ])
    }

    /// Jobs not yet done or dead (queued, waiting out a backoff, scheduled or running): what
    /// `onboard_jobs_queued` exports, summed over kinds.
    async fn measure_queue(&self) -> StoreResult<Measured> {
        let n = self.unfinished_jobs(None).await?;
        Ok(Measured {
            value: Some(n as f64),
            samples: n,
            basis: format!("{n} jobs queued or running"),
        })
    }

    /// Provisioning runs that ended since `since`: a tenant leaving `provisioning` for `active`
    /// succeeded, for `failed` failed (its job dead-lettered, or the sweeper's timeout). Read
    /// from the status history, which the database writes with every status change, so it
    /// counts the runs of every process. A tenant that failed and then succeeded on a retry
    /// counts one of each, as the Prometheus counters do.
    async fn measure_provisioning_success(&self, since: i64) -> StoreResult<Measured> {
        let (succeeded, failed): (i64, i64) = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT COUNT(CASE WHEN to_status = 'active' THEN 1 END), \
                 COUNT(CASE WHEN to_status = 'failed' THEN 1 END) \
                 FROM tenant_status_history WHERE from_status = 'provisioning' AND at >= $1",
            )
            .bind(since)
            .fetch_one(pool)
            .await?
        });
        let runs = succeeded + failed;
        Ok(Measured {
            value: (runs > 0).then(|| succeeded as f64 / runs as f64),
            samples: runs,
            basis: if runs == 0 {
                "no provisioning run ended in the last hour".into()
            } else {
                format!(
                    "{succeeded} of {runs} provisioning runs that ended in the last hour succeeded"
                )
            },
        })
    }

    /// The p95 delay of the Stripe events received since `since`.
    async fn measure_webhook_latency(&self, since: i64) -> StoreResult<Measured> {
        let (p95, n) = self.nearest_rank(STRIPE_DELAYS_SQL, since, 95).await?;
        Ok(Measured {
            value: p95.map(|ms| ms as f64 / 1000.0),
            samples: n,
            basis: if n == 0 {
                "no Stripe event received in the last 5 minutes".into()
            } else {
                format!("p95 of the delays of {n} Stripe events received in the last 5 minutes")
            },
        })
    }

    /// The median provisioning time of the tenants that became active since `since`.
    async fn measure_provisioning_p50(&self, since: i64) -> StoreResult<Measured> {
        let (p50, n) = self
            .nearest_rank(PROVISIONING_DURATIONS_SQL, since, 50)
            .await?;
        Ok(Measured {
            value: p50.map(|ms| ms as f64 / 1000.0),
            samples: n,
            basis: if n == 0 {
                "no paid tenant became active in the last hour".into()
            } else {
                format!("median of {n} paid tenants that became active in the last hour")
            },
        })
    }

    /// Of the tenants whose payment was confirmed since `since`, the share that ran a first
    /// query (`onboard_activation_rate_7d` and its denominator).
    async fn measure_activation(&self, since: i64) -> StoreResult<Measured> {
        let (paid, activated): (i64, i64) = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT COUNT(*), COUNT(first_query_at) FROM tenant_activation WHERE paid_at >= $1",
            )
            .bind(since)
            .fetch_one(pool)
            .await?
        });
        let mut basis =
            format!("{activated} of {paid} tenants who paid in the last 7 days ran a first query");
        if paid < ACTIVATION_RATE.min_samples {
            basis.push_str(&format!(
                " (judged from {} tenants on)",
                ACTIVATION_RATE.min_samples
            ));
        }
        Ok(Measured {
            value: (paid > 0).then(|| activated as f64 / paid as f64),
            samples: paid,
            basis,
        })
    }

    /// Runs [`NEAREST_RANK_SQL`] over `values_sql`: the value at `percent` and the count.
    async fn nearest_rank(
        &self,
        values_sql: &str,
        since: i64,
        percent: i64,
    ) -> StoreResult<(Option<i64>, i64)> {
        let sql = NEAREST_RANK_SQL.replace("{values}", values_sql);
        let row: Option<(i64, i64)> = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(since)
                .bind(percent)
                .fetch_optional(pool)
                .await?
        });
        Ok(match row {
            Some((value, n)) => (Some(value), n),
            None => (None, 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(value: Option<f64>, samples: i64) -> Measured {
        Measured {
            value,
            samples,
            basis: String::new(),
        }
    }

    #[test]
    fn thresholds_are_strict_on_either_side() {
        let at = |rule: &Rule, v: f64, n: i64| rule.judge(measured(Some(v), n)).state;
        assert_eq!(at(&QUEUE_BACKLOG, 100.0, 100), AlertState::Ok);
        assert_eq!(at(&QUEUE_BACKLOG, 101.0, 101), AlertState::Firing);
        assert_eq!(at(&PROVISIONING_SUCCESS, 0.95, 20), AlertState::Ok);
        assert_eq!(at(&PROVISIONING_SUCCESS, 0.94, 50), AlertState::Firing);
    }

    #[test]
    fn too_few_observations_or_none_never_fire() {
        let state = |rule: &Rule, v: Option<f64>, n: i64| rule.judge(measured(v, n)).state;
        assert_eq!(state(&ACTIVATION_RATE, Some(0.0), 9), AlertState::Ok);
        assert_eq!(state(&ACTIVATION_RATE, Some(0.0), 10), AlertState::Firing);
        assert_eq!(state(&PROVISIONING_SUCCESS, None, 0), AlertState::Ok);
        assert_eq!(state(&WEBHOOK_LATENCY, None, 0), AlertState::Ok);
    }

    #[test]
    fn rule_names_are_unique() {
        let mut names: Vec<_> = RULES.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RULES.len());
    }
}
