//! SendGrid v3 Mail Send: `POST {SENDGRID_API_BASE}/v3/mail/send` with `Authorization: Bearer`
//! and the JSON body of [`super::message::sendgrid_body`]. A 202 means accepted (queued at
//! SendGrid, not yet delivered). Transport errors, 429 and 5xx are retried (see
//! [`crate::outbound`]) and then reported as transient; any other answer is permanent, with
//! SendGrid's error body kept for the email's record.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::StoredEmail;
use super::message::{Sender, sendgrid_body};
use super::transport::SendError;
use crate::outbound::{self, OutboundError, RetryPolicy};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A SendGrid client for one API key.
#[derive(Clone)]
pub struct SendGrid {
    http: reqwest::Client,
    endpoint: Url,
    auth: reqwest::header::HeaderValue,
    retry: RetryPolicy,
}

impl fmt::Debug for SendGrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGrid")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl SendGrid {
    pub fn new(api_base: &Url, api_key: &SecretString) -> Result<Self, String> {
        let endpoint = api_base
            .join("v3/mail/send")
            .map_err(|e| format!("SENDGRID_API_BASE: {e}"))?;
        let mut auth =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", api_key.expose_secret()))
                .map_err(|_| "SENDGRID_API_KEY has characters a header cannot carry".to_string())?;
        auth.set_sensitive(true);
        Ok(Self {
            http: outbound::http_client(REQUEST_TIMEOUT)?,
            endpoint,
            auth,
            retry: RetryPolicy::default(),
        })
    }

    /// Sends one email; SendGrid's answer to a refusal is in the error.
    pub async fn send(&self, email: &StoredEmail, sender: &Sender) -> Result<(), SendError> {
        let body = serde_json::to_vec(&sendgrid_body(email, sender))
            .map_err(|e| SendError::Permanent(format!("the email could not be encoded: {e}")))?;
        let result = outbound::send_with_retries(&self.retry, "SendGrid mail send", || {
            self.http
                .post(self.endpoint.clone())
                .header(reqwest::header::AUTHORIZATION, self.auth.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(OutboundError::Status { status, body }) => {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.chars().take(outbound::MAX_ERROR_TEXT).collect();
                let message = format!("SendGrid answered {status}: {text}");
                if status.as_u16() == 429 || status.is_server_error() {
                    Err(SendError::Transient(message))
                } else {
                    Err(SendError::Permanent(message))
                }
            }
            Err(OutboundError::Transport(e)) => Err(SendError::Transient(format!(
                "SendGrid could not be reached: {e}"
            ))),
        }
    }
}
