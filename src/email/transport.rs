//! Where emails go: the `outbox` (kept for `/dev/mailbox`, nothing leaves the machine), an SMTP
//! relay (`SMTP_URL`, through lettre: `smtp://` plain for local relays, `smtp://…?tls=required`
//! STARTTLS, `smtps://` implicit TLS, credentials in the URL), or SendGrid v3
//! (`SENDGRID_API_KEY`).

use std::time::Duration;

use lettre::AsyncTransport;

use super::StoredEmail;
use super::message::{Sender, mime};
use super::sendgrid::SendGrid;

/// Why a send did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later (unreachable, busy, rate-limited, a 4xx SMTP reply).
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help (refused address, bad credentials, a malformed message).
    #[error("{0}")]
    Permanent(String),
}

/// The configured transport.
#[derive(Clone)]
pub enum Transport {
    Outbox,
    Smtp(lettre::AsyncSmtpTransport<lettre::Tokio1Executor>),
    SendGrid(SendGrid),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Transport {
    /// An SMTP transport for `url` (see the module docs); checks the URL, opens no connection.
    pub fn smtp(url: &str) -> Result<Self, String> {
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|e| format!("not a usable SMTP URL ({e}); use smtp://host:port, smtp://user:pass@host:port?tls=required or smtps://user:pass@host"))?
            .timeout(Some(Duration::from_secs(30)))
            .build();
        Ok(Transport::Smtp(transport))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Transport::Outbox => "outbox",
            Transport::Smtp(_) => "smtp",
            Transport::SendGrid(_) => "sendgrid",
        }
    }

    /// Sends one stored email from `sender`. The outbox builds the message (so a malformed one
    /// fails there as it would anywhere) and keeps it.
    pub async fn send(&self, email: &StoredEmail, sender: &Sender) -> Result<(), SendError> {
        match self {
            Transport::Outbox => mime(email, sender).map(drop).map_err(SendError::Permanent),
            Transport::SendGrid(client) => client.send(email, sender).await,
            Transport::Smtp(smtp) => {
                let message = mime(email, sender).map_err(SendError::Permanent)?;
                match smtp.send(message).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_permanent() => Err(SendError::Permanent(format!(
                        "the SMTP server refused: {e}"
                    ))),
                    Err(e) => Err(SendError::Transient(format!("SMTP: {e}"))),
                }
            }
        }
    }
}
