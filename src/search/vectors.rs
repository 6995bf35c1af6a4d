//! Vector store backends behind one type: the embedded backend (default) keeps each tenant's
//! namespace in our database and answers queries by exact cosine search over an in-memory copy;
//! Pinecone (when `PINECONE_API_KEY` + `PINECONE_INDEX_HOST` are set) keeps them in one index,
//! one namespace per tenant.
//!
//! The in-memory copy of an embedded namespace is tagged with the namespace's `version`, which
//! every write bumps in the same transaction as the vectors. A query reads the version first (one
//! indexed row) and reloads the copy only when it changed, so several processes sharing one
//! PostgreSQL never answer from stale data, and this process's own writes are applied to its copy
//! in place instead of forcing a reload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use crate::store::{Store, Tx, now_ms};
use crate::{with_conn, with_reader};

use super::pinecone::PineconeClient;
use super::{Match, VectorError, VectorRecord};

/// The in-memory copies of embedded namespaces, bounded in bytes across all tenants
/// (`VECTOR_CACHE_MB`): the least recently queried namespaces are dropped first, and a
/// namespace larger than the whole budget is answered from a copy that is not kept. A namespace
/// is loaded once however many queries ask for it at the same moment (single flight).
struct Cache {
    entries: Mutex<HashMap<String, Cached>>,
    /// One lock per namespace being loaded: concurrent misses wait for the first load.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    budget_bytes: usize,
    /// Loads from the database so far (a measure of cache misses).
    loads: std::sync::atomic::AtomicU64,
}

/// The tenant vector store.
#[derive(Clone)]
pub struct VectorStore {
    backend: Backend,
    /// Dimensions of the configured embedder: namespaces are created with it.
    dimension: usize,
    /// Simulated outage switch, flipped only by the test suite and chaos drills.
    outage: Arc<AtomicBool>,
}

#[derive(Clone)]
enum Backend {
    Embedded {
        store: Store,
        cache: Arc<Cache>,
    },
    Pinecone {
        store: Store,
        client: PineconeClient,
    },
}

/// A namespace's copy in the cache, with when it was last read (kept beside the shared index,
/// so noting a read never copies an index a query still holds).
struct Cached {
    index: Arc<NamespaceIndex>,
    last_used: Instant,
}

/// An in-memory copy of one embedded namespace.
#[derive(Clone)]
struct NamespaceIndex {
    version: i64,
    dim: usize,
    ids: Vec<String>,
    position: HashMap<String, usize>,
    /// Row-major, `dim` floats per vector, each scaled to unit length.
    values: Vec<f32>,
    metadata: Vec<Arc<str>>,
}

impl Cache {
    /// The cached copy when it is at least `version`, noting its use.
    fn fresh(&self, namespace: &str, version: i64) -> Option<Arc<NamespaceIndex>> {
        let mut entries = self.entries.lock().expect("vector cache lock");
        let entry = entries.get_mut(namespace)?;
        if entry.index.version < version {
            return None;
        }
        entry.last_used = Instant::now();
        Some(entry.index.clone())
    }
}

impl NamespaceIndex {
    /// Memory the copy holds, roughly: the vectors, the ids (twice: list and position map,
    /// with the map's per-entry overhead) and the metadata.
    fn approx_bytes(&self) -> usize {
        let ids: usize = self.ids.iter().map(|id| 2 * id.len() + 64).sum();
        let metadata: usize = self.metadata.iter().map(|m| m.len() + 16).sum();
        self.values.len() * std::mem::size_of::<f32>() + ids + metadata
    }

    fn empty(version: i64, dim: usize) -> Self {
        Self {
            version,
            dim,
            ids: Vec::new(),
            position: HashMap::new(),
            values: Vec::new(),
            metadata: Vec::new(),
        }
    }

    fn upsert(&mut self, id: &str, values: &[f32], metadata: Arc<str>) {
        let unit = unit(values);
        match self.position.get(id) {
            Some(&i) => {
                self.values[i * self.dim..(i + 1) * self.dim].copy_from_slice(&unit);
                self.metadata[i] = metadata;
            }
            None => {
                self.position.insert(id.to_string(), self.ids.len());
                self.ids.push(id.to_string());
                self.values.extend_from_slice(&unit);
                self.metadata.push(metadata);
            }
        }
    }

    fn remove(&mut self, id: &str) {
        let Some(i) = self.position.remove(id) else {
            return;
        };
        let last = self.ids.len() - 1;
        if i != last {
            self.ids.swap(i, last);
            self.metadata.swap(i, last);
            let (head, tail) = self.values.split_at_mut(last * self.dim);
            head[i * self.dim..(i + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
            self.position.insert(self.ids[i].clone(), i);
        }
        self.ids.pop();
        self.metadata.pop();
        self.values.truncate(last * self.dim);
    }

    /// The `k` best (index, cosine) pairs, best first; ties broken by id.
    fn top_k(&self, query: &[f32], k: usize) -> Vec<(usize, f32)> {
        let q = unit(query);
        let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
        for (i, row) in self.values.chunks_exact(self.dim).enumerate() {
            let score = dot(row, &q);
            if best.len() == k && best.last().is_some_and(|&(_, s)| score <= s) {
                continue;
            }
            let at = best
                .partition_point(|&(j, s)| s > score || (s == score && self.ids[j] < self.ids[i]));
            best.insert(at, (i, score));
            best.truncate(k);
        }
        best
    }
}

/// Dot product in eight independent lanes, which the compiler turns into SIMD (a plain
/// sequential float sum cannot be reordered, so it would not be vectorised).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|f| f.to_le_bytes()).collect()
}

fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Rows per multi-row vector insert.
const ROWS_PER_STATEMENT: usize = 200;

/// `INSERT … VALUES (…), (…) ON CONFLICT … DO UPDATE` for `rows` vectors of five parameters.
fn upsert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO vectors (namespace, id, embedding, metadata, updated_at) VALUES {} \
         ON CONFLICT (namespace, id) DO UPDATE SET embedding = excluded.embedding, \
         metadata = excluded.metadata, updated_at = excluded.updated_at",
        crate::store::values_rows(rows, 5)
    )
}

/// A change made in a caller's transaction, applied to this process's in-memory copy once the
/// caller has committed ([`VectorStore::apply`]).
#[must_use = "apply it after the commit"]
pub struct PendingChange {
    namespace: String,
    version: i64,
    upserts: Vec<(String, Vec<f32>, Arc<str>)>,
    deletes: Vec<String>,
}

impl VectorStore {
    /// The embedded backend over our own database.
    /// The embedded store, keeping at most `cache_bytes` of namespaces in memory.
    pub fn embedded(store: Store, dimension: usize, cache_bytes: usize) -> Self {
        Self {
            backend: Backend::Embedded {
                store,
                cache: Arc::new(Cache {
                    entries: Mutex::default(),
                    loading: Mutex::default(),
                    budget_bytes: cache_bytes,
                    loads: std::sync::atomic::AtomicU64::new(0),
                }),
            },
            dimension,
            outage: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Pinecone; our database only keeps the namespace list.
    pub fn pinecone(store: Store, client: PineconeClient, dimension: usize) -> Self {
        Self {
            backend: Backend::Pinecone { store, client },
            dimension,
            outage: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Embedded { .. } => "embedded",
            Backend::Pinecone { .. } => "pinecone",
        }
    }

    /// Whether vectors live in our own database (and so can be written in our transactions).
    pub fn is_embedded(&self) -> bool {
        matches!(self.backend, Backend::Embedded { .. })
    }

    pub fn dimension(&self) -> usize {
        self.dimension
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

    /// Checks, before any transaction, that the backend can take a new namespace: Pinecone must
    /// answer and its index must have our embedder's dimensions.
    pub async fn prepare_namespace(&self) -> Result<(), VectorError> {
        self.check()?;
        if let Backend::Pinecone { client, .. } = &self.backend {
            let stats = client.describe_index_stats().await?;
            if let Some(dim) = stats.dimension
                && dim != self.dimension
            {
                return Err(VectorError::IndexDimension {
                    index: dim,
                    embedder: self.dimension,
                });
            }
        }
        Ok(())
    }

    /// Records a namespace in the caller's transaction; an existing one is left as it is.
    /// (Pinecone creates namespaces on first write; [`prepare_namespace`] checked the index.)
    pub async fn create_namespace_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        name: &str,
    ) -> Result<(), VectorError> {
        self.check()?;
        with_conn!(tx, |conn| {
            sqlx::query(
                "INSERT INTO vector_namespaces (name, tenant_id, dimension, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(tenant_id)
            .bind(self.dimension as i64)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
        });
        Ok(())
    }

    fn validate(&self, records: &[VectorRecord], dimension: usize) -> Result<(), VectorError> {
        match records.iter().find(|r| r.values.len() != dimension) {
            Some(r) => Err(VectorError::Dimension {
                got: r.values.len(),
                want: dimension,
            }),
            None => Ok(()),
        }
    }

    /// Inserts or replaces vectors by id.
    pub async fn upsert(
        &self,
        namespace: &str,
        records: &[VectorRecord],
    ) -> Result<usize, VectorError> {
        self.check()?;
        match &self.backend {
            Backend::Embedded { store, .. } => {
                // Upserts by id are idempotent and every caller records their outcome in a later
                // durable transaction, so this commit need not wait for the disk.
                let mut tx = store.begin_relaxed().await?;
                let change = self.upsert_in(&mut tx, namespace, records).await?;
                tx.commit().await?;
                self.apply(change);
                Ok(records.len())
            }
            Backend::Pinecone { client, .. } => {
                self.validate(records, self.dimension)?;
                client.upsert(namespace, records).await
            }
        }
    }

    /// Embedded backend only: upserts in the caller's transaction, bumping the namespace
    /// version. Apply the returned change after committing.
    pub async fn upsert_in(
        &self,
        tx: &mut Tx,
        namespace: &str,
        records: &[VectorRecord],
    ) -> Result<PendingChange, VectorError> {
        self.check()?;
        let version = bump_version(tx, namespace, |dim| self.validate(records, dim)).await?;
        let now = now_ms();
        // Each record's metadata is serialized once, for the rows and for the cache.
        let upserts: Vec<(String, Vec<f32>, Arc<str>)> = records
            .iter()
            .map(|r| {
                (
                    r.id.clone(),
                    r.values.clone(),
                    Arc::from(r.metadata.to_string()),
                )
            })
            .collect();
        // Multi-row inserts, a few hundred rows per statement (SQLite allows 32766 parameters).
        for batch in upserts.chunks(ROWS_PER_STATEMENT) {
            let sql = upsert_sql(batch.len());
            with_conn!(tx, |conn| {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for (id, values, metadata) in batch {
                    q = q
                        .bind(namespace)
                        .bind(id.as_str())
                        .bind(to_bytes(values))
                        .bind(&**metadata)
                        .bind(now);
                }
                q.execute(&mut *conn).await?;
            });
        }
        Ok(PendingChange {
            namespace: namespace.to_string(),
            version,
            upserts,
            deletes: Vec::new(),
        })
    }

    /// Embedded backend only: deletes vectors by id in the caller's transaction.
    pub async fn delete_in(
        &self,
        tx: &mut Tx,
        namespace: &str,
        ids: &[String],
    ) -> Result<PendingChange, VectorError> {
        self.check()?;
        let version = bump_version(tx, namespace, |_| Ok(())).await?;
        for batch in ids.chunks(ROWS_PER_STATEMENT) {
            let placeholders: Vec<String> = (2..batch.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "DELETE FROM vectors WHERE namespace = $1 AND id IN ({})",
                placeholders.join(", ")
            );
            with_conn!(tx, |conn| {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(namespace);
                for id in batch {
                    q = q.bind(id.as_str());
                }
                q.execute(&mut *conn).await?;
            });
        }
        Ok(PendingChange {
            namespace: namespace.to_string(),
            version,
            upserts: Vec::new(),
            deletes: ids.to_vec(),
        })
    }

    /// Deletes vectors by id (Pinecone, or the embedded store in its own transaction).
    pub async fn delete(&self, namespace: &str, ids: &[String]) -> Result<(), VectorError> {
        self.check()?;
        match &self.backend {
            Backend::Embedded { store, .. } => {
                let mut tx = store.begin().await?;
                let change = self.delete_in(&mut tx, namespace, ids).await?;
                tx.commit().await?;
                self.apply(change);
                Ok(())
            }
            Backend::Pinecone { client, .. } => client.delete_ids(namespace, ids).await,
        }
    }

    /// Applies a committed change to this process's copy of the namespace, or drops the copy
    /// when it is not exactly one version behind (someone else wrote meanwhile).
    pub fn apply(&self, change: PendingChange) {
        let Backend::Embedded { cache, .. } = &self.backend else {
            return;
        };
        let mut cache = cache.entries.lock().expect("vector cache lock");
        let Some(entry) = cache.get_mut(&change.namespace) else {
            return;
        };
        if entry.index.version != change.version - 1 {
            cache.remove(&change.namespace);
            return;
        }
        let index = Arc::make_mut(&mut entry.index);
        for (id, values, meta) in change.upserts {
            if values.len() == index.dim {
                index.upsert(&id, &values, meta);
            }
        }
        for id in &change.deletes {
            index.remove(id);
        }
        index.version = change.version;
    }

    /// The `top_k` vectors most similar to `vector`, best first.
    pub async fn query(
        &self,
        namespace: &str,
        vector: &[f32],
        top_k: usize,
    ) -> Result<Vec<Match>, VectorError> {
        self.check()?;
        match &self.backend {
            Backend::Pinecone { client, .. } => client.query(namespace, vector, top_k, None).await,
            Backend::Embedded { store, cache } => {
                let index = self.current_index(store, cache, namespace).await?;
                if vector.len() != index.dim {
                    return Err(VectorError::Dimension {
                        got: vector.len(),
                        want: index.dim,
                    });
                }
                let top = if index.ids.len() > 2_000 {
                    // Thousands of dot products: keep them off the async workers' threads.
                    let (index, vector) = (index.clone(), vector.to_vec());
                    tokio::task::spawn_blocking(move || index.top_k(&vector, top_k))
                        .await
                        .map_err(|e| VectorError::Unavailable(e.to_string()))?
                } else {
                    index.top_k(vector, top_k)
                };
                Ok(top
                    .into_iter()
                    .map(|(i, score)| Match {
                        id: index.ids[i].clone(),
                        score,
                        metadata: serde_json::from_str(&index.metadata[i]).unwrap_or(Value::Null),
                    })
                    .collect())
            }
        }
    }

    /// The namespace's current in-memory copy, loaded or reloaded when its version moved.
    async fn current_index(
        &self,
        store: &Store,
        cache: &Cache,
        namespace: &str,
    ) -> Result<Arc<NamespaceIndex>, VectorError> {
        // Version first, rows second: a write landing in between makes the copy look older than
        // it is (one extra reload later), never newer.
        let row: Option<(i64, i64)> = with_reader!(store, |pool| {
            sqlx::query_as("SELECT version, dimension FROM vector_namespaces WHERE name = $1")
                .bind(namespace)
                .fetch_optional(pool)
                .await?
        });
        let (version, dim) = row.ok_or_else(|| VectorError::NoNamespace(namespace.into()))?;
        if let Some(index) = cache.fresh(namespace, version) {
            return Ok(index);
        }
        // Single flight: the first miss loads, the others wait for it and take its copy.
        let gate = cache
            .loading
            .lock()
            .expect("vector cache lock")
            .entry(namespace.to_string())
            .or_default()
            .clone();
        let _loading = gate.lock().await;
        if let Some(index) = cache.fresh(namespace, version) {
            return Ok(index);
        }
        let loaded = self.load(store, cache, namespace, version, dim).await;
        cache
            .loading
            .lock()
            .expect("vector cache lock")
            .remove(namespace);
        loaded
    }

    async fn load(
        &self,
        store: &Store,
        cache: &Cache,
        namespace: &str,
        version: i64,
        dim: i64,
    ) -> Result<Arc<NamespaceIndex>, VectorError> {
        cache.loads.fetch_add(1, Ordering::Relaxed);
        let rows: Vec<(String, Vec<u8>, String)> = with_reader!(store, |pool| {
            sqlx::query_as("SELECT id, embedding, metadata FROM vectors WHERE namespace = $1")
                .bind(namespace)
                .fetch_all(pool)
                .await?
        });
        let mut index = NamespaceIndex::empty(version, dim as usize);
        for (id, bytes, meta) in rows {
            let values = from_bytes(&bytes);
            if values.len() == index.dim {
                index.upsert(&id, &values, Arc::from(meta));
            }
        }
        let index = Arc::new(index);
        if index.approx_bytes() <= cache.budget_bytes {
            let mut entries = cache.entries.lock().expect("vector cache lock");
            entries.insert(
                namespace.to_string(),
                Cached {
                    index: index.clone(),
                    last_used: Instant::now(),
                },
            );
            evict(&mut entries, cache.budget_bytes);
        } else {
            tracing::warn!(
                namespace,
                bytes = index.approx_bytes(),
                budget = cache.budget_bytes,
                "namespace larger than VECTOR_CACHE_MB: answered without keeping it in memory"
            );
        }
        Ok(index)
    }

    /// How many times an embedded namespace was loaded from the database.
    pub fn namespace_loads(&self) -> u64 {
        match &self.backend {
            Backend::Embedded { cache, .. } => cache.loads.load(Ordering::Relaxed),
            Backend::Pinecone { .. } => 0,
        }
    }

    /// Bytes held by the in-memory copies of embedded namespaces.
    pub fn cached_bytes(&self) -> usize {
        match &self.backend {
            Backend::Embedded { cache, .. } => cache
                .entries
                .lock()
                .expect("vector cache lock")
                .values()
                .map(|c| c.index.approx_bytes())
                .sum(),
            Backend::Pinecone { .. } => 0,
        }
    }

    /// Number of vectors in a namespace.
    pub async fn count(&self, namespace: &str) -> Result<i64, VectorError> {
        self.check()?;
        match &self.backend {
            Backend::Embedded { store, .. } => Ok(with_reader!(store, |pool| {
                sqlx::query_scalar("SELECT COUNT(*) FROM vectors WHERE namespace = $1")
                    .bind(namespace)
                    .fetch_one(pool)
                    .await?
            })),
            Backend::Pinecone { client, .. } => {
                let stats = client.describe_index_stats().await?;
                Ok(stats.namespaces.get(namespace).copied().unwrap_or(0) as i64)
            }
        }
    }

    /// Deletes every namespace of a tenant with all its vectors (Pinecone's `deleteAll`, or the
    /// embedded rows), and forgets them. Idempotent: a namespace already gone is not an error.
    pub async fn drop_tenant_namespaces(&self, tenant_id: &str) -> Result<usize, VectorError> {
        self.check()?;
        let (Backend::Embedded { store, .. } | Backend::Pinecone { store, .. }) = &self.backend;
        let names: Vec<String> = with_reader!(store, |pool| {
            sqlx::query_scalar("SELECT name FROM vector_namespaces WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_all(pool)
                .await?
        });
        for name in &names {
            if let Backend::Pinecone { client, .. } = &self.backend {
                client.delete_all(name).await?;
            }
            let mut tx = store.begin().await?;
            with_conn!(&mut tx, |conn| {
                sqlx::query("DELETE FROM vectors WHERE namespace = $1")
                    .bind(name)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("DELETE FROM vector_namespaces WHERE name = $1")
                    .bind(name)
                    .execute(&mut *conn)
                    .await?;
            });
            tx.commit().await?;
            if let Backend::Embedded { cache, .. } = &self.backend {
                cache
                    .entries
                    .lock()
                    .expect("vector cache lock")
                    .remove(name);
            }
        }
        Ok(names.len())
    }

    /// Whether the namespace is recorded in our database (either backend).
    pub async fn namespace_exists(&self, name: &str) -> Result<bool, VectorError> {
        let (Backend::Embedded { store, .. } | Backend::Pinecone { store, .. }) = &self.backend;
        let n: i64 = with_reader!(store, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM vector_namespaces WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await?
        });
        Ok(n > 0)
    }
}

/// Bumps the namespace's version in `tx` (locking its row until commit), after `check`ing the
/// namespace's dimension. Returns the new version.
async fn bump_version(
    tx: &mut Tx,
    namespace: &str,
    check: impl FnOnce(usize) -> Result<(), VectorError>,
) -> Result<i64, VectorError> {
    let row: Option<(i64, i64)> = with_conn!(tx, |conn| {
        sqlx::query_as(
            "UPDATE vector_namespaces SET version = version + 1 WHERE name = $1 RETURNING version, dimension",
        )
        .bind(namespace)
        .fetch_optional(&mut *conn)
        .await?
    });
    let (version, dim) = row.ok_or_else(|| VectorError::NoNamespace(namespace.into()))?;
    check(dim as usize)?;
    Ok(version)
}

/// Drops least recently used namespaces until the cache holds at most `budget` bytes (the
/// newest entry always stays: it is the one being answered).
fn evict(cache: &mut HashMap<String, Cached>, budget: usize) {
    let mut total: usize = cache.values().map(|c| c.index.approx_bytes()).sum();
    while total > budget && cache.len() > 1 {
        let Some(oldest) = cache
            .iter()
            .min_by_key(|(_, c)| c.last_used)
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        if let Some(c) = cache.remove(&oldest) {
            total -= c.index.approx_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(rows: &[(&str, [f32; 3])]) -> NamespaceIndex {
        let mut i = NamespaceIndex::empty(1, 3);
        for (id, v) in rows {
            i.upsert(id, v, Arc::from("{}"));
        }
        i
    }

    #[test]
    fn top_k_ranks_by_cosine_and_breaks_ties_by_id() {
        let i = index(&[
            ("far", [0.0, 1.0, 0.0]),
            ("b-near", [1.0, 0.1, 0.0]),
            ("a-near", [2.0, 0.2, 0.0]),
            ("mid", [1.0, 1.0, 0.0]),
        ]);
        let top = i.top_k(&[1.0, 0.1, 0.0], 3);
        let ids: Vec<&str> = top.iter().map(|(j, _)| i.ids[*j].as_str()).collect();
        assert_eq!(ids, ["a-near", "b-near", "mid"]);
        assert!((top[0].1 - 1.0).abs() < 1e-5);
        assert!(i.top_k(&[1.0, 0.0, 0.0], 0).is_empty());
    }

    #[test]
    fn dot_matches_the_plain_sum_for_every_length() {
        for n in [0, 1, 7, 8, 9, 384, 1537] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-3, "{n}");
        }
    }

    #[test]
    fn upsert_replaces_and_remove_keeps_positions_consistent() {
        let mut i = index(&[
            ("a", [1.0, 0.0, 0.0]),
            ("b", [0.0, 1.0, 0.0]),
            ("c", [0.0, 0.0, 1.0]),
        ]);
        i.upsert("a", &[0.0, 0.0, 5.0], Arc::from("{\"x\":1}"));
        assert_eq!(i.ids.len(), 3);
        i.remove("a");
        i.remove("nope");
        assert_eq!(i.ids.len(), 2);
        for (id, &pos) in &i.position {
            assert_eq!(&i.ids[pos], id);
        }
        let best = i.top_k(&[0.0, 0.0, 1.0], 1);
        assert_eq!(i.ids[best[0].0], "c");
        assert_eq!(i.values.len(), 6);
    }

    #[test]
    fn eviction_keeps_the_cache_within_its_bytes() {
        let filled = |n: usize| {
            let mut i = NamespaceIndex::empty(1, 384);
            for k in 0..n {
                i.upsert(&format!("doc_{k}#0"), &[1.0; 384], Arc::from("{}"));
            }
            i
        };
        let cached = |index, age| Cached {
            index: Arc::new(index),
            last_used: Instant::now() - std::time::Duration::from_secs(age),
        };
        let one = filled(100).approx_bytes();
        assert!(one >= 100 * 384 * 4, "the vectors alone: {one}");
        let mut cache = HashMap::new();
        cache.insert("oldest".to_string(), cached(filled(100), 60));
        cache.insert("older".to_string(), cached(filled(100), 30));
        cache.insert("new".to_string(), cached(filled(100), 0));
        evict(&mut cache, 2 * one);
        assert_eq!(cache.len(), 2);
        assert!(cache.contains_key("new") && cache.contains_key("older"));
        let total: usize = cache.values().map(|c| c.index.approx_bytes()).sum();
        assert!(total <= 2 * one);
        evict(&mut cache, 1);
        assert_eq!(cache.len(), 1, "the newest stays, whatever the budget");
        assert!(cache.contains_key("new"));
    }
}
