//! Request extractors that answer bad input with our JSON errors.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use ipnet::IpNet;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;

/// Largest JSON body we read.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// A JSON body: requires `Content-Type: application/json`, at most 64 KiB, and names the field
/// that failed to deserialize.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&media_type(req.headers())) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        parse_json(&read_body(req, state).await?).map(JsonBody)
    }
}

/// The media type of a request's `Content-Type`, lowercased and without parameters (empty when
/// there is none).
pub fn media_type(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether a (lowercased) media type is JSON: `application/json` or `application/…+json`.
pub fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// The whole body (at most [`MAX_JSON_BODY`]), or a 413 / 400 saying why not.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than {} KiB or could not be read",
                MAX_JSON_BODY / 1024
            ),
        ),
        other => ApiError::bad_request("invalid_body", other.body_text()),
    })
}

/// Query-string parameters: a value of the wrong type is a JSON 400 naming the parameter
/// (axum's own `Query` answers such input in plain text).
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|e| {
                let field = e.path().to_string();
                let err = ApiError::bad_request(
                    "invalid_query_parameter",
                    format!("query parameter {field}: {}", e.into_inner()),
                );
                if field.is_empty() || field == "." {
                    err
                } else {
                    err.with_field(field)
                }
            })
    }
}

/// A path parameter: one that cannot be decoded (say `%FF`, not UTF-8) is a JSON 400 naming the
/// problem (axum's own `Path` answers such input in plain text).
pub struct PathParam<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParam<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| PathParam(v))
            .map_err(|e| ApiError::bad_request("invalid_path_parameter", e.body_text()))
    }
}

/// Deserializes a JSON object, reporting the path of the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body we take is an object; say so plainly for valid JSON of another kind (serde
    // would otherwise talk of sequences and lengths).
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        return Err(ApiError::bad_request(
            "invalid_field",
            "the body must be a JSON object ({\"field\": value, …})",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (code, message) = if inner.is_syntax() || inner.is_eof() {
            (
                "invalid_json",
                format!("the body is not valid JSON: {inner}"),
            )
        } else {
            let text = inner.to_string();
            let at_root = path.is_empty() || path == ".";
            // A missing field is reported at its parent: name the field itself.
            let missing = text
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next());
            match missing {
                Some(name) if at_root => {
                    let err = ApiError::bad_request("invalid_field", format!("{name}: {text}"));
                    return err.with_field(name);
                }
                Some(name) => ("invalid_field", format!("{path}.{name}: {text}")),
                None if at_root => ("invalid_field", text),
                None => ("invalid_field", format!("{path}: {text}")),
            }
        };
        let err = ApiError::bad_request(code, message);
        if path.is_empty() || path == "." || code == "invalid_json" {
            err
        } else {
            err.with_field(path)
        }
    })
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` hop that is not itself a trusted proxy.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::internal("client ip", "no ConnectInfo on the request"))?;
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientIp(client_ip(
            peer,
            &forwarded,
            &state.settings.trusted_proxies,
        )))
    }
}

/// Pure rule behind [`ClientIp`].
pub fn client_ip(peer: IpAddr, forwarded_headers: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = forwarded_headers
        .iter()
        .flat_map(|h| h.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    fn error_of(json: &str) -> (String, Option<String>) {
        let e = parse_json::<Body>(json.as_bytes()).unwrap_err();
        (e.message, e.field)
    }

    #[test]
    fn json_errors_name_what_is_wrong() {
        let (m, f) = error_of("[]");
        assert!(m.starts_with("the body must be a JSON object"), "{m}");
        assert_eq!(f, None);
        for other in ["null", " \"text\"", "[1, 2]", "7"] {
            assert!(
                error_of(other)
                    .0
                    .starts_with("the body must be a JSON object")
            );
        }
        let (m, f) = error_of("{}");
        assert!(m.starts_with("email: missing field"), "{m}");
        assert_eq!(f.as_deref(), Some("email"));
        let (m, f) = error_of(r#"{"email": "a", "inner": {}}"#);
        assert!(m.starts_with("inner.n: missing field"), "{m}");
        assert_eq!(f.as_deref(), Some("inner"));
        let (m, _) = error_of(r#"{"email": 5}"#);
        assert!(m.starts_with("email: invalid type"), "{m}");
        let (m, _) = error_of(r#"{"email": "a", "extra": 1}"#);
        assert!(m.contains("unknown field `extra`"), "{m}");
        assert!(!m.starts_with('.'), "{m}");
        let (m, f) = error_of("{");
        assert!(m.starts_with("the body is not valid JSON"), "{m}");
        assert_eq!(f, None);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(
            client_ip(ip("203.0.113.9"), &["1.2.3.4"], &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_proxy_forwards_rightmost_untrusted_hop() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let got = client_ip(
            ip("10.0.0.2"),
            &["6.6.6.6, 198.51.100.7, 10.0.0.5"],
            &trusted,
        );
        assert_eq!(
            got,
            ip("198.51.100.7"),
            "a client-supplied left-most value is not believed"
        );
    }

    #[test]
    fn trusted_proxy_without_header_is_the_client() {
        let trusted = vec!["127.0.0.1/32".parse().unwrap()];
        assert_eq!(client_ip(ip("127.0.0.1"), &[], &trusted), ip("127.0.0.1"));
        assert_eq!(
            client_ip(ip("127.0.0.1"), &["garbage"], &trusted),
            ip("127.0.0.1")
        );
    }
}
