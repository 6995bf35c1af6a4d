//! Thin typed Stripe client: create and retrieve Checkout Sessions.
//!
//! Exact request: `tests/fixtures/contracts/stripe_checkout_create_request.json`. Transport errors, 429 and
//! 5xx are retried (3 attempts in all, exponential backoff with jitter) with the same
//! `Idempotency-Key`, so Stripe replays instead of creating a second session.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::outbound::{self, OutboundError, RetryPolicy};

/// The API version every request pins, so a dashboard upgrade cannot change response shapes.
pub const STRIPE_API_VERSION: &str = "2026-10-28.endive";

/// Per-attempt timeout: a slow Stripe must slow one tenant down, never the service.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Stripe's documented limit for `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Client for the few Stripe endpoints onboard uses.
#[derive(Debug, Clone)]
pub struct StripeClient {
    /// `Err` when the HTTP client could not be built (e.g. no system root certificates); every
    /// call then fails with that reason instead of panicking at construction.
    http: Result<reqwest::Client, String>,
    base: Url,
    secret_key: SecretString,
    retry: RetryPolicy,
}

/// What we ask Stripe for when a tenant starts paying.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub tenant_id: String,
    pub plan: String,
    pub price_id: String,
    pub customer_email: String,
    pub success_url: String,
    pub cancel_url: String,
    /// `subscription_data[trial_period_days]`; 0 leaves the field out.
    pub trial_days: u32,
}

/// The fields of a Checkout Session that onboard reads.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
pub struct CheckoutSession {
    pub id: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub payment_status: Option<String>,
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub subscription: Option<String>,
    #[serde(default)]
    pub client_reference_id: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    #[serde(default)]
    pub customer_email: Option<String>,
}

/// Why a Stripe call failed.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Stripe (or our own pre-flight check, without a request) refused the call.
    #[error("Stripe answered {status}: {message}")]
    Api {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// No answer after every attempt (connect error, timeout, broken body).
    #[error("could not reach Stripe: {0}")]
    Transport(String),
    /// A 2xx answer we could not read.
    #[error("unexpected answer from Stripe: {0}")]
    Decode(String),
}

/// Stripe's error body: `{"error": {"message", "code", "type"}}`.
#[derive(Debug, serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, serde::Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl StripeClient {
    /// A client for `base` (`https://api.stripe.com` in production) with a 10 s timeout.
    ///
    /// Never panics: if the HTTP client cannot be built, the reason is logged and every call
    /// returns it as [`StripeError::Transport`]. Retries follow [`RetryPolicy::default`].
    pub fn new(base: Url, secret_key: SecretString) -> Self {
        let http = outbound::http_client(REQUEST_TIMEOUT).map_err(|e| {
            tracing::error!(error = %e, "could not build the Stripe HTTP client");
            e
        });
        Self {
            http,
            base,
            secret_key,
            retry: RetryPolicy::default(),
        }
    }

    /// Replaces the retry policy (tests use a ~1 ms base).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// POST {base}/v1/checkout/sessions, form body as in the contract, headers Authorization: Bearer, Content-Type application/x-www-form-urlencoded, Idempotency-Key, Stripe-Version.
    #[tracing::instrument(skip_all, fields(tenant_id = %req.tenant_id, plan = %req.plan))]
    pub async fn create_checkout_session(
        &self,
        req: &CheckoutRequest,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, StripeError> {
        // Checked here so a bad key is a clear local rejection naming the rule, not an opaque
        // request-builder error.
        if idempotency_key.is_empty()
            || idempotency_key.len() > MAX_IDEMPOTENCY_KEY_LEN
            || !idempotency_key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(local_rejection(
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            ));
        }
        let url = self.endpoint(&["v1", "checkout", "sessions"])?;
        let body = checkout_form_body(req);
        self.send_with_retries(|http| {
            http.post(url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header("Idempotency-Key", idempotency_key)
                .body(body.clone())
        })
        .await
    }

    /// GET {base}/v1/checkout/sessions/{id}
    #[tracing::instrument(skip_all, fields(session_id = %id))]
    pub async fn retrieve_checkout_session(
        &self,
        id: &str,
    ) -> Result<CheckoutSession, StripeError> {
        // The id comes from a browser (success page); allow only Stripe's id alphabet so nothing
        // can be smuggled into the path.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(local_rejection("invalid Checkout Session id"));
        }
        let url = self.endpoint(&["v1", "checkout", "sessions", id])?;
        self.send_with_retries(|http| http.get(url.clone())).await
    }

    /// POST {base}/v1/billing_portal/sessions: a Customer Portal session for `customer`, coming
    /// back to `return_url`. Returns the portal's URL.
    #[tracing::instrument(skip_all, fields(customer = %customer))]
    pub async fn create_billing_portal_session(
        &self,
        customer: &str,
        return_url: &str,
    ) -> Result<String, StripeError> {
        check_id(customer)?;
        let url = self.endpoint(&["v1", "billing_portal", "sessions"])?;
        let body = form_body(&[("customer", customer), ("return_url", return_url)]);
        let session: UrlObject = self.post_form(url, body, None).await?;
        Ok(session.url)
    }

    /// GET {base}/v1/subscriptions/{id}: the subscription's current status.
    #[tracing::instrument(skip_all, fields(subscription = %id))]
    pub async fn retrieve_subscription_status(&self, id: &str) -> Result<String, StripeError> {
        check_id(id)?;
        let url = self.endpoint(&["v1", "subscriptions", id])?;
        #[derive(serde::Deserialize)]
        struct Status {
            status: String,
        }
        let s: Status = self.send_with_retries(|http| http.get(url.clone())).await?;
        Ok(s.status)
    }

    /// DELETE {base}/v1/subscriptions/{id}: cancels the subscription now (Stripe then sends
    /// `customer.subscription.deleted`).
    #[tracing::instrument(skip_all, fields(subscription = %id))]
    pub async fn cancel_subscription(&self, id: &str) -> Result<(), StripeError> {
        check_id(id)?;
        let url = self.endpoint(&["v1", "subscriptions", id])?;
        let _: serde_json::Value = self
            .send_with_retries(|http| http.delete(url.clone()))
            .await?;
        Ok(())
    }

    /// The enterprise path after sales approval: a Customer for the tenant, and a subscription
    /// to `price` billed by invoice (`collection_method=send_invoice`, due in 30 days) whose
    /// first invoice is finalized so it has a hosted payment page, and sent (Stripe emails the
    /// customer the invoice with its payment link). Every call carries an
    /// idempotency key derived from the tenant, so an approval retried creates nothing twice.
    /// Returns the customer, the subscription and the hosted invoice URL.
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant_id))]
    pub async fn invoice_subscription(
        &self,
        tenant_id: &str,
        email: &str,
        company_name: &str,
        price: &str,
    ) -> Result<InvoicedSubscription, StripeError> {
        let url = self.endpoint(&["v1", "customers"])?;
        let body = form_body(&[
            ("email", email),
            ("name", company_name),
            ("metadata[tenant_id]", tenant_id),
        ]);
        let customer: IdObject = self
            .post_form(url, body, Some(&format!("onboard-{tenant_id}-customer-v1")))
            .await?;
        let url = self.endpoint(&["v1", "subscriptions"])?;
        let body = form_body(&[
            ("customer", &customer.id),
            ("items[0][price]", price),
            ("collection_method", "send_invoice"),
            ("days_until_due", "30"),
            ("metadata[tenant_id]", tenant_id),
            ("expand[0]", "latest_invoice"),
        ]);
        let sub: SubscriptionWithInvoice = self
            .post_form(
                url,
                body,
                Some(&format!("onboard-{tenant_id}-subscription-v1")),
            )
            .await?;
        let invoice = sub
            .latest_invoice
            .ok_or_else(|| StripeError::Decode("the subscription has no invoice".into()))?;
        check_id(&invoice.id)?;
        let hosted = match invoice.hosted_invoice_url {
            Some(u) => u,
            None => {
                let url = self.endpoint(&["v1", "invoices", &invoice.id, "finalize"])?;
                let finalized: InvoiceObject = self
                    .post_form(
                        url,
                        String::new(),
                        Some(&format!("onboard-{tenant_id}-finalize-v1")),
                    )
                    .await?;
                finalized.hosted_invoice_url.ok_or_else(|| {
                    StripeError::Decode("the finalized invoice has no hosted_invoice_url".into())
                })?
            }
        };
        // Stripe emails the customer the invoice with its payment link.
        let url = self.endpoint(&["v1", "invoices", &invoice.id, "send"])?;
        let _: serde_json::Value = self
            .post_form(
                url,
                String::new(),
                Some(&format!("onboard-{tenant_id}-send-invoice-v1")),
            )
            .await?;
        Ok(InvoicedSubscription {
            customer: customer.id,
            subscription: sub.id,
            hosted_invoice_url: hosted,
        })
    }

    /// A form POST under the retry policy.
    async fn post_form<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
        body: String,
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        self.send_with_retries(|http| {
            let req = http
                .post(url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body.clone());
            match idempotency_key {
                Some(key) => req.header("Idempotency-Key", key),
                None => req,
            }
        })
        .await
    }

    /// `base` with `segments` appended, keeping any path prefix the base already has.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, StripeError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| StripeError::Transport(format!("invalid Stripe base URL {}", self.base)))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Sends the request built by `build` under the retry policy (see
    /// [`outbound::send_with_retries`]) and decodes the answer.
    async fn send_with_retries<T, F>(&self, build: F) -> Result<T, StripeError>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let http = self
            .http
            .as_ref()
            .map_err(|e| StripeError::Transport(e.clone()))?;
        let outcome = outbound::send_with_retries(&self.retry, "Stripe", || {
            build(http)
                .bearer_auth(self.secret_key.expose_secret())
                .header("Stripe-Version", STRIPE_API_VERSION)
        })
        .await;
        match outcome {
            Ok((_, body)) => {
                serde_json::from_slice(&body).map_err(|e| StripeError::Decode(e.to_string()))
            }
            Err(OutboundError::Status { status, body }) => Err(api_error(status, &body)),
            Err(OutboundError::Transport(message)) => Err(StripeError::Transport(message)),
        }
    }
}

/// What [`StripeClient::invoice_subscription`] created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoicedSubscription {
    pub customer: String,
    pub subscription: String,
    pub hosted_invoice_url: String,
}

#[derive(serde::Deserialize)]
struct UrlObject {
    url: String,
}

#[derive(serde::Deserialize)]
struct IdObject {
    id: String,
}

#[derive(serde::Deserialize)]
struct InvoiceObject {
    id: String,
    #[serde(default)]
    hosted_invoice_url: Option<String>,
}

#[derive(serde::Deserialize)]
struct SubscriptionWithInvoice {
    id: String,
    #[serde(default)]
    latest_invoice: Option<InvoiceObject>,
}

/// Ids we put in a path: Stripe's alphabet only.
fn check_id(id: &str) -> Result<(), StripeError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(local_rejection("invalid Stripe object id"));
    }
    Ok(())
}

/// `key=value&…`, values encoded as the SDKs do ([`encode_form_value`]).
pub fn form_body(fields: &[(&str, &str)]) -> String {
    let mut body = String::new();
    for (key, value) in fields {
        if !body.is_empty() {
            body.push('&');
        }
        body.push_str(key);
        body.push('=');
        encode_form_value(value, &mut body);
    }
    body
}

/// The exact form body (pure, unit-tested against the contract's captured body).
///
/// Written by hand rather than with `serde_urlencoded`: the SDKs leave brackets in keys
/// unencoded and encode every value byte outside `A-Z a-z 0-9 - . _ *`, and the contract
/// asks for their bytes exactly.
pub fn checkout_form_body(req: &CheckoutRequest) -> String {
    let fields: [(&str, &str); 10] = [
        ("mode", "subscription"),
        ("line_items[0][price]", &req.price_id),
        ("line_items[0][quantity]", "1"),
        ("success_url", &req.success_url),
        ("cancel_url", &req.cancel_url),
        ("client_reference_id", &req.tenant_id),
        ("customer_email", &req.customer_email),
        ("metadata[tenant_id]", &req.tenant_id),
        ("metadata[plan]", &req.plan),
        // Session metadata is not copied to the subscription; later invoices need the tenant.
        ("subscription_data[metadata][tenant_id]", &req.tenant_id),
    ];
    let trial = (req.trial_days > 0).then(|| req.trial_days.to_string());
    let trial_field = trial
        .as_deref()
        .map(|days| ("subscription_data[trial_period_days]", days));
    let all: Vec<(&str, &str)> = fields.into_iter().chain(trial_field).collect();
    form_body(&all)
}

/// Percent-encodes `value` into `out`: only `A-Z a-z 0-9 - . _ *` stay as they are, so a '+' in
/// an email is sent as %2B (a bare '+' would decode to a space) and a space as %20.
fn encode_form_value(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'*') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
    }
}

/// An [`StripeError::Api`] from a non-2xx answer, using Stripe's error shape when present.
fn api_error(status: reqwest::StatusCode, body: &[u8]) -> StripeError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => {
            let message = error
                .message
                .or(error.kind)
                .unwrap_or_else(|| status.to_string());
            (error.code, message)
        }
        Err(_) => (None, status.to_string()),
    };
    StripeError::Api {
        status: status.as_u16(),
        code,
        message,
    }
}

/// A 400 decided before any request was sent.
fn local_rejection(message: &str) -> StripeError {
    StripeError::Api {
        status: 400,
        code: None,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use wiremock::matchers::{body_string, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const CONTRACT: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/contracts/stripe_checkout_create_request.json"
    ));
    const IDEMPOTENCY_KEY: &str = "onboard-tenant_01HZX3K9Q8W7-checkout-v1";

    fn contract() -> Value {
        serde_json::from_str(CONTRACT).expect("contract is valid JSON")
    }

    fn contract_body() -> String {
        contract()["captures"][0]["body"]
            .as_str()
            .expect("captures[0].body is a string")
            .to_owned()
    }

    fn alice() -> CheckoutRequest {
        CheckoutRequest {
            tenant_id: "tenant_01HZX3K9Q8W7".into(),
            plan: "pro".into(),
            price_id: "price_TestPro".into(),
            customer_email: "alice+test@example.com".into(),
            success_url: "https://app.example.com/signup/success?session_id={CHECKOUT_SESSION_ID}"
                .into(),
            cancel_url: "https://app.example.com/signup/cancel".into(),
            trial_days: 0,
        }
    }

    #[test]
    fn a_trial_adds_trial_period_days_after_the_contract_fields() {
        let body = checkout_form_body(&CheckoutRequest {
            trial_days: 14,
            ..alice()
        });
        assert_eq!(
            body,
            format!(
                "{}&subscription_data[trial_period_days]=14",
                contract_body()
            )
        );
    }

    fn client_for(server: &MockServer) -> StripeClient {
        let base = Url::parse(&server.uri()).expect("mock server uri");
        StripeClient::new(base, SecretString::from("sk_test_123")).with_retry(RetryPolicy {
            base: Duration::from_millis(1),
            ..RetryPolicy::default()
        })
    }

    /// wiremock binds 127.0.0.1; plain http, since no TLS is needed (or possible) in tests.
    async fn server() -> MockServer {
        MockServer::start().await
    }

    fn session_json() -> Value {
        json!({
            "id": "cs_test_abc123",
            "object": "checkout.session",
            "url": null,
            "status": "complete",
            "payment_status": "paid",
            "customer": "cus_123",
            "subscription": "sub_123",
            "client_reference_id": "tenant_01HZX3K9Q8W7",
            "customer_email": "alice+test@example.com",
            "metadata": {"tenant_id": "tenant_01HZX3K9Q8W7", "plan": "pro"},
            "amount_total": 4900
        })
    }

    #[test]
    fn form_body_matches_the_sdk_capture_byte_for_byte() {
        assert_eq!(checkout_form_body(&alice()), contract_body());
        // Both SDKs agree; guard against the contract drifting apart.
        assert_eq!(contract_body(), contract()["captures"][1]["body"]);
    }

    #[test]
    fn form_values_encode_space_and_non_ascii() {
        let mut out = String::new();
        encode_form_value("a b~é*-._", &mut out);
        assert_eq!(out, "a%20b%7E%C3%A9*-._");
    }

    #[tokio::test]
    async fn create_sends_the_contract_request_and_parses_the_session() {
        let server = server().await;
        let canned = contract()["canned_response_used_by_capture_server"].clone();
        Mock::given(method("POST"))
            .and(path("/v1/checkout/sessions"))
            .and(header("Authorization", "Bearer sk_test_123"))
            .and(header("Content-Type", "application/x-www-form-urlencoded"))
            .and(header("Idempotency-Key", IDEMPOTENCY_KEY))
            .and(header("Stripe-Version", STRIPE_API_VERSION))
            .and(body_string(contract_body()))
            .respond_with(ResponseTemplate::new(200).set_body_json(&canned))
            .expect(1)
            .mount(&server)
            .await;

        let session = client_for(&server)
            .create_checkout_session(&alice(), IDEMPOTENCY_KEY)
            .await
            .expect("checkout session is created");

        assert_eq!(session.id, "cs_test_captured123");
        assert_eq!(
            session.url.as_deref(),
            Some("https://checkout.stripe.com/c/pay/cs_test_captured123#fid")
        );
        assert!(session.metadata.is_empty());
    }

    #[tokio::test]
    async fn server_error_is_retried_with_the_same_idempotency_key() {
        let server = server().await;
        Mock::given(method("POST"))
            .and(path("/v1/checkout/sessions"))
            .respond_with(ResponseTemplate::new(500).set_body_json(
                json!({"error": {"message": "An unknown error occurred", "type": "api_error"}}),
            ))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/checkout/sessions"))
            .respond_with(ResponseTemplate::new(200).set_body_json(session_json()))
            .expect(1)
            .mount(&server)
            .await;

        let session = client_for(&server)
            .create_checkout_session(&alice(), IDEMPOTENCY_KEY)
            .await
            .expect("second attempt succeeds");
        assert_eq!(session.id, "cs_test_abc123");

        let requests = server.received_requests().await.expect("recording is on");
        assert_eq!(requests.len(), 2);
        for request in &requests {
            assert_eq!(
                request.headers.get("Idempotency-Key").map(|v| v.as_bytes()),
                Some(IDEMPOTENCY_KEY.as_bytes())
            );
            assert_eq!(request.body, contract_body().as_bytes());
        }
    }

    #[tokio::test]
    async fn rate_limit_gives_up_after_three_attempts() {
        let server = server().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).set_body_json(json!({
                "error": {"message": "Too many requests", "code": "rate_limit", "type": "invalid_request_error"}
            })))
            .expect(3)
            .mount(&server)
            .await;

        let err = client_for(&server)
            .create_checkout_session(&alice(), IDEMPOTENCY_KEY)
            .await
            .expect_err("every attempt is rate limited");
        assert!(
            matches!(&err, StripeError::Api { status: 429, code: Some(c), .. } if c == "rate_limit"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn client_error_is_returned_at_once_with_stripes_message() {
        let server = server().await;
        Mock::given(method("POST"))
            .and(path("/v1/checkout/sessions"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "error": {
                    "message": "No such price: 'price_TestPro'",
                    "code": "resource_missing",
                    "type": "invalid_request_error"
                }
            })))
            .expect(1)
            .mount(&server)
            .await;

        let err = client_for(&server)
            .create_checkout_session(&alice(), IDEMPOTENCY_KEY)
            .await
            .expect_err("Stripe refused");

        match &err {
            StripeError::Api {
                status,
                code,
                message,
            } => {
                assert_eq!(*status, 400);
                assert_eq!(code.as_deref(), Some("resource_missing"));
                assert_eq!(message, "No such price: 'price_TestPro'");
            }
            other => panic!("expected an Api error, got {other:?}"),
        }
        let requests = server.received_requests().await.expect("recording is on");
        assert_eq!(requests.len(), 1, "a 400 must not be retried");
    }

    #[tokio::test]
    async fn unreachable_stripe_is_a_transport_error_after_retries() {
        // Bind then drop, so the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let base = Url::parse(&format!("http://127.0.0.1:{port}")).expect("url");
        let err = StripeClient::new(base, SecretString::from("sk_test_123"))
            .with_retry(RetryPolicy {
                base: Duration::from_millis(1),
                ..RetryPolicy::default()
            })
            .retrieve_checkout_session("cs_test_abc123")
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, StripeError::Transport(_)), "{err:?}");
        assert!(!err.to_string().contains("sk_test_123"));
    }

    #[tokio::test]
    async fn retrieve_parses_the_session_and_refuses_path_injection() {
        let server = server().await;
        Mock::given(method("GET"))
            .and(path("/v1/checkout/sessions/cs_test_abc123"))
            .and(header("Authorization", "Bearer sk_test_123"))
            .and(header("Stripe-Version", STRIPE_API_VERSION))
            .respond_with(ResponseTemplate::new(200).set_body_json(session_json()))
            .expect(1)
            .mount(&server)
            .await;
        let client = client_for(&server);

        let session = client
            .retrieve_checkout_session("cs_test_abc123")
            .await
            .expect("session is retrieved");
        assert_eq!(
            session,
            CheckoutSession {
                id: "cs_test_abc123".into(),
                url: None,
                status: Some("complete".into()),
                payment_status: Some("paid".into()),
                customer: Some("cus_123".into()),
                subscription: Some("sub_123".into()),
                client_reference_id: Some("tenant_01HZX3K9Q8W7".into()),
                metadata: HashMap::from([
                    ("tenant_id".into(), "tenant_01HZX3K9Q8W7".into()),
                    ("plan".into(), "pro".into()),
                ]),
                customer_email: Some("alice+test@example.com".into()),
            }
        );

        for bad in [
            "../x",
            "",
            "cs_1/../../v1/customers",
            "cs_1?expand=x",
            "cs 1",
        ] {
            let err = client
                .retrieve_checkout_session(bad)
                .await
                .expect_err("bad id is refused");
            assert!(
                matches!(err, StripeError::Api { status: 400, .. }),
                "{bad:?}: {err:?}"
            );
        }
        let requests = server.received_requests().await.expect("recording is on");
        assert_eq!(requests.len(), 1, "refused ids must not reach Stripe");
    }

    #[test]
    fn debug_output_hides_the_secret_key() {
        let client = StripeClient::new(
            Url::parse("http://127.0.0.1:1").expect("url"),
            SecretString::from("sk_test_123"),
        );
        assert!(!format!("{client:?}").contains("sk_test_123"));
    }
}
