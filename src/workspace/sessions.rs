//! Login sessions: server-side rows behind an opaque cookie (32 random bytes, base64url; only the
//! SHA-256 is stored); the sign-in attempts that lock out password guessing, per (email, client
//! address) and per client address; and the single-use links of the welcome email (sign-in) and
//! of "forgot password" (reset).

use secrecy::SecretString;

use crate::app::AppState;
use crate::domain::TenantId;
use crate::jobs::{Done, JobKind, JobRef, Task};
use crate::store::{Store, StoreError, StoreResult, Tx, now_ms};
use crate::{with_conn, with_pool, with_reader};

/// Failed password attempts for one email from one client address that lock that pair…
pub const MAX_LOGIN_FAILURES: usize = 5;
/// …when they all happened within this window (15 minutes; also the per-address window).
pub const FAILURE_WINDOW_MS: i64 = 15 * 60_000;

/// What a single-use token in `login_tokens` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// The welcome email's sign-in link.
    MagicLogin,
    /// A "forgot password" link.
    PasswordReset,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::MagicLogin => "magic_login",
            TokenPurpose::PasswordReset => "password_reset",
        }
    }
}

/// A password sign-in attempt, recorded before its hash runs: it counts as a failure until it
/// succeeds, so concurrent guesses cannot all pass the check before any failure is recorded.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    /// ULID: orders attempts made in the same millisecond.
    pub id: String,
    pub email: String,
    /// The client address key (an IPv6 client is its /64).
    pub client: String,
}

/// Whether an attempt may go on to check the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptCheck {
    Allowed,
    /// This email from this address is locked until then (ms).
    Locked {
        until: i64,
    },
    /// This address made too many failed attempts across all emails, until then (ms).
    AddressLimited {
        until: i64,
    },
}

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

/// A live session: one user of one tenant.
#[derive(Debug, Clone)]
pub struct Session {
    pub tenant_id: TenantId,
    pub user_id: String,
    /// The user's email.
    pub email: String,
    /// The name the user is shown by (empty until they give one).
    pub name: String,
    /// The user's role now (read with the session, so a role change applies at once).
    pub role: crate::domain::Role,
    pub method: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Whom a single-use sign-in or reset token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub tenant_id: TenantId,
    pub user_id: String,
}

/// What presenting a magic login token achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MagicToken {
    /// Consumed now by this call (or, for [`Store::login_token_state`], still usable): whom it
    /// signs in.
    Consumed(TokenOwner),
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

/// When a lock ends, given failure times within the window, newest first: it holds until the
/// `max`-th newest failure leaves the window.
pub fn locked_until(failures_newest_first: &[i64], max: usize, now: i64) -> Option<i64> {
    let nth = *failures_newest_first.get(max.checked_sub(1)?)?;
    let until = nth + FAILURE_WINDOW_MS;
    (until > now).then_some(until)
}

fn tenant_id(raw: String) -> StoreResult<TenantId> {
    TenantId::parse(&raw).ok_or_else(|| StoreError::Corrupt(format!("tenant id {raw}")))
}

fn role(raw: &str) -> StoreResult<crate::domain::Role> {
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("role {raw}")))
}

fn owner(tenant: String, user: Option<String>) -> StoreResult<TokenOwner> {
    Ok(TokenOwner {
        tenant_id: tenant_id(tenant)?,
        user_id: user.ok_or_else(|| StoreError::Corrupt("a login token without a user".into()))?,
    })
}

/// A session's columns with the user's, as `SESSION_COLUMNS` selects them (prefixed, so they
/// sit beside a tenant's row without clashing).
#[derive(sqlx::FromRow)]
struct SessionRow {
    session_tenant_id: String,
    session_user_id: String,
    session_email: String,
    session_name: String,
    session_role: String,
    session_method: String,
    session_created_at: i64,
    session_expires_at: i64,
}

/// The live session a token's hash (`$1`) names at `$2`, with its user (`u`).
const SESSION_COLUMNS: &str = "s.tenant_id AS session_tenant_id, s.user_id AS session_user_id, \
     u.email AS session_email, u.name AS session_name, u.role AS session_role, \
     s.method AS session_method, s.created_at AS session_created_at, \
     s.expires_at AS session_expires_at";
const LIVE_SESSION: &str = "s.id_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2";

impl TryFrom<SessionRow> for Session {
    type Error = StoreError;

    fn try_from(r: SessionRow) -> StoreResult<Session> {
        Ok(Session {
            tenant_id: tenant_id(r.session_tenant_id)?,
            user_id: r.session_user_id,
            email: r.session_email,
            name: r.session_name,
            role: role(&r.session_role)?,
            method: r.session_method,
            created_at: r.session_created_at,
            expires_at: r.session_expires_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SessionTenantRow {
    #[sqlx(flatten)]
    tenant: crate::store::tenants::TenantRow,
    #[sqlx(flatten)]
    session: SessionRow,
}

impl Tx {
    /// Starts a session for a user of `tenant` lasting `ttl_ms`; returns its token (only the
    /// hash is kept).
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, method = method.as_str()))]
    pub async fn create_session(
        &mut self,
        tenant: &TenantId,
        user_id: &str,
        method: LoginMethod,
        ttl_ms: i64,
    ) -> StoreResult<IssuedSession> {
        let token = new_session_token();
        let now = now_ms();
        let expires_at = now + ttl_ms;
        with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO sessions (id_hash, tenant_id, user_id, method, created_at, expires_at) \
                 VALUES ($1, $2, $6, $3, $4, $5)",
            )
            .bind(token_hash(&token))
            .bind(tenant.as_str())
            .bind(method.as_str())
            .bind(now)
            .bind(expires_at)
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
        });
        Ok(IssuedSession {
            token: SecretString::from(token),
            expires_at,
        })
    }

    /// A successful sign-in in this transaction: a new session, and the email's failed attempts
    /// from every address forgotten (whoever signs in this way has proved they own it).
    pub async fn start_session(
        &mut self,
        tenant: &TenantId,
        user_id: &str,
        email_normalized: &str,
        method: LoginMethod,
        ttl_ms: i64,
    ) -> StoreResult<IssuedSession> {
        let session = self.create_session(tenant, user_id, method, ttl_ms).await?;
        self.clear_login_failures(email_normalized).await?;
        Ok(session)
    }

    /// Forgets the failed attempts of an email, from every address.
    #[tracing::instrument(skip_all)]
    pub async fn clear_login_failures(&mut self, email_normalized: &str) -> StoreResult<()> {
        with_conn!(self, |conn| {
            sqlx::query("DELETE FROM login_attempts WHERE email = $1")
                .bind(email_normalized)
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }

    /// Creates a single-use token for `purpose`, valid for `ttl_ms`; only its hash is stored.
    /// Returns the token.
    pub async fn create_login_token(
        &mut self,
        tenant: &TenantId,
        user_id: &str,
        purpose: TokenPurpose,
        ttl_ms: i64,
    ) -> StoreResult<String> {
        let token = new_session_token();
        let now = now_ms();
        with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO login_tokens (token_hash, tenant_id, user_id, purpose, expires_at, created_at) \
                 VALUES ($1, $2, $6, $3, $4, $5)",
            )
            .bind(token_hash(&token))
            .bind(tenant.as_str())
            .bind(purpose.as_str())
            .bind(now + ttl_ms)
            .bind(now)
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
        });
        Ok(token)
    }

    /// Ends every live session of one user (a new password, a removed member).
    #[tracing::instrument(skip_all)]
    pub async fn revoke_user_sessions(&mut self, user_id: &str) -> StoreResult<u64> {
        Ok(with_conn!(self, |conn| {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            )
            .bind(user_id)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?
            .rows_affected()
        }))
    }

    /// Ends every live session of a tenant (erasure, closing the account).
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn revoke_all_sessions(&mut self, tenant: &TenantId) -> StoreResult<u64> {
        Ok(with_conn!(self, |conn| {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $2 WHERE tenant_id = $1 AND revoked_at IS NULL",
            )
            .bind(tenant.as_str())
            .bind(now_ms())
            .execute(&mut *conn)
            .await?
            .rows_affected()
        }))
    }

    /// Consumes a magic login token, at most once whatever the concurrency (see
    /// [`Tx::consume_login_token`]).
    pub async fn consume_magic_token(&mut self, token: &str) -> StoreResult<MagicToken> {
        self.consume_login_token(token, TokenPurpose::MagicLogin)
            .await
    }

    /// Consumes a single-use token for `purpose`, at most once whatever the concurrency: the
    /// single conditional update decides; the follow-up read only explains a refusal.
    #[tracing::instrument(skip_all, fields(purpose = purpose.as_str()))]
    pub async fn consume_login_token(
        &mut self,
        token: &str,
        purpose: TokenPurpose,
    ) -> StoreResult<MagicToken> {
        if !plausible_token(token) {
            return Ok(MagicToken::Unknown);
        }
        let hash = token_hash(token);
        let now = now_ms();
        with_conn!(self, |conn| {
            let consumed: Option<(String, Option<String>)> = sqlx::query_as(
                "UPDATE login_tokens SET used_at = $2 WHERE token_hash = $1 AND purpose = $3 \
                 AND used_at IS NULL AND expires_at > $2 RETURNING tenant_id, user_id",
            )
            .bind(&hash)
            .bind(now)
            .bind(purpose.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            if let Some((tenant, user)) = consumed {
                return Ok(MagicToken::Consumed(owner(tenant, user)?));
            }
            let row: Option<(Option<i64>, i64)> = sqlx::query_as(
                "SELECT used_at, expires_at FROM login_tokens \
                 WHERE token_hash = $1 AND purpose = $2",
            )
            .bind(&hash)
            .bind(purpose.as_str())
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
        user_id: &str,
        email_normalized: &str,
        method: LoginMethod,
        ttl_ms: i64,
    ) -> StoreResult<IssuedSession> {
        let mut tx = self.begin().await?;
        let session = tx
            .start_session(tenant, user_id, email_normalized, method, ttl_ms)
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
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE {LIVE_SESSION}"
        );
        let row: Option<SessionRow> = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(token_hash(token))
                .bind(now_ms())
                .fetch_optional(pool)
                .await?
        });
        row.map(Session::try_from).transpose()
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
            "SELECT {}, {SESSION_COLUMNS} FROM sessions s JOIN tenants t ON t.id = s.tenant_id \
             JOIN users u ON u.id = s.user_id AND u.tenant_id = s.tenant_id WHERE {LIVE_SESSION}",
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
            Ok((Session::try_from(r.session)?, tenant))
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

    /// Whether a token is live (unused, unexpired) for `purpose`, without consuming it: what a
    /// page shows before the visitor confirms.
    pub async fn login_token_state(
        &self,
        token: &str,
        purpose: TokenPurpose,
    ) -> StoreResult<MagicToken> {
        if !plausible_token(token) {
            return Ok(MagicToken::Unknown);
        }
        let row: Option<(String, Option<String>, Option<i64>, i64)> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT tenant_id, user_id, used_at, expires_at FROM login_tokens \
                 WHERE token_hash = $1 AND purpose = $2",
            )
            .bind(token_hash(token))
            .bind(purpose.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(match row {
            None => MagicToken::Unknown,
            Some((_, _, Some(_), _)) => MagicToken::AlreadyUsed,
            Some((_, _, None, expires)) if expires <= now_ms() => MagicToken::Expired,
            Some((id, user, None, _)) => MagicToken::Consumed(owner(id, user)?),
        })
    }

    /// Records a password sign-in attempt before its hash runs, then decides whether it may go
    /// on: not while the (email, address) pair is locked by the failures before it, nor while
    /// the address made `per_client_limit` failures (0 = no limit) across all emails. A refused
    /// attempt is forgotten at once (it checked no password, so it is not a guess); an allowed
    /// one counts as a failure until [`Store::forget_login_attempt`].
    #[tracing::instrument(skip_all)]
    pub async fn begin_login_attempt(
        &self,
        email_normalized: &str,
        client: &str,
        per_client_limit: u32,
        now: i64,
    ) -> StoreResult<(LoginAttempt, AttemptCheck)> {
        let attempt = LoginAttempt {
            id: ulid::Ulid::new().to_string(),
            email: email_normalized.to_string(),
            client: client.to_string(),
        };
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO login_attempts (id, email, client, attempted_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&attempt.id)
            .bind(&attempt.email)
            .bind(&attempt.client)
            .bind(now)
            .execute(pool)
            .await?;
        });
        let since = now - FAILURE_WINDOW_MS;
        // Only the attempts recorded before this one decide (ULIDs sort by time): of fifty
        // concurrent guesses, the first five check a password and the rest are refused.
        let pair: Vec<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT attempted_at FROM login_attempts WHERE email = $1 AND client = $2 \
                 AND attempted_at > $3 AND id < $4 ORDER BY attempted_at DESC LIMIT $5",
            )
            .bind(&attempt.email)
            .bind(&attempt.client)
            .bind(since)
            .bind(&attempt.id)
            .bind(MAX_LOGIN_FAILURES as i64)
            .fetch_all(pool)
            .await?
        });
        let mut check = match locked_until(&pair, MAX_LOGIN_FAILURES, now) {
            Some(until) => AttemptCheck::Locked { until },
            None => AttemptCheck::Allowed,
        };
        if check == AttemptCheck::Allowed && per_client_limit > 0 {
            let address: Vec<i64> = with_pool!(self, |pool| {
                sqlx::query_scalar(
                    "SELECT attempted_at FROM login_attempts WHERE client = $1 \
                     AND attempted_at > $2 AND id < $3 ORDER BY attempted_at DESC LIMIT $4",
                )
                .bind(&attempt.client)
                .bind(since)
                .bind(&attempt.id)
                .bind(i64::from(per_client_limit))
                .fetch_all(pool)
                .await?
            });
            if let Some(until) = locked_until(&address, per_client_limit as usize, now) {
                check = AttemptCheck::AddressLimited { until };
            }
        }
        if check != AttemptCheck::Allowed {
            self.drop_login_attempt(&attempt).await?;
        }
        Ok((attempt, check))
    }

    /// After the password was checked: until when the pair is locked, counting every failure
    /// recorded meanwhile, and this attempt too when `counting_this_one` (a wrong password).
    /// After the right password this attempt does not count, but the others do: the lock holds
    /// even against the right password.
    #[tracing::instrument(skip_all)]
    pub async fn login_locked_after(
        &self,
        attempt: &LoginAttempt,
        counting_this_one: bool,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        let failures: Vec<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT attempted_at FROM login_attempts WHERE email = $1 AND client = $2 \
                 AND attempted_at > $3 AND (id <> $4 OR $6) ORDER BY attempted_at DESC LIMIT $5",
            )
            .bind(&attempt.email)
            .bind(&attempt.client)
            .bind(now - FAILURE_WINDOW_MS)
            .bind(&attempt.id)
            .bind(MAX_LOGIN_FAILURES as i64)
            .bind(counting_this_one)
            .fetch_all(pool)
            .await?
        });
        Ok(locked_until(&failures, MAX_LOGIN_FAILURES, now))
    }

    /// A signed-in attempt: it and the pair's earlier failures no longer count.
    #[tracing::instrument(skip_all)]
    pub async fn forget_login_attempt(&self, attempt: &LoginAttempt) -> StoreResult<()> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM login_attempts WHERE email = $1 AND client = $2")
                .bind(&attempt.email)
                .bind(&attempt.client)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    async fn drop_login_attempt(&self, attempt: &LoginAttempt) -> StoreResult<()> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM login_attempts WHERE id = $1")
                .bind(&attempt.id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records a failed attempt at `at` (tests, and imports of earlier failures).
    pub async fn record_login_failure(
        &self,
        email_normalized: &str,
        client: &str,
        at: i64,
    ) -> StoreResult<()> {
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO login_attempts (id, email, client, attempted_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(ulid::Ulid::new().to_string())
            .bind(email_normalized)
            .bind(client)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Deletes attempts older than `before`; returns how many.
    #[tracing::instrument(skip_all)]
    pub async fn prune_login_failures(&self, before: i64) -> StoreResult<u64> {
        Ok(with_pool!(self, |pool| {
            sqlx::query("DELETE FROM login_attempts WHERE attempted_at < $1")
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

/// Periodic: deletes sessions and login links a day after they expired, login failures a day
/// after they stopped counting, and what could still reveal a first API key after its window.
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
        // First keys nobody looked at within the reveal window are never shown.
        let window_ms = i64::from(app.settings.first_key_reveal_minutes) * 60_000;
        store
            .forget_stale_reveals(now_ms() - window_ms)
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
            locked_until(
                &[now - 1, now - 2, now - 3, now - 4],
                MAX_LOGIN_FAILURES,
                now
            ),
            None
        );
        assert_eq!(locked_until(&[], MAX_LOGIN_FAILURES, now), None);
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
            locked_until(&failures, MAX_LOGIN_FAILURES, now),
            Some(now - 60_000 + FAILURE_WINDOW_MS)
        );
    }

    #[test]
    fn a_lock_ends_when_the_failures_age_out() {
        let now = 1_000_000_000;
        let old = now - FAILURE_WINDOW_MS;
        assert_eq!(
            locked_until(&[old, old, old, old, old], MAX_LOGIN_FAILURES, now),
            None
        );
    }
}
