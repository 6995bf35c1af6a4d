//! The audit log: each recorded act appears after the real flow that does it (with its actor,
//! target and client address), the database refuses to change an entry, `GET /admin/audit`
//! filters and pages without gaps or repeats, and retention deletes only old entries.

use reqwest::Method;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, TestDb, assert_error, eventually, spawn_app, spawn_app_on, spawn_app_with,
    spawn_app_without_worker,
};
use crate::login::{confirm_magic_link, follow_magic_link, signed_in, welcome_link};
use crate::store_tests;
use onboard::domain::audit::{Action, Actor};
use onboard::domain::{TenantId, TenantStatus};
use onboard::store::AuditEntry;

store_tests!(
    a_paid_signup_is_audited_from_the_webhook_to_active,
    failed_and_successful_sign_ins_are_audited_with_the_client_address,
    operator_and_customer_retries_force_and_approval_are_audited,
    key_revocation_and_rotation_are_audited,
    an_export_is_audited,
    the_database_refuses_to_change_an_entry,
    filters_select_and_the_cursor_pages_without_gaps_or_repeats,
    retention_deletes_only_entries_past_it,
    the_periodic_job_applies_the_retention,
    reading_needs_the_operator_token_and_bad_filters_are_named,
);

const ADMIN: &str = "operator-token-audit-123456";

/// A client address as a trusted proxy in front of the service reports it.
const CLIENT: &str = "203.0.113.9";

/// The server with the operator token, believing `X-Forwarded-For` from loopback (so a test can
/// show that the client's address, not the proxy's, is recorded).
async fn app(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        &[("ADMIN_TOKEN", ADMIN), ("TRUSTED_PROXIES", "127.0.0.1/32")],
    )
    .await
}

/// `GET /admin/audit?{query}` as the operator, asserting 200.
async fn audit(app: &TestApp, query: &str) -> Value {
    let resp = audit_resp(app, query, Some(ADMIN)).await;
    assert_eq!(resp.status(), 200, "GET /admin/audit?{query}");
    resp.json().await.unwrap()
}

async fn audit_resp(app: &TestApp, query: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(&format!("/admin/audit?{query}")));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

/// The entries of one unpaged answer.
async fn entries(app: &TestApp, query: &str) -> Vec<Value> {
    let page = audit(app, &format!("{query}&limit=500")).await;
    assert!(page["next_cursor"].is_null(), "one page: {page}");
    page["entries"].as_array().unwrap().clone()
}

/// `(actor, action)` of each entry, newest first.
fn who_did_what(entries: &[Value]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn a_paid_signup_is_audited_from_the_webhook_to_active(backend: Backend) {
    let app = app(backend).await;
    let t = app
        .active_tenant("audit-journey@example.com", "starter")
        .await;
    let tenant = format!("tenant:{}", t.tenant_id);

    // Status changes, newest first, each with who made it (the writer's own name kept as `by`).
    let changes = entries(
        &app,
        &format!("action=tenant.status_changed&target={}", t.tenant_id),
    )
    .await;
    let path: Vec<(&str, &str, &str, &str)> = changes
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["detail"]["from"].as_str().unwrap_or("-"),
                e["detail"]["to"].as_str().unwrap(),
                e["detail"]["by"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        path,
        [
            ("system", "provisioning", "active", "provisioning"),
            (
                "stripe",
                "pending_payment",
                "provisioning",
                "stripe webhook"
            ),
            (tenant.as_str(), "-", "pending_payment", "customer"),
        ]
    );
    assert!(changes[2]["detail"]["from"].is_null());

    // The checkout event, applied on receipt: by Stripe, from the address it came from (the dev
    // checkout delivers it over HTTP from this machine).
    let processed = entries(&app, "action=webhook.processed").await;
    assert_eq!(processed.len(), 1, "{processed:?}");
    let e = &processed[0];
    assert_eq!(e["actor"], "stripe");
    assert!(e["target"].as_str().unwrap().starts_with("evt_"), "{e}");
    assert_eq!(e["ip"], "127.0.0.1");
    assert_eq!(e["detail"]["type"], "checkout.session.completed");
    assert_eq!(e["detail"]["tenant_id"], t.tenant_id);
    assert_eq!(e["detail"]["outcome"], "tenant moved to provisioning");
    let stored = onboard::billing::events::list(&app.store, None, 10)
        .await
        .unwrap();
    assert_eq!(e["target"], stored[0].id, "the stored event");

    // Provisioning issued the first key; the system did it.
    let keys = entries(&app, "action=api_key.created").await;
    assert!(
        keys.iter().any(|k| k["actor"] == "system"
            && k["detail"]["tenant_id"] == t.tenant_id.as_str()
            && k["target"].as_str().unwrap().starts_with("key_")),
        "{keys:?}"
    );
    // Every entry has a time, and they come newest first.
    let all = entries(&app, "").await;
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert!(
        all.iter()
            .all(|e| chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).is_ok())
    );
}

async fn failed_and_successful_sign_ins_are_audited_with_the_client_address(backend: Backend) {
    let app = app(backend).await;
    let t = app
        .active_tenant("audit-login@example.com", "starter")
        .await;
    let login = |email: &'static str, password: &'static str| {
        app.client
            .post(app.url("/login"))
            .header("x-forwarded-for", CLIENT)
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    let wrong = "Wrong-Horse-Battery-77";
    assert_eq!(
        login(" Audit-Login@Example.com", wrong)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        login("nobody-audit@example.com", wrong)
            .await
            .unwrap()
            .status(),
        401
    );
    // Malformed input is not a sign-in attempt.
    assert_eq!(login("not an email", wrong).await.unwrap().status(), 400);
    assert_eq!(
        login("audit-login@example.com", "SecurePass123!")
            .await
            .unwrap()
            .status(),
        200
    );

    let logins = entries(&app, "action=login.").await;
    // A sign-in is the user's: `member:<user id>`, the tenant its target.
    let owner = app
        .store
        .members(&onboard::domain::TenantId::parse(&t.tenant_id).unwrap())
        .await
        .unwrap()
        .remove(0);
    let account = format!("member:{}", owner.id);
    assert_eq!(
        who_did_what(&logins),
        [
            (account.clone(), "login.succeeded".to_string()),
            (
                "user:nobody-audit@example.com".to_string(),
                "login.failed".to_string()
            ),
            (
                "user:Audit-Login@Example.com".to_string(),
                "login.failed".to_string()
            ),
        ]
    );
    for e in &logins {
        assert_eq!(
            e["ip"], CLIENT,
            "the client's address, not the proxy's: {e}"
        );
        assert_eq!(e["detail"]["method"], "password");
    }
    assert_eq!(logins[0]["target"], t.tenant_id);
    assert_eq!(
        logins[2]["target"], t.tenant_id,
        "the account the email names"
    );
    assert_eq!(logins[2]["detail"]["reason"], "invalid_credentials");
    assert!(logins[1]["target"].is_null(), "no account has that email");
    // The attempted password is never recorded, anywhere in the log.
    let text = audit_resp(&app, "limit=500", Some(ADMIN))
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains(wrong), "{text}");

    // The welcome email's link signs in once; the second use is refused, by someone unknown.
    let link = welcome_link(&app, &t.tenant_id).await;
    assert_eq!(follow_magic_link(&app, &link).await.status(), 303);
    assert_eq!(confirm_magic_link(&app, &link).await.status(), 410);
    let magic = entries(&app, "action=login.").await;
    assert_eq!(magic[1]["action"], "login.succeeded");
    assert_eq!(magic[1]["actor"], account.as_str());
    assert_eq!(magic[1]["detail"]["method"], "magic_link");
    assert_eq!(magic[1]["target"], t.tenant_id);
    assert_eq!(magic[1]["ip"], "127.0.0.1");
    assert_eq!(magic[0]["action"], "login.failed");
    assert_eq!(magic[0]["actor"], "anonymous");
    assert_eq!(magic[0]["detail"]["reason"], "link_already_used");
}

async fn operator_and_customer_retries_force_and_approval_are_audited(backend: Backend) {
    let app = spawn_app_without_worker(
        backend,
        &[("ADMIN_TOKEN", ADMIN), ("TRUSTED_PROXIES", "127.0.0.1/32")],
    )
    .await;
    let operator = |path: &str, body: Option<Value>| {
        let mut req = app
            .client
            .post(app.url(path))
            .bearer_auth(ADMIN)
            .header("x-forwarded-for", CLIENT);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send()
    };
    let (tid, session) = app.checkout("audit-ops@example.com", "pro").await;
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    let id = TenantId::parse(&tid).unwrap();
    assert_eq!(
        app.store.tenant(&id).await.unwrap().unwrap().status,
        TenantStatus::Provisioning,
        "no worker: the tenant stays in provisioning"
    );
    // A plain retry of a tenant that has not failed is refused and records nothing.
    let resp = operator("/provision", Some(json!({"tenant_id": tid})))
        .await
        .unwrap();
    assert_error(resp, 409, "invalid_transition").await;
    assert!(entries(&app, "action=operator.").await.is_empty());

    // Forced: the stuck tenant starts again.
    let resp = operator("/provision", Some(json!({"tenant_id": tid, "force": true})))
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let fail = || async {
        let mut tx = app.store.begin().await.unwrap();
        tx.transition_tenant(&id, TenantStatus::Failed, "a step failed", "provisioning")
            .await
            .unwrap();
        tx.commit().await.unwrap();
    };
    fail().await;
    let resp = operator("/provision", Some(json!({"tenant_id": tid})))
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    fail().await;
    let resp = app
        .client
        .post(app.url(&format!("/tenant/{tid}/retry?session_id={session}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);

    let acts = entries(&app, &format!("target={tid}")).await;
    let customer = format!("tenant:{tid}");
    let acts: Vec<(String, String, String)> = acts
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["detail"]["from"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    let row = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        acts,
        [
            row(&customer, "tenant.retry", "failed"),
            row(&customer, "tenant.status_changed", "failed"),
            row("system", "tenant.status_changed", "provisioning"),
            row("operator", "operator.retry", "failed"),
            row("operator", "tenant.status_changed", "failed"),
            row("system", "tenant.status_changed", "provisioning"),
            row("operator", "operator.force_provision", "provisioning"),
            row("stripe", "tenant.status_changed", "pending_payment"),
            row(&customer, "tenant.status_changed", "-"),
        ]
    );
    let ops = entries(&app, "action=operator.").await;
    assert!(ops.iter().all(|e| e["ip"] == CLIENT), "{ops:?}");
    assert_eq!(ops[1]["detail"]["force"], true);
    let retry = entries(&app, "action=tenant.retry").await;
    assert_eq!(retry[0]["ip"], "127.0.0.1");

    // An enterprise signup approved by the operator.
    let signup = app
        .post_json(
            "/signup",
            &json!({"email": "audit-ent@example.com", "company_name": "BigCo",
                    "password": "SecurePass123!", "plan": "enterprise"}),
        )
        .await;
    assert_eq!(signup.status(), 201);
    let ent = signup.json::<Value>().await.unwrap()["tenant_id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = operator(&format!("/admin/tenants/{ent}/approve"), None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let approved = entries(&app, &format!("target={ent}")).await;
    assert_eq!(
        who_did_what(&approved[..2]),
        [
            ("operator".to_string(), "operator.approve".to_string()),
            ("operator".to_string(), "tenant.status_changed".to_string()),
        ]
    );
    assert_eq!(approved[0]["ip"], CLIENT);
    assert_eq!(approved[1]["detail"]["to"], "provisioning");
}

async fn key_revocation_and_rotation_are_audited(backend: Backend) {
    let app = app(backend).await;
    let t = app.fresh_tenant("audit-keys").await;
    let create = || async {
        let created: Value = app
            .authed(Method::POST, "/v1/api-keys", &t.api_key)
            .json(&json!({"name": "ci", "scopes": ["query"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["id"].as_str().unwrap().to_string()
    };
    let (revoked, rotated) = (create().await, create().await);
    let resp = app
        .authed(
            Method::DELETE,
            &format!("/v1/api-keys/{revoked}"),
            &t.api_key,
        )
        .header("x-forwarded-for", CLIENT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = app
        .authed(
            Method::POST,
            &format!("/v1/api-keys/{rotated}/rotate"),
            &t.api_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let replacement: Value = resp.json().await.unwrap();
    let keys: Value = app
        .call(Method::GET, "/v1/api-keys", &t.api_key)
        .await
        .json()
        .await
        .unwrap();
    let first = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "Default key")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let actor = format!("tenant:{}", t.tenant_id);
    let by_tenant = format!("action=api_key.revoked&actor={actor}");
    let revocations = entries(&app, &by_tenant).await;
    assert_eq!(revocations.len(), 2, "{revocations:?}");
    let (rot, rev) = (&revocations[0], &revocations[1]);
    assert_eq!(rev["actor"], actor.as_str());
    assert_eq!(rev["target"], revoked.as_str());
    assert_eq!(rev["ip"], CLIENT);
    assert_eq!(rev["detail"]["reason"], "revoked");
    assert_eq!(rev["detail"]["by_key"], first.as_str());
    assert_eq!(rev["detail"]["tenant_id"], t.tenant_id);
    assert_eq!(rot["target"], rotated.as_str());
    assert_eq!(rot["detail"]["reason"], "rotated");
    assert_eq!(rot["detail"]["replaced_by"], replacement["id"]);
    // Creations by the tenant (two, and the rotation's replacement), newest first.
    let created: Vec<String> = entries(&app, &format!("action=api_key.created&actor={actor}"))
        .await
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        created,
        [
            replacement["id"].as_str().unwrap().to_string(),
            rotated.clone(),
            revoked.clone()
        ]
    );
    // A refused revocation (no such key) records nothing.
    let resp = app
        .authed(
            Method::DELETE,
            &format!("/v1/api-keys/{revoked}"),
            &t.api_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(entries(&app, &by_tenant).await.len(), 2);
}

async fn an_export_is_audited(backend: Backend) {
    let app = app(backend).await;
    let t = app
        .active_tenant("audit-export@example.com", "starter")
        .await;
    let cookie = signed_in(&app, &t).await;
    let resp = app
        .client
        .post(app.url("/account/export"))
        .header(COOKIE, &cookie)
        .header("x-forwarded-for", CLIENT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let size = resp.bytes().await.unwrap().len();
    let exports = entries(&app, "action=export.").await;
    assert_eq!(exports.len(), 1);
    let e = &exports[0];
    assert_eq!(e["action"], "export.downloaded");
    let owner = app
        .store
        .members(&onboard::domain::TenantId::parse(&t.tenant_id).unwrap())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(e["actor"], format!("member:{}", owner.id));
    assert_eq!(e["target"], t.tenant_id);
    assert_eq!(e["ip"], CLIENT);
    assert_eq!(e["detail"]["bytes"], size);
    // Reading the audit log is not itself audited.
    let before = entries(&app, "").await.len();
    assert_eq!(entries(&app, "").await.len(), before);
}

async fn the_database_refuses_to_change_an_entry(backend: Backend) {
    let app = spawn_app(backend).await;
    app.store
        .audit(&AuditEntry::new(Actor::Operator, Action::OperatorApprove).target("tenant_X"))
        .await
        .unwrap();
    let update = onboard::with_pool!(&app.store, |pool| {
        sqlx::query("UPDATE audit_log SET actor = 'someone else'")
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    });
    let err = update.expect_err("an UPDATE of the audit log is refused");
    assert!(err.to_string().contains("append-only"), "{err}");
    if matches!(app.store, onboard::store::Store::Postgres(_)) {
        let truncate = onboard::with_pool!(&app.store, |pool| {
            sqlx::query("TRUNCATE audit_log")
                .execute(pool)
                .await
                .map(|_| ())
        });
        assert!(truncate.is_err(), "TRUNCATE is refused too");
    }
    let page = app.store.audit_page(&Default::default(), 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].actor, "operator");
}

/// Entries written straight into the table at fixed times (`at` ms), for the filter tests.
async fn insert_at(app: &TestApp, rows: &[(i64, &str, &str, Option<&str>)]) {
    for chunk in rows.chunks(200) {
        let sql = format!(
            "INSERT INTO audit_log (at, actor, action, target) VALUES {}",
            onboard::store::values_rows(chunk.len(), 4)
        );
        onboard::with_pool!(&app.store, |pool| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for (at, actor, action, target) in chunk {
                q = q.bind(*at).bind(*actor).bind(*action).bind(*target);
            }
            q.execute(pool).await.unwrap();
        });
    }
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

async fn filters_select_and_the_cursor_pages_without_gaps_or_repeats(backend: Backend) {
    // No worker: its retention job would delete these entries of 2024 beside the test.
    let app = spawn_app_without_worker(backend, &[("ADMIN_TOKEN", ADMIN)]).await;
    let day1 = ms("2024-03-01T10:00:00Z");
    let day2 = ms("2024-03-02T10:00:00Z");
    let mut rows: Vec<(i64, &str, &str, Option<&str>)> = Vec::new();
    for i in 0..23 {
        let at = if i < 10 { day1 + i } else { day2 + i };
        let (actor, action, target) = match i % 3 {
            0 => ("operator", "operator.retry", Some("tenant_A")),
            1 => ("user:ann@example.com", "login.failed", Some("tenant_B")),
            _ => ("user:ann@example.com", "login.succeeded", None),
        };
        rows.push((at, actor, action, target));
    }
    rows.push((
        day2 + 100,
        "tenant:tenant_C",
        "api_key.revoked",
        Some("key_1"),
    ));
    insert_at(&app, &rows).await;

    // Every entry, three at a time: no gaps, no repeats, newest first.
    let all = entries(&app, "").await;
    assert_eq!(all.len(), 24);
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=3&cursor={c}"),
            None => "limit=3".to_string(),
        };
        let page = audit(&app, &query).await;
        let got = page["entries"].as_array().unwrap();
        assert!(got.len() <= 3);
        paged.extend(got.iter().cloned());
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 8);
    assert_eq!(paged, all);

    // The same with a filter: the cursor carries on within it.
    let mut paged = Vec::new();
    let mut page = audit(&app, "action=login.&limit=5").await;
    loop {
        paged.extend(page["entries"].as_array().unwrap().iter().cloned());
        let Some(c) = page["next_cursor"].as_str() else {
            break;
        };
        page = audit(&app, &format!("action=login.&limit=5&cursor={c}")).await;
    }
    assert_eq!(paged, entries(&app, "action=login.").await);
    assert_eq!(paged.len(), 15);

    let count = |query: &'static str| {
        let app = &app;
        async move { entries(app, query).await.len() }
    };
    assert_eq!(count("actor=operator").await, 8);
    assert_eq!(count("actor=user:ann@example.com").await, 15);
    assert_eq!(count("action=login.failed").await, 8);
    assert_eq!(count("action=login.succeeded").await, 7);
    // `api_key.` is a group: its underscore is not a wildcard.
    assert_eq!(count("action=api_key.").await, 1);
    assert_eq!(count("target=tenant_B").await, 8);
    assert_eq!(count("target=key_1&actor=tenant:tenant_C").await, 1);
    // `from` is inclusive, `to` exclusive; a day is midnight UTC.
    assert_eq!(count("to=2024-03-02").await, 10);
    assert_eq!(count("from=2024-03-02").await, 14);
    assert_eq!(count("from=2024-03-01&to=2024-03-03").await, 24);
    assert_eq!(count("from=2024-03-01T10:00:00.005Z").await, 19);
    assert_eq!(
        count("from=2024-03-01T10:00:00%2B00:00&to=2024-03-01T10:00:00.003Z").await,
        3
    );
    assert_eq!(count("action=operator.&from=2024-03-02").await, 4);
    assert_eq!(count("from=2024-03-04").await, 0);
    // Empty values are no filter.
    assert_eq!(count("actor=&action=&target=&from=&to=&cursor=").await, 24);
    // The default page is 100 entries.
    let page = audit(&app, "").await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 24);
    assert!(page["next_cursor"].is_null());
}

async fn retention_deletes_only_entries_past_it(backend: Backend) {
    // No worker: the periodic job would otherwise prune at start-up, beside the test.
    let app = spawn_app_without_worker(backend, &[("ADMIN_TOKEN", ADMIN)]).await;
    let now = onboard::store::now_ms();
    let day = 86_400_000;
    // More than one batch past the 400 days, and entries just inside it.
    let mut rows: Vec<(i64, &str, &str, Option<&str>)> = (0..1_005)
        .map(|i| {
            (
                now - 500 * day + i,
                "system",
                "webhook.processed",
                Some("evt_old"),
            )
        })
        .collect();
    rows.push((
        now - 400 * day - 1,
        "system",
        "webhook.processed",
        Some("evt_edge"),
    ));
    rows.push((
        now - 399 * day,
        "operator",
        "operator.retry",
        Some("tenant_kept"),
    ));
    rows.push((
        now - day,
        "operator",
        "operator.approve",
        Some("tenant_kept"),
    ));
    insert_at(&app, &rows).await;

    let deleted = onboard::audit::prune(&app.state, now).await.unwrap();
    assert_eq!(deleted, 1_006);
    let left = entries(&app, "").await;
    assert_eq!(
        who_did_what(&left),
        [
            ("operator".to_string(), "operator.approve".to_string()),
            ("operator".to_string(), "operator.retry".to_string()),
        ]
    );
    assert_eq!(onboard::audit::prune(&app.state, now).await.unwrap(), 0);

    // A shorter retention, configured, takes effect.
    let app = app
        .restart_with(&[("ADMIN_TOKEN", ADMIN), ("AUDIT_RETENTION_DAYS", "30")])
        .await;
    assert_eq!(onboard::audit::prune(&app.state, now).await.unwrap(), 1);
    assert_eq!(entries(&app, "").await.len(), 1);
}

async fn the_periodic_job_applies_the_retention(backend: Backend) {
    // A log with an entry past retention, then a server whose worker runs its periodic jobs.
    let db = TestDb::create(&backend).await;
    let store = db.store().await;
    let now = onboard::store::now_ms();
    for (days, action) in [(401, "webhook.processed"), (1, "operator.retry")] {
        onboard::with_pool!(&store, |pool| {
            sqlx::query("INSERT INTO audit_log (at, actor, action) VALUES ($1, 'system', $2)")
                .bind(now - days * 86_400_000)
                .bind(action)
                .execute(pool)
                .await
                .unwrap();
        });
    }
    store.close().await;
    let app = spawn_app_on(db, &[("ADMIN_TOKEN", ADMIN)]).await;
    let left = eventually("the retention job", 30, || async {
        let left = app.store.audit_page(&Default::default(), 10).await.unwrap();
        (left.len() == 1).then_some(left)
    })
    .await;
    assert_eq!(left[0].action, "operator.retry");
}

async fn reading_needs_the_operator_token_and_bad_filters_are_named(backend: Backend) {
    let closed = spawn_app(backend.clone()).await;
    assert_error(
        audit_resp(&closed, "", Some(ADMIN)).await,
        403,
        "operator_disabled",
    )
    .await;
    let app = spawn_app_with(backend, &[("ADMIN_TOKEN", ADMIN)]).await;
    assert_error(audit_resp(&app, "", None).await, 401, "unauthorized").await;
    assert_error(
        audit_resp(&app, "", Some("not-the-token")).await,
        401,
        "unauthorized",
    )
    .await;
    // Authentication comes first: a bad filter without the token is a 401.
    assert_error(audit_resp(&app, "limit=0", None).await, 401, "unauthorized").await;
    for (query, field) in [
        ("actor=admin", "actor"),
        ("actor=tenant:nope", "actor"),
        ("actor=user:", "actor"),
        ("action=login", "action"),
        ("action=login.x", "action"),
        ("action=nope.", "action"),
        ("from=yesterday", "from"),
        ("to=2024-13-01", "to"),
        ("from=2024-03-02&to=2024-03-01", "to"),
        ("from=2024-03-02&to=2024-03-02", "to"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=MTI", "cursor"),
    ] {
        let resp = audit_resp(&app, query, Some(ADMIN)).await;
        let err = assert_error(resp, 400, "invalid_query_parameter").await;
        assert_eq!(err["field"], field, "{query}: {err}");
    }
    let long = format!("target={}", "x".repeat(257));
    let err = assert_error(
        audit_resp(&app, &long, Some(ADMIN)).await,
        400,
        "invalid_query_parameter",
    )
    .await;
    assert_eq!(err["field"], "target");
    // The message of a bad action names what is allowed.
    let err = assert_error(
        audit_resp(&app, "action=logins", Some(ADMIN)).await,
        400,
        "invalid_query_parameter",
    )
    .await;
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("login.failed") && message.contains("login."),
        "{message}"
    );
    // The limits themselves are fine.
    for ok in ["limit=1", "limit=500"] {
        audit(&app, ok).await;
    }
}
