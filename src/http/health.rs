//! `GET /health`: liveness plus a real database round-trip.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::AppState;

/// Overall health and each dependency's.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HealthResponse {
    /// `ok` when every dependency answers, `degraded` otherwise.
    pub status: &'static str,
    /// Server time, RFC 3339.
    pub timestamp: String,
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub services: BTreeMap<&'static str, ServiceHealth>,
}

/// One dependency's health.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ServiceHealth {
    pub status: &'static str,
    /// Which implementation is in use, e.g. `sqlite`, `postgres`, `dev_checkout`.
    pub backend: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Email: when this process last tried to send (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_send_at: Option<String>,
}

/// Reports service health; 503 when the database does not answer within 2 s.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses(
        (status = 200, description = "Every dependency answers", body = HealthResponse),
        (status = 503, description = "A dependency is down", body = HealthResponse),
    ))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    let db = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(latency)) => ServiceHealth {
            status: "ok",
            backend: state.store.backend().into(),
            latency_ms: Some(latency.as_secs_f64() * 1000.0),
            error: None,
            last_send_at: None,
        },
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: database check failed");
            ServiceHealth {
                status: "down",
                backend: state.store.backend().into(),
                latency_ms: None,
                error: Some("database query failed".into()),
                last_send_at: None,
            }
        }
        Err(_) => ServiceHealth {
            status: "down",
            backend: state.store.backend().into(),
            latency_ms: None,
            error: Some("database did not answer within 2 s".into()),
            last_send_at: None,
        },
    };
    let s = &state.settings;
    let configured = |name: &str, is_set: bool, builtin: &str| ServiceHealth {
        status: "ok",
        backend: if is_set {
            name.to_string()
        } else {
            builtin.to_string()
        },
        latency_ms: None,
        error: None,
        last_send_at: None,
    };
    let mut services = BTreeMap::new();
    let healthy = db.status == "ok";
    services.insert("database", db);
    services.insert(
        "payments",
        configured("stripe", s.stripe_secret_key.is_some(), "dev_checkout"),
    );
    // The transport actually in use, and how its last send from this process went (the
    // provider's own words stay in the logs).
    let last = state.mailer.last_send();
    services.insert(
        "email",
        ServiceHealth {
            status: match &last {
                Some(l) if !l.ok => "failing",
                _ => "ok",
            },
            backend: state.mailer.transport().to_string(),
            latency_ms: None,
            error: last
                .as_ref()
                .filter(|l| !l.ok)
                .map(|_| "the last send failed; it will be retried".to_string()),
            last_send_at: last.map(|l| {
                crate::store::ms_to_datetime(l.at)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            }),
        },
    );
    services.insert(
        "vector_store",
        configured(
            "pinecone",
            s.pinecone_api_key.is_some() && s.pinecone_index_host.is_some(),
            "embedded",
        ),
    );
    let body = HealthResponse {
        status: if healthy { "ok" } else { "degraded" },
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started_at.elapsed().as_secs(),
        services,
    };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
