//! Pure types and rules of the product: tenant and its status machine, plans, signup input,
//! passwords, the audit log's vocabulary. No I/O lives here.
//!
//! Imports nothing of this crate outside `domain` (std and external crates only).

pub mod audit;
pub mod password;
pub mod plan;
pub mod role;
pub mod signup;
pub mod subscription;
pub mod tenant;

pub use plan::Plan;
pub use role::{Permission, Role};
pub use signup::{CompanyName, Email, Password, SignupInput};
pub use subscription::SubscriptionStatus;
pub use tenant::{TenantId, TenantStatus, TransitionError};

/// A rule an input broke: which field, a stable machine code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
        }
    }
}

/// A date (`YYYY-MM-DD`, midnight UTC) or an RFC 3339 time, as operators and filters write them.
pub fn parse_day_or_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}
