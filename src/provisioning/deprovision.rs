//! Deprovisioning: `DEPROVISION_GRACE_DAYS` after a tenant is canceled, a periodic job deletes
//! its vector namespace, revokes its keys and erases its personal data (email, company name,
//! password hash, documents, sign-in links and sessions, the bodies of its emails, the Stripe
//! payloads that name it, the client addresses of its consent records), keeping an anonymised
//! tenant row so the funnel still counts it.

use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::domain::TenantId;
use crate::domain::audit::{Action, Actor};
use crate::jobs::{Done, JobKind, JobRef, Task};
use crate::store::{AuditEntry, StoreResult, Tx, now_ms};
use crate::{with_conn, with_reader};

/// How often the deprovisioning job looks for tenants past their grace period.
pub const DEPROVISION_EVERY_MS: i64 = 15 * 60_000;

/// At most this many tenants are erased per run (the next run takes the rest).
const BATCH: i64 = 50;

/// Periodic: erases canceled tenants whose grace period is over.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Deprovision {}

impl Task for Deprovision {
    type Context = AppState;
    const KIND: JobKind = JobKind::new("deprovision", 0);

    async fn run(&self, app: &AppState, _: JobRef<'_>) -> Result<Done, String> {
        let erased = run_due(app).await.map_err(|e| e.to_string())?;
        if erased > 0 {
            tracing::info!(erased, "canceled tenants erased after their grace period");
        }
        Ok(Done::ByWorker)
    }
}

/// Erases every canceled tenant whose grace period is over; returns how many.
pub async fn run_due(app: &AppState) -> anyhow::Result<usize> {
    let grace_ms = i64::from(app.settings.deprovision_grace_days) * 86_400_000;
    let due: Vec<String> = with_reader!(&app.store, |pool| {
        sqlx::query_scalar(
            "SELECT id FROM tenants WHERE status = 'canceled' AND erased_at IS NULL \
             AND canceled_at IS NOT NULL AND canceled_at <= $1 ORDER BY canceled_at LIMIT $2",
        )
        .bind(now_ms() - grace_ms)
        .bind(BATCH)
        .fetch_all(pool)
        .await?
    });
    let mut n = 0;
    for id in due {
        let Some(id) = TenantId::parse(&id) else {
            continue;
        };
        erase(app, &id).await?;
        n += 1;
    }
    Ok(n)
}

/// Erases one tenant: first its namespace (outside our database, so a failure leaves the tenant
/// for the next run), then everything else in one transaction.
pub async fn erase(app: &AppState, id: &TenantId) -> anyhow::Result<()> {
    app.vectors
        .drop_tenant_namespaces(id.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("deleting the namespace of {id}: {e}"))?;
    let mut tx = app.store.begin().await?;
    tx.erase_tenant(id).await?;
    tx.commit().await?;
    app.keys.invalidate();
    Ok(())
}

/// `%`, `_` and `\` taken literally in a `LIKE … ESCAPE '\'` pattern.
fn like_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Tx {
    /// Erases a tenant's personal data in this transaction and marks it erased; a tenant already
    /// erased is left alone.
    pub async fn erase_tenant(&mut self, id: &TenantId) -> StoreResult<bool> {
        let row: Option<(String, String, Option<i64>)> = with_conn!(&mut *self, |conn| {
            sqlx::query_as("SELECT email, company_name, erased_at FROM tenants WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *conn)
                .await?
        });
        let Some((email, company, None)) = row else {
            return Ok(false);
        };
        let now = now_ms();
        let tid = id.as_str();
        let mentions: Vec<String> = [email.as_str(), company.as_str()]
            .into_iter()
            .filter(|s| s.len() >= 3)
            .map(like_literal)
            .collect();
        let revoked: Vec<String> = with_conn!(&mut *self, |conn| {
            sqlx::query("DELETE FROM documents WHERE tenant_id = $1")
                .bind(tid)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM sessions WHERE tenant_id = $1")
                .bind(tid)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM login_tokens WHERE tenant_id = $1")
                .bind(tid)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM login_attempts WHERE email = lower($1)")
                .bind(&email)
                .execute(&mut *conn)
                .await?;
            let live_keys: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY id",
            )
            .bind(tid)
            .fetch_all(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE api_keys SET name = 'erased', revoked_at = COALESCE(revoked_at, $2), \
                 reveal_jti = NULL WHERE tenant_id = $1",
            )
            .bind(tid)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE email_outbox SET to_email = 'erased', subject = 'erased', preheader = '', \
                 text_body = '', html_body = '', headers = '[]', last_error = NULL WHERE tenant_id = $1",
            )
            .bind(tid)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE activation_events SET metadata = '{}' WHERE tenant_id = $1")
                .bind(tid)
                .execute(&mut *conn)
                .await?;
            sqlx::query("UPDATE activation_milestones SET detail = NULL WHERE tenant_id = $1")
                .bind(tid)
                .execute(&mut *conn)
                .await?;
            sqlx::query("UPDATE consent_events SET client = NULL WHERE tenant_id = $1")
                .bind(tid)
                .execute(&mut *conn)
                .await?;
            // An operator's note on a stuck customer may name the person.
            sqlx::query("UPDATE at_risk_flags SET resolution_note = NULL WHERE tenant_id = $1")
                .bind(tid)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE webhook_events SET payload = '{\"erased\":true}' WHERE tenant_id = $1",
            )
            .bind(tid)
            .execute(&mut *conn)
            .await?;
            for pattern in &mentions {
                // Throttling counters keyed by the address (password reset requests).
                sqlx::query("DELETE FROM rate_limits WHERE key LIKE $1 ESCAPE '\\'")
                    .bind(pattern)
                    .execute(&mut *conn)
                    .await?;
                // Anything else that names the person: events stored before they were matched
                // to the tenant, and finished jobs' payloads and errors.
                sqlx::query(
                    "UPDATE webhook_events SET payload = '{\"erased\":true}' \
                     WHERE payload LIKE $1 ESCAPE '\\'",
                )
                .bind(pattern)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "UPDATE jobs SET payload = '{}', last_error = NULL \
                     WHERE status IN ('done', 'dead') AND (payload LIKE $1 ESCAPE '\\' OR last_error LIKE $1 ESCAPE '\\')",
                )
                .bind(pattern)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "UPDATE email_outbox SET to_email = 'erased', subject = 'erased', preheader = '', \
                     text_body = '', html_body = '', headers = '[]', last_error = NULL \
                     WHERE to_email LIKE $1 ESCAPE '\\' OR text_body LIKE $1 ESCAPE '\\'",
                )
                .bind(pattern)
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query(
                "UPDATE tenants SET email = '', email_normalized = 'erased:' || id, company_name = '', \
                 status_reason = 'erased after the grace period', \
                 stripe_customer_id = NULL, stripe_subscription_id = NULL, stripe_checkout_session_id = NULL, \
                 erased_at = $2 WHERE id = $1",
            )
            .bind(tid)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            // Its people: addresses, names and passwords (the rows stay, for the audit trail's
            // ids), and invitations nobody accepted.
            sqlx::query(
                "UPDATE users SET email = '', email_normalized = 'erased:' || id, name = '', \
                 password_hash = '', updated_at = $2 WHERE tenant_id = $1",
            )
            .bind(tid)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE invitations SET email = '', email_normalized = 'erased:' || id, \
                 revoked_at = COALESCE(revoked_at, accepted_at, $2) WHERE tenant_id = $1",
            )
            .bind(tid)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            live_keys
        });
        for key in revoked {
            self.audit(
                &AuditEntry::new(Actor::System, Action::ApiKeyRevoked)
                    .target(key)
                    .with("tenant_id", tid)
                    .with("reason", "erasure after the grace period"),
            )
            .await?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::like_literal;

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_literal("a_b%c\\d"), "%a\\_b\\%c\\\\d%");
    }
}
