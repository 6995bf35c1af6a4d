//! Vector store backends behind one type. The embedded backend keeps each tenant's namespace in
//! our database and answers queries by exact cosine search.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::store::{Store, StoreError, now_ms};
use crate::{with_pool, with_reader};

use super::embedder::{DIMENSION, cosine};

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
    #[error("vector of {got} dimensions, the namespace holds {want}")]
    Dimension { got: usize, want: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for VectorError {
    fn from(e: sqlx::Error) -> Self {
        VectorError::Store(StoreError::Database(e))
    }
}

/// Which vector store the workspace uses.
#[derive(Clone)]
pub struct VectorStore {
    store: Store,
    /// Simulated outage switch, flipped only by the test suite and chaos drills.
    outage: Arc<AtomicBool>,
}

impl VectorStore {
    pub fn embedded(store: Store) -> Self {
        Self {
            store,
            outage: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn backend(&self) -> &'static str {
        "embedded"
    }

    /// Makes every call fail (true) or work again (false).
    pub fn simulate_outage(&self, down: bool) {
        self.outage.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), VectorError> {
        if self.outage.load(Ordering::SeqCst) {
            return Err(VectorError::Unavailable("simulated outage".into()));
        }
        Ok(())
    }

    /// Creates a namespace; creating an existing one is a no-op.
    pub async fn create_namespace(&self, tenant_id: &str, name: &str) -> Result<(), VectorError> {
        self.check()?;
        with_pool!(&self.store, |pool| {
            sqlx::query(
                "INSERT INTO vector_namespaces (name, tenant_id, dimension, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(tenant_id)
            .bind(DIMENSION as i64)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    async fn namespace_exists(&self, name: &str) -> Result<bool, VectorError> {
        let n: i64 = with_reader!(&self.store, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM vector_namespaces WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await?
        });
        Ok(n > 0)
    }

    /// Inserts or replaces vectors by id.
    pub async fn upsert(
        &self,
        namespace: &str,
        records: &[VectorRecord],
    ) -> Result<usize, VectorError> {
        self.check()?;
        if !self.namespace_exists(namespace).await? {
            return Err(VectorError::NoNamespace(namespace.into()));
        }
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        for r in records {
            if r.values.len() != DIMENSION {
                return Err(VectorError::Dimension {
                    got: r.values.len(),
                    want: DIMENSION,
                });
            }
            let bytes: Vec<u8> = r.values.iter().flat_map(|f| f.to_le_bytes()).collect();
            let meta = r.metadata.to_string();
            crate::with_conn!(&mut tx, |conn| {
                sqlx::query(
                    "INSERT INTO vectors (namespace, id, embedding, metadata, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (namespace, id) DO UPDATE SET embedding = excluded.embedding, \
                     metadata = excluded.metadata, updated_at = excluded.updated_at",
                )
                .bind(namespace)
                .bind(&r.id)
                .bind(bytes)
                .bind(meta)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            });
        }
        tx.commit().await?;
        Ok(records.len())
    }

    /// The `top_k` vectors most similar to `vector`, best first.
    pub async fn query(
        &self,
        namespace: &str,
        vector: &[f32],
        top_k: usize,
    ) -> Result<Vec<Match>, VectorError> {
        self.check()?;
        let rows: Vec<(String, Vec<u8>, String)> = with_reader!(&self.store, |pool| {
            sqlx::query_as("SELECT id, embedding, metadata FROM vectors WHERE namespace = $1")
                .bind(namespace)
                .fetch_all(pool)
                .await?
        });
        let mut matches: Vec<Match> = rows
            .into_iter()
            .map(|(id, bytes, meta)| {
                let values: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Match {
                    id,
                    score: cosine(vector, &values),
                    metadata: serde_json::from_str(&meta).unwrap_or(Value::Null),
                }
            })
            .collect();
        matches.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        matches.truncate(top_k);
        Ok(matches)
    }

    /// Number of vectors in a namespace.
    pub async fn count(&self, namespace: &str) -> Result<i64, VectorError> {
        self.check()?;
        Ok(with_reader!(&self.store, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM vectors WHERE namespace = $1")
                .bind(namespace)
                .fetch_one(pool)
                .await?
        }))
    }
}
