//! Signing in to the console: `GET/POST /admin/login` trades `ADMIN_TOKEN` for a server-side
//! session (the cookie holds 32 random bytes; the database only their SHA-256, with the CSRF
//! token), `POST /admin/logout` ends it. [`SignedIn`] is the signed-in operator every page
//! extracts (or a redirect to the sign-in page); [`CheckedForm`] a console form whose CSRF token
//! matched the session's. Wrong tokens are audited and locked out as customers' wrong passwords
//! are (per client address, `login_attempts`).

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::render;
use crate::domain::audit::{Action, Actor};
use crate::http::AppState;
use crate::http::error::{ApiError, AppResult};
use crate::http::extract::{ClientIp, read_body};
use crate::http::login::session::{cookie, secure_cookies};
use crate::store::{AuditEntry, now_ms};
use crate::workspace::sessions::AttemptCheck;
use crate::workspace::token_hash;

/// The session cookie over plain http (development on a loopback address).
pub const COOKIE: &str = "onboard_operator";
/// Over https: the `__Host-` prefix makes browsers refuse it unless `Secure`, for `Path=/`, from
/// this very host.
pub const SECURE_COOKIE: &str = "__Host-onboard_operator";
/// How long a console session lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3_600_000;
/// The key the sign-in lock counts wrong tokens under (with the client's address), in the
/// table that counts customers' wrong passwords by email.
const ATTEMPT_KEY: &str = "operator console";

fn cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}

/// `Set-Cookie` for a console session (`token` empty and `max_age_secs` 0: its deletion);
/// `secure` when APP_URL is https. `SameSite=Strict`: no other site's link or form carries it.
fn session_cookie(secure: bool, token: &str, max_age_secs: i64) -> String {
    let attribute = if secure { "; Secure" } else { "" };
    format!(
        "{}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{attribute}",
        cookie_name(secure),
        max_age_secs.max(0)
    )
}

fn with_cookie(mut resp: Response, cookie: &str) -> Response {
    match HeaderValue::from_str(cookie) {
        Ok(v) => {
            resp.headers_mut().insert(header::SET_COOKIE, v);
            resp
        }
        Err(e) => ApiError::internal("console cookie", e).into_response(),
    }
}

/// The signed-in operator: the session's hash and its CSRF token.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// What the page's forms carry in their `csrf` field.
    pub csrf: String,
    id_hash: String,
}

impl SignedIn {
    /// The operator the request's cookie names, or the answer for a visitor who is not one: a
    /// redirect to the sign-in page (which comes back to `path` after).
    pub async fn from_headers(
        state: &AppState,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<SignedIn, Response> {
        let session = match cookie(headers, cookie_name(secure_cookies(state))) {
            Some(token) if state.settings.admin_token.is_some() => {
                let id_hash = token_hash(&token);
                match state.store.operator_session(&id_hash, now_ms()).await {
                    Ok(s) => s.map(|s| SignedIn {
                        csrf: s.csrf_token,
                        id_hash,
                    }),
                    Err(e) => return Err(ApiError::from(e).into_response()),
                }
            }
            _ => None,
        };
        session.ok_or_else(|| {
            let next = super::query_string(&[("next", Some(path))]);
            Redirect::to(&format!("/admin/login?{next}")).into_response()
        })
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let path = parts
            .uri
            .path_and_query()
            .map_or("/admin", |p| p.as_str())
            .to_string();
        SignedIn::from_headers(state, &parts.headers, &path).await
    }
}

/// A console form post from the signed-in operator whose `csrf` field matches the session's;
/// a visitor without a session is sent to sign in, a missing or wrong token is a 403.
pub struct CheckedForm {
    pub operator: SignedIn,
    fields: Vec<(String, String)>,
}

impl CheckedForm {
    /// The first value of `name`, trimmed; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// Form fields in order; decoding is lossy, so no body is malformed.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Whether the form's token is the session's (constant time).
fn csrf_matches(sent: Option<&str>, expected: &str) -> bool {
    sent.is_some_and(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())))
}

impl FromRequest<AppState> for CheckedForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let operator = SignedIn::from_request_parts(&mut parts, state).await?;
        let bytes = read_body(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = CheckedForm {
            operator,
            fields: form_fields(&bytes),
        };
        if !csrf_matches(form.get("csrf"), &form.operator.csrf) {
            return Err(super::problem(
                StatusCode::FORBIDDEN,
                &form.operator,
                "This form cannot be accepted",
                "It did not carry this session's security token (CSRF): it came from an old \
                 page or from somewhere else. Nothing was changed. Open the page again and \
                 repeat the action.",
                ("/admin", "Back to the overview"),
            ));
        }
        Ok(form)
    }
}

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage<'a> {
    /// False when no ADMIN_TOKEN is set: the page says so instead of showing the form.
    enabled: bool,
    error: Option<&'a str>,
    next: &'a str,
}

/// Where to go after signing in: a console address, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/admin") && !n.starts_with("/admin/login") => n,
        _ => "/admin",
    }
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /admin/login`: the sign-in form (or, signed in already, the console).
pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if SignedIn::from_headers(&state, &headers, next).await.is_ok() {
        return Redirect::to(next).into_response();
    }
    let enabled = state.settings.admin_token.is_some();
    let status = if enabled {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    render(
        status,
        &LoginPage {
            enabled,
            error: None,
            next,
        },
    )
}

/// `POST /admin/login` (form: `token`, `next`): a session and the console, or the form again
/// with what went wrong.
pub async fn login(State(state): State<AppState>, ip: ClientIp, req: Request) -> Response {
    let body = match read_body(req, &state).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let fields = form_fields(&body);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let next = safe_next(field("next")).to_string();
    let again = |status: StatusCode, error: &str| {
        render(
            status,
            &LoginPage {
                enabled: true,
                error: Some(error),
                next: &next,
            },
        )
    };
    let Some(expected) = state.settings.admin_token.as_ref() else {
        return render(
            StatusCode::FORBIDDEN,
            &LoginPage {
                enabled: false,
                error: None,
                next: &next,
            },
        );
    };
    let typed = field("token").unwrap_or_default().trim();
    if typed.is_empty() {
        return again(
            StatusCode::BAD_REQUEST,
            "Enter the operator token (ADMIN_TOKEN).",
        );
    }
    match sign_in(&state, &ip, typed, expected.expose_secret()).await {
        Ok(token) => with_cookie(
            Redirect::to(&next).into_response(),
            &session_cookie(secure_cookies(&state), &token, SESSION_TTL_MS / 1000),
        ),
        // Refused: the form again, saying why (and when to try again).
        Err(e) if e.status.is_client_error() => {
            let mut resp = again(e.status, &e.message);
            if let Some(secs) = e.retry_after_secs {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// Checks the typed token under the sign-in lock: the new session's cookie token, or a 401
/// (wrong) or 429 (locked) saying so. Every attempt that got this far is audited.
async fn sign_in(
    state: &AppState,
    ip: &ClientIp,
    typed: &str,
    expected: &str,
) -> AppResult<String> {
    let now = now_ms();
    let (attempt, check) = state
        .store
        .begin_login_attempt(
            ATTEMPT_KEY,
            &ip.key(),
            state.settings.login_failures_per_ip,
            now,
        )
        .await?;
    let audit = |action, reason: Option<&str>| {
        let actor = match reason {
            None => Actor::Operator,
            Some(_) => Actor::Anonymous,
        };
        let mut entry = AuditEntry::new(actor, action)
            .ip(Some(ip.0))
            .with("method", "admin_token");
        if let Some(r) = reason {
            entry = entry.with("reason", r);
        }
        entry
    };
    let locked = |until: i64| {
        let secs = u64::try_from((until - now + 999) / 1000)
            .unwrap_or(1)
            .max(1);
        ApiError::too_many_requests(
            format!(
                "Too many wrong tokens from your network: sign-in is paused for {} more \
                 minute(s).",
                secs.div_ceil(60)
            ),
            secs,
        )
    };
    match check {
        AttemptCheck::Allowed => {}
        AttemptCheck::Locked { until } | AttemptCheck::AddressLimited { until } => {
            state
                .store
                .audit(&audit(Action::LoginFailed, Some("locked")))
                .await?;
            return Err(locked(until));
        }
    }
    if !bool::from(typed.as_bytes().ct_eq(expected.as_bytes())) {
        state
            .store
            .audit(&audit(Action::LoginFailed, Some("invalid_token")))
            .await?;
        return Err(
            match state
                .store
                .login_locked_after(&attempt, true, now_ms())
                .await?
            {
                Some(until) => locked(until),
                None => ApiError::unauthorized(
                    "That is not the operator token. Check ADMIN_TOKEN and try again.",
                ),
            },
        );
    }
    state.store.forget_login_attempt(&attempt).await?;
    let token = crate::workspace::random_token(32);
    let csrf = crate::workspace::random_token(32);
    let now = now_ms();
    let ip_text = ip.0.to_canonical().to_string();
    state
        .store
        .start_operator_session(
            &token_hash(&token),
            &csrf,
            Some(&ip_text),
            now,
            now + SESSION_TTL_MS,
        )
        .await?;
    state
        .store
        .audit(&audit(Action::LoginSucceeded, None))
        .await?;
    tracing::info!("operator console session started");
    Ok(token)
}

/// `POST /admin/logout` (a console form): ends the session, back to the sign-in page.
pub async fn logout(State(state): State<AppState>, form: CheckedForm) -> AppResult<Response> {
    state
        .store
        .end_operator_session(&form.operator.id_hash, now_ms())
        .await?;
    Ok(with_cookie(
        Redirect::to("/admin/login").into_response(),
        &session_cookie(secure_cookies(&state), "", 0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_host_only_strict_and_secure_on_https() {
        assert_eq!(
            session_cookie(true, "tok", 43_200),
            "__Host-onboard_operator=tok; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            session_cookie(false, "", -5),
            "onboard_operator=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn after_sign_in_only_console_addresses() {
        assert_eq!(safe_next(Some("/admin/tenants?q=x")), "/admin/tenants?q=x");
        for other in [
            None,
            Some("https://evil.example/admin"),
            Some("//evil.example"),
            Some("/account"),
            Some("/admin/login?next=/admin"),
        ] {
            assert_eq!(safe_next(other), "/admin", "{other:?}");
        }
    }

    #[test]
    fn a_form_token_must_equal_the_sessions() {
        assert!(csrf_matches(Some("abc"), "abc"));
        assert!(!csrf_matches(Some("abd"), "abc"));
        assert!(!csrf_matches(Some(""), "abc"));
        assert!(!csrf_matches(None, "abc"));
    }

    #[test]
    fn form_fields_decode_in_order() {
        assert_eq!(
            form_fields(b"csrf=a%2Bb&note=hi+there&csrf=second"),
            [
                ("csrf".to_string(), "a+b".to_string()),
                ("note".into(), "hi there".into()),
                ("csrf".into(), "second".into())
            ]
        );
    }
}
