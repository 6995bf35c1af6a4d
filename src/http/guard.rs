//! What every response carries and every request is checked for, whatever its route:
//! security headers (a Content-Security-Policy with no inline script on HTML, no framing, no
//! MIME sniffing, a referrer policy, HSTS over https), `Cache-Control: no-store` unless a route
//! says otherwise, refusal of cross-site state-changing requests (CSRF), request logs with
//! every token and session id in the URL redacted, and request metrics by route template.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::metrics::Metrics;

/// The policy of HTML pages: scripts and everything else only from this origin (no inline
/// script, no eval), inline styles allowed, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Two years, the preload list's minimum.
const HSTS: &str = "max-age=63072000; includeSubDomains";

/// Settings the middleware needs, shared behind one `Arc`.
pub struct WebPolicy {
    /// `APP_URL` is https: HSTS on.
    pub https: bool,
    /// `APP_URL`, the origin browsers' own requests come from.
    pub app_url: url::Url,
}

/// Adds the security headers, and `no-store` to anything that did not choose its own caching
/// (every dynamic answer here is about one tenant, many carry a secret or a session).
pub async fn secure_headers(
    State(policy): State<Arc<WebPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(request).await;
    let is_html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let h = resp.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("strict-origin-when-cross-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if is_html {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    if policy.https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    resp
}

/// Refuses a state-changing request that a browser says another site made (CSRF): forms and
/// scripts on other sites can make a signed-in visitor's browser send one, cookies included.
/// Requests carrying an `Authorization` header are exempt: their credential is not ambient
/// (a browser never adds it by itself), so no other site can borrow it.
pub async fn refuse_cross_site(
    State(policy): State<Arc<WebPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let unsafe_method = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    // An unsubscribe link carries its own signed token and no cookie: a mail provider posts it
    // (RFC 8058) from wherever it runs.
    if unsafe_method
        && request.uri().path() != "/unsubscribe"
        && !request.headers().contains_key(header::AUTHORIZATION)
        && super::login::is_cross_site(request.headers(), &policy.app_url)
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "this request came from another website; use the onboard pages themselves",
        )
        .into_response();
    }
    next.run(request).await
}

/// Query parameters whose values are secrets.
const SECRET_PARAMS: [&str; 6] = ["token", "session_id", "key", "api_key", "password", "code"];

/// The URI as it may be logged: secret query values and checkout-session path segments are
/// replaced by `[redacted]`.
pub fn redacted_uri(uri: &Uri) -> String {
    let path: Vec<String> = uri
        .path()
        .split('/')
        .map(|seg| {
            if seg.starts_with("cs_") {
                "[redacted]".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect();
    let mut out = path.join("/");
    if let Some(query) = uri.query() {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=[redacted]"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

fn is_secret_param(key: &str) -> bool {
    let decoded = url::form_urlencoded::parse(key.as_bytes())
        .next()
        .map(|(k, _)| k.to_ascii_lowercase())
        .unwrap_or_default();
    SECRET_PARAMS.contains(&decoded.as_str())
}

/// The span of one request in the logs (method and redacted URI; never headers).
pub fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %redacted_uri(request.uri()),
    )
}

/// Counts every request in `onboard_http_requests_total` and times it (until its response
/// starts) in `onboard_http_request_duration_seconds`, under axum's route template
/// (`MatchedPath`: `/tenants/{tenant_id}`, never the raw path, so ids never become series) or
/// `unmatched`. Applied with `Router::layer`, which wraps each route after routing, so the
/// template is known here. Costs the label set's route string and two map lookups; holds no
/// lock across the await.
pub async fn record_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = crate::metrics::method_label(request.method().as_str());
    let route = match request.extensions().get::<axum::extract::MatchedPath>() {
        Some(path) => Cow::Owned(path.as_str().to_owned()),
        None => Cow::Borrowed(crate::metrics::UNMATCHED),
    };
    let response = next.run(request).await;
    metrics.http_request(
        method,
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_sessions_are_redacted_from_logged_uris() {
        let uri: Uri = "/login/magic?token=abc123&x=1".parse().unwrap();
        assert_eq!(redacted_uri(&uri), "/login/magic?token=[redacted]&x=1");
        let uri: Uri = "/onboarding/status?session_id=cs_test_9".parse().unwrap();
        assert_eq!(
            redacted_uri(&uri),
            "/onboarding/status?session_id=[redacted]"
        );
        let uri: Uri = "/dev/checkout/cs_dev_01ABC/pay".parse().unwrap();
        assert_eq!(redacted_uri(&uri), "/dev/checkout/[redacted]/pay");
        let uri: Uri = "/x?TOKEN=a&%74oken=b&tokens=c".parse().unwrap();
        assert_eq!(
            redacted_uri(&uri),
            "/x?TOKEN=[redacted]&%74oken=[redacted]&tokens=c"
        );
        let uri: Uri = "/tenant/tenant_01ABC".parse().unwrap();
        assert_eq!(redacted_uri(&uri), "/tenant/tenant_01ABC");
    }
}
