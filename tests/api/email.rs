//! Email that leaves the machine: a real SMTP server on loopback (aiosmtpd, from PyPI, started
//! by the test), SendGrid against a local fake checking the exact request, outages, the
//! send-once rule when a process stops between the send and its record, and SpamAssassin's
//! verdict on the message as SMTP sends it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Backend, TestApp, eventually, spawn_app_with};
use crate::store_tests;

store_tests!(
    smtp_delivers_the_welcome_email_with_both_parts_and_every_header,
    an_smtp_outage_delays_the_email_but_never_provisioning_and_it_arrives_once,
    an_unknown_outcome_is_resent_once_with_the_same_message_id,
    sendgrid_gets_the_contract_request_and_a_refusal_is_kept,
);

/// A real SMTP server (aiosmtpd) on a loopback port, writing what it receives to a Maildir;
/// killed on drop.
struct SmtpServer {
    port: u16,
    maildir: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// `None` (saying so) when aiosmtpd is not installed; `.ci/run` installs it.
    fn start() -> Option<SmtpServer> {
        let port = crate::helpers::free_port();
        Self::start_on(port)
    }

    fn start_on(port: u16) -> Option<SmtpServer> {
        let available = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            eprintln!("SKIPPED SMTP test: aiosmtpd is not installed (pip install aiosmtpd)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail");
        let mut server = SmtpServer {
            port,
            maildir,
            child: None,
            _dir: dir,
        };
        server.run();
        Some(server)
    }

    fn run(&mut self) {
        let child = Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{}", self.port),
                "-c",
                "aiosmtpd.handlers.Mailbox",
                self.maildir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "aiosmtpd did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, raw.
    fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                out.push(std::fs::read_to_string(e.path()).unwrap());
            }
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The value of a header in a raw message (first occurrence, unfolded).
fn header_of(raw: &str, name: &str) -> Option<String> {
    let head = raw
        .split("\r\n\r\n")
        .next()
        .or_else(|| raw.split("\n\n").next())?;
    let mut lines = head.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            let mut value = v.trim().to_string();
            while let Some(next) = lines.peek() {
                if next.starts_with(' ') || next.starts_with('\t') {
                    value.push(' ');
                    value.push_str(next.trim());
                    lines.next();
                } else {
                    break;
                }
            }
            return Some(value);
        }
    }
    None
}

/// The raw message's decoded text/plain part (quoted-printable or 7bit).
fn plain_part(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let start = raw
        .find("Content-Type: text/plain")
        .expect("a text/plain part");
    let body_start = raw[start..].find("\n\n").map(|i| start + i + 2).unwrap();
    let end = raw[body_start..]
        .find("\n--")
        .map_or(raw.len(), |i| body_start + i);
    let part = &raw[body_start..end];
    // Undo quoted-printable soft breaks and the escapes a link can contain.
    part.replace("=\n", "")
        .replace("=3D", "=")
        .replace("=20", " ")
}

async fn welcome_email_row(app: &TestApp, tenant: &str) -> onboard::email::StoredEmail {
    app.store
        .list_emails(Some(tenant), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "welcome")
        .expect("a welcome email")
}

async fn smtp_delivers_the_welcome_email_with_both_parts_and_every_header(backend: Backend) {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = spawn_app_with(
        backend,
        &[
            ("SMTP_URL", &smtp.url()),
            ("SENDGRID_FROM_EMAIL", "hello@onboard.example"),
            ("SENDGRID_FROM_NAME", "Onboard Team"),
            ("EMAIL_REPLY_TO", "support@onboard.example"),
        ],
    )
    .await;
    let t = app
        .active_tenant("smtp-welcome@example.com", "starter")
        .await;
    let raw = eventually("the welcome email at the SMTP server", 30, || async {
        smtp.messages().into_iter().next()
    })
    .await;
    let from = header_of(&raw, "From").unwrap();
    assert!(
        from.contains("Onboard Team") && from.ends_with("<hello@onboard.example>"),
        "{from}"
    );
    let reply_to = header_of(&raw, "Reply-To").unwrap();
    assert!(
        reply_to.ends_with("<support@onboard.example>"),
        "{reply_to}"
    );
    assert_eq!(
        header_of(&raw, "To").as_deref(),
        Some("smtp-welcome@example.com")
    );
    assert!(header_of(&raw, "Date").is_some());
    let message_id = header_of(&raw, "Message-ID").unwrap();
    assert!(
        message_id.starts_with('<')
            && message_id.ends_with("@onboard.example>")
            && message_id.matches('@').count() == 1,
        "{message_id}"
    );
    assert!(
        header_of(&raw, "Content-Type")
            .unwrap()
            .starts_with("multipart/alternative")
    );
    let plain = raw.find("Content-Type: text/plain").unwrap();
    let html = raw.find("Content-Type: text/html").unwrap();
    assert!(plain < html, "the plain-text part comes first");

    // The sign-in link in the message works.
    let text = plain_part(&raw);
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/login/magic?token="))
        .expect("the sign-in link")
        .to_string();
    assert_eq!(app.client.get(&link).send().await.unwrap().status(), 200);
    let token = link.split("token=").nth(1).unwrap();
    let signed_in = app
        .client
        .post(app.url("/login/magic"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);

    // The stored copy no longer holds the secret; the record says how it went (once the worker
    // has heard the server's answer, which may come after the server kept the message).
    let row = eventually("the welcome email recorded as sent", 30, || async {
        let row = welcome_email_row(&app, &t.tenant_id).await;
        (row.status == "sent").then_some(row)
    })
    .await;
    assert_eq!(row.transport.as_deref(), Some("smtp"));
    assert_eq!(row.message_id, message_id);
    assert!(!row.text_body.contains("token=") && !row.html_body.contains("token="));
    assert!(
        row.text_body
            .contains(onboard::email::message::REDACTED_LINK)
    );

    // /health names the transport and when it last sent.
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["services"]["email"]["backend"], "smtp");
    assert_eq!(health["services"]["email"]["status"], "ok");
    assert!(health["services"]["email"]["last_send_at"].is_string());

    // Transactional mail has no unsubscribe; lifecycle mail (the trial notice) carries RFC 8058
    // one-click headers whose link works.
    assert!(header_of(&raw, "List-Unsubscribe").is_none());
    let (cus, sub) = crate::lifecycle::stripe_ids(&app, &t.tenant_id).await;
    let now = chrono::Utc::now().timestamp();
    let mut trial =
        crate::lifecycle::subscription(&cus, &sub, &t.tenant_id, "trialing", false, "starter");
    trial["trial_end"] = serde_json::json!(now + 3 * 86_400);
    let resp = app
        .deliver_event(&crate::lifecycle::event(
            &format!("evt_{}", ulid::Ulid::new()),
            "customer.subscription.trial_will_end",
            now,
            trial,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let notice = eventually("the trial notice at the SMTP server", 30, || async {
        smtp.messages()
            .into_iter()
            .find(|m| header_of(m, "List-Unsubscribe").is_some())
    })
    .await;
    assert_eq!(
        header_of(&notice, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let url = header_of(&notice, "List-Unsubscribe").unwrap();
    let url = url.trim_matches(|c| c == '<' || c == '>');
    assert!(url.starts_with(&app.url("/unsubscribe?token=")), "{url}");
    let resp = app
        .client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = onboard::domain::TenantId::parse(&t.tenant_id).unwrap();
    assert!(
        app.store
            .billing(&id)
            .await
            .unwrap()
            .unwrap()
            .unsubscribed_at
            .is_some()
    );
}

async fn an_smtp_outage_delays_the_email_but_never_provisioning_and_it_arrives_once(
    backend: Backend,
) {
    let Some(mut smtp) = SmtpServer::start() else {
        return;
    };
    smtp.stop();
    let app = spawn_app_with(
        backend,
        &[("SMTP_URL", &smtp.url()), ("JOB_BACKOFF_BASE_MS", "200")],
    )
    .await;
    // The SMTP server is down: the workspace is ready all the same.
    let t = app
        .active_tenant("smtp-outage@example.com", "starter")
        .await;
    eventually("a failed send to be recorded", 30, || async {
        let row = welcome_email_row(&app, &t.tenant_id).await;
        (row.attempts >= 1 && row.last_error.is_some()).then_some(())
    })
    .await;
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["services"]["email"]["status"], "failing");
    assert!(smtp.messages().is_empty());
    // Back up: the retry delivers it, once.
    smtp.run();
    eventually("the email to arrive after the outage", 60, || async {
        (!smtp.messages().is_empty()).then_some(())
    })
    .await;
    eventually("the email to be recorded as sent", 30, || async {
        (welcome_email_row(&app, &t.tenant_id).await.status == "sent").then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 1, "exactly once");
}

async fn an_unknown_outcome_is_resent_once_with_the_same_message_id(backend: Backend) {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    // No worker: deliveries are driven by hand.
    let app = crate::helpers::spawn_app_without_worker(backend, &[("SMTP_URL", &smtp.url())]).await;
    let email = onboard::email::templates::password_reset(
        app.state.mailer.brand(),
        "tenant_x",
        "unknown@example.com",
        "Acme",
        "http://127.0.0.1/login/reset?token=t",
        60,
    );
    let mut tx = app.store.begin().await.unwrap();
    let id = tx
        .insert_email(&email, "hello@onboard.example")
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    // A process claimed it, maybe sent it, and stopped before recording the outcome.
    let mark_claimed = |unknown: i64| {
        let (app, id) = (&app, id.clone());
        async move {
            onboard::with_pool!(&app.store, |pool| {
                sqlx::query(
                    "UPDATE email_outbox SET status = 'sending', claimed_by = 'job_dead:w', \
                     unknown_outcomes = $1 WHERE id = $2",
                )
                .bind(unknown)
                .bind(&id)
                .execute(pool)
                .await
                .unwrap();
            })
        }
    };
    mark_claimed(0).await;
    let mailer = &app.state.mailer;
    mailer.deliver(&app.store, &id, "job_next:w").await.unwrap();
    let row = app.store.email(&id).await.unwrap().unwrap();
    assert_eq!(row.status, "sent");
    let received = smtp.messages();
    assert_eq!(received.len(), 1);
    assert_eq!(
        header_of(&received[0], "Message-ID").unwrap(),
        row.message_id
    );
    assert_eq!(
        app.state.metrics.email_unknown_outcomes.get(),
        1,
        "counted as an unknown outcome"
    );
    // Delivering a sent email again does nothing.
    mailer.deliver(&app.store, &id, "job_late:w").await.unwrap();
    assert_eq!(smtp.messages().len(), 1);

    // Unknown a second time: not sent again, and said so.
    mark_claimed(1).await;
    mailer
        .deliver(&app.store, &id, "job_third:w")
        .await
        .unwrap();
    let row = app.store.email(&id).await.unwrap().unwrap();
    assert_eq!(row.status, "unknown");
    assert!(row.last_error.unwrap().contains("unknown"));
    assert_eq!(smtp.messages().len(), 1, "never a third send");
}

/// The shape of a JSON value: objects by their keys (recursively), arrays by their first item.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => json!([a.first().map(shape).unwrap_or(Value::Null)]),
        Value::String(_) => json!("string"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::Null => Value::Null,
    }
}

async fn sendgrid_gets_the_contract_request_and_a_refusal_is_kept(backend: Backend) {
    let sendgrid = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header("authorization", "Bearer SG.test-key"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&sendgrid)
        .await;
    let app = spawn_app_with(
        backend,
        &[
            ("SENDGRID_API_KEY", "SG.test-key"),
            ("SENDGRID_API_BASE", &sendgrid.uri()),
            ("SENDGRID_FROM_EMAIL", "welcome@acme.example"),
            ("SENDGRID_FROM_NAME", "Acme Onboarding"),
            ("EMAIL_REPLY_TO", "support@acme.example"),
        ],
    )
    .await;
    let t = app.active_tenant("sendgrid@example.com", "starter").await;
    let request = eventually("the welcome email at SendGrid", 30, || async {
        sendgrid
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .next()
    })
    .await;
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    // Exactly the contract's structure (every field it uses, no other).
    let contract: Value = serde_json::from_str(include_str!(
        "../fixtures/contracts/sendgrid_mail_send.json"
    ))
    .unwrap();
    let want = &contract["request"]["body"];
    let (mut got_shape, mut want_shape) = (shape(&body), shape(want));
    // Our headers are the Message-ID (and List-Unsubscribe on lifecycle mail); the contract's
    // example shows the list headers. A recipient's name is optional, and signup asks for none.
    got_shape["headers"] = Value::Null;
    want_shape["headers"] = Value::Null;
    want_shape["personalizations"][0]["to"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    assert_eq!(got_shape, want_shape, "{body:#}");
    assert_eq!(
        body["from"],
        json!({"email": "welcome@acme.example", "name": "Acme Onboarding"})
    );
    assert_eq!(body["reply_to"]["email"], "support@acme.example");
    assert_eq!(
        body["personalizations"][0]["to"][0]["email"],
        "sendgrid@example.com"
    );
    assert_eq!(
        body["personalizations"][0]["custom_args"]["tenant_id"],
        t.tenant_id
    );
    assert_eq!(
        body["personalizations"][0]["custom_args"]["email_kind"],
        "welcome"
    );
    assert_eq!(body["content"][0]["type"], "text/plain");
    assert_eq!(body["content"][1]["type"], "text/html");
    let message_id = body["headers"]["Message-ID"].as_str().unwrap();
    assert!(message_id.ends_with("@acme.example>"), "{message_id}");
    for forbidden in ["To", "From", "Subject", "Reply-To", "Content-Type"] {
        assert!(
            body["headers"].get(forbidden).is_none(),
            "{forbidden} may not be overridden"
        );
    }
    // SendGrid saw the request before the worker heard its 202 and recorded it: wait for that.
    let row = eventually("the welcome email recorded as sent", 30, || async {
        let row = welcome_email_row(&app, &t.tenant_id).await;
        (row.status == "sent").then_some(row)
    })
    .await;
    assert_eq!(row.transport.as_deref(), Some("sendgrid"));

    // A refusal (a sender SendGrid does not know) is kept on the email, and not retried.
    sendgrid.reset().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "errors": [{"message": "The from address does not match a verified Sender Identity.",
                        "field": "from", "help": null}]
        })))
        .expect(1)
        .mount(&sendgrid)
        .await;
    let refused = app.active_tenant("refused@example.com", "starter").await;
    let row = eventually("the refusal to be recorded", 30, || async {
        let row = welcome_email_row(&app, &refused.tenant_id).await;
        (row.status == "failed").then_some(row)
    })
    .await;
    let error = row.last_error.unwrap();
    assert!(
        error.contains("403") && error.contains("verified Sender Identity"),
        "{error}"
    );
    sendgrid.verify().await;
}

/// SpamAssassin's verdict on each raw message, with its local rules only (no network tests, no
/// Bayes, a throwaway home): the score and the rules that fired, in order. `None`, saying so,
/// when spamassassin is not installed (`.ci/run` installs Debian's).
fn spamassassin(messages: &[Vec<u8>]) -> Option<Vec<(f64, String)>> {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let child = Command::new("spamassassin")
        .args([
            "--local",
            "--test-mode",
            "--mbox",
            "--cf=use_bayes 0",
            "--cf=bayes_auto_learn 0",
        ])
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!(
            "SKIPPED SpamAssassin test: spamassassin is not installed (apt-get install spamassassin)"
        );
        return None;
    };
    // One mbox: a `From ` line before each message, body lines that start so escaped.
    let mut mbox = String::new();
    for raw in messages {
        let raw = String::from_utf8_lossy(raw).replace("\r\n", "\n");
        mbox.push_str("From hello@onboard.example Thu Dec  3 10:00:00 2026\n");
        mbox.push_str(&raw.replace("\nFrom ", "\n>From "));
        mbox.push_str("\n\n");
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(mbox.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let checked = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    // `X-Spam-Status: No, score=-0.0 required=5.0 tests=A,B,\n\tC autolearn=… version=…`
    let verdicts: Vec<(f64, String)> = checked
        .split("\nX-Spam-Status:")
        .skip(1)
        .map(|rest| {
            let mut status = String::new();
            for (n, line) in rest.split('\n').enumerate() {
                if n > 0 && !line.starts_with([' ', '\t']) {
                    break;
                }
                status.push_str(line.trim());
                status.push(' ');
            }
            let after = |name: &str| status.split_once(name).map_or("", |(_, r)| r).to_string();
            let score = after("score=")
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .expect("a score");
            let tests = after("tests=")
                .split_whitespace()
                .take_while(|t| !t.contains('='))
                .collect::<String>();
            (score, tests)
        })
        .collect();
    assert_eq!(
        verdicts.len(),
        messages.len(),
        "one verdict per message; spamassassin said: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(verdicts)
}

/// Every kind of email as SMTP sends it (`message::mime`, a realistic sender) scores below 1.0
/// with SpamAssassin's local rules; the welcome email first of all.
#[test]
fn spamassassin_scores_every_email_well_below_the_spam_line() {
    use onboard::email::{message, templates::samples};
    let sender = samples::sender();
    let emails = samples::every_kind(&samples::brand());
    assert_eq!(emails[0].kind, "welcome");
    let raws: Vec<Vec<u8>> = emails
        .iter()
        .map(|e| {
            message::mime(&e.preview(&sender.email), &sender)
                .unwrap()
                .formatted()
        })
        .collect();
    let Some(verdicts) = spamassassin(&raws) else {
        return;
    };
    for ((email, raw), (score, tests)) in emails.iter().zip(&raws).zip(&verdicts) {
        eprintln!("SpamAssassin {}: score={score} tests={tests}", email.kind);
        assert!(
            *score < 1.0,
            "{}: score {score} (rules {tests}) for:\n{}",
            email.kind,
            String::from_utf8_lossy(raw)
        );
    }
}
