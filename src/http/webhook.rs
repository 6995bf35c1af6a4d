//! `POST /webhook/stripe`: verify over the raw body, store + dedupe + enqueue, answer fast.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::ClientIp;
use crate::billing::events::{Receipt, ReceiveError, receive};

/// Acknowledgement of a delivery.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookAck {
    pub received: bool,
    /// True when this event id was already received (nothing is processed twice).
    pub duplicate: bool,
}

/// Receives a Stripe event. Invalid signature → 400 and nothing stored.
#[utoipa::path(post, path = "/webhook/stripe", tag = "billing",
    request_body(content = String, description = "The raw Stripe event JSON", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "t=…,v1=…")),
    responses(
        (status = 200, description = "Stored (or a duplicate, ignored)", body = WebhookAck),
        (status = 400, description = "Invalid signature or not a Stripe event", body = ErrorBody),
    ))]
pub async fn stripe_webhook(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<WebhookAck>), ApiError> {
    // Each acknowledgement's time from here is observed in `onboard_webhook_ack_seconds`.
    let started = std::time::Instant::now();
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    match receive(&state, &body, sig, Some(client)).await {
        Ok(r) => {
            state
                .metrics
                .webhook_ack
                .observe(started.elapsed().as_secs_f64());
            Ok((
                StatusCode::OK,
                Json(WebhookAck {
                    received: true,
                    duplicate: r == Receipt::Duplicate,
                }),
            ))
        }
        Err(ReceiveError::Signature(e)) => {
            state.metrics.webhook_invalid_signature.inc();
            tracing::warn!(error = %e, "webhook refused: invalid signature");
            Err(ApiError::bad_request(
                "invalid_signature",
                format!("Invalid signature: {e}"),
            ))
        }
        Err(ReceiveError::Malformed(m)) => Err(ApiError::bad_request(
            "invalid_event",
            format!("not a Stripe event: {m}"),
        )),
        Err(ReceiveError::Store(e)) => Err(e.into()),
    }
}
