//! API errors: JSON `{"error": {"code", "message", "field"?}}` with the right status. Anything
//! unexpected is logged with context and becomes an opaque 500.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::FieldError;
use crate::store::StoreError;

pub type AppResult<T> = Result<T, ApiError>;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after_secs: Option<u64>,
}

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_email`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl From<crate::workspace::key_cache::MissingScope> for ApiError {
    fn from(e: crate::workspace::key_cache::MissingScope) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", e.to_string())
    }
}

impl From<crate::workspace::key_cache::RoleRefused> for ApiError {
    fn from(e: crate::workspace::key_cache::RoleRefused) -> Self {
        ApiError::forbidden_role(e.0)
    }
}

impl From<crate::workspace::hashing::HashError> for ApiError {
    fn from(e: crate::workspace::hashing::HashError) -> Self {
        match e {
            crate::workspace::hashing::HashError::Busy => {
                tracing::debug!("password hashing queue full: answered 503");
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "too many password checks are in progress; try again in a second",
                );
                e.retry_after_secs = Some(1);
                e
            }
            crate::workspace::hashing::HashError::Task(e) => {
                ApiError::internal("password hashing task", e)
            }
        }
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_secs: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden_role`: the caller's role may not do this (the message says whom to ask).
    pub fn forbidden_role(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden_role", message)
    }

    /// [`ApiError::forbidden_role`] unless `role` may do `p`.
    pub fn require_role(
        role: crate::domain::Role,
        p: crate::domain::Permission,
    ) -> Result<(), Self> {
        if role.allows(p) {
            Ok(())
        } else {
            Err(Self::forbidden_role(role.refusal(p)))
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// 503 with `Retry-After: 1`: a dependency is down for a moment.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after_secs = Some(1);
        e
    }

    /// Logs the cause and answers an opaque 500.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; it has been logged",
        )
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::bad_request(e.code, e.message).with_field(e.field)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Transition(t) => ApiError::conflict("invalid_transition", t.to_string()),
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::unavailable("the database is unavailable; try again shortly")
            }
            other => ApiError::internal("store error", other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
