//! The one table of job kinds: which handler runs each kind the application enqueues, and which
//! periodic jobs run and how often. Adding a job kind means implementing `jobs::Task` in the
//! module that owns the work and adding one line here; the engine (`jobs`) never changes.
//!
//! Work that joins two feature modules, which may not import each other, is declared here: the
//! daily digest of stuck customers (analytics finds and flags them, email writes to the
//! operator).

use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::app::AppState;
use crate::jobs::worker::Worker;
use crate::jobs::{Done, JobKind, JobRef, Registry, Task};
use crate::store::{StoreResult, Tx, ms_to_datetime, now_ms};
use crate::{analytics, audit, billing, email, provisioning, workspace};

/// How often stale rate-limit counters are dropped.
const PRUNE_RATE_LIMITS_EVERY_MS: i64 = 3_600_000;

/// Every job kind with its handler.
pub fn registry() -> Registry<AppState> {
    Registry::new()
        .task::<provisioning::ProvisionJob>()
        .task::<billing::events::EventJob>()
        .task::<email::Delivery>()
        .task::<workspace::documents::PurgeJob>()
        .periodic::<provisioning::Sweep>(provisioning::SWEEP_EVERY_MS)
        .periodic::<provisioning::deprovision::Deprovision>(
            provisioning::deprovision::DEPROVISION_EVERY_MS,
        )
        .periodic::<billing::lifecycle::Sweep>(billing::lifecycle::SWEEP_EVERY_MS)
        .periodic::<workspace::sessions::Prune>(workspace::sessions::PRUNE_EVERY_MS)
        .periodic::<PruneRateLimits>(PRUNE_RATE_LIMITS_EVERY_MS)
        .periodic::<analytics::retention::Retention>(analytics::retention::RETENTION_EVERY_MS)
        .periodic::<audit::Prune>(audit::PRUNE_EVERY_MS)
        .periodic::<AtRiskDigest>(AT_RISK_DIGEST_CHECK_EVERY_MS)
}

/// Every job kind's name, sorted: the `/metrics` queue gauges report each, 0 when it has no job.
pub fn kind_names() -> &'static [&'static str] {
    static NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
        let mut names: Vec<&'static str> = registry().kinds().map(JobKind::as_str).collect();
        names.sort_unstable();
        names
    });
    &NAMES
}

/// The job engine over this application's state and [`registry`].
pub fn worker(app: &AppState) -> Worker<AppState> {
    Worker {
        ctx: app.clone(),
        store: app.store.clone(),
        registry: Arc::new(registry()),
        ready: app.jobs_ready.clone(),
        lease_ms: app.settings.job_lease_seconds as i64 * 1000,
        backoff_base_ms: app.settings.job_backoff_base_ms as i64,
        metrics: app.metrics.clone(),
    }
}

/// Runs `concurrency` job loops over `app` until `stop` turns true.
pub async fn run_worker(app: AppState, concurrency: usize, stop: watch::Receiver<bool>) {
    worker(&app).run(concurrency, stop).await
}

/// Periodic: drops rate-limit counters (signup throttling) whose window closed two hours ago.
/// The counters are a store facility with no feature module of their own, so their pruning is
/// declared here.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PruneRateLimits {}

impl Task for PruneRateLimits {
    type Context = AppState;
    const KIND: JobKind = JobKind::new("prune_rate_limits", 0);

    async fn run(&self, app: &AppState, _: JobRef<'_>) -> Result<Done, String> {
        app.store
            .prune_rate_limits(now_ms() - 2 * 3_600_000)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Done::ByWorker)
    }
}

/// How often the digest of stuck customers looks whether the day's digest is due: it goes out
/// at most this long after `AT_RISK_DIGEST_HOUR`.
pub const AT_RISK_DIGEST_CHECK_EVERY_MS: i64 = 5 * 60_000;

/// Periodic: once a day, from `AT_RISK_DIGEST_HOUR` (UTC), emails `OPERATOR_EMAIL` the customers
/// newly found stuck and marks them "needs a human" (see [`daily_at_risk_digest`]).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AtRiskDigest {}

impl Task for AtRiskDigest {
    type Context = AppState;
    const KIND: JobKind = JobKind::new("at_risk_digest", 0);

    async fn run(&self, app: &AppState, _: JobRef<'_>) -> Result<Done, String> {
        daily_at_risk_digest(app, now_ms())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Done::ByWorker)
    }
}

/// What one digest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestReport {
    /// Tenants newly marked "needs a human" (each in the email).
    pub flagged: usize,
    /// The queued email; `None` when nobody was newly stuck (then nothing is sent).
    pub email_id: Option<String>,
}

/// The digest day `now` (Unix ms) belongs to: the UTC date `hour` hours earlier, so a day's
/// digest is due from `hour` o'clock until the same hour the next day.
pub fn digest_day(now: i64, hour: u32) -> String {
    (ms_to_datetime(now) - chrono::Duration::hours(i64::from(hour)))
        .date_naive()
        .to_string()
}

/// The day's digest, unless it was sent already (by any process): `None` then. The day is
/// claimed in the transaction that flags the tenants and queues the email, so a failure
/// leaves it due.
pub async fn daily_at_risk_digest(app: &AppState, now: i64) -> StoreResult<Option<DigestReport>> {
    let day = digest_day(now, app.settings.at_risk_digest_hour);
    let mut tx = app.store.begin().await?;
    if !tx.claim_at_risk_digest(&day, now).await? {
        return Ok(None);
    }
    let report = digest_in(app, &mut tx, now).await?;
    tx.record_at_risk_digest(&day, report.flagged, report.email_id.as_deref())
        .await?;
    tx.commit().await?;
    if report.email_id.is_some() {
        app.jobs_ready.notify_one();
        tracing::info!(flagged = report.flagged, %day, "at-risk digest queued");
    }
    Ok(Some(report))
}

/// A digest now, whatever the day: flags the tenants stuck at `now` that no digest told the
/// operator of yet (once per tenant and reason) and queues one email naming them.
pub async fn at_risk_digest(app: &AppState, now: i64) -> StoreResult<DigestReport> {
    let mut tx = app.store.begin().await?;
    let report = digest_in(app, &mut tx, now).await?;
    tx.commit().await?;
    if report.email_id.is_some() {
        app.jobs_ready.notify_one();
    }
    Ok(report)
}

async fn digest_in(app: &AppState, tx: &mut Tx, now: i64) -> StoreResult<DigestReport> {
    let flagged = tx.flag_new_at_risk(now).await?;
    if flagged.is_empty() {
        return Ok(DigestReport {
            flagged: 0,
            email_id: None,
        });
    }
    let entries: Vec<email::templates::DigestEntry> = flagged
        .iter()
        .map(|e| email::templates::DigestEntry {
            tenant_id: e.tenant_id.clone(),
            company_name: e.company_name.clone(),
            email: e.email.clone(),
            since: ms_to_datetime(e.since_ms)
                .format("%-d %B %Y at %H:%M UTC")
                .to_string(),
            reason: e.reason_text.clone(),
            suggestion: e.suggested_intervention.clone(),
        })
        .collect();
    let email = email::templates::at_risk_digest(
        app.mailer.brand(),
        &app.settings.operator_email,
        &entries,
    );
    let email_id = tx
        .queue_email(&email, &app.settings.sendgrid_from_email)
        .await?;
    Ok(DigestReport {
        flagged: flagged.len(),
        email_id,
    })
}

#[cfg(test)]
mod tests {
    use super::digest_day;

    fn ms(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn a_digest_day_runs_from_the_configured_hour_to_the_same_hour_next_day() {
        assert_eq!(digest_day(ms("2026-12-03T07:59:59Z"), 8), "2026-12-02");
        assert_eq!(digest_day(ms("2026-12-03T08:00:00Z"), 8), "2026-12-03");
        assert_eq!(digest_day(ms("2026-12-04T07:59:59Z"), 8), "2026-12-03");
        assert_eq!(digest_day(ms("2026-12-03T00:00:00Z"), 0), "2026-12-03");
        assert_eq!(digest_day(ms("2026-12-03T22:59:59Z"), 23), "2026-12-02");
    }
}
