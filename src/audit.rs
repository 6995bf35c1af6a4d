//! The audit log's retention: entries older than `AUDIT_RETENTION_DAYS` are deleted in batches
//! by a periodic job ([`Prune`]), the only delete the log ever sees. Recording is a store
//! facility (`store::audit`: `Tx::audit`, `Store::audit`) and the vocabulary is the domain's
//! (`domain::audit`), so every layer can record without importing this module.
//!
//! A core module: uses `store`, `domain`, `jobs` and the application state; must not import
//! `http`, `cli`, `tasks` or a feature module (checked by `tests/layout.rs`).

use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::jobs::{Done, JobKind, JobRef, Task};
use crate::store::{StoreResult, now_ms};

/// How often the retention job runs.
pub const PRUNE_EVERY_MS: i64 = 3_600_000;

/// Entries deleted per statement.
pub const PRUNE_BATCH: i64 = 1_000;

const DAY_MS: i64 = 86_400_000;

/// Deletes every entry recorded more than `retention_days` before `now` (ms), a batch at a
/// time; how many went.
pub async fn prune(app: &AppState, now: i64) -> StoreResult<u64> {
    let cutoff = now - i64::from(app.settings.audit_retention_days) * DAY_MS;
    let mut deleted = 0;
    loop {
        let n = app.store.prune_audit(cutoff, PRUNE_BATCH).await?;
        deleted += n;
        if n < PRUNE_BATCH as u64 {
            break;
        }
    }
    if deleted > 0 {
        tracing::info!(
            deleted,
            retention_days = app.settings.audit_retention_days,
            "audit entries past retention deleted"
        );
    }
    Ok(deleted)
}

/// Periodic: applies the retention ([`prune`]).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Prune {}

impl Task for Prune {
    type Context = AppState;
    const KIND: JobKind = JobKind::new("prune_audit_log", 0);

    async fn run(&self, app: &AppState, _: JobRef<'_>) -> Result<Done, String> {
        prune(app, now_ms()).await.map_err(|e| e.to_string())?;
        Ok(Done::ByWorker)
    }
}
