//! Stripe events: stored raw and deduplicated on receipt (one transaction with the job that
//! processes them), then handled by that job.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checkout::{self, Fulfilment};
use super::lifecycle;
use super::signature::{self, SignatureError};
use super::stripe::CheckoutSession;
use crate::app::AppState;
use crate::domain::TenantId;
use crate::domain::audit::{Action, Actor};
use crate::jobs::{Done, JobKind, JobRef, NewJob, Task};
use crate::store::{AuditEntry, StoreError, StoreResult, Tx, now_ms};
use crate::{with_conn, with_reader};

/// Payload of the job that processes one event.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventJob {
    pub event_id: String,
}

/// The job that processes the stored event `event_id`, once.
pub fn job(event_id: &str) -> NewJob {
    EventJob {
        event_id: event_id.to_string(),
    }
    .job(10)
    .dedupe(format!("event:{event_id}"))
}

impl Task for EventJob {
    type Context = AppState;
    const KIND: JobKind = JobKind::new("stripe_event", 10);

    async fn run(&self, app: &AppState, _: JobRef<'_>) -> Result<Done, String> {
        process(app, &self.event_id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Done::ByWorker)
    }
}

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("Invalid signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("the event is not a Stripe event object: {0}")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: Option<EnvelopeData>,
}

#[derive(Deserialize)]
struct EnvelopeData {
    object: Option<Value>,
}

/// Whether a verified delivery was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    Stored,
    Duplicate,
}

/// Verifies, stores and enqueues one delivery: the event row and its job are written in one
/// transaction, and a second delivery of the same `event.id` writes nothing. An event applied
/// on receipt is audited then, with the address it came from (`client`); the others when
/// their job processes them.
pub async fn receive(
    app: &AppState,
    raw: &[u8],
    signature_header: Option<&str>,
    client: Option<std::net::IpAddr>,
) -> Result<Receipt, ReceiveError> {
    let secret = app
        .webhook_secret
        .as_deref()
        .map(secrecy::ExposeSecret::expose_secret)
        .ok_or(SignatureError::NoSecret)?;
    let header = signature_header.ok_or(SignatureError::Malformed)?;
    signature::verify(
        raw,
        header,
        secret,
        chrono::Utc::now().timestamp(),
        signature::DEFAULT_TOLERANCE_SECS,
    )?;
    let env: Envelope =
        serde_json::from_slice(raw).map_err(|e| ReceiveError::Malformed(e.to_string()))?;
    let object_id = env
        .data
        .as_ref()
        .and_then(|d| d.object.as_ref())
        .and_then(|o| o.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let payload = String::from_utf8_lossy(raw).into_owned();
    // Checkout events only change our own tables (a status change and an enqueue), so they are
    // applied in the transaction that stores the event, which is then stored as processed;
    // anything else is processed by a job. The event row goes in last: when it is already there
    // (a redelivery) the whole transaction, including what applying it did, is rolled back. A
    // concurrent duplicate waits on the first one's locks and then finds the tenant moved on.
    let mut tx = app.store.begin().await?;
    let object = env.data.and_then(|d| d.object);
    let applied = if is_checkout(&env.kind) {
        apply_in(&mut tx, app, &env.kind, env.created, object).await?
    } else {
        None
    };
    let now = now_ms();
    let inserted = with_conn!(&mut tx, |conn| {
        sqlx::query(
            "INSERT INTO webhook_events (id, type, object_id, created, payload, received_at, processed_at, outcome, tenant_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&env.id)
        .bind(&env.kind)
        .bind(&object_id)
        .bind(env.created)
        .bind(&payload)
        .bind(now)
        .bind(applied.as_ref().map(|_| now))
        .bind(applied.as_ref().map(Applied::outcome))
        .bind(applied.as_ref().and_then(Applied::tenant).map(|t| t.to_string()))
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from)?
        .rows_affected()
    });
    if inserted == 0 {
        drop(tx);
        app.metrics.webhook_duplicate.inc();
        tracing::info!(event_id = %env.id, "duplicate webhook delivery ignored");
        return Ok(Receipt::Duplicate);
    }
    match &applied {
        Some(a) => {
            tx.audit(&processed_entry(&env.id, &env.kind, a).ip(client))
                .await?;
        }
        None => {
            tx.enqueue(job(&env.id)).await?;
        }
    }
    tx.commit().await?;
    if let Some(a) = &applied {
        a.count(app, &env.id);
    }
    app.metrics.webhook_received.inc();
    // Stripe's `created` is in seconds: a first delivery can look up to a second early or late.
    app.metrics
        .stripe_event_delay
        .observe((now - env.created.saturating_mul(1000)).max(0) as f64 / 1000.0);
    app.jobs_ready.notify_one();
    tracing::info!(event_id = %env.id, event_type = %env.kind, "webhook event stored");
    Ok(Receipt::Stored)
}

/// Processes one stored event (the job). Unknown tenants and unhandled types are recorded as
/// such and counted, never retried.
pub async fn process(app: &AppState, event_id: &str) -> StoreResult<()> {
    let row: Option<(String, String, i64, Option<i64>)> = with_reader!(&app.store, |pool| {
        sqlx::query_as(
            "SELECT type, payload, created, processed_at FROM webhook_events WHERE id = $1",
        )
        .bind(event_id)
        .fetch_optional(pool)
        .await?
    });
    let Some((kind, payload, created, processed_at)) = row else {
        return Ok(());
    };
    if processed_at.is_some() {
        return Ok(());
    }
    let object: Option<Value> = serde_json::from_str::<Value>(&payload)
        .ok()
        .and_then(|v| v.pointer("/data/object").cloned());
    let truth = stripe_truth(app, &kind, created, object.as_ref()).await?;
    let mut tx = app.store.begin().await?;
    let applied = match (&object, truth) {
        (Some(o), Some(t)) if lifecycle::handles(&kind) => Some(Applied::Lifecycle(
            lifecycle::apply_with(&mut tx, app, &kind, created, o, Some(t)).await?,
        )),
        _ => apply_in(&mut tx, app, &kind, created, object).await?,
    };
    let (outcome, tenant) = match applied {
        Some(applied) => {
            applied.count(app, event_id);
            (applied.outcome(), applied.tenant())
        }
        None => {
            app.metrics.webhook_unhandled.inc();
            tracing::info!(event_id, event_type = %kind, "unhandled event type");
            (IGNORED.to_string(), None)
        }
    };
    mark_processed(&mut tx, event_id, &outcome, tenant.as_ref()).await?;
    tx.audit(&event_entry(
        Actor::Stripe,
        Action::WebhookProcessed,
        event_id,
        &kind,
        &outcome,
        tenant.as_ref(),
    ))
    .await?;
    tx.commit().await?;
    app.jobs_ready.notify_one();
    Ok(())
}

/// With Stripe configured, the current status of the subscription a lifecycle event is in
/// doubt about (it ties with what is held and disagrees), asked outside any transaction.
async fn stripe_truth(
    app: &AppState,
    kind: &str,
    created: i64,
    object: Option<&Value>,
) -> StoreResult<Option<crate::domain::SubscriptionStatus>> {
    let (Some(stripe), Some(object)) = (&app.stripe, object) else {
        return Ok(None);
    };
    if !lifecycle::handles(kind) {
        return Ok(None);
    }
    let Some(sub) = lifecycle::in_doubt(&app.store, kind, created, object).await? else {
        return Ok(None);
    };
    match stripe.retrieve_subscription_status(&sub).await {
        Ok(status) => Ok(status.parse().ok()),
        Err(e) => {
            // The tie-break rule still gives one answer for every delivery order.
            tracing::warn!(error = %e, subscription = %sub, "could not re-read the subscription from Stripe; the tie-break rule decides");
            Ok(None)
        }
    }
}

/// The outcome stored on an event of a type no handler takes.
pub const IGNORED: &str = "ignored: unhandled type";

/// Whether `kind` is a checkout event (applied in the transaction that stores it).
fn is_checkout(kind: &str) -> bool {
    matches!(
        kind,
        "checkout.session.completed" | "checkout.session.expired"
    )
}

/// What applying a handled event did.
enum Applied {
    Done(Fulfilment, Option<TenantId>),
    Lifecycle(lifecycle::Outcome),
    Malformed(String),
}

impl Applied {
    /// The stored outcome.
    fn outcome(&self) -> String {
        match self {
            Applied::Done(Fulfilment::Started, _) => "tenant moved to provisioning".into(),
            Applied::Done(Fulfilment::Abandoned, _) => "tenant abandoned".into(),
            Applied::Done(Fulfilment::AlreadyDone(status), _) => {
                format!("no change: tenant already {status}")
            }
            Applied::Done(Fulfilment::NotPaid(status), _) => {
                format!("no change: session payment_status {status}")
            }
            Applied::Done(Fulfilment::UnknownTenant, _) => "unknown tenant".into(),
            Applied::Lifecycle(o) => o.describe(),
            Applied::Malformed(why) => why.clone(),
        }
    }

    /// Whether applying the event changed anything.
    fn changed(&self) -> bool {
        matches!(
            self,
            Applied::Done(Fulfilment::Started | Fulfilment::Abandoned, _)
                | Applied::Lifecycle(lifecycle::Outcome::Applied { .. })
        )
    }

    /// The tenant the event was found to be about.
    fn tenant(&self) -> Option<TenantId> {
        match self {
            Applied::Done(Fulfilment::UnknownTenant, _) => None,
            Applied::Done(_, tenant) => tenant.clone(),
            Applied::Lifecycle(o) => o.tenant().cloned(),
            Applied::Malformed(_) => None,
        }
    }

    /// Counts a completed checkout, and counts and logs an event for an unknown tenant (once it
    /// is known not to be a duplicate, after the commit).
    fn count(&self, app: &AppState, event_id: &str) {
        if matches!(self, Applied::Done(Fulfilment::Started, _)) {
            app.metrics.checkouts_completed.inc();
        }
        if matches!(
            self,
            Applied::Done(Fulfilment::UnknownTenant, _)
                | Applied::Lifecycle(lifecycle::Outcome::UnknownTenant)
        ) {
            app.metrics.webhook_unknown_tenant.inc();
            tracing::warn!(event_id, "event for an unknown tenant");
        }
    }
}

/// Applies an event we handle inside `tx`; `None` for other types.
async fn apply_in(
    tx: &mut Tx,
    app: &AppState,
    kind: &str,
    created: i64,
    object: Option<Value>,
) -> StoreResult<Option<Applied>> {
    if lifecycle::handles(kind) {
        let Some(object) = object else {
            return Ok(Some(Applied::Malformed(
                "malformed event: no data.object".into(),
            )));
        };
        let outcome = lifecycle::apply_in(tx, app, kind, created, &object).await?;
        return Ok(Some(Applied::Lifecycle(outcome)));
    }
    if !is_checkout(kind) {
        return Ok(None);
    }
    let session = match object.map(serde_json::from_value::<CheckoutSession>) {
        Some(Ok(session)) => session,
        Some(Err(e)) => {
            return Ok(Some(Applied::Malformed(format!(
                "malformed checkout session: {e}"
            ))));
        }
        None => {
            return Ok(Some(Applied::Malformed(
                "malformed event: no data.object".into(),
            )));
        }
    };
    let tenant = session
        .metadata
        .get("tenant_id")
        .or(session.client_reference_id.as_ref())
        .and_then(|s| TenantId::parse(s));
    let f = if kind == "checkout.session.completed" {
        checkout::fulfill_in(tx, app, &session, "stripe webhook").await?
    } else {
        checkout::expire_in(tx, &session).await?
    };
    Ok(Some(Applied::Done(f, tenant)))
}

/// The audit entry of an event applied on receipt (by Stripe's delivery).
fn processed_entry(event_id: &str, kind: &str, applied: &Applied) -> AuditEntry {
    event_entry(
        Actor::Stripe,
        Action::WebhookProcessed,
        event_id,
        kind,
        &applied.outcome(),
        applied.tenant().as_ref(),
    )
}

/// The audit entry of an applied event: its type, what applying it did, and its tenant.
fn event_entry(
    actor: Actor,
    action: Action,
    event_id: &str,
    kind: &str,
    outcome: &str,
    tenant: Option<&TenantId>,
) -> AuditEntry {
    AuditEntry::new(actor, action)
        .target(event_id)
        .detail(serde_json::json!({
            "type": kind,
            "outcome": outcome,
            "tenant_id": tenant.map(TenantId::as_str),
        }))
}

async fn mark_processed(
    tx: &mut Tx,
    event_id: &str,
    outcome: &str,
    tenant: Option<&TenantId>,
) -> StoreResult<()> {
    with_conn!(tx, |conn| {
        sqlx::query(
            "UPDATE webhook_events SET processed_at = $1, outcome = $2, \
             tenant_id = COALESCE($3, tenant_id) WHERE id = $4",
        )
        .bind(now_ms())
        .bind(outcome)
        .bind(tenant.map(TenantId::as_str))
        .bind(event_id)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// The `checkout.session.completed` event stored for a dev session, if it was paid.
pub async fn stored_completed_session(
    app: &AppState,
    session_id: &str,
) -> StoreResult<Option<CheckoutSession>> {
    let payload: Option<String> = with_reader!(&app.store, |pool| {
        sqlx::query_scalar(
            "SELECT payload FROM webhook_events WHERE object_id = $1 AND type = 'checkout.session.completed' LIMIT 1",
        )
        .bind(session_id)
        .fetch_optional(pool)
        .await?
    });
    Ok(payload
        .and_then(|p| serde_json::from_str::<Value>(&p).ok())
        .and_then(|v| v.pointer("/data/object").cloned())
        .and_then(|o| serde_json::from_value(o).ok()))
}

/// One stored event, as `onboard events list` shows it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct StoredEvent {
    pub id: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// Stripe's time (seconds).
    pub created: i64,
    pub received_at: i64,
    pub processed_at: Option<i64>,
    pub outcome: Option<String>,
    pub tenant_id: Option<String>,
}

const EVENT_COLUMNS: &str = "id, type, created, received_at, processed_at, outcome, tenant_id";

/// The newest `limit` stored events (by Stripe time), optionally of one tenant.
pub async fn list(
    store: &crate::store::Store,
    tenant: Option<&TenantId>,
    limit: i64,
) -> StoreResult<Vec<StoredEvent>> {
    Ok(with_reader!(store, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM webhook_events WHERE ($1 IS NULL OR tenant_id = $1) \
             ORDER BY created DESC, received_at DESC, id DESC LIMIT $2"
        )))
        .bind(tenant.map(TenantId::as_str))
        .bind(limit)
        .fetch_all(pool)
        .await?
    }))
}

/// Which stored events a replay puts through today's handlers.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    pub kind: Option<String>,
    /// Stripe time (seconds): events created at or after it.
    pub since: Option<i64>,
    pub tenant: Option<TenantId>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events put through the handlers.
    pub replayed: usize,
    /// Of those, events that changed something (a status, a plan, the held subscription).
    pub changed: usize,
    /// Of those, events of a type no handler takes (stored as ignored again).
    pub ignored: usize,
}

/// Puts the stored events that `filter` selects through today's handlers, oldest (Stripe
/// time) first, each in its own transaction, and stores each one's new outcome. Handlers are
/// idempotent, so replaying twice changes nothing the second time. Events about a tenant found
/// only by its Stripe ids (those never processed, or ignored before their type was handled)
/// are selected by `--tenant` through the ids and the tenant id in their payload.
pub async fn replay(app: &AppState, filter: &ReplayFilter) -> StoreResult<ReplayReport> {
    let needles: Vec<String> = match &filter.tenant {
        Some(id) => {
            let t = app.store.tenant(id).await?;
            let mut n = vec![id.to_string()];
            if let Some(t) = t {
                n.extend(t.stripe_customer_id);
                n.extend(t.stripe_subscription_id);
            }
            n
        }
        None => vec![],
    };
    let rows: Vec<(String, String, i64, String, Option<String>)> =
        with_reader!(&app.store, |pool| {
            sqlx::query_as(
                "SELECT id, type, created, payload, tenant_id FROM webhook_events \
             WHERE ($1 IS NULL OR type = $1) AND ($2 IS NULL OR created >= $2) \
             ORDER BY created, received_at, id",
            )
            .bind(filter.kind.as_deref())
            .bind(filter.since)
            .fetch_all(pool)
            .await?
        });
    let mut report = ReplayReport::default();
    for (id, kind, created, payload, tenant_id) in rows {
        if let Some(wanted) = &filter.tenant {
            let matches = match &tenant_id {
                Some(t) => t == wanted.as_str(),
                None => needles.iter().any(|n| payload.contains(n.as_str())),
            };
            if !matches {
                continue;
            }
        }
        let object = serde_json::from_str::<Value>(&payload)
            .ok()
            .and_then(|v| v.pointer("/data/object").cloned());
        let mut tx = app.store.begin().await?;
        let applied = apply_in(&mut tx, app, &kind, created, object).await?;
        let (outcome, tenant) = match &applied {
            Some(a) => (a.outcome(), a.tenant()),
            None => (IGNORED.to_string(), None),
        };
        mark_processed(&mut tx, &id, &outcome, tenant.as_ref()).await?;
        tx.audit(&event_entry(
            Actor::Operator,
            Action::WebhookReplayed,
            &id,
            &kind,
            &outcome,
            tenant.as_ref(),
        ))
        .await?;
        tx.commit().await?;
        report.replayed += 1;
        match &applied {
            Some(a) if a.changed() => report.changed += 1,
            Some(_) => {}
            None => report.ignored += 1,
        }
    }
    app.jobs_ready.notify_one();
    Ok(report)
}
