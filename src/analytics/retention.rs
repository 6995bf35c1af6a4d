//! Retention of raw events (seed "Compliance": event logs kept 90 days). A periodic job deletes
//! activation events older than `EVENT_RETENTION_DAYS` and expires the raw payloads of Stripe
//! events received before then. Nothing the metrics read is lost: every event was counted in
//! `activation_event_daily` when it was stored, and the funnel, cohorts and wizard counts come
//! from the tenants' rows and their rollups (migration 0015), which retention never touches.

use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::jobs::{Done, JobKind, JobRef, Task};
use crate::store::{Store, StoreResult, now_ms};
use crate::with_pool;

/// How often retention runs.
pub const RETENTION_EVERY_MS: i64 = 3_600_000;

/// Rows per statement, so a large backlog never holds the writer for long.
const BATCH: i64 = 5_000;

/// What one run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub events_deleted: u64,
    pub payloads_expired: u64,
}

impl Store {
    /// Deletes activation events that occurred before `cutoff` (ms) and expires the payloads of
    /// webhook events received before it (their id, type, times and outcome stay: they answer
    /// "was this delivery processed?" without the customer data it carried).
    pub async fn sweep_old_events(&self, cutoff: i64) -> StoreResult<Swept> {
        let mut swept = Swept::default();
        loop {
            let n = with_pool!(self, |pool| {
                sqlx::query(
                    "DELETE FROM activation_events WHERE id IN \
                     (SELECT id FROM activation_events WHERE occurred_at < $1 LIMIT $2)",
                )
                .bind(cutoff)
                .bind(BATCH)
                .execute(pool)
                .await?
                .rows_affected()
            });
            swept.events_deleted += n;
            if n < BATCH as u64 {
                break;
            }
        }
        loop {
            let n = with_pool!(self, |pool| {
                sqlx::query(
                    "UPDATE webhook_events SET payload = '{\"expired\":true}' WHERE id IN \
                     (SELECT id FROM webhook_events WHERE received_at < $1 \
                      AND payload <> '{\"expired\":true}' AND payload <> '{\"erased\":true}' \
                      ORDER BY received_at LIMIT $2)",
                )
                .bind(cutoff)
                .bind(BATCH)
                .execute(pool)
                .await?
                .rows_affected()
            });
            swept.payloads_expired += n;
            if n < BATCH as u64 {
                break;
            }
        }
        Ok(swept)
    }
}

/// Periodic: applies `EVENT_RETENTION_DAYS`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Retention {}

impl Task for Retention {
    type Context = AppState;
    const KIND: JobKind = JobKind::new("event_retention", 0);

    async fn run(&self, app: &AppState, _: JobRef<'_>) -> Result<Done, String> {
        let days = i64::from(app.settings.event_retention_days);
        let swept = app
            .store
            .sweep_old_events(now_ms() - days * 86_400_000)
            .await
            .map_err(|e| e.to_string())?;
        if swept != Swept::default() {
            tracing::info!(
                events_deleted = swept.events_deleted,
                payloads_expired = swept.payloads_expired,
                retention_days = days,
                "event retention"
            );
        }
        Ok(Done::ByWorker)
    }
}
