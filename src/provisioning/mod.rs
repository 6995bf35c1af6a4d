//! The provisioning pipeline (ARCHITECTURE.md): `namespace` → `api_key` →
//! `sample_data` → `welcome_email` → `active`. Each step is recorded in `provisioning_steps`; a
//! step whose record exists is never run again, and the steps that write (key, email, status)
//! record themselves in the same transaction as their write, so a crash or a second worker can
//! never issue two keys or two welcome emails.
//!
//! Owns its jobs: [`ProvisionJob`] (with the dead-letter hook that fails the tenant) and the
//! periodic [`Sweep`]. May use `workspace` (keys, sample data), `email`, `search`, `jobs`,
//! `store`, `domain` and the `AppState` handle; must not import `http`, `cli`, `tasks` or
//! `billing`.

pub mod deprovision;

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::domain::audit::{Action, Actor};
use crate::domain::{TenantId, TenantStatus};
use crate::email::templates;
use crate::jobs::{Done, JobKind, JobRef, NewJob, Task};
use crate::search::{PendingChange, VectorRecord};
use crate::store::tenants::{TENANT_COLUMNS, TenantRow};
use crate::store::{AuditEntry, Store, StoreError, StoreResult, Tenant, Tx, now_ms};
use crate::workspace::api_keys::{AuthError, IssuedKey, Principal, scopes};
use crate::workspace::sessions::TokenPurpose;
use crate::workspace::{namespace_for, sample_data};
use crate::{with_conn, with_reader};

/// The steps, in order.
pub const STEPS: [&str; 4] = ["namespace", "api_key", "sample_data", "welcome_email"];

/// How often the sweeper looks for stuck tenants.
pub const SWEEP_EVERY_MS: i64 = 5_000;

/// Payload of a provisioning job.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProvisionJob {
    pub tenant_id: String,
}

/// The job that provisions `tenant`, at most one queued per tenant.
pub fn job(tenant: &TenantId, max_attempts: u32) -> NewJob {
    ProvisionJob {
        tenant_id: tenant.to_string(),
    }
    .job(max_attempts)
    .dedupe(format!("provision:{tenant}"))
}

impl Task for ProvisionJob {
    type Context = AppState;
    /// On a customer's critical path: claimed before anything else.
    const KIND: JobKind = JobKind::new("provision_tenant", 20);

    async fn run(&self, app: &AppState, me: JobRef<'_>) -> Result<Done, String> {
        let id = TenantId::parse(&self.tenant_id).ok_or("bad tenant id")?;
        // Provisioning completes its own job in its final transaction when it gets there.
        match run(app, &id, Some(me)).await {
            Ok(true) => Ok(Done::InHandler),
            Ok(false) => Ok(Done::ByWorker),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn on_dead(&self, app: &AppState, job: &crate::jobs::Job, error: &str) {
        if let Some(id) = TenantId::parse(&self.tenant_id)
            && let Err(e) = give_up(app, &id, error, job.attempts).await
        {
            tracing::error!(error = %e, "could not mark the tenant failed");
        }
    }
}

/// Periodic: fails tenants stuck in provisioning past the timeout ([`sweep`]).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Sweep {}

/// Why a welcome email could not be sent again.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error(
        "only a tenant whose workspace works (active or past_due) can be sent its welcome email \
         again; this tenant is {0}"
    )]
    Status(TenantStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Other(anyhow::Error),
}

/// Sends a tenant its welcome email again, with a fresh single-use sign-in link (the first one
/// expired, was used, or never arrived), when its workspace works (`active`, `past_due`).
/// `audit` (who asked, from where) is recorded in the transaction that queues it. Returns the
/// outbox id.
pub async fn resend_welcome(
    app: &AppState,
    tenant_id: &TenantId,
    audit: AuditEntry,
) -> Result<String, ResendError> {
    let tenant = app
        .store
        .tenant(tenant_id)
        .await?
        .ok_or(StoreError::NotFound("tenant"))?;
    if !matches!(tenant.status, TenantStatus::Active | TenantStatus::PastDue) {
        return Err(ResendError::Status(tenant.status));
    }
    let mut tx = app.store.begin().await?;
    let queued = queue_welcome_in(app, &mut tx, &tenant, true)
        .await
        .map_err(|e| match e.downcast::<StoreError>() {
            Ok(e) => ResendError::Store(e),
            Err(e) => ResendError::Other(e),
        })?;
    // A transactional email without a dedupe key is always stored.
    let id = queued.ok_or_else(|| {
        ResendError::Other(anyhow::anyhow!("the welcome email could not be queued"))
    })?;
    tx.audit(
        &audit
            .target(tenant_id.as_str())
            .with("email_id", id.as_str()),
    )
    .await?;
    tx.commit().await?;
    app.jobs_ready.notify_one();
    Ok(id)
}

impl Task for Sweep {
    type Context = AppState;
    const KIND: JobKind = JobKind::new("sweep_provisioning", 0);

    async fn run(&self, app: &AppState, _: JobRef<'_>) -> Result<Done, String> {
        sweep(app).await.map_err(|e| e.to_string())?;
        Ok(Done::ByWorker)
    }
}

/// One recorded step.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct StepRecord {
    pub step: String,
    /// `done`, `skipped` or `failed` (a failed sample-data load leaves a working, empty workspace).
    pub outcome: String,
    pub detail: Option<String>,
    pub duration_ms: i64,
    pub completed_at: i64,
}

impl Store {
    /// The recorded steps of a tenant, in pipeline order.
    pub async fn provisioning_steps(&self, tenant: &TenantId) -> StoreResult<Vec<StepRecord>> {
        let mut rows: Vec<StepRecord> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT step, outcome, detail, duration_ms, completed_at FROM provisioning_steps WHERE tenant_id = $1",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        });
        rows.sort_by_key(|r| {
            STEPS
                .iter()
                .position(|s| *s == r.step)
                .unwrap_or(STEPS.len())
        });
        Ok(rows)
    }
}

#[derive(sqlx::FromRow)]
struct TenantStepRow {
    #[sqlx(flatten)]
    tenant: TenantRow,
    step: Option<String>,
    outcome: Option<String>,
    detail: Option<String>,
    duration_ms: Option<i64>,
    completed_at: Option<i64>,
    paid_at: Option<i64>,
}

impl Store {
    /// A tenant, its recorded steps and when its payment was confirmed, in one query (the first
    /// thing every provisioning run reads). The two joined tables share no column name, so the
    /// tenant's columns need no prefix.
    async fn tenant_with_steps(&self, tenant: &TenantId) -> StoreResult<Option<TenantSteps>> {
        let sql = format!(
            "SELECT {TENANT_COLUMNS}, s.step, s.outcome, s.detail, s.duration_ms, s.completed_at, \
             (SELECT a.paid_at FROM tenant_activation a WHERE a.tenant_id = t.id) AS paid_at \
             FROM tenants t LEFT JOIN provisioning_steps s ON s.tenant_id = t.id WHERE t.id = $1"
        );
        let mut rows: Vec<TenantStepRow> = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(tenant.as_str())
                .fetch_all(pool)
                .await?
        });
        let steps = rows
            .iter_mut()
            .filter_map(TenantStepRow::take_step)
            .collect();
        match rows.into_iter().next() {
            Some(first) => Ok(Some(TenantSteps {
                paid_at: first.paid_at,
                tenant: Tenant::try_from(first.tenant)?,
                done: steps,
            })),
            None => Ok(None),
        }
    }
}

/// What a provisioning run starts from.
struct TenantSteps {
    tenant: Tenant,
    /// The steps already recorded, by name.
    done: HashMap<String, StepRecord>,
    /// When the payment was confirmed (none for a tenant that did not pay at checkout, such as
    /// an approved enterprise signup): the start of `onboard_provisioning_duration_seconds`.
    paid_at: Option<i64>,
}

impl TenantStepRow {
    /// The step this row carries, if any (none when the tenant has no step yet).
    fn take_step(&mut self) -> Option<(String, StepRecord)> {
        let record = StepRecord {
            step: self.step.take()?,
            outcome: self.outcome.take()?,
            detail: self.detail.take(),
            duration_ms: self.duration_ms?,
            completed_at: self.completed_at?,
        };
        Some((record.step.clone(), record))
    }
}

/// A step to record, with what it did.
struct StepDone {
    step: &'static str,
    outcome: &'static str,
    detail: Option<String>,
    started: Instant,
}

impl Tx {
    /// Records steps in one statement; false if any was already recorded (another run got
    /// there first: the caller rolls back).
    async fn record_steps(&mut self, tenant: &TenantId, steps: &[StepDone]) -> StoreResult<bool> {
        if steps.is_empty() {
            return Ok(true);
        }
        let sql = format!(
            "INSERT INTO provisioning_steps (tenant_id, step, outcome, detail, duration_ms, completed_at) \
             VALUES {} ON CONFLICT (tenant_id, step) DO NOTHING",
            crate::store::values_rows(steps.len(), 6)
        );
        let now = now_ms();
        let n = with_conn!(self, |conn| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for s in steps {
                q = q
                    .bind(tenant.as_str())
                    .bind(s.step)
                    .bind(s.outcome)
                    .bind(s.detail.as_deref())
                    .bind(s.started.elapsed().as_millis() as i64)
                    .bind(now);
            }
            q.execute(&mut *conn).await?.rows_affected()
        });
        Ok(n == steps.len() as u64)
    }
}

/// A step failure, named.
#[derive(Debug, thiserror::Error)]
#[error("step {step} failed: {message}")]
pub struct StepError {
    pub step: &'static str,
    pub message: String,
}

fn step_err(step: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StepError {
    move |e| StepError {
        step,
        message: e.to_string(),
    }
}

/// Runs the remaining steps of a tenant in `provisioning`. Anything else is left alone, so a
/// late or repeated job never moves a tenant. With `job`, the job is marked done in the final
/// transaction and the result is true (the worker then does not complete it again). Each
/// attempt on a tenant in `provisioning` is counted as started, and as failed when it fails
/// (as succeeded when it makes the tenant active).
#[tracing::instrument(skip_all, fields(tenant_id = %tenant_id))]
pub async fn run(
    app: &AppState,
    tenant_id: &TenantId,
    job: Option<JobRef<'_>>,
) -> Result<bool, StepError> {
    let Some(start) = app
        .store
        .tenant_with_steps(tenant_id)
        .await
        .map_err(|e| step_err("namespace")(&e))?
    else {
        return Ok(false);
    };
    if start.tenant.status != TenantStatus::Provisioning {
        tracing::info!(status = %start.tenant.status, "provisioning skipped: tenant is not provisioning");
        return Ok(false);
    }
    app.metrics.provisioning_started.inc();
    let result = run_steps(app, tenant_id, start, job).await;
    if result.is_err() {
        app.metrics.provisioning_failed.inc();
    }
    result
}

/// The steps of [`run`], for a tenant found in `provisioning`.
async fn run_steps(
    app: &AppState,
    tenant_id: &TenantId,
    start: TenantSteps,
    job: Option<JobRef<'_>>,
) -> Result<bool, StepError> {
    let store = &app.store;
    let TenantSteps {
        tenant,
        done,
        paid_at,
    } = start;
    let namespace = namespace_for(tenant_id);
    let load_samples = !done.contains_key("sample_data") && app.settings.sample_data_enabled;
    let mut steps = Vec::new();
    let mut temp_key_to_revoke = None;
    let mut samples_loaded = false;

    // On the embedded store everything happens in one transaction: the namespace, the
    // temporary credential the sample documents are written with, the sample vectors, and then
    // (below) the rest. With a remote vector store the namespace and the credential commit first
    // (relaxed: they are recorded only by the final, durable transaction, so losing that commit
    // in a crash just means the next attempt makes them again), the sample vectors are upserted
    // remotely, and a second transaction records everything.
    let namespace_started = (!done.contains_key("namespace")).then(Instant::now);
    let sample_started = Instant::now();
    let first = if namespace_started.is_some() || load_samples {
        first_transaction(
            app,
            tenant_id,
            &namespace,
            namespace_started.is_some(),
            load_samples,
        )
        .await?
    } else {
        FirstTransaction::default()
    };
    if let Some(started) = namespace_started {
        steps.push(StepDone {
            step: "namespace",
            outcome: "done",
            detail: Some(namespace.clone()),
            started,
        });
    }

    // Sample documents for a remote vector store are upserted (idempotently) before the final
    // transaction, which records their outcome.
    if !done.contains_key("sample_data") {
        let (outcome, detail, key_id) =
            sample_outcome(app, tenant_id, &namespace, first.temp_key, first.samples).await;
        samples_loaded = outcome == "done";
        steps.push(StepDone {
            step: "sample_data",
            outcome,
            detail: Some(detail),
            started: sample_started,
        });
        temp_key_to_revoke = key_id;
    }

    // Everything else that writes our own tables commits in one transaction with the step
    // records: the first key, the sample documents' listing, the welcome email, `active` and
    // the job itself. A step record that already exists means another run got there first:
    // roll back and stop.
    let err = step_err("api_key");
    let mut tx = match first.open_tx {
        Some(tx) => tx,
        None => store.begin().await.map_err(|e| err(&e))?,
    };
    if !done.contains_key("api_key") {
        let started = Instant::now();
        let key = tx
            .issue_api_key(
                &app.signer,
                tenant_id,
                "Default key",
                scopes::DEFAULT,
                None,
                true,
            )
            .await
            .map_err(|e| err(&e))?;
        tx.audit(
            &AuditEntry::new(Actor::System, Action::ApiKeyCreated)
                .target(key.key_id.as_str())
                .with("tenant_id", tenant_id.as_str())
                .with("reason", "the first key, issued at provisioning"),
        )
        .await
        .map_err(|e| err(&e))?;
        steps.push(StepDone {
            step: "api_key",
            outcome: "done",
            detail: Some(key.key_id),
            started,
        });
    }
    if !done.contains_key("sample_data") {
        let err = step_err("sample_data");
        // The temporary sample-data credential is revoked with the commit; should this
        // transaction fail, it still expires within ten minutes.
        if let Some(key_id) = &temp_key_to_revoke {
            tx.revoke_api_key(tenant_id, key_id)
                .await
                .map_err(|e| err(&e))?;
            tx.audit(
                &AuditEntry::new(Actor::System, Action::ApiKeyRevoked)
                    .target(key_id.as_str())
                    .with("tenant_id", tenant_id.as_str())
                    .with("reason", "the temporary sample-data credential"),
            )
            .await
            .map_err(|e| err(&e))?;
        }
        if samples_loaded {
            tx.insert_sample_documents(tenant_id, sample_data::documents())
                .await
                .map_err(|e| err(&e))?;
        }
    }
    if !done.contains_key("welcome_email") {
        let started = Instant::now();
        let outbox_id = queue_welcome_in(app, &mut tx, &tenant, false)
            .await
            .map_err(|e| step_err("welcome_email")(&e))?;
        steps.push(StepDone {
            step: "welcome_email",
            outcome: "done",
            detail: outbox_id,
            started,
        });
    }
    if !tx
        .record_steps(tenant_id, &steps)
        .await
        .map_err(|e| err(&e))?
    {
        return Ok(false);
    }
    let err = step_err("welcome_email");
    match tx
        .activate_tenant(tenant_id, "all provisioning steps done", "provisioning")
        .await
    {
        Ok(_) => {
            // Not owning the job any more (its lease expired under a slow attempt) changes
            // nothing here: the step records make the other attempt find this work done.
            if let Some(job) = job
                && !tx.complete_job(job).await.map_err(|e| err(&e))?
            {
                tracing::warn!(
                    job = job.id,
                    "provisioning finished a job this worker no longer owned"
                );
            }
            tx.commit().await.map_err(|e| err(&e))?;
            if let Some(c) = first.change {
                app.vectors.apply(c);
            }
            app.jobs_ready.notify_one();
            app.metrics.tenants_provisioned.inc();
            app.metrics.provisioning_succeeded.inc();
            if let Some(paid_at) = paid_at {
                app.metrics
                    .provisioning_duration
                    .observe((now_ms() - paid_at).max(0) as f64 / 1000.0);
            }
            tracing::info!("tenant active");
            Ok(job.is_some())
        }
        // Someone else finished it, or it was canceled meanwhile: roll back, nothing to do.
        Err(StoreError::Transition(_)) => Ok(false),
        Err(e) => Err(err(&e)),
    }
}

/// Queues the welcome email, with a fresh single-use sign-in link (`WELCOME_LINK_HOURS` long)
/// for the account's first owner and addressed to them: the signup's email, until ownership
/// changes hands. Returns the outbox
/// id (none when this tenant's welcome was already queued). The first welcome is written at
/// most once per tenant; a `resend` (the operator's) is not held to that.
async fn queue_welcome_in(
    app: &AppState,
    tx: &mut Tx,
    tenant: &Tenant,
    resend: bool,
) -> anyhow::Result<Option<String>> {
    let hours = app.settings.welcome_link_hours;
    let owner = tx
        .first_owner(&tenant.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("tenant {} has no owner", tenant.id))?;
    let token = tx
        .create_login_token(
            &tenant.id,
            &owner.id,
            TokenPurpose::MagicLogin,
            i64::from(hours) * 3_600_000,
        )
        .await?;
    let login_url = app
        .settings
        .app_url
        .join(&format!("login/magic?token={token}"))?;
    let mut email = templates::welcome(
        app.mailer.brand(),
        tenant.id.as_str(),
        &owner.email,
        &tenant.company_name,
        login_url.as_str(),
        hours,
    );
    if resend {
        email.dedupe_key = None;
    }
    Ok(tx
        .queue_email(&email, &app.settings.sendgrid_from_email)
        .await?)
}

/// What the first transaction left for the rest of the run.
#[derive(Default)]
struct FirstTransaction {
    /// The temporary sample-data credential, or why it could not be issued.
    temp_key: Option<Result<IssuedKey, String>>,
    /// Embedded store: how many sample documents were written (or why not), and the change to
    /// apply to the vector cache once everything commits.
    samples: Option<Result<usize, String>>,
    change: Option<PendingChange>,
    /// Embedded store: the transaction itself, still open, for the rest of the run.
    open_tx: Option<Tx>,
}

/// Creates the namespace (when `create_namespace`) and issues the temporary sample-data
/// credential (when `load_samples`); on the embedded store also writes the sample vectors and
/// hands the open transaction back, on a remote one commits (relaxed).
async fn first_transaction(
    app: &AppState,
    tenant_id: &TenantId,
    namespace: &str,
    create_namespace: bool,
    load_samples: bool,
) -> Result<FirstTransaction, StepError> {
    let err = step_err("namespace");
    let embedded = app.vectors.is_embedded();
    if create_namespace {
        // Pinecone must answer and have our dimensions before we count on it.
        app.vectors.prepare_namespace().await.map_err(|e| err(&e))?;
    }
    // Embedding may be a remote call: done before the transaction, which on SQLite holds the
    // only writer of the process, so a slow embeddings API never stalls every other write.
    let sample_vectors = if load_samples && embedded {
        Some(
            sample_data::vector_records(&app.embedder)
                .await
                .map_err(|e| e.to_string()),
        )
    } else {
        None
    };
    let mut tx = if embedded {
        app.store.begin().await
    } else {
        app.store.begin_relaxed().await
    }
    .map_err(|e| err(&e))?;
    if create_namespace {
        app.vectors
            .create_namespace_in(&mut tx, tenant_id.as_str(), namespace)
            .await
            .map_err(|e| err(&e))?;
    }
    let mut first = FirstTransaction::default();
    if load_samples {
        // Failing to issue it is a sample-data outcome, not a provisioning failure.
        let issued = tx
            .issue_api_key(
                &app.signer,
                tenant_id,
                "provisioning: sample data",
                &[scopes::SAMPLE_DATA_WRITE],
                Some(600),
                false,
            )
            .await
            .map_err(|e| e.to_string());
        if let Ok(key) = &issued {
            tx.audit(
                &AuditEntry::new(Actor::System, Action::ApiKeyCreated)
                    .target(key.key_id.as_str())
                    .with("tenant_id", tenant_id.as_str())
                    .with("reason", "the temporary sample-data credential"),
            )
            .await
            .map_err(|e| step_err("sample_data")(&e))?;
        }
        if let (Ok(key), Some(vectors)) = (&issued, sample_vectors) {
            match write_samples_in(app, &mut tx, tenant_id, namespace, key, vectors).await {
                Ok((n, c)) => {
                    first.samples = Some(Ok(n));
                    first.change = Some(c);
                }
                Err(e) => first.samples = Some(Err(e)),
            }
        }
        first.temp_key = Some(issued);
    }
    if embedded {
        first.open_tx = Some(tx);
    } else {
        tx.commit().await.map_err(|e| err(&e))?;
    }
    Ok(first)
}

/// Loads the sample documents unless disabled (or takes the result of loading them in the
/// first transaction); a failure is an outcome, not an error: the workspace is then empty but
/// works, and the notice says so. Also returns the temporary credential to revoke.
async fn sample_outcome(
    app: &AppState,
    tenant_id: &TenantId,
    namespace: &str,
    temp_key: Option<Result<IssuedKey, String>>,
    written: Option<Result<usize, String>>,
) -> (&'static str, String, Option<String>) {
    if !app.settings.sample_data_enabled {
        return ("skipped", "SAMPLE_DATA_ENABLED=false".to_string(), None);
    }
    let (result, key_id) = match (temp_key, written) {
        (Some(Ok(key)), Some(result)) => (result, Some(key.key_id)),
        (Some(Ok(key)), None) => (
            load_sample_data(app, tenant_id, namespace, &key).await,
            Some(key.key_id),
        ),
        (Some(Err(e)), _) => (Err(e), None),
        (None, _) => (Err("no temporary credential was issued".to_string()), None),
    };
    match result {
        Ok(n) => ("done", format!("{n} sample documents loaded"), key_id),
        Err(e) => {
            tracing::warn!(error = %e, "sample data failed; the workspace stays empty but working");
            (
                "failed",
                format!(
                    "Sample documents could not be loaded ({e}); your workspace is empty but works."
                ),
                key_id,
            )
        }
    }
}

/// Whether the temporary credential (as authenticated by the caller) allows writing sample
/// data for this tenant.
fn may_write_samples(
    tenant_id: &TenantId,
    principal: Result<Principal, AuthError>,
) -> Result<(), String> {
    let principal = principal.map_err(|e| e.to_string())?;
    if principal.tenant_id != *tenant_id || !principal.has_scope(scopes::SAMPLE_DATA_WRITE) {
        return Err("temporary credential does not allow sample data writes".to_string());
    }
    Ok(())
}

/// Embedded store: authenticates the temporary credential and writes the sample vectors
/// (embedded before the transaction began), all inside the transaction that issued it.
/// Returns how many documents and the change to apply.
async fn write_samples_in(
    app: &AppState,
    tx: &mut Tx,
    tenant_id: &TenantId,
    namespace: &str,
    temp: &IssuedKey,
    vectors: Result<Vec<VectorRecord>, String>,
) -> Result<(usize, PendingChange), String> {
    let token = secrecy::ExposeSecret::expose_secret(&temp.token);
    let principal = tx.authenticate_api_key(&app.signer, token).await;
    may_write_samples(tenant_id, principal)?;
    let records = vectors?;
    let change = app
        .vectors
        .upsert_in(tx, namespace, &records)
        .await
        .map_err(|e| e.to_string())?;
    Ok((sample_data::documents().len(), change))
}

/// Remote vector store: embeds and upserts the sample documents with the temporary credential.
async fn load_sample_data(
    app: &AppState,
    tenant_id: &TenantId,
    namespace: &str,
    temp: &IssuedKey,
) -> Result<usize, String> {
    let token = secrecy::ExposeSecret::expose_secret(&temp.token);
    let principal = app.store.authenticate_api_key(&app.signer, token).await;
    may_write_samples(tenant_id, principal)?;
    let records = sample_data::vector_records(&app.embedder)
        .await
        .map_err(|e| e.to_string())?;
    app.vectors
        .upsert(namespace, &records)
        .await
        .map_err(|e| e.to_string())?;
    Ok(sample_data::documents().len())
}

/// Called when the provisioning job has used its last attempt: the tenant fails with the reason.
pub async fn give_up(
    app: &AppState,
    tenant_id: &TenantId,
    error: &str,
    attempts: i64,
) -> StoreResult<()> {
    let reason = format!("provisioning failed after {attempts} attempts: {error}");
    let mut tx = app.store.begin().await?;
    match tx
        .transition_tenant(tenant_id, TenantStatus::Failed, &reason, "provisioning")
        .await
    {
        Ok(_) => {
            queue_failure_notice(&mut tx, app, tenant_id).await?;
            tx.commit().await?;
            app.jobs_ready.notify_one();
            Ok(())
        }
        Err(StoreError::Transition(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Tells the customer that setting up the workspace failed, with the link that retries it (the
/// success page of its checkout, whose retry button needs the session id), in the transaction
/// that failed the tenant. Once per tenant.
async fn queue_failure_notice(
    tx: &mut Tx,
    app: &AppState,
    tenant_id: &TenantId,
) -> StoreResult<()> {
    let Some(t) = tx.tenant(tenant_id).await? else {
        return Ok(());
    };
    let brand = app.mailer.brand();
    let retry_url = match &t.stripe_checkout_session_id {
        Some(session) => brand.link(&format!("/onboarding/success?session_id={session}")),
        None => brand.link("/login"),
    };
    let email = templates::provisioning_failed(
        brand,
        tenant_id.as_str(),
        &t.email,
        &t.company_name,
        &retry_url,
    );
    tx.queue_email(&email, &app.settings.sendgrid_from_email)
        .await?;
    Ok(())
}

/// Moves tenants stuck in `provisioning` past the timeout to `failed`. Returns how many. The
/// timeout counts from when provisioning (last) started, as the status history records it,
/// not from the tenant row's last change.
pub async fn sweep(app: &AppState) -> StoreResult<usize> {
    let timeout = app.settings.provisioning_timeout_seconds;
    let cutoff = now_ms() - (timeout as i64) * 1000;
    let stuck: Vec<String> = with_reader!(&app.store, |pool| {
        sqlx::query_scalar(
            "SELECT t.id FROM tenants t WHERE t.status = 'provisioning' AND \
             (SELECT MAX(h.at) FROM tenant_status_history h \
              WHERE h.tenant_id = t.id AND h.to_status = 'provisioning') < $1 LIMIT 500",
        )
        .bind(cutoff)
        .fetch_all(pool)
        .await?
    });
    let mut failed = 0;
    for id in stuck.iter().filter_map(|s| TenantId::parse(s)) {
        let mut tx = app.store.begin().await?;
        let reason = format!(
            "provisioning did not finish within {timeout} s (PROVISIONING_TIMEOUT_SECONDS)"
        );
        match tx
            .transition_tenant(&id, TenantStatus::Failed, &reason, "sweeper")
            .await
        {
            Ok(_) => {
                queue_failure_notice(&mut tx, app, &id).await?;
                tx.commit().await?;
                failed += 1;
                app.jobs_ready.notify_one();
                tracing::warn!(tenant_id = %id, "provisioning timed out");
            }
            Err(StoreError::Transition(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(failed)
}

/// Puts a `failed` tenant back into provisioning (or, with `force`, re-enqueues a tenant stuck
/// in `provisioning`). Steps already done are not repeated. `audit` (who asked, from where) is
/// recorded in the same transaction, with the status the tenant was in; a refused retry
/// records nothing, as it changes nothing.
pub async fn retry(
    app: &AppState,
    tenant_id: &TenantId,
    force: bool,
    actor: &str,
    audit: AuditEntry,
) -> StoreResult<TenantStatus> {
    let tenant = app
        .store
        .tenant(tenant_id)
        .await?
        .ok_or(StoreError::NotFound("tenant"))?;
    // Only a failed tenant is retried (an operator may also approve an enterprise deal in
    // sales review, or force a stuck one); an unpaid tenant is never provisioned this way.
    let allowed = match tenant.status {
        TenantStatus::Failed => true,
        TenantStatus::SalesReview => actor == "operator",
        TenantStatus::Provisioning => force,
        _ => false,
    };
    if !allowed {
        return Err(StoreError::Transition(crate::domain::TransitionError {
            from: tenant.status,
            to: TenantStatus::Provisioning,
        }));
    }
    let mut tx = app.store.begin().await?;
    if tenant.status == TenantStatus::Provisioning {
        tx.record_forced_restart(tenant_id, &format!("forced retry by {actor}"), actor)
            .await?;
    } else {
        tx.transition_tenant(
            tenant_id,
            TenantStatus::Provisioning,
            &format!("retry requested by {actor}"),
            actor,
        )
        .await?;
    }
    // A job already queued (waiting out a backoff) runs now, with a fresh attempt budget.
    tx.enqueue_fresh(job(tenant_id, app.settings.max_provisioning_retries))
        .await?;
    tx.audit(
        &audit
            .target(tenant_id.as_str())
            .with("from", tenant.status.as_str())
            .with("force", force),
    )
    .await?;
    tx.commit().await?;
    app.jobs_ready.notify_one();
    Ok(TenantStatus::Provisioning)
}
