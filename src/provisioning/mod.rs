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
use crate::{with_conn, with_pool};

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
        let mut rows: Vec<StepRecord> = with_pool!(self, |pool| {
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

    if !done.contains_key("namespace") {
        let err = step_err("namespace");
        let started = Instant::now();
        app.vectors
            .create_namespace(tenant_id.as_str(), &namespace)
            .await
            .map_err(|e| err(&e))?;
        let mut tx = store.begin().await.map_err(|e| err(&e))?;
        tx.record_step(tenant_id, "namespace", "done", Some(&namespace), started)
            .await
            .map_err(|e| err(&e))?;
        tx.commit().await.map_err(|e| err(&e))?;
    }

    if !done.contains_key("api_key") {
        let err = step_err("api_key");
        let started = Instant::now();
        let mut tx = store.begin().await.map_err(|e| err(&e))?;
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
        if tx
            .record_step(tenant_id, "api_key", "done", Some(&key.key_id), started)
            .await
            .map_err(|e| err(&e))?
        {
            tx.commit().await.map_err(|e| err(&e))?;
        }
    }

    if !done.contains_key("sample_data") {
        let err = step_err("sample_data");
        let started = Instant::now();
        let (outcome, detail) = if !app.settings.sample_data_enabled {
            ("skipped", "SAMPLE_DATA_ENABLED=false".to_string())
        } else {
            match load_sample_data(app, tenant_id, &namespace).await {
                Ok(n) => ("done", format!("{n} sample documents loaded")),
                Err(e) => {
                    tracing::warn!(error = %e, "sample data failed; the workspace stays empty but working");
                    (
                        "failed",
                        format!(
                            "Sample documents could not be loaded ({e}); your workspace is empty but works."
                        ),
                    )
                }
            }
        };
        let mut tx = store.begin().await.map_err(|e| err(&e))?;
        tx.record_step(tenant_id, "sample_data", outcome, Some(&detail), started)
            .await
            .map_err(|e| err(&e))?;
        tx.commit().await.map_err(|e| err(&e))?;
    }

    if !done.contains_key("welcome_email") {
        let err = step_err("welcome_email");
        let started = Instant::now();
        let mut tx = store.begin().await.map_err(|e| err(&e))?;
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
        if tx
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
            tx.commit().await.map_err(|e| err(&e))?;
            app.jobs_ready.notify_waiters();
        }
    }

    let err = step_err("welcome_email");
    let mut tx = store.begin().await.map_err(|e| err(&e))?;
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
            Counters::inc(&app.metrics.tenants_provisioned);
            tracing::info!("tenant active");
            Ok(())
        }
        // Someone else finished it, or it was canceled meanwhile: nothing to do.
        Err(StoreError::Transition(_)) => Ok(()),
        Err(e) => Err(err(&e)),
    }
}

/// Embeds and upserts the sample documents with a temporary credential that may only write
/// sample data; the credential is revoked afterwards.
async fn load_sample_data(
    app: &AppState,
    tenant_id: &TenantId,
    namespace: &str,
) -> Result<usize, String> {
    let mut tx = app.store.begin().await.map_err(|e| e.to_string())?;
    let temp = tx
        .issue_api_key(
            &app.signer,
            tenant_id,
            "provisioning: sample data",
            &[scopes::SAMPLE_DATA_WRITE],
            Some(600),
            false,
        )
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    let result = async {
        let principal = app
            .store
            .authenticate_api_key(&app.signer, secrecy::ExposeSecret::expose_secret(&temp.token))
            .await
            .map_err(|e| e.to_string())?;
        if principal.tenant_id != *tenant_id || !principal.has_scope(scopes::SAMPLE_DATA_WRITE) {
            return Err("temporary credential does not allow sample data writes".to_string());
        }
        let docs = sample_data::documents();
        let records: Vec<VectorRecord> = docs
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
    if let Err(e) = app.store.revoke_api_key(tenant_id, &temp.key_id).await {
        tracing::warn!(error = %e, "could not revoke the temporary sample-data credential");
    }
    result
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
    let stuck: Vec<String> = with_pool!(&app.store, |pool| {
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
