//! The tenant's product: API keys, embedder, vector store, sample data.

pub mod api_keys;
pub mod chunker;
pub mod documents;
pub mod embedder;
pub mod embeddings;
pub mod pinecone;
pub mod sample_data;
pub mod sessions;
pub mod usage;
pub mod vectors;

/// The vector namespace of a tenant.
pub fn namespace_for(tenant: &crate::domain::TenantId) -> String {
    tenant.as_str().to_string()
}
