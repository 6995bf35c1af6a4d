//! Email: templates ([`templates`], one constructor per kind, rendered in the sender's
//! [`Brand`]; each email has a [`Category`], and Lifecycle and Marketing ones carry a signed
//! [`unsubscribe`] link), the outbox (every email is stored first, then delivered by its own job,
//! the [`Delivery`] task), and the transports that send it ([`transport`]: the outbox, SMTP,
//! SendGrid). The `outbox` transport (default) keeps the message for `/dev/mailbox`.
//!
//! Each email is sent once. A delivery claims the email (`sending`, with its owner) before it
//! calls the transport and records the outcome only as that owner. An email found `sending`
//! by a later attempt was claimed by a process that stopped between the call and the record:
//! its outcome is unknown, so it is sent once more with the same `Message-ID` (receivers and
//! providers treat it as the same message) and counted; a second unknown outcome is not sent
//! again. Once it has left the machine, an email that carried a sign-in or reset link keeps
//! only a redacted copy (the outbox's copy is the delivered message: the development mailbox).
//!
//! A feature module: may use `jobs`, `store` and the `AppState` handle; must not import
//! `http`, `cli`, `tasks` or another feature module.

pub mod brand;
pub mod consent;
pub mod message;
pub mod sendgrid;
pub mod templates;
pub mod transport;
pub mod unsubscribe;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::app::AppState;
use crate::jobs::{Done, JobKind, JobRef, NewJob, Task};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, StoreResult, Tx, now_ms};
use crate::{with_conn, with_pool, with_reader};

pub use brand::Brand;
pub use message::Sender;
pub use transport::{SendError, Transport};

/// Kinds whose bodies carry a secret link (sign-in, reset, joining a team): once sent, only a
/// redacted copy is kept.
const SECRET_BEARING: &[&str] = &["welcome", "password_reset", "sign_in_link", "invitation"];

/// Why an email is sent, which decides whether the reader may opt out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// About the account itself (sign-in, billing, security): always sent, no unsubscribe link.
    Transactional,
    /// Reminders along the customer's journey: `List-Unsubscribe` and a footer link.
    Lifecycle,
    /// News and offers: `List-Unsubscribe` and a footer link.
    Marketing,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Transactional => "transactional",
            Category::Lifecycle => "lifecycle",
            Category::Marketing => "marketing",
        }
    }

    /// Whether the reader can opt out (`List-Unsubscribe`, the footer's link).
    pub fn unsubscribable(self) -> bool {
        self != Category::Transactional
    }
}

/// A rendered email ready for the outbox.
#[derive(Debug, Clone)]
pub struct OutgoingEmail {
    pub tenant_id: Option<String>,
    pub kind: &'static str,
    pub category: Category,
    /// At most one email per key, ever (e.g. `welcome:{tenant}`).
    pub dedupe_key: Option<String>,
    pub to: String,
    pub subject: String,
    pub preheader: String,
    pub text: String,
    pub html: String,
    pub headers: Vec<(String, String)>,
}

impl OutgoingEmail {
    /// The email as the outbox would store it right now (queued, a fresh Message-ID in the
    /// sender's domain): what the transports would send, for previews and tests.
    pub fn preview(&self, from_address: &str) -> StoredEmail {
        StoredEmail {
            id: format!("msg_{}", ulid::Ulid::new()),
            tenant_id: self.tenant_id.clone(),
            kind: self.kind.to_string(),
            to_email: self.to.clone(),
            subject: self.subject.clone(),
            preheader: self.preheader.clone(),
            text_body: self.text.clone(),
            html_body: self.html.clone(),
            headers: serde_json::to_string(&self.headers).expect("headers serialize"),
            message_id: message::new_message_id(message::domain_of(from_address)),
            status: "queued".into(),
            transport: None,
            attempts: 0,
            last_error: None,
            created_at: now_ms(),
            sent_at: None,
        }
    }
}

/// A stored email.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct StoredEmail {
    pub id: String,
    pub tenant_id: Option<String>,
    pub kind: String,
    pub to_email: String,
    pub subject: String,
    pub preheader: String,
    pub text_body: String,
    pub html_body: String,
    /// Extra headers (e.g. `List-Unsubscribe`), JSON `[[name, value], …]`.
    pub headers: String,
    /// `<id@domain>`, fixed when the email is stored: a resend carries the same one.
    pub message_id: String,
    /// `queued`, `sending`, `sent`, `failed` (refused for good) or `unknown` (sent at most
    /// twice, the outcome of both unknown).
    pub status: String,
    pub transport: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

const EMAIL_COLUMNS: &str = "id, tenant_id, kind, to_email, subject, preheader, text_body, html_body, headers, \
    COALESCE(message_id, '<' || id || '@onboard.local>') AS message_id, \
    status, transport, attempts, last_error, created_at, sent_at";

impl Tx {
    /// Stores an email for delivery. Returns its id, or `None` if one with the same dedupe key
    /// already exists (so a welcome email is written at most once per tenant).
    pub async fn insert_email(
        &mut self,
        email: &OutgoingEmail,
        from_address: &str,
    ) -> StoreResult<Option<String>> {
        if let Some(tenant) = &email.tenant_id
            && !self.may_email(tenant, email.category).await?
        {
            tracing::info!(tenant_id = %tenant, kind = email.kind, "email not sent: the tenant unsubscribed or did not opt in");
            return Ok(None);
        }
        let id = format!("msg_{}", ulid::Ulid::new());
        let message_id = message::new_message_id(message::domain_of(from_address));
        let headers = serde_json::to_string(&email.headers).expect("headers serialize");
        let n = with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO email_outbox (id, tenant_id, kind, dedupe_key, to_email, subject, preheader, text_body, \
                 html_body, headers, message_id, status, attempts, created_at, category) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued', 0, $12, $13) ON CONFLICT DO NOTHING",
            )
            .bind(&id)
            .bind(&email.tenant_id)
            .bind(email.kind)
            .bind(&email.dedupe_key)
            .bind(&email.to)
            .bind(&email.subject)
            .bind(&email.preheader)
            .bind(&email.text)
            .bind(&email.html)
            .bind(headers)
            .bind(message_id)
            .bind(now_ms())
            .bind(email.category.as_str())
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
        Ok((n == 1).then_some(id))
    }
}

impl Tx {
    /// Stores an email and enqueues its delivery in this transaction; `None` when the dedupe
    /// key was already used (nothing is queued then).
    pub async fn queue_email(
        &mut self,
        email: &OutgoingEmail,
        from_address: &str,
    ) -> StoreResult<Option<String>> {
        let id = self.insert_email(email, from_address).await?;
        if let Some(id) = &id {
            self.enqueue(delivery_job(id)).await?;
        }
        Ok(id)
    }
}

impl Store {
    pub async fn email(&self, id: &str) -> StoreResult<Option<StoredEmail>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {EMAIL_COLUMNS} FROM email_outbox WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Emails, newest first, optionally for one tenant.
    pub async fn list_emails(
        &self,
        tenant_id: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<StoredEmail>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {EMAIL_COLUMNS} FROM email_outbox WHERE ($1 IS NULL OR tenant_id = $1) \
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            )))
            .bind(tenant_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Claims an email for a delivery by `owner`, if it is still in the status the caller
    /// saw (`queued`, or `sending` for a resend after an unknown outcome).
    async fn claim_email(
        &self,
        id: &str,
        owner: &str,
        seen: &str,
        unknown: bool,
    ) -> StoreResult<bool> {
        let n = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE email_outbox SET status = 'sending', claimed_by = $1, claimed_at = $2, \
                 unknown_outcomes = unknown_outcomes + $3 WHERE id = $4 AND status = $5",
            )
            .bind(owner)
            .bind(now_ms())
            .bind(i64::from(unknown))
            .bind(id)
            .bind(seen)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Records how a claimed delivery went, as its owner: `sent` (bodies redacted when they
    /// carried a secret), or back to `queued` for a retry, or `failed` for good.
    async fn record_delivery(
        &self,
        email: &StoredEmail,
        owner: &str,
        outcome: Result<&str, (&str, &str)>,
    ) -> StoreResult<()> {
        let now = now_ms();
        with_pool!(self, |pool| {
            match outcome {
                Ok(transport) => {
                    // The outbox's stored copy is the delivered message (the development
                    // mailbox reads it), so only a message that left the machine is redacted.
                    let redact =
                        transport != "outbox" && SECRET_BEARING.contains(&email.kind.as_str());
                    let (text, html) = if redact {
                        (
                            message::redact(&email.text_body),
                            message::redact(&email.html_body),
                        )
                    } else {
                        (email.text_body.clone(), email.html_body.clone())
                    };
                    sqlx::query(
                        "UPDATE email_outbox SET status = 'sent', transport = $1, sent_at = $2, \
                         attempts = attempts + 1, last_error = NULL, claimed_by = NULL, text_body = $3, \
                         html_body = $4 WHERE id = $5 AND claimed_by = $6 AND status = 'sending'",
                    )
                    .bind(transport)
                    .bind(now)
                    .bind(text)
                    .bind(html)
                    .bind(&email.id)
                    .bind(owner)
                    .execute(pool)
                    .await?
                }
                Err((status, error)) => {
                    sqlx::query(
                        "UPDATE email_outbox SET status = $1, attempts = attempts + 1, last_error = $2, \
                         claimed_by = NULL WHERE id = $3 AND claimed_by = $4 AND status = 'sending'",
                    )
                    .bind(status)
                    .bind(error)
                    .bind(&email.id)
                    .bind(owner)
                    .execute(pool)
                    .await?
                }
            };
        });
        Ok(())
    }

    /// Gives up on an email whose outcome was unknown twice.
    async fn give_up_unknown(&self, id: &str) -> StoreResult<()> {
        with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE email_outbox SET status = 'unknown', claimed_by = NULL, last_error = $1 \
                 WHERE id = $2 AND status = 'sending'",
            )
            .bind(
                "the outcome of the send and of its one resend are both unknown (the process \
                 stopped between calling the transport and recording it); not sent again",
            )
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// How many times an email's outcome was unknown (a resend was made each time).
    async fn unknown_outcomes(&self, id: &str) -> StoreResult<i64> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_scalar("SELECT unknown_outcomes FROM email_outbox WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await?
        }))
    }
}

/// Payload of the job that delivers one stored email.
#[derive(Serialize, serde::Deserialize)]
pub struct Delivery {
    pub email_id: String,
}

/// The delivery job of one stored email.
pub fn delivery_job(email_id: &str) -> NewJob {
    Delivery {
        email_id: email_id.to_string(),
    }
    .job(8)
    .dedupe(format!("email:{email_id}"))
}

impl Task for Delivery {
    type Context = AppState;
    /// An email can follow provisioning a few milliseconds later.
    const KIND: JobKind = JobKind::new("send_email", 5);

    async fn run(&self, app: &AppState, job: JobRef<'_>) -> Result<Done, String> {
        let owner = format!("{}:{}", job.id, job.worker);
        app.mailer
            .deliver(&app.store, &self.email_id, &owner)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Done::ByWorker)
    }
}

/// Delivery failures.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("email transport failed: {0}")]
    Transport(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of the last send attempt of this process (for `/health`).
#[derive(Debug, Clone, Serialize)]
pub struct LastSend {
    pub ok: bool,
    /// Unix milliseconds.
    pub at: i64,
    pub error: Option<String>,
}

/// Delivers stored emails through the configured transport.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    sender: Sender,
    brand: Brand,
    outage: AtomicBool,
    last: Mutex<Option<LastSend>>,
    /// Where sends, failures and unknown outcomes are counted (`onboard_emails_*`).
    metrics: Arc<Metrics>,
}

impl Default for Mailer {
    fn default() -> Self {
        Self::outbox()
    }
}

impl Mailer {
    /// A mailer counting what it sends in `metrics` (the process's, exported at `/metrics`).
    pub fn new(transport: Transport, sender: Sender, brand: Brand, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                transport,
                sender,
                brand,
                outage: AtomicBool::new(false),
                last: Mutex::new(None),
                metrics,
            }),
        }
    }

    /// The `outbox` transport: delivery records the message as sent; it stays readable at
    /// `/dev/mailbox`. Counts in metrics of its own, which nothing exports.
    pub fn outbox() -> Self {
        Self::new(
            Transport::Outbox,
            Sender {
                name: "Onboard".into(),
                email: "onboarding@onboard.local".into(),
                reply_to: None,
            },
            Brand::development(),
            Arc::new(Metrics::new()),
        )
    }

    /// `outbox`, `smtp` or `sendgrid`.
    pub fn transport(&self) -> &'static str {
        self.inner.transport.name()
    }

    pub fn sender(&self) -> &Sender {
        &self.inner.sender
    }

    /// What the templates need to know about the sender (links, footer, unsubscribe key).
    pub fn brand(&self) -> &Brand {
        &self.inner.brand
    }

    /// How the last send of this process went, if there was one.
    pub fn last_send(&self) -> Option<LastSend> {
        self.inner.last.lock().expect("mailer lock").clone()
    }

    /// Makes delivery fail (true) or work again (false): test suite and chaos drills only.
    pub fn simulate_outage(&self, down: bool) {
        self.inner.outage.store(down, Ordering::SeqCst);
    }

    fn note(&self, kind: &str, ok: bool, error: Option<String>) {
        self.inner.metrics.email(kind, ok);
        *self.inner.last.lock().expect("mailer lock") = Some(LastSend {
            ok,
            at: now_ms(),
            error,
        });
    }

    /// Delivers one stored email as `owner` (one delivery attempt of its job). Sent, failed
    /// for good or given up: nothing to do. A transient failure is an `Err` (the job retries).
    pub async fn deliver(&self, store: &Store, id: &str, owner: &str) -> Result<(), EmailError> {
        let Some(email) = store.email(id).await? else {
            return Err(EmailError::Transport(format!(
                "email {id} is not in the outbox"
            )));
        };
        let unknown = match email.status.as_str() {
            "queued" => false,
            "sending" => true,
            _ => return Ok(()),
        };
        if unknown {
            // The last attempt claimed it and stopped before recording the outcome.
            if store.unknown_outcomes(id).await? >= 1 {
                store.give_up_unknown(id).await?;
                tracing::error!(email_id = id, "email outcome unknown twice: not sent again");
                return Ok(());
            }
            self.inner.metrics.email_unknown_outcomes.inc();
            tracing::warn!(email_id = id, message_id = %email.message_id, "email outcome unknown: sending once more with the same Message-ID");
        }
        if !store.claim_email(id, owner, &email.status, unknown).await? {
            // Another delivery changed it meanwhile; it records the outcome.
            return Ok(());
        }
        let result = if self.inner.outage.load(Ordering::SeqCst) {
            Err(SendError::Transient(format!(
                "{} transport unavailable (simulated outage)",
                self.transport()
            )))
        } else {
            self.inner.transport.send(&email, &self.inner.sender).await
        };
        match result {
            Ok(()) => {
                store
                    .record_delivery(&email, owner, Ok(self.transport()))
                    .await?;
                self.note(&email.kind, true, None);
                tracing::info!(email_id = id, kind = %email.kind, transport = self.transport(), "email sent");
                Ok(())
            }
            Err(SendError::Transient(e)) => {
                store
                    .record_delivery(&email, owner, Err(("queued", &e)))
                    .await?;
                self.note(&email.kind, false, Some(e.clone()));
                Err(EmailError::Transport(e))
            }
            Err(SendError::Permanent(e)) => {
                store
                    .record_delivery(&email, owner, Err(("failed", &e)))
                    .await?;
                self.note(&email.kind, false, Some(e.clone()));
                tracing::error!(email_id = id, kind = %email.kind, error = %e, "email refused for good");
                Ok(())
            }
        }
    }
}
