//! Stuck customers: `GET /activation/at-risk`, `POST /activation/at-risk/{id}/resolve` and the
//! daily digest to the operator, on both stores. Tenants are made old by moving their funnel
//! times back in the database.

use onboard::analytics::at_risk::Filter;
use onboard::store::now_ms;
use serde_json::{Value, json};

use crate::helpers::{ActiveTenant, Backend, TestApp, assert_error, eventually, spawn_app_with};
use crate::store_tests;

store_tests!(
    each_reason_appears_at_its_threshold_and_not_before,
    the_list_filters_pages_and_lets_a_retried_tenant_go,
    the_digest_flags_each_stuck_tenant_once_per_reason_until_resolved,
    the_daily_digest_goes_out_once_a_day_from_its_hour,
    a_provisioning_that_fails_again_is_flagged_again,
    erasure_leaves_no_personal_data_in_flags_or_digests,
);

const ADMIN: &str = "at-risk-admin-token-0123456789";
const HOUR: i64 = 3_600_000;

async fn app(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![
        ("ADMIN_TOKEN", ADMIN),
        ("JOB_BACKOFF_BASE_MS", "20"),
        ("MAX_PROVISIONING_RETRIES", "1"),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_app_with(backend, &settings).await;
    after_startup_digest(&app).await;
    app
}

/// Waits for the worker's first digest, which runs at start-up: once it has claimed its day,
/// before anyone is stuck, the digests a test makes are its own.
pub async fn after_startup_digest(app: &TestApp) {
    eventually("the start-up digest", 30, || async {
        let n: i64 = onboard::with_reader!(&app.store, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM at_risk_digests")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        (n > 0).then_some(())
    })
    .await;
}

/// Moves one funnel time of `tenant` (a `tenant_activation` column).
async fn set_time(app: &TestApp, tenant: &str, column: &str, at: i64) {
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE tenant_activation SET {column} = $1 WHERE tenant_id = $2"
        )))
        .bind(at)
        .bind(tenant)
        .execute(pool)
        .await
        .unwrap();
    });
}

/// A tenant whose provisioning failed (the vector store was down through its only attempt).
async fn failed_tenant(app: &TestApp, name: &str) -> String {
    app.state.vectors.simulate_outage(true);
    let (tid, session) = app
        .checkout(&format!("{name}-{}@example.com", ulid::Ulid::new()), "pro")
        .await;
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    app.wait_for_status(&tid, "failed", 30).await;
    app.state.vectors.simulate_outage(false);
    tid
}

/// A tenant that signed in (its furthest milestone: the first login).
async fn logged_in(app: &TestApp, name: &str) -> ActiveTenant {
    let t = app.fresh_tenant(name).await;
    crate::login::signed_in(app, &t).await;
    t
}

/// A tenant that uploaded a document (with its key, never signing in).
async fn with_document(app: &TestApp, name: &str) -> ActiveTenant {
    let t = app.fresh_tenant(name).await;
    app.upload(
        &t.api_key,
        "Handbook",
        "How we onboard new customers, step by step.",
    )
    .await;
    t
}

/// (tenant, reason) of everyone stuck at `now`, in the list's order.
async fn stuck_at(app: &TestApp, now: i64) -> Vec<(String, &'static str)> {
    let page = app
        .store
        .at_risk(&Filter::default(), 100, None, now)
        .await
        .unwrap();
    assert_eq!(page.total as usize, page.tenants.len());
    page.tenants
        .into_iter()
        .map(|t| (t.tenant_id, t.reason.as_str()))
        .collect()
}

async fn list(app: &TestApp, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/activation/at-risk{query}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
}

async fn list_ok(app: &TestApp, query: &str) -> Value {
    let resp = list(app, query).await;
    assert_eq!(resp.status(), 200, "{query}");
    resp.json().await.unwrap()
}

/// The tenant ids of a list answer, in order.
fn ids(body: &Value) -> Vec<String> {
    body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant_id"].as_str().unwrap().to_string())
        .collect()
}

async fn resolve(app: &TestApp, tenant: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/activation/at-risk/{tenant}/resolve")))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

/// The digests the outbox holds, oldest first.
async fn digests(app: &TestApp) -> Vec<onboard::email::StoredEmail> {
    let mut emails: Vec<_> = app.emails(None, "at_risk_digest").await;
    emails.reverse();
    emails
}

fn rfc3339(ms: i64) -> String {
    onboard::store::ms_to_datetime(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn each_reason_appears_at_its_threshold_and_not_before(backend: Backend) {
    let app = app(backend, &[]).await;
    let no_login = app.fresh_tenant("no-login").await;
    let no_document = logged_in(&app, "no-document").await;
    let no_query = with_document(&app, "no-query").await;
    let activated = with_document(&app, "activated").await;
    app.query_ok(&activated.api_key, "onboard", 1).await;
    let failed = failed_tenant(&app, "failed").await;
    let failed_at = now_ms();
    // Nobody waited long enough yet; a failed provisioning is stuck at once.
    assert_eq!(
        stuck_at(&app, now_ms()).await,
        [(failed.clone(), "provisioning_failed")]
    );

    let p = now_ms() - 10 * 24 * HOUR;
    set_time(&app, &no_login.tenant_id, "provisioned_at", p).await;
    set_time(&app, &no_document.tenant_id, "first_login_at", p + HOUR).await;
    set_time(&app, &no_query.tenant_id, "first_document_at", p).await;
    for column in ["provisioned_at", "first_document_at", "first_query_at"] {
        set_time(&app, &activated.tenant_id, column, p).await;
    }
    let a = (no_login.tenant_id.clone(), "no_login");
    let b = (no_document.tenant_id.clone(), "no_document");
    let c = (no_query.tenant_id.clone(), "no_query");
    // 24 h after provisioning, not a millisecond before.
    assert_eq!(stuck_at(&app, p + 24 * HOUR - 1).await, []);
    assert_eq!(stuck_at(&app, p + 24 * HOUR).await, vec![a.clone()]);
    // 24 h after the first sign-in.
    assert_eq!(stuck_at(&app, p + 25 * HOUR - 1).await, vec![a.clone()]);
    assert_eq!(stuck_at(&app, p + 25 * HOUR).await, [a.clone(), b.clone()]);
    // 48 h after the first document.
    assert_eq!(
        stuck_at(&app, p + 48 * HOUR - 1).await,
        [a.clone(), b.clone()]
    );
    assert_eq!(
        stuck_at(&app, p + 48 * HOUR).await,
        [a.clone(), b.clone(), c.clone()]
    );
    // Now: everyone stuck, oldest first; the activated tenant never is.
    assert_eq!(
        stuck_at(&app, now_ms()).await,
        [a, b, c, (failed.clone(), "provisioning_failed")]
    );

    let body = list_ok(&app, "").await;
    assert_eq!(body["total"], 4);
    assert!(body.get("next_cursor").is_none());
    let first = &body["tenants"][0];
    assert_eq!(first["tenant_id"], no_login.tenant_id.as_str());
    assert_eq!(first["email"], no_login.email.as_str());
    assert_eq!(first["company_name"], "Acme");
    assert_eq!(first["status"], "active");
    assert_eq!(first["plan"], "starter");
    assert_eq!(first["reason"], "no_login");
    assert_eq!(first["since"], rfc3339(p + 24 * HOUR).as_str());
    assert!(
        first["reason_text"]
            .as_str()
            .unwrap()
            .contains("within 24 hours")
    );
    assert!(!first["suggested_intervention"].as_str().unwrap().is_empty());
    assert_eq!(first["needs_human"], false);
    for field in [
        "flagged_at",
        "resolved_at",
        "resolved_by",
        "resolution_note",
    ] {
        assert!(first[field].is_null(), "{field}: {first}");
    }
    let last = &body["tenants"][3];
    assert_eq!(
        (last["reason"].as_str(), last["status"].as_str()),
        (Some("provisioning_failed"), Some("failed"))
    );
    let since = chrono::DateTime::parse_from_rfc3339(last["since"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(since <= failed_at, "failed when provisioning failed");
}

async fn the_list_filters_pages_and_lets_a_retried_tenant_go(backend: Backend) {
    let app = app(backend, &[]).await;
    let no_login = app.fresh_tenant("page-no-login").await;
    let no_document = logged_in(&app, "page-no-document").await;
    let no_query = with_document(&app, "page-no-query").await;
    let failed = failed_tenant(&app, "page-failed").await;
    let p = now_ms() - 5 * 24 * HOUR;
    set_time(&app, &no_login.tenant_id, "provisioned_at", p).await;
    set_time(&app, &no_document.tenant_id, "first_login_at", p + HOUR).await;
    set_time(&app, &no_query.tenant_id, "first_document_at", p).await;
    let all = [
        no_login.tenant_id.clone(),
        no_document.tenant_id.clone(),
        no_query.tenant_id.clone(),
        failed.clone(),
    ];
    assert_eq!(ids(&list_ok(&app, "").await), all);

    // Filters.
    for (reason, tenant) in [
        ("no_login", &no_login.tenant_id),
        ("no_document", &no_document.tenant_id),
        ("no_query", &no_query.tenant_id),
        ("provisioning_failed", &failed),
    ] {
        let body = list_ok(&app, &format!("?reason={reason}")).await;
        assert_eq!(ids(&body), vec![tenant.clone()], "{reason}");
        assert_eq!(body["total"], 1);
    }
    assert_eq!(ids(&list_ok(&app, "?needs_human=false").await), all);
    let none = list_ok(&app, "?needs_human=true").await;
    assert_eq!((ids(&none).len(), none["total"].as_i64()), (0, Some(0)));
    for (query, field) in [
        ("?reason=bored", "reason"),
        ("?needs_human=yes", "needs_human"),
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=ten", "limit"),
    ] {
        let err = assert_error(list(&app, query).await, 400, "invalid_query_parameter").await;
        assert_eq!(err["field"], field, "{query}");
    }
    let err = assert_error(list(&app, "?cursor=yesterday").await, 400, "invalid_cursor").await;
    assert_eq!(err["field"], "cursor");

    // Pages: stable, with the total on each.
    let first = list_ok(&app, "?limit=3").await;
    assert_eq!(ids(&first), all[..3]);
    assert_eq!(first["total"], 4);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let second = list_ok(&app, &format!("?limit=3&cursor={cursor}")).await;
    assert_eq!(ids(&second), all[3..]);
    assert_eq!(second["total"], 4);
    assert!(second.get("next_cursor").is_none());
    let filtered = list_ok(&app, "?limit=1&reason=no_document").await;
    assert_eq!(ids(&filtered), vec![no_document.tenant_id.clone()]);
    assert!(filtered.get("next_cursor").is_none());

    // The operator retries the failed tenant: active again, it leaves the list (and is not
    // "no login" before its own 24 hours).
    let resp = app
        .client
        .post(app.url("/provision"))
        .bearer_auth(ADMIN)
        .json(&json!({"tenant_id": failed}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    app.wait_for_status(&failed, "active", 30).await;
    assert_eq!(ids(&list_ok(&app, "").await), all[..3]);
    // A stuck tenant that moves on leaves it too.
    app.query_ok(&no_query.api_key, "onboard", 1).await;
    assert_eq!(ids(&list_ok(&app, "").await), all[..2]);

    // Operators only.
    let anonymous = app
        .client
        .get(app.url("/activation/at-risk"))
        .send()
        .await
        .unwrap();
    assert_error(anonymous, 401, "unauthorized").await;
    let customer = app
        .client
        .get(app.url("/activation/at-risk"))
        .bearer_auth(&no_login.api_key)
        .send()
        .await
        .unwrap();
    assert_error(customer, 401, "unauthorized").await;
}

async fn the_digest_flags_each_stuck_tenant_once_per_reason_until_resolved(backend: Backend) {
    let app = app(backend, &[]).await;
    let no_login = app.fresh_tenant("digest-no-login").await;
    let no_query = with_document(&app, "digest-no-query").await;
    let bystander = app.fresh_tenant("digest-fine").await;
    let p = now_ms() - 3 * 24 * HOUR;
    set_time(&app, &no_login.tenant_id, "provisioned_at", p).await;
    set_time(&app, &no_query.tenant_id, "first_document_at", p).await;

    let report = onboard::tasks::at_risk_digest(&app.state, now_ms())
        .await
        .unwrap();
    assert_eq!(report.flagged, 2);
    let sent = digests(&app).await;
    assert_eq!(sent.len(), 1);
    let email = &sent[0];
    assert_eq!(Some(&email.id), report.email_id.as_ref());
    assert_eq!(email.to_email, "operators@onboard.local");
    assert_eq!(email.tenant_id, None);
    assert_eq!(
        email.subject,
        "2 customers stuck in onboarding need a human"
    );
    for t in [&no_login, &no_query] {
        assert!(
            email.text_body.contains(&t.tenant_id),
            "{}",
            email.text_body
        );
        assert!(email.text_body.contains(&t.email));
        assert!(email.html_body.contains(&t.tenant_id));
    }
    assert!(!email.text_body.contains(&bystander.tenant_id));
    assert!(
        email
            .text_body
            .contains(&app.url("/activation/at-risk?needs_human=true"))
    );
    // Delivered through the outbox like every email.
    eventually("the digest sent", 20, || async {
        let e = app.store.email(&email.id).await.unwrap().unwrap();
        (e.status == "sent").then_some(())
    })
    .await;

    // A second run finds nothing new: no email.
    let again = onboard::tasks::at_risk_digest(&app.state, now_ms())
        .await
        .unwrap();
    assert_eq!((again.flagged, again.email_id), (0, None));
    assert_eq!(digests(&app).await.len(), 1);

    // Both need a human now.
    let flagged = list_ok(&app, "?needs_human=true").await;
    assert_eq!(
        ids(&flagged),
        [no_login.tenant_id.clone(), no_query.tenant_id.clone()]
    );
    assert!(flagged["tenants"][0]["flagged_at"].is_string());
    assert_eq!(list_ok(&app, "?needs_human=false").await["total"], 0);
    let page = list_ok(&app, "?needs_human=true&limit=1").await;
    assert_eq!(
        (ids(&page), page["total"].as_i64()),
        (vec![no_login.tenant_id.clone()], Some(2))
    );
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let page = list_ok(&app, &format!("?needs_human=true&limit=1&cursor={cursor}")).await;
    assert_eq!(ids(&page), vec![no_query.tenant_id.clone()]);
    assert!(page.get("next_cursor").is_none());

    // Resolving: validation, then the entry.
    let err = assert_error(
        resolve(&app, "someone", None).await,
        400,
        "invalid_tenant_id",
    )
    .await;
    assert_eq!(err["field"], "tenant_id");
    let err = assert_error(
        resolve(&app, &no_login.tenant_id, Some(json!({"note": " "}))).await,
        400,
        "invalid_note",
    )
    .await;
    assert_eq!(err["field"], "note");
    let resp = app
        .client
        .post(app.url(&format!(
            "/activation/at-risk/{}/resolve",
            no_login.tenant_id
        )))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body("called them")
        .send()
        .await
        .unwrap();
    assert_error(resp, 415, "unsupported_media_type").await;
    let resp = resolve(
        &app,
        &no_login.tenant_id,
        Some(json!({"note": "Called them; they start on Monday"})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let entry: Value = resp.json().await.unwrap();
    assert_eq!(entry["tenant_id"], no_login.tenant_id.as_str());
    assert_eq!(entry["reason"], "no_login");
    assert_eq!(entry["needs_human"], false);
    assert_eq!(entry["resolved_by"], "operator");
    assert_eq!(
        entry["resolution_note"],
        "Called them; they start on Monday"
    );
    assert!(entry["resolved_at"].is_string() && entry["flagged_at"].is_string());
    assert_error(
        resolve(&app, &no_login.tenant_id, None).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        resolve(&app, &bystander.tenant_id, None).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        ids(&list_ok(&app, "?needs_human=true").await),
        vec![no_query.tenant_id.clone()]
    );
    let listed = list_ok(&app, "?reason=no_login").await;
    assert_eq!(listed["tenants"][0]["needs_human"], false);
    assert_eq!(listed["tenants"][0]["resolved_by"], "operator");
    // Resolved stays resolved for that reason: the next digest has nothing new.
    let report = onboard::tasks::at_risk_digest(&app.state, now_ms())
        .await
        .unwrap();
    assert_eq!(report.flagged, 0);

    // The resolved tenant signs in and then stalls: stuck for another reason, flagged again.
    crate::login::signed_in(&app, &no_login).await;
    set_time(
        &app,
        &no_login.tenant_id,
        "first_login_at",
        now_ms() - 25 * HOUR,
    )
    .await;
    let report = onboard::tasks::at_risk_digest(&app.state, now_ms())
        .await
        .unwrap();
    assert_eq!(report.flagged, 1);
    let sent = digests(&app).await;
    assert_eq!(sent.len(), 2);
    assert!(sent[1].text_body.contains(&no_login.tenant_id));
    assert!(!sent[1].text_body.contains(&no_query.tenant_id));
    assert_eq!(
        sent[1].subject,
        "1 customer stuck in onboarding needs a human"
    );
    let entry = &list_ok(&app, "?reason=no_document").await["tenants"][0];
    assert_eq!(entry["tenant_id"], no_login.tenant_id.as_str());
    assert_eq!(entry["needs_human"], true);
    assert!(entry["resolved_at"].is_null());

    // With a JSON null for a body (no note).
    let resp = resolve(&app, &no_query.tenant_id, Some(Value::Null)).await;
    assert_eq!(resp.status(), 200);
    let entry: Value = resp.json().await.unwrap();
    assert_eq!(
        (entry["reason"].as_str(), entry["resolution_note"].is_null()),
        (Some("no_query"), true)
    );
    assert_eq!(list_ok(&app, "?needs_human=true").await["total"], 1);

    // A flagged tenant that moves on leaves the list; its flag waits for the operator.
    app.upload(&no_login.api_key, "Notes", "Our first document, at last.")
        .await;
    assert_eq!(list_ok(&app, "?needs_human=true").await["total"], 0);
    let report = onboard::tasks::at_risk_digest(&app.state, now_ms())
        .await
        .unwrap();
    assert_eq!(report.flagged, 0);
    let resp = resolve(&app, &no_login.tenant_id, None).await;
    assert_eq!(resp.status(), 200);
    let entry: Value = resp.json().await.unwrap();
    assert_eq!(entry["reason"], "no_document");
    assert_eq!(digests(&app).await.len(), 2);

    // Operators only.
    let resp = app
        .client
        .post(app.url(&format!(
            "/activation/at-risk/{}/resolve",
            no_login.tenant_id
        )))
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "unauthorized").await;
    let resp = app
        .client
        .post(app.url(&format!(
            "/activation/at-risk/{}/resolve",
            no_login.tenant_id
        )))
        .bearer_auth("not-the-admin-token")
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "unauthorized").await;
}

async fn the_daily_digest_goes_out_once_a_day_from_its_hour(backend: Backend) {
    let app = app(backend, &[("AT_RISK_DIGEST_HOUR", "8")]).await;
    let early = app.fresh_tenant("daily-early").await;
    let later = app.fresh_tenant("daily-later").await;
    set_time(
        &app,
        &early.tenant_id,
        "provisioned_at",
        now_ms() - 3 * 24 * HOUR,
    )
    .await;
    // A day ahead of today's (already claimed at start-up), at the configured hour.
    let day = chrono::Utc::now().date_naive() + chrono::Days::new(2);
    let at = |d: chrono::NaiveDate, h: u32, m: u32, s: u32| {
        d.and_hms_opt(h, m, s).unwrap().and_utc().timestamp_millis()
    };
    let run = |now: i64| onboard::tasks::daily_at_risk_digest(&app.state, now);

    // The other one gets stuck at 09:00 that day: told the next day, not twice the same day.
    set_time(
        &app,
        &later.tenant_id,
        "provisioned_at",
        at(day, 9, 0, 0) - 24 * HOUR,
    )
    .await;
    let first = run(at(day, 8, 0, 0)).await.unwrap().expect("due at 08:00");
    assert_eq!(first.flagged, 1);
    assert_eq!(run(at(day, 20, 0, 0)).await.unwrap(), None);
    let next_day = day + chrono::Days::new(1);
    assert_eq!(run(at(next_day, 7, 59, 59)).await.unwrap(), None);
    let second = run(at(next_day, 8, 0, 0)).await.unwrap().expect("due");
    assert_eq!(second.flagged, 1);
    // A day with nobody new: the digest runs and sends nothing.
    let third = run(at(next_day + chrono::Days::new(1), 9, 30, 0))
        .await
        .unwrap()
        .expect("due");
    assert_eq!((third.flagged, third.email_id), (0, None));
    let sent = digests(&app).await;
    assert_eq!(sent.len(), 2);
    assert!(sent[0].text_body.contains(&early.tenant_id));
    assert!(!sent[0].text_body.contains(&later.tenant_id));
    assert!(sent[1].text_body.contains(&later.tenant_id));
    assert!(!sent[1].text_body.contains(&early.tenant_id));
}

async fn a_provisioning_that_fails_again_is_flagged_again(backend: Backend) {
    let app = app(backend, &[]).await;
    let failed = failed_tenant(&app, "twice").await;
    let report = onboard::tasks::at_risk_digest(&app.state, now_ms())
        .await
        .unwrap();
    assert_eq!(report.flagged, 1);
    let resp = resolve(
        &app,
        &failed,
        Some(json!({"note": "Retrying after the fix"})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let first: Value = resp.json().await.unwrap();
    assert_eq!(first["reason"], "provisioning_failed");

    // The operator retries while the cause is still there: it fails again, a new episode.
    app.state.vectors.simulate_outage(true);
    let resp = app
        .client
        .post(app.url("/provision"))
        .bearer_auth(ADMIN)
        .json(&json!({"tenant_id": failed}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    app.wait_for_status(&failed, "failed", 30).await;
    app.state.vectors.simulate_outage(false);
    let entry = &list_ok(&app, "").await["tenants"][0];
    assert_eq!(entry["tenant_id"], failed.as_str());
    assert!(entry["since"].as_str().unwrap() > first["since"].as_str().unwrap());
    // The earlier flag was resolved; this failure is not flagged yet.
    assert_eq!(entry["needs_human"], false);
    assert_eq!(list_ok(&app, "?needs_human=false").await["total"], 1);
    let report = onboard::tasks::at_risk_digest(&app.state, now_ms())
        .await
        .unwrap();
    assert_eq!(report.flagged, 1);
    let entry = &list_ok(&app, "?needs_human=true").await["tenants"][0];
    assert_eq!(entry["tenant_id"], failed.as_str());
    assert!(entry["resolved_at"].is_null() && entry["resolution_note"].is_null());
    assert_eq!(digests(&app).await.len(), 2);
}

async fn erasure_leaves_no_personal_data_in_flags_or_digests(backend: Backend) {
    let app = app(backend, &[]).await;
    let t = app.fresh_tenant("erase-flagged").await;
    set_time(
        &app,
        &t.tenant_id,
        "provisioned_at",
        now_ms() - 2 * 24 * HOUR,
    )
    .await;
    let report = onboard::tasks::at_risk_digest(&app.state, now_ms())
        .await
        .unwrap();
    assert_eq!(report.flagged, 1);
    let note = format!("Wrote to {} twice", t.email);
    let resp = resolve(&app, &t.tenant_id, Some(json!({"note": note}))).await;
    assert_eq!(resp.status(), 200);
    let email = t.email.to_lowercase();
    let leaks = |dump: &str| -> Vec<String> {
        dump.lines()
            .filter(|l| l.to_lowercase().contains(&email))
            .map(str::to_string)
            .collect()
    };
    let before = leaks(&crate::lifecycle::dump(&app).await);
    assert!(
        before.iter().any(|l| l.starts_with("at_risk_flags")),
        "{before:?}"
    );
    let id = onboard::domain::TenantId::parse(&t.tenant_id).unwrap();
    onboard::provisioning::deprovision::erase(&app.state, &id)
        .await
        .unwrap();
    let after = leaks(&crate::lifecycle::dump(&app).await);
    assert!(
        after.is_empty(),
        "personal data left:\n{}",
        after.join("\n")
    );
}
