//! The customer's pages as plain HTML forms (no JavaScript): the front page's plans and
//! sign-up, the cancel page's way back to the checkout, the workspace's documents (paging,
//! upload, delete) and keys (create, rotate, revoke), the wizard's skip and query, and closing
//! the account with a typed confirmation.

use onboard::domain::TenantId;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;

use crate::helpers::{Backend, TEST_PASSWORD, TestApp, spawn_app, spawn_app_with};
use crate::login::signed_in;
use crate::store_tests;

store_tests!(
    the_front_page_shows_the_plan_table_and_signs_up_with_a_form,
    the_cancel_page_offers_the_checkout_again_to_the_browser_that_signed_up,
    the_workspace_pages_documents_and_adds_and_deletes_them,
    keys_are_created_rotated_and_revoked_from_the_workspace_page,
    the_wizard_page_skips_and_queries_and_sign_in_resumes_it,
    closing_the_account_needs_the_company_name_typed,
);

/// Posts `fields` as a page's form with the session `cookie` (no redirects followed).
async fn form(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).form(fields);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.unwrap()
}

async fn page(app: &TestApp, path: &str, cookie: &str) -> String {
    let resp = app
        .client
        .get(app.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.text().await.unwrap()
}

/// The text of the first `<pre id="{id}">`.
fn pre(html: &str, id: &str) -> Option<String> {
    let start = format!("<pre id=\"{id}\">");
    let rest = html.split(start.as_str()).nth(1)?;
    Some(rest.split("</pre>").next()?.to_string())
}

async fn the_front_page_shows_the_plan_table_and_signs_up_with_a_form(backend: Backend) {
    let app = spawn_app_with(backend, &[("PLAN_LIMITS", "starter.max_documents=2500")]).await;
    let html = app.get("/").await.text().await.unwrap();
    for want in [
        "$49",
        "$199",
        "2,500 documents",
        "10,000 documents",
        "Unlimited documents",
    ] {
        assert!(html.contains(want), "{want} on the front page");
    }
    assert!(
        !html.contains(" checked"),
        "the marketing consent box starts unticked"
    );
    // A refused field comes back next to the field, with what was typed (not the password).
    let resp = form(
        &app,
        "/signup",
        None,
        &[
            ("email", "pat@example.com"),
            ("company_name", "Pat Co"),
            ("password", "short"),
            ("plan", "pro"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let html = resp.text().await.unwrap();
    assert!(html.contains("id=\"password-error\""), "{html}");
    assert!(html.contains("value=\"pat@example.com\"") && html.contains("value=\"Pat Co\""));
    assert!(html.contains("<option value=\"pro\" selected>"));
    // A good one goes to the checkout; the consent box's answer is recorded.
    let resp = form(
        &app,
        "/signup",
        None,
        &[
            ("email", "pat@example.com"),
            ("company_name", "Pat Co"),
            ("password", TEST_PASSWORD),
            ("plan", "pro"),
            ("marketing_opt_in", "yes"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let to = resp.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(to.contains("/dev/checkout/cs_dev_"), "{to}");
    let tenant = app
        .store
        .tenant_by_email("pat@example.com")
        .await
        .unwrap()
        .unwrap();
    let billing = app
        .store
        .billing(&tenant.id)
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(billing.marketing_opt_in);
    // The same email again: 409, by the email field.
    let resp = form(
        &app,
        "/signup",
        None,
        &[
            ("email", "pat@example.com"),
            ("company_name", "Pat Co"),
            ("password", TEST_PASSWORD),
        ],
    )
    .await;
    assert_eq!(resp.status(), 409);
    assert!(resp.text().await.unwrap().contains("id=\"email-error\""));
    // Enterprise: the request goes to sales, no checkout.
    let resp = form(
        &app,
        "/signup",
        None,
        &[
            ("email", "big@example.com"),
            ("company_name", "Big Co"),
            ("password", TEST_PASSWORD),
            ("plan", "enterprise"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("with our sales team"));
    let big = app
        .store
        .tenant_by_email("big@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(big.status.to_string(), "sales_review");
}

async fn the_cancel_page_offers_the_checkout_again_to_the_browser_that_signed_up(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = form(
        &app,
        "/signup",
        None,
        &[
            ("email", "back@example.com"),
            ("company_name", "Back Co"),
            ("password", TEST_PASSWORD),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set.starts_with("onboard_checkout=cs_dev_") && set.contains("HttpOnly"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let session = cookie.split('=').nth(1).unwrap().to_string();
    let html = page(&app, "/onboarding/cancel", &cookie).await;
    assert!(
        html.contains(&format!("/onboarding/checkout?session_id={session}")),
        "{html}"
    );
    // Another browser (no cookie) is told to sign up again.
    let other = app.get("/onboarding/cancel").await.text().await.unwrap();
    assert!(!other.contains("/onboarding/checkout") && other.contains("sign up again"));
    // The link back opens the same, still open, checkout.
    let resp = app
        .client
        .get(app.url(&format!("/onboarding/checkout?session_id={session}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], format!("/dev/checkout/{session}"));
    // Once paid, there is no checkout to go back to.
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    let html = page(&app, "/onboarding/cancel", &cookie).await;
    assert!(!html.contains("/onboarding/checkout"));
}

async fn the_workspace_pages_documents_and_adds_and_deletes_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("docs-page@example.com", "starter").await;
    let cookie = signed_in(&app, &t).await;
    for i in 1..=11 {
        let resp = form(
            &app,
            "/app/documents",
            Some(&cookie),
            &[
                ("title", &format!("Doc {i:02}")),
                ("content", &format!("Refunds take {i} days.")),
            ],
        )
        .await;
        assert_eq!(resp.status(), 303);
        assert_eq!(resp.headers()[LOCATION], "/app?done=uploaded#documents");
    }
    // Ten a page, newest first, then the rest (and the three sample documents).
    let first = page(&app, "/app", &cookie).await;
    assert!(first.contains("Doc 11") && first.contains("Doc 02") && !first.contains("Doc 01"));
    let next = first
        .split("href=\"/app?cursor=")
        .nth(1)
        .and_then(|r| r.split('#').next())
        .expect("a next-page link");
    let second = page(&app, &format!("/app?cursor={next}"), &cookie).await;
    assert!(second.contains("Doc 01") && second.contains("Getting Started Guide"));
    assert!(!second.contains("Doc 11") && !second.contains("cursor="));
    // Delete one: it is gone, with its vectors.
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let docs = app.store.list_documents(&id, 100, None).await.unwrap();
    let doc = docs.iter().find(|d| d.title == "Doc 05").unwrap();
    let resp = form(
        &app,
        &format!("/app/documents/{}/delete", doc.id),
        Some(&cookie),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert!(app.store.document(&id, &doc.id).await.unwrap().is_none());
    assert!(!page(&app, "/app", &cookie).await.contains("Doc 05"));
    // Refusals come back on the page with the field marked and what was typed kept.
    let resp = form(
        &app,
        "/app/documents",
        Some(&cookie),
        &[("title", "Kept title"), ("content", "   ")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let html = resp.text().await.unwrap();
    assert!(html.contains("content is empty") && html.contains("value=\"Kept title\""));
    assert!(html.contains("aria-invalid=\"true\""));
    let resp = form(&app, "/app/documents/doc_nope/delete", Some(&cookie), &[]).await;
    assert_eq!(resp.status(), 404);
    // Signed out: to the sign-in page; JSON instead of the form: 415.
    let resp = form(&app, "/app/documents", None, &[("content", "x")]).await;
    assert_eq!(resp.headers()[LOCATION], "/login");
    let resp = app
        .client
        .post(app.url("/app/documents"))
        .header(COOKIE, &cookie)
        .json(&serde_json::json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    // A query from the page: ranked results, counted as the workspace's first query.
    let resp = form(&app, "/app/query", Some(&cookie), &[("query", "refunds")]).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("<ol class=\"results\""));
    let milestones = app.store.milestones(&id).await.unwrap();
    assert!(
        milestones
            .iter()
            .any(|m| m.milestone == "first_query_executed")
    );
}

async fn keys_are_created_rotated_and_revoked_from_the_workspace_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("keys-page@example.com", "starter").await;
    let cookie = signed_in(&app, &t).await;
    let resp = form(
        &app,
        "/app/keys",
        Some(&cookie),
        &[("name", "CI"), ("role", "member")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let html = resp.text().await.unwrap();
    let secret = pre(&html, "new-secret").expect("the new key's secret, once");
    app.query_ok(&secret, "getting started", 3).await;
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let key = app
        .store
        .list_api_keys(&id)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "CI")
        .unwrap();
    assert_eq!(key.role, "member");
    assert!(key.created_by.is_some(), "created by the signed-in user");
    assert!(pre(&page(&app, "/app", &cookie).await, "new-secret").is_none());

    // Rotate: a new secret, the old one stops at once.
    let resp = form(
        &app,
        &format!("/app/keys/{}/rotate", key.id),
        Some(&cookie),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let rotated = pre(&resp.text().await.unwrap(), "new-secret").expect("the rotated secret");
    assert_ne!(rotated, secret);
    let old = app
        .client
        .post(app.url("/v1/query"))
        .bearer_auth(&secret)
        .json(&serde_json::json!({"query": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
    app.query_ok(&rotated, "getting started", 3).await;
    // Revoke the new one.
    let new_id = app
        .store
        .list_api_keys(&id)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "CI" && k.revoked_at.is_none())
        .unwrap()
        .id;
    let resp = form(
        &app,
        &format!("/app/keys/{new_id}/revoke"),
        Some(&cookie),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let gone = app
        .client
        .post(app.url("/v1/query"))
        .bearer_auth(&rotated)
        .json(&serde_json::json!({"query": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 401);
    // Refusals name the field.
    let resp = form(&app, "/app/keys", Some(&cookie), &[("name", "")]).await;
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("name must be 1–100 characters")
    );
    let resp = form(
        &app,
        "/app/keys",
        Some(&cookie),
        &[("name", "X"), ("role", "superuser")],
    )
    .await;
    assert_eq!(resp.status(), 400);
}

async fn the_wizard_page_skips_and_queries_and_sign_in_resumes_it(backend: Backend) {
    let app = spawn_app_with(backend, &[("WIZARD_SPLIT", "100")]).await;
    let t = app
        .active_tenant("wizard-page@example.com", "starter")
        .await;
    let cookie = signed_in(&app, &t).await;
    let html = page(&app, "/setup", &cookie).await;
    assert!(html.contains("Step 1 of 2: Add a document"), "{html}");
    let resp = form(&app, "/setup/steps/1/skip", Some(&cookie), &[]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/setup?done=skipped");
    // Resumes at step 2, and the API sees the skip.
    let html = page(&app, "/setup", &cookie).await;
    assert!(html.contains("Step 2 of 2"), "{html}");
    let wizard: Value = app
        .client
        .get(app.url("/wizard/steps"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wizard["steps"][0]["state"], "skipped");
    // Sign-in while a step is pending lands in the wizard.
    assert_eq!(
        crate::login::login_json(&app, &t.email, &t.password)
            .await
            .json::<Value>()
            .await
            .unwrap()["redirect"],
        "/setup"
    );
    let resp = form(&app, "/setup/query", Some(&cookie), &[("query", "")]).await;
    assert_eq!(resp.status(), 400);
    let resp = form(
        &app,
        "/setup/query",
        Some(&cookie),
        &[("query", "getting started")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("You are all set") && html.contains("<ol class=\"results\""));
    assert_eq!(
        crate::login::login_json(&app, &t.email, &t.password)
            .await
            .json::<Value>()
            .await
            .unwrap()["redirect"],
        "/app",
        "a finished wizard: sign-in lands in the workspace"
    );
    let resp = form(&app, "/setup/steps/9/skip", Some(&cookie), &[]).await;
    assert_eq!(resp.status(), 404);
}

async fn closing_the_account_needs_the_company_name_typed(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("close-page@example.com", "starter").await;
    let cookie = signed_in(&app, &t).await;
    let resp = form(
        &app,
        "/account/close",
        Some(&cookie),
        &[("confirm", "not it")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("type your company name")
    );
    let id = TenantId::parse(&t.tenant_id).unwrap();
    assert_eq!(
        app.store
            .tenant(&id)
            .await
            .unwrap()
            .unwrap()
            .status
            .to_string(),
        "active"
    );
    let resp = form(
        &app,
        "/account/close",
        Some(&cookie),
        &[("confirm", " acme ")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("will be erased after"));
    assert_eq!(
        app.store
            .tenant(&id)
            .await
            .unwrap()
            .unwrap()
            .status
            .to_string(),
        "canceled"
    );
}
