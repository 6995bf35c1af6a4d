//! The provisioning pipeline (DESIGN.md "Provisioning pipeline"): `namespace` → `api_key` →
//! `sample_data` → `welcome_email` → `active`. Each step is recorded in `provisioning_steps`; a
//! step whose record exists is never run again, and the steps that write (key, email, status)
//! record themselves in the same transaction as their write, so a crash or a second worker can
//! never issue two keys or two welcome emails.

use std::collections::HashMap;
use std::time::Instant;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::domain::{TenantId, TenantStatus};
use crate::email::templates;
use crate::jobs::{JobKind, NewJob};
use crate::metrics::Counters;
use crate::store::{Store, StoreError, StoreResult, Tx, now_ms};
use crate::workspace::api_keys::scopes;
use crate::workspace::vectors::VectorRecord;
use crate::workspace::{embedder, namespace_for, sample_data};
use crate::{with_conn, with_reader};

/// The steps, in order.
pub const STEPS: [&str; 4] = ["namespace", "api_key", "sample_data", "welcome_email"];

/// Payload of a provisioning job.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProvisionJob {
    pub tenant_id: String,
}

/// The job that provisions `tenant`, at most one queued per tenant.
pub fn job(tenant: &TenantId, max_attempts: u32) -> NewJob {
    NewJob::new(
        JobKind::ProvisionTenant,
        &ProvisionJob {
            tenant_id: tenant.to_string(),
        },
        max_attempts,
    )
    .dedupe(format!("provision:{tenant}"))
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

impl Tx {
    /// Records a step; false if it was already recorded (another run got there first).
    async fn record_step(
        &mut self,
        tenant: &TenantId,
        step: &str,
        outcome: &str,
        detail: Option<&str>,
        started: Instant,
    ) -> StoreResult<bool> {
        let n = with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO provisioning_steps (tenant_id, step, outcome, detail, duration_ms, completed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, step) DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(step)
            .bind(outcome)
            .bind(detail)
            .bind(started.elapsed().as_millis() as i64)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
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
/// late or repeated job never moves a tenant.
#[tracing::instrument(skip_all, fields(tenant_id = %tenant_id))]
pub async fn run(app: &AppState, tenant_id: &TenantId) -> Result<(), StepError> {
    let store = &app.store;
    let Some(tenant) = store
        .tenant(tenant_id)
        .await
        .map_err(|e| step_err("namespace")(&e))?
    else {
        return Ok(());
    };
    if tenant.status != TenantStatus::Provisioning {
        tracing::info!(status = %tenant.status, "provisioning skipped: tenant is not provisioning");
        return Ok(());
    }
    let done: HashMap<String, StepRecord> = store
        .provisioning_steps(tenant_id)
        .await
        .map_err(|e| step_err("namespace")(&e))?
        .into_iter()
        .map(|r| (r.step.clone(), r))
        .collect();
    let namespace = namespace_for(tenant_id);

    // Creating a namespace is idempotent, so it is recorded with the rest in the final
    // transaction: if that fails, the next attempt simply creates it again.
    let namespace_started = if done.contains_key("namespace") {
        None
    } else {
        let err = step_err("namespace");
        let started = Instant::now();
        app.vectors
            .create_namespace(tenant_id.as_str(), &namespace)
            .await
            .map_err(|e| err(&e))?;
        Some(started)
    };

    // Sample documents are upserted (idempotently) before the final transaction, which records
    // their outcome.
    let sample = if done.contains_key("sample_data") {
        None
    } else {
        let started = Instant::now();
        Some((sample_outcome(app, tenant_id, &namespace).await, started))
    };

    // Everything that writes our own tables commits in one transaction, each step together with
    // its record: the namespace, the first key, the sample-data outcome, the welcome email and
    // `active`. A step record that already exists means another run got there first: roll back
    // and stop.
    let err = step_err("api_key");
    let mut tx = store.begin().await.map_err(|e| err(&e))?;
    if let Some(started) = namespace_started
        && !tx
            .record_step(tenant_id, "namespace", "done", Some(&namespace), started)
            .await
            .map_err(|e| step_err("namespace")(&e))?
    {
        return Ok(());
    }
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
        if !tx
            .record_step(tenant_id, "api_key", "done", Some(&key.key_id), started)
            .await
            .map_err(|e| err(&e))?
        {
            return Ok(());
        }
    }
    if let Some(((outcome, detail, temp_key), started)) = sample {
        let err = step_err("sample_data");
        // The temporary sample-data credential is revoked with the commit; should this
        // transaction fail, it still expires within ten minutes.
        if let Some(key_id) = temp_key {
            tx.revoke_api_key(tenant_id, &key_id)
                .await
                .map_err(|e| err(&e))?;
        }
        if !tx
            .record_step(tenant_id, "sample_data", outcome, Some(&detail), started)
            .await
            .map_err(|e| err(&e))?
        {
            return Ok(());
        }
    }
    if !done.contains_key("welcome_email") {
        let err = step_err("welcome_email");
        let started = Instant::now();
        let hours = app.settings.jwt_expiry_hours;
        let token = tx
            .create_login_token(tenant_id, "magic_login", i64::from(hours) * 3_600_000)
            .await
            .map_err(|e| err(&e))?;
        let base = &app.settings.app_url;
        let login_url = base
            .join(&format!("login/magic?token={token}"))
            .map_err(|e| err(&e))?;
        let docs_url = base.join("docs").map_err(|e| err(&e))?;
        let email = templates::welcome(
            tenant_id.as_str(),
            &tenant.email,
            &tenant.company_name,
            login_url.as_str(),
            docs_url.as_str(),
            hours,
        );
        let outbox_id = tx
            .queue_email(&email, &app.settings.sendgrid_from_email)
            .await
            .map_err(|e| err(&e))?;
        if !tx
            .record_step(
                tenant_id,
                "welcome_email",
                "done",
                outbox_id.as_deref(),
                started,
            )
            .await
            .map_err(|e| err(&e))?
        {
            return Ok(());
        }
    }
    let err = step_err("welcome_email");
    match tx
        .transition_tenant(
            tenant_id,
            TenantStatus::Active,
            "all provisioning steps done",
            "provisioning",
        )
        .await
    {
        Ok(_) => {
            tx.commit().await.map_err(|e| err(&e))?;
            app.jobs_ready.notify_waiters();
            Counters::inc(&app.metrics.tenants_provisioned);
            tracing::info!("tenant active");
            Ok(())
        }
        // Someone else finished it, or it was canceled meanwhile: roll back, nothing to do.
        Err(StoreError::Transition(_)) => Ok(()),
        Err(e) => Err(err(&e)),
    }
}

/// Loads the sample documents unless disabled; a failure is an outcome, not an error: the
/// workspace is then empty but works, and the notice says so. Also returns the temporary
/// credential to revoke.
async fn sample_outcome(
    app: &AppState,
    tenant_id: &TenantId,
    namespace: &str,
) -> (&'static str, String, Option<String>) {
    if !app.settings.sample_data_enabled {
        return ("skipped", "SAMPLE_DATA_ENABLED=false".to_string(), None);
    }
    let (result, temp_key) = load_sample_data(app, tenant_id, namespace).await;
    match result {
        Ok(n) => ("done", format!("{n} sample documents loaded"), temp_key),
        Err(e) => {
            tracing::warn!(error = %e, "sample data failed; the workspace stays empty but working");
            (
                "failed",
                format!(
                    "Sample documents could not be loaded ({e}); your workspace is empty but works."
                ),
                temp_key,
            )
        }
    }
}

/// Embeds and upserts the sample documents with a temporary credential that may only write
/// sample data. Returns the outcome and the credential's id (for the caller to revoke).
async fn load_sample_data(
    app: &AppState,
    tenant_id: &TenantId,
    namespace: &str,
) -> (Result<usize, String>, Option<String>) {
    let temp = async {
        let mut tx = app.store.begin().await?;
        let key = tx
            .issue_api_key(
                &app.signer,
                tenant_id,
                "provisioning: sample data",
                &[scopes::SAMPLE_DATA_WRITE],
                Some(600),
                false,
            )
            .await?;
        tx.commit().await?;
        Ok::<_, StoreError>(key)
    }
    .await;
    let temp = match temp {
        Ok(t) => t,
        Err(e) => return (Err(e.to_string()), None),
    };
    let result = async {
        let principal = app
            .store
            .authenticate_api_key(&app.signer, secrecy::ExposeSecret::expose_secret(&temp.token))
            .await
            .map_err(|e| e.to_string())?;
        if principal.tenant_id != *tenant_id || !principal.has_scope(scopes::SAMPLE_DATA_WRITE) {
            return Err("temporary credential does not allow sample data writes".to_string());
        }
        let records: Vec<VectorRecord> = sample_data::documents()
            .iter()
            .map(|d| VectorRecord {
                id: format!("sample:{}#0", d.id),
                values: embedder::embed(&format!("{}\n{}", d.title, d.content)),
                metadata: serde_json::json!({
                    "document_id": d.id, "title": d.title, "text": d.content, "sample": true, "metadata": d.metadata,
                }),
            })
            .collect();
        app.vectors.upsert(namespace, &records).await.map_err(|e| e.to_string())
    }
    .await;
    (result, Some(temp.key_id))
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
        Ok(_) => tx.commit().await,
        Err(StoreError::Transition(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Moves tenants stuck in `provisioning` past the timeout to `failed`. Returns how many.
pub async fn sweep(app: &AppState) -> StoreResult<usize> {
    let timeout = app.settings.provisioning_timeout_seconds;
    let cutoff = now_ms() - (timeout as i64) * 1000;
    let stuck: Vec<String> = with_reader!(&app.store, |pool| {
        sqlx::query_scalar(
            "SELECT id FROM tenants WHERE status = 'provisioning' AND updated_at < $1 LIMIT 500",
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
                tx.commit().await?;
                failed += 1;
                tracing::warn!(tenant_id = %id, "provisioning timed out");
            }
            Err(StoreError::Transition(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(failed)
}

/// Puts a `failed` tenant back into provisioning (or, with `force`, re-enqueues a tenant stuck
/// in `provisioning`). Steps already done are not repeated.
pub async fn retry(
    app: &AppState,
    tenant_id: &TenantId,
    force: bool,
    actor: &str,
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
    if tenant.status != TenantStatus::Provisioning {
        tx.transition_tenant(
            tenant_id,
            TenantStatus::Provisioning,
            &format!("retry requested by {actor}"),
            actor,
        )
        .await?;
    }
    tx.enqueue(job(tenant_id, app.settings.max_provisioning_retries))
        .await?;
    tx.commit().await?;
    app.jobs_ready.notify_waiters();
    Ok(TenantStatus::Provisioning)
}

impl Tx {
    /// Creates a single-use login token; only its hash is stored. Returns the token.
    pub async fn create_login_token(
        &mut self,
        tenant: &TenantId,
        purpose: &str,
        ttl_ms: i64,
    ) -> StoreResult<String> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = now_ms();
        with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO login_tokens (token_hash, tenant_id, purpose, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(hex::encode(Sha256::digest(token.as_bytes())))
            .bind(tenant.as_str())
            .bind(purpose)
            .bind(now + ttl_ms)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        });
        Ok(token)
    }
}
