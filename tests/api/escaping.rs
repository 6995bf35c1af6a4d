//! What a customer types is never markup. A tenant named `<script>alert(1)</script>`, with a
//! hostile API key name, document title, teammate name and tracked-event metadata (and an
//! operator's hostile resolution note), goes through signup, payment, its team, billing events,
//! a password reset, an export and the operator console. Then every HTML page that can show
//! that text, as whoever may see it, and every email in the outbox are checked: the raw value
//! is never in an HTML document or an HTML email part, its escaped form is where it is shown
//! (so no check passes by the text being absent), and each page is `text/html` under a policy
//! that runs no inline script.

use onboard::email::StoredEmail;
use reqwest::header::{ACCEPT, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::{Backend, TEST_PASSWORD, TestApp, eventually, spawn_app_with};
use crate::store_tests;

store_tests!(customer_text_is_escaped_on_every_page_and_in_every_email);

const ADMIN: &str = "escaping-admin-token-0123456789";

/// The company name.
const COMPANY: &str = "<script>alert(1)</script>";
/// An API key's name: closes an attribute, then opens a script.
const KEY_NAME: &str = "\"><script>alert(2)</script>";
/// A document's title (shown in the workspace's document list).
const DOC_TITLE: &str = "<img src=x onerror=alert(3)>";
/// The name a teammate joins with (shown on the team page, and naming them as the inviter of
/// the next invitation).
const MEMBER_NAME: &str = "'><svg onload=alert(4)>";
/// A value in a tracked event's metadata (no quotes: the console shows the metadata as JSON).
const METADATA: &str = "<script>alert(5)</script>";
/// The operator's note when marking a stuck customer resolved.
const NOTE: &str = "<iframe src=javascript:alert(6)>";
/// What a visitor types into a form that comes back with an error.
const TYPED: &str = "<b onmouseover=alert(7)>typed</b>";

/// Every hostile value: none may appear raw in an HTML page or an HTML email part.
const HOSTILE: [&str; 7] = [
    COMPANY,
    KEY_NAME,
    DOC_TITLE,
    MEMBER_NAME,
    METADATA,
    NOTE,
    TYPED,
];

/// The email kinds this test makes the service send; each one shows the company name.
const EMAIL_KINDS: [&str; 11] = [
    "welcome",
    "invitation",
    "password_reset",
    "data_export_ready",
    "payment_failed",
    "payment_recovered",
    "trial_ending",
    "enterprise_request",
    "provisioning_failed",
    "at_risk_digest",
    // Sent by the teammate: names them as the inviter.
    "invitation",
];

const OWNER_EMAIL: &str = "escaping-owner@example.com";
const TEAMMATE_EMAIL: &str = "escaping-admin@example.com";
const INVITEE_EMAIL: &str = "escaping-invitee@example.com";

/// `s` as askama escapes HTML: `&`, `<`, `>`, `"` and `'` as decimal character references.
fn escaped(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// The inverse of [`escaped`], as a browser reads an attribute's value.
fn unescaped(s: &str) -> String {
    s.replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#38;", "&")
}

/// Who asks for a page.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// No cookie: pages reached by a link (a token or session id in the URL).
    Anyone,
    /// The tenant's owner, signed in.
    Owner,
    /// The teammate (an admin) who joined with [`MEMBER_NAME`].
    Teammate,
    /// The operator, signed in to the console.
    Operator,
}

/// The session cookies (`name=value`) of those who sign in.
struct Cookies {
    owner: String,
    teammate: String,
    operator: String,
}

impl Cookies {
    fn of(&self, who: Who) -> Option<&str> {
        match who {
            Who::Anyone => None,
            Who::Owner => Some(&self.owner),
            Who::Teammate => Some(&self.teammate),
            Who::Operator => Some(&self.operator),
        }
    }
}

/// One page to check: a GET, or a form posted, and the status of the page it answers.
struct Page {
    path: String,
    who: Who,
    form: Option<Vec<(&'static str, String)>>,
    status: u16,
    /// The hostile values the page shows, which must be there escaped.
    shows: Vec<&'static str>,
}

/// A page fetched with GET, answering 200.
fn get(path: impl Into<String>, who: Who, shows: &[&'static str]) -> Page {
    refused(path, who, 200, shows)
}

/// A page fetched with GET that explains, with `status`, why it cannot do what its URL asks
/// (a crafted link: what the URL says comes back as text).
fn refused(path: impl Into<String>, who: Who, status: u16, shows: &[&'static str]) -> Page {
    Page {
        path: path.into(),
        who,
        form: None,
        status,
        shows: shows.to_vec(),
    }
}

/// A form posted to `path`, answered with a page of `status` (the form again, with the error
/// and what was typed).
fn post(
    path: &str,
    who: Who,
    fields: &[(&'static str, &str)],
    status: u16,
    shows: &[&'static str],
) -> Page {
    Page {
        path: path.into(),
        who,
        form: Some(fields.iter().map(|(k, v)| (*k, v.to_string())).collect()),
        status,
        shows: shows.to_vec(),
    }
}

/// `s` as a query parameter's value.
fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Fetches `page` as a browser would (asking for HTML) and checks it; its HTML.
async fn check_page(app: &TestApp, cookies: &Cookies, page: &Page) -> String {
    let url = app.url(&page.path);
    let mut req = match &page.form {
        None => app.client.get(&url),
        Some(fields) => app.client.post(&url).form(fields),
    };
    req = req.header(ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8");
    if let Some(cookie) = cookies.of(page.who) {
        req = req.header(COOKIE, cookie);
    }
    let resp = req.send().await.unwrap();
    let what = format!("{} as {:?}", page.path, page.who);
    assert_eq!(resp.status().as_u16(), page.status, "{what}");
    let content_type = resp.headers()[CONTENT_TYPE].to_str().unwrap();
    assert!(
        content_type.starts_with("text/html"),
        "{what}: {content_type}"
    );
    let csp = resp
        .headers()
        .get(CONTENT_SECURITY_POLICY)
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"))
        .to_str()
        .unwrap()
        .to_string();
    assert_runs_no_inline_script(&what, &csp);
    let html = resp.text().await.unwrap();
    assert_inert(&what, &html, &page.shows);
    html
}

/// The policy's script directives (`script-src*`, else `default-src`, which stands in for
/// them) exist and allow no inline script.
fn assert_runs_no_inline_script(what: &str, csp: &str) {
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    let mut script: Vec<&str> = directives
        .iter()
        .copied()
        .filter(|d| d.starts_with("script-src"))
        .collect();
    if script.is_empty() {
        script = directives
            .iter()
            .copied()
            .filter(|d| d.starts_with("default-src"))
            .collect();
    }
    assert!(!script.is_empty(), "{what}: no script-src in {csp}");
    for d in script {
        assert!(
            !d.contains("'unsafe-inline'"),
            "{what}: inline scripts allowed: {csp}"
        );
    }
}

/// `html` holds no hostile value raw, no inline script, and each of `shows` escaped.
fn assert_inert(what: &str, html: &str, shows: &[&str]) {
    for h in HOSTILE {
        assert!(!html.contains(h), "{what}: {h} is markup:\n{html}");
    }
    for (at, _) in html.match_indices("<script") {
        let tag = &html[at..at + html[at..].find('>').unwrap_or(html.len() - at)];
        assert!(tag.contains(" src="), "{what}: an inline script: {tag}");
    }
    for h in shows {
        assert!(
            html.contains(&escaped(h)),
            "{what}: {h} is not shown escaped ({}):\n{html}",
            escaped(h)
        );
    }
}

/// An email in the outbox: its HTML part is inert and shows, escaped, every hostile value its
/// plain-text part or subject holds (text/plain and a Subject header are never rendered as
/// markup, so there the value is kept literally, as the customer typed it).
fn assert_email_inert(e: &StoredEmail) {
    let what = format!("the {} email {} to {}", e.kind, e.id, e.to_email);
    let shown: Vec<&str> = HOSTILE
        .into_iter()
        .filter(|h| e.text_body.contains(h) || e.subject.contains(h))
        .collect();
    if EMAIL_KINDS.contains(&e.kind.as_str()) {
        assert!(
            shown.contains(&COMPANY),
            "{what}: each of these kinds names the company: {}",
            e.text_body
        );
    }
    assert_inert(&what, &e.html_body, &shown);
}

/// The first link in `text` at `path` (`/x?token=`), whole.
fn link_in(text: &str, path: &str) -> String {
    text.split_whitespace()
        .find(|w| w.contains(path))
        .unwrap_or_else(|| panic!("a {path} link in:\n{text}"))
        .to_string()
}

/// The path and query of an absolute link of ours.
fn path_of(app: &TestApp, link: &str) -> String {
    link.strip_prefix(&app.url(""))
        .unwrap_or_else(|| panic!("{link} is not ours"))
        .to_string()
}

fn cookie_of(resp: &reqwest::Response) -> String {
    let set = resp.headers()[SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().trim().to_string()
}

/// The newest email of `kind` to `to`, once it is in the outbox.
async fn email_of(app: &TestApp, kind: &str, to: &str) -> StoredEmail {
    eventually(&format!("the {kind} email to {to}"), 30, || async {
        app.store
            .list_emails(None, 200)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.kind == kind && e.to_email == to)
    })
    .await
}

/// Signs the operator in to the console: the session cookie and the pages' CSRF token.
async fn operator_signs_in(app: &TestApp) -> (String, String) {
    let resp = app
        .client
        .post(app.url("/admin/login"))
        .form(&[("token", ADMIN), ("next", "/admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let cookie = cookie_of(&resp);
    let html = app
        .client
        .get(app.url("/admin"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let field = "name=\"csrf\" value=\"";
    let rest = &html[html.find(field).expect("a CSRF field") + field.len()..];
    let csrf = rest[..rest.find('"').unwrap()].to_string();
    (cookie, csrf)
}

async fn customer_text_is_escaped_on_every_page_and_in_every_email(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("ADMIN_TOKEN", ADMIN),
            ("JOB_BACKOFF_BASE_MS", "20"),
            ("MAX_PROVISIONING_RETRIES", "1"),
        ],
    )
    .await;
    // The start-up digest has run: the one made below names this test's stuck tenant.
    crate::at_risk::after_startup_digest(&app).await;

    // Signs up, pays on the dev checkout, provisioned: the welcome email.
    let (t, session) = app.active_tenant_named(OWNER_EMAIL, "pro", COMPANY).await;
    let tid = t.tenant_id.clone();
    let owner = crate::login::signed_in(&app, &t).await;
    let magic = crate::login::welcome_link(&app, &tid).await;

    // Hostile text in the other fields a customer types.
    let resp = app
        .authed(reqwest::Method::POST, "/v1/api-keys", &t.api_key)
        .json(&json!({"name": KEY_NAME}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    app.upload(
        &t.api_key,
        DOC_TITLE,
        "Restart the ingest worker on Mondays.",
    )
    .await;
    let resp = app
        .authed(reqwest::Method::POST, "/activation/track", &t.api_key)
        .json(&json!({
            "tenant_id": tid,
            "event_type": "first_query_executed",
            "metadata": {"query": METADATA},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    // A teammate joins with a hostile name and, from the team page, invites someone: that
    // invitation names them.
    crate::teams::invite_ok(&app, &t.api_key, TEAMMATE_EMAIL, "admin").await;
    let link = crate::teams::invitation_link(&app, &tid, TEAMMATE_EMAIL, 0).await;
    let token = link.split("token=").nth(1).unwrap();
    let resp = app
        .post_json(
            "/invitations/accept",
            &json!({"token": token, "name": MEMBER_NAME, "password": TEST_PASSWORD}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let teammate = cookie_of(&resp);
    let resp = app
        .client
        .post(app.url("/app/members/invite"))
        .header(COOKIE, &teammate)
        .form(&[("email", INVITEE_EMAIL), ("role", "member")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let invite = email_of(&app, "invitation", INVITEE_EMAIL).await;
    let accept = path_of(
        &app,
        &link_in(&invite.text_body, "/invitations/accept?token="),
    );
    let invite_token = accept.split("token=").nth(1).unwrap().to_string();

    // A password reset and an export: their emails.
    let resp = crate::login::forgot(&app, OWNER_EMAIL).await;
    assert_eq!(resp.status(), 200);
    let reset = email_of(&app, "password_reset", OWNER_EMAIL).await;
    let reset = path_of(&app, &link_in(&reset.text_body, "/login/reset?token="));
    let resp = app
        .client
        .post(app.url("/account/export"))
        .header(COOKIE, &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Billing: a failed payment, its recovery and a trial ending, each with its email.
    let (cus, sub) = crate::lifecycle::stripe_ids(&app, &tid).await;
    let now = chrono::Utc::now().timestamp();
    let invoice = |status| crate::lifecycle::invoice(&cus, &sub, &tid, status);
    crate::lifecycle::deliver(
        &app,
        &crate::lifecycle::event(
            &crate::lifecycle::evt_id(),
            "invoice.payment_failed",
            now,
            invoice("open"),
        ),
    )
    .await;
    app.wait_for_status(&tid, "past_due", 10).await;
    crate::lifecycle::deliver(
        &app,
        &crate::lifecycle::event(
            &crate::lifecycle::evt_id(),
            "invoice.paid",
            now + 60,
            invoice("paid"),
        ),
    )
    .await;
    app.wait_for_status(&tid, "active", 10).await;
    let mut trial = crate::lifecycle::subscription(&cus, &sub, &tid, "trialing", false, "pro");
    trial["trial_end"] = json!(now + 3 * 86_400);
    crate::lifecycle::deliver(
        &app,
        &crate::lifecycle::event(
            &crate::lifecycle::evt_id(),
            "customer.subscription.trial_will_end",
            now + 120,
            trial,
        ),
    )
    .await;
    let notice = email_of(&app, "trial_ending", OWNER_EMAIL).await;
    let unsubscribe = path_of(&app, &link_in(&notice.text_body, "/unsubscribe?token="));

    // Two more tenants of the same name: an enterprise request (the operators' email) and one
    // whose provisioning fails (its email, the at-risk list and the operators' digest).
    let enterprise: Value = app
        .signup_named("escaping-sales@example.com", "enterprise", COMPANY)
        .await;
    let enterprise = enterprise["tenant_id"].as_str().unwrap().to_string();
    app.state.vectors.simulate_outage(true);
    let (stuck, stuck_session) = app
        .checkout_named("escaping-stuck@example.com", "starter", COMPANY)
        .await;
    assert_eq!(app.dev_checkout(&stuck_session, "pay").await.status(), 303);
    app.wait_for_status(&stuck, "failed", 30).await;
    app.state.vectors.simulate_outage(false);
    let digest = onboard::tasks::at_risk_digest(&app.state, onboard::store::now_ms())
        .await
        .unwrap();
    assert!(
        digest.email_id.is_some(),
        "a digest naming the stuck tenant"
    );

    // The operator marks it resolved, with a hostile note.
    let (operator, csrf) = operator_signs_in(&app).await;
    let resp = app
        .client
        .post(app.url(&format!("/admin/at-risk/{stuck}/resolve")))
        .header(COOKIE, &operator)
        .form(&[("note", NOTE), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);

    // Every email has arrived in the outbox.
    let emails = eventually("every kind of email in the outbox", 30, || async {
        let emails = app.store.list_emails(None, 200).await.unwrap();
        let mut missing = EMAIL_KINDS.to_vec();
        for e in &emails {
            if let Some(i) = missing.iter().position(|k| *k == e.kind) {
                missing.remove(i);
            }
        }
        missing.is_empty().then_some(emails)
    })
    .await;

    let cookies = Cookies {
        owner,
        teammate,
        operator,
    };
    // Every page that can show what a customer (or the operator) typed. One row per page.
    let mut pages = vec![
        // The customer's own pages, reached by a link or signed in.
        get(
            format!("/onboarding/success?session_id={session}"),
            Who::Anyone,
            &[COMPANY],
        ),
        get(format!("/dev/checkout/{session}"), Who::Anyone, &[COMPANY]),
        get(path_of(&app, &magic), Who::Anyone, &[COMPANY]),
        get("/account", Who::Owner, &[COMPANY]),
        get("/account", Who::Teammate, &[COMPANY, MEMBER_NAME]),
        get("/app", Who::Owner, &[COMPANY, KEY_NAME, DOC_TITLE]),
        get("/app", Who::Teammate, &[COMPANY, DOC_TITLE]),
        get("/setup", Who::Owner, &[]),
        get("/", Who::Anyone, &[]),
        get("/dev/billing-portal", Who::Owner, &[COMPANY]),
        get("/app/members", Who::Owner, &[COMPANY, MEMBER_NAME]),
        get("/app/members", Who::Teammate, &[COMPANY, MEMBER_NAME]),
        get(accept.clone(), Who::Anyone, &[COMPANY]),
        get(reset, Who::Anyone, &[]),
        get(unsubscribe, Who::Anyone, &[]),
        // Forms that come back with what was typed.
        post(
            "/signup",
            Who::Anyone,
            &[
                ("email", "not-an-email"),
                ("company_name", TYPED),
                ("password", "longenough1"),
            ],
            400,
            &[TYPED],
        ),
        post("/app/query", Who::Owner, &[("query", TYPED)], 200, &[TYPED]),
        post(
            "/invitations/accept",
            Who::Anyone,
            &[
                ("token", &invite_token),
                ("name", TYPED),
                ("password", "short"),
            ],
            400,
            &[COMPANY, TYPED],
        ),
        post(
            "/login",
            Who::Anyone,
            &[("email", TYPED), ("password", "WrongPass123!")],
            400,
            &[TYPED],
        ),
        post(
            "/login/forgot",
            Who::Anyone,
            &[("email", TYPED)],
            400,
            &[TYPED],
        ),
        // Crafted links: what the URL says comes back as text.
        refused(
            format!("/login/magic?token={}", q(TYPED)),
            Who::Anyone,
            400,
            &[],
        ),
        refused(
            format!("/onboarding/success?session_id={}", q(TYPED)),
            Who::Anyone,
            404,
            &[],
        ),
        refused(
            format!("/admin/login?next={}", q(TYPED)),
            Who::Anyone,
            200,
            &[],
        ),
        get(
            format!("/admin/tenants?q={}", q(TYPED)),
            Who::Operator,
            &[TYPED],
        ),
        refused(
            format!("/admin/audit?action={}", q(TYPED)),
            Who::Operator,
            400,
            &[TYPED],
        ),
        refused(
            format!("/admin/at-risk?reason={}", q(TYPED)),
            Who::Operator,
            400,
            &[TYPED],
        ),
        get(
            format!("/admin/jobs?kind={}", q(TYPED)),
            Who::Operator,
            &[TYPED],
        ),
        // The operator console.
        get("/admin", Who::Operator, &[COMPANY]),
        get("/admin/tenants", Who::Operator, &[COMPANY]),
        get("/admin/tenants?q=%3Cscript%3E", Who::Operator, &[COMPANY]),
        get(
            format!("/admin/tenants/{tid}"),
            Who::Operator,
            &[COMPANY, KEY_NAME, METADATA, MEMBER_NAME],
        ),
        get(format!("/admin/tenants/{stuck}"), Who::Operator, &[COMPANY]),
        get(
            format!("/admin/tenants/{enterprise}"),
            Who::Operator,
            &[COMPANY],
        ),
        get("/admin/at-risk", Who::Operator, &[COMPANY, NOTE]),
        get("/admin/audit", Who::Operator, &[NOTE]),
        get("/admin/activation", Who::Operator, &[]),
        get("/admin/jobs", Who::Operator, &[]),
        get("/admin/alerts", Who::Operator, &[]),
        // The development mailbox: the list, then each email (subject and plain-text part
        // escaped once; the HTML part, in a sandboxed iframe's srcdoc, escaped once more).
        get("/dev/mailbox", Who::Anyone, &[COMPANY, MEMBER_NAME]),
    ];
    for e in &emails {
        let shown: Vec<&'static str> = HOSTILE
            .into_iter()
            .filter(|h| e.text_body.contains(h) || e.subject.contains(h))
            .collect();
        pages.push(get(format!("/dev/mailbox/{}", e.id), Who::Anyone, &shown));
    }

    for page in &pages {
        let html = check_page(&app, &cookies, page).await;
        if let Some(id) = page.path.strip_prefix("/dev/mailbox/") {
            // The iframe's document, as the browser reads the attribute, is the stored HTML
            // part (checked below), not something that became markup on the way.
            let e = emails.iter().find(|e| e.id == id).unwrap();
            let field = "srcdoc=\"";
            let rest = &html[html.find(field).expect("the HTML part's iframe") + field.len()..];
            let srcdoc = &rest[..rest.find('"').unwrap()];
            assert_eq!(unescaped(srcdoc), e.html_body, "{}", page.path);
        }
    }
    for e in &emails {
        assert_email_inert(e);
    }
}
