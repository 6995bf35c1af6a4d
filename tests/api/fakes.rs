//! Local fakes of the external services the server can be configured with, following their
//! contracts: a stateful Pinecone data plane (API version 2025-10, see
//! `tests/fixtures/contracts/pinecone_rest_contract.json`) and an OpenAI-compatible embeddings endpoint.
//! Both listen on 127.0.0.1 only, keep their state behind a mutex, record every request they
//! receive (with the answer they gave) and can be told to fail.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use serde_json::{Map, Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// One request a fake received, and what it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Every header as received, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when the body was not JSON).
    pub body: Value,
    pub status: u16,
    /// The JSON answer, or the text answer as a JSON string.
    pub response: Value,
}

impl Recorded {
    /// Every value of header `name`.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of header `name` when it was sent exactly once.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self.header_values(name).as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// An answer before it becomes a [`ResponseTemplate`].
enum Reply {
    Json(u16, Value),
    Text(u16, String),
}

impl Reply {
    fn status(&self) -> u16 {
        match self {
            Reply::Json(s, _) | Reply::Text(s, _) => *s,
        }
    }

    fn recorded(&self) -> Value {
        match self {
            Reply::Json(_, v) => v.clone(),
            Reply::Text(_, t) => Value::String(t.clone()),
        }
    }

    fn template(self) -> ResponseTemplate {
        match self {
            Reply::Json(s, v) => ResponseTemplate::new(s).set_body_json(v),
            Reply::Text(s, t) => ResponseTemplate::new(s).set_body_raw(t, "text/plain"),
        }
    }
}

fn record(request: &Request, reply: &Reply) -> Recorded {
    Recorded {
        method: request.method.to_string(),
        path: request.url.path().to_string(),
        headers: request
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
        status: reply.status(),
        response: reply.recorded(),
    }
}

fn single_header<'r>(request: &'r Request, name: &str) -> Option<&'r [u8]> {
    let mut values = request.headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => Some(v.as_bytes()),
        _ => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the state from the next assertion.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A mock server on 127.0.0.1 answering every request with `responder`.
async fn serve(responder: impl Respond + 'static) -> MockServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let server = MockServer::builder().listener(listener).start().await;
    Mock::given(any())
        .respond_with(responder)
        .mount(&server)
        .await;
    server
}

/// Cosine similarity of two vectors (0 when one is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

// ------------------------------------------------------------------------------------ Pinecone

/// The API version the fake Pinecone requires in `X-Pinecone-Api-Version`.
pub const PINECONE_API_VERSION: &str = "2025-10";
const MAX_UPSERT_VECTORS: usize = 1000;
const MAX_DELETE_IDS: usize = 1000;
const MAX_ID_BYTES: usize = 512;
const MAX_TOP_K: u64 = 10_000;
/// How the data plane names the namespace `""`.
const DEFAULT_NAMESPACE: &str = "__default__";

/// A vector as the fake Pinecone stores it.
#[derive(Debug, Clone)]
pub struct StoredVector {
    pub id: String,
    pub values: Vec<f32>,
    pub metadata: Option<Map<String, Value>>,
}

struct PineconeState {
    api_key: String,
    dimension: usize,
    /// namespace → id → vector. A namespace exists while it holds vectors (serverless).
    namespaces: BTreeMap<String, BTreeMap<String, StoredVector>>,
    /// Statuses the next requests answer, one each, before anything else is looked at.
    fail_next: VecDeque<u16>,
    /// A status every request answers while set.
    fail_always: Option<u16>,
    /// Requests still answered normally before `fail_always` is set to the status given.
    fail_after: Option<(usize, u16)>,
    requests: Vec<Recorded>,
    /// How long every answer takes.
    delay: std::time::Duration,
}

/// A fake Pinecone index data plane (serverless, cosine, dense) on 127.0.0.1.
pub struct FakePinecone {
    server: MockServer,
    state: Arc<Mutex<PineconeState>>,
}

struct PineconeResponder(Arc<Mutex<PineconeState>>);

impl Respond for PineconeResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = lock(&self.0);
        let reply = state.handle(request);
        let recorded = record(request, &reply);
        state.requests.push(recorded);
        reply.template().set_delay(state.delay)
    }
}

/// Pinecone's data-plane error body (`rpcStatus`).
fn rpc_status(status: u16, code: i32, message: impl Into<String>) -> Reply {
    Reply::Json(
        status,
        json!({"code": code, "message": message.into(), "details": []}),
    )
}

fn invalid(message: impl Into<String>) -> Reply {
    rpc_status(400, 3, message)
}

/// The answer of an injected failure.
fn pinecone_failure(status: u16) -> Reply {
    match status {
        503 => Reply::Text(
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
                .into(),
        ),
        429 => rpc_status(
            429,
            8,
            "Request failed. You've reached the max requests per second for this index. Please try again later.",
        ),
        500 => rpc_status(500, 13, "Internal error, please try again later."),
        401 => Reply::Text(401, "Unauthorized".into()),
        s => rpc_status(s, 2, format!("injected failure {s}")),
    }
}

fn namespace_of(body: &Map<String, Value>) -> Result<String, Reply> {
    match body.get("namespace") {
        None | Some(Value::Null) => Ok(DEFAULT_NAMESPACE.into()),
        Some(Value::String(s)) if s.is_empty() => Ok(DEFAULT_NAMESPACE.into()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(invalid("namespace must be a string")),
    }
}

fn floats(v: &Value, what: &str) -> Result<Vec<f32>, Reply> {
    v.as_array()
        .ok_or_else(|| invalid(format!("{what} must be an array of numbers")))?
        .iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| invalid(format!("{what} must be an array of numbers")))
        })
        .collect()
}

/// Pinecone's metadata filter language: `{field: value}`, `{field: {$eq|$ne|$in|$nin|$gt|
/// $gte|$lt|$lte: ..}}`, `$and` and `$or`.
fn filter_matches(filter: &Map<String, Value>, metadata: Option<&Map<String, Value>>) -> bool {
    filter.iter().all(|(key, cond)| match key.as_str() {
        "$and" => cond.as_array().is_some_and(|all| {
            all.iter()
                .all(|f| f.as_object().is_some_and(|f| filter_matches(f, metadata)))
        }),
        "$or" => cond.as_array().is_some_and(|any| {
            any.iter()
                .any(|f| f.as_object().is_some_and(|f| filter_matches(f, metadata)))
        }),
        field => {
            let value = metadata.and_then(|m| m.get(field));
            match cond {
                Value::Object(ops) => ops.iter().all(|(op, want)| {
                    let number = |v: Option<&Value>| v.and_then(Value::as_f64);
                    let cmp = |f: fn(f64, f64) -> bool| {
                        matches!((number(value), want.as_f64()), (Some(a), Some(b)) if f(a, b))
                    };
                    match op.as_str() {
                        "$eq" => value == Some(want),
                        "$ne" => value != Some(want),
                        "$in" => want
                            .as_array()
                            .is_some_and(|l| value.is_some_and(|v| l.contains(v))),
                        "$nin" => want
                            .as_array()
                            .is_some_and(|l| !value.is_some_and(|v| l.contains(v))),
                        "$gt" => cmp(|a, b| a > b),
                        "$gte" => cmp(|a, b| a >= b),
                        "$lt" => cmp(|a, b| a < b),
                        "$lte" => cmp(|a, b| a <= b),
                        _ => false,
                    }
                }),
                want => value == Some(want),
            }
        }
    })
}

fn optional_filter(body: &Map<String, Value>) -> Result<Option<&Map<String, Value>>, Reply> {
    match body.get("filter") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(f)) => Ok(Some(f)),
        Some(_) => Err(invalid("filter must be an object")),
    }
}

impl PineconeState {
    fn handle(&mut self, request: &Request) -> Reply {
        if let Some((left, status)) = &mut self.fail_after {
            if *left == 0 {
                self.fail_always = Some(*status);
                self.fail_after = None;
            } else {
                *left -= 1;
            }
        }
        if let Some(status) = self.fail_next.pop_front().or(self.fail_always) {
            return pinecone_failure(status);
        }
        let key_ok = single_header(request, "api-key") == Some(self.api_key.as_bytes());
        let version_ok = single_header(request, "x-pinecone-api-version")
            == Some(PINECONE_API_VERSION.as_bytes());
        if !key_ok || !version_ok {
            return rpc_status(
                401,
                16,
                "Invalid API Key or missing X-Pinecone-Api-Version header",
            );
        }
        if request.method != wiremock::http::Method::POST {
            return Reply::Text(404, "Not Found".into());
        }
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(b) => b,
            Err(e) => return invalid(format!("Invalid request body: {e}")),
        };
        let Some(body) = body.as_object() else {
            return invalid("Invalid request body: expected a JSON object");
        };
        let result = match request.url.path() {
            "/vectors/upsert" => self.upsert(body),
            "/query" => self.query(body),
            "/vectors/delete" => self.delete(body),
            "/describe_index_stats" => self.stats(body),
            _ => Ok(Reply::Text(404, "Not Found".into())),
        };
        result.unwrap_or_else(|reply| reply)
    }

    fn upsert(&mut self, body: &Map<String, Value>) -> Result<Reply, Reply> {
        let namespace = namespace_of(body)?;
        let vectors = body
            .get("vectors")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("vectors is required and must be an array"))?;
        if vectors.is_empty() || vectors.len() > MAX_UPSERT_VECTORS {
            return Err(invalid(format!(
                "an upsert takes 1 to {MAX_UPSERT_VECTORS} vectors, {} given",
                vectors.len()
            )));
        }
        let mut parsed = Vec::with_capacity(vectors.len());
        for v in vectors {
            let id = v
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| (1..=MAX_ID_BYTES).contains(&id.len()))
                .ok_or_else(|| invalid("every vector needs an id of 1 to 512 bytes"))?;
            let values = floats(v.get("values").unwrap_or(&Value::Null), "values")?;
            if values.len() != self.dimension {
                return Err(invalid(format!(
                    "Vector dimension {} does not match the dimension of the index {}",
                    values.len(),
                    self.dimension
                )));
            }
            let metadata = match v.get("metadata") {
                None | Some(Value::Null) => None,
                Some(Value::Object(m)) => Some(m.clone()),
                Some(_) => return Err(invalid("metadata must be an object")),
            };
            parsed.push(StoredVector {
                id: id.to_string(),
                values,
                metadata,
            });
        }
        let n = parsed.len();
        let space = self.namespaces.entry(namespace).or_default();
        for v in parsed {
            space.insert(v.id.clone(), v);
        }
        Ok(Reply::Json(200, json!({ "upsertedCount": n })))
    }

    fn query(&mut self, body: &Map<String, Value>) -> Result<Reply, Reply> {
        let namespace = namespace_of(body)?;
        let top_k = body
            .get("topK")
            .and_then(Value::as_u64)
            .filter(|k| (1..=MAX_TOP_K).contains(k))
            .ok_or_else(|| invalid("topK is required and must be between 1 and 10000"))?;
        let include_metadata = body
            .get("includeMetadata")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let include_values = body
            .get("includeValues")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let filter = optional_filter(body)?;
        let space = self.namespaces.get(&namespace);
        let vector = match (body.get("vector"), body.get("id")) {
            (Some(v), None) => floats(v, "vector")?,
            (None, Some(Value::String(id))) => match space.and_then(|s| s.get(id)) {
                Some(v) => v.values.clone(),
                None => return Ok(query_answer(&namespace, Vec::new(), 1)),
            },
            _ => return Err(invalid("exactly one of vector or id is required")),
        };
        if vector.len() != self.dimension {
            return Err(invalid(format!(
                "Query vector dimension {} does not match the dimension of the index {}",
                vector.len(),
                self.dimension
            )));
        }
        let mut scored: Vec<(f64, &StoredVector)> = space
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|v| filter.is_none_or(|f| filter_matches(f, v.metadata.as_ref())))
            .map(|v| (cosine(&vector, &v.values), v))
            .collect();
        // Best first; ties by id so answers are reproducible.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        let stored = space.map_or(0, BTreeMap::len);
        let matches = scored
            .into_iter()
            .take(usize::try_from(top_k).unwrap_or(usize::MAX))
            .map(|(score, v)| {
                let mut m = json!({"id": v.id, "score": score});
                if include_values {
                    m["values"] = json!(v.values);
                }
                if include_metadata && let Some(meta) = &v.metadata {
                    m["metadata"] = Value::Object(meta.clone());
                }
                m
            })
            .collect();
        Ok(query_answer(&namespace, matches, 1 + stored / 1000))
    }

    fn delete(&mut self, body: &Map<String, Value>) -> Result<Reply, Reply> {
        let namespace = namespace_of(body)?;
        let ids = body.get("ids").filter(|v| !v.is_null());
        let all = body
            .get("deleteAll")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let filter = optional_filter(body)?;
        let modes = usize::from(ids.is_some()) + usize::from(all) + usize::from(filter.is_some());
        if modes != 1 {
            return Err(invalid(
                "exactly one of ids, deleteAll and filter must be given",
            ));
        }
        if !self.namespaces.contains_key(&namespace) {
            return Err(rpc_status(404, 5, "Namespace not found"));
        }
        if all {
            self.namespaces.remove(&namespace);
            return Ok(Reply::Json(200, json!({})));
        }
        let space = self.namespaces.get_mut(&namespace).expect("checked above");
        if let Some(ids) = ids {
            let ids = ids
                .as_array()
                .filter(|l| (1..=MAX_DELETE_IDS).contains(&l.len()))
                .ok_or_else(|| invalid("ids must be an array of 1 to 1000 ids"))?;
            let ids: HashSet<&str> = ids
                .iter()
                .map(|i| i.as_str().ok_or_else(|| invalid("ids must be strings")))
                .collect::<Result<_, _>>()?;
            space.retain(|id, _| !ids.contains(id.as_str()));
        } else if let Some(f) = filter {
            space.retain(|_, v| !filter_matches(f, v.metadata.as_ref()));
        }
        if space.is_empty() {
            self.namespaces.remove(&namespace);
        }
        Ok(Reply::Json(200, json!({})))
    }

    fn stats(&self, body: &Map<String, Value>) -> Result<Reply, Reply> {
        if body.get("filter").is_some_and(|f| !f.is_null()) {
            return Err(invalid(
                "Serverless and starter indexes do not support describing index stats with metadata filtering.",
            ));
        }
        let namespaces: Map<String, Value> = self
            .namespaces
            .iter()
            .map(|(name, space)| (name.clone(), json!({"vectorCount": space.len()})))
            .collect();
        let total: usize = self.namespaces.values().map(BTreeMap::len).sum();
        Ok(Reply::Json(
            200,
            json!({
                "namespaces": namespaces,
                "dimension": self.dimension,
                "indexFullness": 0.0,
                "totalVectorCount": total,
                "metric": "cosine",
                "vectorType": "dense"
            }),
        ))
    }
}

fn query_answer(namespace: &str, matches: Vec<Value>, read_units: usize) -> Reply {
    let namespace = if namespace == DEFAULT_NAMESPACE {
        ""
    } else {
        namespace
    };
    Reply::Json(
        200,
        json!({"matches": matches, "namespace": namespace, "usage": {"readUnits": read_units}}),
    )
}

impl FakePinecone {
    /// An empty index of `dimension` that accepts `api_key`.
    pub async fn start(api_key: &str, dimension: usize) -> FakePinecone {
        let state = Arc::new(Mutex::new(PineconeState {
            api_key: api_key.to_string(),
            dimension,
            namespaces: BTreeMap::new(),
            fail_next: VecDeque::new(),
            fail_always: None,
            fail_after: None,
            requests: Vec::new(),
            delay: std::time::Duration::ZERO,
        }));
        let server = serve(PineconeResponder(state.clone())).await;
        FakePinecone { server, state }
    }

    /// `http://127.0.0.1:port`, what `PINECONE_INDEX_HOST` takes.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// Answers every request only after `delay` (a slow provider).
    pub fn set_delay(&self, delay: std::time::Duration) {
        lock(&self.state).delay = delay;
    }

    /// The requests to `path`, oldest first.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// The key requests must carry from now on (a rotated or revoked key).
    pub fn set_api_key(&self, key: &str) {
        lock(&self.state).api_key = key.to_string();
    }

    /// The next requests answer these statuses, one each (503: an Envoy text body; 429 and
    /// others: Pinecone's `rpcStatus` body).
    pub fn fail_next(&self, statuses: &[u16]) {
        lock(&self.state).fail_next.extend(statuses);
    }

    /// Every request answers `status` until called with `None`.
    pub fn fail_always(&self, status: Option<u16>) {
        let mut state = lock(&self.state);
        state.fail_always = status;
        state.fail_after = None;
    }

    /// The next `ok` requests are served normally; every later one answers `status` (an outage
    /// starting in the middle of a multi-request call), until [`Self::fail_always`]`(None)`.
    pub fn fail_after(&self, ok: usize, status: u16) {
        lock(&self.state).fail_after = Some((ok, status));
    }

    /// The vectors of `namespace`, by id.
    pub fn vectors(&self, namespace: &str) -> Vec<StoredVector> {
        lock(&self.state)
            .namespaces
            .get(namespace)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The ids in `namespace`, sorted.
    pub fn ids(&self, namespace: &str) -> Vec<String> {
        self.vectors(namespace).into_iter().map(|v| v.id).collect()
    }

    /// How many vectors `namespace` holds.
    pub fn count(&self, namespace: &str) -> usize {
        lock(&self.state)
            .namespaces
            .get(namespace)
            .map_or(0, BTreeMap::len)
    }

    /// How many vectors the whole index holds.
    pub fn total(&self) -> usize {
        lock(&self.state)
            .namespaces
            .values()
            .map(BTreeMap::len)
            .sum()
    }
}

// ---------------------------------------------------------------------------------- embeddings

/// Ways the fake embeddings endpoint can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingsFailure {
    /// 500 with OpenAI's `server_error` body.
    ServerError,
    /// 429 with OpenAI's rate-limit body.
    RateLimited,
    /// 401 with OpenAI's `invalid_api_key` body (a revoked key).
    Unauthorized,
}

/// The message of the fake's 401 answers, as OpenAI words it.
pub const OPENAI_INVALID_KEY_MESSAGE: &str = "Incorrect API key provided: sk-fake-***. You can find your API key at https://platform.openai.com/account/api-keys.";

struct EmbeddingsState {
    dimension: usize,
    api_key: Option<String>,
    fail_next: VecDeque<EmbeddingsFailure>,
    fail_always: Option<EmbeddingsFailure>,
    requests: Vec<Recorded>,
    /// How long every answer takes.
    delay: std::time::Duration,
}

/// A fake OpenAI-compatible `POST /v1/embeddings` on 127.0.0.1.
pub struct FakeEmbeddings {
    server: MockServer,
    state: Arc<Mutex<EmbeddingsState>>,
}

struct EmbeddingsResponder(Arc<Mutex<EmbeddingsState>>);

impl Respond for EmbeddingsResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = lock(&self.0);
        let reply = state.handle(request);
        let recorded = record(request, &reply);
        state.requests.push(recorded);
        reply.template().set_delay(state.delay)
    }
}

/// OpenAI's error body.
fn openai_error(status: u16, kind: &str, code: Option<&str>, message: impl Into<String>) -> Reply {
    Reply::Json(
        status,
        json!({"error": {"message": message.into(), "type": kind, "param": null, "code": code}}),
    )
}

fn embeddings_failure(failure: EmbeddingsFailure) -> Reply {
    match failure {
        EmbeddingsFailure::ServerError => openai_error(
            500,
            "server_error",
            None,
            "The server had an error while processing your request. Sorry about that!",
        ),
        EmbeddingsFailure::RateLimited => openai_error(
            429,
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests. Please try again in 20ms.",
        ),
        EmbeddingsFailure::Unauthorized => openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            OPENAI_INVALID_KEY_MESSAGE,
        ),
    }
}

/// Words the fake embedding ignores: in a few dimensions they would drown the topic words.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "each", "for", "from", "has", "have",
    "how", "if", "in", "into", "is", "it", "its", "let", "of", "on", "or", "our", "should", "so",
    "than", "that", "the", "their", "then", "there", "these", "this", "those", "to", "until", "up",
    "use", "was", "we", "what", "when", "where", "which", "while", "will", "with", "you", "your",
];

/// The fake's embedding of `text`: each lowercase alphanumeric word but a few stop words is
/// hashed (FNV-1a) into one of `dimension` buckets with a sign, and the sum is scaled to unit
/// length, so texts sharing words are similar. A text without such words gets the first basis
/// vector.
pub fn fake_embedding(text: &str, dimension: usize) -> Vec<f32> {
    let mut v = vec![0f64; dimension.max(1)];
    let words = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()));
    for word in words {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let bucket = usize::try_from(h % v.len() as u64).unwrap_or(0);
        v[bucket] += if h >> 63 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        v[0] = 1.0;
        return v.into_iter().map(|x| x as f32).collect();
    }
    v.into_iter().map(|x| (x / norm) as f32).collect()
}

impl EmbeddingsState {
    fn handle(&mut self, request: &Request) -> Reply {
        if let Some(key) = &self.api_key {
            let want = format!("Bearer {key}");
            if single_header(request, "authorization") != Some(want.as_bytes()) {
                return openai_error(
                    401,
                    "invalid_request_error",
                    Some("invalid_api_key"),
                    OPENAI_INVALID_KEY_MESSAGE,
                );
            }
        }
        if request.method != wiremock::http::Method::POST || request.url.path() != "/v1/embeddings"
        {
            return openai_error(
                404,
                "invalid_request_error",
                None,
                format!("Invalid URL ({} {})", request.method, request.url.path()),
            );
        }
        if let Some(failure) = self.fail_next.pop_front().or(self.fail_always) {
            return embeddings_failure(failure);
        }
        let invalid = |m: &str| openai_error(400, "invalid_request_error", None, m);
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(b) => b,
            Err(_) => {
                return invalid(
                    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)",
                );
            }
        };
        let Some(model) = body
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
        else {
            return invalid("you must provide a model parameter");
        };
        let inputs: Vec<&str> = match body.get("input") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) if !items.is_empty() && items.len() <= 2048 => {
                match items.iter().map(Value::as_str).collect::<Option<Vec<_>>>() {
                    Some(texts) => texts,
                    None => return invalid("'$.input' is invalid: expected strings"),
                }
            }
            _ => return invalid("'$.input' is invalid. Please check the API reference."),
        };
        if inputs.iter().any(|t| t.is_empty()) {
            return invalid("'$.input' is invalid: empty strings are not allowed");
        }
        let dimension = match body.get("dimensions") {
            None | Some(Value::Null) => self.dimension,
            Some(d) => match d.as_u64().and_then(|d| usize::try_from(d).ok()) {
                Some(d) if d >= 1 => d,
                _ => return invalid("dimensions must be a positive integer"),
            },
        };
        let base64 = match body.get("encoding_format").and_then(Value::as_str) {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return invalid(&format!(
                    "'{other}' is not one of ['float', 'base64'] - 'encoding_format'"
                ));
            }
        };
        let mut tokens = 0;
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(index, text)| {
                tokens += text.split_whitespace().count().max(1);
                let vector = fake_embedding(text, dimension);
                let embedding = if base64 {
                    let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(vector)
                };
                json!({"object": "embedding", "index": index, "embedding": embedding})
            })
            .collect();
        Reply::Json(
            200,
            json!({
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
            }),
        )
    }
}

impl FakeEmbeddings {
    /// An endpoint answering vectors of `dimension`, requiring `Authorization: Bearer <key>`
    /// when `api_key` is given.
    pub async fn start(api_key: Option<&str>, dimension: usize) -> FakeEmbeddings {
        let state = Arc::new(Mutex::new(EmbeddingsState {
            dimension,
            api_key: api_key.map(str::to_string),
            fail_next: VecDeque::new(),
            fail_always: None,
            requests: Vec::new(),
            delay: std::time::Duration::ZERO,
        }));
        let server = serve(EmbeddingsResponder(state.clone())).await;
        FakeEmbeddings { server, state }
    }

    /// Answers every request only after `delay` (a slow provider).
    pub fn set_delay(&self, delay: std::time::Duration) {
        lock(&self.state).delay = delay;
    }

    /// `http://127.0.0.1:port/v1`, what `EMBEDDINGS_URL` takes.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// The texts of every request so far, in order.
    pub fn inputs(&self) -> Vec<String> {
        self.requests()
            .iter()
            .flat_map(|r| match &r.body["input"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// The length of the vectors answered from now on.
    pub fn set_dimension(&self, dimension: usize) {
        lock(&self.state).dimension = dimension;
    }

    /// The next requests fail this way, one each.
    pub fn fail_next(&self, failures: &[EmbeddingsFailure]) {
        lock(&self.state).fail_next.extend(failures);
    }

    /// Every request fails this way until called with `None`.
    pub fn fail_always(&self, failure: Option<EmbeddingsFailure>) {
        lock(&self.state).fail_always = failure;
    }
}
