//! The tenant's product: API keys, embedder, vector store, sample data.

pub mod api_keys;
pub mod embedder;
pub mod sample_data;
pub mod vectors;

/// The vector namespace of a tenant.
pub fn namespace_for(tenant: &crate::domain::TenantId) -> String {
    tenant.as_str().to_string()
}
