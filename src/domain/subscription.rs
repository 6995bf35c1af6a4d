//! The subscription after day one: what Stripe says about it, and how the tenant follows.
//!
//! Stripe does not order its events, and may deliver one twice or late. So we do not apply
//! events as commands ("go to past_due"); each one is a dated observation of the subscription
//! ("at `created`, it was past_due"), and we keep the newest observation. "Newest" is a total
//! order ([`Observation::key`]): a canceled subscription outranks everything (Stripe never
//! revives one), then the event's `created` second, then a fixed rank of the statuses for
//! events of the same second. Keeping the maximum of a total order is the same whatever the
//! order of arrival, so every delivery order of the same events ends in the same state.
//!
//! The subscription's details (plan, `cancel_at_period_end`, trial end) come only from
//! subscription objects, and are kept in a second register with the same rule, so an invoice
//! event (which carries none of them) never erases them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::{Plan, TenantStatus};

/// A Stripe subscription status (`subscription.status`), plus what invoice events imply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Incomplete,
    IncompleteExpired,
    Trialing,
    Active,
    PastDue,
    Unpaid,
    Paused,
    Canceled,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 8] = [
        SubscriptionStatus::Incomplete,
        SubscriptionStatus::IncompleteExpired,
        SubscriptionStatus::Trialing,
        SubscriptionStatus::Active,
        SubscriptionStatus::PastDue,
        SubscriptionStatus::Unpaid,
        SubscriptionStatus::Paused,
        SubscriptionStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Incomplete => "incomplete",
            SubscriptionStatus::IncompleteExpired => "incomplete_expired",
            SubscriptionStatus::Trialing => "trialing",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Unpaid => "unpaid",
            SubscriptionStatus::Paused => "paused",
            SubscriptionStatus::Canceled => "canceled",
        }
    }

    /// Which of two observations of the same second wins: the one further along the dunning
    /// path (Stripe moves a subscription forward within a second, e.g. `invoice.payment_failed`
    /// and `customer.subscription.updated` to past_due together).
    fn rank(self) -> u8 {
        match self {
            SubscriptionStatus::Incomplete => 0,
            SubscriptionStatus::IncompleteExpired => 1,
            SubscriptionStatus::Trialing => 2,
            SubscriptionStatus::Active => 3,
            SubscriptionStatus::PastDue => 4,
            SubscriptionStatus::Unpaid => 5,
            SubscriptionStatus::Paused => 6,
            SubscriptionStatus::Canceled => 7,
        }
    }

    /// The tenant status this subscription status means for a tenant that is already using its
    /// workspace; `None` when it says nothing about access (a checkout not yet paid).
    pub fn tenant_status(self) -> Option<TenantStatus> {
        match self {
            SubscriptionStatus::Trialing | SubscriptionStatus::Active => Some(TenantStatus::Active),
            SubscriptionStatus::PastDue => Some(TenantStatus::PastDue),
            SubscriptionStatus::Unpaid | SubscriptionStatus::Paused => {
                Some(TenantStatus::Suspended)
            }
            SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired => {
                Some(TenantStatus::Canceled)
            }
            SubscriptionStatus::Incomplete => None,
        }
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for SubscriptionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SubscriptionStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown subscription status '{s}'"))
    }
}

/// One dated observation of a subscription's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub status: SubscriptionStatus,
    /// The Stripe event's `created` (seconds).
    pub at: i64,
}

impl Observation {
    /// The total order of observations: canceled first, then time, then rank.
    fn key(&self) -> (bool, i64, u8) {
        (
            self.status == SubscriptionStatus::Canceled,
            self.at,
            self.status.rank(),
        )
    }

    /// Whether this observation replaces `held` (none held: it always does).
    pub fn supersedes(&self, held: Option<&Observation>) -> bool {
        held.is_none_or(|h| self.key() > h.key())
    }
}

/// The details a subscription object carries, dated like an [`Observation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub at: i64,
    pub plan: Option<Plan>,
    pub cancel_at_period_end: bool,
    /// Seconds.
    pub trial_end: Option<i64>,
}

impl Details {
    fn key(&self) -> (i64, bool, Option<i64>, Option<&'static str>) {
        (
            self.at,
            self.cancel_at_period_end,
            self.trial_end,
            self.plan.map(Plan::as_str),
        )
    }

    /// Whether these details replace `held` (a total order over every field, so the newest
    /// wins whatever the arrival order).
    pub fn supersede(&self, held: Option<&Details>) -> bool {
        held.is_none_or(|h| self.key() > h.key())
    }
}

/// Where a tenant in `current` goes when its subscription is `observed`: `None` to stay.
///
/// Only a tenant that has its workspace (active, past_due, suspended) follows every status; one
/// still being set up (provisioning, failed) follows only a cancellation, and takes the held
/// status once provisioning finishes ([`settled_status`]). Nobody leaves canceled or abandoned,
/// and a signup that never paid or is with sales does not move on a subscription event.
pub fn follow(current: TenantStatus, observed: SubscriptionStatus) -> Option<TenantStatus> {
    let target = observed.tenant_status()?;
    if target == current {
        return None;
    }
    let moves = match current {
        TenantStatus::Active | TenantStatus::PastDue | TenantStatus::Suspended => true,
        TenantStatus::Provisioning | TenantStatus::Failed => target == TenantStatus::Canceled,
        _ => false,
    };
    (moves && current.can_transition_to(target)).then_some(target)
}

/// The status a tenant that has just become `active` should take given the subscription status
/// held for it (a payment that failed while its workspace was being set up).
pub fn settled_status(held: Option<SubscriptionStatus>) -> Option<TenantStatus> {
    follow(TenantStatus::Active, held?)
}

#[cfg(test)]
mod tests {
    use super::SubscriptionStatus::*;
    use super::*;

    fn fold(events: &[Observation]) -> Option<Observation> {
        let mut held: Option<Observation> = None;
        for e in events {
            if e.supersedes(held.as_ref()) {
                held = Some(*e);
            }
        }
        held
    }

    fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, first.clone());
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn every_arrival_order_keeps_the_same_observation() {
        let o = |status, at| Observation { status, at };
        let histories = [
            vec![o(Active, 10), o(PastDue, 20), o(Active, 30)],
            vec![o(PastDue, 20), o(Unpaid, 40), o(Active, 50), o(PastDue, 50)],
            vec![
                o(Active, 10),
                o(PastDue, 20),
                o(Canceled, 25),
                o(Active, 30),
            ],
            vec![o(Trialing, 1), o(Active, 1), o(PastDue, 1), o(Unpaid, 2)],
        ];
        for events in histories {
            let expected = fold(&events);
            for p in permutations(&events) {
                assert_eq!(fold(&p), expected, "{p:?}");
            }
        }
    }

    #[test]
    fn cancellation_is_final_and_time_orders_the_rest() {
        let canceled = Observation {
            status: Canceled,
            at: 5,
        };
        let later = Observation {
            status: Active,
            at: 99,
        };
        assert!(!later.supersedes(Some(&canceled)));
        assert!(canceled.supersedes(Some(&later)));
        let older = Observation {
            status: PastDue,
            at: 98,
        };
        assert!(!older.supersedes(Some(&later)));
    }

    #[test]
    fn tenants_follow_only_from_states_that_have_a_workspace() {
        use TenantStatus as T;
        assert_eq!(follow(T::Active, PastDue), Some(T::PastDue));
        assert_eq!(follow(T::PastDue, Active), Some(T::Active));
        assert_eq!(follow(T::PastDue, Unpaid), Some(T::Suspended));
        assert_eq!(follow(T::Suspended, Active), Some(T::Active));
        assert_eq!(follow(T::Active, Unpaid), Some(T::Suspended));
        assert_eq!(follow(T::Active, Trialing), None);
        assert_eq!(follow(T::Provisioning, PastDue), None);
        assert_eq!(follow(T::Provisioning, Canceled), Some(T::Canceled));
        assert_eq!(follow(T::Canceled, Active), None);
        assert_eq!(follow(T::PendingPayment, Active), None);
        assert_eq!(follow(T::SalesReview, Canceled), None);
        assert_eq!(settled_status(Some(PastDue)), Some(T::PastDue));
        assert_eq!(settled_status(Some(Active)), None);
        assert_eq!(settled_status(None), None);
    }

    #[test]
    fn status_names_round_trip() {
        for s in SubscriptionStatus::ALL {
            assert_eq!(s.as_str().parse::<SubscriptionStatus>().unwrap(), s);
        }
    }
}
