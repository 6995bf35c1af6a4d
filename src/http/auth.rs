//! `Authorization: Bearer <key>` for `/v1/*`: the middleware that checks the key through the
//! workspace's [`KeyCache`] and hands the [`Caller`] to the handler.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::app::AppState;
use crate::domain::TenantStatus;
use crate::store::Store;
use crate::workspace::api_keys::{AuthError, KeySigner};
pub use crate::workspace::key_cache::{CACHE_TTL, Caller, KeyCache};

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        // Put there by `require_api_key` (or, in the auth benchmark's baseline, a fixed caller).
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("an API key is required"))
    }
}

/// A refused key is a 401 with a challenge; a key that could not be checked is a 503 (the client
/// should try again with the same key, not drop it).
fn auth_error(e: &AuthError) -> Response {
    let code = match e {
        AuthError::Invalid => "invalid_api_key",
        AuthError::Revoked => "revoked_api_key",
        AuthError::Expired => "expired_api_key",
        AuthError::Unavailable(_) => {
            return ApiError::unavailable("the database is unavailable; try again shortly")
                .into_response();
        }
    };
    challenge(ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string()))
}

fn challenge(error: ApiError) -> Response {
    let mut resp = error.into_response();
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer realm=\"onboard\""),
    );
    resp
}

/// What the `/v1` middleware needs, shared behind one `Arc` (cloning the whole `AppState` on
/// every request would cost a dozen reference-count updates).
pub struct KeyCheck {
    keys: KeyCache,
    store: Store,
    signer: KeySigner,
    milestones: crate::analytics::MilestoneMemo,
}

impl From<&AppState> for KeyCheck {
    fn from(state: &AppState) -> Self {
        KeyCheck {
            keys: state.keys.clone(),
            store: state.store.clone(),
            signer: state.signer.clone(),
            milestones: state.milestones.clone(),
        }
    }
}

/// Middleware of `/v1`: authenticates the Bearer key and hands the [`Caller`] to the handler.
/// The tenant must be `active` or `past_due`.
pub async fn require_api_key(
    State(state): State<Arc<KeyCheck>>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = header.and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
    }) else {
        return challenge(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "send your API key as 'Authorization: Bearer onb_…'",
        ));
    };
    let caller = match state
        .keys
        .authenticate(&state.store, &state.signer, token.trim())
        .await
    {
        Ok(c) => c,
        Err(e) => return auth_error(&e),
    };
    if caller.status == TenantStatus::Suspended {
        return ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "workspace_suspended",
            "this workspace is suspended because its invoices are unpaid; pay the open invoice \
             from the account page (/account, Billing) and the API works again within seconds. \
             Your data is kept.",
        )
        .into_response();
    }
    if !matches!(caller.status, TenantStatus::Active | TenantStatus::PastDue) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "workspace_unavailable",
            format!(
                "this workspace is {}; API access needs an active subscription",
                caller.status
            ),
        )
        .into_response();
    }
    if caller.principal.own {
        // The first call with a key the tenant made itself: its integration works. Once per
        // tenant and process (a set lookup after that); a failure to record never fails the call.
        if let Err(e) = state
            .milestones
            .record(
                &state.store,
                caller.tenant(),
                crate::analytics::Milestone::IntegrationConfigured,
                None,
            )
            .await
        {
            tracing::warn!(error = %e, "could not record integration_configured");
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}
