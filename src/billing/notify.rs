//! The emails the subscription's life sends, queued in the transaction that made the change
//! (so a change and its email commit together, and a replayed event sends nothing twice: every
//! email here has a dedupe key derived from the change).

use crate::app::AppState;
use crate::domain::{TenantId, TenantStatus};
use crate::email::templates;
use crate::store::{StoreResult, Tx};
use crate::with_conn;

/// When a tenant canceled at `canceled_at` (ms) has its data erased (ms).
pub fn erasure_at(app: &AppState, canceled_at: i64) -> i64 {
    canceled_at + i64::from(app.settings.deprovision_grace_days) * 86_400_000
}

/// `3 December 2026` for a time in ms.
pub fn human_date(ms: i64) -> String {
    crate::store::ms_to_datetime(ms)
        .format("%-d %B %Y")
        .to_string()
}

/// Who an email about `tenant` goes to: (address, company name), unless erased.
async fn recipient(tx: &mut Tx, tenant: &TenantId) -> StoreResult<Option<(String, String)>> {
    let row: Option<(String, String)> = with_conn!(&mut *tx, |conn| {
        sqlx::query_as(
            "SELECT email, company_name FROM tenants WHERE id = $1 AND erased_at IS NULL",
        )
        .bind(tenant.as_str())
        .fetch_optional(&mut *conn)
        .await?
    });
    Ok(row.filter(|(email, _)| !email.is_empty()))
}

/// Queues the email a tenant's move from `from` to `to` calls for; `at` (Stripe seconds, or ms
/// for a local change) tells one move from another of the same kind.
pub async fn on_move(
    tx: &mut Tx,
    app: &AppState,
    tenant: &TenantId,
    from: TenantStatus,
    to: TenantStatus,
    at: i64,
) -> StoreResult<()> {
    let Some((to_email, company)) = recipient(tx, tenant).await? else {
        return Ok(());
    };
    let brand = app.mailer.brand();
    let tid = tenant.as_str();
    let billing = brand.link("/account");
    let email = match to {
        TenantStatus::PastDue => templates::payment_failed(
            brand,
            tid,
            &to_email,
            &company,
            &billing,
            format!("payment_failed:{tid}:{at}"),
        ),
        TenantStatus::Active if matches!(from, TenantStatus::PastDue | TenantStatus::Suspended) => {
            templates::payment_recovered(
                brand,
                tid,
                &to_email,
                &company,
                format!("payment_recovered:{tid}:{at}"),
            )
        }
        TenantStatus::Suspended => templates::account_suspended(
            brand,
            tid,
            &to_email,
            &company,
            &billing,
            format!("account_suspended:{tid}:{at}"),
        ),
        TenantStatus::Canceled => {
            // The same instant the account page and the erasure job count from.
            let canceled_at: Option<i64> = with_conn!(&mut *tx, |conn| {
                sqlx::query_scalar("SELECT canceled_at FROM tenants WHERE id = $1")
                    .bind(tid)
                    .fetch_one(&mut *conn)
                    .await?
            });
            let erase = erasure_at(app, canceled_at.unwrap_or_else(crate::store::now_ms));
            templates::subscription_canceled(
                brand,
                tid,
                &to_email,
                &company,
                &human_date(erase),
                format!("subscription_canceled:{tid}"),
            )
        }
        _ => return Ok(()),
    };
    tx.queue_email(&email, &app.settings.sendgrid_from_email)
        .await?;
    Ok(())
}

/// Queues the trial-ending notice for a trial that ends at `trial_end` (Stripe seconds).
pub async fn trial_ending(
    tx: &mut Tx,
    app: &AppState,
    tenant: &TenantId,
    trial_end: i64,
) -> StoreResult<()> {
    let Some((to_email, company)) = recipient(tx, tenant).await? else {
        return Ok(());
    };
    let brand = app.mailer.brand();
    let tid = tenant.as_str();
    let email = templates::trial_ending(
        brand,
        tid,
        &to_email,
        &company,
        &human_date(trial_end * 1000),
        &brand.link("/account"),
        format!("trial_ending:{tid}:{trial_end}"),
    );
    tx.queue_email(&email, &app.settings.sendgrid_from_email)
        .await?;
    Ok(())
}

/// Queues the one checkout reminder of a signup still waiting for payment.
pub async fn checkout_reminder(
    tx: &mut Tx,
    app: &AppState,
    tenant: &TenantId,
    session_id: &str,
) -> StoreResult<bool> {
    let Some((to_email, company)) = recipient(tx, tenant).await? else {
        return Ok(false);
    };
    let brand = app.mailer.brand();
    let url = brand.link(&format!("/onboarding/checkout?session_id={session_id}"));
    let email = templates::checkout_reminder(brand, tenant.as_str(), &to_email, &company, &url);
    Ok(tx
        .queue_email(&email, &app.settings.sendgrid_from_email)
        .await?
        .is_some())
}
