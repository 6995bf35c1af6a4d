//! The operator console's sessions (migration 0018): a row per sign-in with `ADMIN_TOKEN`, found
//! by the SHA-256 of the cookie's token (the caller hashes: the token itself never reaches the
//! database), holding the CSRF token the console's forms must carry back.

use crate::{with_pool, with_reader};

use super::{Store, StoreResult};

/// A live operator session.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OperatorSession {
    /// What every console form must send back in its `csrf` field.
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// Stores a new operator session (`id_hash`: the hash of its cookie token), and deletes the
    /// ones that have expired, so the table holds only live and recently ended sessions.
    pub async fn start_operator_session(
        &self,
        id_hash: &str,
        csrf_token: &str,
        ip: Option<&str>,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM operator_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO operator_sessions (id_hash, csrf_token, ip, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id_hash)
            .bind(csrf_token)
            .bind(ip)
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The live (unexpired, not signed out) operator session `id_hash` names.
    pub async fn operator_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> StoreResult<Option<OperatorSession>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT csrf_token, created_at, expires_at FROM operator_sessions \
                 WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
            )
            .bind(id_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Ends the operator session `id_hash` names; true when a live one was ended.
    pub async fn end_operator_session(&self, id_hash: &str, now: i64) -> StoreResult<bool> {
        let n = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE operator_sessions SET revoked_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL",
            )
            .bind(id_hash)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }
}
