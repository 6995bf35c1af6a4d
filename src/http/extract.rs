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

/// The media type of an HTML form post.
pub const FORM: &str = "application/x-www-form-urlencoded";

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
        parse_query(parts.uri.query().unwrap_or_default()).map(QueryParams)
    }
}

/// A query string's parameters, or a JSON 400 naming the one of the wrong type.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
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
        // serde_json reports a value of the wrong kind for an enum (`{"role": 7}`) as a syntax
        // error; the body is valid JSON then, and the field is what is wrong.
        let malformed = (inner.is_syntax() || inner.is_eof())
            && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err();
        let (code, message) = if malformed {
            (
                "invalid_json",
                format!("the body is not valid JSON: {inner}"),
            )
        } else {
            let text = if inner.is_syntax() {
                format!("a value of the wrong type ({inner})")
            } else {
                inner.to_string()
            };
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

impl ClientIp {
    /// The key rate limits and sign-in locks count by: the address itself, or for IPv6 its /64
    /// (one customer's network, which can hand its hosts any of 2^64 addresses).
    pub fn key(&self) -> String {
        client_key(self.0)
    }
}

/// See [`ClientIp::key`]. An IPv4 address mapped into IPv6 is the IPv4 address.
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
    }
}

/// One `X-Forwarded-For` hop: an address, or an address with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// Pure rule behind [`ClientIp`]: walking the hops from the right (the nearest proxy first),
/// trusted proxies are passed over and the first other address is the client. A hop that is not
/// an address stops the walk: the trusted proxy that sent it is then the client, never a hop
/// further left that anyone could have written.
pub fn client_ip(peer: IpAddr, forwarded_headers: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_headers
        .iter()
        .flat_map(|h| h.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(&ip) => client = ip,
            Some(ip) => return ip,
            None => return client,
        }
    }
    client
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
        let (m, f) = error_of(r#"{"email": "a", "inner": {"n": true}}"#);
        assert!(m.starts_with("inner.n: invalid type"), "{m}");
        assert_eq!(f.as_deref(), Some("inner.n"));
        let (m, f) = error_of("{");
        assert!(m.starts_with("the body is not valid JSON"), "{m}");
        assert_eq!(f, None);
    }

    #[test]
    fn a_wrong_kind_of_value_for_an_enum_is_a_field_error_not_bad_json() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        #[serde(rename_all = "snake_case")]
        enum Kind {
            Member,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct WithKind {
            kind: Kind,
        }
        let e = parse_json::<WithKind>(br#"{"kind": 7}"#).unwrap_err();
        assert_eq!(e.code, "invalid_field");
        assert_eq!(e.field.as_deref(), Some("kind"));
        assert!(
            e.message.starts_with("kind: a value of the wrong type"),
            "{}",
            e.message
        );
        let e = parse_json::<WithKind>(br#"{"kind": 7"#).unwrap_err();
        assert_eq!(e.code, "invalid_json");
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

    #[test]
    fn an_unparsable_hop_stops_the_walk_at_the_proxy_that_sent_it() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // Skipping "unknown" would believe 6.6.6.6, which the client itself wrote.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["6.6.6.6, unknown"], &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["6.6.6.6, garbage, 10.0.0.7"], &trusted),
            ip("10.0.0.7"),
            "the last trusted hop that was read is the client"
        );
        // Hops with ports are addresses too.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["198.51.100.7:4711"], &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["[2001:db8::7]:4711"], &trusted),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(client_key(ip("203.0.113.9")), "203.0.113.9");
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff::9")),
            "one /64, one key"
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
    }
}
