//! Activation: the milestones the server records itself when they really happen (seed names),
//! once per tenant, with when and how. Analytics (funnel, at-risk) reads them from here.
//!
//! A feature module every other one may record into: uses only `store` and `domain`; must not
//! import `app`, `http`, `jobs` or another feature module.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::domain::TenantId;
use crate::store::{Store, StoreResult, now_ms};
use crate::{with_pool, with_reader};

/// A milestone recorded by the server (seed `activation_events` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Milestone {
    FirstLogin,
    FirstDocumentUpload,
    FirstQueryExecuted,
}

impl Milestone {
    pub fn as_str(self) -> &'static str {
        match self {
            Milestone::FirstLogin => "first_login",
            Milestone::FirstDocumentUpload => "first_document_upload",
            Milestone::FirstQueryExecuted => "first_query_executed",
        }
    }
}

/// A recorded milestone.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct MilestoneRecord {
    pub milestone: String,
    /// `server` (seen by us) or `client` (reported by the tenant's app).
    pub source: String,
    pub occurred_at: i64,
    pub detail: Option<String>,
}

/// Records a milestone unless the tenant already has it.
const RECORD_SQL: &str = "INSERT INTO activation_milestones (tenant_id, milestone, source, occurred_at, detail) \
     VALUES ($1, $2, 'server', $3, $4) ON CONFLICT (tenant_id, milestone) DO NOTHING";

impl Store {
    /// Records `milestone` for `tenant` unless it already is; true when this call recorded it.
    pub async fn record_milestone(
        &self,
        tenant: &TenantId,
        milestone: Milestone,
        detail: Option<&str>,
    ) -> StoreResult<bool> {
        let n = with_pool!(self, |pool| {
            sqlx::query(RECORD_SQL)
                .bind(tenant.as_str())
                .bind(milestone.as_str())
                .bind(now_ms())
                .bind(detail)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// A tenant's milestones, oldest first.
    pub async fn milestones(&self, tenant: &TenantId) -> StoreResult<Vec<MilestoneRecord>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT milestone, source, occurred_at, detail FROM activation_milestones \
                 WHERE tenant_id = $1 ORDER BY occurred_at, milestone",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        }))
    }
}

/// Remembers which milestones this process has already seen recorded, so the hot paths (every
/// query, every upload) do not write to the database to find out again.
#[derive(Clone, Default)]
pub struct MilestoneMemo {
    seen: Arc<Mutex<HashSet<(TenantId, Milestone)>>>,
}

impl MilestoneMemo {
    /// Records the milestone once; later calls in this process cost a set lookup.
    pub async fn record(
        &self,
        store: &Store,
        tenant: &TenantId,
        milestone: Milestone,
        detail: Option<&str>,
    ) -> StoreResult<bool> {
        let key = (tenant.clone(), milestone);
        if self.seen.lock().expect("memo lock").contains(&key) {
            return Ok(false);
        }
        let recorded = store.record_milestone(tenant, milestone, detail).await?;
        self.seen.lock().expect("memo lock").insert(key);
        Ok(recorded)
    }
}
