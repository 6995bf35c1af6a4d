//! Verified API keys of this process.
//!
//! A key is checked once against the signature and the key table, then kept in a small
//! in-process cache for at most [`CACHE_TTL`]: a cached request costs one map lookup (the
//! token itself is the key, compared in full, so no other token can ever match an entry)
//! instead of a JWT check and a database read. Revocation stays immediate in the revoking
//! process (it clears the cache before answering) and takes at most [`CACHE_TTL`] in every
//! other process. `last_used_at` is gathered in memory, at most once a second per key, and
//! written in one batch a second ([`KeyCache::flush_last_used`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::api_keys::{AuthError, KeySigner, Principal};
use crate::domain::{Plan, TenantId, TenantStatus};
use crate::store::{Store, StoreResult, now_ms};
use crate::with_pool;

/// Longest time a verified key is trusted without looking at the key table again.
pub const CACHE_TTL: Duration = Duration::from_secs(3);
/// Most cached keys; the cache is emptied when full (cheap, and rare).
const CACHE_MAX: usize = 50_000;

/// The authenticated caller of a `/v1` request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Shared, so handing the caller to a handler copies no strings.
    pub principal: Arc<Principal>,
    pub plan: Plan,
    pub status: TenantStatus,
}

impl Caller {
    pub fn tenant(&self) -> &TenantId {
        &self.principal.tenant_id
    }

    /// Refused unless the key carries `scope` (the HTTP layer answers 403).
    pub fn require(&self, scope: &'static str) -> Result<(), MissingScope> {
        if self.principal.has_scope(scope) {
            Ok(())
        } else {
            Err(MissingScope(scope))
        }
    }

    /// The role the key acts with.
    pub fn role(&self) -> crate::domain::Role {
        self.principal.role
    }

    /// Refused unless the key's role may do `p` (the HTTP layer answers 403).
    pub fn require_role(&self, p: crate::domain::Permission) -> Result<(), RoleRefused> {
        if self.principal.role.allows(p) {
            Ok(())
        } else {
            Err(RoleRefused(format!(
                "this API key acts as {}: {}",
                self.principal.role,
                self.principal.role.refusal(p)
            )))
        }
    }
}

/// A role may not do what was asked; the message says which role and whom to ask.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RoleRefused(pub String);

/// A key lacks the scope an action needs.
#[derive(Debug, thiserror::Error)]
#[error("this API key lacks the '{0}' scope; create a key with it at POST /v1/api-keys")]
pub struct MissingScope(pub &'static str);

struct Entry {
    caller: Caller,
    expires_at: Option<i64>,
    checked: Instant,
    generation: u64,
    /// When this process last noted the key's use (ms), to note it at most once a second.
    noted_use: AtomicI64,
}

/// Verified keys of this process, and their pending `last_used_at`.
#[derive(Clone, Default)]
pub struct KeyCache {
    entries: Arc<Mutex<HashMap<Box<str>, Arc<Entry>>>>,
    /// Bumped by every revocation in this process: older entries no longer count.
    generation: Arc<AtomicU64>,
    last_used: Arc<Mutex<HashMap<String, i64>>>,
}

impl KeyCache {
    /// Forgets every verified key (called on revocation, before answering).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.lock().expect("key cache lock").clear();
    }

    /// Checks a presented token and returns its caller.
    pub async fn authenticate(
        &self,
        store: &Store,
        signer: &KeySigner,
        token: &str,
    ) -> Result<Caller, AuthError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let hit = self
            .entries
            .lock()
            .expect("key cache lock")
            .get(token)
            .filter(|e| e.generation == generation && e.checked.elapsed() < CACHE_TTL)
            .cloned();
        let entry = match hit {
            Some(e) => e,
            None => {
                let key = store.verify_api_key(signer, token).await?;
                let entry = Arc::new(Entry {
                    caller: Caller {
                        principal: Arc::new(key.principal),
                        plan: key.plan,
                        status: key.status,
                    },
                    expires_at: key.expires_at,
                    checked: Instant::now(),
                    generation,
                    noted_use: AtomicI64::new(0),
                });
                let mut entries = self.entries.lock().expect("key cache lock");
                // A revocation that raced this lookup wins: do not cache what it may have voided.
                if self.generation.load(Ordering::SeqCst) == generation {
                    if entries.len() >= CACHE_MAX {
                        entries.clear();
                    }
                    entries.insert(token.into(), entry.clone());
                }
                entry
            }
        };
        let now = now_ms();
        if entry.expires_at.is_some_and(|e| e <= now) {
            return Err(AuthError::Expired);
        }
        if now - entry.noted_use.load(Ordering::Relaxed) >= 1000 {
            entry.noted_use.store(now, Ordering::Relaxed);
            self.last_used
                .lock()
                .expect("last-used lock")
                .insert(entry.caller.principal.key_id.clone(), now);
        }
        Ok(entry.caller.clone())
    }

    /// Writes the gathered `last_used_at` values.
    pub async fn flush_last_used(&self, store: &Store) -> StoreResult<()> {
        let pending = std::mem::take(&mut *self.last_used.lock().expect("last-used lock"));
        for (i, (key_id, at)) in pending.iter().enumerate() {
            if let Err(e) = store.touch_api_key(key_id, *at).await {
                let mut back = self.last_used.lock().expect("last-used lock");
                for (k, v) in pending.iter().skip(i) {
                    back.entry(k.clone()).or_insert(*v);
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Store {
    /// Records a key's last use (only ever moving it forward).
    pub async fn touch_api_key(&self, key_id: &str, at: i64) -> StoreResult<()> {
        with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(at)
            .bind(key_id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
