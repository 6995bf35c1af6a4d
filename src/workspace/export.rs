//! The tenant's data as one JSON document (GDPR access and portability, `POST /account/export`):
//! the account with its billing and consent, every document with its content, the API keys'
//! metadata (never a secret), and the events about the tenant (status changes, milestones,
//! consent answers, Stripe events, emails sent).

use serde_json::{Value, json};

use crate::domain::TenantId;
use crate::store::{Store, StoreError, StoreResult, ms_to_datetime};
use crate::with_reader;

fn iso(ms: i64) -> String {
    ms_to_datetime(ms).to_rfc3339()
}

fn iso_opt(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| Value::String(iso(m)))
}

/// Everything held about `tenant`, exported at `now` (ms).
pub async fn export(store: &Store, tenant: &TenantId, now: i64) -> StoreResult<Value> {
    let t = store
        .tenant(tenant)
        .await?
        .ok_or(StoreError::NotFound("tenant"))?;
    let billing = store.billing(tenant).await?.unwrap_or_default();
    let id = tenant.as_str();
    type DocRow = (String, String, String, String, String, bool, i64);
    let docs: Vec<DocRow> = with_reader!(store, |pool| {
        sqlx::query_as(
            "SELECT id, title, content_type, content, metadata, sample, created_at FROM documents \
             WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(id)
        .fetch_all(pool)
        .await?
    });
    type KeyRow = (
        String,
        String,
        String,
        String,
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let keys: Vec<KeyRow> = with_reader!(store, |pool| {
        sqlx::query_as(
            "SELECT id, name, prefix, scopes, created_at, last_used_at, expires_at, revoked_at \
             FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(id)
        .fetch_all(pool)
        .await?
    });
    let history = store.status_history(tenant).await?;
    let milestones: Vec<(String, String, i64)> = with_reader!(store, |pool| {
        sqlx::query_as(
            "SELECT milestone, source, occurred_at FROM activation_milestones WHERE tenant_id = $1 \
             ORDER BY occurred_at",
        )
        .bind(id)
        .fetch_all(pool)
        .await?
    });
    let consents: Vec<(String, i64, String, Option<String>, i64)> = with_reader!(store, |pool| {
        sqlx::query_as(
            "SELECT purpose, granted, source, client, at FROM consent_events WHERE tenant_id = $1 \
             ORDER BY id",
        )
        .bind(id)
        .fetch_all(pool)
        .await?
    });
    let events: Vec<(String, String, i64, Option<String>)> = with_reader!(store, |pool| {
        sqlx::query_as(
            "SELECT id, type, created, outcome FROM webhook_events WHERE tenant_id = $1 \
             ORDER BY created, id",
        )
        .bind(id)
        .fetch_all(pool)
        .await?
    });
    let emails: Vec<(String, String, String, i64, Option<i64>)> = with_reader!(store, |pool| {
        sqlx::query_as(
            "SELECT kind, subject, status, created_at, sent_at FROM email_outbox WHERE tenant_id = $1 \
             ORDER BY created_at, id",
        )
        .bind(id)
        .fetch_all(pool)
        .await?
    });
    Ok(json!({
        "format": "onboard-export-v1",
        "exported_at": iso(now),
        "account": {
            "tenant_id": id,
            "email": t.email,
            "company_name": t.company_name,
            "plan": t.plan,
            "status": t.status,
            "created_at": iso(t.created_at),
            "activated_at": iso_opt(t.activated_at),
            "subscription": {
                "status": billing.subscription_status,
                "cancel_at_period_end": billing.cancel_at_period_end,
                "trial_end": billing.trial_end.map(|s| iso(s * 1000)),
                "canceled_at": iso_opt(billing.canceled_at),
                "stripe_customer_id": t.stripe_customer_id,
                "stripe_subscription_id": t.stripe_subscription_id,
            },
            "marketing": {
                "opted_in": billing.marketing_opt_in,
                "unsubscribed_at": iso_opt(billing.unsubscribed_at),
            },
        },
        "documents": docs.into_iter().map(|(id, title, content_type, content, metadata, sample, created)| json!({
            "id": id,
            "title": title,
            "content_type": content_type,
            "content": content,
            "metadata": serde_json::from_str::<Value>(&metadata).unwrap_or(Value::Null),
            "sample": sample,
            "created_at": iso(created),
        })).collect::<Vec<_>>(),
        "api_keys": keys.into_iter().map(|(id, name, prefix, scopes, created, used, expires, revoked)| json!({
            "id": id,
            "name": name,
            "prefix": prefix,
            "scopes": scopes.split_whitespace().collect::<Vec<_>>(),
            "created_at": iso(created),
            "last_used_at": iso_opt(used),
            "expires_at": iso_opt(expires),
            "revoked_at": iso_opt(revoked),
        })).collect::<Vec<_>>(),
        "events": {
            "status_changes": history.into_iter().map(|h| json!({
                "from": h.from_status,
                "to": h.to_status,
                "reason": h.reason,
                "by": h.actor,
                "at": iso(h.at),
            })).collect::<Vec<_>>(),
            "milestones": milestones.into_iter().map(|(m, source, at)| json!({
                "milestone": m, "source": source, "at": iso(at),
            })).collect::<Vec<_>>(),
            "consent": consents.into_iter().map(|(purpose, granted, source, client, at)| json!({
                "purpose": purpose, "granted": granted != 0, "source": source, "client": client, "at": iso(at),
            })).collect::<Vec<_>>(),
            "billing": events.into_iter().map(|(id, kind, created, outcome)| json!({
                "id": id, "type": kind, "created": iso(created * 1000), "outcome": outcome,
            })).collect::<Vec<_>>(),
            "emails": emails.into_iter().map(|(kind, subject, status, created, sent)| json!({
                "kind": kind, "subject": subject, "status": status, "created_at": iso(created), "sent_at": iso_opt(sent),
            })).collect::<Vec<_>>(),
        },
    }))
}

/// Emails the tenant that its data was exported at `now` (a security notice: an export holds
/// everything).
pub async fn notify_exported(
    app: &crate::app::AppState,
    tenant: &crate::store::Tenant,
    now: i64,
) -> StoreResult<()> {
    let brand = app.mailer.brand();
    let when = ms_to_datetime(now)
        .format("%-d %B %Y at %H:%M UTC")
        .to_string();
    let email = crate::email::templates::data_export_ready(
        brand,
        tenant.id.as_str(),
        &tenant.email,
        &tenant.company_name,
        &when,
    );
    let mut tx = app.store.begin().await?;
    tx.queue_email(&email, &app.settings.sendgrid_from_email)
        .await?;
    tx.commit().await?;
    app.jobs_ready.notify_one();
    Ok(())
}
