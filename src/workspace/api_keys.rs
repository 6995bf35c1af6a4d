//! API keys: HS256 JWTs (`tid`, `scope`, `jti`, `iat`, optional `exp`; `kid` in the header) whose
//! `jti` must exist, unrevoked and unexpired, in `api_keys`, where only its SHA-256 is stored. The
//! token is shown once; the row keeps a short display hint.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::SigningSecret;
use crate::domain::TenantId;
use crate::store::{Store, StoreError, StoreResult, Tx, now_ms};
use crate::{with_conn, with_pool, with_reader};

/// What a key may do.
pub mod scopes {
    pub const DOCUMENTS_WRITE: &str = "documents:write";
    pub const QUERY: &str = "query";
    pub const KEYS_MANAGE: &str = "keys:manage";
    /// Read the plan usage (`GET /v1/usage`).
    pub const USAGE_READ: &str = "usage:read";
    /// Provisioning's temporary credential: may only write the sample documents.
    pub const SAMPLE_DATA_WRITE: &str = "sample_data:write";
    /// The scopes of a tenant's first key.
    pub const DEFAULT: &[&str] = &[DOCUMENTS_WRITE, QUERY, KEYS_MANAGE, USAGE_READ];
}

/// Prefix that makes our keys recognisable in logs and secret scanners.
pub const TOKEN_PREFIX: &str = "onb_";

/// The claims inside a key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub tid: String,
    /// Space-separated scopes.
    pub scope: String,
    pub jti: String,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

/// A key as issued: the secret token (show once) and its public id.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key_id: String,
    pub token: SecretString,
    /// The row as stored (what a listing shows), so the caller need not read it back.
    pub row: ApiKeyRow,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub key_id: String,
    pub scopes: Vec<String>,
    /// A key the tenant created itself (not the first key provisioning issued): its first use
    /// is `integration_configured`.
    pub own: bool,
    /// The role the key acts with (never above its creator's when it was made).
    pub role: crate::domain::Role,
    /// The user who created it (none for keys provisioning issued).
    pub created_by: Option<String>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Why a key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the API key is malformed or its signature is invalid")]
    Invalid,
    #[error("the API key has been revoked or does not exist")]
    Revoked,
    #[error("the API key has expired")]
    Expired,
    /// The key's record could not be read (the database is down or overloaded): not the key's
    /// fault, so never reported as a refused key.
    #[error("the API key could not be checked: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for AuthError {
    fn from(e: sqlx::Error) -> Self {
        tracing::warn!(error = %e, "API key lookup failed");
        AuthError::Unavailable(e.to_string())
    }
}

/// Signs keys with the current secret (`JWT_SECRET`, named by `JWT_KEY_ID`) and checks them
/// against every configured secret, picked by the token's `kid`: rotating the secret (the old
/// one moved to `JWT_PREVIOUS_SECRETS`) leaves every issued key working.
#[derive(Clone)]
pub struct KeySigner {
    /// The current secret first, then earlier ones.
    secrets: std::sync::Arc<Vec<SigningSecret>>,
}

impl KeySigner {
    /// `secrets[0]` signs; all of them verify. Panics on an empty list (start-up error).
    pub fn new(secrets: Vec<SigningSecret>) -> Self {
        assert!(!secrets.is_empty(), "a key signer needs a secret");
        Self {
            secrets: std::sync::Arc::new(secrets),
        }
    }

    /// One secret, named `kid` (tests and tools).
    pub fn single(kid: &str, secret: &SecretString) -> Self {
        Self::new(vec![SigningSecret {
            kid: kid.to_string(),
            secret: secret.clone(),
        }])
    }

    /// The `kid` new keys carry.
    pub fn kid(&self) -> &str {
        &self.secrets[0].kid
    }

    /// The token for these claims (deterministic: HS256 over the same claims gives the same key).
    pub fn sign(&self, claims: &Claims) -> String {
        let current = &self.secrets[0];
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(current.kid.clone());
        let jwt = jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_secret(current.secret.expose_secret().as_bytes()),
        )
        .expect("HS256 signing of plain claims cannot fail");
        format!("{TOKEN_PREFIX}{jwt}")
    }

    /// The secret a token's `kid` names. Keys issued before key ids were names carry the first
    /// 12 hex digits of SHA-256(secret) as their `kid`; they are still recognised, and no new
    /// key is given such an id.
    fn secret_for(&self, kid: &str) -> Option<&SecretString> {
        self.secrets
            .iter()
            .find(|s| s.kid == kid)
            .or_else(|| {
                self.secrets.iter().find(|s| {
                    let digest = Sha256::digest(s.secret.expose_secret().as_bytes());
                    hex::encode(&digest[..6]) == kid
                })
            })
            .map(|s| &s.secret)
    }

    /// Checks signature, algorithm, `kid` and `exp`; does not consult the database.
    pub fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let jwt = token.strip_prefix(TOKEN_PREFIX).ok_or(AuthError::Invalid)?;
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| AuthError::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(AuthError::Invalid);
        }
        let secret = header
            .kid
            .as_deref()
            .and_then(|kid| self.secret_for(kid))
            .ok_or(AuthError::Invalid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims = HashSet::new();
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(
            jwt,
            &DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            &validation,
        )
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid,
        })?;
        Ok(data.claims)
    }
}

use super::token_hash as hash_jti;

fn new_jti() -> String {
    super::random_token(24)
}

type KeyRow = (
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    String,
    String,
    bool,
    String,
    Option<String>,
);
/// A key row with its tenant's plan and status: one indexed read answers everything a request
/// needs to know about its key.
/// `own`: a key the tenant created, not the one provisioning issued (whose id the `api_key`
/// step recorded).
const KEY_ROW_SQL: &str = "SELECT k.id, k.tenant_id, k.scopes, k.expires_at, k.revoked_at, t.plan, t.status, \
     NOT EXISTS (SELECT 1 FROM provisioning_steps p WHERE p.tenant_id = k.tenant_id AND p.step = 'api_key' \
     AND p.detail = k.id) AS own, k.role, k.created_by \
     FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.jti_hash = $1";

/// A verified key: who it acts for, and its tenant's plan and status as of the check.
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    pub principal: Principal,
    pub plan: crate::domain::Plan,
    pub status: crate::domain::TenantStatus,
    pub expires_at: Option<i64>,
}

/// The caller a verified token's stored row names, unless revoked, expired or mismatched.
fn verified_from(claims: &Claims, row: Option<KeyRow>) -> Result<VerifiedKey, AuthError> {
    let (key_id, tenant_id, scopes, expires_at, revoked_at, plan, status, own, role, created_by) =
        row.ok_or(AuthError::Revoked)?;
    if revoked_at.is_some() || tenant_id != claims.tid {
        return Err(AuthError::Revoked);
    }
    if expires_at.is_some_and(|e| e <= now_ms()) {
        return Err(AuthError::Expired);
    }
    Ok(VerifiedKey {
        principal: Principal {
            tenant_id: TenantId::parse(&tenant_id).ok_or(AuthError::Invalid)?,
            key_id,
            scopes: scopes.split_whitespace().map(str::to_string).collect(),
            own,
            role: role.parse().map_err(|_| AuthError::Invalid)?,
            created_by,
        },
        plan: plan.parse().map_err(|_| AuthError::Invalid)?,
        status: status.parse().map_err(|_| AuthError::Invalid)?,
        expires_at,
    })
}

impl Tx {
    /// Live (unrevoked, unexpired) keys of a tenant, counted with the tenant's row locked so two
    /// concurrent creations cannot both pass the limit (SQLite has one writer already).
    pub async fn live_api_keys_locked(&mut self, tenant: &TenantId) -> StoreResult<i64> {
        let now = now_ms();
        if let Tx::Postgres(t) = self {
            sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(tenant.as_str())
                .execute(&mut **t)
                .await?;
        }
        Ok(with_conn!(self, |conn| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2) AND scopes <> $3",
            )
            .bind(tenant.as_str())
            .bind(now)
            .bind(scopes::SAMPLE_DATA_WRITE)
            .fetch_one(&mut *conn)
            .await?
        }))
    }
}

impl Tx {
    /// Like [`Store::authenticate_api_key`], seeing this transaction's own writes.
    pub async fn authenticate_api_key(
        &mut self,
        signer: &KeySigner,
        token: &str,
    ) -> Result<Principal, AuthError> {
        let claims = signer.decode(token)?;
        let row: Option<KeyRow> = with_conn!(self, |conn| {
            sqlx::query_as(KEY_ROW_SQL)
                .bind(hash_jti(&claims.jti))
                .fetch_optional(&mut *conn)
                .await?
        });
        verified_from(&claims, row).map(|v| v.principal)
    }

    /// Revokes a key of a tenant in this transaction.
    pub async fn revoke_api_key(&mut self, tenant: &TenantId, key_id: &str) -> StoreResult<()> {
        let n = with_conn!(self, |conn| {
            sqlx::query(
                "UPDATE api_keys SET revoked_at = $1, reveal_jti = NULL WHERE id = $2 AND tenant_id = $3 AND revoked_at IS NULL",
            )
            .bind(now_ms())
            .bind(key_id)
            .bind(tenant.as_str())
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound("api key"));
        }
        Ok(())
    }

    /// Issues a key in this transaction. `keep_for_reveal` keeps the `jti` so the token can be
    /// shown once later (the provisioning success page); it is erased when revealed.
    pub async fn issue_api_key(
        &mut self,
        signer: &KeySigner,
        tenant: &TenantId,
        name: &str,
        scopes: &[&str],
        ttl_secs: Option<i64>,
        keep_for_reveal: bool,
    ) -> StoreResult<IssuedKey> {
        let spec = KeySpec {
            name,
            scopes,
            ttl_secs,
            role: crate::domain::Role::Owner,
            created_by: None,
        };
        self.issue_api_key_as(signer, tenant, &spec, keep_for_reveal)
            .await
    }

    /// [`Tx::issue_api_key`] with the key's role and creator.
    pub async fn issue_api_key_as(
        &mut self,
        signer: &KeySigner,
        tenant: &TenantId,
        spec: &KeySpec<'_>,
        keep_for_reveal: bool,
    ) -> StoreResult<IssuedKey> {
        let KeySpec {
            name,
            scopes,
            ttl_secs,
            role,
            created_by,
        } = *spec;
        let now = now_ms();
        let claims = Claims {
            tid: tenant.to_string(),
            scope: scopes.join(" "),
            jti: new_jti(),
            iat: now / 1000,
            exp: ttl_secs.map(|t| now / 1000 + t),
        };
        let token = signer.sign(&claims);
        let key_id = format!("key_{}", ulid::Ulid::new());
        let hint = format!("{TOKEN_PREFIX}…{}", &token[token.len() - 6..]);
        with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, name, jti_hash, scopes, prefix, reveal_jti, created_at, expires_at, role, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&key_id)
            .bind(tenant.as_str())
            .bind(name)
            .bind(hash_jti(&claims.jti))
            .bind(&claims.scope)
            .bind(&hint)
            .bind(keep_for_reveal.then(|| format!("{}:{}", claims.iat, claims.jti)))
            .bind(now)
            .bind(claims.exp.map(|e| e * 1000))
            .bind(role.as_str())
            .bind(created_by)
            .execute(&mut *conn)
            .await?;
        });
        let row = ApiKeyRow {
            id: key_id.clone(),
            tenant_id: tenant.to_string(),
            name: name.to_string(),
            scopes: claims.scope,
            prefix: hint,
            created_at: now,
            last_used_at: None,
            expires_at: claims.exp.map(|e| e * 1000),
            revoked_at: None,
            role: role.as_str().to_string(),
            created_by: created_by.map(str::to_string),
        };
        Ok(IssuedKey {
            key_id,
            token: SecretString::from(token),
            row,
        })
    }
}

/// A stored key, without its secret.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ApiKeyRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub scopes: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// `owner`, `admin` or `member`: the role the key acts with.
    pub role: String,
    pub created_by: Option<String>,
}

/// What a new key is: its label, scopes, lifetime, role and creator.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec<'a> {
    pub name: &'a str,
    pub scopes: &'a [&'a str],
    pub ttl_secs: Option<i64>,
    pub role: crate::domain::Role,
    pub created_by: Option<&'a str>,
}

impl Store {
    /// Verifies a presented token: signature, then the stored, unrevoked, unexpired key row.
    pub async fn authenticate_api_key(
        &self,
        signer: &KeySigner,
        token: &str,
    ) -> Result<Principal, AuthError> {
        self.verify_api_key(signer, token)
            .await
            .map(|v| v.principal)
    }

    /// [`Store::authenticate_api_key`], with the tenant's plan and status from the same read.
    pub async fn verify_api_key(
        &self,
        signer: &KeySigner,
        token: &str,
    ) -> Result<VerifiedKey, AuthError> {
        let claims = signer.decode(token)?;
        let row: Option<KeyRow> = with_reader!(self, |pool| {
            sqlx::query_as(KEY_ROW_SQL)
                .bind(hash_jti(&claims.jti))
                .fetch_optional(pool)
                .await?
        });
        verified_from(&claims, row)
    }

    /// One key of a tenant (revoked or not).
    pub async fn api_key(&self, tenant: &TenantId, key_id: &str) -> StoreResult<Option<ApiKeyRow>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT id, tenant_id, name, scopes, prefix, created_at, last_used_at, expires_at, revoked_at, role, created_by \
                 FROM api_keys WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant.as_str())
            .bind(key_id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Revokes a key of a tenant.
    pub async fn revoke_api_key(&self, tenant: &TenantId, key_id: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        tx.revoke_api_key(tenant, key_id).await?;
        tx.commit().await
    }

    /// A tenant's keys, newest first.
    pub async fn list_api_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKeyRow>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT id, tenant_id, name, scopes, prefix, created_at, last_used_at, expires_at, revoked_at, role, created_by \
                 FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        }))
    }

    /// One page of a tenant's keys, newest first, strictly before the `(created_at, id)` given.
    pub async fn api_keys_page(
        &self,
        tenant: &TenantId,
        limit: i64,
        before: Option<(i64, String)>,
    ) -> StoreResult<Vec<ApiKeyRow>> {
        let (before_at, before_id) = before.unwrap_or((i64::MAX, String::new()));
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT id, tenant_id, name, scopes, prefix, created_at, last_used_at, expires_at, revoked_at, role, created_by \
                 FROM api_keys WHERE tenant_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
                 ORDER BY created_at DESC, id DESC LIMIT $4",
            )
            .bind(tenant.as_str())
            .bind(before_at)
            .bind(&before_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Erases what would let a key kept for reveal be shown, for keys created before `before`:
    /// past the reveal window the first key is never shown (the customer creates a new one).
    pub async fn forget_stale_reveals(&self, before: i64) -> StoreResult<u64> {
        Ok(with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE api_keys SET reveal_jti = NULL WHERE reveal_jti IS NOT NULL AND created_at < $1",
            )
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// Returns the token of a key kept for reveal and erases what made that possible, so it is
    /// shown exactly once. `None` when it was already shown (or never kept).
    pub async fn reveal_api_key_once(
        &self,
        signer: &KeySigner,
        key_id: &str,
    ) -> StoreResult<Option<SecretString>> {
        type RevealRow = (String, String, Option<String>, Option<i64>);
        let row: Option<RevealRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT tenant_id, scopes, reveal_jti, expires_at FROM api_keys WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(key_id)
            .fetch_optional(pool)
            .await?
        });
        let Some((tid, scope, Some(reveal), exp)) = row else {
            return Ok(None);
        };
        // Only the caller whose update clears the value shows the key: exactly once.
        let cleared = with_pool!(self, |pool| {
            sqlx::query("UPDATE api_keys SET reveal_jti = NULL WHERE id = $1 AND reveal_jti = $2")
                .bind(key_id)
                .bind(&reveal)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if cleared != 1 {
            return Ok(None);
        }
        Ok(Some(()).and_then(|()| {
            let (iat, jti) = reveal.split_once(':')?;
            let claims = Claims {
                tid,
                scope,
                jti: jti.to_string(),
                iat: iat.parse().ok()?,
                exp: exp.map(|e| e / 1000),
            };
            Some(SecretString::from(signer.sign(&claims)))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn signer() -> KeySigner {
        KeySigner::single(
            "k1",
            &SecretString::from("test-secret-of-sufficient-length"),
        )
    }

    fn claims() -> Claims {
        Claims {
            tid: "tenant_01ABC".into(),
            scope: "query".into(),
            jti: "j1".into(),
            iat: 1_700_000_000,
            exp: None,
        }
    }

    #[test]
    fn tokens_round_trip_and_are_deterministic() {
        let s = signer();
        let t = s.sign(&claims());
        assert!(t.starts_with(TOKEN_PREFIX));
        assert_eq!(t, s.sign(&claims()));
        assert_eq!(s.decode(&t).unwrap(), claims());
    }

    #[test]
    fn refuses_other_secrets_alg_none_and_tampering() {
        let t = signer().sign(&claims());
        let other = KeySigner::single(
            "k1",
            &SecretString::from("another-secret-of-sufficient-length"),
        );
        assert_eq!(other.decode(&t), Err(AuthError::Invalid));
        let jwt = t.strip_prefix(TOKEN_PREFIX).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none_header = b64.encode(format!(
            r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
            signer().kid()
        ));
        assert_eq!(
            signer().decode(&format!("{TOKEN_PREFIX}{none_header}.{}.", parts[1])),
            Err(AuthError::Invalid)
        );
        let forged_claims =
            b64.encode(r#"{"tid":"tenant_OTHER","scope":"query","jti":"j1","iat":1700000000}"#);
        let forged = format!("{TOKEN_PREFIX}{}.{forged_claims}.{}", parts[0], parts[2]);
        assert_eq!(signer().decode(&forged), Err(AuthError::Invalid));
        assert_eq!(
            signer().decode(jwt),
            Err(AuthError::Invalid),
            "prefix required"
        );
    }

    #[test]
    fn the_kid_is_a_name_not_a_digest_of_the_secret() {
        let t = signer().sign(&claims());
        let header = jsonwebtoken::decode_header(t.strip_prefix(TOKEN_PREFIX).unwrap()).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn a_rotated_secret_still_verifies_the_keys_it_signed() {
        let old_secret = SecretString::from("test-secret-of-sufficient-length");
        let old = signer();
        let issued = old.sign(&claims());
        let rotated = KeySigner::new(vec![
            SigningSecret {
                kid: "k2".into(),
                secret: SecretString::from("the-new-secret-of-sufficient-length"),
            },
            SigningSecret {
                kid: "k1".into(),
                secret: old_secret,
            },
        ]);
        assert_eq!(rotated.decode(&issued).unwrap(), claims());
        let fresh = rotated.sign(&claims());
        assert_ne!(fresh, issued);
        assert_eq!(rotated.decode(&fresh).unwrap(), claims());
        // The old signer alone does not know the new secret's keys.
        assert_eq!(old.decode(&fresh), Err(AuthError::Invalid));
        // Dropping the old secret ends its keys.
        let only_new = KeySigner::single(
            "k2",
            &SecretString::from("the-new-secret-of-sufficient-length"),
        );
        assert_eq!(only_new.decode(&issued), Err(AuthError::Invalid));
    }

    #[test]
    fn keys_from_before_named_kids_still_verify() {
        let secret = SecretString::from("test-secret-of-sufficient-length");
        let digest = Sha256::digest(secret.expose_secret().as_bytes());
        let legacy_kid = hex::encode(&digest[..6]);
        let legacy = KeySigner::single(&legacy_kid, &secret).sign(&claims());
        assert_eq!(signer().decode(&legacy).unwrap(), claims());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let mut c = claims();
        c.exp = Some(1_000);
        assert_eq!(signer().decode(&signer().sign(&c)), Err(AuthError::Expired));
    }
}
