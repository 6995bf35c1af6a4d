//! Metered usage: queries per tenant per calendar month (UTC). Counting a query must not cost
//! a database write on the query path, so this process adds them up in memory and a background
//! flush (every second, and at shutdown) writes the sums with one upsert per tenant. The limit
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

impl UsageMeter {
    /// Queries the tenant ran in `period`: stored plus not yet flushed.
    pub async fn queries(
        &self,
        store: &Store,
        tenant: &TenantId,
        period: &str,
    ) -> StoreResult<i64> {
        let key = (tenant.clone(), period.to_string());
        let cached = {
            let c = self.counts.lock().expect("usage lock");
            c.stored
                .get(&key)
                .filter(|(_, at)| at.elapsed() < STORED_TTL)
                .map(|(n, _)| *n)
        };
        let stored = match cached {
            Some(n) => n,
            None => {
                let n = store.stored_queries(tenant, period).await?;
                self.counts
                    .lock()
                    .expect("usage lock")
                    .stored
                    .insert(key.clone(), (n, Instant::now()));
                n
            }
        };
        let pending = self
            .counts
            .lock()
            .expect("usage lock")
            .pending
            .get(&key)
            .copied()
            .unwrap_or(0);
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

    /// Writes the pending counts. On failure they are put back for the next flush.
    pub async fn flush(&self, store: &Store) -> StoreResult<()> {
        let pending = std::mem::take(&mut self.counts.lock().expect("usage lock").pending);
        let mut failed = None;
        let mut unwritten = HashMap::new();
        for ((tenant, period), n) in pending {
            if failed.is_none() {
                match store.add_queries(&tenant, &period, n).await {
                    Ok(()) => {
                        let mut c = self.counts.lock().expect("usage lock");
                        // The stored count moved: read it again next time.
                        c.stored.remove(&(tenant, period));
                        continue;
                    }
                    Err(e) => failed = Some(e),
                }
            }
            unwritten.insert((tenant, period), n);
        }
        if !unwritten.is_empty() {
            let mut c = self.counts.lock().expect("usage lock");
            for (k, n) in unwritten {
                *c.pending.entry(k).or_default() += n;
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
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

    /// Adds `n` queries to a tenant's period.
    pub async fn add_queries(&self, tenant: &TenantId, period: &str, n: i64) -> StoreResult<()> {
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO usage_counters (tenant_id, period, queries) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, period) DO UPDATE SET queries = usage_counters.queries + excluded.queries",
            )
            .bind(tenant.as_str())
            .bind(period)
            .bind(n)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
