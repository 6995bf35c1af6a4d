//! Pure types and rules of the product: tenant and its status machine, plans, signup input,
//! passwords. No I/O lives here.
//!
//! Imports nothing of this crate outside `domain` (std and external crates only).

pub mod password;
pub mod plan;
pub mod signup;
pub mod subscription;
pub mod tenant;

pub use plan::Plan;
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
