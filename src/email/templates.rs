//! Every email the service sends, rendered with askama: a plain-text and an HTML part per kind
//! (`templates/email/{kind}.{txt,html}`), each extending one layout (`layout.txt`,
//! `layout.html`) that writes the hidden preheader, the sign-off and the footer once: why the
//! reader gets the email, the sender's postal address and, for Lifecycle and Marketing emails,
//! the unsubscribe link (also sent as `List-Unsubscribe` with RFC 8058 one-click).
//!
//! Every link of every email starts with the brand's `APP_URL`: a URL passed in (a sign-in
//! link, a billing page) must be one of ours, which may then redirect elsewhere (e.g. Stripe).

use askama::Template;

use super::{Brand, Category, OutgoingEmail};

/// What every email shares; the layouts render it.
struct Frame<'a> {
    brand: &'a Brand,
    subject: &'a str,
    preheader: &'a str,
    /// Why the reader gets this email (the footer's first line).
    reason: &'a str,
    /// `{APP_URL}/unsubscribe?token=…` for Lifecycle and Marketing emails.
    unsubscribe_url: Option<&'a str>,
}

/// The two bodies of one kind, from its values (`v` in the templates) and the frame (`f`).
trait Bodies {
    fn render(&self, frame: &Frame<'_>) -> (String, String);
}

/// Implements [`Bodies`] for a kind's values with its two templates.
macro_rules! bodies {
    ($values:ident, $text:tt, $html:tt) => {
        impl Bodies for $values<'_> {
            fn render(&self, frame: &Frame<'_>) -> (String, String) {
                #[derive(Template)]
                #[template(path = $text)]
                struct Text<'b> {
                    f: &'b Frame<'b>,
                    v: &'b $values<'b>,
                }
                #[derive(Template)]
                #[template(path = $html)]
                struct Html<'b> {
                    f: &'b Frame<'b>,
                    v: &'b $values<'b>,
                }
                let text = Text { f: frame, v: self }
                    .render()
                    .expect(concat!($text, " renders"));
                let html = Html { f: frame, v: self }
                    .render()
                    .expect(concat!($html, " renders"));
                (text, html)
            }
        }
    };
}

/// Everything about an email but its bodies.
struct Envelope<'a> {
    kind: &'static str,
    category: Category,
    tenant_id: &'a str,
    to: &'a str,
    dedupe_key: Option<String>,
    subject: String,
    preheader: String,
    reason: String,
}

/// Renders `values` in the frame of `envelope` into an email, with the list headers when the
/// reader may unsubscribe.
fn compose(brand: &Brand, envelope: Envelope<'_>, values: &impl Bodies) -> OutgoingEmail {
    let unsubscribe_url = envelope
        .category
        .unsubscribable()
        .then(|| brand.unsubscribe_url(envelope.tenant_id, envelope.to));
    let (text, html) = values.render(&Frame {
        brand,
        subject: &envelope.subject,
        preheader: &envelope.preheader,
        reason: &envelope.reason,
        unsubscribe_url: unsubscribe_url.as_deref(),
    });
    let headers = match &unsubscribe_url {
        Some(url) => vec![
            ("List-Unsubscribe".to_string(), format!("<{url}>")),
            (
                "List-Unsubscribe-Post".to_string(),
                "List-Unsubscribe=One-Click".to_string(),
            ),
        ],
        None => vec![],
    };
    OutgoingEmail {
        tenant_id: Some(envelope.tenant_id.to_string()),
        kind: envelope.kind,
        category: envelope.category,
        dedupe_key: envelope.dedupe_key,
        to: envelope.to.to_string(),
        subject: envelope.subject,
        preheader: envelope.preheader,
        text,
        html,
        headers,
    }
}

/// The footer's reason of an email about the reader's own account.
fn account_reason(brand: &Brand) -> String {
    format!(
        "You are receiving this email because this address belongs to an {} account, and it is about that account.",
        brand.product_name
    )
}

/// The footer's reason of a Lifecycle email (the unsubscribe link follows it).
fn lifecycle_reason(brand: &Brand) -> String {
    format!(
        "You are receiving this reminder because this address signed up for {}.",
        brand.product_name
    )
}

struct Welcome<'a> {
    company_name: &'a str,
    login_url: &'a str,
    wizard_url: String,
    docs_url: String,
    expires_hours: u32,
}
bodies!(Welcome, "email/welcome.txt", "email/welcome.html");

/// The welcome email: a single-use sign-in link (never a secret), the setup wizard's first step
/// and the API reference. At most one per tenant.
pub fn welcome(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    login_url: &str,
    expires_hours: u32,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "welcome",
            category: Category::Transactional,
            tenant_id,
            to,
            dedupe_key: Some(format!("welcome:{tenant_id}")),
            subject: format!(
                "Welcome to {}, {company_name}: your workspace is ready",
                brand.product_name
            ),
            preheader: "Your workspace is ready: sign in and run your first query in two minutes."
                .into(),
            reason: format!(
                "You are receiving this email because this address owns the {company_name} \
                 account on {}.",
                brand.product_name
            ),
        },
        &Welcome {
            company_name,
            login_url,
            wizard_url: brand.link("onboarding/wizard"),
            docs_url: brand.link("docs"),
            expires_hours,
        },
    )
}

struct PasswordReset<'a> {
    company_name: &'a str,
    reset_url: &'a str,
    expires_minutes: u32,
}
bodies!(
    PasswordReset,
    "email/password_reset.txt",
    "email/password_reset.html"
);

/// A "forgot password" email: a single-use, expiring link to choose a new password.
pub fn password_reset(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    reset_url: &str,
    expires_minutes: u32,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "password_reset",
            category: Category::Transactional,
            tenant_id,
            to,
            dedupe_key: None,
            subject: format!("Reset your {} password", brand.product_name),
            preheader: "Choose a new password with the link inside; it works once.".into(),
            reason: format!(
                "You are receiving this email because someone asked to reset the password of the {} account of this address.",
                brand.product_name
            ),
        },
        &PasswordReset {
            company_name,
            reset_url,
            expires_minutes,
        },
    )
}

struct SignInLink<'a> {
    company_name: &'a str,
    login_url: &'a str,
    expires_minutes: u32,
}
bodies!(
    SignInLink,
    "email/sign_in_link.txt",
    "email/sign_in_link.html"
);

/// A sign-in link asked for on the sign-in page ("Email me a sign-in link"): single use,
/// expiring, redeemed as the welcome email's link is.
pub fn sign_in_link(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    login_url: &str,
    expires_minutes: u32,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "sign_in_link",
            category: Category::Transactional,
            tenant_id,
            to,
            dedupe_key: None,
            subject: format!("Your {} sign-in link", brand.product_name),
            preheader: "Sign in with the link inside; it works once.".into(),
            reason: format!(
                "You are receiving this email because someone asked for a sign-in link to the {} account of this address.",
                brand.product_name
            ),
        },
        &SignInLink {
            company_name,
            login_url,
            expires_minutes,
        },
    )
}

struct Invitation<'a> {
    company_name: &'a str,
    inviter: &'a str,
    role: &'a str,
    role_article: &'a str,
    accept_url: &'a str,
}
bodies!(Invitation, "email/invitation.txt", "email/invitation.html");

/// An invitation to join a tenant's team: a single-use link, valid for seven days, to accept
/// with a name and a password. `inviter` is how the invitation names who sent it (their name or
/// email, or the company).
pub fn invitation(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    inviter: &str,
    role: &str,
    accept_url: &str,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "invitation",
            category: Category::Transactional,
            tenant_id,
            to,
            dedupe_key: None,
            subject: format!(
                "{inviter} invited you to {company_name} on {}",
                brand.product_name
            ),
            preheader: "Accept with the link inside; it works once, for 7 days.".into(),
            reason: format!(
                "You are receiving this email because {inviter} invited this address to {company_name}'s {} workspace.",
                brand.product_name
            ),
        },
        &Invitation {
            company_name,
            inviter,
            role,
            role_article: if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            },
            accept_url,
        },
    )
}

struct CheckoutReminder<'a> {
    company_name: &'a str,
    checkout_url: &'a str,
}
bodies!(
    CheckoutReminder,
    "email/checkout_reminder.txt",
    "email/checkout_reminder.html"
);

/// Reminds a `pending_payment` signup to finish checkout (sent once, an hour after signup).
pub fn checkout_reminder(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    checkout_url: &str,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "checkout_reminder",
            category: Category::Lifecycle,
            tenant_id,
            to,
            dedupe_key: Some(format!("checkout_reminder:{tenant_id}")),
            subject: format!("Finish setting up {company_name} on {}", brand.product_name),
            preheader:
                "Your signup is saved: complete checkout and your workspace is ready in seconds."
                    .into(),
            reason: lifecycle_reason(brand),
        },
        &CheckoutReminder {
            company_name,
            checkout_url,
        },
    )
}

struct PaymentFailed<'a> {
    company_name: &'a str,
    update_card_url: &'a str,
}
bodies!(
    PaymentFailed,
    "email/payment_failed.txt",
    "email/payment_failed.html"
);

/// Dunning: a renewal payment failed; a link to update the card (`update_card_url`, under
/// `APP_URL`). `dedupe_key` names the failure (e.g. `payment_failed:{invoice}:{attempt}`).
pub fn payment_failed(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    update_card_url: &str,
    dedupe_key: String,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "payment_failed",
            category: Category::Transactional,
            tenant_id,
            to,
            dedupe_key: Some(dedupe_key),
            subject: format!("Your {} payment did not go through", brand.product_name),
            preheader: "Update your card to keep your workspace running without interruption."
                .into(),
            reason: account_reason(brand),
        },
        &PaymentFailed {
            company_name,
            update_card_url,
        },
    )
}

struct PaymentRecovered<'a> {
    company_name: &'a str,
    account_url: String,
}
bodies!(
    PaymentRecovered,
    "email/payment_recovered.txt",
    "email/payment_recovered.html"
);

/// A payment that had failed went through: the account is in good standing again.
pub fn payment_recovered(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    dedupe_key: String,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "payment_recovered",
            category: Category::Transactional,
            tenant_id,
            to,
            dedupe_key: Some(dedupe_key),
            subject: format!("Your {} payment went through", brand.product_name),
            preheader: "Thank you: your subscription is up to date and nothing else is needed."
                .into(),
            reason: account_reason(brand),
        },
        &PaymentRecovered {
            company_name,
            account_url: brand.link("account"),
        },
    )
}

struct TrialEnding<'a> {
    company_name: &'a str,
    trial_end: &'a str,
    billing_url: &'a str,
}
bodies!(
    TrialEnding,
    "email/trial_ending.txt",
    "email/trial_ending.html"
);

/// The trial ends soon: `trial_end` is a date for people ("3 December 2026"); `billing_url`
/// (under `APP_URL`) is where a payment method is added.
pub fn trial_ending(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    trial_end: &str,
    billing_url: &str,
    dedupe_key: String,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "trial_ending",
            category: Category::Lifecycle,
            tenant_id,
            to,
            dedupe_key: Some(dedupe_key),
            subject: format!("Your {} trial ends on {trial_end}", brand.product_name),
            preheader: format!(
                "Add a payment method before {trial_end} to keep your workspace running."
            ),
            reason: lifecycle_reason(brand),
        },
        &TrialEnding {
            company_name,
            trial_end,
            billing_url,
        },
    )
}

struct AccountSuspended<'a> {
    company_name: &'a str,
    billing_url: &'a str,
}
bodies!(
    AccountSuspended,
    "email/account_suspended.txt",
    "email/account_suspended.html"
);

/// The account is suspended for an unpaid invoice: API keys are answered 402 until it is paid;
/// the data is kept.
pub fn account_suspended(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    billing_url: &str,
    dedupe_key: String,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "account_suspended",
            category: Category::Transactional,
            tenant_id,
            to,
            dedupe_key: Some(dedupe_key),
            // Not "account … suspended": phishing rules (SpamAssassin's TVD_PH_7) score it.
            subject: format!(
                "Your {} API keys are paused until the invoice is paid",
                brand.product_name
            ),
            preheader:
                "Your API keys are paused until the open invoice is paid. Your data is kept.".into(),
            reason: account_reason(brand),
        },
        &AccountSuspended {
            company_name,
            billing_url,
        },
    )
}

struct SubscriptionCanceled<'a> {
    company_name: &'a str,
    deletion_date: &'a str,
    account_url: String,
}
bodies!(
    SubscriptionCanceled,
    "email/subscription_canceled.txt",
    "email/subscription_canceled.html"
);

/// The subscription is canceled: the data is deleted on `deletion_date` (a date for people)
/// and can be exported from `{APP_URL}/account` before then.
pub fn subscription_canceled(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    deletion_date: &str,
    dedupe_key: String,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "subscription_canceled",
            category: Category::Transactional,
            tenant_id,
            to,
            dedupe_key: Some(dedupe_key),
            subject: format!("Your {} subscription is canceled", brand.product_name),
            preheader: format!(
                "Your data is kept until {deletion_date}: export it from your account page before then."
            ),
            reason: account_reason(brand),
        },
        &SubscriptionCanceled {
            company_name,
            deletion_date,
            account_url: brand.link("account"),
        },
    )
}

struct ProvisioningFailed<'a> {
    company_name: &'a str,
    retry_url: &'a str,
}
bodies!(
    ProvisioningFailed,
    "email/provisioning_failed.txt",
    "email/provisioning_failed.html"
);

/// Setting up a paid workspace failed for good: a link (under `APP_URL`) to retry it.
pub fn provisioning_failed(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    retry_url: &str,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "provisioning_failed",
            category: Category::Transactional,
            tenant_id,
            to,
            dedupe_key: Some(format!("provisioning_failed:{tenant_id}")),
            subject: format!(
                "Setting up your {} workspace did not finish",
                brand.product_name
            ),
            preheader: "Nothing is lost: retry the setup with the link inside, or reply for help."
                .into(),
            reason: account_reason(brand),
        },
        &ProvisioningFailed {
            company_name,
            retry_url,
        },
    )
}

struct DataExportReady<'a> {
    company_name: &'a str,
    exported_at: &'a str,
    reset_url: String,
    account_url: String,
}
bodies!(
    DataExportReady,
    "email/data_export_ready.txt",
    "email/data_export_ready.html"
);

/// A security notice: an export of the tenant's data was downloaded at `exported_at` (a time
/// for people); what to do if it was not them (a new password, their keys at `{APP_URL}/account`).
pub fn data_export_ready(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    exported_at: &str,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "data_export_ready",
            category: Category::Transactional,
            tenant_id,
            to,
            dedupe_key: None,
            subject: format!("Your {} data was exported", brand.product_name),
            preheader: format!(
                "A security notice: an export of your data was downloaded on {exported_at}."
            ),
            reason: account_reason(brand),
        },
        &DataExportReady {
            company_name,
            exported_at,
            reset_url: brand.link("login/forgot"),
            account_url: brand.link("account"),
        },
    )
}

struct EnterpriseRequest<'a> {
    company_name: &'a str,
    customer_email: &'a str,
    tenant_id: &'a str,
    approve_url: String,
}
bodies!(
    EnterpriseRequest,
    "email/enterprise_request.txt",
    "email/enterprise_request.html"
);

/// Tells the operator (`to`, `OPERATOR_EMAIL`) about an enterprise signup waiting in
/// `sales_review`, and how to approve it (the `onboard tenants approve` command or the admin
/// endpoint).
pub fn enterprise_request(
    brand: &Brand,
    tenant_id: &str,
    to: &str,
    company_name: &str,
    customer_email: &str,
) -> OutgoingEmail {
    compose(
        brand,
        Envelope {
            kind: "enterprise_request",
            category: Category::Transactional,
            tenant_id,
            to,
            dedupe_key: Some(format!("enterprise_request:{tenant_id}")),
            subject: format!("Enterprise signup to review: {company_name}"),
            preheader: format!("New enterprise signup: {company_name}"),
            reason: operator_reason(brand),
        },
        &EnterpriseRequest {
            company_name,
            customer_email,
            tenant_id,
            approve_url: brand.link(&format!("admin/tenants/{tenant_id}/approve")),
        },
    )
}

/// The footer's reason of an email to the operator.
fn operator_reason(brand: &Brand) -> String {
    format!(
        "You are receiving this email because this address is the operator address (OPERATOR_EMAIL) of this {} deployment.",
        brand.product_name
    )
}

/// One stuck customer in the operator's digest, written for people.
#[derive(Debug, Clone)]
pub struct DigestEntry {
    pub tenant_id: String,
    pub company_name: String,
    /// The customer's address, to reach them.
    pub email: String,
    /// Since when, e.g. "3 December 2026 at 08:00 UTC".
    pub since: String,
    /// Why, in a sentence.
    pub reason: String,
    /// What to do, in a sentence.
    pub suggestion: String,
}

/// Customers listed in one digest; the rest are counted and left to the list endpoint, so the
/// email stays readable (and deliverable) on the first run over an old database.
pub const DIGEST_MAX_LISTED: usize = 50;

struct DigestShown<'a> {
    e: &'a DigestEntry,
    resolve_url: String,
}

struct AtRiskDigest<'a> {
    headline: String,
    shown: Vec<DigestShown<'a>>,
    more: usize,
    list_url: String,
}
bodies!(
    AtRiskDigest,
    "email/at_risk_digest.txt",
    "email/at_risk_digest.html"
);

/// The daily digest to the operator (`to`, `OPERATOR_EMAIL`) of customers newly found stuck:
/// who, since when, why, what to do, and how to mark each resolved (`POST
/// /activation/at-risk/{tenant_id}/resolve`). About many tenants and to none of them, so it has
/// no tenant (their email consent does not apply) and no dedupe key (the flags that list each
/// tenant once are written in the transaction that queues it). `entries` is not empty.
pub fn at_risk_digest(brand: &Brand, to: &str, entries: &[DigestEntry]) -> OutgoingEmail {
    let n = entries.len();
    let (subject, headline) = if n == 1 {
        (
            "1 customer stuck in onboarding needs a human".to_string(),
            "1 customer is stuck in onboarding and needs a person to reach out.".to_string(),
        )
    } else {
        (
            format!("{n} customers stuck in onboarding need a human"),
            format!("{n} customers are stuck in onboarding and need a person to reach out."),
        )
    };
    let shown = entries
        .iter()
        .take(DIGEST_MAX_LISTED)
        .map(|e| DigestShown {
            e,
            resolve_url: brand.link(&format!("activation/at-risk/{}/resolve", e.tenant_id)),
        })
        .collect();
    let mut email = compose(
        brand,
        Envelope {
            kind: "at_risk_digest",
            category: Category::Transactional,
            // Not used: a transactional email has no unsubscribe link (see the doc above).
            tenant_id: "",
            to,
            dedupe_key: None,
            subject,
            preheader: "Who they are, since when, why, and what to do: each stays flagged until you resolve it."
                .into(),
            reason: operator_reason(brand),
        },
        &AtRiskDigest {
            headline,
            shown,
            more: n.saturating_sub(DIGEST_MAX_LISTED),
            list_url: brand.link("activation/at-risk?needs_human=true"),
        },
    );
    email.tenant_id = None;
    email
}

/// One email of every kind with fixed sample inputs (tenant, URLs with fixed tokens, dates), so
/// previews, snapshot tests and the SpamAssassin check see the same bodies every run.
pub mod samples {
    use super::*;

    pub const APP_URL: &str = "https://app.onboard.example";
    pub const TENANT: &str = "tenant_01JD5Z8W3Q4T6V9X2B7N1K0M3P";
    pub const TO: &str = "alice@acme-analytics.example";
    pub const COMPANY: &str = "Acme Analytics";

    /// A realistic sender: `onboard <hello@onboard.example>`, replies to support.
    pub fn sender() -> crate::email::Sender {
        crate::email::Sender {
            name: "onboard".into(),
            email: "hello@onboard.example".into(),
            reply_to: Some("support@onboard.example".into()),
        }
    }

    /// A brand with a fixed, public unsubscribe key: for samples only, never for sending.
    pub fn brand() -> Brand {
        Brand::new(
            APP_URL,
            "Onboard",
            "onboard, 1 Example Street, Springfield, 00000",
            b"a-fixed-test-secret-for-stable-snapshots",
        )
    }

    /// One email of every kind.
    pub fn every_kind(brand: &Brand) -> Vec<OutgoingEmail> {
        let url = |path: &str| format!("{APP_URL}/{path}");
        vec![
            welcome(
                brand,
                TENANT,
                TO,
                COMPANY,
                &url("login/magic?token=mlt_fixedtoken123"),
                24,
            ),
            checkout_reminder(
                brand,
                TENANT,
                TO,
                COMPANY,
                &url("onboarding/checkout?tenant_id=tenant_01JD5Z8W3Q4T6V9X2B7N1K0M3P"),
            ),
            payment_failed(
                brand,
                TENANT,
                TO,
                COMPANY,
                &url("account/billing/card"),
                format!("payment_failed:{TENANT}:in_1"),
            ),
            payment_recovered(
                brand,
                TENANT,
                TO,
                COMPANY,
                format!("payment_recovered:{TENANT}:in_1"),
            ),
            trial_ending(
                brand,
                TENANT,
                TO,
                COMPANY,
                "3 December 2026",
                &url("account/billing"),
                format!("trial_ending:{TENANT}"),
            ),
            account_suspended(
                brand,
                TENANT,
                TO,
                COMPANY,
                &url("account/billing"),
                format!("account_suspended:{TENANT}:in_1"),
            ),
            subscription_canceled(
                brand,
                TENANT,
                TO,
                COMPANY,
                "2 January 2027",
                format!("subscription_canceled:{TENANT}"),
            ),
            provisioning_failed(
                brand,
                TENANT,
                TO,
                COMPANY,
                &url("onboarding/retry?tenant_id=tenant_01JD5Z8W3Q4T6V9X2B7N1K0M3P"),
            ),
            password_reset(
                brand,
                TENANT,
                TO,
                COMPANY,
                &url("login/reset?token=rst_fixedtoken456"),
                60,
            ),
            sign_in_link(
                brand,
                TENANT,
                TO,
                COMPANY,
                &url("login/magic?token=mlt_fixedtoken321"),
                15,
            ),
            data_export_ready(brand, TENANT, TO, COMPANY, "3 December 2026 at 14:05 UTC"),
            invitation(
                brand,
                TENANT,
                "bob@acme-analytics.example",
                COMPANY,
                "Alice Martin",
                "admin",
                &url("invitations/accept?token=inv_fixedtoken789"),
            ),
            enterprise_request(
                brand,
                TENANT,
                "operators@onboard.example",
                COMPANY,
                "cio@acme-analytics.example",
            ),
            at_risk_digest(
                brand,
                "operators@onboard.example",
                &[
                    DigestEntry {
                        tenant_id: TENANT.into(),
                        company_name: COMPANY.into(),
                        email: TO.into(),
                        since: "3 December 2026 at 08:00 UTC".into(),
                        reason: "Signed in, but no document was uploaded within 24 hours of the first sign-in.".into(),
                        suggestion: "Offer a short onboarding call, or point them to the sample data and the upload guide (POST /v1/documents) so they can try it on their own content.".into(),
                    },
                    DigestEntry {
                        tenant_id: "tenant_01JD5Z9A7B8C9D0E1F2G3H4J5K".into(),
                        company_name: "Globex Research".into(),
                        email: "ops@globex-research.example".into(),
                        since: "4 December 2026 at 17:30 UTC".into(),
                        reason: "Provisioning the workspace failed and has not been retried.".into(),
                        suggestion: "Read the failure reason in the tenant's status history, fix the cause, then retry with POST /provision and tell the customer when the workspace is ready.".into(),
                    },
                ],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::samples::{APP_URL, COMPANY, TENANT, TO, brand, every_kind};
    use super::*;
    use crate::email::unsubscribe;

    const KINDS: [(&str, Category); 14] = [
        ("welcome", Category::Transactional),
        ("checkout_reminder", Category::Lifecycle),
        ("payment_failed", Category::Transactional),
        ("payment_recovered", Category::Transactional),
        ("trial_ending", Category::Lifecycle),
        ("account_suspended", Category::Transactional),
        ("subscription_canceled", Category::Transactional),
        ("provisioning_failed", Category::Transactional),
        ("password_reset", Category::Transactional),
        ("sign_in_link", Category::Transactional),
        ("data_export_ready", Category::Transactional),
        ("invitation", Category::Transactional),
        ("enterprise_request", Category::Transactional),
        ("at_risk_digest", Category::Transactional),
    ];

    #[test]
    fn every_kind_has_its_category() {
        let emails = every_kind(&brand());
        let kinds: Vec<_> = emails.iter().map(|e| (e.kind, e.category)).collect();
        assert_eq!(kinds, KINDS);
    }

    #[test]
    fn dedupe_keys_name_the_tenant_where_the_kind_is_once_per_tenant() {
        for e in every_kind(&brand()) {
            let expected = match e.kind {
                "welcome" | "checkout_reminder" | "provisioning_failed" | "enterprise_request" => {
                    Some(format!("{}:{TENANT}", e.kind))
                }
                "password_reset" | "sign_in_link" | "data_export_ready" => None,
                // Flags, written with it, list each tenant once.
                "at_risk_digest" => None,
                // The caller names these (one per invoice, per trial, …).
                _ => e.dedupe_key.clone(),
            };
            assert_eq!(e.dedupe_key, expected, "{}", e.kind);
            assert!(e.dedupe_key.is_some() || !e.kind.contains("payment"));
            // The operator's digest is about many tenants, none of them its reader.
            let tenant = (e.kind != "at_risk_digest").then_some(TENANT);
            assert_eq!(e.tenant_id.as_deref(), tenant);
        }
    }

    #[test]
    fn lifecycle_emails_carry_one_click_unsubscribe_headers_and_the_same_footer_link() {
        let brand = brand();
        for e in every_kind(&brand) {
            let header = |name: &str| {
                e.headers
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
                    .collect::<Vec<_>>()
            };
            if !e.category.unsubscribable() {
                assert!(e.headers.is_empty(), "{}: {:?}", e.kind, e.headers);
                assert!(!e.text.contains("unsubscribe") && !e.html.contains("unsubscribe"));
                continue;
            }
            let [list] = header("List-Unsubscribe")[..] else {
                panic!("{}: one List-Unsubscribe", e.kind)
            };
            assert_eq!(
                header("List-Unsubscribe-Post"),
                ["List-Unsubscribe=One-Click"]
            );
            let url = list
                .strip_prefix('<')
                .and_then(|l| l.strip_suffix('>'))
                .unwrap();
            let token = url
                .strip_prefix(&format!("{APP_URL}/unsubscribe?token="))
                .unwrap_or_else(|| panic!("{url}"));
            let who = unsubscribe::verify(brand.unsubscribe_key(), token).unwrap();
            assert_eq!((who.tenant_id.as_str(), who.email.as_str()), (TENANT, TO));
            assert!(e.text.contains(url), "{}: footer link in text", e.kind);
            assert!(
                e.html.contains(&format!("<a href=\"{url}\"")),
                "{}: footer link in HTML",
                e.kind
            );
        }
    }

    /// Every URL in a body: `href`/`src` values and anything that starts like a link.
    fn urls(body: &str) -> Vec<String> {
        let mut found = Vec::new();
        for attr in ["href=\"", "src=\"", "href='", "src='", "action=\""] {
            let quote = &attr[attr.len() - 1..];
            for (at, _) in body.match_indices(attr) {
                let rest = &body[at + attr.len()..];
                found.push(rest[..rest.find(quote).unwrap()].to_string());
            }
        }
        for scheme in ["http://", "https://", "www.", "mailto:", "//"] {
            for (at, _) in body.match_indices(scheme) {
                // Only where a link starts: not the `//` of an `https://` already taken.
                let before = body[..at].chars().last();
                if scheme == "//" && before == Some(':') {
                    continue;
                }
                let rest = &body[at..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
                    .unwrap_or(rest.len());
                found.push(rest[..end].to_string());
            }
        }
        found
    }

    #[test]
    fn every_link_of_every_email_is_under_app_url() {
        for e in every_kind(&brand()) {
            for (part, body) in [("text", &e.text), ("html", &e.html)] {
                let urls = urls(body);
                assert!(!urls.is_empty(), "{} {part}: no link at all", e.kind);
                for url in urls {
                    assert!(
                        url.starts_with(&format!("{APP_URL}/")),
                        "{} {part}: {url} is not under APP_URL",
                        e.kind
                    );
                }
            }
        }
    }

    #[test]
    fn every_email_has_the_preheader_first_and_the_footer() {
        let brand = brand();
        for e in every_kind(&brand) {
            let body = &e.html[e.html.find("<body").unwrap()..];
            let first = &body[body.find('>').unwrap() + 1..];
            assert!(
                first.trim_start().starts_with("<div style=\"display:none;"),
                "{}: the hidden preheader comes first in <body>",
                e.kind
            );
            let hidden = &first[..first.find("</div>").unwrap()];
            assert!(hidden.contains(&e.preheader), "{}", e.kind);
            assert!(hidden.contains("&zwnj;&nbsp;"), "{}: padded", e.kind);
            assert!(!e.preheader.is_empty() && e.preheader.len() <= 110);
            for body in [&e.text, &e.html] {
                assert!(body.contains(&brand.postal_address), "{}", e.kind);
                assert!(body.contains("You are receiving this"), "{}", e.kind);
                assert!(body.contains("The Onboard team"), "{}", e.kind);
            }
            assert!(
                e.html.contains(&format!("<title>{}</title>", e.subject)),
                "{}",
                e.kind
            );
        }
    }

    #[test]
    fn html_escapes_what_the_customer_typed_and_text_keeps_it() {
        let brand = brand();
        let e = welcome(
            &brand,
            TENANT,
            TO,
            "Acme <b>",
            "https://app.onboard.example/x",
            24,
        );
        assert!(
            !e.html.contains("Acme <b>") && e.html.contains("Acme &#60;b&#62;"),
            "{}",
            e.html
        );
        assert!(e.text.contains("Acme <b>"));
        let e = enterprise_request(&brand, TENANT, TO, "Acme", "x\"><script>@example.com");
        assert!(!e.html.contains("<script>"), "{}", e.html);
    }

    #[test]
    fn the_operator_email_names_the_command_and_the_endpoint() {
        let e = enterprise_request(&brand(), TENANT, TO, COMPANY, "cio@acme.example");
        for body in [&e.text, &e.html] {
            assert!(body.contains(&format!("onboard tenants approve {TENANT}")));
            assert!(body.contains(&format!("POST {APP_URL}/admin/tenants/{TENANT}/approve")));
            assert!(body.contains("cio@acme.example"));
        }
    }

    #[test]
    fn what_each_kind_must_say_is_in_both_parts() {
        for e in every_kind(&brand()) {
            let expected: &[&str] = match e.kind {
                "welcome" => &[
                    "/login/magic?token=mlt_fixedtoken123",
                    "24 hours",
                    "Step 1",
                    "/onboarding/wizard",
                    "/docs",
                ],
                "password_reset" => &["/login/reset?token=rst_fixedtoken456", "60 minutes"],
                "sign_in_link" => &["/login/magic?token=mlt_fixedtoken321", "15 minutes"],
                "trial_ending" => &["3 December 2026", "/account/billing"],
                "subscription_canceled" => &["2 January 2027", "/account"],
                "data_export_ready" => &["3 December 2026 at 14:05 UTC", "/account"],
                "payment_failed" => &["/account/billing/card"],
                "account_suspended" => &["402", "/account/billing", "kept"],
                "provisioning_failed" => &["/onboarding/retry?"],
                "checkout_reminder" => &["/onboarding/checkout?"],
                "at_risk_digest" => &[
                    "2 customers are stuck",
                    "Acme Analytics",
                    "alice@acme-analytics.example",
                    "Globex Research",
                    "Stuck since 3 December 2026 at 08:00 UTC.",
                    "no document was uploaded within 24 hours",
                    "Suggested: Offer a short onboarding call",
                    "POST https://app.onboard.example/activation/at-risk/tenant_01JD5Z8W3Q4T6V9X2B7N1K0M3P/resolve",
                    "GET https://app.onboard.example/activation/at-risk?needs_human=true",
                ],
                _ => &[],
            };
            for needle in expected {
                assert!(e.text.contains(needle), "{} text: {needle}", e.kind);
                assert!(e.html.contains(needle), "{} html: {needle}", e.kind);
            }
            // A sign-in link, never a secret.
            assert!(!e.text.contains("onb_") && !e.html.contains("onb_"));
        }
    }

    #[test]
    fn the_digest_lists_at_most_fifty_customers_and_counts_the_rest() {
        let entry = |i: usize| DigestEntry {
            tenant_id: format!("tenant_01JD5Z8W3Q4T6V9X2B7N1K{i:04}"),
            company_name: format!("Company {i}"),
            email: format!("c{i}@example.com"),
            since: "3 December 2026 at 08:00 UTC".into(),
            reason: "A reason.".into(),
            suggestion: "A suggestion.".into(),
        };
        let one = at_risk_digest(&brand(), TO, &[entry(0)]);
        assert_eq!(one.subject, "1 customer stuck in onboarding needs a human");
        assert!(!one.text.contains("more, in the list below"));
        let many: Vec<DigestEntry> = (0..DIGEST_MAX_LISTED + 3).map(entry).collect();
        let e = at_risk_digest(&brand(), TO, &many);
        assert_eq!(e.subject, "53 customers stuck in onboarding need a human");
        for body in [&e.text, &e.html] {
            assert!(body.contains("Company 49") && !body.contains("Company 50"));
            assert!(body.contains("And 3 more, in the list below."));
        }
    }

    /// Words and phrases spam filters score in subjects (whole words, any case).
    const SPAM_WORDS: &[&str] = &[
        "free",
        "click here",
        "act now",
        "guarantee",
        "guaranteed",
        "winner",
        "urgent",
        "cash",
        "limited time",
        "risk free",
        "no obligation",
        "congratulations",
        "cheap",
        "earn",
        "bonus",
    ];
    /// Substrings no subject may contain, whatever surrounds them.
    const SPAM_MARKS: &[&str] = &["100%", "$$$", "€€€"];
    /// All-caps words allowed in a subject.
    const CAPS_ALLOWED: &[&str] = &["API", "URL", "UTC"];

    /// What is wrong with a subject, if anything.
    fn subject_problems(subject: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let words: Vec<String> = subject
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
        for spam in SPAM_WORDS {
            let phrase: Vec<&str> = spam.split(' ').collect();
            if lower
                .windows(phrase.len())
                .any(|w| w.iter().zip(&phrase).all(|(a, b)| a == b))
            {
                problems.push(format!("spam word '{spam}'"));
            }
        }
        for mark in SPAM_MARKS {
            if subject.contains(mark) {
                problems.push(format!("spam mark '{mark}'"));
            }
        }
        for w in &words {
            let letters = w.chars().filter(|c| c.is_alphabetic()).count();
            if letters >= 2
                && w.chars().all(|c| !c.is_lowercase())
                && !CAPS_ALLOWED.contains(&w.as_str())
            {
                problems.push(format!("all-caps word '{w}'"));
            }
        }
        let chars: Vec<char> = subject.chars().collect();
        if chars
            .windows(2)
            .any(|p| matches!(p[0], '!' | '?') && matches!(p[1], '!' | '?'))
        {
            problems.push("a run of ! or ?".into());
        }
        if chars.len() > 78 {
            problems.push(format!("{} characters (at most 78)", chars.len()));
        }
        if subject.trim() != subject || subject.contains("  ") {
            problems.push("stray spaces".into());
        }
        problems
    }

    #[test]
    fn the_subject_lint_catches_what_it_should() {
        for bad in [
            "Get your FREE workspace",
            "Free trial inside",
            "Please click here now",
            "ACT NOW: offer",
            "We guarantee it",
            "You are a winner",
            "Urgent: read me",
            "100% better",
            "Make $$$ fast",
            "Cash back",
            "Welcome!!",
            "Really??",
            "What?!",
            "HELLO there",
            &"a".repeat(79),
        ] {
            assert!(!subject_problems(bad).is_empty(), "{bad} passed the lint");
        }
        for good in [
            "Your API keys are paused",
            "Freedom of choice, cashew nuts",
            "Welcome to onboard, Acme!",
            "Is this you?",
            "Your trial ends on 3 December 2026",
        ] {
            assert_eq!(subject_problems(good), Vec::<String>::new(), "{good}");
        }
    }

    #[test]
    fn no_subject_looks_like_spam() {
        for e in every_kind(&brand()) {
            assert_eq!(
                subject_problems(&e.subject),
                Vec::<String>::new(),
                "{}: {}",
                e.kind,
                e.subject
            );
            // The preheader is what inboxes show next to the subject: held to the same words.
            let p = subject_problems(&e.preheader);
            assert!(
                p.iter().all(|p| p.contains("characters")),
                "{}: {p:?}",
                e.kind
            );
        }
    }

    #[test]
    fn emails_with_a_sign_in_reset_or_invitation_link_keep_only_a_redacted_copy_once_sent() {
        for e in every_kind(&brand()) {
            let signs_in = [
                "/login/magic?token=",
                "/login/reset?token=",
                "/invitations/accept?token=",
            ]
            .iter()
            .any(|link| e.text.contains(link) && e.html.contains(link));
            assert_eq!(
                crate::email::SECRET_BEARING.contains(&e.kind),
                signs_in,
                "{}",
                e.kind
            );
        }
    }

    #[test]
    fn the_text_part_of_every_kind_is_as_reviewed() {
        for e in every_kind(&brand()) {
            let shown = format!(
                "Subject: {}\nPreheader: {}\n\n{}",
                e.subject, e.preheader, e.text
            );
            insta::assert_snapshot!(e.kind, shown);
        }
    }
}
