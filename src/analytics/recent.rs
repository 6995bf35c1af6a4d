//! The last seven days' activation, read by the `/metrics` gauges `onboard_activation_rate_7d`
//! and `onboard_activation_tenants_7d`: of the tenants whose payment was confirmed in the
//! window, how many ran a first query. Distinct tenants, from their `tenant_activation` rows.

use crate::store::{Store, StoreResult};
use crate::with_reader;

/// The window of the 7-day activation figures, in milliseconds.
pub const WINDOW_MS: i64 = 7 * 86_400_000;

/// Tenants whose payment was confirmed in a window, and how many of them ran a first query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct RecentActivation {
    pub paid: i64,
    pub activated: i64,
}

impl Store {
    /// The tenants whose payment was confirmed at or after `since` (ms), and how many of them
    /// have run a first query (whenever: a tenant paid six days ago and active since counts).
    pub async fn recent_activation(&self, since: i64) -> StoreResult<RecentActivation> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT COUNT(*) AS paid, COUNT(first_query_at) AS activated \
                 FROM tenant_activation WHERE paid_at >= $1",
            )
            .bind(since)
            .fetch_one(pool)
            .await?
        }))
    }
}
