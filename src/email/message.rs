//! One stored email as the two transports that send it want it: a MIME message (SMTP) and the
//! SendGrid v3 Mail Send body. Both carry the same headers: `From` (name and address), `Reply-To`,
//! `Date`, the email's stable `Message-ID`, and `List-Unsubscribe` with its one-click companion
//! when the email has one; the plain-text part comes before the HTML part.
//!
//! Also: the Message-ID of a new email, and the redacted copy of a body that carried a secret.

use serde_json::{Value, json};

use super::StoredEmail;

/// Who an email comes from and where replies go.
#[derive(Debug, Clone)]
pub struct Sender {
    pub name: String,
    pub email: String,
    /// `Reply-To`; the sender's address when unset.
    pub reply_to: Option<String>,
}

impl Sender {
    /// The domain of the sender's address (what Message-IDs are made in).
    pub fn domain(&self) -> &str {
        domain_of(&self.email)
    }

    fn reply_to(&self) -> &str {
        self.reply_to.as_deref().unwrap_or(&self.email)
    }
}

/// The part after the last `@`, or the whole string when there is none.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(_, d)| d)
}

/// A new, globally unique Message-ID in `domain`: `<{ulid}@{domain}>` (one `@`, angle brackets,
/// RFC 5322 `msg-id`).
pub fn new_message_id(domain: &str) -> String {
    let domain = domain
        .trim()
        .trim_matches(|c| c == '<' || c == '>' || c == '@');
    let domain = if domain.is_empty() {
        "onboard.local"
    } else {
        domain
    };
    format!(
        "<{}@{domain}>",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

/// Headers an email carries besides the ones every email has (e.g. `List-Unsubscribe`).
pub fn extra_headers(email: &StoredEmail) -> Vec<(String, String)> {
    serde_json::from_str(&email.headers).unwrap_or_default()
}

/// The MIME message sent over SMTP.
pub fn mime(email: &StoredEmail, sender: &Sender) -> Result<lettre::Message, String> {
    use lettre::message::header::{HeaderName, HeaderValue};
    use lettre::message::{Mailbox, MultiPart};
    let mailbox = |name: Option<&str>, address: &str| -> Result<Mailbox, String> {
        let address = address
            .parse()
            .map_err(|e| format!("'{address}' is not an email address: {e}"))?;
        Ok(Mailbox::new(name.map(str::to_string), address))
    };
    let sent_at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(email.created_at as u64);
    let mut builder = lettre::Message::builder()
        .from(mailbox(Some(&sender.name), &sender.email)?)
        .reply_to(mailbox(Some(&sender.name), sender.reply_to())?)
        .to(mailbox(None, &email.to_email)?)
        .subject(&email.subject)
        .date(sent_at)
        .message_id(Some(email.message_id.clone()));
    for (name, value) in extra_headers(email) {
        let name = HeaderName::new_from_ascii(name.clone())
            .map_err(|_| format!("'{name}' is not a header name"))?;
        builder = builder.raw_header(HeaderValue::new(name, value));
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            email.text_body.clone(),
            email.html_body.clone(),
        ))
        .map_err(|e| format!("the message could not be built: {e}"))
}

/// The SendGrid v3 `POST /v3/mail/send` body (`tests/fixtures/contracts/sendgrid_mail_send.json`):
/// one personalization with the tenant and the kind as custom args, plain text before HTML, our
/// Message-ID and list headers, the kind as a category, and no click or open tracking (links
/// stay ours, and nothing is added to a message a person did not ask for).
pub fn sendgrid_body(email: &StoredEmail, sender: &Sender) -> Value {
    let mut custom_args = serde_json::Map::new();
    if let Some(tenant) = &email.tenant_id {
        custom_args.insert("tenant_id".into(), json!(tenant));
    }
    custom_args.insert("email_kind".into(), json!(email.kind));
    let mut headers = serde_json::Map::new();
    headers.insert("Message-ID".into(), json!(email.message_id));
    for (name, value) in extra_headers(email) {
        headers.insert(name, json!(value));
    }
    json!({
        "personalizations": [{
            "to": [{"email": email.to_email}],
            "custom_args": custom_args,
        }],
        "from": {"email": sender.email, "name": sender.name},
        "reply_to": {"email": sender.reply_to(), "name": sender.name},
        "subject": email.subject,
        "content": [
            {"type": "text/plain", "value": email.text_body},
            {"type": "text/html", "value": email.html_body},
        ],
        "headers": headers,
        "categories": ["onboard", email.kind],
        "tracking_settings": {
            "click_tracking": {"enable": false, "enable_text": false},
            "open_tracking": {"enable": false},
        },
        "mail_settings": {"sandbox_mode": {"enable": false}},
    })
}

/// What replaces a secret link in a sent email's stored copy.
pub const REDACTED_LINK: &str = "[link removed once the email was sent]";

/// A body with every link that carries a token (`…?token=…`) replaced by [`REDACTED_LINK`]: a
/// sent sign-in or reset email's stored copy must not keep a working secret.
pub fn redact(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.find("token=") {
        // The link starts at the last `http` before the token.
        let start = rest[..at].rfind("http").unwrap_or(at);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')'))
            .map_or(rest.len(), |n| at + n);
        out.push_str(&rest[..start]);
        out.push_str(REDACTED_LINK);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredEmail {
        StoredEmail {
            id: "msg_1".into(),
            tenant_id: Some("tenant_01".into()),
            kind: "welcome".into(),
            to_email: "alice@example.com".into(),
            subject: "Welcome to onboard".into(),
            preheader: "Ready".into(),
            text_body: "Sign in: http://x/login/magic?token=abc\n".into(),
            html_body: "<p><a href=\"http://x/login/magic?token=abc\">Sign in</a></p>".into(),
            headers: serde_json::to_string(&vec![(
                "List-Unsubscribe".to_string(),
                "<http://x/unsubscribe?token=u>".to_string(),
            )])
            .unwrap(),
            message_id: "<01abc@example.com>".into(),
            status: "queued".into(),
            transport: None,
            attempts: 0,
            last_error: None,
            created_at: 1_764_000_000_000,
            sent_at: None,
        }
    }

    fn sender() -> Sender {
        Sender {
            name: "Onboard".into(),
            email: "hello@example.com".into(),
            reply_to: Some("support@example.com".into()),
        }
    }

    #[test]
    fn message_ids_have_one_at_and_angle_brackets() {
        let id = new_message_id(domain_of("onboarding@onboard.local"));
        assert!(
            id.starts_with('<') && id.ends_with("@onboard.local>"),
            "{id}"
        );
        assert_eq!(id.matches('@').count(), 1, "{id}");
        assert_ne!(id, new_message_id("onboard.local"));
        assert!(new_message_id("").ends_with("@onboard.local>"));
    }

    #[test]
    fn the_mime_message_has_every_header_and_text_before_html() {
        let raw = String::from_utf8(mime(&stored(), &sender()).unwrap().formatted()).unwrap();
        for header in [
            "From: Onboard <hello@example.com>",
            "Reply-To: Onboard <support@example.com>",
            "To: alice@example.com",
            "Subject: Welcome to onboard",
            "Message-ID: <01abc@example.com>",
            "List-Unsubscribe: <http://x/unsubscribe?token=u>",
            "Date: ",
            "multipart/alternative",
        ] {
            assert!(raw.contains(header), "{header} missing in:\n{raw}");
        }
        let plain = raw.find("text/plain").unwrap();
        let html = raw.find("text/html").unwrap();
        assert!(plain < html, "plain text first");
    }

    /// The header block of a raw message, unfolded: (name, value) in order.
    fn headers_of(raw: &str) -> Vec<(String, String)> {
        let head = raw.split("\r\n\r\n").next().unwrap();
        head.replace("\r\n ", " ")
            .replace("\r\n\t", " ")
            .split("\r\n")
            .map(|line| {
                let (name, value) = line.split_once(':').expect("a header line");
                (name.to_string(), value.trim().to_string())
            })
            .collect()
    }

    #[test]
    fn every_kind_leaves_as_a_well_formed_message() {
        use crate::email::templates::samples;
        let sender = samples::sender();
        for email in samples::every_kind(&samples::brand()) {
            let stored = email.preview(&sender.email);
            let raw = String::from_utf8(mime(&stored, &sender).unwrap().formatted()).unwrap();
            let headers = headers_of(&raw);
            let all = |name: &str| -> Vec<&str> {
                headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
                    .collect()
            };
            let one = |name: &str| -> &str {
                let values = all(name);
                assert_eq!(values.len(), 1, "{}: one {name} in\n{raw}", email.kind);
                values[0]
            };
            let kind = email.kind;
            let message_id = one("Message-ID");
            assert!(
                message_id.starts_with('<')
                    && message_id.ends_with("@onboard.example>")
                    && message_id.matches('@').count() == 1,
                "{kind}: {message_id}"
            );
            assert!(
                chrono::DateTime::parse_from_rfc2822(one("Date")).is_ok(),
                "{kind}: {}",
                one("Date")
            );
            assert_eq!(one("From"), "onboard <hello@onboard.example>", "{kind}");
            assert_eq!(one("Reply-To"), "onboard <support@onboard.example>");
            assert_eq!(one("To"), email.to);
            assert!(!one("Subject").is_empty());
            assert_eq!(one("MIME-Version"), "1.0");
            assert!(
                one("Content-Type").starts_with("multipart/alternative"),
                "{kind}"
            );
            let plain = raw.find("Content-Type: text/plain").expect("a text part");
            let html = raw.find("Content-Type: text/html").expect("an HTML part");
            assert!(plain < html, "{kind}: plain text before HTML");
            let (list, post) = (all("List-Unsubscribe"), all("List-Unsubscribe-Post"));
            if email.category.unsubscribable() {
                assert_eq!(list.len(), 1, "{kind}");
                assert!(
                    list[0].starts_with("<https://app.onboard.example/unsubscribe?token=")
                        && list[0].ends_with('>'),
                    "{kind}: {}",
                    list[0]
                );
                assert_eq!(post, ["List-Unsubscribe=One-Click"], "{kind}");
            } else {
                assert!(list.is_empty() && post.is_empty(), "{kind}: {list:?}");
            }
        }
    }

    #[test]
    fn the_sendgrid_body_follows_the_contract() {
        let body = sendgrid_body(&stored(), &sender());
        assert_eq!(
            body["personalizations"][0]["to"][0]["email"],
            "alice@example.com"
        );
        assert_eq!(
            body["personalizations"][0]["custom_args"]["tenant_id"],
            "tenant_01"
        );
        assert_eq!(
            body["from"],
            json!({"email": "hello@example.com", "name": "Onboard"})
        );
        assert_eq!(body["reply_to"]["email"], "support@example.com");
        assert_eq!(body["content"][0]["type"], "text/plain");
        assert_eq!(body["content"][1]["type"], "text/html");
        assert_eq!(body["headers"]["Message-ID"], "<01abc@example.com>");
        assert_eq!(
            body["headers"]["List-Unsubscribe"],
            "<http://x/unsubscribe?token=u>"
        );
        assert_eq!(body["tracking_settings"]["click_tracking"]["enable"], false);
    }

    #[test]
    fn secret_links_are_removed_from_stored_copies() {
        let e = stored();
        let text = redact(&e.text_body);
        assert_eq!(text, format!("Sign in: {REDACTED_LINK}\n"));
        let html = redact(&e.html_body);
        assert!(
            !html.contains("token=") && html.contains(REDACTED_LINK),
            "{html}"
        );
        assert!(html.contains(">Sign in</a>"), "{html}");
        assert_eq!(redact("no links here"), "no links here");
    }
}
