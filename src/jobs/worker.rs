//! The worker loop: claim, run (panic-safe, outside any transaction), complete or fail. Also
//! keeps each registered periodic job queued, so periodic work runs whether or not anyone is
//! looking; their dedupe keys keep one instance queued across all processes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::task::Registry;
use super::{Done, Failed, Job, JobRef};
use crate::metrics::Metrics;
use crate::store::{Store, StoreResult, now_ms};

/// How often finished jobs older than [`KEEP_FINISHED_MS`] are deleted, per process.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long a finished job stays listed (for `onboard jobs stats` and investigations).
const KEEP_FINISHED_MS: i64 = 7 * 86_400_000;

/// Everything the engine needs to run jobs: the handlers' context, where jobs are stored, which
/// handler runs which kind, and how to wait, lease and back off.
pub struct Worker<C> {
    /// Handed to every handler.
    pub ctx: C,
    pub store: Store,
    pub registry: Arc<Registry<C>>,
    /// Notified by an enqueue in this process: wakes one idle loop at once.
    pub ready: Arc<Notify>,
    pub lease_ms: i64,
    pub backoff_base_ms: i64,
    pub metrics: Arc<Metrics>,
}

impl<C: Clone> Clone for Worker<C> {
    fn clone(&self) -> Self {
        Self {
            ctx: self.ctx.clone(),
            store: self.store.clone(),
            registry: self.registry.clone(),
            ready: self.ready.clone(),
            lease_ms: self.lease_ms,
            backoff_base_ms: self.backoff_base_ms,
            metrics: self.metrics.clone(),
        }
    }
}

impl<C: Clone + Send + Sync + 'static> Worker<C> {
    /// Runs `concurrency` job loops until `stop` turns true.
    pub async fn run(self, concurrency: usize, mut stop: watch::Receiver<bool>) {
        let worker_id = format!("{}-{}", hostname(), ulid::Ulid::new());
        tracing::info!(worker = %worker_id, concurrency, "worker started");
        let mut loops = tokio::task::JoinSet::new();
        for i in 0..concurrency.max(1) {
            let (me, id, stop) = (self.clone(), format!("{worker_id}/{i}"), stop.clone());
            loops.spawn(async move { me.job_loop(id, stop).await });
        }
        self.housekeeping(true).await;
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut last_prune = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let prune = last_prune.elapsed() >= PRUNE_EVERY;
                    if prune {
                        last_prune = tokio::time::Instant::now();
                    }
                    self.housekeeping(prune).await;
                }
                _ = stop.changed() => break,
            }
        }
        while loops.join_next().await.is_some() {}
        tracing::info!(worker = %worker_id, "worker stopped");
    }

    /// Keeps every periodic job queued, buries jobs whose every attempt crashed its worker,
    /// and, when `prune`, deletes old finished jobs.
    async fn housekeeping(&self, prune: bool) {
        if let Err(e) = self.ensure_periodic().await {
            tracing::warn!(error = %e, "could not queue the periodic jobs; retrying shortly");
        }
        if let Err(e) = self.bury_exhausted().await {
            tracing::warn!(error = %e, "could not look for jobs that used up their attempts");
        }
        if prune && let Err(e) = self.store.prune_jobs(now_ms() - KEEP_FINISHED_MS).await {
            tracing::warn!(error = %e, "could not delete old finished jobs");
        }
    }

    /// Marks dead the jobs whose last attempt's worker died (see [`Store::bury_exhausted`]) and
    /// runs their dead hooks; returns how many.
    pub async fn bury_exhausted(&self) -> StoreResult<usize> {
        let buried = self.store.bury_exhausted().await?;
        for job in &buried {
            self.metrics.jobs_dead.inc();
            tracing::error!(job = %job.id, kind = %job.kind, attempts = job.attempts, "job dead: its worker stopped during every attempt");
            if let Some(handler) = self.registry.get(&job.kind) {
                handler
                    .on_dead(
                        &self.ctx,
                        job,
                        "the worker running its last attempt stopped before finishing (its lease expired)",
                    )
                    .await;
            }
        }
        Ok(buried.len())
    }

    async fn ensure_periodic(&self) -> StoreResult<()> {
        let mut tx = self.store.begin().await?;
        for handler in self.registry.periodic_handlers() {
            if let Some(job) = handler.next_run(now_ms()) {
                tx.enqueue(job).await?;
            }
        }
        tx.commit().await
    }

    async fn job_loop(self, worker: String, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            // Register for the wake-up before looking for work, so an enqueue that lands
            // between an empty claim and the wait is not missed (which would cost a full poll
            // interval).
            let woken = self.ready.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.store.claim_job(&worker, self.lease_ms).await {
                Ok(Some(job)) => self.run_one(&worker, job).await,
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
    /// While it runs, its lease is renewed every third of the lease, so a slow but live attempt
    /// is never handed to a second worker.
    pub async fn run_one(&self, worker: &str, job: Job) {
        let Some(handler) = self.registry.get(&job.kind) else {
            let error = format!("no handler is registered for job kind {}", job.kind);
            self.record_failure(worker, &job, &error).await;
            return;
        };
        let every_ms = handler.every_ms;
        let (me, task_job, task_worker) = (self.clone(), job.clone(), worker.to_string());
        // A panic inside a handler is caught here and counts as a failed attempt.
        let mut task = tokio::spawn(async move {
            let handler = me
                .registry
                .get(&task_job.kind)
                .expect("the handler was found before spawning");
            let owner = JobRef {
                id: &task_job.id,
                worker: &task_worker,
            };
            handler.run(&me.ctx, &task_job, owner).await
        });
        let every = Duration::from_millis((self.lease_ms / 3).max(1) as u64);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let outcome = loop {
            tokio::select! {
                outcome = &mut task => break outcome,
                _ = renew.tick() => match self.store.renew_job(&job, worker, self.lease_ms).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(job = %job.id, kind = %job.kind, "lost the job's lease while running it; its result will not be recorded"),
                    Err(e) => tracing::warn!(error = %e, job = %job.id, "could not renew the job's lease; retrying"),
                },
            }
        };
        let result = match outcome {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(format!("job panicked: {e}")),
            Err(e) => Err(format!("job task failed: {e}")),
        };
        match result {
            Ok(done) => {
                self.metrics.jobs_succeeded.inc();
                if done == Done::ByWorker {
                    match self.store.complete_job(&job, worker).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(job = %job.id, kind = %job.kind, "finished a job this worker no longer owned; its owner records the outcome")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, job = %job.id, "could not mark job done; it will run again")
                        }
                    }
                }
                if let Some(every) = every_ms
                    && let Some(next) = handler.next_run(now_ms() + every)
                    && let Err(e) = self.store.enqueue(next).await
                {
                    tracing::warn!(error = %e, kind = %job.kind, "could not queue the next periodic run");
                }
            }
            Err(error) => self.record_failure(worker, &job, &error).await,
        }
    }

    /// Records a failed attempt by `worker`; on the last one the job is dead and its handler's
    /// dead hook runs, only if `worker` still owned the job (public for tests).
    pub async fn record_failure(&self, worker: &str, job: &Job, error: &str) {
        self.metrics.jobs_failed.inc();
        tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempts, %error, "job failed");
        match self
            .store
            .fail_job(job, worker, error, self.backoff_base_ms)
            .await
        {
            Ok(Failed::Dead) => {
                self.metrics.jobs_dead.inc();
                tracing::error!(job = %job.id, kind = %job.kind, %error, "job dead after its last attempt");
                if let Some(handler) = self.registry.get(&job.kind) {
                    handler.on_dead(&self.ctx, job, error).await;
                }
            }
            Ok(Failed::Retrying) => {}
            Ok(Failed::NotOwner) => {
                tracing::warn!(job = %job.id, kind = %job.kind, "a failed attempt of a job this worker no longer owned; its owner records the outcome")
            }
            Err(e) => tracing::warn!(error = %e, "could not record the job failure"),
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| format!("pid{}", std::process::id()))
}
