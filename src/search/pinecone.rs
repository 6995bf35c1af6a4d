//! Pinecone data-plane client (API version 2025-10).
//!
//! Exact requests: `tests/fixtures/contracts/pinecone_rest_contract.json`. Every call is a `POST` to
//! `https://{index_host}/...` with `Api-Key`, `X-Pinecone-Api-Version`, and JSON
//! `Content-Type`/`Accept` headers. Transport errors, 429 and 5xx are retried (see
//! [`crate::outbound`]); they end as [`VectorError::Unavailable`]. Any other non-2xx answer is
//! [`VectorError::Rejected`] with Pinecone's message, at once.
//!
//! Upserts are split into requests of at most 1000 vectors and about 2 MB (Pinecone's
//! documented per-request limits), deletes by id into requests of at most 1000 ids. Batches
//! are sent one after the other; when one fails, the earlier ones stay written (upserts and
//! deletes are idempotent, so the caller may simply retry the whole call).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use url::Url;

use super::{Match, VectorError, VectorRecord};
use crate::outbound::{self, OutboundError, RetryPolicy};

/// The API version every request pins (`X-Pinecone-Api-Version`).
pub const PINECONE_API_VERSION: &str = "2025-10";
/// Most vectors in one upsert request.
pub const MAX_VECTORS_PER_UPSERT: usize = 1000;
/// Largest upsert request body (Pinecone allows 2 MB; we stay a little under).
pub const MAX_UPSERT_BYTES: usize = 2_000_000;
/// Most ids in one delete request.
pub const MAX_IDS_PER_DELETE: usize = 1000;

/// Per-attempt timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_TOP_K: usize = 10_000;
const MAX_ID_LEN: usize = 512;
const MAX_VALUES_LEN: usize = 20_000;

/// Client for one Pinecone index's data plane.
#[derive(Clone)]
pub struct PineconeClient {
    http: reqwest::Client,
    /// `https://{index_host}` (or the scheme given), with any path prefix.
    base: Url,
    /// The `Api-Key` header, checked and marked sensitive once.
    api_key: HeaderValue,
    retry: RetryPolicy,
}

impl fmt::Debug for PineconeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PineconeClient")
            .field("base", &self.base.as_str())
            .field("api_key", &"[redacted]")
            .field("retry", &self.retry)
            .finish()
    }
}

/// What `describe_index_stats` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// The index's dimension (absent for sparse indexes).
    pub dimension: Option<usize>,
    pub total_vector_count: u64,
    /// Vector count per namespace.
    pub namespaces: HashMap<String, u64>,
}

impl PineconeClient {
    /// A client for `index_host`, the `host` of the index as Pinecone's console or
    /// `describe_index` shows it (`tenants-c01b5b5.svc.aws-us-east-1.pinecone.io`). A host
    /// without a scheme gets `https://`; `http://` is accepted for local emulators and tests.
    pub fn new(index_host: &str, api_key: SecretString) -> Result<Self, String> {
        let base = Self::check(index_host, &api_key)?;
        let mut api_key = HeaderValue::from_str(api_key.expose_secret())
            .map_err(|_| "the Pinecone API key is not a valid header value".to_string())?;
        api_key.set_sensitive(true);
        let http = outbound::http_client(REQUEST_TIMEOUT)?;
        Ok(Self {
            http,
            base,
            api_key,
            retry: RetryPolicy::default(),
        })
    }

    /// Checks the settings without building a client (start-up validation); returns the
    /// index's base URL.
    pub fn check(index_host: &str, api_key: &SecretString) -> Result<Url, String> {
        let base = parse_index_host(index_host)?;
        let key = api_key.expose_secret();
        if key.trim().is_empty() || HeaderValue::from_str(key).is_err() {
            return Err(
                "the Pinecone API key is empty or contains characters not allowed in an HTTP header"
                    .into(),
            );
        }
        Ok(base)
    }

    /// Replaces the retry policy (tests use a ~1 ms base).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Inserts or replaces `records` in `namespace`; returns the sum of Pinecone's
    /// `upsertedCount` over the batches.
    #[tracing::instrument(skip_all, fields(namespace = %namespace, records = records.len()))]
    pub async fn upsert(
        &self,
        namespace: &str,
        records: &[VectorRecord],
    ) -> Result<usize, VectorError> {
        check_namespace(namespace)?;
        validate_records(records)?;
        let mut upserted = 0;
        for body in upsert_bodies(namespace, records)? {
            let answer: UpsertResponse = self
                .post("Pinecone upsert", &["vectors", "upsert"], body)
                .await?;
            upserted += usize::try_from(answer.upserted_count).unwrap_or(usize::MAX);
        }
        Ok(upserted)
    }

    /// The `top_k` vectors of `namespace` nearest to `vector`, best first, with metadata and
    /// without values. `filter` is a Pinecone metadata filter object.
    #[tracing::instrument(skip_all, fields(namespace = %namespace, top_k = top_k))]
    pub async fn query(
        &self,
        namespace: &str,
        vector: &[f32],
        top_k: usize,
        filter: Option<Value>,
    ) -> Result<Vec<Match>, VectorError> {
        check_namespace(namespace)?;
        check_values("query vector", vector)?;
        if !(1..=MAX_TOP_K).contains(&top_k) {
            return Err(local_rejection(format!(
                "topK must be between 1 and {MAX_TOP_K}, not {top_k}"
            )));
        }
        let filter = match filter {
            None | Some(Value::Null) => None,
            Some(f @ Value::Object(_)) => Some(f),
            Some(_) => return Err(local_rejection("a query filter must be a JSON object")),
        };
        let body = to_json(&QueryBody {
            namespace,
            vector,
            top_k,
            include_metadata: true,
            include_values: false,
            filter: filter.as_ref(),
        })?;
        let answer: QueryResponse = self.post("Pinecone query", &["query"], body).await?;
        Ok(answer
            .matches
            .into_iter()
            .map(|m| Match {
                id: m.id,
                score: m.score.unwrap_or(0.0),
                metadata: m.metadata.unwrap_or(Value::Null),
            })
            .collect())
    }

    /// Deletes the vectors with these ids from `namespace`, 1000 ids per request. Unknown ids
    /// are ignored by Pinecone; no ids means no request. Serverless Pinecone answers 404 for a
    /// namespace with nothing left in it: the vectors are gone either way, so that is success.
    #[tracing::instrument(skip_all, fields(namespace = %namespace, ids = ids.len()))]
    pub async fn delete_ids(&self, namespace: &str, ids: &[String]) -> Result<(), VectorError> {
        check_namespace(namespace)?;
        for chunk in ids.chunks(MAX_IDS_PER_DELETE) {
            let body = to_json(&DeleteIdsBody {
                ids: chunk,
                namespace,
            })?;
            let answer: Result<Value, _> = self
                .post("Pinecone delete", &["vectors", "delete"], body)
                .await;
            match answer {
                Ok(_) | Err(VectorError::Rejected { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes every vector of `namespace` (on serverless indexes, the namespace too).
    #[tracing::instrument(skip_all, fields(namespace = %namespace))]
    pub async fn delete_all(&self, namespace: &str) -> Result<(), VectorError> {
        check_namespace(namespace)?;
        let body = to_json(&DeleteAllBody {
            delete_all: true,
            namespace,
        })?;
        let _: Value = self
            .post("Pinecone delete all", &["vectors", "delete"], body)
            .await?;
        Ok(())
    }

    /// The index's dimension and vector counts (whole index and per namespace).
    #[tracing::instrument(skip_all)]
    pub async fn describe_index_stats(&self) -> Result<IndexStats, VectorError> {
        let answer: StatsResponse = self
            .post(
                "Pinecone describe_index_stats",
                &["describe_index_stats"],
                b"{}".to_vec(),
            )
            .await?;
        Ok(IndexStats {
            dimension: answer
                .dimension
                .map(|d| usize::try_from(d).unwrap_or(usize::MAX)),
            total_vector_count: answer.total_vector_count,
            namespaces: answer
                .namespaces
                .into_iter()
                .map(|(name, summary)| (name, summary.vector_count))
                .collect(),
        })
    }

    /// `base` with `segments` appended, keeping any path prefix.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `parse_index_host` only accepts http(s) URLs, which can always take segments.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// POSTs `body` (JSON) with retries and decodes the 2xx answer.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        segments: &[&str],
        body: Vec<u8>,
    ) -> Result<T, VectorError> {
        let url = self.endpoint(segments);
        // Shared, so each attempt clones a reference, not up to 2 MB of upsert.
        let body = axum::body::Bytes::from(body);
        let outcome = outbound::send_with_retries(&self.retry, what, || {
            self.http
                .post(url.clone())
                .header("Api-Key", self.api_key.clone())
                .header("X-Pinecone-Api-Version", PINECONE_API_VERSION)
                .header(CONTENT_TYPE, "application/json")
                .header(ACCEPT, "application/json")
                .body(body.clone())
        })
        .await;
        match outcome {
            Ok((_, answer)) => serde_json::from_slice(&answer).map_err(|e| {
                VectorError::Unavailable(format!("unexpected answer from {what}: {e}"))
            }),
            Err(OutboundError::Status { status, body }) if outbound::is_retryable(status) => {
                Err(VectorError::Unavailable(format!(
                    "{what} answered {status} on each of {} attempts: {}",
                    self.retry.max_attempts.max(1),
                    outbound::provider_message(status, &body)
                )))
            }
            Err(OutboundError::Status { status, body }) => Err(VectorError::Rejected {
                status: status.as_u16(),
                message: outbound::provider_message(status, &body),
            }),
            Err(OutboundError::Transport(e)) => Err(VectorError::Unavailable(format!(
                "could not reach Pinecone ({what}): {e}"
            ))),
        }
    }
}

/// `https://{host}` from a bare host, or the URL given when it has an http(s) scheme.
fn parse_index_host(index_host: &str) -> Result<Url, String> {
    let host = index_host.trim();
    if host.is_empty() {
        return Err(
            "the Pinecone index host is empty; use the `host` shown for the index in \
             the Pinecone console, e.g. tenants-c01b5b5.svc.aws-us-east-1.pinecone.io"
                .into(),
        );
    }
    let with_scheme = if host.contains("://") {
        host.to_owned()
    } else {
        format!("https://{host}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| format!("invalid Pinecone index host {host:?}: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!(
            "invalid Pinecone index host {host:?}: the scheme must be https (or http for a local emulator)"
        ));
    }
    if url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "invalid Pinecone index host {host:?}: expected a host name, optionally with a \
             scheme and port, and no credentials, query or fragment"
        ));
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        tracing::warn!(
            host = url.host_str().unwrap_or_default(),
            "the Pinecone index host uses plain http: the API key is sent unencrypted"
        );
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A tenant's data lives in its own namespace; an empty name would address the default one.
fn check_namespace(namespace: &str) -> Result<(), VectorError> {
    if namespace.is_empty() {
        return Err(local_rejection("the namespace must not be empty"));
    }
    Ok(())
}

/// Pinecone's limits on records, checked before anything is sent.
fn validate_records(records: &[VectorRecord]) -> Result<(), VectorError> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    for r in records {
        if r.id.is_empty() || r.id.len() > MAX_ID_LEN {
            return Err(local_rejection(format!(
                "vector ids must be 1 to {MAX_ID_LEN} bytes long ({} bytes given)",
                r.id.len()
            )));
        }
        check_values("vector values", &r.values)?;
        if r.values.len() != first.values.len() {
            return Err(VectorError::Dimension {
                got: r.values.len(),
                want: first.values.len(),
            });
        }
        if !matches!(r.metadata, Value::Null | Value::Object(_)) {
            return Err(local_rejection(format!(
                "metadata of vector {} must be a JSON object",
                r.id
            )));
        }
    }
    Ok(())
}

fn check_values(what: &str, values: &[f32]) -> Result<(), VectorError> {
    if values.is_empty() || values.len() > MAX_VALUES_LEN {
        return Err(local_rejection(format!(
            "{what} must have 1 to {MAX_VALUES_LEN} dimensions ({} given)",
            values.len()
        )));
    }
    if !values.iter().all(|v| v.is_finite()) {
        return Err(local_rejection(format!(
            "{what} must be finite numbers (NaN or infinity given)"
        )));
    }
    Ok(())
}

/// A 400 decided before any request was sent.
fn local_rejection(message: impl Into<String>) -> VectorError {
    VectorError::Rejected {
        status: 400,
        message: format!("{} (not sent to Pinecone)", message.into()),
    }
}

fn to_json(body: &impl Serialize) -> Result<Vec<u8>, VectorError> {
    serde_json::to_vec(body).map_err(|e| local_rejection(format!("unserializable request: {e}")))
}

/// Upsert bodies `{"vectors":[...],"namespace":...}`, each with at most
/// [`MAX_VECTORS_PER_UPSERT`] vectors and, unless one vector alone is larger, at most
/// [`MAX_UPSERT_BYTES`] bytes.
fn upsert_bodies(namespace: &str, records: &[VectorRecord]) -> Result<Vec<Vec<u8>>, VectorError> {
    let tail = {
        let mut t = b"],\"namespace\":".to_vec();
        t.extend(to_json(&namespace)?);
        t.push(b'}');
        t
    };
    const HEAD: &[u8] = b"{\"vectors\":[";
    let mut bodies = Vec::new();
    let mut current: Vec<u8> = HEAD.to_vec();
    let mut in_current = 0;
    for r in records {
        let vector = to_json(&WireVector {
            id: &r.id,
            values: &r.values,
            metadata: (!r.metadata.is_null()).then_some(&r.metadata),
        })?;
        let full = in_current == MAX_VECTORS_PER_UPSERT
            || (in_current > 0 && current.len() + 1 + vector.len() + tail.len() > MAX_UPSERT_BYTES);
        if full {
            current.extend_from_slice(&tail);
            bodies.push(std::mem::replace(&mut current, HEAD.to_vec()));
            in_current = 0;
        }
        if in_current > 0 {
            current.push(b',');
        }
        current.extend(vector);
        in_current += 1;
    }
    if in_current > 0 {
        current.extend_from_slice(&tail);
        bodies.push(current);
    }
    Ok(bodies)
}

#[derive(Serialize)]
struct WireVector<'a> {
    id: &'a str,
    values: &'a [f32],
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryBody<'a> {
    namespace: &'a str,
    vector: &'a [f32],
    top_k: usize,
    include_metadata: bool,
    include_values: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<&'a Value>,
}

#[derive(Serialize)]
struct DeleteIdsBody<'a> {
    ids: &'a [String],
    namespace: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeleteAllBody<'a> {
    delete_all: bool,
    namespace: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpsertResponse {
    #[serde(default, deserialize_with = "lenient_u64")]
    upserted_count: u64,
}

#[derive(Deserialize)]
struct QueryResponse {
    #[serde(default)]
    matches: Vec<WireMatch>,
}

#[derive(Deserialize)]
struct WireMatch {
    id: String,
    #[serde(default)]
    score: Option<f32>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatsResponse {
    #[serde(default)]
    namespaces: HashMap<String, NamespaceSummary>,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    dimension: Option<u64>,
    #[serde(
        default,
        alias = "total_vector_count",
        deserialize_with = "lenient_u64"
    )]
    total_vector_count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamespaceSummary {
    #[serde(default, alias = "vector_count", deserialize_with = "lenient_u64")]
    vector_count: u64,
}

/// An int64 as proto3 JSON may write it: a number, a string of digits, or null/absent (0).
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(lenient_opt_u64(d)?.unwrap_or(0))
}

fn lenient_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a count, got {n}"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("expected a count, got {s:?}"))),
        other => Err(D::Error::custom(format!("expected a count, got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wiremock::matchers::{body_json, method, path};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    const CONTRACT: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/contracts/pinecone_rest_contract.json"
    ));
    const KEY: &str = "pcsk_test_0123456789abcdef";

    fn contract() -> Value {
        serde_json::from_str(CONTRACT).expect("contract is valid JSON")
    }

    /// The data-plane operation `name` of the contract.
    fn op(name: &str) -> Value {
        contract()["data_plane"]
            .as_array()
            .expect("data_plane is a list")
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("contract has no data-plane operation {name}"))
            .clone()
    }

    fn contract_namespace() -> String {
        op("upsert")["body"]["namespace"]
            .as_str()
            .expect("namespace")
            .to_owned()
    }

    /// Matches when every header of the contract operation is present exactly once with the
    /// contract's value (`<PINECONE_API_KEY>` standing for [`KEY`]) and no `Authorization`
    /// header is sent.
    struct ContractHeaders(Vec<(String, String)>);

    impl ContractHeaders {
        fn of(op: &Value) -> Self {
            let headers = op["headers"].as_object().expect("operation has headers");
            assert!(headers.len() >= 4, "contract lists the four headers");
            Self(
                headers
                    .iter()
                    .map(|(name, value)| {
                        let value = value.as_str().expect("header value is a string");
                        (name.clone(), value.replace("<PINECONE_API_KEY>", KEY))
                    })
                    .collect(),
            )
        }
    }

    impl wiremock::Match for ContractHeaders {
        fn matches(&self, request: &Request) -> bool {
            request.headers.get("authorization").is_none()
                && self.0.iter().all(|(name, want)| {
                    let got: Vec<_> = request.headers.get_all(name.as_str()).iter().collect();
                    got.len() == 1 && got[0].as_bytes() == want.as_bytes()
                })
        }
    }

    /// A mock for the contract operation `name`: its method, path, headers and, when given,
    /// exact JSON body.
    fn contract_mock(name: &str, body: Option<Value>) -> wiremock::MockBuilder {
        let op = op(name);
        let builder = Mock::given(method(op["method"].as_str().expect("method")))
            .and(path(op["path"].as_str().expect("path")))
            .and(ContractHeaders::of(&op));
        match body {
            Some(body) => builder.and(body_json(body)),
            None => builder,
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(1),
        }
    }

    /// A fake index answering the contract operation `name` (with `body`, when given) with
    /// `answer`, expected `calls` times, and a client for it.
    async fn serve(
        name: &str,
        body: Option<Value>,
        answer: impl wiremock::Respond + 'static,
        calls: u64,
    ) -> (MockServer, PineconeClient) {
        let server = MockServer::start().await;
        contract_mock(name, body)
            .respond_with(answer)
            .expect(calls)
            .mount(&server)
            .await;
        let client = client_for(&server);
        (server, client)
    }

    fn client_for(server: &MockServer) -> PineconeClient {
        PineconeClient::new(&server.uri(), SecretString::from(KEY))
            .expect("client")
            .with_retry(fast())
    }

    fn floats(v: &Value) -> Vec<f32> {
        v.as_array()
            .expect("array of numbers")
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect()
    }

    fn record(i: usize, dims: usize) -> VectorRecord {
        VectorRecord {
            id: format!("doc-{i}#chunk-0"),
            values: vec![0.25; dims],
            metadata: json!({"doc_id": format!("doc-{i}")}),
        }
    }

    /// Answers an upsert with `upsertedCount` = the number of vectors in the request.
    struct CountUpserted;

    impl Respond for CountUpserted {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let body: Value = serde_json::from_slice(&request.body).expect("JSON body");
            let n = body["vectors"].as_array().map_or(0, Vec::len);
            ResponseTemplate::new(200).set_body_json(json!({ "upsertedCount": n }))
        }
    }

    async fn bodies(server: &MockServer) -> Vec<Value> {
        server
            .received_requests()
            .await
            .expect("recording is on")
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("JSON body"))
            .collect()
    }

    #[tokio::test]
    async fn upsert_sends_the_contract_request() {
        let op = op("upsert");
        let (_server, client) = serve(
            "upsert",
            Some(op["body"].clone()),
            ResponseTemplate::new(200).set_body_json(&op["response"]),
            1,
        )
        .await;
        let v = &op["body"]["vectors"][0];
        let records = [VectorRecord {
            id: v["id"].as_str().expect("id").to_owned(),
            values: floats(&v["values"]),
            metadata: v["metadata"].clone(),
        }];

        let n = client
            .upsert(&contract_namespace(), &records)
            .await
            .expect("upsert succeeds");
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn upsert_omits_null_metadata() {
        let (_server, client) = serve(
            "upsert",
            Some(json!({
                "vectors": [{"id": "a", "values": [1.0, 0.5]}],
                "namespace": "tenant_x"
            })),
            ResponseTemplate::new(200).set_body_json(json!({"upsertedCount": 1})),
            1,
        )
        .await;
        let records = [VectorRecord {
            id: "a".into(),
            values: vec![1.0, 0.5],
            metadata: Value::Null,
        }];
        let n = client
            .upsert("tenant_x", &records)
            .await
            .expect("upsert succeeds");
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn query_sends_the_contract_request_and_parses_the_example() {
        let op = op("query");
        let (_server, client) = serve(
            "query",
            Some(op["body"].clone()),
            ResponseTemplate::new(200).set_body_json(&op["response_example"]),
            1,
        )
        .await;
        let body = &op["body"];

        let matches = client
            .query(
                body["namespace"].as_str().expect("namespace"),
                &floats(&body["vector"]),
                usize::try_from(body["topK"].as_u64().expect("topK")).expect("small"),
                Some(body["filter"].clone()),
            )
            .await
            .expect("query succeeds");

        assert_eq!(matches.len(), 1);
        assert_eq!(matches[0].id, "doc-1#chunk-0");
        assert_eq!(matches[0].score, 0.99_f32);
        assert_eq!(
            matches[0].metadata,
            op["response_example"]["matches"][0]["metadata"]
        );
    }

    #[tokio::test]
    async fn query_without_filter_omits_it() {
        let server = MockServer::start().await;
        let op = op("query");
        let mut expected = op["body"].clone();
        expected
            .as_object_mut()
            .expect("object")
            .remove("filter")
            .expect("contract body has a filter");
        contract_mock("query", Some(expected))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "matches": [
                    {"id": "b", "score": 0.5},
                    {"id": "c", "score": 0.25, "metadata": {"source": "faq"}}
                ],
                "namespace": "tenant_01HZX3K9Q8W7"
            })))
            .expect(1)
            .mount(&server)
            .await;

        let matches = client_for(&server)
            .query(
                op["body"]["namespace"].as_str().expect("namespace"),
                &floats(&op["body"]["vector"]),
                3,
                None,
            )
            .await
            .expect("query succeeds");
        let ids: Vec<_> = matches.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"], "Pinecone's order is kept");
        assert_eq!(matches[0].metadata, Value::Null);
        assert_eq!(matches[1].metadata, json!({"source": "faq"}));
    }

    #[tokio::test]
    async fn delete_by_ids_sends_the_contract_request() {
        let op = op("delete_by_ids");
        let (_server, client) = serve(
            "delete_by_ids",
            Some(op["body"].clone()),
            ResponseTemplate::new(200).set_body_json(&op["response"]),
            1,
        )
        .await;
        let ids: Vec<String> = op["body"]["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|i| i.as_str().expect("id").to_owned())
            .collect();
        client
            .delete_ids(op["body"]["namespace"].as_str().expect("namespace"), &ids)
            .await
            .expect("delete succeeds");
    }

    #[tokio::test]
    async fn delete_all_sends_the_contract_request() {
        let op = op("delete_all_in_namespace");
        let (_server, client) = serve(
            "delete_all_in_namespace",
            Some(op["body"].clone()),
            ResponseTemplate::new(200).set_body_json(&op["response"]),
            1,
        )
        .await;
        client
            .delete_all(op["body"]["namespace"].as_str().expect("namespace"))
            .await
            .expect("delete all succeeds");
    }

    #[tokio::test]
    async fn describe_index_stats_sends_the_contract_request_and_parses_the_example() {
        let op = op("describe_index_stats");
        let (_server, client) = serve(
            "describe_index_stats",
            Some(op["body"].clone()),
            ResponseTemplate::new(200).set_body_json(&op["response_example"]),
            1,
        )
        .await;
        let stats = client.describe_index_stats().await.expect("stats");
        assert_eq!(
            stats,
            IndexStats {
                dimension: Some(1536),
                total_vector_count: 1,
                namespaces: HashMap::from([("tenant_01HZX3K9Q8W7".to_owned(), 1)]),
            }
        );
    }

    #[tokio::test]
    async fn describe_index_stats_reads_int64_strings_and_missing_fields() {
        let (_server, client) = serve(
            "describe_index_stats",
            None,
            ResponseTemplate::new(200).set_body_json(json!({
                "namespaces": {"a": {"vectorCount": "12"}, "b": {}},
                "totalVectorCount": "12"
            })),
            1,
        )
        .await;
        let stats = client.describe_index_stats().await.expect("stats");
        assert_eq!(stats.dimension, None);
        assert_eq!(stats.total_vector_count, 12);
        assert_eq!(
            stats.namespaces,
            HashMap::from([("a".to_owned(), 12), ("b".to_owned(), 0)])
        );
    }

    #[tokio::test]
    async fn upsert_batches_1500_records_into_two_requests() {
        let (server, client) = serve("upsert", None, CountUpserted, 2).await;
        let records: Vec<_> = (0..1500).map(|i| record(i, 4)).collect();

        let n = client
            .upsert("tenant_x", &records)
            .await
            .expect("upsert succeeds");
        assert_eq!(n, 1500);

        let bodies = bodies(&server).await;
        let sizes: Vec<_> = bodies
            .iter()
            .map(|b| b["vectors"].as_array().expect("vectors").len())
            .collect();
        assert_eq!(sizes, [1000, 500]);
        let ids: Vec<_> = bodies
            .iter()
            .flat_map(|b| b["vectors"].as_array().expect("vectors").clone())
            .map(|v| v["id"].as_str().expect("id").to_owned())
            .collect();
        let want: Vec<_> = records.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, want, "every record once, in order");
        for b in &bodies {
            assert_eq!(b["namespace"], "tenant_x");
            assert_eq!(b.as_object().expect("object").len(), 2);
        }
    }

    #[tokio::test]
    async fn upsert_keeps_each_request_under_2_mb() {
        let server = MockServer::start().await;
        contract_mock("upsert", None)
            .respond_with(CountUpserted)
            .mount(&server)
            .await;
        // ~3072 dims of "0.25," each: about 15 KB per record, ~4.6 MB in all.
        let records: Vec<_> = (0..300).map(|i| record(i, 3072)).collect();

        let n = client_for(&server)
            .upsert("tenant_x", &records)
            .await
            .expect("upsert succeeds");
        assert_eq!(n, 300);

        let requests = server.received_requests().await.expect("recording is on");
        assert!(requests.len() >= 3, "{} requests", requests.len());
        for r in &requests {
            assert!(r.body.len() <= MAX_UPSERT_BYTES, "{} bytes", r.body.len());
        }
    }

    #[tokio::test]
    async fn delete_ids_batches_1000_ids_per_request() {
        let (server, client) = serve(
            "delete_by_ids",
            None,
            ResponseTemplate::new(200).set_body_json(json!({})),
            3,
        )
        .await;
        let ids: Vec<String> = (0..2500).map(|i| format!("id-{i}")).collect();
        client
            .delete_ids("tenant_x", &ids)
            .await
            .expect("delete succeeds");
        let sizes: Vec<_> = bodies(&server)
            .await
            .iter()
            .map(|b| b["ids"].as_array().expect("ids").len())
            .collect();
        assert_eq!(sizes, [1000, 1000, 500]);
    }

    #[tokio::test]
    async fn nothing_to_write_sends_nothing() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&server)
            .await;
        let client = client_for(&server);
        assert_eq!(client.upsert("tenant_x", &[]).await.expect("no-op"), 0);
        client.delete_ids("tenant_x", &[]).await.expect("no-op");
    }

    #[tokio::test]
    async fn rate_limit_is_retried_then_succeeds() {
        let server = MockServer::start().await;
        contract_mock("upsert", None)
            .respond_with(ResponseTemplate::new(429).set_body_json(json!({
                "code": 8,
                "message": "Request failed. You've reached the max upsert requests per second.",
                "details": []
            })))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        contract_mock("upsert", None)
            .respond_with(CountUpserted)
            .expect(1)
            .mount(&server)
            .await;
        let n = client_for(&server)
            .upsert("tenant_x", &[record(1, 4)])
            .await
            .expect("second attempt succeeds");
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn service_unavailable_exhausts_retries_as_unavailable() {
        let (_server, client) = serve(
            "query",
            None,
            ResponseTemplate::new(503).set_body_string("upstream connect error"),
            3,
        )
        .await;
        let err = client
            .query("tenant_x", &[0.1, 0.2], 3, None)
            .await
            .expect_err("always 503");
        match &err {
            VectorError::Unavailable(m) => {
                assert!(m.contains("503"), "{m}");
                assert!(m.contains("upstream connect error"), "{m}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(!err.to_string().contains(KEY));
    }

    #[tokio::test]
    async fn bad_request_is_rejected_with_pinecones_message_without_retry() {
        let server = MockServer::start().await;
        let error_body = contract()["data_plane_error_shape"].clone();
        contract_mock("upsert", None)
            .respond_with(ResponseTemplate::new(400).set_body_json(&error_body))
            .expect(1)
            .mount(&server)
            .await;
        let err = client_for(&server)
            .upsert("tenant_x", &[record(1, 2)])
            .await
            .expect_err("Pinecone refuses");
        match err {
            VectorError::Rejected { status, message } => {
                assert_eq!(status, 400);
                assert_eq!(message, error_body["message"].as_str().expect("message"));
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn not_found_is_rejected_with_pinecones_message_without_retry() {
        let server = MockServer::start().await;
        let error_body = contract()["control_plane_error_shape"].clone();
        contract_mock("describe_index_stats", None)
            .respond_with(ResponseTemplate::new(404).set_body_json(&error_body))
            .expect(1)
            .mount(&server)
            .await;
        let err = client_for(&server)
            .describe_index_stats()
            .await
            .expect_err("not found");
        match err {
            VectorError::Rejected { status, message } => {
                assert_eq!(status, 404);
                assert_eq!(message, "Index example-index not found.");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unauthorized_plain_text_is_rejected_without_retry() {
        let (_server, client) = serve(
            "delete_all_in_namespace",
            None,
            ResponseTemplate::new(401).set_body_string("Unauthorized"),
            1,
        )
        .await;
        let err = client.delete_all("tenant_x").await.expect_err("bad key");
        assert!(
            matches!(&err, VectorError::Rejected { status: 401, message } if message == "Unauthorized"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn unreachable_pinecone_is_unavailable_after_retries() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let err = PineconeClient::new(&format!("http://127.0.0.1:{port}"), KEY.into())
            .expect("client")
            .with_retry(fast())
            .describe_index_stats()
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, VectorError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains(KEY));
    }

    #[tokio::test]
    async fn invalid_input_is_refused_before_sending() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&server)
            .await;
        let client = client_for(&server);
        let rejected =
            |r: Result<_, VectorError>| matches!(r, Err(VectorError::Rejected { status: 400, .. }));

        assert!(rejected(
            client.upsert("", &[record(1, 2)]).await.map(|_| ())
        ));
        assert!(rejected(client.delete_all("").await));
        let mut nan = record(1, 2);
        nan.values[0] = f32::NAN;
        assert!(rejected(client.upsert("t", &[nan]).await.map(|_| ())));
        let mut long_id = record(1, 2);
        long_id.id = "x".repeat(513);
        assert!(rejected(client.upsert("t", &[long_id]).await.map(|_| ())));
        let mut list_meta = record(1, 2);
        list_meta.metadata = json!(["not", "an", "object"]);
        assert!(rejected(client.upsert("t", &[list_meta]).await.map(|_| ())));
        assert!(rejected(client.query("t", &[], 3, None).await.map(|_| ())));
        assert!(rejected(
            client.query("t", &[0.1], 0, None).await.map(|_| ())
        ));
        assert!(rejected(
            client.query("t", &[0.1], 10_001, None).await.map(|_| ())
        ));
        assert!(rejected(
            client
                .query("t", &[0.1], 3, Some(json!("source")))
                .await
                .map(|_| ())
        ));
        let err = client
            .upsert("t", &[record(1, 2), record(2, 3)])
            .await
            .expect_err("mixed dimensions");
        assert!(
            matches!(err, VectorError::Dimension { got: 3, want: 2 }),
            "{err:?}"
        );
    }

    #[test]
    fn index_host_gets_https_unless_a_scheme_is_given() {
        let key = || SecretString::from(KEY);
        let base = |host: &str| {
            PineconeClient::new(host, key())
                .expect("valid host")
                .base
                .to_string()
        };
        assert_eq!(
            base("tenants-c01b5b5.svc.aws-us-east-1.pinecone.io"),
            "https://tenants-c01b5b5.svc.aws-us-east-1.pinecone.io/"
        );
        assert_eq!(
            base(" https://tenants-c01b5b5.svc.aws-us-east-1.pinecone.io/ "),
            "https://tenants-c01b5b5.svc.aws-us-east-1.pinecone.io/"
        );
        assert_eq!(base("http://127.0.0.1:5080"), "http://127.0.0.1:5080/");
        assert_eq!(base("localhost:5081"), "https://localhost:5081/");

        let client = PineconeClient::new("http://127.0.0.1:5080/prefix/", key()).expect("valid");
        assert_eq!(
            client.endpoint(&["vectors", "upsert"]).as_str(),
            "http://127.0.0.1:5080/prefix/vectors/upsert"
        );

        for bad in [
            "",
            "  ",
            "ftp://host",
            "https://user:pw@host",
            "https://host/?x=1",
            "https://host/#f",
            "https://",
        ] {
            assert!(PineconeClient::new(bad, key()).is_err(), "{bad:?} accepted");
        }
        assert!(PineconeClient::new("host", SecretString::from("")).is_err());
        assert!(PineconeClient::new("host", SecretString::from("a\nb")).is_err());
    }

    #[test]
    fn debug_output_hides_the_api_key() {
        let client =
            PineconeClient::new("http://127.0.0.1:1", SecretString::from(KEY)).expect("client");
        let debug = format!("{client:?}");
        assert!(!debug.contains(KEY), "{debug}");
        assert!(debug.contains("127.0.0.1"), "{debug}");
    }
}
