//! Login sessions: server-side rows behind an opaque cookie (32 random bytes, base64url; only the
//! SHA-256 is stored), the per-email failure counter that locks out password guessing, and the
//! single-use magic login links of the welcome email.

use secrecy::SecretString;

use crate::app::AppState;
use crate::domain::TenantId;
use crate::jobs::{Done, JobKind, JobRef, Task};
use crate::store::{Store, StoreError, StoreResult, Tx, now_ms};
use crate::{with_conn, with_pool, with_reader};

/// Failed password attempts for one email that lock it…
pub const MAX_LOGIN_FAILURES: usize = 5;
/// …when they all happened within this window (15 minutes).
pub const FAILURE_WINDOW_MS: i64 = 15 * 60_000;

/// Length of a session token: 32 bytes in unpadded base64url.
const TOKEN_LEN: usize = 43;

/// How a session was started (`sessions.method`, and the `first_login` milestone's detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    Password,
    MagicLink,
}

impl LoginMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginMethod::Password => "password",
            LoginMethod::MagicLink => "magic_link",
        }
    }
}

/// A freshly started session: the token goes in the cookie and is never stored.
pub struct IssuedSession {
    pub token: SecretString,
    pub expires_at: i64,
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub tenant_id: TenantId,
    pub method: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What presenting a magic login token achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MagicToken {
    /// Consumed now by this call: the tenant it signs in.
    Consumed(TenantId),
    /// It was valid once but has been used.
    AlreadyUsed,
    /// It was never used and is past its expiry.
    Expired,
    /// No such token.
    Unknown,
}

pub use super::token_hash;

/// A new session or login token: 32 random bytes.
pub(crate) fn new_session_token() -> String {
    super::random_token(32)
}

/// Whether `token` has the shape of a token we issue; anything else is not worth a query.
fn plausible_token(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// When a lock on an email ends, given its failure times within the window, newest first: the
/// lock holds until the `MAX_LOGIN_FAILURES`-th newest failure leaves the window.
pub fn locked_until(failures_newest_first: &[i64], now: i64) -> Option<i64> {
    let nth = *failures_newest_first.get(MAX_LOGIN_FAILURES - 1)?;
    let until = nth + FAILURE_WINDOW_MS;
    (until > now).then_some(until)
}

fn tenant_id(raw: String) -> StoreResult<TenantId> {
    TenantId::parse(&raw).ok_or_else(|| StoreError::Corrupt(format!("tenant id {raw}")))
}

#[derive(sqlx::FromRow)]
struct SessionTenantRow {
    #[sqlx(flatten)]
    tenant: crate::store::tenants::TenantRow,
    session_method: String,
    session_created_at: i64,
    session_expires_at: i64,
}

impl Tx {
    /// Starts a session for `tenant` lasting `ttl_ms`; returns its token (only the hash is kept).
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, method = method.as_str()))]
    pub async fn create_session(
        &mut self,
        tenant: &TenantId,
        method: LoginMethod,
        ttl_ms: i64,
    ) -> StoreResult<IssuedSession> {
        let token = new_session_token();
        let now = now_ms();
        let expires_at = now + ttl_ms;
        with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO sessions (id_hash, tenant_id, method, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(token_hash(&token))
            .bind(tenant.as_str())
            .bind(method.as_str())
            .bind(now)
            .bind(expires_at)
            .execute(&mut *conn)
            .await?;
        });
        Ok(IssuedSession {
            token: SecretString::from(token),
            expires_at,
        })
    }

    /// A successful sign-in in this transaction: a new session, and the email's failed attempts
    /// forgotten.
    pub async fn start_session(
        &mut self,
        tenant: &TenantId,
        email_normalized: &str,
        method: LoginMethod,
        ttl_ms: i64,
    ) -> StoreResult<IssuedSession> {
        let session = self.create_session(tenant, method, ttl_ms).await?;
        self.clear_login_failures(email_normalized).await?;
        Ok(session)
    }

    /// Forgets the failed attempts of an email (after a successful sign-in).
    #[tracing::instrument(skip_all)]
    pub async fn clear_login_failures(&mut self, email_normalized: &str) -> StoreResult<()> {
        with_conn!(self, |conn| {
            sqlx::query("DELETE FROM login_failures WHERE email = $1")
                .bind(email_normalized)
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }

    /// Consumes a magic login token, at most once whatever the concurrency: the single
    /// conditional update decides; the follow-up read only explains a refusal.
    #[tracing::instrument(skip_all)]
    pub async fn consume_magic_token(&mut self, token: &str) -> StoreResult<MagicToken> {
        if !plausible_token(token) {
            return Ok(MagicToken::Unknown);
        }
        let hash = token_hash(token);
        let now = now_ms();
        with_conn!(self, |conn| {
            let consumed: Option<String> = sqlx::query_scalar(
                "UPDATE login_tokens SET used_at = $2 WHERE token_hash = $1 AND purpose = 'magic_login' \
                 AND used_at IS NULL AND expires_at > $2 RETURNING tenant_id",
            )
            .bind(&hash)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(id) = consumed {
                return Ok(MagicToken::Consumed(tenant_id(id)?));
            }
            let row: Option<(Option<i64>, i64)> = sqlx::query_as(
                "SELECT used_at, expires_at FROM login_tokens \
                 WHERE token_hash = $1 AND purpose = 'magic_login'",
            )
            .bind(&hash)
            .fetch_optional(&mut *conn)
            .await?;
            Ok(match row {
                None => MagicToken::Unknown,
                Some((Some(_), _)) => MagicToken::AlreadyUsed,
                Some((None, _)) => MagicToken::Expired,
            })
        })
    }
}

impl Store {
    /// Starts a session and clears the email's failed attempts, in one transaction.
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, method = method.as_str()))]
    pub async fn start_session(
        &self,
        tenant: &TenantId,
        email_normalized: &str,
        method: LoginMethod,
        ttl_ms: i64,
    ) -> StoreResult<IssuedSession> {
        let mut tx = self.begin().await?;
        let session = tx
            .start_session(tenant, email_normalized, method, ttl_ms)
            .await?;
        tx.commit().await?;
        Ok(session)
    }

    /// The live (unrevoked, unexpired) session a token names.
    #[tracing::instrument(skip_all)]
    pub async fn session(&self, token: &str) -> StoreResult<Option<Session>> {
        if !plausible_token(token) {
            return Ok(None);
        }
        let row: Option<(String, String, i64, i64)> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT tenant_id, method, created_at, expires_at FROM sessions \
                 WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
            )
            .bind(token_hash(token))
            .bind(now_ms())
            .fetch_optional(pool)
            .await?
        });
        row.map(|(id, method, created_at, expires_at)| {
            Ok(Session {
                tenant_id: tenant_id(id)?,
                method,
                created_at,
                expires_at,
            })
        })
        .transpose()
    }

    /// [`Store::session`] with its tenant, in one query (every signed-in page needs both).
    #[tracing::instrument(skip_all)]
    pub async fn session_with_tenant(
        &self,
        token: &str,
    ) -> StoreResult<Option<(Session, crate::store::Tenant)>> {
        if !plausible_token(token) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {}, s.method AS session_method, s.created_at AS session_created_at, \
             s.expires_at AS session_expires_at FROM sessions s JOIN tenants t ON t.id = s.tenant_id \
             WHERE s.id_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2",
            crate::store::tenants::tenant_columns_of("t")
        );
        let row: Option<SessionTenantRow> = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(token_hash(token))
                .bind(now_ms())
                .fetch_optional(pool)
                .await?
        });
        row.map(|r| {
            let tenant = crate::store::Tenant::try_from(r.tenant)?;
            let session = Session {
                tenant_id: tenant.id.clone(),
                method: r.session_method,
                created_at: r.session_created_at,
                expires_at: r.session_expires_at,
            };
            Ok((session, tenant))
        })
        .transpose()
    }

    /// Revokes the session a token names; true when a live session was revoked.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_session(&self, token: &str) -> StoreResult<bool> {
        if !plausible_token(token) {
            return Ok(false);
        }
        let n = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL",
            )
            .bind(token_hash(token))
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Records a failed sign-in attempt for an email (known or not: the lock must not reveal
    /// which addresses have accounts).
    #[tracing::instrument(skip_all)]
    pub async fn record_login_failure(&self, email_normalized: &str, at: i64) -> StoreResult<()> {
        with_pool!(self, |pool| {
            sqlx::query("INSERT INTO login_failures (email, failed_at) VALUES ($1, $2)")
                .bind(email_normalized)
                .bind(at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Until when an email is locked out of password sign-in, if it is now.
    #[tracing::instrument(skip_all)]
    pub async fn login_locked_until(
        &self,
        email_normalized: &str,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        let recent: Vec<i64> = with_reader!(self, |pool| {
            sqlx::query_scalar(
                "SELECT failed_at FROM login_failures WHERE email = $1 AND failed_at > $2 \
                 ORDER BY failed_at DESC LIMIT $3",
            )
            .bind(email_normalized)
            .bind(now - FAILURE_WINDOW_MS)
            .bind(MAX_LOGIN_FAILURES as i64)
            .fetch_all(pool)
            .await?
        });
        Ok(locked_until(&recent, now))
    }

    /// Deletes failed attempts older than `before`; returns how many.
    #[tracing::instrument(skip_all)]
    pub async fn prune_login_failures(&self, before: i64) -> StoreResult<u64> {
        Ok(with_pool!(self, |pool| {
            sqlx::query("DELETE FROM login_failures WHERE failed_at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Drops sessions and sign-in links that expired (or were revoked) before `before`.
    pub async fn prune_sessions(&self, before: i64) -> StoreResult<u64> {
        let sessions = with_pool!(self, |pool| {
            sqlx::query("DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        let tokens = with_pool!(self, |pool| {
            sqlx::query("DELETE FROM login_tokens WHERE expires_at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(sessions + tokens)
    }
}

/// How often expired sessions, login links and old login failures are deleted.
pub const PRUNE_EVERY_MS: i64 = 3_600_000;

/// Periodic: deletes sessions and login links a day after they expired, and login failures a
/// day after they stopped counting.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Prune {}

impl Task for Prune {
    type Context = AppState;
    const KIND: JobKind = JobKind::new("prune_sessions", 0);

    async fn run(&self, app: &AppState, _: JobRef<'_>) -> Result<Done, String> {
        let day_ago = now_ms() - 86_400_000;
        let store = &app.store;
        store
            .prune_login_failures(day_ago)
            .await
            .map_err(|e| e.to_string())?;
        store
            .prune_sessions(day_ago)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Done::ByWorker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn session_tokens_are_32_random_bytes_in_base64url() {
        let a = new_session_token();
        let b = new_session_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_LEN);
        assert!(plausible_token(&a), "{a}");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&a)
            .unwrap();
        assert_eq!(raw.len(), 32);
    }

    #[test]
    fn implausible_tokens_are_refused_without_a_query() {
        assert!(!plausible_token(""));
        assert!(!plausible_token(&"a".repeat(TOKEN_LEN + 1)));
        assert!(!plausible_token(&format!("{}=", "a".repeat(TOKEN_LEN - 1))));
        assert!(!plausible_token(&format!("{}'", "a".repeat(TOKEN_LEN - 1))));
    }

    #[test]
    fn token_hash_is_hex_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn four_failures_do_not_lock() {
        let now = 1_000_000_000;
        assert_eq!(
            locked_until(&[now - 1, now - 2, now - 3, now - 4], now),
            None
        );
        assert_eq!(locked_until(&[], now), None);
    }

    #[test]
    fn five_failures_lock_until_the_fifth_newest_leaves_the_window() {
        let now = 1_000_000_000;
        let failures = [
            now - 1_000,
            now - 2_000,
            now - 3_000,
            now - 4_000,
            now - 60_000,
        ];
        assert_eq!(
            locked_until(&failures, now),
            Some(now - 60_000 + FAILURE_WINDOW_MS)
        );
    }

    #[test]
    fn a_lock_ends_when_the_failures_age_out() {
        let now = 1_000_000_000;
        let old = now - FAILURE_WINDOW_MS;
        assert_eq!(locked_until(&[old, old, old, old, old], now), None);
    }
}
