//! The subscription after day one: `invoice.*` and `customer.subscription.*` events, applied
//! through the same verified, deduplicated webhook path as checkout.
//!
//! Each event is a dated observation of the subscription (`domain::subscription`): the newest
//! one is kept, whatever order Stripe delivered them in, and a tenant with a workspace follows
//! it (active, past_due, suspended, canceled). The tenant is found by the Stripe subscription
//! id stored at checkout, then the customer id, then `metadata.tenant_id` (on an invoice, the
//! subscription's metadata, under `parent.subscription_details` since API version 2025-03-31
//! and under `subscription_details` before it).

use serde_json::Value;

use crate::app::AppState;
use crate::domain::subscription::{self, Details, Observation};
use crate::domain::{Plan, SubscriptionStatus, TenantId, TenantStatus};
use crate::store::{Store, StoreError, StoreResult, Tx, now_ms};
use crate::{with_conn, with_reader};

/// The event types this module applies.
pub const HANDLED: [&str; 6] = [
    "invoice.payment_failed",
    "invoice.paid",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
];

/// Whether `kind` is a lifecycle event type.
pub fn handles(kind: &str) -> bool {
    HANDLED.contains(&kind)
}

/// What applying one lifecycle event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    UnknownTenant,
    Malformed(String),
    /// The event is older than what is held (or the same): nothing changed.
    Stale {
        tenant: TenantId,
        held: SubscriptionStatus,
    },
    Applied {
        tenant: TenantId,
        /// The subscription status now held.
        held: Option<SubscriptionStatus>,
        /// The tenant's move, if it moved.
        moved: Option<(TenantStatus, TenantStatus)>,
        /// The plan it moved to, if the subscription changed plan.
        plan: Option<Plan>,
    },
    /// `trial_will_end`: the trial-ending notice is due.
    TrialEnding {
        tenant: TenantId,
        trial_end: i64,
    },
}

impl Outcome {
    /// The text stored on the event.
    pub fn describe(&self) -> String {
        match self {
            Outcome::UnknownTenant => "unknown tenant".into(),
            Outcome::Malformed(why) => why.clone(),
            Outcome::Stale { held, .. } => format!("no change: a newer state ({held}) is held"),
            Outcome::Applied {
                held, moved, plan, ..
            } => {
                let mut parts = vec![format!(
                    "subscription {}",
                    held.map_or("unknown", SubscriptionStatus::as_str)
                )];
                match moved {
                    Some((from, to)) => parts.push(format!("tenant {from} -> {to}")),
                    None => parts.push("tenant unchanged".into()),
                }
                if let Some(p) = plan {
                    parts.push(format!("plan {p}"));
                }
                parts.join("; ")
            }
            Outcome::TrialEnding { trial_end, .. } => {
                format!("trial ends at {trial_end}")
            }
        }
    }

    /// The tenant the event was about, when it was found.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Outcome::Stale { tenant, .. }
            | Outcome::Applied { tenant, .. }
            | Outcome::TrialEnding { tenant, .. } => Some(tenant),
            Outcome::UnknownTenant | Outcome::Malformed(_) => None,
        }
    }
}

/// The ids an event's object names, and what it says.
#[derive(Debug, Default, PartialEq)]
struct Refs {
    subscription: Option<String>,
    customer: Option<String>,
    tenant: Option<String>,
}

fn id_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn str_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn refs(kind: &str, object: &Value) -> Refs {
    let customer = id_of(object.get("customer"));
    if kind.starts_with("invoice.") {
        Refs {
            subscription: id_of(object.pointer("/parent/subscription_details/subscription"))
                .or_else(|| id_of(object.get("subscription"))),
            customer,
            tenant: str_at(object, "/parent/subscription_details/metadata/tenant_id")
                .or_else(|| str_at(object, "/subscription_details/metadata/tenant_id"))
                .or_else(|| str_at(object, "/metadata/tenant_id")),
        }
    } else {
        Refs {
            subscription: str_at(object, "/id"),
            customer,
            tenant: str_at(object, "/metadata/tenant_id"),
        }
    }
}

/// The observation an event makes, if it makes one.
fn observation(kind: &str, created: i64, object: &Value) -> Result<Option<Observation>, String> {
    let status = match kind {
        "invoice.payment_failed" => SubscriptionStatus::PastDue,
        "invoice.paid" => SubscriptionStatus::Active,
        "customer.subscription.deleted" => SubscriptionStatus::Canceled,
        "customer.subscription.trial_will_end" => return Ok(None),
        _ => {
            let s = object
                .get("status")
                .and_then(Value::as_str)
                .ok_or("malformed subscription: no status")?;
            s.parse()
                .map_err(|e: String| format!("malformed subscription: {e}"))?
        }
    };
    Ok(Some(Observation {
        status,
        at: created,
    }))
}

/// The plan a subscription object is on: its first item's price, matched against the
/// configured price ids, else the price's `lookup_key`, else `metadata.plan`.
fn plan_of(app: &AppState, object: &Value) -> Option<Plan> {
    let price = object.pointer("/items/data/0/price");
    if let Some(id) = price.and_then(|p| p.get("id")).and_then(Value::as_str)
        && let Some(plan) = Plan::ALL
            .into_iter()
            .find(|p| app.settings.stripe_price(*p) == Some(id))
    {
        return Some(plan);
    }
    price
        .and_then(|p| p.get("lookup_key"))
        .and_then(Value::as_str)
        .or_else(|| object.pointer("/metadata/plan").and_then(Value::as_str))
        .and_then(|s| s.parse().ok())
}

fn details(app: &AppState, kind: &str, created: i64, object: &Value) -> Option<Details> {
    if !kind.starts_with("customer.subscription.") {
        return None;
    }
    Some(Details {
        at: created,
        plan: plan_of(app, object),
        cancel_at_period_end: object
            .get("cancel_at_period_end")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        trial_end: object.get("trial_end").and_then(Value::as_i64),
    })
}

/// A tenant's billing row, as held.
#[derive(Debug, sqlx::FromRow)]
struct Held {
    id: String,
    status: String,
    plan: String,
    subscription_status: Option<String>,
    subscription_at: Option<i64>,
    billing_details_at: Option<i64>,
    cancel_at_period_end: i64,
    trial_end: Option<i64>,
    stripe_customer_id: Option<String>,
    stripe_subscription_id: Option<String>,
}

const HELD_COLUMNS: &str = "id, status, plan, subscription_status, subscription_at, billing_details_at, \
    cancel_at_period_end, trial_end, stripe_customer_id, stripe_subscription_id";

/// Reads (and on PostgreSQL locks, so two events of one tenant apply one after the other) the
/// tenant an event names: by subscription, then customer, then metadata.
impl Refs {
    /// The columns an event's tenant is looked up by, most specific first, with their values.
    fn lookups(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("stripe_subscription_id", self.subscription.as_deref()),
            ("stripe_customer_id", self.customer.as_deref()),
            ("id", self.tenant.as_deref()),
        ]
        .into_iter()
        .filter_map(|(column, value)| Some((column, value?)))
    }
}

/// The tenant row an event's `column` names (the oldest, should two share it).
fn held_sql(column: &str, lock: &str) -> String {
    format!(
        "SELECT {HELD_COLUMNS} FROM tenants WHERE {column} = $1 ORDER BY created_at LIMIT 1{lock}"
    )
}

/// The tenant the event is about, locked (on PostgreSQL) for the rest of `tx`.
async fn find(tx: &mut Tx, refs: &Refs) -> StoreResult<Option<Held>> {
    let lock = match tx {
        Tx::Postgres(_) => " FOR UPDATE",
        Tx::Sqlite(_) => "",
    };
    for (column, value) in refs.lookups() {
        let sql = held_sql(column, lock);
        let row: Option<Held> = with_conn!(&mut *tx, |conn| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(value)
                .fetch_optional(&mut *conn)
                .await?
        });
        if row.is_some() {
            return Ok(row);
        }
    }
    Ok(None)
}

/// [`find`] on a reader connection, taking no lock and no writer: for a look before the
/// transaction that applies the event.
async fn peek(store: &Store, refs: &Refs) -> StoreResult<Option<Held>> {
    for (column, value) in refs.lookups() {
        let sql = held_sql(column, "");
        let row: Option<Held> = with_reader!(store, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(value)
                .fetch_optional(pool)
                .await?
        });
        if row.is_some() {
            return Ok(row);
        }
    }
    Ok(None)
}

/// Applies one lifecycle event inside `tx` (the caller stores the event's outcome in the same
/// transaction). `created` is the event's Stripe time (seconds).
pub async fn apply_in(
    tx: &mut Tx,
    app: &AppState,
    kind: &str,
    created: i64,
    object: &Value,
) -> StoreResult<Outcome> {
    apply_with(tx, app, kind, created, object, None).await
}

/// The subscription an event is in doubt about: with the held observation of the same second
/// saying something else, Stripe's own current status settles it. `None` when there is no doubt
/// (or no subscription id to ask about).
pub async fn in_doubt(
    store: &Store,
    kind: &str,
    created: i64,
    object: &Value,
) -> StoreResult<Option<String>> {
    let refs = refs(kind, object);
    let (Some(held), Ok(Some(obs))) = (
        peek(store, &refs).await?,
        observation(kind, created, object),
    ) else {
        return Ok(None);
    };
    let tie = held.subscription_at == Some(obs.at)
        && held.subscription_status.as_deref() != Some(obs.status.as_str());
    Ok(tie
        .then(|| held.stripe_subscription_id.or(refs.subscription))
        .flatten())
}

/// [`apply_in`], with the subscription status Stripe reported just now (`truth`) when the event
/// was in doubt: it is held as of the event's time, whatever the tie-break rank says.
pub async fn apply_with(
    tx: &mut Tx,
    app: &AppState,
    kind: &str,
    created: i64,
    object: &Value,
    truth: Option<SubscriptionStatus>,
) -> StoreResult<Outcome> {
    let refs = refs(kind, object);
    let Some(held) = find(tx, &refs).await? else {
        return Ok(Outcome::UnknownTenant);
    };
    let tenant = TenantId::parse(&held.id)
        .ok_or_else(|| StoreError::Corrupt(format!("tenant id {}", held.id)))?;
    let current: TenantStatus = held.status.parse().map_err(StoreError::Corrupt)?;
    adopt_ids(tx, &held, &refs).await?;
    if kind == "customer.subscription.trial_will_end" {
        let trial_end = object
            .get("trial_end")
            .and_then(Value::as_i64)
            .unwrap_or(created);
        if matches!(current, TenantStatus::Active | TenantStatus::PastDue) {
            super::notify::trial_ending(tx, app, &tenant, trial_end).await?;
        }
        return Ok(Outcome::TrialEnding { tenant, trial_end });
    }
    let observed = match observation(kind, created, object) {
        Ok(o) => o,
        Err(why) => return Ok(Outcome::Malformed(why)),
    };
    let held_obs = match (&held.subscription_status, held.subscription_at) {
        (Some(s), Some(at)) => Some(Observation {
            status: s.parse().map_err(StoreError::Corrupt)?,
            at,
        }),
        _ => None,
    };
    let mut now_held = held_obs;
    let observed = match (observed, truth) {
        (Some(o), Some(status)) => Some(Observation { status, at: o.at }),
        (o, _) => o,
    };
    let settled_by_stripe = |obs: &Observation| {
        truth.is_some()
            && held_obs.is_none_or(|h| {
                h.status != SubscriptionStatus::Canceled && obs.at >= h.at && *obs != h
            })
    };
    if let Some(obs) = observed
        && (obs.supersedes(held_obs.as_ref()) || settled_by_stripe(&obs))
    {
        with_conn!(&mut *tx, |conn| {
            sqlx::query(
                "UPDATE tenants SET subscription_status = $1, subscription_at = $2 WHERE id = $3",
            )
            .bind(obs.status.as_str())
            .bind(obs.at)
            .bind(tenant.as_str())
            .execute(&mut *conn)
            .await?;
        });
        now_held = Some(obs);
    }
    let mut plan_moved = None;
    if let Some(d) = details(app, kind, created, object) {
        let held_details = held.billing_details_at.map(|at| Details {
            at,
            plan: held.plan.parse().ok(),
            cancel_at_period_end: held.cancel_at_period_end != 0,
            trial_end: held.trial_end,
        });
        if d.supersede(held_details.as_ref()) {
            let plan = d.plan.map_or(held.plan.clone(), |p| p.as_str().to_string());
            with_conn!(&mut *tx, |conn| {
                sqlx::query(
                    "UPDATE tenants SET billing_details_at = $1, cancel_at_period_end = $2, trial_end = $3, plan = $4 \
                     WHERE id = $5",
                )
                .bind(d.at)
                .bind(i64::from(d.cancel_at_period_end))
                .bind(d.trial_end)
                .bind(&plan)
                .bind(tenant.as_str())
                .execute(&mut *conn)
                .await?;
            });
            if plan != held.plan {
                plan_moved = d.plan;
            }
        }
    }
    let moved = now_held.and_then(|h| subscription::follow(current, h.status));
    if let (Some(to), Some(h)) = (moved, now_held) {
        tx.transition_tenant_from(
            &tenant,
            current,
            to,
            &format!("stripe {kind}"),
            "stripe webhook",
        )
        .await?;
        super::notify::on_move(tx, app, &tenant, current, to, h.at).await?;
    } else if now_held == held_obs
        && plan_moved.is_none()
        && observed.is_some()
        && let Some(h) = now_held
    {
        return Ok(Outcome::Stale {
            tenant,
            held: h.status,
        });
    }
    let moved = moved.map(|to| (current, to));
    Ok(Outcome::Applied {
        tenant,
        held: now_held.map(|h| h.status),
        moved,
        plan: plan_moved,
    })
}

/// Stores the Stripe ids an event names on a tenant found by its metadata that has none yet (an
/// invoice delivered before the checkout's completion).
async fn adopt_ids(tx: &mut Tx, held: &Held, refs: &Refs) -> StoreResult<()> {
    if (held.stripe_subscription_id.is_some() || refs.subscription.is_none())
        && (held.stripe_customer_id.is_some() || refs.customer.is_none())
    {
        return Ok(());
    }
    with_conn!(&mut *tx, |conn| {
        sqlx::query(
            "UPDATE tenants SET stripe_subscription_id = COALESCE(stripe_subscription_id, $1), \
             stripe_customer_id = COALESCE(stripe_customer_id, $2) WHERE id = $3",
        )
        .bind(refs.subscription.as_deref())
        .bind(refs.customer.as_deref())
        .bind(&held.id)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_invoice_names_its_subscription_in_both_api_shapes() {
        let new = json!({"id": "in_1", "customer": "cus_1", "parent": {"type": "subscription_details",
            "subscription_details": {"subscription": "sub_1", "metadata": {"tenant_id": "tenant_A"}}}});
        let old = json!({"id": "in_1", "customer": {"id": "cus_1"}, "subscription": "sub_1",
            "subscription_details": {"metadata": {"tenant_id": "tenant_A"}}});
        let expected = Refs {
            subscription: Some("sub_1".into()),
            customer: Some("cus_1".into()),
            tenant: Some("tenant_A".into()),
        };
        assert_eq!(refs("invoice.paid", &new), expected);
        assert_eq!(refs("invoice.payment_failed", &old), expected);
        let sub =
            json!({"id": "sub_1", "customer": "cus_1", "metadata": {"tenant_id": "tenant_A"}});
        assert_eq!(refs("customer.subscription.updated", &sub), expected);
    }

    #[test]
    fn events_observe_the_status_they_imply() {
        let sub = json!({"status": "unpaid"});
        let o = |k| observation(k, 7, &sub).unwrap().map(|o| o.status);
        assert_eq!(
            o("invoice.payment_failed"),
            Some(SubscriptionStatus::PastDue)
        );
        assert_eq!(o("invoice.paid"), Some(SubscriptionStatus::Active));
        assert_eq!(
            o("customer.subscription.updated"),
            Some(SubscriptionStatus::Unpaid)
        );
        assert_eq!(
            o("customer.subscription.deleted"),
            Some(SubscriptionStatus::Canceled)
        );
        assert_eq!(o("customer.subscription.trial_will_end"), None);
        assert!(
            observation(
                "customer.subscription.updated",
                1,
                &json!({"status": "bogus"})
            )
            .is_err()
        );
    }
}

/// How often the lifecycle sweep runs.
pub const SWEEP_EVERY_MS: i64 = 5 * 60_000;

/// A signup still waiting for payment this long after it was made is abandoned.
pub const ABANDON_AFTER_MS: i64 = 7 * 86_400_000;

/// At most this many tenants are moved per run and kind of move.
const SWEEP_BATCH: i64 = 200;

/// Periodic: abandons signups that never paid (see [`sweep`]).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Sweep {}

impl crate::jobs::Task for Sweep {
    type Context = AppState;
    const KIND: crate::jobs::JobKind = crate::jobs::JobKind::new("lifecycle_sweep", 0);

    async fn run(
        &self,
        app: &AppState,
        _: crate::jobs::JobRef<'_>,
    ) -> Result<crate::jobs::Done, String> {
        sweep(app, now_ms()).await.map_err(|e| e.to_string())?;
        Ok(crate::jobs::Done::ByWorker)
    }
}

/// A signup still waiting for payment this long after it was made gets its one reminder.
pub const REMIND_AFTER_MS: i64 = 3_600_000;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub reminded: usize,
    pub abandoned: usize,
}

/// Sends the one checkout reminder to `pending_payment` signups older than
/// [`REMIND_AFTER_MS`], and moves those older than [`ABANDON_AFTER_MS`] to `abandoned`, at `now`.
pub async fn sweep(app: &AppState, now: i64) -> StoreResult<SweepReport> {
    let mut report = SweepReport::default();
    let unreminded: Vec<(String, String)> = crate::with_reader!(&app.store, |pool| {
        sqlx::query_as(
            "SELECT t.id, t.stripe_checkout_session_id FROM tenants t WHERE t.status = 'pending_payment' \
             AND t.created_at <= $1 AND t.created_at > $2 AND t.stripe_checkout_session_id IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM email_outbox e WHERE e.dedupe_key = 'checkout_reminder:' || t.id) \
             ORDER BY t.created_at LIMIT $3",
        )
        .bind(now - REMIND_AFTER_MS)
        .bind(now - ABANDON_AFTER_MS)
        .bind(SWEEP_BATCH)
        .fetch_all(pool)
        .await?
    });
    for (id, session) in unreminded {
        let Some(id) = TenantId::parse(&id) else {
            continue;
        };
        let mut tx = app.store.begin().await?;
        if super::notify::checkout_reminder(&mut tx, app, &id, &session).await? {
            report.reminded += 1;
        }
        tx.commit().await?;
    }
    if report.reminded > 0 {
        app.jobs_ready.notify_one();
    }
    let stale: Vec<String> = crate::with_reader!(&app.store, |pool| {
        sqlx::query_scalar(
            "SELECT id FROM tenants WHERE status = 'pending_payment' AND created_at <= $1 \
             ORDER BY created_at LIMIT $2",
        )
        .bind(now - ABANDON_AFTER_MS)
        .bind(SWEEP_BATCH)
        .fetch_all(pool)
        .await?
    });
    for id in stale.iter().filter_map(|s| TenantId::parse(s)) {
        let mut tx = app.store.begin().await?;
        match tx
            .transition_tenant_from(
                &id,
                TenantStatus::PendingPayment,
                TenantStatus::Abandoned,
                "no payment within 7 days of signup",
                "lifecycle sweep",
            )
            .await
        {
            Ok(_) => {
                tx.commit().await?;
                report.abandoned += 1;
            }
            // Paid meanwhile: nothing to do.
            Err(StoreError::Transition(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}
