//! Email: templates, the outbox (every email is stored first, then delivered by a job, the
//! [`Delivery`] task), and transports. The `outbox` transport (default) keeps the message for
//! `/dev/mailbox`.
//!
//! A feature module: may use `jobs`, `store` and the `AppState` handle; must not import
//! `http`, `cli`, `tasks` or another feature module.

pub mod templates;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::app::AppState;
use crate::jobs::{Done, JobKind, JobRef, NewJob, Task};
use crate::store::{Store, StoreError, StoreResult, Tx, now_ms};
use crate::{with_conn, with_pool, with_reader};

/// A rendered email ready for the outbox.
#[derive(Debug, Clone)]
pub struct OutgoingEmail {
    pub tenant_id: Option<String>,
    pub kind: &'static str,
    /// At most one email per key, ever (e.g. `welcome:{tenant}`).
    pub dedupe_key: Option<String>,
    pub to: String,
    pub subject: String,
    pub preheader: String,
    pub text: String,
    pub html: String,
    pub headers: Vec<(String, String)>,
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
    pub headers: String,
    pub status: String,
    pub transport: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

const EMAIL_COLUMNS: &str = "id, tenant_id, kind, to_email, subject, preheader, text_body, html_body, headers, \
    status, transport, attempts, last_error, created_at, sent_at";

impl Tx {
    /// Stores an email for delivery. Returns its id, or `None` if one with the same dedupe key
    /// already exists (so a welcome email is written at most once per tenant).
    pub async fn insert_email(
        &mut self,
        email: &OutgoingEmail,
        from_domain: &str,
    ) -> StoreResult<Option<String>> {
        let id = format!("msg_{}", ulid::Ulid::new());
        let mut headers = email.headers.clone();
        headers.push(("Message-ID".into(), format!("<{id}@{from_domain}>")));
        headers.push(("Date".into(), chrono::Utc::now().to_rfc2822()));
        let headers = serde_json::to_string(&headers).expect("headers serialize");
        let n = with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO email_outbox (id, tenant_id, kind, dedupe_key, to_email, subject, preheader, text_body, \
                 html_body, headers, status, attempts, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', 0, $11) ON CONFLICT DO NOTHING",
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
            .bind(now_ms())
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

    async fn record_email_attempt(&self, id: &str, result: Result<&str, &str>) -> StoreResult<()> {
        let now = now_ms();
        with_pool!(self, |pool| {
            match result {
                Ok(transport) => sqlx::query(
                    "UPDATE email_outbox SET status = 'sent', transport = $1, sent_at = $2, attempts = attempts + 1, \
                     last_error = NULL WHERE id = $3 AND status <> 'sent'",
                )
                .bind(transport)
                .bind(now)
                .bind(id)
                .execute(pool)
                .await?,
                Err(error) => sqlx::query(
                    "UPDATE email_outbox SET attempts = attempts + 1, last_error = $1 WHERE id = $2 AND status <> 'sent'",
                )
                .bind(error)
                .bind(id)
                .execute(pool)
                .await?,
            };
        });
        Ok(())
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

    async fn run(&self, app: &AppState, _: JobRef<'_>) -> Result<Done, String> {
        app.mailer
            .deliver(&app.store, &self.email_id)
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

/// Delivers outbox emails through the configured transport.
#[derive(Clone)]
pub struct Mailer {
    outage: Arc<AtomicBool>,
}

impl Default for Mailer {
    fn default() -> Self {
        Self::outbox()
    }
}

impl Mailer {
    /// The `outbox` transport: delivery is recording the message as sent; it stays readable at
    /// `/dev/mailbox`.
    pub fn outbox() -> Self {
        Self {
            outage: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn transport(&self) -> &'static str {
        "outbox"
    }

    /// Makes delivery fail (true) or work again (false): test suite and chaos drills only.
    pub fn simulate_outage(&self, down: bool) {
        self.outage.store(down, Ordering::SeqCst);
    }

    /// Delivers one stored email; sending an already sent email is a no-op.
    pub async fn deliver(&self, store: &Store, id: &str) -> Result<(), EmailError> {
        let Some(email) = store.email(id).await? else {
            return Err(EmailError::Transport(format!(
                "email {id} is not in the outbox"
            )));
        };
        if email.status == "sent" {
            return Ok(());
        }
        if self.outage.load(Ordering::SeqCst) {
            let msg = "outbox transport unavailable (simulated outage)";
            store.record_email_attempt(id, Err(msg)).await?;
            return Err(EmailError::Transport(msg.into()));
        }
        store.record_email_attempt(id, Ok(self.transport())).await?;
        tracing::info!(email_id = id, kind = %email.kind, "email delivered to the outbox");
        Ok(())
    }
}
