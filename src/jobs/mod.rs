//! The durable job engine: jobs live in the database, are enqueued inside the caller's
//! transaction, claimed with a lease (`locked_until`; Postgres `FOR UPDATE SKIP LOCKED`, SQLite
//! one atomic `UPDATE … RETURNING`), run outside any transaction, retried with exponential
//! backoff and jitter, then dead-lettered with the last error. A crashed worker's lease expires
//! and the job is taken again, so handlers are idempotent.
//!
//! The engine knows job kinds only as data ([`JobKind`]). Each module that owns some work
//! implements [`Task`] for its payload and owns the constructor of its [`NewJob`]; the
//! application maps kinds to handlers in one [`Registry`] (`crate::tasks`).
//!
//! Must not import `app`, `http`, `provisioning`, `billing`, `email`, `workspace` or `search`:
//! only `store` and `metrics` below it (checked by `tests/layout.rs`).

pub mod task;
pub mod worker;

use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{Store, StoreError, StoreResult, Tx, now_ms};

use crate::{with_conn, with_pool, with_reader};
pub use task::{BoxFuture, Done, JobKind, Registry, Task};

/// A job to enqueue.
pub struct NewJob {
    pub kind: JobKind,
    pub payload: String,
    pub max_attempts: u32,
    pub run_at: i64,
    /// At most one queued-or-running job per key; a second enqueue is a no-op.
    pub dedupe_key: Option<String>,
}

impl NewJob {
    pub fn new(kind: JobKind, payload: &impl Serialize, max_attempts: u32) -> Self {
        Self {
            kind,
            payload: serde_json::to_string(payload).expect("job payloads serialize"),
            max_attempts: max_attempts.max(1),
            run_at: now_ms(),
            dedupe_key: None,
        }
    }

    pub fn dedupe(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    pub fn at(mut self, run_at: i64) -> Self {
        self.run_at = run_at;
        self
    }
}

/// A claimed job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub payload: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub dedupe_key: Option<String>,
}

impl Job {
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.payload).map_err(|e| format!("bad {} payload: {e}", self.kind))
    }

    /// Whether a failure now is final.
    pub fn is_last_attempt(&self) -> bool {
        self.attempts >= self.max_attempts
    }
}

/// One row of `onboard jobs stats`.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct JobStats {
    pub kind: String,
    pub queued: i64,
    pub running: i64,
    /// Queued again after at least one failed attempt.
    pub retrying: i64,
    pub dead: i64,
    pub done: i64,
    /// Age in seconds of the oldest job waiting to run, if any.
    pub oldest_waiting_secs: Option<i64>,
}

/// One kind's unfinished jobs (the `/metrics` queue gauges).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QueueDepth {
    pub kind: String,
    /// Jobs queued or running: not yet done or dead (scheduled ones included).
    pub queued: i64,
    /// When the longest-waiting due one became due (ms): its `run_at`, or its creation when
    /// it was enqueued late. None when none is due.
    pub oldest_due_at: Option<i64>,
}

impl QueueDepth {
    /// Seconds the longest-waiting due job has waited at `now` (ms); 0 when none is due. A job
    /// scheduled for later (a periodic run, a retry's backoff) has not started waiting.
    pub fn oldest_age_seconds(&self, now: i64) -> f64 {
        self.oldest_due_at
            .map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0)
    }
}

/// A listed job (operators).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct JobRow {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub last_error: Option<String>,
    pub run_at: i64,
}

/// Delay before attempt `attempt + 1`: 1 s, 2 s, 4 s … capped at 5 min, ±25 % jitter.
pub fn backoff_ms(attempt: i64, base_ms: i64) -> i64 {
    let exp = base_ms.saturating_mul(1i64 << attempt.clamp(0, 20).saturating_sub(1));
    let capped = exp.min(300_000);
    let jitter = rand::rng().random_range(-(capped / 4)..=(capped / 4).max(0));
    (capped + jitter).max(1)
}

/// Marks a running job done, if `worker` still holds it.
const COMPLETE_JOB_SQL: &str = "UPDATE jobs SET status = 'done', finished_at = $1, updated_at = $1, \
     locked_until = NULL WHERE id = $2 AND locked_by = $3 AND status = 'running'";

/// The job a handler runs as, so it can complete the job inside its own final transaction
/// (one write fewer on the critical path; the worker then leaves it alone).
#[derive(Debug, Clone, Copy)]
pub struct JobRef<'a> {
    pub id: &'a str,
    pub worker: &'a str,
}

/// What recording a failed attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Queued again, after a backoff.
    Retrying,
    /// That was its last attempt: the job is dead.
    Dead,
    /// The caller no longer owned the job (its lease expired and another worker took it, or it
    /// finished): nothing was recorded.
    NotOwner,
}

impl Tx {
    /// Marks the job done in this transaction (see [`JobRef`]); false when the caller no longer
    /// owned it (the work's own records keep a second run from repeating it).
    pub async fn complete_job(&mut self, job: JobRef<'_>) -> StoreResult<bool> {
        let n = with_conn!(self, |conn| {
            sqlx::query(COMPLETE_JOB_SQL)
                .bind(now_ms())
                .bind(job.id)
                .bind(job.worker)
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Enqueues a job in this transaction; returns false when a job with the same dedupe key is
    /// already queued or running.
    pub async fn enqueue(&mut self, job: NewJob) -> StoreResult<bool> {
        let now = now_ms();
        let id = format!("job_{}", ulid::Ulid::new());
        let inserted = with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, dedupe_key, \
                 created_at, updated_at, priority) VALUES ($1, $2, $3, 'queued', 0, $4, $5, $6, $7, $7, $8) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&id)
            .bind(job.kind.as_str())
            .bind(&job.payload)
            .bind(i64::from(job.max_attempts))
            .bind(job.run_at)
            .bind(&job.dedupe_key)
            .bind(now)
            .bind(job.kind.priority)
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// Enqueues a job, or, when one with its dedupe key is already queued (waiting out a
    /// backoff), makes that one due now with a fresh attempt budget: what a retry asks for. A
    /// running job is left to finish.
    pub async fn enqueue_fresh(&mut self, job: NewJob) -> StoreResult<bool> {
        let (key, max_attempts) = (job.dedupe_key.clone(), job.max_attempts);
        if self.enqueue(job).await? {
            return Ok(true);
        }
        let Some(key) = key else {
            return Ok(false);
        };
        let now = now_ms();
        with_conn!(self, |conn| {
            sqlx::query(
                "UPDATE jobs SET attempts = 0, max_attempts = $1, run_at = $2, updated_at = $2 \
                 WHERE dedupe_key = $3 AND status = 'queued'",
            )
            .bind(i64::from(max_attempts))
            .bind(now)
            .bind(&key)
            .execute(&mut *conn)
            .await?;
        });
        Ok(false)
    }
}

impl Store {
    /// Enqueues a job in its own transaction.
    pub async fn enqueue(&self, job: NewJob) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let ok = tx.enqueue(job).await?;
        tx.commit().await?;
        Ok(ok)
    }

    /// Claims the next due job (or one whose lease expired) for `worker`, leased for `lease_ms`
    /// (after which another worker may take it: the owner is presumed dead).
    pub async fn claim_job(&self, worker: &str, lease_ms: i64) -> StoreResult<Option<Job>> {
        let now = now_ms();
        // The same statement on both backends; PostgreSQL also skips rows another worker has
        // locked, SQLite needs nothing more because it has a single writer.
        macro_rules! claim_sql {
            ($lock:literal) => {
                concat!(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_until = $1, ",
                    "locked_by = $2, updated_at = $3 WHERE id = (SELECT id FROM jobs WHERE ",
                    "(status = 'queued' AND run_at <= $3) OR ",
                    "(status = 'running' AND locked_until < $3 AND attempts < max_attempts) ",
                    "ORDER BY priority DESC, run_at LIMIT 1",
                    $lock,
                    ") RETURNING id, kind, payload, attempts, max_attempts, dedupe_key"
                )
            };
        }
        let sql = match self {
            Store::Sqlite(_) => claim_sql!(""),
            Store::Postgres(_) => claim_sql!(" FOR UPDATE SKIP LOCKED"),
        };
        // One statement, one round trip: the claim is its own transaction.
        let job = with_pool!(self, |pool| {
            sqlx::query_as(sql)
                .bind(now + lease_ms)
                .bind(worker)
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        Ok(job)
    }

    /// Marks a job done, if `worker` still holds it; false when it did not.
    pub async fn complete_job(&self, job: &Job, worker: &str) -> StoreResult<bool> {
        let n = with_pool!(self, |pool| {
            sqlx::query(COMPLETE_JOB_SQL)
                .bind(now_ms())
                .bind(&job.id)
                .bind(worker)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Extends the lease of a running job by `lease_ms` from now, if `worker` still holds it;
    /// false when it does not.
    pub async fn renew_job(&self, job: &Job, worker: &str, lease_ms: i64) -> StoreResult<bool> {
        let now = now_ms();
        let n = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE jobs SET locked_until = $1, updated_at = $2 \
                 WHERE id = $3 AND locked_by = $4 AND status = 'running'",
            )
            .bind(now + lease_ms)
            .bind(now)
            .bind(&job.id)
            .bind(worker)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Marks dead the running jobs whose lease expired on their last attempt (their worker died
    /// each time): reclaiming counts as an attempt, so a job that keeps killing its process
    /// ends here instead of looping. Returns them, for their dead hooks.
    pub async fn bury_exhausted(&self) -> StoreResult<Vec<Job>> {
        let now = now_ms();
        Ok(with_pool!(self, |pool| {
            sqlx::query_as(
                "UPDATE jobs SET status = 'dead', locked_until = NULL, finished_at = $1, updated_at = $1, \
                 last_error = 'the worker running its last attempt stopped before finishing (its lease expired)' \
                 WHERE status = 'running' AND locked_until < $1 AND attempts >= max_attempts \
                 RETURNING id, kind, payload, attempts, max_attempts, dedupe_key",
            )
            .bind(now)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Records a failed attempt, if `worker` still holds the job: queued again after a
    /// backoff, or dead after the last attempt.
    pub async fn fail_job(
        &self,
        job: &Job,
        worker: &str,
        error: &str,
        base_backoff_ms: i64,
    ) -> StoreResult<Failed> {
        let now = now_ms();
        let dead = job.is_last_attempt();
        let error: String = error.chars().take(2000).collect();
        let n = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE jobs SET status = $1, last_error = $2, run_at = $3, updated_at = $4, locked_until = NULL, \
                 finished_at = CASE WHEN $1 = 'dead' THEN $4 ELSE NULL END \
                 WHERE id = $5 AND locked_by = $6 AND status = 'running'",
            )
            .bind(if dead { "dead" } else { "queued" })
            .bind(&error)
            .bind(now + if dead { 0 } else { backoff_ms(job.attempts, base_backoff_ms) })
            .bind(now)
            .bind(&job.id)
            .bind(worker)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(match (n, dead) {
            (0, _) => Failed::NotOwner,
            (_, true) => Failed::Dead,
            (_, false) => Failed::Retrying,
        })
    }

    /// One job by id (operators and tests).
    pub async fn job_by_id(&self, id: &str) -> StoreResult<Option<JobRow>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT id, kind, status, attempts, max_attempts, last_error, run_at FROM jobs WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Puts a dead (or waiting) job back in the queue to run now with a fresh attempt budget.
    pub async fn retry_job(&self, id: &str) -> StoreResult<()> {
        let now = now_ms();
        let n = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE jobs SET status = 'queued', attempts = 0, run_at = $1, updated_at = $1, finished_at = NULL \
                 WHERE id = $2 AND status IN ('dead', 'queued')",
            )
            .bind(now)
            .bind(id)
            .execute(pool)
            .await
            .map_err(|e| StoreError::unique(e, "a queued job with the same key"))?
            .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound("dead or queued job"));
        }
        Ok(())
    }

    /// Counts per kind and status.
    pub async fn job_stats(&self) -> StoreResult<Vec<JobStats>> {
        let now = now_ms();
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT kind, \
                 SUM(CASE WHEN status = 'queued' AND attempts = 0 THEN 1 ELSE 0 END) AS queued, \
                 SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running, \
                 SUM(CASE WHEN status = 'queued' AND attempts > 0 THEN 1 ELSE 0 END) AS retrying, \
                 SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END) AS dead, \
                 SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS done, \
                 MAX(CASE WHEN status = 'queued' AND run_at <= $1 THEN ($1 - created_at) / 1000 END) AS oldest_waiting_secs \
                 FROM jobs GROUP BY kind ORDER BY kind",
            )
            .bind(now)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Per kind, the jobs queued or running and when the longest-waiting due one became due
    /// (`now` in ms); kinds with none are absent. Served by the claim index on `status`.
    pub async fn queue_depths(&self, now: i64) -> StoreResult<Vec<QueueDepth>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT kind, COUNT(*) AS queued, \
                 MIN(CASE WHEN run_at <= $1 THEN (CASE WHEN run_at > created_at THEN run_at ELSE created_at END) END) \
                 AS oldest_due_at \
                 FROM jobs WHERE status IN ('queued', 'running') GROUP BY kind ORDER BY kind",
            )
            .bind(now)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Jobs in a status (e.g. `dead`), newest first.
    pub async fn list_jobs(&self, status: &str, limit: i64) -> StoreResult<Vec<JobRow>> {
        self.list_jobs_of(status, None, limit).await
    }

    /// Jobs in a status, of one kind when `kind` is given, most recently changed first.
    pub async fn list_jobs_of(
        &self,
        status: &str,
        kind: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<JobRow>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT id, kind, status, attempts, max_attempts, last_error, run_at FROM jobs \
                 WHERE status = $1 AND ($2 IS NULL OR kind = $2) ORDER BY updated_at DESC LIMIT $3",
            )
            .bind(status)
            .bind(kind)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Jobs not yet finished (queued or running); tests assert this drains to zero.
    pub async fn unfinished_jobs(&self, kind: Option<JobKind>) -> StoreResult<i64> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running') AND ($1 IS NULL OR kind = $1)",
            )
            .bind(kind.map(JobKind::as_str))
            .fetch_one(pool)
            .await?
        }))
    }

    /// Deletes finished jobs older than `before`.
    pub async fn prune_jobs(&self, before: i64) -> StoreResult<u64> {
        Ok(with_pool!(self, |pool| {
            sqlx::query("DELETE FROM jobs WHERE status = 'done' AND finished_at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_bounded_jitter() {
        for attempt in 1..=6 {
            let nominal = 1000i64 << (attempt - 1);
            for _ in 0..50 {
                let d = backoff_ms(attempt, 1000);
                assert!(
                    d >= nominal * 3 / 4 && d <= nominal * 5 / 4,
                    "attempt {attempt}: {d}"
                );
            }
        }
        assert!(backoff_ms(40, 1000) <= 375_000, "capped");
    }
}
