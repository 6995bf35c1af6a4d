//! Tenants and their lifecycle (README.md "Tenant lifecycle").

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `tenant_` followed by a ULID: sortable by creation time, unguessable enough to be public.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    const PREFIX: &'static str = "tenant_";

    pub fn generate() -> Self {
        Self(format!("{}{}", Self::PREFIX, ulid::Ulid::new()))
    }

    /// Accepts ids of the shape we issue; anything else cannot name a tenant.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(Self::PREFIX)?;
        let ok =
            !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Where a tenant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    PendingPayment,
    SalesReview,
    Provisioning,
    Active,
    Failed,
    Abandoned,
    PastDue,
    Suspended,
    Canceled,
}

impl TenantStatus {
    pub const ALL: [TenantStatus; 9] = [
        TenantStatus::PendingPayment,
        TenantStatus::SalesReview,
        TenantStatus::Provisioning,
        TenantStatus::Active,
        TenantStatus::Failed,
        TenantStatus::Abandoned,
        TenantStatus::PastDue,
        TenantStatus::Suspended,
        TenantStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::PendingPayment => "pending_payment",
            TenantStatus::SalesReview => "sales_review",
            TenantStatus::Provisioning => "provisioning",
            TenantStatus::Active => "active",
            TenantStatus::Failed => "failed",
            TenantStatus::Abandoned => "abandoned",
            TenantStatus::PastDue => "past_due",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Canceled => "canceled",
        }
    }

    /// States a tenant can be created in.
    pub fn is_initial(self) -> bool {
        matches!(
            self,
            TenantStatus::PendingPayment | TenantStatus::SalesReview
        )
    }

    /// Whether the lifecycle allows `self -> to`. Every other pair is refused.
    ///
    /// Beyond the lifecycle diagram (README.md): "any paid state" is provisioning, active, failed,
    /// past_due and suspended (a customer who paid can cancel whatever happened since), and a
    /// sales-reviewed enterprise deal can be approved into provisioning or closed as canceled.
    /// The subscription after day one moves a tenant with a workspace between active, past_due
    /// and suspended in Stripe's time order (`domain::subscription`), not only along the
    /// dunning path: an unpaid invoice paid later reactivates a suspended tenant, and Stripe can
    /// mark a subscription unpaid straight from active.
    pub fn can_transition_to(self, to: TenantStatus) -> bool {
        use TenantStatus::*;
        matches!(
            (self, to),
            (PendingPayment, Provisioning)
                | (PendingPayment, Abandoned)
                | (SalesReview, Provisioning)
                | (SalesReview, Canceled)
                | (Provisioning, Active)
                | (Provisioning, Failed)
                | (Failed, Provisioning)
                | (Active, PastDue)
                | (PastDue, Active)
                | (PastDue, Suspended)
                | (Active, Suspended)
                | (Suspended, Active)
                | (Suspended, PastDue)
                | (
                    Provisioning | Active | Failed | PastDue | Suspended,
                    Canceled
                )
        )
    }

    /// Checks a transition, naming both ends when it is refused.
    pub fn transition_to(self, to: TenantStatus) -> Result<TenantStatus, TransitionError> {
        if self.can_transition_to(to) {
            Ok(to)
        } else {
            Err(TransitionError { from: self, to })
        }
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for TenantStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown tenant status '{s}'"))
    }
}

/// A status change the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a tenant cannot go from {from} to {to}")]
pub struct TransitionError {
    pub from: TenantStatus,
    pub to: TenantStatus,
}

impl TenantStatus {
    /// What anyone who knows the tenant id may be told about why it is in this status: our
    /// own sentence, never the internal reason (which may carry a provider's error text).
    pub fn public_reason(self) -> Option<&'static str> {
        Some(match self {
            TenantStatus::PendingPayment => "waiting for payment at checkout",
            TenantStatus::SalesReview => "with our sales team, who will be in touch",
            TenantStatus::Provisioning => "the workspace is being set up",
            TenantStatus::Active => return None,
            TenantStatus::Failed => {
                "setting up the workspace failed; we have been alerted, and the setup can be retried from the checkout's success page"
            }
            TenantStatus::Abandoned => "the checkout expired before payment",
            TenantStatus::PastDue => "the last payment failed; update the card to keep access",
            TenantStatus::Suspended => "suspended for unpaid invoices",
            TenantStatus::Canceled => "the subscription is canceled",
        })
    }
}

/// How long a checkout stays open (Stripe's default for a Checkout Session): a signup still
/// waiting for payment after this will never be paid through it.
pub const CHECKOUT_EXPIRY_MS: i64 = 24 * 3_600_000;

/// Whether a tenant no longer holds its email, so a new signup may take it: an abandoned
/// signup, or one still waiting for payment after its checkout expired. Any tenant that paid
/// (or is with sales) keeps its email.
pub fn releases_email(status: TenantStatus, created_at: i64, now: i64) -> bool {
    match status {
        TenantStatus::Abandoned => true,
        TenantStatus::PendingPayment => now - created_at > CHECKOUT_EXPIRY_MS,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::TenantStatus::*;
    use super::*;

    /// The complete allowed set, written out independently of `can_transition_to`.
    const ALLOWED: &[(TenantStatus, TenantStatus)] = &[
        (PendingPayment, Provisioning),
        (PendingPayment, Abandoned),
        (SalesReview, Provisioning),
        (SalesReview, Canceled),
        (Provisioning, Active),
        (Provisioning, Failed),
        (Provisioning, Canceled),
        (Failed, Provisioning),
        (Failed, Canceled),
        (Active, PastDue),
        (Active, Canceled),
        (PastDue, Active),
        (PastDue, Suspended),
        (PastDue, Canceled),
        (Active, Suspended),
        (Suspended, Active),
        (Suspended, PastDue),
        (Suspended, Canceled),
    ];

    #[test]
    fn every_allowed_transition_is_accepted() {
        for &(from, to) in ALLOWED {
            assert_eq!(from.transition_to(to), Ok(to), "{from} -> {to}");
        }
    }

    #[test]
    fn every_other_transition_is_refused() {
        let mut refused = 0;
        for from in TenantStatus::ALL {
            for to in TenantStatus::ALL {
                if ALLOWED.contains(&(from, to)) {
                    continue;
                }
                assert_eq!(
                    from.transition_to(to),
                    Err(TransitionError { from, to }),
                    "{from} -> {to}"
                );
                refused += 1;
            }
        }
        assert_eq!(refused, 81 - ALLOWED.len());
    }

    #[test]
    fn no_state_moves_to_itself_and_nothing_returns_to_pending() {
        for s in TenantStatus::ALL {
            assert!(!s.can_transition_to(s), "{s} -> {s}");
            assert!(!s.can_transition_to(PendingPayment));
            assert!(!s.can_transition_to(SalesReview));
        }
    }

    #[test]
    fn terminal_states_stay_terminal() {
        for s in TenantStatus::ALL {
            assert!(!Canceled.can_transition_to(s));
            assert!(!Abandoned.can_transition_to(s));
        }
    }

    #[test]
    fn status_names_round_trip() {
        for s in TenantStatus::ALL {
            assert_eq!(s.as_str().parse::<TenantStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn tenant_ids_are_prefixed_and_parse_back() {
        let id = TenantId::generate();
        assert!(id.as_str().starts_with("tenant_"));
        assert_eq!(TenantId::parse(id.as_str()), Some(id));
        assert_eq!(TenantId::parse("tenant_"), None);
        assert_eq!(TenantId::parse("tenant_../../etc"), None);
        assert_eq!(TenantId::parse("abc"), None);
    }
}
