//! Checkout: creating the session at signup (Stripe, or our dev checkout) and the one
//! idempotent `fulfill` called by the webhook job and by the success page, whichever is first.

use serde_json::json;

use super::stripe::{CheckoutRequest, CheckoutSession, StripeError};
use crate::app::AppState;
use crate::domain::{Plan, TenantId, TenantStatus};
use crate::store::{StoreError, StoreResult, Tenant, Tx};

/// Where a new tenant pays.
pub struct Checkout {
    pub session_id: String,
    pub url: String,
}

/// Creates the checkout for a tenant about to be stored: a Stripe Checkout Session when
/// `STRIPE_SECRET_KEY` is set (idempotency key per tenant), else a dev checkout session.
pub async fn create(
    app: &AppState,
    tenant: &TenantId,
    plan: Plan,
    email: &str,
) -> Result<Checkout, StripeError> {
    let base = &app.settings.app_url;
    let Some(stripe) = &app.stripe else {
        // Start-up refuses a public address with neither Stripe nor an explicit development
        // environment, so this holds; checked again rather than handing out a free checkout.
        if !app.settings.dev_aids().checkout {
            return Err(StripeError::Api {
                status: 500,
                code: None,
                message: "no payment provider is configured (STRIPE_SECRET_KEY)".into(),
            });
        }
        let session_id = format!("cs_dev_{}", ulid::Ulid::new());
        let url = base
            .join(&format!("dev/checkout/{session_id}"))
            .map_err(|e| StripeError::Decode(e.to_string()))?;
        return Ok(Checkout {
            session_id,
            url: url.to_string(),
        });
    };
    let price_id = app
        .settings
        .stripe_price(plan)
        .ok_or_else(|| StripeError::Api {
            status: 500,
            code: None,
            message: format!(
                "no Stripe price configured for plan {plan} (STRIPE_PRICE_ID_{})",
                plan.as_str().to_uppercase()
            ),
        })?;
    let success = format!(
        "{}onboarding/success?session_id={{CHECKOUT_SESSION_ID}}",
        ensure_slash(base.as_str())
    );
    let cancel = format!("{}onboarding/cancel", ensure_slash(base.as_str()));
    let req = CheckoutRequest {
        tenant_id: tenant.to_string(),
        plan: plan.as_str().to_string(),
        price_id: price_id.to_string(),
        customer_email: email.to_string(),
        success_url: success,
        cancel_url: cancel,
        trial_days: app.settings.trial_days,
    };
    let session = stripe
        .create_checkout_session(&req, &format!("onboard-{tenant}-checkout-v1"))
        .await?;
    let url = session
        .url
        .clone()
        .ok_or_else(|| StripeError::Decode("the checkout session has no url".into()))?;
    Ok(Checkout {
        session_id: session.id,
        url,
    })
}

fn ensure_slash(s: &str) -> String {
    if s.ends_with('/') {
        s.to_string()
    } else {
        format!("{s}/")
    }
}

/// What `fulfill`/`expire` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fulfilment {
    Started,
    Abandoned,
    AlreadyDone(TenantStatus),
    NotPaid(String),
    UnknownTenant,
}

/// The tenant a session names (its metadata, else its `client_reference_id`).
fn session_tenant(session: &CheckoutSession) -> Option<TenantId> {
    session
        .metadata
        .get("tenant_id")
        .or(session.client_reference_id.as_ref())
        .and_then(|s| TenantId::parse(s))
}

async fn tenant_of(tx: &mut Tx, session: &CheckoutSession) -> StoreResult<Option<Tenant>> {
    let Some(id) = session_tenant(session) else {
        return Ok(None);
    };
    let tenant = tx.tenant(&id).await?;
    // The session must be the one we created for this tenant.
    Ok(tenant.filter(|t| t.stripe_checkout_session_id.as_deref() == Some(session.id.as_str())))
}

/// Moves the tenant of a completed, paid session to `provisioning`, stores its customer and
/// subscription ids and enqueues provisioning, in one transaction. Calling it again, or after
/// the tenant moved on, changes nothing.
pub async fn fulfill(
    app: &AppState,
    session: &CheckoutSession,
    source: &str,
) -> StoreResult<Fulfilment> {
    let mut tx = app.store.begin().await?;
    let outcome = fulfill_in(&mut tx, app, session, source).await?;
    tx.commit().await?;
    if outcome == Fulfilment::Started {
        app.metrics.checkouts_completed.inc();
        app.jobs_ready.notify_one();
    }
    Ok(outcome)
}

/// [`fulfill`] inside the caller's transaction (the webhook applies it in the transaction that
/// stores the event). The caller commits and then wakes the workers.
pub async fn fulfill_in(
    tx: &mut Tx,
    app: &AppState,
    session: &CheckoutSession,
    source: &str,
) -> StoreResult<Fulfilment> {
    let paid = matches!(
        session.payment_status.as_deref(),
        Some("paid" | "no_payment_required")
    ) && session.status.as_deref() == Some("complete");
    // The usual case in one statement: a tenant waiting for exactly this session's payment moves
    // to `provisioning` with its Stripe ids (the history row is the database's trigger). Anything
    // else (unknown tenant, another session, already paid, a concurrent delivery that won) is
    // told apart by reading the tenant below.
    if paid
        && let Some(id) = session_tenant(session)
        && tx
            .pay_tenant(
                &id,
                &session.id,
                session.customer.as_deref(),
                session.subscription.as_deref(),
                &format!("checkout completed ({source})"),
                source,
            )
            .await?
    {
        tx.enqueue(crate::provisioning::job(
            &id,
            app.settings.max_provisioning_retries,
        ))
        .await?;
        tracing::info!(tenant_id = %id, source, "checkout fulfilled; provisioning");
        return Ok(Fulfilment::Started);
    }
    let Some(tenant) = tenant_of(tx, session).await? else {
        return Ok(Fulfilment::UnknownTenant);
    };
    if !paid {
        return Ok(Fulfilment::NotPaid(
            session
                .payment_status
                .clone()
                .unwrap_or_else(|| "unknown".into()),
        ));
    }
    Ok(Fulfilment::AlreadyDone(tenant.status))
}

/// Marks the tenant of an expired session `abandoned` (only from `pending_payment`).
pub async fn expire(app: &AppState, session: &CheckoutSession) -> StoreResult<Fulfilment> {
    let mut tx = app.store.begin().await?;
    let outcome = expire_in(&mut tx, session).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// [`expire`] inside the caller's transaction.
pub async fn expire_in(tx: &mut Tx, session: &CheckoutSession) -> StoreResult<Fulfilment> {
    let Some(tenant) = tenant_of(tx, session).await? else {
        return Ok(Fulfilment::UnknownTenant);
    };
    match tx
        .transition_tenant(
            &tenant.id,
            TenantStatus::Abandoned,
            "checkout session expired",
            "stripe webhook",
        )
        .await
    {
        Ok(_) => Ok(Fulfilment::Abandoned),
        Err(StoreError::Transition(t)) => Ok(Fulfilment::AlreadyDone(t.from)),
        Err(e) => Err(e),
    }
}

/// The Stripe-format `checkout.session.completed` event the dev checkout's Pay button sends.
pub fn dev_completed_event(tenant: &Tenant, session_id: &str) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    let suffix = session_id.trim_start_matches("cs_dev_");
    json!({
        "id": format!("evt_dev_{}", ulid::Ulid::new()),
        "object": "event",
        "api_version": super::stripe::STRIPE_API_VERSION,
        "created": now,
        "livemode": false,
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "complete",
            "payment_status": "paid",
            "client_reference_id": tenant.id.as_str(),
            "customer": format!("cus_dev_{suffix}"),
            "subscription": format!("sub_dev_{suffix}"),
            "customer_email": tenant.email,
            "amount_total": tenant.plan.price_monthly_usd() * 100,
            "currency": "usd",
            "metadata": {"tenant_id": tenant.id.as_str(), "plan": tenant.plan.as_str()},
        }},
    })
}

/// The matching `checkout.session.expired` event (dev checkout's Cancel button).
pub fn dev_expired_event(tenant: &Tenant, session_id: &str) -> serde_json::Value {
    let mut ev = dev_completed_event(tenant, session_id);
    ev["type"] = json!("checkout.session.expired");
    ev["data"]["object"]["status"] = json!("expired");
    ev["data"]["object"]["payment_status"] = json!("unpaid");
    ev["data"]["object"]["customer"] = json!(null);
    ev["data"]["object"]["subscription"] = json!(null);
    ev
}

/// How often one checkout session may be looked up at Stripe on behalf of a page.
pub const LOOKUP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps unauthenticated pages (the success page and its status poll) from fanning out to
/// Stripe: at most one lookup per checkout session every [`LOOKUP_EVERY`], per process.
#[derive(Clone, Default)]
pub struct LookupThrottle {
    last: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
}

impl LookupThrottle {
    /// Whether `session_id` may be looked up now (and if so, the clock starts again).
    pub fn allow(&self, session_id: &str) -> bool {
        let now = std::time::Instant::now();
        let mut last = self.last.lock().expect("lookup throttle lock");
        if last.len() >= 10_000 {
            last.retain(|_, at| now.duration_since(*at) < LOOKUP_EVERY);
        }
        match last.get(session_id) {
            Some(at) if now.duration_since(*at) < LOOKUP_EVERY => false,
            _ => {
                last.insert(session_id.to_string(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::*;

    #[test]
    fn one_lookup_per_session_per_interval() {
        let t = LookupThrottle::default();
        assert!(t.allow("cs_a"));
        assert!(!t.allow("cs_a"));
        assert!(t.allow("cs_b"), "each session has its own clock");
        t.last
            .lock()
            .unwrap()
            .insert("cs_a".into(), std::time::Instant::now() - LOOKUP_EVERY);
        assert!(t.allow("cs_a"), "again once the interval passed");
    }
}
