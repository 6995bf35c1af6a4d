//! Search: the vector stores (the embedded store in our database and the Pinecone client, behind
//! one [`VectorStore`] type), the embedders (built-in and OpenAI-compatible, behind one
//! [`Embedder`] type) and the chunker. The types every store shares live here, so each store
//! implementation imports them from its parent and never from a sibling.
//!
//! Imports nothing above it: no `app`, `http`, `workspace`, `jobs` or `config` (the caller
//! builds the clients from its settings); below it only `store`, `domain` and `outbound`.

pub mod chunker;
pub mod embedder;
pub mod embeddings;
pub mod pinecone;
pub mod vectors;

use serde_json::Value;

use crate::store::StoreError;

pub use embedder::Embedder;
pub use embeddings::{EmbedError, EmbeddingsClient};
pub use pinecone::PineconeClient;
pub use vectors::{PendingChange, VectorStore};

/// A vector to store.
#[derive(Debug, Clone)]
pub struct VectorRecord {
    pub id: String,
    pub values: Vec<f32>,
    pub metadata: Value,
}

/// A query hit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Match {
    pub id: String,
    pub score: f32,
    pub metadata: Value,
}

/// Vector store failures.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("vector store unavailable: {0}")]
    Unavailable(String),
    #[error("namespace {0} does not exist")]
    NoNamespace(String),
    /// The remote store refused the request (a 4xx other than 429); retrying will not help.
    #[error("vector store refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("vector of {got} dimensions, the namespace holds {want}")]
    Dimension { got: usize, want: usize },
    #[error(
        "the Pinecone index holds vectors of {index} dimensions but the embedder makes {embedder}: \
         use an index of {embedder} dimensions, or an embedder (EMBEDDINGS_MODEL, EMBEDDINGS_DIMENSION) that makes {index}"
    )]
    IndexDimension { index: usize, embedder: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for VectorError {
    fn from(e: sqlx::Error) -> Self {
        VectorError::Store(StoreError::Database(e))
    }
}
