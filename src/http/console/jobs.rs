//! `/admin/jobs`: the job queue as `onboard jobs stats` shows it (per kind: waiting, running,
//! retrying, dead, done, and how long the oldest due job has waited), and the jobs of a status
//! and kind (dead ones by default) with a retry button on each dead job.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{CheckedForm, Chrome, SignedIn, given, problem, render, when};
use crate::domain::audit::{Action, Actor};
use crate::http::AppState;
use crate::http::error::AppResult;
use crate::http::extract::{ClientIp, PathParam};
use crate::jobs::{JobRow, JobStats};
use crate::store::{AuditEntry, StoreError, now_ms};

/// Jobs listed at most.
const LIST_SIZE: i64 = 100;
/// The statuses a job can be listed in.
const STATUSES: [&str; 4] = ["dead", "queued", "running", "done"];

#[derive(Deserialize, Default)]
pub struct JobsQuery {
    status: Option<String>,
    kind: Option<String>,
    done: Option<String>,
}

/// A kind's line: its counts and the oldest due job's wait.
struct KindRow {
    stats: JobStats,
    oldest: String,
}

#[derive(Template)]
#[template(path = "admin/jobs.html")]
struct JobsPage {
    chrome: Chrome,
    kinds: Vec<KindRow>,
    statuses: [&'static str; 4],
    kind_names: Vec<String>,
    status: String,
    kind: String,
    error: Option<String>,
    jobs: Vec<(JobRow, String)>,
    back: String,
}

/// `GET /admin/jobs?status=&kind=`.
pub async fn page(
    State(state): State<AppState>,
    operator: SignedIn,
    Query(q): Query<JobsQuery>,
) -> AppResult<Response> {
    let now = now_ms();
    let status = given(&q.status).unwrap_or("dead");
    let kind = given(&q.kind);
    let (stats, depths) = tokio::try_join!(state.store.job_stats(), state.store.queue_depths(now))?;
    let mut kind_names: Vec<String> = crate::tasks::kind_names()
        .iter()
        .map(|k| k.to_string())
        .collect();
    for s in &stats {
        if !kind_names.contains(&s.kind) {
            kind_names.push(s.kind.clone());
        }
    }
    let mut page = JobsPage {
        chrome: Chrome::new(&operator, "/admin/jobs").done(q.done.as_deref()),
        kinds: stats
            .into_iter()
            .map(|s| {
                let waited = depths
                    .iter()
                    .find(|d| d.kind == s.kind)
                    .map(|d| d.oldest_age_seconds(now))
                    .filter(|secs| *secs > 0.0);
                KindRow {
                    oldest: waited
                        .map(|secs| super::duration((secs * 1000.0) as i64))
                        .unwrap_or_else(|| "–".into()),
                    stats: s,
                }
            })
            .collect(),
        statuses: STATUSES,
        kind_names,
        status: status.to_string(),
        kind: kind.unwrap_or_default().to_string(),
        error: None,
        jobs: Vec::new(),
        back: format!(
            "/admin/jobs?{}",
            super::query_string(&[("status", Some(status)), ("kind", kind)])
        ),
    };
    if !STATUSES.contains(&status) {
        page.error = Some(format!(
            "There is no job status '{status}': choose one of {}.",
            STATUSES.join(", ")
        ));
        return Ok(render(StatusCode::BAD_REQUEST, &page));
    }
    page.jobs = state
        .store
        .list_jobs_of(status, kind, LIST_SIZE)
        .await?
        .into_iter()
        .map(|j| {
            let at = when(j.run_at);
            (j, at)
        })
        .collect();
    Ok(render(StatusCode::OK, &page))
}

/// `POST /admin/jobs/{job_id}/retry` (form: `back`): puts a dead job back in the queue with a
/// fresh attempt budget, as `onboard jobs retry` does, audited as the operator.
pub async fn retry(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    PathParam(job_id): PathParam<String>,
    form: CheckedForm,
) -> AppResult<Response> {
    let back = form
        .get("back")
        .filter(|b| b.starts_with("/admin/jobs"))
        .unwrap_or("/admin/jobs")
        .to_string();
    let job = state.store.job_by_id(&job_id).await?;
    let refused = |message: &str| {
        Ok(problem(
            StatusCode::CONFLICT,
            &form.operator,
            "This job cannot be retried",
            message,
            (&back, "Back to the jobs"),
        ))
    };
    match job {
        Some(j) if j.status == "dead" => {}
        Some(j) => {
            return refused(&format!(
                "Only a dead job is put back in the queue; this one is {}.",
                j.status
            ));
        }
        None => return refused("There is no such job (finished jobs are pruned after a while)."),
    }
    match state.store.retry_job(&job_id).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return refused(
                "A job for the same work is already waiting; this one would do it twice.",
            );
        }
        Err(StoreError::NotFound(_)) => return refused("The job is no longer dead."),
        Err(e) => return Err(e.into()),
    }
    state.jobs_ready.notify_one();
    let audit = AuditEntry::new(Actor::Operator, Action::OperatorRetryJob)
        .ip(Some(ip))
        .target(job_id.as_str())
        .with("via", "console");
    state.store.audit(&audit).await?;
    Ok(super::done(&back, "job_retried"))
}
