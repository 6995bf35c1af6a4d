//! Shared plumbing for calls to external HTTP APIs (Stripe, Pinecone, embedding providers).
//!
//! [`http_client`] builds a `reqwest::Client` with our user agent and a per-attempt timeout;
//! [`send_with_retries`] sends a request up to [`RetryPolicy::max_attempts`] times, retrying
//! transport errors, 429 and 5xx with exponential backoff and jitter (or the server's
//! `Retry-After`, in seconds, capped at [`MAX_RETRY_AFTER`]). Callers build the request
//! (auth headers included) and decode the answer themselves.

use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;

/// The longest `Retry-After` we are willing to wait before the next attempt.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The most characters of a provider's error text that [`clip_message`] keeps.
pub const MAX_ERROR_TEXT: usize = 500;

/// How often and how patiently a call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (0 is treated as 1).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled before each later one, plus jitter.
    pub base: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(200),
        }
    }
}

/// Why an outbound call failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The server answered with a non-2xx status: at once for statuses that are not retried,
    /// or after the last attempt for 429 and 5xx.
    #[error("answered {status}")]
    Status { status: StatusCode, body: Vec<u8> },
    /// No usable answer (connect error, timeout, broken body, or a request that could not be
    /// built). The message never contains the URL.
    #[error("{0}")]
    Transport(String),
}

/// A client with `timeout` per attempt and the user agent `onboard/<version>`.
///
/// reqwest is built with `rustls-no-provider`; ring's rustls provider is installed first when
/// the process has none.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    ensure_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("onboard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("could not build the HTTP client: {e}"))
}

/// reqwest panics when building a client unless a process-wide rustls provider exists; sqlx
/// shares it too.
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err only means another thread installed one first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Exponential backoff with jitter: `base * 2^(attempt-1)` plus up to half of that again.
/// `attempt` is the attempt that just failed (1 for the first).
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let max_jitter = u64::try_from(exp.as_millis() / 2).unwrap_or(u64::MAX);
    let jitter = if max_jitter == 0 {
        0
    } else {
        rand::rng().random_range(0..=max_jitter)
    };
    exp.saturating_add(Duration::from_millis(jitter))
}

/// Sends the request built by `build` (called once per attempt) and returns the status and
/// body of the first 2xx answer.
///
/// Transport errors, 429 and 5xx are retried up to `policy.max_attempts` attempts in all; any
/// other status is returned at once as [`OutboundError::Status`]. After the last attempt the
/// last error is returned. `what` names the call in the logs (e.g. `"Pinecone upsert"`).
pub async fn send_with_retries(
    policy: &RetryPolicy,
    what: &str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(StatusCode, Vec<u8>), OutboundError> {
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let (error, retry_after) = match build().send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = retry_after(response.headers());
                match response.bytes().await {
                    Ok(body) if status.is_success() => return Ok((status, body.to_vec())),
                    Ok(body) => {
                        let error = OutboundError::Status {
                            status,
                            body: body.to_vec(),
                        };
                        if !is_retryable(status) {
                            return Err(error);
                        }
                        (error, retry_after)
                    }
                    Err(e) => (OutboundError::Transport(describe(e)), None),
                }
            }
            // A request we could not even build will not get better on retry.
            Err(e) if e.is_builder() => return Err(OutboundError::Transport(describe(e))),
            Err(e) => (OutboundError::Transport(describe(e)), None),
        };
        if attempt >= max_attempts {
            tracing::warn!(what, attempt, error = %error, "outbound call failed, giving up");
            return Err(error);
        }
        let delay = retry_after
            .map(|d| d.min(MAX_RETRY_AFTER))
            .unwrap_or_else(|| backoff(policy.base, attempt));
        tracing::warn!(
            what,
            attempt,
            error = %error,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "outbound call failed, retrying"
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// 429 and 5xx may succeed later; other statuses will not.
pub fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` in delay-seconds form; the HTTP-date form is ignored (backoff applies).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A provider's error text fit for a log line or an error message: trimmed, cut to
/// [`MAX_ERROR_TEXT`] characters, or the status (e.g. `404 Not Found`) when empty.
pub fn clip_message(status: StatusCode, text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return status.to_string();
    }
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The error and its causes on one line, without the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A provider's message from an error body: `{error: {message}}` (OpenAI, Pinecone's control
/// plane, Stripe), `{message}` (Pinecone's data plane), `{error: ".."}`, `{detail: ".."}`, a
/// JSON string, or plain text; trimmed and clipped by [`clip_message`].
pub fn provider_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let message = v
            .pointer("/error/message")
            .and_then(serde_json::Value::as_str)
            .or_else(|| v.get("message").and_then(serde_json::Value::as_str))
            .or_else(|| v.get("error").and_then(serde_json::Value::as_str))
            .or_else(|| v.get("detail").and_then(serde_json::Value::as_str))
            .or_else(|| v.as_str());
        if let Some(m) = message
            && !m.trim().is_empty()
        {
            return clip_message(status, m);
        }
    }
    clip_message(status, &String::from_utf8_lossy(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(1),
        }
    }

    fn client() -> reqwest::Client {
        http_client(Duration::from_secs(5)).expect("client builds")
    }

    #[test]
    fn default_policy_is_three_attempts_from_200ms() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts, 3);
        assert_eq!(p.base, Duration::from_millis(200));
    }

    #[test]
    fn backoff_doubles_with_at_most_half_jitter() {
        let base = Duration::from_millis(100);
        for _ in 0..50 {
            let first = backoff(base, 1);
            assert!(first >= base && first <= base * 3 / 2, "{first:?}");
            let third = backoff(base, 3);
            assert!(third >= base * 4 && third <= base * 6, "{third:?}");
        }
        // Huge attempt numbers saturate instead of overflowing.
        let _ = backoff(Duration::from_secs(1), u32::MAX);
        assert_eq!(backoff(Duration::ZERO, 5), Duration::ZERO);
    }

    #[tokio::test]
    async fn success_returns_status_and_body_in_one_attempt() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/ok"))
            .respond_with(ResponseTemplate::new(201).set_body_string("made"))
            .expect(1)
            .mount(&server)
            .await;
        let http = client();
        let url = format!("{}/ok", server.uri());
        let (status, body) = send_with_retries(&fast(), "test", || http.get(&url))
            .await
            .expect("2xx");
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body, b"made");
    }

    #[tokio::test]
    async fn server_errors_are_retried_then_succeed() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(502))
            .up_to_n_times(2)
            .expect(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .expect(1)
            .mount(&server)
            .await;
        let http = client();
        let url = server.uri();
        let (status, _) = send_with_retries(&fast(), "test", || http.get(&url))
            .await
            .expect("third attempt succeeds");
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn rate_limit_exhausts_attempts_and_returns_the_last_status() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).set_body_string("slow down"))
            .expect(3)
            .mount(&server)
            .await;
        let http = client();
        let url = server.uri();
        let err = send_with_retries(&fast(), "test", || http.get(&url))
            .await
            .expect_err("always 429");
        match err {
            OutboundError::Status { status, body } => {
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
                assert_eq!(body, b"slow down");
            }
            other => panic!("expected Status, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(404).set_body_string("nope"))
            .expect(1)
            .mount(&server)
            .await;
        let http = client();
        let url = server.uri();
        let err = send_with_retries(&fast(), "test", || http.get(&url))
            .await
            .expect_err("404");
        assert!(
            matches!(&err, OutboundError::Status { status, .. } if *status == StatusCode::NOT_FOUND),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn retry_after_seconds_is_honoured() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "1"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200))
            .expect(1)
            .mount(&server)
            .await;
        let http = client();
        let url = server.uri();
        let started = Instant::now();
        send_with_retries(&fast(), "test", || http.get(&url))
            .await
            .expect("second attempt succeeds");
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "waited only {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn clip_message_trims_cuts_and_falls_back_to_the_status() {
        assert_eq!(clip_message(StatusCode::BAD_REQUEST, "  bad  "), "bad");
        assert_eq!(clip_message(StatusCode::NOT_FOUND, " \n"), "404 Not Found");
        let long = "é".repeat(MAX_ERROR_TEXT + 10);
        let clipped = clip_message(StatusCode::BAD_REQUEST, &long);
        assert_eq!(clipped.chars().count(), MAX_ERROR_TEXT + 1);
        assert!(clipped.ends_with('…'));
    }

    #[test]
    fn retry_after_parses_seconds_only() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("Retry-After", " 7 ".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            "Retry-After",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[tokio::test]
    async fn unreachable_host_is_a_transport_error_after_all_attempts() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let http = client();
        let url = format!("http://127.0.0.1:{port}/secret-path");
        let err = send_with_retries(&fast(), "test", || http.get(&url))
            .await
            .expect_err("nothing listens");
        match err {
            OutboundError::Transport(message) => {
                assert!(!message.contains("secret-path"), "{message}");
            }
            other => panic!("expected Transport, got {other:?}"),
        }
    }

    #[test]
    fn provider_messages_come_from_every_common_error_shape() {
        let s = StatusCode::BAD_REQUEST;
        for (body, want) in [
            (
                &br#"{"error":{"message":"bad input","type":"invalid_request_error","code":null}}"#
                    [..],
                "bad input",
            ),
            (br#"{"error":"model not found"}"#, "model not found"),
            (br#"{"object":"error","message":"too long"}"#, "too long"),
            (br#"{"detail":"Not Found"}"#, "Not Found"),
            (br#"{"code":3,"message":"bad dim","details":[]}"#, "bad dim"),
            (
                br#"{"error":{"code":"INVALID_ARGUMENT","message":"bad name"},"status":400}"#,
                "bad name",
            ),
            (br#""Unauthorized""#, "Unauthorized"),
            (b"oops", "oops"),
            (b"", "400 Bad Request"),
        ] {
            assert_eq!(
                provider_message(s, body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
