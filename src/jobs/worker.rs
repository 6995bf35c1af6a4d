//! The worker loop: claim, run (panic-safe, outside any transaction), complete or fail. Also
//! schedules the periodic jobs (provisioning sweeper, pruning) so they run whether or not anyone
//! is looking; their dedupe keys keep one instance queued across all processes.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Job, JobKind, NewJob};
use crate::app::AppState;
use crate::domain::TenantId;
use crate::metrics::Counters;
use crate::store::now_ms;

/// How often the sweeper looks for stuck tenants.
pub const SWEEP_EVERY_MS: i64 = 5_000;
const PRUNE_EVERY_MS: i64 = 3_600_000;

#[derive(Serialize, Deserialize)]
struct EmailJob {
    email_id: String,
}

#[derive(Serialize, Deserialize)]
struct Empty {}

/// The delivery job of one outbox email.
pub fn send_email_job(email_id: &str) -> NewJob {
    NewJob::new(
        JobKind::SendEmail,
        &EmailJob {
            email_id: email_id.to_string(),
        },
        8,
    )
    .dedupe(format!("email:{email_id}"))
}

fn periodic(kind: JobKind, run_at: i64) -> NewJob {
    NewJob::new(kind, &Empty {}, 3)
        .dedupe(format!("periodic:{}", kind.as_str()))
        .at(run_at)
}

/// Runs `concurrency` job loops until `stop` turns true.
pub async fn run(app: AppState, concurrency: usize, mut stop: watch::Receiver<bool>) {
    let worker_id = format!("{}-{}", hostname(), ulid::Ulid::new());
    tracing::info!(worker = %worker_id, concurrency, "worker started");
    let mut loops = tokio::task::JoinSet::new();
    for i in 0..concurrency.max(1) {
        let (app, id, stop) = (app.clone(), format!("{worker_id}/{i}"), stop.clone());
        loops.spawn(async move { job_loop(app, id, stop).await });
    }
    let _ = ensure_periodic(&app).await;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => { let _ = ensure_periodic(&app).await; }
            _ = stop.changed() => break,
        }
    }
    while loops.join_next().await.is_some() {}
    tracing::info!(worker = %worker_id, "worker stopped");
}

async fn ensure_periodic(app: &AppState) -> crate::store::StoreResult<()> {
    let mut tx = app.store.begin().await?;
    tx.enqueue(periodic(JobKind::SweepProvisioning, now_ms()))
        .await?;
    tx.enqueue(periodic(JobKind::Prune, now_ms())).await?;
    tx.commit().await
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| format!("pid{}", std::process::id()))
}

async fn job_loop(app: AppState, worker: String, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        // Register for the wake-up before looking for work, so an enqueue that lands between
        // an empty claim and the wait is not missed (which would cost a full poll interval).
        let woken = app.jobs_ready.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match app
            .store
            .claim_job(&worker, app.settings.job_lease_seconds as i64 * 1000)
            .await
        {
            Ok(Some(job)) => run_one(&app, &worker, job).await,
            Ok(None) => {
                // Idle: wake on an in-process enqueue, or poll for other processes' jobs.
                tokio::select! {
                    _ = woken => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.changed() => return,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not claim a job; retrying shortly");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Runs one claimed job to completion or failure (public for tests that drive jobs by hand).
pub async fn run_one(app: &AppState, worker: &str, job: Job) {
    let task_app = app.clone();
    let task_job = job.clone();
    let task_worker = worker.to_string();
    // A panic inside a handler is caught here and treated as a failed attempt.
    let outcome =
        tokio::spawn(async move { dispatch(&task_app, &task_job, &task_worker).await }).await;
    let result = match outcome {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(format!("job panicked: {e}")),
        Err(e) => Err(format!("job task failed: {e}")),
    };
    let store = &app.store;
    match result {
        Ok(completed) => {
            Counters::inc(&app.metrics.jobs_succeeded);
            if completed == Completed::ByWorker
                && let Err(e) = store.complete_job(&job, worker).await
            {
                tracing::warn!(error = %e, job = %job.id, "could not mark job done; it will run again");
            }
            if let Some(kind @ (JobKind::SweepProvisioning | JobKind::Prune)) =
                JobKind::parse(&job.kind)
            {
                let every = if kind == JobKind::Prune {
                    PRUNE_EVERY_MS
                } else {
                    SWEEP_EVERY_MS
                };
                let _ = store.enqueue(periodic(kind, now_ms() + every)).await;
            }
        }
        Err(error) => {
            Counters::inc(&app.metrics.jobs_failed);
            tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempts, %error, "job failed");
            let base = app.settings.job_backoff_base_ms as i64;
            match store.fail_job(&job, worker, &error, base).await {
                Ok(true) => {
                    Counters::inc(&app.metrics.jobs_dead);
                    tracing::error!(job = %job.id, kind = %job.kind, %error, "job dead after its last attempt");
                    on_dead(app, &job, &error).await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "could not record the job failure"),
            }
        }
    }
}

/// Who marks a successful job done.
#[derive(Debug, PartialEq, Eq)]
enum Completed {
    /// The worker, after the handler returned.
    ByWorker,
    /// The handler, inside its final transaction.
    InHandler,
}

async fn dispatch(app: &AppState, job: &Job, worker: &str) -> Result<Completed, String> {
    match JobKind::parse(&job.kind) {
        Some(JobKind::ProvisionTenant) => {
            let p: crate::provisioning::ProvisionJob = job.payload()?;
            let id = TenantId::parse(&p.tenant_id).ok_or("bad tenant id")?;
            let me = super::JobRef {
                id: &job.id,
                worker,
            };
            // Provisioning completes its own job in its final transaction when it gets there.
            return match crate::provisioning::run(app, &id, Some(me)).await {
                Ok(true) => Ok(Completed::InHandler),
                Ok(false) => Ok(Completed::ByWorker),
                Err(e) => Err(e.to_string()),
            };
        }
        Some(JobKind::StripeEvent) => {
            let p: crate::billing::events::EventJob = job.payload()?;
            crate::billing::events::process(app, &p.event_id)
                .await
                .map_err(|e| e.to_string())?;
        }
        Some(JobKind::SendEmail) => {
            let p: EmailJob = job.payload()?;
            app.mailer
                .deliver(&app.store, &p.email_id)
                .await
                .map_err(|e| e.to_string())?;
        }
        Some(JobKind::SweepProvisioning) => {
            crate::provisioning::sweep(app)
                .await
                .map_err(|e| e.to_string())?;
        }
        Some(JobKind::Prune) => {
            let day = 86_400_000;
            let store = &app.store;
            store
                .prune_rate_limits(now_ms() - 2 * 3_600_000)
                .await
                .map_err(|e| e.to_string())?;
            store
                .prune_jobs(now_ms() - 7 * day)
                .await
                .map_err(|e| e.to_string())?;
            store
                .prune_login_failures(now_ms() - day)
                .await
                .map_err(|e| e.to_string())?;
            store
                .prune_sessions(now_ms() - day)
                .await
                .map_err(|e| e.to_string())?;
        }
        Some(JobKind::PurgeVectors) => {
            let p: crate::workspace::documents::PurgeJob = job.payload()?;
            app.vectors
                .delete(&p.namespace, &p.ids)
                .await
                .map_err(|e| e.to_string())?;
        }
        None => return Err(format!("unknown job kind {}", job.kind)),
    }
    Ok(Completed::ByWorker)
}

async fn on_dead(app: &AppState, job: &Job, error: &str) {
    if JobKind::parse(&job.kind) == Some(JobKind::ProvisionTenant)
        && let Ok(p) = job.payload::<crate::provisioning::ProvisionJob>()
        && let Some(id) = TenantId::parse(&p.tenant_id)
        && let Err(e) = crate::provisioning::give_up(app, &id, error, job.attempts).await
    {
        tracing::error!(error = %e, "could not mark the tenant failed");
    }
}
