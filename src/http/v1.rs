//! The tenant's API, `/v1/*`, every endpoint behind an API key ([`super::auth`]): keys,
//! documents, queries and usage. Ids of another tenant's documents or keys answer 404 exactly as
//! ids that do not exist, so they cannot be probed.

use std::net::IpAddr;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;

use super::extract::PathParam;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ApiError, AppResult};
use super::extract::{ClientIp, JsonBody, QueryParams, parse_json};
use crate::app::AppState;
use crate::domain::audit::{Action, Actor};
use crate::domain::{Permission, Plan, Role};
use crate::search::EmbedError;
use crate::search::VectorError;
use crate::store::AuditEntry;
use crate::workspace::api_keys::{ApiKeyRow, scopes};
use crate::workspace::documents::{
    self, Document, DocumentWithContent, MAX_DOCUMENT_BYTES, MAX_TITLE_CHARS, MAX_TOP_K,
    NewDocument, QueryHit, WorkspaceError,
};
use crate::workspace::usage::current_period;

/// Scopes a tenant may put on a key it creates.
pub(super) const GRANTABLE: [&str; 4] = [
    scopes::DOCUMENTS_WRITE,
    scopes::QUERY,
    scopes::KEYS_MANAGE,
    scopes::USAGE_READ,
];
/// Largest metadata object, serialized.
const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Longest query text, in characters.
const MAX_QUERY_CHARS: usize = 2_000;

impl From<WorkspaceError> for ApiError {
    fn from(e: WorkspaceError) -> Self {
        let message = e.to_string();
        match e {
            WorkspaceError::NotFound(what) => ApiError::not_found(what),
            WorkspaceError::LimitReached {
                limit: "documents", ..
            } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "document_limit_reached",
                message,
            ),
            WorkspaceError::LimitReached {
                limit: "bytes of documents" | "chunks",
                ..
            } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "storage_limit_reached",
                message,
            ),
            WorkspaceError::LimitReached { .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "query_limit_reached",
                message,
            ),
            // A provider's own words (its error bodies, hosts, request ids) go to the logs;
            // the tenant is told what happened and what to do, in ours.
            WorkspaceError::Embed(EmbedError::Rejected { .. } | EmbedError::Invalid(_)) => {
                tracing::error!(error = %message, "embedder refused or answered nonsense");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "embedder_error",
                    "the embedding service refused this request; we have logged it, and retrying will not help until it is fixed",
                )
            }
            WorkspaceError::Embed(_) => {
                tracing::warn!(error = %message, "embedder unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "embedder_unavailable",
                    "the embedding service is unavailable; try again shortly",
                )
            }
            WorkspaceError::Vector(VectorError::Store(e)) | WorkspaceError::Store(e) => e.into(),
            WorkspaceError::Vector(
                VectorError::Rejected { .. } | VectorError::Dimension { .. },
            ) => {
                tracing::error!(error = %message, "vector store refused a request");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "vector_store_error",
                    "the vector store refused this request; we have logged it, and retrying will not help until it is fixed",
                )
            }
            WorkspaceError::Vector(_) => {
                tracing::warn!(error = %message, "vector store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "vector_store_unavailable",
                    "the vector store is unavailable; try again shortly",
                )
            }
        }
    }
}

/// The `/v1` routes, without authentication: [`super::router`] adds
/// [`super::auth::require_api_key`] in front of them.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
        .routes(routes!(rotate_key))
        .routes(routes!(list_documents, create_document))
        .routes(routes!(get_document, delete_document))
        .routes(routes!(query))
        .routes(routes!(usage))
}

// ---------------------------------------------------------------- API keys

/// A key as listed (never its secret).
#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// Recognisable tail of the key, e.g. `onb_…x1Y2z3`.
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The role the key acts with.
    #[schema(value_type = Role)]
    pub role: String,
}

impl From<ApiKeyRow> for ApiKeyView {
    fn from(k: ApiKeyRow) -> Self {
        ApiKeyView {
            id: k.id,
            name: k.name,
            scopes: k.scopes.split_whitespace().map(str::to_string).collect(),
            prefix: k.prefix,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            role: k.role,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    pub keys: Vec<ApiKeyView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A key just created: the only time its secret is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The secret API key. Store it now: it is never shown again.
    pub api_key: String,
}

/// A scope a tenant may put on a key it creates.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum KeyScope {
    #[schema(rename = "documents:write")]
    DocumentsWrite,
    #[schema(rename = "query")]
    Query,
    #[schema(rename = "keys:manage")]
    KeysManage,
    #[schema(rename = "usage:read")]
    UsageRead,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// A label, 1–100 characters after trimming (default "API key").
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: Option<String>,
    /// Any of `documents:write`, `query`, `keys:manage`, `usage:read` (default: all four), at
    /// least one.
    #[schema(min_items = 1, inline, value_type = Option<Vec<KeyScope>>)]
    pub scopes: Option<Vec<String>>,
    /// Days until the key expires (1–3650); none = no expiry.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
    /// The role the key acts with: `member` (documents, queries, usage), `admin` (also members
    /// and keys) or `owner`; at most the calling key's own role, which is the default.
    pub role: Option<Role>,
}

/// List the workspace's API keys (revoked ones too), newest first.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api keys", params(ListParams),
    responses((status = 200, body = ApiKeyList), (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(params): QueryParams<ListParams>,
) -> AppResult<Json<ApiKeyList>> {
    caller.require(scopes::KEYS_MANAGE)?;
    caller.require_role(Permission::ManageKeys)?;
    let limit = page_limit(params.limit)?;
    let before = parse_cursor(params.cursor.as_deref())?;
    let rows = state
        .store
        .api_keys_page(caller.tenant(), limit + 1, before)
        .await?;
    let (rows, next_cursor) = page(rows, limit, |k| (k.created_at, k.id.as_str()));
    Ok(Json(ApiKeyList {
        keys: rows.into_iter().map(ApiKeyView::from).collect(),
        next_cursor,
    }))
}

/// Create an API key; its secret is in this answer only.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api keys", request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody), (status = 409, description = "The workspace already holds MAX_API_KEYS live keys", body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    JsonBody(req): JsonBody<CreateKeyRequest>,
) -> AppResult<(StatusCode, Json<CreatedKey>)> {
    caller.require(scopes::KEYS_MANAGE)?;
    caller.require_role(Permission::ManageKeys)?;
    let name = req
        .name
        .unwrap_or_else(|| "API key".into())
        .trim()
        .to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(
            ApiError::bad_request("invalid_name", "name must be 1–100 characters")
                .with_field("name"),
        );
    }
    let wanted = req
        .scopes
        .unwrap_or_else(|| GRANTABLE.map(str::to_string).to_vec());
    let mut granted: Vec<&str> = Vec::new();
    for s in &wanted {
        match GRANTABLE.iter().find(|g| **g == s.as_str()) {
            Some(g) if !granted.contains(g) => granted.push(g),
            Some(_) => {}
            None => {
                return Err(ApiError::bad_request(
                    "invalid_scope",
                    format!(
                        "unknown scope '{s}': use documents:write, query, keys:manage or usage:read"
                    ),
                )
                .with_field("scopes"));
            }
        }
    }
    if granted.is_empty() {
        return Err(
            ApiError::bad_request("invalid_scope", "give the key at least one scope")
                .with_field("scopes"),
        );
    }
    let ttl = match req.expires_in_days {
        None => None,
        Some(d @ 1..=3650) => Some(i64::from(d) * 86_400),
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_expiry", "expires_in_days must be 1–3650")
                    .with_field("expires_in_days"),
            );
        }
    };
    let role = req.role.unwrap_or(caller.role());
    if role > caller.role() {
        return Err(ApiError::forbidden_role(format!(
            "this API key acts as {}, so the keys it creates can be at most {}",
            caller.role(),
            caller.role()
        ))
        .with_field("role"));
    }
    let audit = |action, id: &str| key_audit(&caller, ip, action, id);
    let created = issue(
        &state,
        &caller.issuer(&audit),
        (&name, &granted, ttl, role),
        None,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Who issues, rotates or revokes a key: the tenant, the user the key is created by, and how
/// the audit entries of an act on a key begin (by a key, or by a signed-in member).
pub(super) struct Issuer<'a> {
    pub tenant: &'a crate::domain::TenantId,
    pub created_by: Option<&'a str>,
    /// The role the issuer acts with: no key it makes or rotates may act above it.
    pub role: Role,
    pub audit: &'a (dyn Fn(Action, &str) -> AuditEntry + Sync),
}

trait CallerIssuer {
    fn issuer<'a>(&'a self, audit: &'a (dyn Fn(Action, &str) -> AuditEntry + Sync)) -> Issuer<'a>;
}

impl CallerIssuer for Caller {
    fn issuer<'a>(&'a self, audit: &'a (dyn Fn(Action, &str) -> AuditEntry + Sync)) -> Issuer<'a> {
        Issuer {
            tenant: self.tenant(),
            created_by: self.principal.created_by.as_deref(),
            role: self.role(),
            audit,
        }
    }
}

/// The audit entry of an act of `caller` on its key `key_id`: the tenant acted, through the key
/// it called with (`detail.by_key`).
fn key_audit(caller: &Caller, ip: IpAddr, action: Action, key_id: &str) -> AuditEntry {
    AuditEntry::new(Actor::Tenant(caller.tenant().clone()), action)
        .target(key_id)
        .ip(Some(ip))
        .with("tenant_id", caller.tenant().as_str())
        .with("by_key", caller.principal.key_id.as_str())
}

/// Issues a key (revoking `replaces` in the same transaction) and returns it with its secret;
/// both are audited in that transaction.
pub(super) async fn issue(
    state: &AppState,
    by: &Issuer<'_>,
    (name, scopes, ttl_secs, role): (&str, &[&str], Option<i64>, Role),
    replaces: Option<&str>,
) -> AppResult<CreatedKey> {
    let mut tx = state.store.begin().await?;
    if let Some(old) = replaces {
        tx.revoke_api_key(by.tenant, old).await?;
    } else {
        let max = i64::from(state.settings.max_api_keys);
        if tx.live_api_keys_locked(by.tenant).await? >= max {
            return Err(ApiError::conflict(
                "key_limit_reached",
                format!(
                    "a workspace holds at most {max} live API keys; revoke one (DELETE /v1/api-keys/{{id}}) before creating another"
                ),
            ));
        }
    }
    let spec = crate::workspace::api_keys::KeySpec {
        name,
        scopes,
        ttl_secs,
        role,
        created_by: by.created_by,
    };
    let key = tx
        .issue_api_key_as(&state.signer, by.tenant, &spec, false)
        .await?;
    if let Some(old) = replaces {
        tx.audit(
            &(by.audit)(Action::ApiKeyRevoked, old)
                .with("reason", "rotated")
                .with("replaced_by", key.key_id.as_str()),
        )
        .await?;
    }
    tx.audit(
        &(by.audit)(Action::ApiKeyCreated, &key.key_id)
            .with("scopes", scopes)
            .with("role", role.as_str()),
    )
    .await?;
    tx.commit().await?;
    if replaces.is_some() {
        state.keys.invalidate();
    }
    Ok(CreatedKey {
        key: key.row.into(),
        api_key: secrecy::ExposeSecret::expose_secret(&key.token).to_string(),
    })
}

/// Revoke an API key at once (a key may revoke itself).
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api keys",
    params(("id" = String, Path, description = "key id, `key_…`")),
    responses((status = 204), (status = 401, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    PathParam(id): PathParam<String>,
) -> AppResult<StatusCode> {
    caller.require(scopes::KEYS_MANAGE)?;
    caller.require_role(Permission::ManageKeys)?;
    let audit = |action, id: &str| key_audit(&caller, ip, action, id);
    revoke(&state, &caller.issuer(&audit), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes the key `id` of the issuer's tenant at once, audited.
pub(super) async fn revoke(state: &AppState, by: &Issuer<'_>, id: &str) -> AppResult<()> {
    let mut tx = state.store.begin().await?;
    tx.revoke_api_key(by.tenant, id).await?;
    tx.audit(&(by.audit)(Action::ApiKeyRevoked, id).with("reason", "revoked"))
        .await?;
    tx.commit().await?;
    state.keys.invalidate();
    Ok(())
}

/// Replace a key by a new one with the same name, scopes and lifetime; the old one is revoked.
#[utoipa::path(post, path = "/v1/api-keys/{id}/rotate", tag = "api keys",
    params(("id" = String, Path, description = "key id, `key_…`")),
    responses((status = 201, body = CreatedKey), (status = 401, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn rotate_key(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    PathParam(id): PathParam<String>,
) -> AppResult<(StatusCode, Json<CreatedKey>)> {
    caller.require(scopes::KEYS_MANAGE)?;
    caller.require_role(Permission::ManageKeys)?;
    let audit = |action, id: &str| key_audit(&caller, ip, action, id);
    let created = rotate(&state, &caller.issuer(&audit), &id).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Replaces the live key `id` by a new one with its name, scopes, lifetime and role.
pub(super) async fn rotate(state: &AppState, by: &Issuer<'_>, id: &str) -> AppResult<CreatedKey> {
    let old = state
        .store
        .api_key(by.tenant, id)
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(|| ApiError::not_found("api key"))?;
    let old_scopes: Vec<&str> = old
        .scopes
        .split_whitespace()
        .filter(|s| GRANTABLE.contains(s))
        .collect();
    if old_scopes.is_empty() {
        return Err(ApiError::bad_request(
            "not_rotatable",
            "this key has no scope a tenant key may carry",
        ));
    }
    let ttl = old.expires_at.map(|e| ((e - old.created_at) / 1000).max(1));
    let role: Role = old.role.parse().unwrap_or(Role::Owner);
    if role > by.role {
        return Err(ApiError::forbidden_role(format!(
            "this key acts as {role}; you act as {} and cannot rotate it (you would see a secret above your role)",
            by.role
        )));
    }
    issue(
        state,
        by,
        (&old.name, &old_scopes, ttl, role),
        Some(&old.id),
    )
    .await
}

// ---------------------------------------------------------------- documents

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDocumentRequest {
    /// 1–300 characters after trimming.
    #[schema(min_length = 1, max_length = 300, pattern = r"\S")]
    pub title: String,
    /// The text, up to 1 MiB of UTF-8, not only white space.
    #[schema(min_length = 1, max_length = 1048576, pattern = r"\S")]
    pub content: String,
    /// Any JSON object, up to 16 KiB.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// Title of a `text/plain` or `text/markdown` upload (default: its first heading or line).
    pub title: Option<String>,
}

/// Add a document: JSON `{title, content, metadata}`, or a `text/plain` / `text/markdown` body
/// (title from `?title=`). It is chunked, embedded and searchable when this answers.
#[utoipa::path(post, path = "/v1/documents", tag = "documents", params(UploadParams),
    request_body(content = CreateDocumentRequest, description = "JSON, or the raw text as text/plain or text/markdown"),
    responses((status = 201, body = Document), (status = 400, body = super::error::ErrorBody), (status = 402, body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody), (status = 415, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_document(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(params): QueryParams<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<(StatusCode, Json<Document>)> {
    caller.require(scopes::DOCUMENTS_WRITE)?;
    let kind = match super::extract::media_type(&headers).as_str() {
        m if super::extract::is_json(m) => "application/json",
        "text/plain" => "text/plain",
        "text/markdown" => "text/markdown",
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON {title, content, metadata} as application/json, or the text itself as text/plain or text/markdown",
            ));
        }
    };
    // JSON escaping can double the size of the same content: allow for it, check content after.
    let limit = if kind == "application/json" {
        2 * MAX_DOCUMENT_BYTES + 64 * 1024
    } else {
        MAX_DOCUMENT_BYTES
    };
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    let doc = if kind == "application/json" {
        let req: CreateDocumentRequest = parse_json(&bytes)?;
        NewDocument {
            title: req.title,
            content: req.content,
            content_type: "application/json".into(),
            metadata: req.metadata.unwrap_or_default(),
        }
    } else {
        let content = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::bad_request("invalid_encoding", "the text must be UTF-8"))?;
        let title = params.title.unwrap_or_else(|| title_from_text(&content));
        NewDocument {
            title,
            content,
            content_type: kind.into(),
            metadata: Map::new(),
        }
    };
    let doc = validate_document(doc)?;
    let stored = documents::ingest(&state, caller.tenant(), caller.plan, doc).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "document_too_large",
        format!(
            "a document may hold at most {} MiB of text",
            MAX_DOCUMENT_BYTES / (1024 * 1024)
        ),
    )
}

/// The first Markdown heading or non-empty line, shortened.
pub(super) fn title_from_text(text: &str) -> String {
    let line = text
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty())
        .unwrap_or("Untitled");
    let mut title: String = line.chars().take(120).collect();
    if line.chars().nth(120).is_some() {
        title.push('…');
    }
    title
}

pub(super) fn validate_document(mut doc: NewDocument) -> Result<NewDocument, ApiError> {
    doc.title = doc.title.trim().to_string();
    if doc.title.is_empty() || doc.title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::bad_request(
            "invalid_title",
            format!("title must be 1–{MAX_TITLE_CHARS} characters"),
        )
        .with_field("title"));
    }
    if doc.content.trim().is_empty() {
        return Err(
            ApiError::bad_request("empty_content", "content is empty").with_field("content")
        );
    }
    if doc.content.len() > MAX_DOCUMENT_BYTES {
        return Err(too_large().with_field("content"));
    }
    if Value::Object(doc.metadata.clone()).to_string().len() > MAX_METADATA_BYTES {
        return Err(ApiError::bad_request(
            "metadata_too_large",
            format!(
                "metadata may take at most {} KiB as JSON",
                MAX_METADATA_BYTES / 1024
            ),
        )
        .with_field("metadata"));
    }
    Ok(doc)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DocumentList {
    pub documents: Vec<Document>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// List the workspace's documents, newest first.
#[utoipa::path(get, path = "/v1/documents", tag = "documents", params(ListParams),
    responses((status = 200, body = DocumentList), (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_documents(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(params): QueryParams<ListParams>,
) -> AppResult<Json<DocumentList>> {
    require_any(&caller)?;
    let limit = page_limit(params.limit)?;
    let before = parse_cursor(params.cursor.as_deref())?;
    let docs = state
        .store
        .list_documents(caller.tenant(), limit + 1, before)
        .await?;
    let (documents, next_cursor) = page(docs, limit, |d| (d.created_at, d.id.as_str()));
    Ok(Json(DocumentList {
        documents,
        next_cursor,
    }))
}

/// The page size asked for: 1–100, default 20.
fn page_limit(limit: Option<i64>) -> AppResult<i64> {
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(
            ApiError::bad_request("invalid_limit", "limit must be 1–100").with_field("limit"),
        );
    }
    Ok(limit)
}

/// A `next_cursor` this API returned: `{created_at}_{id}` of the last item of the page.
fn parse_cursor(cursor: Option<&str>) -> AppResult<Option<(i64, String)>> {
    match cursor {
        None | Some("") => Ok(None),
        Some(c) => c
            .split_once('_')
            .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request("invalid_cursor", "cursor is not one this API returned")
                    .with_field("cursor")
            }),
    }
}

/// The first `limit` of `rows` (fetched as `limit + 1`) and the cursor of the page after them.
fn page<T>(
    mut rows: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> (i64, &str),
) -> (Vec<T>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| {
            rows.last().map(|r| {
                let (at, id) = key(r);
                format!("{at}_{id}")
            })
        })
        .flatten();
    (rows, next)
}

/// Reading needs either `query` or `documents:write`.
fn require_any(caller: &Caller) -> Result<(), ApiError> {
    Ok(caller
        .require(scopes::QUERY)
        .or_else(|_| caller.require(scopes::DOCUMENTS_WRITE))?)
}

/// One document with its content.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "document id")),
    responses((status = 200, body = DocumentWithContent), (status = 401, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_document(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> AppResult<Json<DocumentWithContent>> {
    require_any(&caller)?;
    state
        .store
        .document(caller.tenant(), &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("document"))
}

/// Delete a document and its vectors.
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "document id")),
    responses((status = 204), (status = 401, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_document(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> AppResult<StatusCode> {
    caller.require(scopes::DOCUMENTS_WRITE)?;
    documents::delete(&state, caller.tenant(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- query

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// What to look for, 1–2000 characters after trimming.
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub query: String,
    /// How many chunks to return, 1–50 (default 5).
    #[schema(minimum = 1, maximum = 50)]
    pub top_k: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct QueryResponse {
    pub query: String,
    pub top_k: usize,
    pub results: Vec<QueryHit>,
    pub took_ms: f64,
}

/// Search the workspace: the chunks most similar to the query, best first.
#[utoipa::path(post, path = "/v1/query", tag = "query", request_body = QueryRequest,
    responses((status = 200, body = QueryResponse), (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 429, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn query(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<QueryRequest>,
) -> AppResult<Json<QueryResponse>> {
    let started = Instant::now();
    caller.require(scopes::QUERY)?;
    let text = query_text(&req.query)?;
    let top_k = req.top_k.unwrap_or(5);
    if !(1..=MAX_TOP_K).contains(&top_k) {
        return Err(
            ApiError::bad_request("invalid_top_k", format!("top_k must be 1–{MAX_TOP_K}"))
                .with_field("top_k"),
        );
    }
    let results = documents::query(&state, caller.tenant(), caller.plan, text, top_k).await?;
    Ok(Json(QueryResponse {
        query: text.to_string(),
        top_k,
        results,
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    }))
}

/// A query's text, trimmed: 1–2000 characters.
pub(super) fn query_text(raw: &str) -> AppResult<&str> {
    let text = raw.trim();
    if text.is_empty() || text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("query must be 1–{MAX_QUERY_CHARS} characters"),
        )
        .with_field("query"));
    }
    Ok(text)
}

// ---------------------------------------------------------------- usage

#[derive(Serialize, ToSchema)]
pub struct Meter {
    pub used: i64,
    /// None = unlimited.
    pub limit: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct UsageResponse {
    pub plan: Plan,
    /// Metering month, UTC, e.g. `2026-11`.
    pub period: String,
    pub documents: Meter,
    /// Bytes of document content stored.
    pub bytes: Meter,
    /// Chunks (vectors) stored.
    pub chunks: Meter,
    pub queries: Meter,
    pub users: Meter,
    pub price_monthly: u32,
}

/// The workspace's usage against its plan's limits (scope `usage:read`, or `keys:manage`).
#[utoipa::path(get, path = "/v1/usage", tag = "usage",
    responses((status = 200, body = UsageResponse), (status = 401, body = super::error::ErrorBody), (status = 403, description = "The key has neither usage:read nor keys:manage", body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
) -> AppResult<Json<UsageResponse>> {
    // Keys from before `usage:read` existed carry `keys:manage`, which sees as much.
    caller
        .require(scopes::USAGE_READ)
        .or_else(|_| caller.require(scopes::KEYS_MANAGE))?;
    let limits = state.settings.plans.limits(caller.plan);
    let tenant = caller.tenant();
    let period = current_period();
    let stored = state.store.footprint(tenant).await?;
    Ok(Json(UsageResponse {
        plan: caller.plan,
        documents: Meter {
            used: stored.documents,
            limit: limits.max_documents,
        },
        bytes: Meter {
            used: stored.bytes,
            limit: limits.max_bytes,
        },
        chunks: Meter {
            used: stored.chunks,
            limit: limits.max_chunks,
        },
        queries: Meter {
            used: state.usage.queries(&state.store, tenant, &period).await?,
            limit: limits.max_queries_per_month,
        },
        // The team's members (pending invitations hold seats too; /v1/members counts them).
        users: Meter {
            used: state.store.members(tenant).await?.len() as i64,
            limit: limits.max_users,
        },
        price_monthly: limits.price_monthly,
        period,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_first_heading_or_line() {
        assert_eq!(
            title_from_text("\n\n# Refund policy\n\nText"),
            "Refund policy"
        );
        assert_eq!(
            title_from_text("  plain first line\nmore"),
            "plain first line"
        );
        assert_eq!(title_from_text("   \n"), "Untitled");
        let long = "x".repeat(200);
        assert_eq!(title_from_text(&long).chars().count(), 121);
    }
}
