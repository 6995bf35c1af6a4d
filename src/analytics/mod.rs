//! Activation: the milestones the server records itself when they really happen (seed names),
//! once per tenant, with when and how. Analytics (funnel, at-risk) reads them from here.
//!
//! A feature module every other one may record into: uses only `store` and `domain`; must not
//! import `app`, `http`, `jobs` or another feature module.

pub mod abtest;
pub mod at_risk;
pub mod metrics;
pub mod wizard;

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
    /// The first `/v1` call made with a key the tenant created itself.
    IntegrationConfigured,
}

impl Milestone {
    pub fn as_str(self) -> &'static str {
        match self {
            Milestone::FirstLogin => "first_login",
            Milestone::FirstDocumentUpload => "first_document_upload",
            Milestone::FirstQueryExecuted => "first_query_executed",
            Milestone::IntegrationConfigured => "integration_configured",
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
        let now = now_ms();
        let mut tx = self.begin().await?;
        let n = crate::with_conn!(&mut tx, |conn| {
            let n = sqlx::query(RECORD_SQL)
                .bind(tenant.as_str())
                .bind(milestone.as_str())
                .bind(now)
                .bind(detail)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if n == 1 {
                let column = milestone_column(milestone.as_str()).unwrap_or("first_login_at");
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE tenant_activation SET {column} = COALESCE({column}, $1) WHERE tenant_id = $2"
                )))
                .bind(now)
                .bind(tenant.as_str())
                .execute(&mut *conn)
                .await?;
                sqlx::query(INSERT_EVENT_SQL)
                    .bind(format!("aev_{}", ulid::Ulid::new()))
                    .bind(tenant.as_str())
                    .bind(milestone.as_str())
                    .bind("server")
                    .bind(None::<String>)
                    .bind(detail.map_or_else(
                        || "{}".to_string(),
                        |d| serde_json::json!({"detail": d}).to_string(),
                    ))
                    .bind(0_i64)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
            }
            n
        });
        tx.commit().await?;
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

/// The event types `POST /activation/track` accepts: the seed's six milestones and the
/// wizard's three.
pub const EVENT_TYPES: [&str; 9] = [
    "signup_completed",
    "payment_confirmed",
    "first_login",
    "first_document_upload",
    "first_query_executed",
    "integration_configured",
    "wizard_step_viewed",
    "wizard_step_completed",
    "wizard_step_skipped",
];

/// The milestone types the server sees happen itself, with the `tenant_activation` column that
/// holds when (a client report of one is checked against it).
const MILESTONE_COLUMNS: [(&str, &str); 6] = [
    ("signup_completed", "signed_up_at"),
    ("payment_confirmed", "paid_at"),
    ("first_login", "first_login_at"),
    ("first_document_upload", "first_document_at"),
    ("first_query_executed", "first_query_at"),
    ("integration_configured", "integration_at"),
];

fn milestone_column(event_type: &str) -> Option<&'static str> {
    MILESTONE_COLUMNS
        .iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, c)| *c)
}

const INSERT_EVENT_SQL: &str = "INSERT INTO activation_events (id, tenant_id, event_type, source, client_event_id, metadata, flagged, occurred_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// What `POST /activation/track` stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TrackedEvent {
    pub id: String,
    pub tenant_id: String,
    pub event_type: String,
    /// `client` here: reported by the caller.
    pub source: String,
    /// A milestone the server has no record of for this tenant (client tracking blocked or
    /// faked: kept, and counted in the metrics' discrepancy rates).
    pub flagged: bool,
    /// RFC 3339.
    pub occurred_at: String,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// True when the same `event_id` was tracked before: the earlier record is returned.
    pub duplicate: bool,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: String,
    event_type: String,
    source: String,
    metadata: String,
    flagged: i64,
    occurred_at: i64,
}

impl EventRow {
    fn into_tracked(self, tenant: &TenantId, duplicate: bool) -> TrackedEvent {
        TrackedEvent {
            id: self.id,
            tenant_id: tenant.to_string(),
            event_type: self.event_type,
            source: self.source,
            flagged: self.flagged != 0,
            occurred_at: crate::store::ms_to_datetime(self.occurred_at).to_rfc3339(),
            metadata: serde_json::from_str(&self.metadata).unwrap_or(serde_json::Value::Null),
            duplicate,
        }
    }
}

impl Store {
    /// Stores a client-reported event (`event_type` one of [`EVENT_TYPES`], `metadata` a JSON
    /// object already checked by the caller). With `client_event_id`, a retry returns the
    /// first record instead of storing a second.
    pub async fn track_client_event(
        &self,
        tenant: &TenantId,
        event_type: &str,
        metadata: &serde_json::Value,
        client_event_id: Option<&str>,
    ) -> StoreResult<TrackedEvent> {
        let flagged = match milestone_column(event_type) {
            Some(column) => {
                let seen: Option<Option<i64>> = with_reader!(self, |pool| {
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT {column} FROM tenant_activation WHERE tenant_id = $1"
                    )))
                    .bind(tenant.as_str())
                    .fetch_optional(pool)
                    .await?
                });
                seen.flatten().is_none()
            }
            None => false,
        };
        let id = format!("aev_{}", ulid::Ulid::new());
        let now = now_ms();
        let inserted = with_pool!(self, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{INSERT_EVENT_SQL} ON CONFLICT (tenant_id, client_event_id) DO NOTHING"
            )))
            .bind(&id)
            .bind(tenant.as_str())
            .bind(event_type)
            .bind("client")
            .bind(client_event_id)
            .bind(metadata.to_string())
            .bind(i64::from(flagged))
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        let row: EventRow = with_pool!(self, |pool| {
            if inserted == 1 {
                sqlx::query_as(
                    "SELECT id, event_type, source, metadata, flagged, occurred_at FROM activation_events WHERE id = $1",
                )
                .bind(&id)
                .fetch_one(pool)
                .await?
            } else {
                sqlx::query_as(
                    "SELECT id, event_type, source, metadata, flagged, occurred_at FROM activation_events \
                     WHERE tenant_id = $1 AND client_event_id = $2",
                )
                .bind(tenant.as_str())
                .bind(client_event_id)
                .fetch_one(pool)
                .await?
            }
        });
        Ok(row.into_tracked(tenant, inserted == 0))
    }
}
