//! Marketing consent and unsubscribes (GDPR): the current answer on the tenant, every answer in
//! `consent_events` (purpose, answer, source, client address, time), and which emails an answer
//! stops. Transactional mail (sign-in links, receipts, security notices, dunning) is always
//! sent; lifecycle mail (reminders, trial notices) stops after an unsubscribe; marketing mail
//! needs an opt-in and stops after an unsubscribe.

use super::Category;
use crate::domain::TenantId;
use crate::store::{Store, StoreResult, Tx, now_ms};
use crate::{with_conn, with_reader};

/// Where an answer was given.
pub mod source {
    pub const SIGNUP: &str = "signup";
    pub const ACCOUNT_PAGE: &str = "account page";
    pub const UNSUBSCRIBE_LINK: &str = "unsubscribe link";
    pub const ONE_CLICK: &str = "one-click unsubscribe";
}

impl Tx {
    /// Records an answer about marketing email and makes it the current one. A "no" given by
    /// unsubscribing also stops lifecycle mail; a "yes" lifts a previous unsubscribe.
    pub async fn record_marketing_consent(
        &mut self,
        tenant: &TenantId,
        granted: bool,
        source: &str,
        client: Option<&str>,
    ) -> StoreResult<()> {
        let now = now_ms();
        let unsubscribing = !granted
            && matches!(
                source,
                self::source::UNSUBSCRIBE_LINK | self::source::ONE_CLICK
            );
        with_conn!(&mut *self, |conn| {
            sqlx::query(
                "INSERT INTO consent_events (tenant_id, purpose, granted, source, client, at) \
                 VALUES ($1, 'marketing', $2, $3, $4, $5)",
            )
            .bind(tenant.as_str())
            .bind(i64::from(granted))
            .bind(source)
            .bind(client)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE tenants SET marketing_opt_in = $2, unsubscribed_at = CASE \
                 WHEN $2 = 1 THEN NULL WHEN $3 = 1 THEN COALESCE(unsubscribed_at, $4) ELSE unsubscribed_at END \
                 WHERE id = $1",
            )
            .bind(tenant.as_str())
            .bind(i64::from(granted))
            .bind(i64::from(unsubscribing))
            .bind(now)
            .execute(&mut *conn)
            .await?;
        });
        Ok(())
    }

    /// Whether an email of `category` may be sent to `tenant` now.
    pub async fn may_email(&mut self, tenant: &str, category: Category) -> StoreResult<bool> {
        if category == Category::Transactional {
            return Ok(true);
        }
        let row: Option<(i64, Option<i64>)> = with_conn!(&mut *self, |conn| {
            sqlx::query_as("SELECT marketing_opt_in, unsubscribed_at FROM tenants WHERE id = $1")
                .bind(tenant)
                .fetch_optional(&mut *conn)
                .await?
        });
        Ok(allowed(category, row))
    }
}

/// The rule: (opt-in, unsubscribed at) of the tenant, or no such tenant (then only
/// transactional mail, which never reaches here).
fn allowed(category: Category, row: Option<(i64, Option<i64>)>) -> bool {
    match (category, row) {
        (Category::Transactional, _) => true,
        (_, None) => false,
        (Category::Lifecycle, Some((_, unsubscribed))) => unsubscribed.is_none(),
        (Category::Marketing, Some((opt_in, unsubscribed))) => {
            opt_in != 0 && unsubscribed.is_none()
        }
    }
}

/// One recorded answer.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ConsentEvent {
    pub purpose: String,
    pub granted: i64,
    pub source: String,
    pub client: Option<String>,
    pub at: i64,
}

impl Store {
    /// A tenant's answers, oldest first.
    pub async fn consent_events(&self, tenant: &TenantId) -> StoreResult<Vec<ConsentEvent>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT purpose, granted, source, client, at FROM consent_events WHERE tenant_id = $1 ORDER BY id",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactional_mail_always_goes_and_the_rest_follows_the_answers() {
        use Category::*;
        for row in [None, Some((0, None)), Some((1, Some(5)))] {
            assert!(allowed(Transactional, row));
        }
        assert!(allowed(Lifecycle, Some((0, None))));
        assert!(!allowed(Lifecycle, Some((0, Some(5)))));
        assert!(!allowed(Marketing, Some((0, None))));
        assert!(allowed(Marketing, Some((1, None))));
        assert!(!allowed(Marketing, Some((1, Some(5)))));
        assert!(!allowed(Lifecycle, None));
    }
}
