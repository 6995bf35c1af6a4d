//! The audit log's vocabulary: who acted ([`Actor`]) and what they did ([`Action`], stable dotted
//! codes an auditor filters on), and which filter values name them. The codes are stored, so a
//! code never changes meaning; a new kind of entry gets a new code.

use super::TenantId;

/// Who did something recorded in the audit log, stored as text (`operator`, `tenant:<id>`,
/// `user:<email>`, `stripe`, `system`, `anonymous`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Whoever holds `ADMIN_TOKEN` (the operator endpoints, the console and the CLI).
    Operator,
    /// A tenant acting through its session, its API keys or its checkout session.
    Tenant(TenantId),
    /// A signed-in user of a tenant, by user id (`usr_…`): membership changes made from the
    /// members page, and an invitee accepting.
    Member(String),
    /// Someone trying to sign in, by the email they typed (personal data: see README "Audit
    /// log"). Once signed in, a person acts as their tenant.
    User(String),
    /// Stripe: its webhook deliveries and the checkout sessions it reports.
    Stripe,
    /// The service itself: provisioning, sweepers, periodic jobs.
    System,
    /// Someone who presented nothing that names them (an unknown sign-in link).
    Anonymous,
}

impl Actor {
    /// Reads a stored actor or an `actor` filter; `None` when it is none of the forms above.
    pub fn parse(s: &str) -> Option<Actor> {
        match s {
            "operator" => Some(Actor::Operator),
            "stripe" => Some(Actor::Stripe),
            "system" => Some(Actor::System),
            "anonymous" => Some(Actor::Anonymous),
            _ => {
                if let Some(id) = s.strip_prefix("tenant:") {
                    TenantId::parse(id).map(Actor::Tenant)
                } else if let Some(id) = s.strip_prefix("member:") {
                    (id.starts_with("usr_") && id.len() > 4).then(|| Actor::Member(id.to_string()))
                } else {
                    s.strip_prefix("user:")
                        .filter(|u| !u.trim().is_empty())
                        .map(|u| Actor::User(u.to_string()))
                }
            }
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Operator => f.write_str("operator"),
            Actor::Tenant(id) => write!(f, "tenant:{id}"),
            Actor::Member(id) => write!(f, "member:{id}"),
            Actor::User(email) => write!(f, "user:{email}"),
            Actor::Stripe => f.write_str("stripe"),
            Actor::System => f.write_str("system"),
            Actor::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// What was done. Grouped by the part before the dot, so `login.` selects every sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A Stripe event was applied (on receipt, or by its job); target: the event id.
    WebhookProcessed,
    /// A stored Stripe event was put through today's handlers again (`onboard events replay`).
    WebhookReplayed,
    /// A tenant's status changed (written by the database's trigger on `tenants`).
    TenantStatusChanged,
    /// The customer asked to retry its failed provisioning (`POST /tenant/{id}/retry`).
    TenantRetry,
    /// The operator retried a failed tenant's provisioning.
    OperatorRetry,
    /// The operator forced provisioning to start again (`force`, a tenant stuck in it).
    OperatorForceProvision,
    /// The operator approved an enterprise signup.
    OperatorApprove,
    /// The operator sent a tenant a new welcome email (with a fresh sign-in link).
    OperatorResendWelcome,
    /// The operator suspended a tenant's workspace.
    OperatorSuspend,
    /// The operator marked a stuck tenant's "needs a human" flag resolved.
    OperatorResolveAtRisk,
    /// The operator put a dead job back in the queue; target: the job id.
    OperatorRetryJob,
    /// An API key was created; target: the key id.
    ApiKeyCreated,
    /// An API key was revoked (by its tenant, by a rotation, or by provisioning); target: the
    /// key id.
    ApiKeyRevoked,
    /// A session was started (password or sign-in link; for the operator console,
    /// `ADMIN_TOKEN`).
    LoginSucceeded,
    /// A sign-in was refused (wrong password, unknown email, locked, unusable link …).
    LoginFailed,
    /// The tenant downloaded the export of all its data.
    ExportDownloaded,
    /// Someone was invited to a tenant; target: the invitation id.
    MemberInvited,
    /// An invitation's link was replaced and sent again; target: the invitation id.
    InvitationResent,
    /// An invitation was revoked before it was accepted; target: the invitation id.
    InvitationRevoked,
    /// An invitation was accepted: a user joined; target: the user id.
    MemberJoined,
    /// A member's role changed; target: the user id.
    MemberRoleChanged,
    /// A member was removed from the tenant; target: the user id.
    MemberRemoved,
    /// A user changed the name they are shown by; target: the user id.
    MemberRenamed,
}

impl Action {
    pub const ALL: [Action; 23] = [
        Action::WebhookProcessed,
        Action::WebhookReplayed,
        Action::TenantStatusChanged,
        Action::TenantRetry,
        Action::OperatorRetry,
        Action::OperatorForceProvision,
        Action::OperatorApprove,
        Action::OperatorResendWelcome,
        Action::OperatorSuspend,
        Action::OperatorResolveAtRisk,
        Action::OperatorRetryJob,
        Action::ApiKeyCreated,
        Action::ApiKeyRevoked,
        Action::LoginSucceeded,
        Action::LoginFailed,
        Action::ExportDownloaded,
        Action::MemberInvited,
        Action::InvitationResent,
        Action::InvitationRevoked,
        Action::MemberJoined,
        Action::MemberRoleChanged,
        Action::MemberRemoved,
        Action::MemberRenamed,
    ];

    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::WebhookProcessed => "webhook.processed",
            Action::WebhookReplayed => "webhook.replayed",
            Action::TenantStatusChanged => "tenant.status_changed",
            Action::TenantRetry => "tenant.retry",
            Action::OperatorRetry => "operator.retry",
            Action::OperatorForceProvision => "operator.force_provision",
            Action::OperatorApprove => "operator.approve",
            Action::OperatorResendWelcome => "operator.resend_welcome",
            Action::OperatorSuspend => "operator.suspend",
            Action::OperatorResolveAtRisk => "operator.resolve_at_risk",
            Action::OperatorRetryJob => "operator.retry_job",
            Action::ApiKeyCreated => "api_key.created",
            Action::ApiKeyRevoked => "api_key.revoked",
            Action::LoginSucceeded => "login.succeeded",
            Action::LoginFailed => "login.failed",
            Action::ExportDownloaded => "export.downloaded",
            Action::MemberInvited => "member.invited",
            Action::InvitationResent => "member.invitation_resent",
            Action::InvitationRevoked => "member.invitation_revoked",
            Action::MemberJoined => "member.joined",
            Action::MemberRoleChanged => "member.role_changed",
            Action::MemberRemoved => "member.removed",
            Action::MemberRenamed => "member.renamed",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which actions an `action` filter selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionFilter {
    /// One code.
    Exact(Action),
    /// Every code starting with this group and its dot (`login.`).
    Prefix(String),
}

impl ActionFilter {
    /// `login.succeeded` (a code) or `login.` (a group, with its dot); anything that selects no
    /// code is `None`, so a typo is refused instead of silently matching nothing.
    pub fn parse(s: &str) -> Option<ActionFilter> {
        if let Some(a) = Action::ALL.into_iter().find(|a| a.as_str() == s) {
            return Some(ActionFilter::Exact(a));
        }
        let is_group = s.ends_with('.')
            && s.len() > 1
            && Action::ALL.iter().any(|a| a.as_str().starts_with(s));
        is_group.then(|| ActionFilter::Prefix(s.to_string()))
    }

    /// The groups there are (`login.`, `operator.` …), for messages.
    pub fn groups() -> Vec<&'static str> {
        let mut groups: Vec<&'static str> = Vec::new();
        for a in Action::ALL {
            let code = a.as_str();
            let group = &code[..=code.find('.').unwrap_or(code.len() - 1)];
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_read_back_what_they_write() {
        let tenant = TenantId::parse("tenant_01J0000000000000000000000A").unwrap();
        for actor in [
            Actor::Operator,
            Actor::Tenant(tenant),
            Actor::User("Ann@Example.com ".into()),
            Actor::Member("usr_01J0000000000000000000000A".into()),
            Actor::Stripe,
            Actor::System,
            Actor::Anonymous,
        ] {
            assert_eq!(Actor::parse(&actor.to_string()), Some(actor.clone()));
        }
        for bad in [
            "",
            "admin",
            "tenant:",
            "tenant:nope",
            "user:",
            "user:  ",
            "member:",
            "member:x",
        ] {
            assert_eq!(Actor::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn action_filters_take_a_code_or_a_group_with_its_dot() {
        assert_eq!(
            ActionFilter::parse("login.failed"),
            Some(ActionFilter::Exact(Action::LoginFailed))
        );
        assert_eq!(
            ActionFilter::parse("login."),
            Some(ActionFilter::Prefix("login.".into()))
        );
        for bad in ["", ".", "login", "login.x", "logins.", "nope."] {
            assert_eq!(ActionFilter::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            ActionFilter::groups(),
            [
                "webhook.",
                "tenant.",
                "operator.",
                "api_key.",
                "login.",
                "export.",
                "member."
            ]
        );
    }

    #[test]
    fn codes_are_unique_and_dotted() {
        let mut codes: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        assert!(codes.iter().all(|c| c.split('.').count() == 2), "{codes:?}");
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Action::ALL.len());
    }
}
