//! Client for an OpenAI-compatible embeddings endpoint (OpenAI, Azure-style gateways, vLLM,
//! Ollama, LiteLLM, ...).
//!
//! `POST {EMBEDDINGS_URL}/embeddings` with `{"model": .., "input": [..]}` and, when a key is
//! configured, `Authorization: Bearer <key>`. Inputs are sent in batches of at most
//! [`MAX_INPUTS_PER_REQUEST`], one batch after the other. Vectors are returned in input order
//! (by the response's `index`), exactly as the provider sent them (no normalisation).
//! Transport errors, 429 and 5xx are retried (see [`crate::outbound`]).

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::outbound::{self, OutboundError, RetryPolicy};

/// Most texts in one request.
pub const MAX_INPUTS_PER_REQUEST: usize = 96;
/// Per-attempt timeout: a batch of long texts can take a while on a busy provider.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why embedding failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// No answer, or only 429/5xx after every attempt; trying again later may work.
    #[error("the embeddings service is unavailable, try again later: {0}")]
    Unavailable(String),
    /// The provider refused the request (a 4xx other than 429): check the API key, the model
    /// name and the input; retrying the same request will not help.
    #[error("the embeddings service refused the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// A 2xx answer that does not fit the request (unreadable, wrong count, wrong dimension).
    #[error("the embeddings service sent an unusable answer: {0}")]
    Invalid(String),
}

/// Client for one embeddings model.
#[derive(Clone)]
pub struct EmbeddingsClient {
    http: reqwest::Client,
    /// `{base}/embeddings`.
    url: Url,
    /// The `Authorization: Bearer …` header, checked and marked sensitive once.
    api_key: Option<HeaderValue>,
    model: String,
    dimension: Option<usize>,
    retry: RetryPolicy,
}

impl fmt::Debug for EmbeddingsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddingsClient")
            .field("url", &self.url.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .field("dimension", &self.dimension)
            .field("retry", &self.retry)
            .finish()
    }
}

impl EmbeddingsClient {
    /// A client for `POST {base_url}/embeddings` (any path prefix such as `/v1` is kept; a base
    /// that already ends in `/embeddings` is used as it is). `dimension`, when given, is the
    /// length every returned vector must have. An empty `api_key` counts as none.
    pub fn new(
        base_url: &str,
        api_key: Option<SecretString>,
        model: &str,
        dimension: Option<usize>,
    ) -> Result<Self, String> {
        let api_key = api_key.filter(|k| !k.expose_secret().trim().is_empty());
        let url = Self::check(base_url, api_key.as_ref(), model, dimension)?;
        let api_key = match api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                    .map_err(|_| {
                    "the embeddings API key is not a valid header value".to_string()
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let model = model.trim();
        let http = outbound::http_client(REQUEST_TIMEOUT)?;
        Ok(Self {
            http,
            url,
            api_key,
            model: model.to_owned(),
            dimension,
            retry: RetryPolicy::default(),
        })
    }

    /// Checks the settings without building a client (start-up validation); returns the
    /// embeddings endpoint's URL. An empty key counts as none.
    pub fn check(
        base_url: &str,
        api_key: Option<&SecretString>,
        model: &str,
        dimension: Option<usize>,
    ) -> Result<Url, String> {
        let url = embeddings_url(base_url)?;
        if let Some(key) = api_key
            && !key.expose_secret().trim().is_empty()
            && HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).is_err()
        {
            return Err(
                "the embeddings API key contains characters not allowed in an HTTP header".into(),
            );
        }
        if model.trim().is_empty() {
            return Err("the embeddings model name is empty".into());
        }
        if dimension == Some(0) {
            return Err("the embeddings dimension must be at least 1".into());
        }
        Ok(url)
    }

    /// Replaces the retry policy (tests use a ~1 ms base).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The length every returned vector must have, when configured.
    pub fn dimension(&self) -> Option<usize> {
        self.dimension
    }

    /// The model asked for.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// One vector per text, in the order of `texts`. No texts means no request.
    #[tracing::instrument(skip_all, fields(model = %self.model, texts = texts.len()))]
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for (n, batch) in texts.chunks(MAX_INPUTS_PER_REQUEST).enumerate() {
            let first = n * MAX_INPUTS_PER_REQUEST;
            let want = self.dimension.or_else(|| vectors.first().map(Vec::len));
            vectors.extend(self.embed_batch(batch, first, want).await?);
        }
        Ok(vectors)
    }

    /// Embeds one batch; `first` is the position of `batch[0]` in the caller's input and
    /// `want` the length every vector must have, if known.
    async fn embed_batch(
        &self,
        batch: &[String],
        first: usize,
        want: Option<usize>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = serde_json::to_vec(&RequestBody {
            model: &self.model,
            input: batch,
        })
        .map_err(|e| EmbedError::Invalid(format!("could not serialize the request: {e}")))?;
        // Shared, so each attempt clones a reference, not the whole batch of texts.
        let body = axum::body::Bytes::from(body);
        let outcome = outbound::send_with_retries(&self.retry, "embeddings", || {
            let request = self
                .http
                .post(self.url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(ACCEPT, "application/json")
                .body(body.clone());
            match &self.api_key {
                Some(value) => request.header(reqwest::header::AUTHORIZATION, value.clone()),
                None => request,
            }
        })
        .await;
        let answer = match outcome {
            Ok((_, answer)) => answer,
            Err(OutboundError::Status { status, body }) if outbound::is_retryable(status) => {
                return Err(EmbedError::Unavailable(format!(
                    "HTTP {status} on each of {} attempts: {}",
                    self.retry.max_attempts.max(1),
                    outbound::provider_message(status, &body)
                )));
            }
            Err(OutboundError::Status { status, body }) => {
                return Err(EmbedError::Rejected {
                    status: status.as_u16(),
                    message: outbound::provider_message(status, &body),
                });
            }
            Err(OutboundError::Transport(e)) => {
                return Err(EmbedError::Unavailable(format!(
                    "could not reach the embeddings service: {e}"
                )));
            }
        };
        let response: ResponseBody = serde_json::from_slice(&answer).map_err(|e| {
            EmbedError::Invalid(format!("could not read the embeddings response: {e}"))
        })?;
        order_and_check(response.data, batch.len(), first, want)
    }
}

/// `{base}/embeddings`, keeping the base's path prefix.
fn embeddings_url(base_url: &str) -> Result<Url, String> {
    let base = base_url.trim();
    let mut url = Url::parse(base).map_err(|e| {
        format!("invalid embeddings URL {base:?}: {e}; expected e.g. https://api.openai.com/v1")
    })?;
    if !matches!(url.scheme(), "https" | "http")
        || url.host_str().is_none_or(str::is_empty)
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "invalid embeddings URL {base:?}: expected an http(s) base URL without credentials, \
             query or fragment, e.g. https://api.openai.com/v1"
        ));
    }
    let already = url
        .path_segments()
        .and_then(|mut s| s.rfind(|seg| !seg.is_empty()))
        == Some("embeddings");
    if !already {
        url.path_segments_mut()
            .map_err(|()| format!("invalid embeddings URL {base:?}"))?
            .pop_if_empty()
            .push("embeddings");
    }
    Ok(url)
}

/// Puts the items in input order and checks count, indexes and dimensions.
fn order_and_check(
    mut items: Vec<Item>,
    expected: usize,
    first: usize,
    want: Option<usize>,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    if items.len() != expected {
        return Err(EmbedError::Invalid(format!(
            "asked for {expected} embeddings, got {}",
            items.len()
        )));
    }
    // Every item has an index (OpenAI) or none has one (then the array order is used).
    if items.iter().all(|i| i.index.is_none()) {
        for (n, item) in items.iter_mut().enumerate() {
            item.index = Some(n);
        }
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for item in items {
        let index = item
            .index
            .ok_or_else(|| EmbedError::Invalid("an embedding without an index".into()))?;
        let slot = slots.get_mut(index).ok_or_else(|| {
            EmbedError::Invalid(format!(
                "embedding index {index} is out of range for {expected} inputs"
            ))
        })?;
        if slot.is_some() {
            return Err(EmbedError::Invalid(format!(
                "embedding index {index} appears twice"
            )));
        }
        *slot = Some(item.embedding);
    }
    let mut vectors = Vec::with_capacity(expected);
    let mut want = want;
    for (n, slot) in slots.into_iter().enumerate() {
        // All indexes are distinct and in range and the count matches, so every slot is full.
        let vector = slot.unwrap_or_default();
        let got = vector.len();
        if got == 0 {
            return Err(EmbedError::Invalid(format!(
                "the embedding of input {} is empty",
                first + n
            )));
        }
        match want {
            Some(want) if got != want => {
                return Err(EmbedError::Invalid(format!(
                    "the embedding of input {} has {got} dimensions, expected {want}; \
                     check that the configured model and dimension match",
                    first + n
                )));
            }
            Some(_) => {}
            None => want = Some(got),
        }
        vectors.push(vector);
    }
    Ok(vectors)
}

#[derive(Serialize)]
struct RequestBody<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct ResponseBody {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use serde_json::json;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    const KEY: &str = "sk-test-embed-0123456789";
    const MODEL: &str = "text-embedding-3-small";

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(1),
        }
    }

    fn client(
        server: &MockServer,
        key: Option<&str>,
        dimension: Option<usize>,
    ) -> EmbeddingsClient {
        EmbeddingsClient::new(
            &format!("{}/v1", server.uri()),
            key.map(SecretString::from),
            MODEL,
            dimension,
        )
        .expect("client")
        .with_retry(fast())
    }

    fn texts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("text {i}")).collect()
    }

    /// Answers with, for each input `text {i}`, the vector `[i, 1, 0]`, listed in reverse.
    struct EchoIndexes;

    impl Respond for EchoIndexes {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let body: Value = serde_json::from_slice(&request.body).expect("JSON body");
            let mut data: Vec<Value> = body["input"]
                .as_array()
                .expect("input list")
                .iter()
                .enumerate()
                .map(|(index, text)| {
                    let i: f32 = text
                        .as_str()
                        .and_then(|t| t.strip_prefix("text "))
                        .and_then(|n| n.parse().ok())
                        .expect("text N");
                    json!({"object": "embedding", "index": index, "embedding": [i, 1.0, 0.0]})
                })
                .collect();
            data.reverse();
            ResponseTemplate::new(200).set_body_json(json!({
                "object": "list",
                "data": data,
                "model": MODEL,
                "usage": {"prompt_tokens": 4, "total_tokens": 4}
            }))
        }
    }

    #[tokio::test]
    async fn embed_sends_the_exact_request_and_orders_by_index() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/embeddings"))
            .and(header("Authorization", format!("Bearer {KEY}").as_str()))
            .and(header("Content-Type", "application/json"))
            .and(body_json(
                json!({"model": MODEL, "input": ["first", "second", "third"]}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "object": "list",
                "data": [
                    {"object": "embedding", "index": 2, "embedding": [0.0, 3.0]},
                    {"object": "embedding", "index": 0, "embedding": [0.5, 1.0]},
                    {"object": "embedding", "index": 1, "embedding": [2.0, -0.25]}
                ],
                "model": MODEL,
                "usage": {"prompt_tokens": 3, "total_tokens": 3}
            })))
            .expect(1)
            .mount(&server)
            .await;

        let vectors = client(&server, Some(KEY), Some(2))
            .embed(&["first".into(), "second".into(), "third".into()])
            .await
            .expect("embeddings");
        assert_eq!(vectors, [vec![0.5, 1.0], vec![2.0, -0.25], vec![0.0, 3.0]]);

        let requests = server.received_requests().await.expect("recording is on");
        assert_eq!(
            requests[0].headers.get_all("authorization").iter().count(),
            1
        );
    }

    #[tokio::test]
    async fn without_a_key_no_authorization_header_is_sent() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/embeddings"))
            .respond_with(EchoIndexes)
            .expect(1)
            .mount(&server)
            .await;
        let vectors = client(&server, None, Some(3))
            .embed(&texts(2))
            .await
            .expect("embeddings");
        assert_eq!(vectors, [vec![0.0, 1.0, 0.0], vec![1.0, 1.0, 0.0]]);
        let requests = server.received_requests().await.expect("recording is on");
        assert!(requests[0].headers.get("authorization").is_none());

        // An empty key counts as none.
        let empty_key = client(&server, Some(""), None);
        assert!(empty_key.api_key.is_none());
    }

    #[tokio::test]
    async fn batches_200_inputs_into_3_requests_in_order() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/embeddings"))
            .respond_with(EchoIndexes)
            .expect(3)
            .mount(&server)
            .await;
        let vectors = client(&server, Some(KEY), None)
            .embed(&texts(200))
            .await
            .expect("embeddings");
        assert_eq!(vectors.len(), 200);
        for (i, v) in vectors.iter().enumerate() {
            assert_eq!(v[0], i as f32, "vector {i} is in input order");
        }
        let sizes: Vec<usize> = server
            .received_requests()
            .await
            .expect("recording is on")
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
                assert_eq!(body["model"], MODEL);
                body["input"].as_array().expect("input").len()
            })
            .collect();
        assert_eq!(sizes, [96, 96, 8]);
    }

    #[tokio::test]
    async fn empty_input_sends_nothing() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(EchoIndexes)
            .expect(0)
            .mount(&server)
            .await;
        let vectors = client(&server, Some(KEY), None)
            .embed(&[])
            .await
            .expect("nothing to do");
        assert!(vectors.is_empty());
    }

    #[tokio::test]
    async fn rate_limit_and_server_errors_are_retried() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).set_body_json(json!({
                "error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
            })))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(EchoIndexes)
            .expect(1)
            .mount(&server)
            .await;
        let vectors = client(&server, Some(KEY), Some(3))
            .embed(&texts(1))
            .await
            .expect("third attempt succeeds");
        assert_eq!(vectors.len(), 1);
    }

    #[tokio::test]
    async fn server_errors_exhaust_retries_as_unavailable() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503).set_body_json(json!({
                "error": {"message": "The engine is currently overloaded", "type": "server_error"}
            })))
            .expect(3)
            .mount(&server)
            .await;
        let err = client(&server, Some(KEY), None)
            .embed(&texts(1))
            .await
            .expect_err("always 503");
        match &err {
            EmbedError::Unavailable(m) => {
                assert!(m.contains("503"), "{m}");
                assert!(m.contains("The engine is currently overloaded"), "{m}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(!err.to_string().contains(KEY));
    }

    #[tokio::test]
    async fn unauthorized_is_rejected_with_the_providers_message_without_retry() {
        let server = MockServer::start().await;
        let message = "Incorrect API key provided: sk-test-***6789. You can find your API key \
                       at https://platform.openai.com/account/api-keys.";
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": null,
                    "code": "invalid_api_key"
                }
            })))
            .expect(1)
            .mount(&server)
            .await;
        let err = client(&server, Some(KEY), None)
            .embed(&texts(1))
            .await
            .expect_err("bad key");
        match &err {
            EmbedError::Rejected { status, message: m } => {
                assert_eq!(*status, 401);
                assert_eq!(m, message);
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        assert!(err.to_string().contains("HTTP 401"), "{err}");
    }

    #[tokio::test]
    async fn unreachable_provider_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let err = EmbeddingsClient::new(
            &format!("http://127.0.0.1:{port}/v1"),
            Some(KEY.into()),
            MODEL,
            None,
        )
        .expect("client")
        .with_retry(fast())
        .embed(&texts(1))
        .await
        .expect_err("nothing listens");
        assert!(matches!(err, EmbedError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains(KEY));
    }

    async fn answer_with(body: Value, dimension: Option<usize>, inputs: usize) -> EmbedError {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        client(&server, Some(KEY), dimension)
            .embed(&texts(inputs))
            .await
            .expect_err("unusable answer")
    }

    #[tokio::test]
    async fn wrong_count_is_invalid() {
        let err = answer_with(
            json!({"data": [{"object": "embedding", "index": 0, "embedding": [1.0]}]}),
            None,
            2,
        )
        .await;
        assert!(
            matches!(&err, EmbedError::Invalid(m) if m.contains("asked for 2 embeddings, got 1")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn wrong_dimension_is_invalid() {
        let err = answer_with(
            json!({"data": [{"object": "embedding", "index": 0, "embedding": [1.0, 2.0]}]}),
            Some(3),
            1,
        )
        .await;
        assert!(
            matches!(&err, EmbedError::Invalid(m) if m.contains("2 dimensions, expected 3")),
            "{err:?}"
        );
        // Without a configured dimension, the vectors of one call must still agree.
        let err = answer_with(
            json!({"data": [
                {"index": 0, "embedding": [1.0, 2.0]},
                {"index": 1, "embedding": [1.0]}
            ]}),
            None,
            2,
        )
        .await;
        assert!(matches!(err, EmbedError::Invalid(_)), "{err:?}");
    }

    #[tokio::test]
    async fn duplicate_or_out_of_range_index_is_invalid() {
        let err = answer_with(
            json!({"data": [
                {"index": 0, "embedding": [1.0]},
                {"index": 0, "embedding": [2.0]}
            ]}),
            None,
            2,
        )
        .await;
        assert!(
            matches!(&err, EmbedError::Invalid(m) if m.contains("twice")),
            "{err:?}"
        );
        let err = answer_with(json!({"data": [{"index": 5, "embedding": [1.0]}]}), None, 1).await;
        assert!(
            matches!(&err, EmbedError::Invalid(m) if m.contains("out of range")),
            "{err:?}"
        );
        let err = answer_with(json!({"object": "list"}), None, 1).await;
        assert!(matches!(err, EmbedError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn the_base_path_prefix_is_kept() {
        let url = |base: &str| embeddings_url(base).expect("valid").to_string();
        assert_eq!(
            url("https://api.openai.com/v1"),
            "https://api.openai.com/v1/embeddings"
        );
        assert_eq!(
            url("https://api.openai.com/v1/"),
            "https://api.openai.com/v1/embeddings"
        );
        assert_eq!(
            url("http://127.0.0.1:11434"),
            "http://127.0.0.1:11434/embeddings"
        );
        assert_eq!(
            url("https://gw.example.com/openai/v1"),
            "https://gw.example.com/openai/v1/embeddings"
        );
        assert_eq!(
            url("https://api.openai.com/v1/embeddings"),
            "https://api.openai.com/v1/embeddings"
        );
        for bad in [
            "",
            "api.openai.com/v1",
            "ftp://x/v1",
            "https://x/v1?k=1",
            "https://u:p@x/v1",
        ] {
            assert!(embeddings_url(bad).is_err(), "{bad:?} accepted");
        }
        assert!(EmbeddingsClient::new("https://x/v1", None, " ", None).is_err());
        assert!(EmbeddingsClient::new("https://x/v1", None, MODEL, Some(0)).is_err());
        assert!(EmbeddingsClient::new("https://x/v1", Some("a\nb".into()), MODEL, None).is_err());
    }

    #[test]
    fn debug_output_hides_the_api_key() {
        let client = EmbeddingsClient::new("http://127.0.0.1:1/v1", Some(KEY.into()), MODEL, None)
            .expect("client");
        let debug = format!("{client:?}");
        assert!(!debug.contains(KEY), "{debug}");
        assert!(debug.contains(MODEL), "{debug}");
    }
}
