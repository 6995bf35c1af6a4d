//! The operator console (`/admin`) over HTTP, on both stores: signing in with `ADMIN_TOKEN`,
//! the session cookie and the CSRF token every form needs, each page rendered with data (and
//! a hostile company name rendered inert on every one of them), and each action done and
//! audited as the operator.

use onboard::store::{AuditFilter, now_ms};
use serde_json::{Value, json};

use crate::helpers::{Backend, TEST_PASSWORD, TestApp, eventually, spawn_app_with};
use crate::store_tests;

store_tests!(
    admin_console_sign_in_needs_the_token_and_forms_need_the_csrf_token,
    admin_console_pages_render_with_data_and_a_hostile_name_inert,
    admin_console_actions_work_and_are_audited,
    admin_console_resolves_stuck_customers_and_retries_dead_jobs,
);

const ADMIN: &str = "console-admin-token-0123456789";
const HOSTILE: &str = "<script>alert(1)</script>";
/// The largest a console page may weigh.
const MAX_PAGE_BYTES: usize = 100 * 1024;

async fn app(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        &[
            ("ADMIN_TOKEN", ADMIN),
            ("JOB_BACKOFF_BASE_MS", "20"),
            ("MAX_PROVISIONING_RETRIES", "1"),
        ],
    )
    .await
}

/// A signed-in operator: the session cookie (`name=value`) and the pages' CSRF token.
struct Operator {
    cookie: String,
    csrf: String,
}

/// `POST /admin/login` with `token`.
async fn sign_in_with(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/admin/login"))
        .form(&[("token", token), ("next", "/admin")])
        .send()
        .await
        .unwrap()
}

/// The `csrf` hidden field of a console page.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the page has a CSRF field");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

async fn sign_in(app: &TestApp) -> Operator {
    let resp = sign_in_with(app, ADMIN).await;
    assert_eq!(resp.status(), 303);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let page = page(app, &cookie, "/admin").await;
    Operator {
        csrf: csrf_of(&page),
        cookie,
    }
}

/// A console page as a browser asks for it, asserting 200 and its weight; its HTML.
async fn page(app: &TestApp, cookie: &str, path: &str) -> String {
    let resp = app
        .client
        .get(app.url(path))
        .header("cookie", cookie)
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{path}"
    );
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
    let html = resp.text().await.unwrap();
    assert!(
        html.len() < MAX_PAGE_BYTES,
        "{path} weighs {} bytes",
        html.len()
    );
    assert!(!html.contains("<script>"), "{path}: no inline script");
    html
}

/// A console form post (fields plus the CSRF token when `csrf` is given).
async fn post(
    app: &TestApp,
    cookie: Option<&str>,
    path: &str,
    csrf: Option<&str>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    if let Some(c) = csrf {
        form.push(("csrf", c));
    }
    let mut req = app.client.post(app.url(path)).form(&form);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

/// A form of the signed-in operator, with its CSRF token.
async fn submit(
    app: &TestApp,
    op: &Operator,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    post(app, Some(&op.cookie), path, Some(&op.csrf), fields).await
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// The audit entries of an action code.
async fn audited(app: &TestApp, action: &str) -> Vec<onboard::store::AuditRecord> {
    let filter = AuditFilter {
        action: onboard::domain::audit::ActionFilter::parse(action),
        ..Default::default()
    };
    app.store.audit_page(&filter, 100).await.unwrap()
}

/// A paid tenant named `company`, once it is `status` (active, or failed when the vector store
/// is down through its one attempt).
async fn tenant(app: &TestApp, company: &str, plan: &str, status: &str) -> String {
    let email = format!("console-{}@example.com", ulid::Ulid::new());
    let resp = app
        .post_json(
            "/signup",
            &json!({"email": email, "company_name": company, "password": TEST_PASSWORD, "plan": plan}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let id = body["tenant_id"].as_str().unwrap().to_string();
    if plan == "enterprise" {
        return id;
    }
    let session = body["checkout_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let down = status == "failed";
    app.state.vectors.simulate_outage(down);
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    app.wait_for_status(&id, status, 30).await;
    app.state.vectors.simulate_outage(false);
    id
}

async fn admin_console_sign_in_needs_the_token_and_forms_need_the_csrf_token(backend: Backend) {
    let app = app(backend).await;

    // No session: every page sends the browser to sign in, and back afterwards.
    let resp = app.get("/admin/tenants?status=active").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        location(&resp),
        "/admin/login?next=%2Fadmin%2Ftenants%3Fstatus%3Dactive"
    );
    let form = app.get("/admin/login?next=/admin/tenants").await;
    assert_eq!(form.status(), 200);
    let html = form.text().await.unwrap();
    assert!(html.contains("<label for=\"token\">"), "{html}");
    assert!(html.contains("value=\"/admin/tenants\""), "{html}");

    // A wrong token: the form again, saying so, announced; audited without the token.
    let wrong = sign_in_with(&app, "not-the-token").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let html = wrong.text().await.unwrap();
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(html.contains("That is not the operator token"), "{html}");
    let failed = audited(&app, "login.failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].actor, "anonymous");
    assert!(
        failed[0].detail.contains("admin_token"),
        "{}",
        failed[0].detail
    );
    assert!(!failed[0].detail.contains("not-the-token"));

    // The right one: an HttpOnly, SameSite=Strict cookie (not Secure over http) and the console.
    let ok = sign_in_with(&app, ADMIN).await;
    assert_eq!(ok.status(), 303);
    assert_eq!(location(&ok), "/admin");
    let set = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("onboard_operator="), "{set}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    let token = set.split(';').next().unwrap().split_once('=').unwrap().1;
    let stored: i64 = onboard::with_reader!(&app.store, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM operator_sessions WHERE id_hash = $1")
            .bind(token)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(stored, 0, "only the token's hash is stored");
    assert_eq!(audited(&app, "login.succeeded").await[0].actor, "operator");
    let operator = sign_in(&app).await;
    let id = tenant(&app, "Csrf Co", "starter", "active").await;
    let suspend = format!("/admin/tenants/{id}/actions/suspend");

    // Forms: no session → sign in; no or a wrong CSRF token → 403, and nothing changes.
    let resp = post(&app, None, &suspend, Some(&operator.csrf), &[]).await;
    assert_eq!(resp.status(), 303);
    assert!(location(&resp).starts_with("/admin/login"));
    let resp = post(&app, Some(&operator.cookie), &suspend, None, &[]).await;
    assert_eq!(resp.status(), 403);
    let resp = post(&app, Some(&operator.cookie), &suspend, Some("forged"), &[]).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("role=\"alert\""));
    app.wait_for_status(&id, "active", 1).await;
    // Another site's form is refused before anything else looks at it.
    let resp = app
        .client
        .post(app.url(&suspend))
        .header("cookie", &operator.cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", operator.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    app.wait_for_status(&id, "active", 1).await;

    // Signing out ends the session: its cookie no longer opens a page.
    let resp = post(
        &app,
        Some(&operator.cookie),
        "/admin/logout",
        Some(&operator.csrf),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/admin/login");
    let after = app
        .client
        .get(app.url("/admin"))
        .header("cookie", &operator.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303);

    // Wrong tokens lock sign-in from that address, as wrong passwords do.
    for _ in 0..5 {
        sign_in_with(&app, "guess").await;
    }
    let locked = sign_in_with(&app, ADMIN).await;
    assert_eq!(locked.status(), 429);
    assert!(locked.headers().contains_key("retry-after"));
}

async fn admin_console_pages_render_with_data_and_a_hostile_name_inert(backend: Backend) {
    let app = app(backend).await;
    let id = tenant(&app, HOSTILE, "pro", "active").await;
    let failed = tenant(&app, HOSTILE, "starter", "failed").await;
    let op = sign_in(&app).await;
    let escaped = "&#60;script&#62;alert(1)&#60;/script&#62;";

    let overview = page(&app, &op.cookie, "/admin").await;
    assert!(overview.contains(escaped), "the newest signups");
    let list = page(&app, &op.cookie, "/admin/tenants?q=%3Cscript%3E").await;
    assert!(
        list.contains(&id) && list.contains(&failed),
        "found by company name"
    );
    assert!(list.contains("2 tenants found"), "{list}");
    let by_status = page(&app, &op.cookie, "/admin/tenants?status=failed").await;
    assert!(by_status.contains(&failed) && !by_status.contains(&format!("{id}\"")));
    let by_id = page(&app, &op.cookie, &format!("/admin/tenants?q={id}")).await;
    assert!(by_id.contains("1 tenant found"), "{by_id}");

    let detail = page(&app, &op.cookie, &format!("/admin/tenants/{id}")).await;
    assert!(detail.contains(escaped));
    for shown in [
        "Status history",
        "pending_payment",
        "namespace",
        "welcome_email",
        "signup_completed",
        "welcome",
        "operator.",
        "onb_",
        "Resend welcome email",
        "Suspend",
    ] {
        assert!(detail.contains(shown), "the tenant page shows {shown}");
    }
    let failed_page = page(&app, &op.cookie, &format!("/admin/tenants/{failed}")).await;
    assert!(failed_page.contains("Retry provisioning"));

    let activation = page(&app, &op.cookie, "/admin/activation").await;
    for shown in [
        "<svg class=\"chart\" id=\"funnel-chart\"",
        "Signed up · 2",
        "Paid · 2",
        "First query",
        "not enough data yet",
        "id=\"ttfa-chart\"",
        "heat-",
        "<td>invited a teammate</td>",
    ] {
        assert!(
            activation.contains(shown),
            "the activation page shows {shown}"
        );
    }
    let filtered = page(
        &app,
        &op.cookie,
        "/admin/activation?plan=pro&from=2020-01-01",
    )
    .await;
    assert!(filtered.contains("Signed up · 1"), "only the pro tenant");

    let at_risk = page(&app, &op.cookie, "/admin/at-risk").await;
    assert!(at_risk.contains(escaped) && at_risk.contains("provisioning_failed"));
    let alerts = page(&app, &op.cookie, "/admin/alerts?state=ok").await;
    assert!(alerts.contains("OnboardJobQueueBacklog"));
    let jobs = page(&app, &op.cookie, "/admin/jobs").await;
    assert!(jobs.contains("provision_tenant") && jobs.contains(">Retry<"));
    let audit = page(&app, &op.cookie, &format!("/admin/audit?target={id}")).await;
    assert!(audit.contains("tenant.status_changed"));
    let bad = app
        .client
        .get(app.url("/admin/audit?action=nope"))
        .header("cookie", &op.cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("action &#39;nope&#39;"));

    for html in [overview, list, detail, failed_page, at_risk, audit] {
        assert!(!html.contains(HOSTILE), "the name is never markup");
    }

    // The JSON endpoints at the same paths are unchanged for API clients.
    let json = app
        .client
        .get(app.url("/admin/audit?limit=1"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 200);
    let body: Value = json.json().await.unwrap();
    assert_eq!(body["entries"].as_array().unwrap().len(), 1);
    let no_token = app.get("/admin/alerts").await;
    assert_eq!(no_token.status(), 401);
}

async fn admin_console_actions_work_and_are_audited(backend: Backend) {
    let app = app(backend).await;
    let op = sign_in(&app).await;
    let act = |id: &str, action: &str| format!("/admin/tenants/{id}/actions/{action}");
    let audited_as_operator = |action: &'static str, target: String| {
        let app = &app;
        async move {
            let entries = audited(app, action).await;
            let entry = entries
                .iter()
                .find(|e| e.target.as_deref() == Some(target.as_str()))
                .unwrap_or_else(|| panic!("{action} on {target} is audited: {entries:?}"));
            assert_eq!(entry.actor, "operator");
            assert!(
                entry.detail.contains("\"via\":\"console\""),
                "{}",
                entry.detail
            );
            assert!(entry.ip.is_some());
        }
    };

    // Retry a failed tenant: it provisions, and the page says so.
    let failed = tenant(&app, "Retry Co", "starter", "failed").await;
    let resp = submit(&app, &op, &act(&failed, "retry"), &[]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        location(&resp),
        format!("/admin/tenants/{failed}?done=retried")
    );
    app.wait_for_status(&failed, "active", 30).await;
    audited_as_operator("operator.retry", failed.clone()).await;
    let shown = page(&app, &op.cookie, &location(&resp)).await;
    assert!(shown.contains("Provisioning restarted"), "the notice");
    // Again: it is active now, so the console explains instead.
    let again = submit(&app, &op, &act(&failed, "retry"), &[]).await;
    assert_eq!(again.status(), 409);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("this tenant is active")
    );

    // Resend the welcome email: a second welcome with a fresh sign-in link.
    let resp = submit(&app, &op, &act(&failed, "resend-welcome"), &[]).await;
    assert_eq!(resp.status(), 303);
    let welcomes = app.emails(Some(&failed), "welcome").await;
    assert_eq!(welcomes.len(), 2);
    assert_ne!(welcomes[0].text_body, welcomes[1].text_body, "a new link");
    audited_as_operator("operator.resend_welcome", failed.clone()).await;

    // Suspend: the keys stop working at once.
    let resp = submit(&app, &op, &act(&failed, "suspend"), &[]).await;
    assert_eq!(resp.status(), 303);
    app.wait_for_status(&failed, "suspended", 1).await;
    audited_as_operator("operator.suspend", failed.clone()).await;
    let history = app
        .status_path(&onboard::domain::TenantId::parse(&failed).unwrap())
        .await;
    assert_eq!(history.last().map(String::as_str), Some("suspended"));
    let resend = submit(&app, &op, &act(&failed, "resend-welcome"), &[]).await;
    assert_eq!(resend.status(), 409, "no welcome for a suspended workspace");

    // Approve an enterprise request: provisioning, then active.
    let enterprise = tenant(&app, "Big Co", "enterprise", "sales_review").await;
    let resp = submit(&app, &op, &act(&enterprise, "approve"), &[]).await;
    assert_eq!(resp.status(), 303);
    app.wait_for_status(&enterprise, "active", 30).await;
    audited_as_operator("operator.approve", enterprise.clone()).await;

    // An unknown action or tenant.
    let resp = submit(&app, &op, &act(&enterprise, "delete"), &[]).await;
    assert_eq!(resp.status(), 404);
    let gone = page_status(&app, &op.cookie, "/admin/tenants/tenant_01NOPE").await;
    assert_eq!(gone, 404);
}

async fn page_status(app: &TestApp, cookie: &str, path: &str) -> u16 {
    app.client
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn admin_console_resolves_stuck_customers_and_retries_dead_jobs(backend: Backend) {
    let app = app(backend).await;
    crate::at_risk::after_startup_digest(&app).await;
    let op = sign_in(&app).await;
    let stuck = tenant(&app, "Stuck Co", "starter", "failed").await;
    onboard::tasks::at_risk_digest(&app.state, now_ms())
        .await
        .unwrap();
    let list = page(&app, &op.cookie, "/admin/at-risk?needs_human=true").await;
    assert!(list.contains("Mark resolved") && list.contains(&stuck));
    let resp = submit(
        &app,
        &op,
        &format!("/admin/at-risk/{stuck}/resolve"),
        &[
            ("note", HOSTILE),
            ("back", "/admin/at-risk?needs_human=true"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        location(&resp),
        "/admin/at-risk?needs_human=true&done=resolved"
    );
    let after = page(&app, &op.cookie, &location(&resp)).await;
    assert!(after.contains("Marked resolved") && !after.contains(&stuck));
    let entry = &audited(&app, "operator.resolve_at_risk").await[0];
    assert_eq!(entry.target.as_deref(), Some(stuck.as_str()));
    assert!(entry.detail.contains(HOSTILE), "the note, as written");
    let log = page(&app, &op.cookie, "/admin/audit?action=operator.").await;
    assert!(log.contains("operator.resolve_at_risk") && !log.contains(HOSTILE));
    let twice = submit(&app, &op, &format!("/admin/at-risk/{stuck}/resolve"), &[]).await;
    assert_eq!(twice.status(), 404);

    // The failed tenant's provisioning job is dead: retried from the jobs page, it runs again.
    let dead = app
        .store
        .list_jobs_of("dead", Some("provision_tenant"), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let job = dead[0].id.clone();
    let jobs = page(
        &app,
        &op.cookie,
        "/admin/jobs?status=dead&kind=provision_tenant",
    )
    .await;
    assert!(jobs.contains(&job));
    let resp = submit(
        &app,
        &op,
        &format!("/admin/jobs/{job}/retry"),
        &[("back", "/admin/jobs?status=dead")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/admin/jobs?status=dead&done=job_retried");
    // It finds the tenant no longer in provisioning (it was not retried) and is done.
    eventually("the retried job to run", 30, || async {
        let j = app.store.job_by_id(&job).await.unwrap().unwrap();
        (j.status == "done").then_some(())
    })
    .await;
    let entry = &audited(&app, "operator.retry_job").await[0];
    assert_eq!(entry.target.as_deref(), Some(job.as_str()));
    // Done now: only a dead job is put back.
    let again = submit(&app, &op, &format!("/admin/jobs/{job}/retry"), &[]).await;
    assert_eq!(again.status(), 409);
}
