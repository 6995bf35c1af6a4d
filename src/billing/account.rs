//! What a customer or an operator does to a subscription: open the billing portal, cancel,
//! approve an enterprise signup, and suspend. With Stripe configured these call Stripe; without it the dev
//! portal sends the same signed events Stripe would, through our own webhook.

use serde_json::json;

use super::stripe::StripeError;
use crate::app::AppState;
use crate::domain::{Plan, TenantId, TenantStatus};
use crate::store::{AuditEntry, StoreError, Tenant, now_ms};
use crate::with_conn;

/// Why an account action could not be done.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the customer manages card and subscription: Stripe's Customer Portal for its Stripe
/// customer, or the dev portal.
pub async fn portal_url(app: &AppState, tenant: &Tenant) -> Result<String, AccountError> {
    // APP_URL may have a path (`https://host/app`): keep it, as the checkout's URLs do.
    let base = app.settings.app_url.as_str();
    let return_url = format!("{}/account", base.trim_end_matches('/'));
    let Some(stripe) = &app.stripe else {
        if !app.settings.dev_aids().checkout {
            return Err(AccountError::Refused(
                "no payment provider is configured (STRIPE_SECRET_KEY)".into(),
            ));
        }
        return Ok("/dev/billing-portal".into());
    };
    let customer = tenant.stripe_customer_id.as_deref().ok_or_else(|| {
        AccountError::Refused(
            "this account has no billing account yet: it is created when the first invoice is paid"
                .into(),
        )
    })?;
    Ok(stripe
        .create_billing_portal_session(customer, &return_url)
        .await?)
}

/// Cancels a tenant's subscription now, at the customer's request (`DELETE /account`): at Stripe
/// first (a failure changes nothing here), then here, so the account is canceled at once and the
/// `customer.subscription.deleted` that follows changes nothing. Returns when its data will be
/// erased (ms).
pub async fn cancel(app: &AppState, tenant: &Tenant, actor: &str) -> Result<i64, AccountError> {
    if tenant.status == TenantStatus::Canceled {
        let canceled_at = app
            .store
            .billing(&tenant.id)
            .await?
            .and_then(|b| b.canceled_at)
            .unwrap_or_else(now_ms);
        return Ok(super::notify::erasure_at(app, canceled_at));
    }
    if !tenant.status.can_transition_to(TenantStatus::Canceled) {
        return Err(AccountError::Refused(format!(
            "an account in status {} has no subscription to cancel",
            tenant.status
        )));
    }
    if let (Some(stripe), Some(sub)) = (&app.stripe, &tenant.stripe_subscription_id) {
        stripe.cancel_subscription(sub).await?;
    }
    let now = now_ms();
    let mut tx = app.store.begin().await?;
    // `canceled_at` is stamped with the same `now` as the erasure date returned below (the
    // transition keeps it), so this answer, a repeated one and the erasure job agree.
    with_conn!(&mut tx, |conn| {
        sqlx::query(
            "UPDATE tenants SET subscription_status = 'canceled', subscription_at = $1, \
             canceled_at = COALESCE(canceled_at, $2) WHERE id = $3",
        )
        .bind(now / 1000)
        .bind(now)
        .bind(tenant.id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from)?;
    });
    tx.transition_tenant_from(
        &tenant.id,
        tenant.status,
        TenantStatus::Canceled,
        "canceled by the customer",
        actor,
    )
    .await?;
    super::notify::on_move(
        &mut tx,
        app,
        &tenant.id,
        tenant.status,
        TenantStatus::Canceled,
        now,
    )
    .await?;
    tx.commit().await?;
    app.jobs_ready.notify_one();
    Ok(super::notify::erasure_at(app, now))
}

/// What approving an enterprise signup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The hosted invoice the tenant was sent, when Stripe is configured.
    pub invoice_url: Option<String>,
}

/// Takes a `sales_review` tenant to provisioning (`onboard tenants approve`, `POST
/// /admin/tenants/{id}/approve`). With Stripe configured and an enterprise price set, the tenant
/// first gets a Stripe customer and a subscription billed by invoice, whose hosted invoice link
/// is returned (and emailed by the caller).
///
/// `audit` (who approved, from where) is recorded in the transaction that moves the tenant.
pub async fn approve(
    app: &AppState,
    id: &TenantId,
    actor: &str,
    audit: AuditEntry,
) -> Result<Approval, AccountError> {
    let tenant = app
        .store
        .tenant(id)
        .await?
        .ok_or(StoreError::NotFound("tenant"))?;
    if tenant.status != TenantStatus::SalesReview {
        return Err(AccountError::Refused(format!(
            "only a tenant in sales_review can be approved; {id} is {}",
            tenant.status
        )));
    }
    let invoiced = match (&app.stripe, app.settings.stripe_price(Plan::Enterprise)) {
        (Some(stripe), Some(price)) => Some(
            stripe
                .invoice_subscription(id.as_str(), &tenant.email, &tenant.company_name, price)
                .await?,
        ),
        _ => None,
    };
    let mut tx = app.store.begin().await?;
    if let Some(inv) = &invoiced {
        with_conn!(&mut tx, |conn| {
            sqlx::query(
                "UPDATE tenants SET stripe_customer_id = $1, stripe_subscription_id = $2 WHERE id = $3",
            )
            .bind(&inv.customer)
            .bind(&inv.subscription)
            .bind(id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?;
        });
    }
    tx.transition_tenant_from(
        id,
        TenantStatus::SalesReview,
        TenantStatus::Provisioning,
        "approved by sales",
        actor,
    )
    .await?;
    tx.enqueue(crate::provisioning::job(
        id,
        app.settings.max_provisioning_retries,
    ))
    .await?;
    tx.audit(
        &audit
            .target(id.as_str())
            .with("invoiced", invoiced.is_some()),
    )
    .await?;
    tx.commit().await?;
    app.jobs_ready.notify_one();
    Ok(Approval {
        invoice_url: invoiced.map(|i| i.hosted_invoice_url),
    })
}

/// The operator suspends a tenant's workspace (`active` or `past_due`): its API keys answer
/// 402 until a payment reactivates it (Stripe's `invoice.paid`, the dev portal) and the customer
/// can still sign in to pay. No email is sent: the suspension email speaks of an unpaid
/// invoice, which the operator's reason need not be. `audit` is recorded with the move.
pub async fn suspend(
    app: &AppState,
    id: &TenantId,
    actor: &str,
    audit: AuditEntry,
) -> Result<(), AccountError> {
    let tenant = app
        .store
        .tenant(id)
        .await?
        .ok_or(StoreError::NotFound("tenant"))?;
    if !matches!(tenant.status, TenantStatus::Active | TenantStatus::PastDue) {
        return Err(AccountError::Refused(format!(
            "only an active or past_due tenant can be suspended; {id} is {}",
            tenant.status
        )));
    }
    let mut tx = app.store.begin().await?;
    tx.transition_tenant_from(
        id,
        tenant.status,
        TenantStatus::Suspended,
        "suspended by the operator",
        actor,
    )
    .await?;
    tx.audit(
        &audit
            .target(id.as_str())
            .with("from", tenant.status.as_str()),
    )
    .await?;
    tx.commit().await?;
    // Immediate in this process, as a revocation is; others see it within the cache's TTL.
    app.keys.invalidate();
    Ok(())
}

fn dev_event(kind: &str, object: serde_json::Value) -> serde_json::Value {
    json!({
        "id": format!("evt_dev_{}", ulid::Ulid::new()),
        "object": "event",
        "api_version": super::stripe::STRIPE_API_VERSION,
        "created": now_ms() / 1000,
        "livemode": false,
        "type": kind,
        "data": {"object": object},
    })
}

/// The dev portal's "update card": the open invoice is paid (`invoice.paid`).
pub fn dev_invoice_paid_event(tenant: &Tenant) -> serde_json::Value {
    dev_event(
        "invoice.paid",
        json!({
            "id": format!("in_dev_{}", ulid::Ulid::new()),
            "object": "invoice",
            "customer": tenant.stripe_customer_id,
            "status": "paid",
            "billing_reason": "subscription_cycle",
            "amount_paid": tenant.plan.price_monthly_usd() * 100,
            "currency": "usd",
            "parent": {
                "type": "subscription_details",
                "subscription_details": {
                    "subscription": tenant.stripe_subscription_id,
                    "metadata": {"tenant_id": tenant.id.as_str()},
                },
            },
        }),
    )
}

/// The dev portal's "cancel": `customer.subscription.deleted`.
pub fn dev_subscription_deleted_event(tenant: &Tenant) -> serde_json::Value {
    dev_event(
        "customer.subscription.deleted",
        json!({
            "id": tenant.stripe_subscription_id,
            "object": "subscription",
            "customer": tenant.stripe_customer_id,
            "status": "canceled",
            "cancel_at_period_end": false,
            "metadata": {"tenant_id": tenant.id.as_str(), "plan": tenant.plan.as_str()},
            "items": {"object": "list", "data": [{"price": {"lookup_key": tenant.plan.as_str()}}]},
        }),
    )
}
