//! The tenant's product: documents and queries over them, API keys and the cache of verified
//! keys, sign-in sessions and login links, metered usage, sample data. Its jobs:
//! `documents::PurgeJob` and the periodic `sessions::Prune`.
//!
//! A feature module: may use `search`, `analytics`, `jobs`, `store`, `domain` and the
//! `AppState` handle; must not import `http`, `cli`, `tasks`, `provisioning`, `billing` or
//! `email`.

pub mod api_keys;
pub mod documents;
pub mod export;
pub mod hashing;
pub mod key_cache;
pub mod members;
pub mod sample_data;
pub mod sessions;
pub mod usage;

/// The hex SHA-256 under which every secret token is stored (API key ids, session and login
/// tokens): the token itself is never kept.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// `bytes` random bytes, URL-safe base64 without padding.
pub(crate) fn random_token(bytes: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// The vector namespace of a tenant.
pub fn namespace_for(tenant: &crate::domain::TenantId) -> String {
    tenant.as_str().to_string()
}
