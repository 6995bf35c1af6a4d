//! A tenant's documents: stored whole in our database, chunked ([`crate::search::chunker`]), embedded
//! and written to the tenant's namespace as `{document_id}#{chunk}` vectors; and queries over
//! them. Every read and write is keyed by the tenant, so no id from another tenant resolves.
//!
//! On the embedded vector store the document row, its vectors and the plan-limit check commit in
//! one transaction. On Pinecone the row (with the limit check) commits first, then the vectors
//! are written; if that fails the row is removed again and the caller gets the error.

use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::namespace_for;
use super::sample_data::SampleDocument;
use crate::analytics::{Milestone, Recorded};
use crate::app::AppState;
use crate::domain::{Plan, TenantId};
use crate::jobs::{Done, JobKind, JobRef, Task};
use crate::search::{EmbedError, Embedder, VectorError, VectorRecord, chunker};
use crate::store::{Store, StoreError, StoreResult, Tx, now_ms};
use crate::{with_conn, with_reader};

/// Largest document content accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 300;
/// Largest `top_k` of a query.
pub const MAX_TOP_K: usize = 50;
/// Characters of a chunk shown as a query hit's snippet.
const SNIPPET_CHARS: usize = 240;

/// A document to add, already validated by the caller's parser.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub title: String,
    pub content: String,
    pub content_type: String,
    pub metadata: Map<String, Value>,
}

/// A stored document (without its content).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Document {
    pub id: String,
    pub title: String,
    pub content_type: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub bytes: i64,
    pub chunk_count: i64,
    /// Loaded by provisioning as an example; does not count towards the plan's documents.
    pub sample: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct DocumentRow {
    id: String,
    title: String,
    content_type: String,
    metadata: String,
    bytes: i64,
    chunk_count: i64,
    sample: bool,
    created_at: i64,
}

impl From<DocumentRow> for Document {
    fn from(r: DocumentRow) -> Self {
        Document {
            id: r.id,
            title: r.title,
            content_type: r.content_type,
            metadata: serde_json::from_str(&r.metadata).unwrap_or(Value::Null),
            bytes: r.bytes,
            chunk_count: r.chunk_count,
            sample: r.sample,
            created_at: r.created_at,
        }
    }
}

/// A document with its content.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DocumentWithContent {
    #[serde(flatten)]
    pub document: Document,
    pub content: String,
}

/// Why a workspace operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(
        "your {plan} plan allows {max} {limit}{}",
        upgrade.map(|p| format!("; the {p} plan lifts this limit")).unwrap_or_default()
    )]
    LimitReached {
        limit: &'static str,
        max: u64,
        plan: Plan,
        upgrade: Option<Plan>,
    },
    #[error("embedding failed: {0}")]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Vector(#[from] VectorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for WorkspaceError {
    fn from(e: sqlx::Error) -> Self {
        WorkspaceError::Store(StoreError::Database(e))
    }
}

/// The id of a chunk's vector.
pub fn vector_id(document_id: &str, chunk: usize) -> String {
    format!("{document_id}#{chunk}")
}

/// Chunks and embeds a document: the vectors to store, one per chunk.
pub async fn vectorize(
    embedder: &Embedder,
    document_id: &str,
    title: &str,
    content: &str,
    sample: bool,
) -> Result<Vec<VectorRecord>, EmbedError> {
    let chunks = chunker::chunk(content);
    // The title is embedded with every chunk: a query naming the document finds all of it.
    let texts: Vec<String> = chunks.iter().map(|c| format!("{title}\n\n{c}")).collect();
    let vectors = if texts.is_empty() {
        Vec::new()
    } else {
        embedder.embed(&texts).await?
    };
    Ok(chunks
        .into_iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (text, values))| VectorRecord {
            id: vector_id(document_id, i),
            values,
            metadata: json!({
                "document_id": document_id, "title": title, "chunk": i, "text": text, "sample": sample,
            }),
        })
        .collect())
}

/// The id a sample document gets in every workspace.
pub fn sample_document_id(sample: &SampleDocument) -> String {
    format!("sample_{}", sample.id)
}

/// What a tenant's documents take up against its plan (sample documents do not count): one
/// row, kept by the database's triggers on `documents` (migration 0008). No row: nothing yet.
const FOOTPRINT_SQL: &str =
    "SELECT documents, bytes, chunks FROM document_totals WHERE tenant_id = $1";

/// A tenant's stored documents, bytes and chunks that count towards its plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Footprint {
    pub documents: i64,
    pub bytes: i64,
    pub chunks: i64,
}

impl Tx {
    /// Deletes a document row of a tenant; false if there was none.
    /// Deletes a document's row; its chunk count, or `None` when there was no such document.
    async fn delete_document_row(
        &mut self,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<i64>> {
        Ok(with_conn!(self, |conn| {
            sqlx::query_scalar(
                "DELETE FROM documents WHERE tenant_id = $1 AND id = $2 RETURNING chunk_count",
            )
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        }))
    }

    /// A document's chunk count, without its content.
    async fn document_chunk_count(
        &mut self,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<i64>> {
        Ok(with_conn!(self, |conn| {
            sqlx::query_scalar("SELECT chunk_count FROM documents WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        }))
    }

    async fn insert_document_row(
        &mut self,
        tenant: &TenantId,
        id: &str,
        doc: &NewDocument,
        chunk_count: usize,
        sample: bool,
    ) -> StoreResult<i64> {
        let now = now_ms();
        with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO documents (tenant_id, id, title, content_type, content, metadata, bytes, chunk_count, sample, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (tenant_id, id) DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(id)
            .bind(&doc.title)
            .bind(&doc.content_type)
            .bind(&doc.content)
            .bind(Value::Object(doc.metadata.clone()).to_string())
            .bind(doc.content.len() as i64)
            .bind(chunk_count as i64)
            .bind(sample)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        });
        Ok(now)
    }

    /// Records the shipped sample documents in the tenant's document list (provisioning), in
    /// one statement; ones already there are left alone.
    pub async fn insert_sample_documents(
        &mut self,
        tenant: &TenantId,
        samples: &[SampleDocument],
    ) -> StoreResult<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO documents (tenant_id, id, title, content_type, content, metadata, bytes, chunk_count, sample, created_at) \
             VALUES {} ON CONFLICT (tenant_id, id) DO NOTHING",
            crate::store::values_rows(samples.len(), 10)
        );
        let now = now_ms();
        with_conn!(self, |conn| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for d in samples {
                q = q
                    .bind(tenant.as_str())
                    .bind(sample_document_id(d))
                    .bind(&d.title)
                    .bind("text/plain")
                    .bind(&d.content)
                    .bind(Value::Object(d.metadata.clone()).to_string())
                    .bind(d.content.len() as i64)
                    .bind(chunker::chunk(&d.content).len() as i64)
                    .bind(true)
                    .bind(now);
            }
            q.execute(&mut *conn).await?;
        });
        Ok(())
    }

    /// What the tenant's documents take up against its plan (samples do not count). On
    /// PostgreSQL the tenant row is locked first, so concurrent uploads of one tenant cannot both
    /// take the last room (SQLite transactions are already serial).
    async fn footprint_for_limit(&mut self, tenant: &TenantId) -> StoreResult<Footprint> {
        if let Tx::Postgres(t) = self {
            sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(tenant.as_str())
                .execute(&mut **t)
                .await?;
        }
        let row: Option<Footprint> = with_conn!(self, |conn| {
            sqlx::query_as(FOOTPRINT_SQL)
                .bind(tenant.as_str())
                .fetch_optional(&mut *conn)
                .await?
        });
        Ok(row.unwrap_or_default())
    }
}

impl Store {
    /// A tenant's documents, newest first, at most `limit`, optionally only those created before
    /// `before` (the last `created_at` of the previous page).
    pub async fn list_documents(
        &self,
        tenant: &TenantId,
        limit: i64,
        before: Option<(i64, String)>,
    ) -> StoreResult<Vec<Document>> {
        let (before_at, before_id) = before.unwrap_or((i64::MAX, String::new()));
        let rows: Vec<DocumentRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT id, title, content_type, metadata, bytes, chunk_count, sample, created_at FROM documents \
                 WHERE tenant_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
                 ORDER BY created_at DESC, id DESC LIMIT $4",
            )
            .bind(tenant.as_str())
            .bind(before_at)
            .bind(&before_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(Document::from).collect())
    }

    /// One document of a tenant, with its content.
    pub async fn document(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<DocumentWithContent>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            doc: DocumentRow,
            content: String,
        }
        let row: Option<Row> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT id, title, content_type, metadata, bytes, chunk_count, sample, created_at, content \
                 FROM documents WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|r| DocumentWithContent {
            document: r.doc.into(),
            content: r.content,
        }))
    }

    /// How many of the tenant's documents count towards its plan.
    pub async fn count_documents(&self, tenant: &TenantId) -> StoreResult<i64> {
        Ok(self.footprint(tenant).await?.documents)
    }

    /// What the tenant's documents take up against its plan.
    pub async fn footprint(&self, tenant: &TenantId) -> StoreResult<Footprint> {
        let row: Option<Footprint> = with_reader!(self, |pool| {
            sqlx::query_as(FOOTPRINT_SQL)
                .bind(tenant.as_str())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.unwrap_or_default())
    }
}

/// The error for a tenant at one of its plan's limits (`pick` reads that limit), naming the
/// plan that lifts it.
fn limit_reached(
    app: &AppState,
    plan: Plan,
    limit: &'static str,
    max: u64,
    pick: impl Fn(&crate::domain::plan::PlanLimits) -> Option<u64>,
) -> WorkspaceError {
    WorkspaceError::LimitReached {
        limit,
        max,
        plan,
        upgrade: app
            .settings
            .plans
            .plan_lifting(max, pick)
            .filter(|p| *p != plan),
    }
}

/// The first of the plan's storage limits that a document of `bytes` and `chunks` would pass,
/// given what is stored already.
fn storage_limit(
    app: &AppState,
    plan: Plan,
    stored: Footprint,
    bytes: usize,
    chunks: usize,
) -> Option<WorkspaceError> {
    let limits = app.settings.plans.limits(plan);
    let over = |max: Option<u64>, after: i64| max.filter(|m| after > *m as i64);
    if let Some(max) = over(limits.max_documents, stored.documents + 1) {
        return Some(limit_reached(app, plan, "documents", max, |l| {
            l.max_documents
        }));
    }
    if let Some(max) = over(limits.max_bytes, stored.bytes + bytes as i64) {
        return Some(limit_reached(app, plan, "bytes of documents", max, |l| {
            l.max_bytes
        }));
    }
    if let Some(max) = over(limits.max_chunks, stored.chunks + chunks as i64) {
        return Some(limit_reached(app, plan, "chunks", max, |l| l.max_chunks));
    }
    None
}

/// Answers a tenant's query: the monthly quota, the search, then (only for a query that
/// answered) the usage count and `first_query_executed`.
pub async fn query(
    app: &AppState,
    tenant: &TenantId,
    plan: Plan,
    text: &str,
    top_k: usize,
) -> Result<Vec<QueryHit>, WorkspaceError> {
    let period = crate::workspace::usage::current_period();
    if let Some(max) = app.settings.plans.limits(plan).max_queries_per_month
        && app.usage.queries(&app.store, tenant, &period).await? >= max as i64
    {
        let pick = |l: &crate::domain::plan::PlanLimits| l.max_queries_per_month;
        return Err(limit_reached(app, plan, "queries per month", max, pick));
    }
    let results = search(app, tenant, text, top_k).await?;
    app.usage.add_query(tenant, &period);
    match app
        .milestones
        .record(&app.store, tenant, Milestone::FirstQueryExecuted, None)
        .await
    {
        // The tenant's activation: signup → first query.
        Ok(Some(Recorded {
            since_signup_ms: Some(ms),
        })) => app.metrics.time_to_activation.observe(ms as f64 / 1000.0),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not record first_query_executed"),
    }
    Ok(results)
}

/// Adds a document to the tenant's workspace: limit check, chunking, embedding, storage.
/// Records `first_document_upload` the first time.
pub async fn ingest(
    app: &AppState,
    tenant: &TenantId,
    plan: Plan,
    doc: NewDocument,
) -> Result<Document, WorkspaceError> {
    let started = Instant::now();
    let bytes = doc.content.len();
    // A cheap early refusal before embedding (documents and bytes: the chunks are not known
    // yet); the transaction below checks everything again.
    let stored = app.store.footprint(tenant).await?;
    if let Some(e) = storage_limit(app, plan, stored, bytes, 0) {
        return Err(e);
    }
    let id = format!("doc_{}", ulid::Ulid::new());
    let namespace = namespace_for(tenant);
    let records = vectorize(&app.embedder, &id, &doc.title, &doc.content, false).await?;

    let mut tx = app.store.begin().await?;
    let stored = tx.footprint_for_limit(tenant).await?;
    if let Some(e) = storage_limit(app, plan, stored, bytes, records.len()) {
        return Err(e);
    }
    let created_at = tx
        .insert_document_row(tenant, &id, &doc, records.len(), false)
        .await?;
    if app.vectors.is_embedded() {
        let change = app.vectors.upsert_in(&mut tx, &namespace, &records).await?;
        tx.commit().await?;
        app.vectors.apply(change);
    } else {
        tx.commit().await?;
        if let Err(e) = app.vectors.upsert(&namespace, &records).await {
            // Some batches may have been written before the failure: the row goes, and a
            // durable job deletes every vector id the document could have, retrying until the
            // store is back, so no hit ever points at a document that does not exist.
            let ids = records.iter().map(|r| r.id.clone()).collect();
            if let Err(cleanup) = forget_remote(app, tenant, &id, namespace, ids).await {
                tracing::error!(error = %cleanup, document = %id, "could not schedule the removal of a failed document");
            }
            return Err(e.into());
        }
    }
    let _ = app
        .milestones
        .record(
            &app.store,
            tenant,
            Milestone::FirstDocumentUpload,
            Some(&id),
        )
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "could not record first_document_upload"));
    tracing::info!(document = %id, chunks = records.len(), ms = started.elapsed().as_millis() as u64, "document stored");
    Ok(Document {
        id,
        title: doc.title,
        content_type: doc.content_type,
        metadata: Value::Object(doc.metadata),
        bytes: doc.content.len() as i64,
        chunk_count: records.len() as i64,
        sample: false,
        created_at,
    })
}

/// Payload of the job that deletes vectors no document owns.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PurgeJob {
    pub namespace: String,
    pub ids: Vec<String>,
}

impl Task for PurgeJob {
    type Context = AppState;
    const KIND: JobKind = JobKind::new("purge_vectors", 5);

    async fn run(&self, app: &AppState, _: JobRef<'_>) -> Result<Done, String> {
        app.vectors
            .delete(&self.namespace, &self.ids)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Done::ByWorker)
    }
}

/// Removes a document row and, in the same transaction, enqueues the deletion of its vectors.
async fn forget_remote(
    app: &AppState,
    tenant: &TenantId,
    id: &str,
    namespace: String,
    ids: Vec<String>,
) -> StoreResult<()> {
    let mut tx = app.store.begin().await?;
    tx.delete_document_row(tenant, id).await?;
    tx.enqueue(PurgeJob { namespace, ids }.job(20)).await?;
    tx.commit().await?;
    app.jobs_ready.notify_one();
    Ok(())
}

/// Deletes a document and its vectors.
pub async fn delete(app: &AppState, tenant: &TenantId, id: &str) -> Result<(), WorkspaceError> {
    let chunk_ids =
        |chunks: i64| -> Vec<String> { (0..chunks as usize).map(|i| vector_id(id, i)).collect() };
    let not_found = || WorkspaceError::NotFound("document");
    let namespace = namespace_for(tenant);
    let mut tx = app.store.begin().await?;
    if app.vectors.is_embedded() {
        // The row and its vectors go together.
        let chunks = tx
            .delete_document_row(tenant, id)
            .await?
            .ok_or_else(not_found)?;
        let change = app
            .vectors
            .delete_in(&mut tx, &namespace, &chunk_ids(chunks))
            .await?;
        tx.commit().await?;
        app.vectors.apply(change);
    } else {
        // Vectors first: should the store fail, the document is still listed and can be
        // deleted again, rather than leaving hits that point at nothing.
        let chunks = tx
            .document_chunk_count(tenant, id)
            .await?
            .ok_or_else(not_found)?;
        drop(tx);
        app.vectors.delete(&namespace, &chunk_ids(chunks)).await?;
        let mut tx = app.store.begin().await?;
        tx.delete_document_row(tenant, id)
            .await?
            .ok_or_else(not_found)?;
        tx.commit().await?;
    }
    Ok(())
}

/// One ranked chunk.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueryHit {
    pub document_id: String,
    pub title: String,
    pub chunk: i64,
    pub score: f32,
    pub snippet: String,
    pub sample: bool,
}

/// Ranks the tenant's chunks against `text`, best first.
pub async fn search(
    app: &AppState,
    tenant: &TenantId,
    text: &str,
    top_k: usize,
) -> Result<Vec<QueryHit>, WorkspaceError> {
    let vector = app
        .embedder
        .embed(&[text.to_string()])
        .await?
        .pop()
        .ok_or_else(|| EmbedError::Invalid("no vector for the query".into()))?;
    let matches = app
        .vectors
        .query(&namespace_for(tenant), &vector, top_k)
        .await?;
    Ok(matches
        .into_iter()
        .map(|m| {
            let text = m.metadata["text"].as_str().unwrap_or_default();
            let mut snippet: String = text.chars().take(SNIPPET_CHARS).collect();
            if text.chars().nth(SNIPPET_CHARS).is_some() {
                snippet.push('…');
            }
            QueryHit {
                document_id: m.metadata["document_id"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| m.id.split('#').next().unwrap_or_default().to_string()),
                title: m.metadata["title"].as_str().unwrap_or_default().to_string(),
                chunk: m.metadata["chunk"].as_i64().unwrap_or(0),
                score: m.score,
                snippet,
                sample: m.metadata["sample"].as_bool().unwrap_or(false),
            }
        })
        .collect())
}
