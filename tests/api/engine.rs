//! The job engine on its own, with tasks of its own and no server: claim order, leases and
//! their renewal, the owner guard, panics, and the attempt budget when a job keeps killing its
//! worker. Each runs on SQLite and on PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use onboard::jobs::worker::Worker;
use onboard::jobs::{Done, Job, JobKind, JobRef, NewJob, Registry, Task};
use onboard::store::Store;
use serde::{Deserialize, Serialize};

use crate::helpers::{Backend, TestDb, eventually};
use crate::store_tests;

store_tests!(
    claims_go_by_priority_then_due_time,
    an_expired_lease_is_reclaimed_as_a_new_attempt,
    only_the_owner_completes_or_fails_a_job,
    a_panic_counts_as_a_failed_attempt,
    a_job_that_keeps_killing_its_worker_dies_after_max_attempts,
    a_slow_job_keeps_its_lease_while_it_runs,
    a_retry_of_a_job_waiting_out_its_backoff_runs_now_with_a_fresh_budget,
);

/// What the test tasks saw.
#[derive(Clone, Default)]
struct Ctx {
    log: Arc<Mutex<Vec<String>>>,
}

impl Ctx {
    fn note(&self, line: impl Into<String>) {
        self.log.lock().unwrap().push(line.into());
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[derive(Serialize, Deserialize)]
struct Note {
    text: String,
}

impl Task for Note {
    type Context = Ctx;
    const KIND: JobKind = JobKind::new("test_note", 1);

    async fn run(&self, ctx: &Ctx, _: JobRef<'_>) -> Result<Done, String> {
        ctx.note(format!("ran {}", self.text));
        Ok(Done::ByWorker)
    }

    async fn on_dead(&self, ctx: &Ctx, _: &Job, error: &str) {
        ctx.note(format!("dead {}: {error}", self.text));
    }
}

#[derive(Serialize, Deserialize)]
struct Urgent {}

impl Task for Urgent {
    type Context = Ctx;
    const KIND: JobKind = JobKind::new("test_urgent", 50);

    async fn run(&self, ctx: &Ctx, _: JobRef<'_>) -> Result<Done, String> {
        ctx.note("ran urgent");
        Ok(Done::ByWorker)
    }
}

#[derive(Serialize, Deserialize)]
struct Panics {}

impl Task for Panics {
    type Context = Ctx;
    const KIND: JobKind = JobKind::new("test_panics", 1);

    async fn run(&self, _: &Ctx, _: JobRef<'_>) -> Result<Done, String> {
        panic!("the handler blew up")
    }

    async fn on_dead(&self, ctx: &Ctx, _: &Job, error: &str) {
        ctx.note(format!("dead: {error}"));
    }
}

#[derive(Serialize, Deserialize)]
struct Slow {
    ms: u64,
}

impl Task for Slow {
    type Context = Ctx;
    const KIND: JobKind = JobKind::new("test_slow", 1);

    async fn run(&self, ctx: &Ctx, _: JobRef<'_>) -> Result<Done, String> {
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        ctx.note("slow finished");
        Ok(Done::ByWorker)
    }
}

fn registry() -> Registry<Ctx> {
    Registry::new()
        .task::<Note>()
        .task::<Urgent>()
        .task::<Panics>()
        .task::<Slow>()
}

fn worker(store: &Store, ctx: &Ctx, lease_ms: i64) -> Worker<Ctx> {
    Worker {
        ctx: ctx.clone(),
        store: store.clone(),
        registry: Arc::new(registry()),
        ready: Arc::new(tokio::sync::Notify::new()),
        lease_ms,
        backoff_base_ms: 1,
        metrics: Arc::new(onboard::metrics::Metrics::new()),
    }
}

async fn setup(backend: Backend) -> (TestDb, Store, Ctx) {
    let db = TestDb::create(&backend).await;
    let store = db.store().await;
    (db, store, Ctx::default())
}

async fn status_of(store: &Store, id: &str) -> (String, i64) {
    let jobs = store.job_by_id(id).await.unwrap().expect("the job exists");
    (jobs.status, jobs.attempts)
}

fn note(text: &str, max_attempts: u32) -> NewJob {
    Note {
        text: text.to_string(),
    }
    .job(max_attempts)
}

async fn claims_go_by_priority_then_due_time(backend: Backend) {
    let (_db, store, _ctx) = setup(backend).await;
    let now = onboard::store::now_ms();
    store
        .enqueue(note("older", 3).at(now - 2_000))
        .await
        .unwrap();
    store
        .enqueue(note("newer", 3).at(now - 1_000))
        .await
        .unwrap();
    store.enqueue(Urgent {}.job(3)).await.unwrap();
    store
        .enqueue(note("later", 3).at(now + 60_000))
        .await
        .unwrap();
    let mut order = Vec::new();
    while let Some(job) = store.claim_job("w", 60_000).await.unwrap() {
        order.push(job.payload.clone());
    }
    assert_eq!(
        order,
        [
            "{}".to_string(),
            r#"{"text":"older"}"#.to_string(),
            r#"{"text":"newer"}"#.to_string()
        ],
        "highest priority first, then the longest due; a job not yet due is not claimed"
    );
}

async fn an_expired_lease_is_reclaimed_as_a_new_attempt(backend: Backend) {
    let (_db, store, ctx) = setup(backend).await;
    store.enqueue(note("x", 3)).await.unwrap();
    let first = store.claim_job("dead-worker", 200).await.unwrap().unwrap();
    assert_eq!(first.attempts, 1);
    assert!(
        store.claim_job("w2", 60_000).await.unwrap().is_none(),
        "a live lease is not taken"
    );
    let second = eventually("the lease to expire", 10, || async {
        store.claim_job("w2", 60_000).await.unwrap()
    })
    .await;
    assert_eq!(second.id, first.id);
    assert_eq!(second.attempts, 2, "a reclaim is an attempt");
    worker(&store, &ctx, 60_000).run_one("w2", second).await;
    assert_eq!(ctx.lines(), ["ran x"]);
    assert_eq!(status_of(&store, &first.id).await.0, "done");
}

async fn only_the_owner_completes_or_fails_a_job(backend: Backend) {
    let (_db, store, ctx) = setup(backend).await;
    store.enqueue(note("owned", 1)).await.unwrap();
    let job = store.claim_job("owner", 60_000).await.unwrap().unwrap();
    assert!(!store.complete_job(&job, "intruder").await.unwrap());
    assert_eq!(
        store.fail_job(&job, "intruder", "boom", 1).await.unwrap(),
        onboard::jobs::Failed::NotOwner
    );
    assert_eq!(status_of(&store, &job.id).await.0, "running");
    // A worker that lost the job (its lease expired and another took it) runs no dead hook.
    let w = worker(&store, &ctx, 60_000);
    let lost = Job {
        attempts: job.attempts,
        ..job.clone()
    };
    w.record_failure("intruder", &lost, "late failure").await;
    assert!(ctx.lines().is_empty(), "{:?}", ctx.lines());
    assert_eq!(status_of(&store, &job.id).await.0, "running");
    assert!(store.complete_job(&job, "owner").await.unwrap());
    assert_eq!(status_of(&store, &job.id).await.0, "done");
    assert!(
        !store.complete_job(&job, "owner").await.unwrap(),
        "a finished job is not completed twice"
    );
}

async fn a_panic_counts_as_a_failed_attempt(backend: Backend) {
    let (_db, store, ctx) = setup(backend).await;
    store.enqueue(Panics {}.job(2)).await.unwrap();
    let w = worker(&store, &ctx, 60_000);
    let job = store.claim_job("w", 60_000).await.unwrap().unwrap();
    let id = job.id.clone();
    w.run_one("w", job).await;
    let (status, attempts) = status_of(&store, &id).await;
    assert_eq!((status.as_str(), attempts), ("queued", 1));
    let job = eventually("the retry to be due", 10, || async {
        store.claim_job("w", 60_000).await.unwrap()
    })
    .await;
    w.run_one("w", job).await;
    assert_eq!(status_of(&store, &id).await, ("dead".to_string(), 2));
    let lines = ctx.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("panicked"), "{lines:?}");
}

async fn a_job_that_keeps_killing_its_worker_dies_after_max_attempts(backend: Backend) {
    let (_db, store, ctx) = setup(backend).await;
    store.enqueue(note("crashy", 2)).await.unwrap();
    // Two workers take it and die (nothing completes it).
    let first = store.claim_job("crash-1", 100).await.unwrap().unwrap();
    let second = eventually("the first lease to expire", 10, || async {
        store.claim_job("crash-2", 100).await.unwrap()
    })
    .await;
    assert_eq!(second.attempts, 2);
    // Its budget is spent: once the second lease expires it is never claimed again; the
    // engine buries it and runs its dead hook once.
    let w = worker(&store, &ctx, 60_000);
    eventually(
        "the last lease to expire and the job to be buried",
        10,
        || async {
            assert!(store.claim_job("w3", 60_000).await.unwrap().is_none());
            (w.bury_exhausted().await.unwrap() == 1).then_some(())
        },
    )
    .await;
    assert_eq!(status_of(&store, &first.id).await, ("dead".to_string(), 2));
    assert_eq!(w.bury_exhausted().await.unwrap(), 0, "buried once");
    let lines = ctx.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("dead crashy:") && lines[0].contains("lease"),
        "{lines:?}"
    );
}

async fn a_slow_job_keeps_its_lease_while_it_runs(backend: Backend) {
    let (_db, store, ctx) = setup(backend).await;
    store.enqueue(Slow { ms: 1_500 }.job(1)).await.unwrap();
    let lease_ms = 300;
    let w = worker(&store, &ctx, lease_ms);
    let job = store
        .claim_job("slow-owner", lease_ms)
        .await
        .unwrap()
        .unwrap();
    let id = job.id.clone();
    let running = tokio::spawn({
        let w = w.clone();
        async move { w.run_one("slow-owner", job).await }
    });
    // Five lease lengths pass; no other worker may take the job meanwhile.
    let mut tries = 0;
    while !running.is_finished() {
        assert!(
            store.claim_job("thief", lease_ms).await.unwrap().is_none(),
            "a live, slow job was handed to a second worker"
        );
        tries += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.await.unwrap();
    assert!(tries > 10, "the thief tried throughout ({tries} tries)");
    assert_eq!(ctx.lines(), ["slow finished"]);
    assert_eq!(status_of(&store, &id).await, ("done".to_string(), 1));
}

async fn a_retry_of_a_job_waiting_out_its_backoff_runs_now_with_a_fresh_budget(backend: Backend) {
    let (_db, store, ctx) = setup(backend).await;
    let job = || note("again", 3).dedupe("note:again");
    assert!(store.enqueue(job()).await.unwrap());
    let claimed = store.claim_job("w", 60_000).await.unwrap().unwrap();
    // The attempt fails; the job waits out a long backoff.
    let w = Worker {
        backoff_base_ms: 3_600_000,
        ..worker(&store, &ctx, 60_000)
    };
    w.record_failure("w", &claimed, "flaky").await;
    assert_eq!(
        status_of(&store, &claimed.id).await,
        ("queued".to_string(), 1)
    );
    assert!(
        store.claim_job("w", 60_000).await.unwrap().is_none(),
        "in backoff"
    );
    // A retry (the same dedupe key) makes it due now, with its attempts back to zero.
    let mut tx = store.begin().await.unwrap();
    assert!(!tx.enqueue_fresh(job()).await.unwrap(), "no second job");
    tx.commit().await.unwrap();
    let again = store.claim_job("w", 60_000).await.unwrap().unwrap();
    assert_eq!(again.id, claimed.id);
    assert_eq!(
        again.attempts, 1,
        "a fresh budget: this is its first attempt again"
    );
}
