//! Metered usage: queries per tenant per calendar month (UTC). Counting a query must not cost
//! a database write on the query path, so this process adds them up in memory and a background
//! flush (every second, and at shutdown) writes the sums in multi-row upserts. The limit
//! check adds the unflushed count to the stored one, read at most once a second per tenant; with
//! several server processes a tenant can therefore overshoot its monthly limit by at most about
//! one second of its own traffic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Datelike, Utc};

use crate::domain::TenantId;
use crate::store::{Store, StoreResult};
use crate::{with_pool, with_reader};

/// How long a stored count is trusted before it is read again.
const STORED_TTL: Duration = Duration::from_secs(1);

/// The metering period of now, e.g. `2026-11`.
pub fn current_period() -> String {
    let now = Utc::now();
    format!("{:04}-{:02}", now.year(), now.month())
}

#[derive(Default)]
struct Counts {
    /// Counted here and not yet written.
    pending: HashMap<(TenantId, String), i64>,
    /// Stored counts as last read.
    stored: HashMap<(TenantId, String), (i64, Instant)>,
}

/// The in-process query meter.
#[derive(Clone, Default)]
pub struct UsageMeter {
    counts: Arc<Mutex<Counts>>,
}

/// Counter rows per flush statement (three parameters each).
const ROWS_PER_FLUSH: usize = 1000;

impl UsageMeter {
    /// Queries the tenant ran in `period`: stored plus not yet flushed.
    pub async fn queries(
        &self,
        store: &Store,
        tenant: &TenantId,
        period: &str,
    ) -> StoreResult<i64> {
        let key = (tenant.clone(), period.to_string());
        {
            let c = self.counts.lock().expect("usage lock");
            if let Some((n, at)) = c.stored.get(&key)
                && at.elapsed() < STORED_TTL
            {
                return Ok(n + c.pending.get(&key).copied().unwrap_or(0));
            }
        }
        let stored = store.stored_queries(tenant, period).await?;
        let mut c = self.counts.lock().expect("usage lock");
        let pending = c.pending.get(&key).copied().unwrap_or(0);
        c.stored.insert(key, (stored, Instant::now()));
        Ok(stored + pending)
    }

    /// Counts one query.
    pub fn add_query(&self, tenant: &TenantId, period: &str) {
        *self
            .counts
            .lock()
            .expect("usage lock")
            .pending
            .entry((tenant.clone(), period.to_string()))
            .or_default() += 1;
    }

    /// Writes the pending counts, a thousand counters per statement. What could not be written
    /// is put back for the next flush.
    pub async fn flush(&self, store: &Store) -> StoreResult<()> {
        let pending: Vec<((TenantId, String), i64)> =
            std::mem::take(&mut self.counts.lock().expect("usage lock").pending)
                .into_iter()
                .collect();
        for (i, batch) in pending.chunks(ROWS_PER_FLUSH).enumerate() {
            if let Err(e) = store.add_queries(batch).await {
                let mut c = self.counts.lock().expect("usage lock");
                for (key, n) in &pending[i * ROWS_PER_FLUSH..] {
                    *c.pending.entry(key.clone()).or_default() += n;
                }
                return Err(e);
            }
            // The stored counts moved: read them again next time.
            let mut c = self.counts.lock().expect("usage lock");
            for (key, _) in batch {
                c.stored.remove(key);
            }
        }
        Ok(())
    }
}

impl Store {
    /// The stored query count of a tenant in a period.
    pub async fn stored_queries(&self, tenant: &TenantId, period: &str) -> StoreResult<i64> {
        let n: Option<i64> = with_reader!(self, |pool| {
            sqlx::query_scalar(
                "SELECT queries FROM usage_counters WHERE tenant_id = $1 AND period = $2",
            )
            .bind(tenant.as_str())
            .bind(period)
            .fetch_optional(pool)
            .await?
        });
        Ok(n.unwrap_or(0))
    }

    /// Adds counts to tenants' periods, in one statement (each tenant and period at most once).
    async fn add_queries(&self, counts: &[((TenantId, String), i64)]) -> StoreResult<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO usage_counters (tenant_id, period, queries) VALUES {} \
             ON CONFLICT (tenant_id, period) DO UPDATE SET queries = usage_counters.queries + excluded.queries",
            crate::store::values_rows(counts.len(), 3)
        );
        with_pool!(self, |pool| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for ((tenant, period), n) in counts {
                q = q.bind(tenant.as_str()).bind(period.as_str()).bind(*n);
            }
            q.execute(pool).await?;
        });
        Ok(())
    }
}
