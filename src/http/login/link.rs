//! "Email me a sign-in link": `POST /login/link` emails a single-use sign-in link that expires
//! in [`LINK_TTL_MINUTES`]. The link is a magic login token, as the welcome email's is, so the
//! existing `/login/magic` flow redeems it (its GET only shows a confirmation; its POST signs
//! in and is audited). Built like "forgot password" ([`super::reset`]): the same answer whether
//! or not the email has an account, and the same limits per client address and per mailbox.

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::reset::{EmailedLink, FormOrJson, email_link};
use super::session::no_store;
use super::{cross_site_refused, is_cross_site};
use crate::email::templates;
use crate::http::AppState;
use crate::http::error::{ApiError, AppResult, ErrorBody};
use crate::http::extract::ClientIp;
use crate::workspace::sessions::TokenPurpose;

/// How long an emailed sign-in link works: short, as it is asked for from the sign-in page and
/// used at once (the welcome email's, which may wait in an inbox, lasts `JWT_EXPIRY_HOURS`).
pub const LINK_TTL_MINUTES: u32 = 15;
/// What every request is told, whether or not the email has an account.
const SENT: &str = "If an account exists for that email, we have sent it a sign-in link. The \
    link works once and expires in 15 minutes.";

/// `POST /login/link` fields, as JSON or an HTML form.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginLinkRequest {
    #[schema(example = "user@example.com", required = true, nullable = false, format = Email,
        max_length = 254)]
    pub email: Option<String>,
}

/// What became of a sign-in link request: always `sent`, so the answer never says whether the
/// email has an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoginLinkStatus {
    Sent,
}

/// The answer to a sign-in link request (JSON).
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginLinkResponse {
    pub status: LoginLinkStatus,
    /// For people: what to expect, worded for known and unknown emails alike.
    pub message: String,
}

/// The form again, with what was wrong (a form post that was refused).
#[derive(Template)]
#[template(path = "login_link.html")]
struct LinkPage<'a> {
    error: Option<&'a str>,
    email: &'a str,
    minutes: u32,
}

/// "Check your inbox" (a form post that was accepted).
#[derive(Template)]
#[template(path = "login_link_sent.html")]
struct LinkSentPage<'a> {
    message: &'a str,
}

fn page(status: StatusCode, html: Result<String, askama::Error>) -> Response {
    match html {
        Ok(html) => {
            let mut resp = (status, Html(html)).into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) => ApiError::internal("render sign-in link page", e).into_response(),
    }
}

/// The form with the error, its status code and, when it has one, its `Retry-After`.
fn form_again(e: &ApiError, email: &str) -> Response {
    let mut resp = page(
        e.status,
        LinkPage {
            error: Some(&e.message),
            email,
            minutes: LINK_TTL_MINUTES,
        }
        .render(),
    );
    if let Some(secs) = e.retry_after_secs {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Emails a single-use sign-in link, if the email has an account that may sign in.
#[utoipa::path(post, path = "/login/link", tag = "login",
    request_body(content(
        (LoginLinkRequest = "application/json"),
        (LoginLinkRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 202, description = "Accepted: a sign-in link (single use, 15 minutes) was sent if the email has an account that may sign in (the answer is the same either way)", body = LoginLinkResponse),
        (status = 200, description = "From an HTML form: the \"Check your inbox\" page", content_type = "text/html", body = String),
        (status = 400, description = "The email is missing or malformed; `field` names it (a form gets the form again, with the error)", body = ErrorBody),
        (status = 403, description = "The request came from another site", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body is neither JSON nor a form", body = ErrorBody),
        (status = 429, description = "Too many sign-in link requests from this address; see Retry-After", body = ErrorBody),
    ))]
pub async fn request_link(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: FormOrJson<LoginLinkRequest>,
) -> Response {
    let FormOrJson { form, body } = body;
    let typed = body.email.clone().unwrap_or_default();
    let outcome = if is_cross_site(&headers, &state.settings.app_url) {
        Err(cross_site_refused())
    } else {
        send_sign_in_link(&state, &ip, body).await
    };
    match (outcome, form) {
        (Ok(()), true) => page(StatusCode::OK, LinkSentPage { message: SENT }.render()),
        (Ok(()), false) => (
            StatusCode::ACCEPTED,
            Json(LoginLinkResponse {
                status: LoginLinkStatus::Sent,
                message: SENT.into(),
            }),
        )
            .into_response(),
        (Err(e), true) => form_again(&e, typed.trim()),
        (Err(e), false) => e.into_response(),
    }
}

/// A sign-in link, by [`email_link`]: a magic login token for 15 minutes, opened at
/// `/login/magic`.
const SIGN_IN_LINK: EmailedLink = EmailedLink {
    what: "sign-in link",
    client_key: "login-link-client",
    mailbox_key: "login-link-email",
    purpose: TokenPurpose::MagicLogin,
    ttl_minutes: LINK_TTL_MINUTES,
    path: "login/magic",
    email: templates::sign_in_link,
};

async fn send_sign_in_link(
    state: &AppState,
    ip: &ClientIp,
    req: LoginLinkRequest,
) -> AppResult<()> {
    email_link(state, ip, req.email.as_deref(), &SIGN_IN_LINK).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_states_the_links_lifetime() {
        assert!(
            SENT.contains(&format!("expires in {LINK_TTL_MINUTES} minutes")),
            "{SENT}"
        );
    }

    #[test]
    fn the_json_answer_is_status_and_message() {
        let body = serde_json::to_value(LoginLinkResponse {
            status: LoginLinkStatus::Sent,
            message: SENT.into(),
        })
        .unwrap();
        assert_eq!(body, serde_json::json!({"status": "sent", "message": SENT}));
    }
}
