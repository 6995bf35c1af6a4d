//! What a job is to the engine: a kind (data), a payload type that knows how to run itself, and
//! the one table ([`Registry`]) that maps each stored kind to its handler. The engine never
//! names a job kind of the product; the application builds the registry (`crate::tasks`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Job, JobRef, NewJob};

/// A kind of job, as data: the name stored in the `jobs` table and its claim priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobKind {
    pub name: &'static str,
    /// Higher is claimed first (customer-facing work before housekeeping).
    pub priority: i64,
}

impl JobKind {
    pub const fn new(name: &'static str, priority: i64) -> Self {
        Self { name, priority }
    }

    pub fn as_str(self) -> &'static str {
        self.name
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Who marks a successful job done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// The engine, after the handler returned.
    ByWorker,
    /// The handler, inside its own final transaction (see [`JobRef`]).
    InHandler,
}

/// A job's payload, which runs itself. Implemented by the module that owns the work, which
/// also owns the constructor of its [`NewJob`].
pub trait Task: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What handlers receive (the application state).
    type Context: Send + Sync + 'static;
    /// The kind stored with each job of this type.
    const KIND: JobKind;

    /// Runs one attempt. An `Err` is retried with backoff until the job's attempts are used up.
    fn run(
        &self,
        ctx: &Self::Context,
        job: JobRef<'_>,
    ) -> impl Future<Output = Result<Done, String>> + Send;

    /// Called once when the last attempt failed and the job is dead (only by the attempt's
    /// owner). Nothing by default.
    fn on_dead(
        &self,
        _ctx: &Self::Context,
        _job: &Job,
        _error: &str,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// A job of this type carrying `self`.
    fn job(&self, max_attempts: u32) -> NewJob {
        NewJob::new(Self::KIND, self, max_attempts)
    }
}

/// A boxed future borrowing from the call's arguments.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

type RunFn<C> = for<'a> fn(&'a C, &'a Job, JobRef<'a>) -> BoxFuture<'a, Result<Done, String>>;
type DeadFn<C> = for<'a> fn(&'a C, &'a Job, &'a str) -> BoxFuture<'a, ()>;

/// One registered kind.
pub(crate) struct Handler<C> {
    pub kind: JobKind,
    run: RunFn<C>,
    on_dead: DeadFn<C>,
    /// Periodic jobs: run again this long after each success.
    pub every_ms: Option<i64>,
    /// Periodic jobs: the payload each run is enqueued with.
    pub periodic_payload: Option<String>,
}

impl<C> Handler<C> {
    pub fn run<'a>(
        &self,
        ctx: &'a C,
        job: &'a Job,
        me: JobRef<'a>,
    ) -> BoxFuture<'a, Result<Done, String>> {
        (self.run)(ctx, job, me)
    }

    pub fn on_dead<'a>(&self, ctx: &'a C, job: &'a Job, error: &'a str) -> BoxFuture<'a, ()> {
        (self.on_dead)(ctx, job, error)
    }

    /// The next run of a periodic job, at `run_at`; one is queued at a time across every
    /// process (dedupe key `periodic:{kind}`).
    pub fn next_run(&self, run_at: i64) -> Option<NewJob> {
        let payload = self.periodic_payload.clone()?;
        Some(
            NewJob {
                kind: self.kind,
                payload,
                max_attempts: 3,
                run_at,
                dedupe_key: None,
            }
            .dedupe(format!("periodic:{}", self.kind)),
        )
    }
}

fn run_task<'a, T: Task>(
    ctx: &'a T::Context,
    job: &'a Job,
    me: JobRef<'a>,
) -> BoxFuture<'a, Result<Done, String>> {
    Box::pin(async move {
        let task: T = job.payload()?;
        task.run(ctx, me).await
    })
}

fn dead_task<'a, T: Task>(ctx: &'a T::Context, job: &'a Job, error: &'a str) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        match job.payload::<T>() {
            Ok(task) => task.on_dead(ctx, job, error).await,
            Err(e) => {
                tracing::error!(job = %job.id, error = %e, "dead job's payload is unreadable")
            }
        }
    })
}

/// Every job kind the application runs, with its handler; periodic ones with their interval.
pub struct Registry<C> {
    handlers: HashMap<&'static str, Handler<C>>,
}

impl<C: Send + Sync + 'static> Default for Registry<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Send + Sync + 'static> Registry<C> {
    pub fn new() -> Self {
        Self {
            handlers: HashMap::new(),
        }
    }

    fn insert<T: Task<Context = C>>(
        mut self,
        every_ms: Option<i64>,
        payload: Option<String>,
    ) -> Self {
        let previous = self.handlers.insert(
            T::KIND.name,
            Handler {
                kind: T::KIND,
                run: run_task::<T>,
                on_dead: dead_task::<T>,
                every_ms,
                periodic_payload: payload,
            },
        );
        assert!(previous.is_none(), "job kind {} registered twice", T::KIND);
        self
    }

    /// Registers a job type run on demand.
    pub fn task<T: Task<Context = C>>(self) -> Self {
        self.insert::<T>(None, None)
    }

    /// Registers a job type that runs every `every_ms` whichever process is alive, with the
    /// payload `T::default()`.
    pub fn periodic<T: Task<Context = C> + Default>(self, every_ms: i64) -> Self {
        let payload = serde_json::to_string(&T::default()).expect("job payloads serialize");
        self.insert::<T>(Some(every_ms.max(1)), Some(payload))
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&Handler<C>> {
        self.handlers.get(kind)
    }

    /// The periodic kinds.
    pub(crate) fn periodic_handlers(&self) -> impl Iterator<Item = &Handler<C>> {
        self.handlers.values().filter(|h| h.every_ms.is_some())
    }

    /// Every registered kind.
    pub fn kinds(&self) -> impl Iterator<Item = JobKind> + '_ {
        self.handlers.values().map(|h| h.kind)
    }
}
