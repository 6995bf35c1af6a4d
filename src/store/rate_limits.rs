//! Fixed-window counters shared by every process through the database.

use crate::with_pool;

use super::{Store, StoreResult};

/// Whether a hit is allowed and, if not, when the window reopens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub hits: i64,
    pub retry_after_secs: u64,
}

impl Store {
    /// Counts one hit on `key` and decides against `limit` hits per `window_ms`. The window opens
    /// at the first hit after the previous one closed. One atomic upsert, so concurrent requests
    /// in several processes never both take the last slot.
    pub async fn hit_rate_limit(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now: i64,
    ) -> StoreResult<RateDecision> {
        let (window_start, hits): (i64, i64) = with_pool!(self, |pool| {
            sqlx::query_as(
                "INSERT INTO rate_limits (key, window_start, hits) VALUES ($1, $2, 1) \
                 ON CONFLICT (key) DO UPDATE SET \
                 hits = CASE WHEN rate_limits.window_start <= $3 THEN 1 ELSE rate_limits.hits + 1 END, \
                 window_start = CASE WHEN rate_limits.window_start <= $3 THEN $2 ELSE rate_limits.window_start END \
                 RETURNING window_start, hits",
            )
            .bind(key)
            .bind(now)
            .bind(now - window_ms)
            .fetch_one(pool)
            .await?
        });
        let allowed = hits <= i64::from(limit);
        let reopens_in_ms = (window_start + window_ms - now).max(0);
        Ok(RateDecision {
            allowed,
            hits,
            retry_after_secs: if allowed {
                0
            } else {
                (reopens_in_ms as u64).div_ceil(1000).max(1)
            },
        })
    }

    /// Drops counters whose window closed before `older_than`.
    pub async fn prune_rate_limits(&self, older_than: i64) -> StoreResult<u64> {
        Ok(with_pool!(self, |pool| {
            sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
                .bind(older_than)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}
