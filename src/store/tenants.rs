//! The tenant aggregate: tenants and their status history.

use crate::domain::{Plan, TenantId, TenantStatus};
use crate::{with_conn, with_reader};

use super::{Store, StoreError, StoreResult, Tx, now_ms};

/// A stored tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub email: String,
    pub company_name: String,
    pub plan: Plan,
    pub status: TenantStatus,
    pub status_reason: Option<String>,
    pub stripe_checkout_session_id: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub activated_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    id: String,
    email: String,
    company_name: String,
    plan: String,
    status: String,
    status_reason: Option<String>,
    stripe_checkout_session_id: Option<String>,
    stripe_customer_id: Option<String>,
    stripe_subscription_id: Option<String>,
    created_at: i64,
    updated_at: i64,
    activated_at: Option<i64>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;

    fn try_from(r: TenantRow) -> Result<Self, Self::Error> {
        Ok(Tenant {
            id: TenantId::parse(&r.id)
                .ok_or_else(|| StoreError::Corrupt(format!("tenant id {}", r.id)))?,
            plan: r
                .plan
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("plan {}", r.plan)))?,
            status: r.status.parse().map_err(StoreError::Corrupt)?,
            email: r.email,
            company_name: r.company_name,
            status_reason: r.status_reason,
            stripe_checkout_session_id: r.stripe_checkout_session_id,
            stripe_customer_id: r.stripe_customer_id,
            stripe_subscription_id: r.stripe_subscription_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            activated_at: r.activated_at,
        })
    }
}

pub(crate) const TENANT_COLUMNS: &str = "id, email, company_name, plan, status, status_reason, \
    stripe_checkout_session_id, stripe_customer_id, stripe_subscription_id, created_at, updated_at, activated_at";

/// [`TENANT_COLUMNS`], each qualified with a table `alias`, for joins.
pub(crate) fn tenant_columns_of(alias: &str) -> String {
    TENANT_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a signup writes.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: TenantId,
    pub email: String,
    pub email_normalized: String,
    pub company_name: String,
    /// The first user's (the owner's) password hash.
    pub password_hash: String,
    pub plan: Plan,
    pub status: TenantStatus,
    pub reason: String,
    pub stripe_checkout_session_id: Option<String>,
}

/// One row of a tenant's status history.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatusChange {
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: String,
    pub actor: String,
    pub at: i64,
}

/// A tenant's subscription and consent, as held (`billing::lifecycle`, `email` consent).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Billing {
    pub subscription_status: Option<String>,
    /// The Stripe time (seconds) of the event that said so.
    pub subscription_at: Option<i64>,
    pub cancel_at_period_end: bool,
    /// Seconds.
    pub trial_end: Option<i64>,
    pub canceled_at: Option<i64>,
    pub erased_at: Option<i64>,
    pub marketing_opt_in: bool,
    pub unsubscribed_at: Option<i64>,
}

/// Which tenants a search selects: `text` found in the email or company name (case-insensitive)
/// or equal to the id, and the status.
#[derive(Debug, Clone, Default)]
pub struct TenantSearch {
    pub text: Option<String>,
    pub status: Option<TenantStatus>,
}

/// Where a page of a tenant search ends: its last tenant's creation time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCursor {
    pub created_at: i64,
    pub id: String,
}

impl TenantCursor {
    /// The cursor after `tenant`.
    pub fn after(tenant: &Tenant) -> Self {
        Self {
            created_at: tenant.created_at,
            id: tenant.id.to_string(),
        }
    }

    /// A cursor [`TenantCursor`]'s `Display` wrote (`{created_at}_{id}`).
    pub fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('_')?;
        Some(Self {
            created_at: at.parse().ok()?,
            id: TenantId::parse(id)?.to_string(),
        })
    }
}

impl std::fmt::Display for TenantCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.created_at, self.id)
    }
}

impl Store {
    /// A tenant's subscription and consent.
    pub async fn billing(&self, id: &TenantId) -> StoreResult<Option<Billing>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT subscription_status, subscription_at, cancel_at_period_end <> 0 AS cancel_at_period_end, \
                 trial_end, canceled_at, erased_at, marketing_opt_in <> 0 AS marketing_opt_in, unsubscribed_at \
                 FROM tenants WHERE id = $1",
            )
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Fetches one tenant.
    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let row: Option<TenantRow> = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
            )))
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(Tenant::try_from).transpose()
    }

    /// Fetches the tenant a checkout session was created for.
    pub async fn tenant_by_checkout_session(
        &self,
        session_id: &str,
    ) -> StoreResult<Option<Tenant>> {
        let row: Option<TenantRow> = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TENANT_COLUMNS} FROM tenants WHERE stripe_checkout_session_id = $1"
            )))
            .bind(session_id)
            .fetch_optional(pool)
            .await?
        });
        row.map(Tenant::try_from).transpose()
    }

    /// Fetches a tenant by email, case-insensitively.
    pub async fn tenant_by_email(&self, email_normalized: &str) -> StoreResult<Option<Tenant>> {
        let row: Option<TenantRow> = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TENANT_COLUMNS} FROM tenants WHERE email_normalized = $1"
            )))
            .bind(email_normalized)
            .fetch_optional(pool)
            .await?
        });
        row.map(Tenant::try_from).transpose()
    }

    /// Lists tenants, newest first, optionally of one status.
    pub async fn list_tenants(
        &self,
        status: Option<TenantStatus>,
        limit: i64,
    ) -> StoreResult<Vec<Tenant>> {
        let rows: Vec<TenantRow> = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TENANT_COLUMNS} FROM tenants WHERE ($1 IS NULL OR status = $1) \
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            )))
            .bind(status.map(|s| s.as_str()))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(Tenant::try_from).collect()
    }

    /// A page of tenants, newest first, that `search` selects: `limit` of them after `after`
    /// (the last one of the previous page), and how many there are in all.
    pub async fn search_tenants(
        &self,
        search: &TenantSearch,
        limit: i64,
        after: Option<&TenantCursor>,
    ) -> StoreResult<(Vec<Tenant>, i64)> {
        let text = search.text.as_deref().map(|t| t.trim().to_lowercase());
        let text = text.filter(|t| !t.is_empty());
        let pattern = text.as_deref().map(|t| super::like_pattern(t, true));
        // An id is matched exactly (its index); email and company anywhere in them.
        let matches = "($1 IS NULL OR id = $2 OR email_normalized LIKE $1 ESCAPE '\\' \
             OR LOWER(company_name) LIKE $1 ESCAPE '\\') AND ($3 IS NULL OR status = $3)";
        let id = search.text.as_deref().map(str::trim);
        let status = search.status.map(|s| s.as_str());
        let (at, after_id) =
            after.map_or((None, None), |c| (Some(c.created_at), Some(c.id.as_str())));
        let page_sql = format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE {matches} \
             AND ($4 IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5)) \
             ORDER BY created_at DESC, id DESC LIMIT $6"
        );
        let count_sql = format!("SELECT COUNT(*) FROM tenants WHERE {matches}");
        let (rows, total): (Vec<TenantRow>, i64) = with_reader!(self, |pool| {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(page_sql))
                .bind(pattern.as_deref())
                .bind(id)
                .bind(status)
                .bind(at)
                .bind(after_id)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            let total = sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql))
                .bind(pattern.as_deref())
                .bind(id)
                .bind(status)
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        let tenants = rows
            .into_iter()
            .map(Tenant::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((tenants, total))
    }

    /// How many tenants are in each status (statuses with none are absent).
    pub async fn tenant_status_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as("SELECT status, COUNT(*) FROM tenants GROUP BY status ORDER BY status")
                .fetch_all(pool)
                .await?
        }))
    }

    /// A tenant's status changes, oldest first.
    pub async fn status_history(&self, id: &TenantId) -> StoreResult<Vec<StatusChange>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT from_status, to_status, reason, actor, at FROM tenant_status_history \
                 WHERE tenant_id = $1 ORDER BY id",
            )
            .bind(id.as_str())
            .fetch_all(pool)
            .await?
        }))
    }
}

impl Tx {
    /// Fetches one tenant on this transaction's connection (never a second connection while
    /// this one is held: under load that would exhaust the pool).
    pub async fn tenant(&mut self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let row: Option<TenantRow> = with_conn!(self, |conn| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
            )))
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?
        });
        row.map(Tenant::try_from).transpose()
    }

    /// Inserts a new tenant and its first user, the owner, with the signup's email and
    /// password; the database records its first history row (migration 0005). A taken email
    /// (another tenant's, or any tenant's user's) is `Conflict("email")`.
    #[tracing::instrument(skip_all, fields(tenant_id = %t.id))]
    pub async fn insert_tenant(&mut self, t: &NewTenant) -> StoreResult<()> {
        if !t.status.is_initial() {
            return Err(StoreError::Corrupt(format!(
                "a tenant cannot start as {}",
                t.status
            )));
        }
        let now = now_ms();
        with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO tenants (id, email, email_normalized, company_name, plan, \
                 status, stripe_checkout_session_id, created_at, updated_at, status_reason, status_actor) \
                 VALUES ($1, $2, $3, $4, $5, $6, $8, $7, $7, $9, 'customer')",
            )
            .bind(t.id.as_str())
            .bind(&t.email)
            .bind(&t.email_normalized)
            .bind(&t.company_name)
            .bind(t.plan.as_str())
            .bind(t.status.as_str())
            .bind(now)
            .bind(&t.stripe_checkout_session_id)
            .bind(&t.reason)
            .execute(&mut *conn)
            .await
            .map_err(|e| StoreError::unique(e, "email"))?;
            sqlx::query(
                "INSERT INTO users (id, tenant_id, email, email_normalized, name, password_hash, role, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, '', $5, 'owner', $6, $6)",
            )
            .bind(format!("usr_{}", ulid::Ulid::new()))
            .bind(t.id.as_str())
            .bind(&t.email)
            .bind(&t.email_normalized)
            .bind(&t.password_hash)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(|e| StoreError::unique(e, "email"))?;
        });
        Ok(())
    }

    /// Frees a tenant's email for a new signup (see `domain::tenant::releases_email`): the
    /// old row keeps its address for display and history, but no longer claims it.
    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn release_email(&mut self, id: &TenantId) -> StoreResult<()> {
        with_conn!(self, |conn| {
            sqlx::query(
                "UPDATE tenants SET email_normalized = email_normalized || '#released:' || id \
                 WHERE id = $1 AND email_normalized NOT LIKE '%#released:%'",
            )
            .bind(id.as_str())
            .execute(&mut *conn)
            .await?;
            // Its users (a signup that never paid has only its owner) give the address up too.
            sqlx::query(
                "UPDATE users SET email_normalized = email_normalized || '#released:' || tenant_id \
                 WHERE tenant_id = $1 AND email_normalized NOT LIKE '%#released:%'",
            )
            .bind(id.as_str())
            .execute(&mut *conn)
            .await?;
        });
        Ok(())
    }

    /// Records that provisioning of a tenant already in `provisioning` was forced to start
    /// again: a history row from `provisioning` to `provisioning` with who and why (the status
    /// itself does not change, so the trigger writes nothing). The sweeper's timeout counts
    /// from it.
    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn record_forced_restart(
        &mut self,
        id: &TenantId,
        reason: &str,
        actor: &str,
    ) -> StoreResult<()> {
        with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO tenant_status_history (tenant_id, from_status, to_status, reason, actor, at) \
                 VALUES ($1, 'provisioning', 'provisioning', $2, $3, $4)",
            )
            .bind(id.as_str())
            .bind(reason)
            .bind(actor)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
        });
        Ok(())
    }

    /// Moves a tenant to `to` if the lifecycle allows it from its current status, recording the
    /// change in the history within this transaction. Returns the status it moved from.
    #[tracing::instrument(skip_all, fields(tenant_id = %id, to = %to))]
    pub async fn transition_tenant(
        &mut self,
        id: &TenantId,
        to: TenantStatus,
        reason: &str,
        actor: &str,
    ) -> StoreResult<TenantStatus> {
        let current: Option<String> = with_conn!(self, |conn| {
            sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *conn)
                .await?
        });
        let from: TenantStatus = current
            .ok_or(StoreError::NotFound("tenant"))?
            .parse()
            .map_err(StoreError::Corrupt)?;
        self.transition_tenant_from(id, from, to, reason, actor)
            .await
    }

    /// [`Tx::transition_tenant`] for a caller that already read the tenant's status `from`: one
    /// statement fewer. If the status is no longer `from`, nothing changes and the answer is a
    /// transition error.
    pub async fn transition_tenant_from(
        &mut self,
        id: &TenantId,
        from: TenantStatus,
        to: TenantStatus,
        reason: &str,
        actor: &str,
    ) -> StoreResult<TenantStatus> {
        from.transition_to(to)?;
        let now = now_ms();
        with_conn!(self, |conn| {
            // The status guard makes a concurrent change (on Postgres, another transaction that
            // committed first) fail this update instead of being overwritten.
            // The history row is written by the database's trigger (migration 0005).
            let updated = sqlx::query(
                "UPDATE tenants SET status = $1, status_reason = $2, updated_at = $3, status_actor = $6, \
                 activated_at = CASE WHEN $1 = 'active' THEN COALESCE(activated_at, $3) ELSE activated_at END, \
                 canceled_at = CASE WHEN $1 = 'canceled' THEN COALESCE(canceled_at, $3) ELSE canceled_at END \
                 WHERE id = $4 AND status = $5",
            )
            .bind(to.as_str())
            .bind(reason)
            .bind(now)
            .bind(id.as_str())
            .bind(from.as_str())
            .bind(actor)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if updated != 1 {
                return Err(StoreError::Transition(crate::domain::TransitionError {
                    from,
                    to,
                }));
            }
            Ok(from)
        })
    }

    /// Moves a tenant from `provisioning` to `active` (all its steps are done) and then, if the
    /// subscription changed while its workspace was being set up (a payment that failed
    /// meanwhile: `domain::subscription`), on to what the held subscription status says. One
    /// statement in the usual case: the update returns the held status. Returns where the tenant
    /// ended up.
    pub async fn activate_tenant(
        &mut self,
        id: &TenantId,
        reason: &str,
        actor: &str,
    ) -> StoreResult<TenantStatus> {
        TenantStatus::Provisioning.transition_to(TenantStatus::Active)?;
        let now = now_ms();
        let held: Option<Option<String>> = with_conn!(&mut *self, |conn| {
            sqlx::query_scalar(
                "UPDATE tenants SET status = 'active', status_reason = $1, updated_at = $2, status_actor = $3, \
                 activated_at = COALESCE(activated_at, $2) \
                 WHERE id = $4 AND status = 'provisioning' RETURNING subscription_status",
            )
            .bind(reason)
            .bind(now)
            .bind(actor)
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?
        });
        let Some(held) = held else {
            return Err(StoreError::Transition(crate::domain::TransitionError {
                from: TenantStatus::Provisioning,
                to: TenantStatus::Active,
            }));
        };
        let held = held.and_then(|s| s.parse().ok());
        let Some(to) = crate::domain::subscription::settled_status(held) else {
            return Ok(TenantStatus::Active);
        };
        self.transition_tenant_from(
            id,
            TenantStatus::Active,
            to,
            "the subscription changed while the workspace was being set up",
            "stripe webhook",
        )
        .await?;
        Ok(to)
    }

    /// Moves a tenant from `pending_payment` to `provisioning` for its paid checkout session
    /// `session_id`, storing the Stripe customer and subscription in the same statement. False
    /// (and nothing changed) unless the tenant exists, the session is the one created for it and
    /// it is still waiting for payment.
    pub async fn pay_tenant(
        &mut self,
        id: &TenantId,
        session_id: &str,
        customer: Option<&str>,
        subscription: Option<&str>,
        reason: &str,
        actor: &str,
    ) -> StoreResult<bool> {
        TenantStatus::PendingPayment.transition_to(TenantStatus::Provisioning)?;
        let moved = with_conn!(self, |conn| {
            sqlx::query(
                "UPDATE tenants SET status = 'provisioning', status_reason = $1, status_actor = $2, updated_at = $3, \
                 stripe_customer_id = $4, stripe_subscription_id = $5 \
                 WHERE id = $6 AND stripe_checkout_session_id = $7 AND status = 'pending_payment'",
            )
            .bind(reason)
            .bind(actor)
            .bind(now_ms())
            .bind(customer)
            .bind(subscription)
            .bind(id.as_str())
            .bind(session_id)
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
        Ok(moved == 1)
    }
}
