//! The one table of job kinds: which handler runs each kind the application enqueues, and which
//! periodic jobs run and how often. Adding a job kind means implementing `jobs::Task` in the
//! module that owns the work and adding one line here; the engine (`jobs`) never changes.

use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::app::AppState;
use crate::jobs::worker::Worker;
use crate::jobs::{Done, JobKind, JobRef, Registry, Task};
use crate::store::now_ms;
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
