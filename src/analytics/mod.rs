//! Activation: the milestones the server records itself when they really happen (seed names),
//! once per tenant, with when and how. Analytics (funnel, at-risk) reads them from here.
//!
//! A feature module every other one may record into: uses `store` and `domain`, and `app` and
//! `jobs` only for its periodic job (`retention`); must not import `http` or another feature
//! module.

pub mod abtest;
pub mod at_risk;
pub mod ingest;
pub mod metrics;
pub mod recent;
pub mod retention;
pub mod wizard;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::domain::TenantId;
use crate::store::{Store, StoreResult, now_ms};
use crate::with_reader;

/// A milestone recorded by the server (seed `activation_events` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Milestone {
    FirstLogin,
    FirstDocumentUpload,
    FirstQueryExecuted,
    /// The first `/v1` call made with a key the tenant created itself.
    IntegrationConfigured,
    /// The first invited teammate accepted (the funnel's optional "invited a teammate").
    MemberJoined,
}

impl Milestone {
    pub fn as_str(self) -> &'static str {
        match self {
            Milestone::FirstLogin => "first_login",
            Milestone::FirstDocumentUpload => "first_document_upload",
            Milestone::FirstQueryExecuted => "first_query_executed",
            Milestone::IntegrationConfigured => "integration_configured",
            Milestone::MemberJoined => "member_joined",
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

/// A milestone that one call recorded (the tenant did not have it yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Milliseconds from the tenant's signup to this milestone (for the time-to-activation
    /// histogram), when the signup is on record.
    pub since_signup_ms: Option<i64>,
}

impl Store {
    /// Records `milestone` for `tenant` unless it already is; `Some` when this call recorded it.
    pub async fn record_milestone(
        &self,
        tenant: &TenantId,
        milestone: Milestone,
        detail: Option<&str>,
    ) -> StoreResult<Option<Recorded>> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let recorded = crate::with_conn!(&mut tx, |conn| {
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
                let signed_up_at: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "UPDATE tenant_activation SET {column} = COALESCE({column}, $1) WHERE tenant_id = $2 \
                     RETURNING signed_up_at"
                )))
                .bind(now)
                .bind(tenant.as_str())
                .fetch_optional(&mut *conn)
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
                Some(Recorded {
                    since_signup_ms: signed_up_at.map(|at| (now - at).max(0)),
                })
            } else {
                None
            }
        });
        tx.commit().await?;
        Ok(recorded)
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

impl Store {
    /// A tenant's latest `limit` activation events, server-seen and client-reported, newest
    /// first (retention may have deleted older ones).
    pub async fn activation_events(
        &self,
        tenant: &TenantId,
        limit: i64,
    ) -> StoreResult<Vec<TrackedEvent>> {
        let rows: Vec<EventRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT id, event_type, source, metadata, flagged, occurred_at FROM activation_events \
                 WHERE tenant_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2",
            )
            .bind(tenant.as_str())
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| r.into_tracked(tenant, false))
            .collect())
    }
}

/// Remembers which milestones this process has already seen recorded, so the hot paths (every
/// query, every upload) do not write to the database to find out again.
#[derive(Clone, Default)]
pub struct MilestoneMemo {
    seen: Arc<Mutex<HashSet<(TenantId, Milestone)>>>,
}

impl MilestoneMemo {
    /// Records the milestone once; later calls in this process cost a set lookup. `Some` when
    /// this call recorded it.
    pub async fn record(
        &self,
        store: &Store,
        tenant: &TenantId,
        milestone: Milestone,
        detail: Option<&str>,
    ) -> StoreResult<Option<Recorded>> {
        let key = (tenant.clone(), milestone);
        if self.seen.lock().expect("memo lock").contains(&key) {
            return Ok(None);
        }
        let recorded = store.record_milestone(tenant, milestone, detail).await?;
        self.seen.lock().expect("memo lock").insert(key);
        Ok(recorded)
    }
}

/// The event types `POST /activation/track` accepts: the seed's six milestones, a teammate
/// joining, and the wizard's three.
pub const EVENT_TYPES: [&str; 10] = [
    "signup_completed",
    "payment_confirmed",
    "first_login",
    "first_document_upload",
    "first_query_executed",
    "integration_configured",
    "member_joined",
    "wizard_step_viewed",
    "wizard_step_completed",
    "wizard_step_skipped",
];

/// The milestone types the server sees happen itself, with the `tenant_activation` column that
/// holds when (a client report of one is checked against it).
const MILESTONE_COLUMNS: [(&str, &str); 7] = [
    ("signup_completed", "signed_up_at"),
    ("payment_confirmed", "paid_at"),
    ("first_login", "first_login_at"),
    ("first_document_upload", "first_document_at"),
    ("first_query_executed", "first_query_at"),
    ("integration_configured", "integration_at"),
    ("member_joined", "member_joined_at"),
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

/// A client-reported event to store (`event_type` one of [`EVENT_TYPES`], `metadata` a JSON
/// object already checked by the caller).
#[derive(Debug, Clone)]
pub struct ClientEvent {
    pub tenant: TenantId,
    pub event_type: String,
    pub metadata: serde_json::Value,
    /// The client's id: a retry with the same id returns the first record.
    pub client_event_id: Option<String>,
}

/// The funnel times a client milestone is checked against.
#[derive(sqlx::FromRow)]
struct Seen {
    tenant_id: String,
    signed_up_at: Option<i64>,
    paid_at: Option<i64>,
    first_login_at: Option<i64>,
    first_document_at: Option<i64>,
    first_query_at: Option<i64>,
    integration_at: Option<i64>,
}

impl Seen {
    fn has(&self, column: &str) -> bool {
        match column {
            "signed_up_at" => self.signed_up_at.is_some(),
            "paid_at" => self.paid_at.is_some(),
            "first_login_at" => self.first_login_at.is_some(),
            "first_document_at" => self.first_document_at.is_some(),
            "first_query_at" => self.first_query_at.is_some(),
            "integration_at" => self.integration_at.is_some(),
            _ => false,
        }
    }
}

/// `n` placeholders from `$first`, comma-separated.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Stores client-reported events in one transaction (one commit for the lot: the batching
    /// of [`ingest::Ingest`]). A milestone the server has no record of is flagged. An event
    /// whose `client_event_id` the tenant used before is not stored again: the first record is
    /// returned, marked `duplicate`. Results are in the order of `events`.
    pub async fn track_client_events(
        &self,
        events: &[ClientEvent],
    ) -> StoreResult<Vec<TrackedEvent>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut tenants: Vec<&str> = events
            .iter()
            .filter(|e| milestone_column(&e.event_type).is_some())
            .map(|e| e.tenant.as_str())
            .collect();
        tenants.sort_unstable();
        tenants.dedup();
        let mut tx = self.begin().await?;
        let tracked = crate::with_conn!(&mut tx, |conn| {
            let mut seen: Vec<Seen> = Vec::new();
            if !tenants.is_empty() {
                let sql = format!(
                    "SELECT tenant_id, signed_up_at, paid_at, first_login_at, first_document_at, \
                     first_query_at, integration_at FROM tenant_activation WHERE tenant_id IN ({})",
                    placeholders(1, tenants.len())
                );
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for t in &tenants {
                    q = q.bind(*t);
                }
                seen = q.fetch_all(&mut *conn).await?;
            }
            let mut rows: Vec<TrackedEvent> = events
                .iter()
                .map(|e| {
                    let flagged = milestone_column(&e.event_type).is_some_and(|column| {
                        !seen
                            .iter()
                            .any(|s| s.tenant_id == e.tenant.as_str() && s.has(column))
                    });
                    TrackedEvent {
                        id: format!("aev_{}", ulid::Ulid::new()),
                        tenant_id: e.tenant.to_string(),
                        event_type: e.event_type.clone(),
                        source: "client".into(),
                        flagged,
                        occurred_at: crate::store::ms_to_datetime(now).to_rfc3339(),
                        metadata: e.metadata.clone(),
                        duplicate: false,
                    }
                })
                .collect();
            let mut inserted: Vec<String> = Vec::with_capacity(rows.len());
            for chunk in (0..rows.len()).collect::<Vec<_>>().chunks(500) {
                let values: Vec<String> = (0..chunk.len())
                    .map(|i| {
                        let b = 2 + i * 6;
                        format!(
                            "(${}, ${}, ${}, 'client', ${}, ${}, ${}, $1)",
                            b,
                            b + 1,
                            b + 2,
                            b + 3,
                            b + 4,
                            b + 5
                        )
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO activation_events (id, tenant_id, event_type, source, client_event_id, metadata, flagged, occurred_at) \
                     VALUES {} ON CONFLICT (tenant_id, client_event_id) DO NOTHING RETURNING id",
                    values.join(", ")
                );
                let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(now);
                for &i in chunk {
                    let (row, e) = (&rows[i], &events[i]);
                    q = q
                        .bind(row.id.as_str())
                        .bind(e.tenant.as_str())
                        .bind(e.event_type.as_str())
                        .bind(e.client_event_id.as_deref())
                        .bind(e.metadata.to_string())
                        .bind(i64::from(row.flagged));
                }
                let ids: Vec<String> = q.fetch_all(&mut *conn).await?;
                inserted.extend(ids);
            }
            inserted.sort_unstable();
            for (row, e) in rows.iter_mut().zip(events) {
                if inserted.binary_search(&row.id).is_ok() {
                    continue;
                }
                let first: EventRow = sqlx::query_as(
                    "SELECT id, event_type, source, metadata, flagged, occurred_at FROM activation_events \
                     WHERE tenant_id = $1 AND client_event_id = $2",
                )
                .bind(e.tenant.as_str())
                .bind(e.client_event_id.as_deref())
                .fetch_one(&mut *conn)
                .await?;
                *row = first.into_tracked(&e.tenant, true);
            }
            rows
        });
        tx.commit().await?;
        Ok(tracked)
    }
}
