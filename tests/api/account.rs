//! The customer's own account after day one: consent and unsubscribing, the emails the
//! subscription's life sends, the dev billing portal, export and closing the account.

use reqwest::header::{CONTENT_DISPOSITION, COOKIE, LOCATION};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, eventually, spawn_app};
use crate::lifecycle::{deliver, event, evt_id, invoice, settled, stripe_ids, subscription};
use crate::login::signed_in;
use crate::store_tests;
use onboard::domain::TenantId;

store_tests!(
    signup_records_marketing_consent_with_its_source_and_address,
    one_click_unsubscribe_stops_lifecycle_mail_but_not_transactional_mail,
    subscription_changes_send_their_emails_once,
    the_dev_billing_portal_pays_and_cancels_through_the_webhook,
    export_downloads_everything_and_sends_a_notice,
    closing_the_account_cancels_it_and_schedules_erasure,
    the_checkout_reminder_is_sent_once_an_hour_after_signup,
);

/// The kinds of the emails queued for a tenant, oldest first.
async fn kinds(app: &TestApp, tid: &str) -> Vec<String> {
    let mut emails = app.store.list_emails(Some(tid), 100).await.unwrap();
    emails.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    emails.into_iter().map(|e| e.kind).collect()
}

async fn wait_for_kind(app: &TestApp, tid: &str, kind: &str) -> onboard::email::StoredEmail {
    eventually(&format!("a {kind} email for {tid}"), 15, || async {
        app.store
            .list_emails(Some(tid), 100)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.kind == kind)
    })
    .await
}

async fn signup_records_marketing_consent_with_its_source_and_address(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ids = vec![];
    for (email, opt_in) in [
        ("yes@example.com", Some(true)),
        ("no@example.com", Some(false)),
        ("silent@example.com", None),
    ] {
        let mut body =
            json!({"email": email, "company_name": "Acme", "password": "SecurePass123!"});
        if let Some(v) = opt_in {
            body["marketing_opt_in"] = json!(v);
        }
        let resp = app.post_json("/signup", &body).await;
        assert_eq!(resp.status(), 201);
        let b: Value = resp.json().await.unwrap();
        ids.push(TenantId::parse(b["tenant_id"].as_str().unwrap()).unwrap());
    }
    for (id, want) in ids.iter().zip([true, false, false]) {
        assert_eq!(
            app.store
                .billing(id)
                .await
                .unwrap()
                .unwrap()
                .marketing_opt_in,
            want
        );
        let events = app.store.consent_events(id).await.unwrap();
        assert_eq!(events.len(), 1, "the answer is recorded, yes or no");
        let e = &events[0];
        assert_eq!(
            (e.purpose.as_str(), e.granted, e.source.as_str()),
            ("marketing", i64::from(want), "signup")
        );
        assert_eq!(e.client.as_deref(), Some("127.0.0.1"));
        assert!(e.at > 0);
    }
    let resp = app
        .post_json(
            "/signup",
            &json!({"email": "typo@example.com", "company_name": "Acme", "password": "SecurePass123!", "marketing_opt_in": "yes"}),
        )
        .await;
    let err = assert_error(resp, 400, "invalid_field").await;
    assert_eq!(err["field"], "marketing_opt_in");
}

/// The URL of an email's `List-Unsubscribe` header.
fn list_unsubscribe(email: &onboard::email::StoredEmail) -> String {
    let headers: Vec<(String, String)> = serde_json::from_str(&email.headers).unwrap();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    get("List-Unsubscribe")
        .expect("a List-Unsubscribe header")
        .trim_matches(|c| c == '<' || c == '>')
        .to_string()
}

async fn one_click_unsubscribe_stops_lifecycle_mail_but_not_transactional_mail(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("unsub@example.com", "starter").await;
    let (cus, sub) = stripe_ids(&app, &t.tenant_id).await;
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut trial = subscription(&cus, &sub, &t.tenant_id, "trialing", false, "starter");
    trial["trial_end"] = json!(now + 3 * 86_400);
    deliver(
        &app,
        &event(
            &evt_id(),
            "customer.subscription.trial_will_end",
            now,
            trial.clone(),
        ),
    )
    .await;
    let notice = wait_for_kind(&app, &t.tenant_id, "trial_ending").await;
    let url = list_unsubscribe(&notice);
    assert!(url.starts_with(&app.url("/unsubscribe?token=")), "{url}");
    assert!(
        notice.text_body.contains(&url),
        "the footer carries the same link"
    );

    // Opening the link (a mail scanner may) only shows the confirmation.
    let page = app.client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("unsub@example.com") && html.contains("<button"),
        "{html}"
    );
    assert!(
        app.store
            .billing(&id)
            .await
            .unwrap()
            .unwrap()
            .unsubscribed_at
            .is_none()
    );

    // One-click, as a mail provider posts it (from elsewhere: no same-site headers).
    let one_click = || async {
        app.client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "https://mail.example.net")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap()
    };
    let resp = one_click().await;
    assert_eq!(resp.status(), 200, "no redirect");
    assert!(resp.headers().get(LOCATION).is_none());
    assert!(resp.text().await.unwrap().contains("You are unsubscribed"));
    let billing = app.store.billing(&id).await.unwrap().unwrap();
    assert!(billing.unsubscribed_at.is_some() && !billing.marketing_opt_in);
    let events = app.store.consent_events(&id).await.unwrap();
    assert_eq!(events.last().unwrap().source, "one-click unsubscribe");
    // Again: still 200, nothing more recorded.
    assert_eq!(one_click().await.status(), 200);
    assert_eq!(
        app.store.consent_events(&id).await.unwrap().len(),
        events.len()
    );

    // A forged or altered token, or none, is a 400 page.
    let token = url.split("token=").nth(1).unwrap();
    let mut altered = token.to_string();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        format!("/unsubscribe?token={altered}"),
        "/unsubscribe?token=forged".to_string(),
        "/unsubscribe".to_string(),
    ] {
        let resp = app
            .client
            .post(app.url(&bad))
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(app.get(&bad).await.status(), 400, "{bad}");
    }

    // Lifecycle mail stops; transactional mail still goes.
    let before = kinds(&app, &t.tenant_id).await;
    trial["trial_end"] = json!(now + 5 * 86_400);
    deliver(
        &app,
        &event(
            &evt_id(),
            "customer.subscription.trial_will_end",
            now + 1,
            trial,
        ),
    )
    .await;
    settled(&app).await;
    crate::login::forgot(&app, &t.email).await;
    wait_for_kind(&app, &t.tenant_id, "password_reset").await;
    let after = kinds(&app, &t.tenant_id).await;
    assert_eq!(
        after.iter().filter(|k| *k == "trial_ending").count(),
        1,
        "no second trial notice after the unsubscribe: {after:?} (before {before:?})"
    );

    // Ticking the box on the account page subscribes again (its form only: JSON is a 415).
    let cookie = signed_in(&app, &t).await;
    let resp = app
        .client
        .post(app.url("/account/consent"))
        .header(COOKIE, &cookie)
        .json(&json!({"marketing_opt_in": true}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 415, "unsupported_media_type").await;
    let resp = app
        .client
        .post(app.url("/account/consent"))
        .header(COOKIE, &cookie)
        .form(&[("marketing_opt_in", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let billing = app.store.billing(&id).await.unwrap().unwrap();
    assert!(billing.marketing_opt_in && billing.unsubscribed_at.is_none());
    assert_eq!(
        app.store
            .consent_events(&id)
            .await
            .unwrap()
            .last()
            .unwrap()
            .source,
        "account page"
    );
}

async fn subscription_changes_send_their_emails_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("mails@example.com", "starter").await;
    let (cus, sub) = stripe_ids(&app, &t.tenant_id).await;
    let now = chrono::Utc::now().timestamp();
    for (i, e) in [
        event(
            &evt_id(),
            "invoice.payment_failed",
            now,
            invoice(&cus, &sub, &t.tenant_id, "open"),
        ),
        event(
            &evt_id(),
            "customer.subscription.updated",
            now + 10,
            subscription(&cus, &sub, &t.tenant_id, "unpaid", false, "starter"),
        ),
        event(
            &evt_id(),
            "invoice.paid",
            now + 20,
            invoice(&cus, &sub, &t.tenant_id, "paid"),
        ),
    ]
    .iter()
    .enumerate()
    {
        deliver(&app, e).await;
        let want = ["past_due", "suspended", "active"][i];
        app.wait_for_status(&t.tenant_id, want, 10).await;
    }
    settled(&app).await;
    let expected = [
        "welcome",
        "payment_failed",
        "account_suspended",
        "payment_recovered",
    ];
    assert_eq!(kinds(&app, &t.tenant_id).await, expected);
    let failed = wait_for_kind(&app, &t.tenant_id, "payment_failed").await;
    assert!(
        failed.text_body.contains(&app.url("/account")),
        "{}",
        failed.text_body
    );
    // Replaying every event sends nothing twice.
    let report = onboard::billing::events::replay(
        &app.state,
        &onboard::billing::events::ReplayFilter::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.changed, 0);
    assert_eq!(kinds(&app, &t.tenant_id).await, expected);
}

async fn the_dev_billing_portal_pays_and_cancels_through_the_webhook(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("portal@example.com", "pro").await;
    let (cus, sub) = stripe_ids(&app, &t.tenant_id).await;
    let cookie = signed_in(&app, &t).await;
    let post = |path: &'static str, cookie: Option<String>| {
        let app = &app;
        async move {
            let mut req = app.client.post(app.url(path));
            if let Some(c) = cookie {
                req = req.header(COOKIE, c);
            }
            req.send().await.unwrap()
        }
    };
    let resp = post("/account/billing-portal", Some(cookie.clone())).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/dev/billing-portal");
    assert_error(
        post("/account/billing-portal", None).await,
        401,
        "unauthorized",
    )
    .await;
    let page = app
        .client
        .get(app.url("/dev/billing-portal"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("update-card"));

    deliver(
        &app,
        &event(
            &evt_id(),
            "invoice.payment_failed",
            chrono::Utc::now().timestamp() - 5,
            invoice(&cus, &sub, &t.tenant_id, "open"),
        ),
    )
    .await;
    app.wait_for_status(&t.tenant_id, "past_due", 10).await;
    let resp = post("/dev/billing-portal/update-card", Some(cookie.clone())).await;
    assert_eq!(resp.status(), 303);
    app.wait_for_status(&t.tenant_id, "active", 10).await;
    wait_for_kind(&app, &t.tenant_id, "payment_recovered").await;

    let resp = post("/dev/billing-portal/cancel", Some(cookie.clone())).await;
    assert_eq!(resp.status(), 303);
    app.wait_for_status(&t.tenant_id, "canceled", 10).await;
    let notice = wait_for_kind(&app, &t.tenant_id, "subscription_canceled").await;
    assert!(notice.text_body.contains(&app.url("/account")));
    // Nothing left to change.
    let resp = post("/dev/billing-portal/cancel", Some(cookie)).await;
    assert_error(resp, 409, "subscription_closed").await;
    let resp = post("/dev/billing-portal/update-card", None).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/login");
}

async fn export_downloads_everything_and_sends_a_notice(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("export@example.com", "starter").await;
    app.upload(
        &t.api_key,
        "Runbook",
        "Restart the ingest worker on Mondays.",
    )
    .await;
    let cookie = signed_in(&app, &t).await;
    let resp = app
        .client
        .post(app.url("/account/export"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()[CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains(&format!("onboard-export-{}.json", t.tenant_id))
    );
    let text = resp.text().await.unwrap();
    assert!(!text.contains(&t.api_key), "no key secret in the export");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["account"]["email"], "export@example.com");
    assert_eq!(doc["account"]["tenant_id"], t.tenant_id);
    let runbook = doc["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["title"] == "Runbook")
        .expect("the uploaded document");
    assert_eq!(runbook["content"], "Restart the ingest worker on Mondays.");
    assert!(!doc["api_keys"].as_array().unwrap().is_empty());
    let statuses: Vec<&str> = doc["events"]["status_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["to"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["pending_payment", "provisioning", "active"]);
    assert_eq!(doc["events"]["consent"][0]["source"], "signup");
    assert!(
        doc["events"]["billing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "checkout.session.completed")
    );
    wait_for_kind(&app, &t.tenant_id, "data_export_ready").await;
    let resp = app
        .client
        .post(app.url("/account/export"))
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "unauthorized").await;
}

async fn closing_the_account_cancels_it_and_schedules_erasure(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("closing@example.com", "starter").await;
    let cookie = signed_in(&app, &t).await;
    let close = || async {
        app.client
            .delete(app.url("/account"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
    };
    let resp = close().await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "canceled");
    let erase =
        chrono::DateTime::parse_from_rfc3339(body["data_erased_after"].as_str().unwrap()).unwrap();
    let days = (erase.timestamp() - chrono::Utc::now().timestamp()) as f64 / 86_400.0;
    assert!((29.9..=30.1).contains(&days), "30 days by default: {days}");
    assert!(body["message"].as_str().unwrap().contains("Export"));
    app.wait_for_status(&t.tenant_id, "canceled", 5).await;
    wait_for_kind(&app, &t.tenant_id, "subscription_canceled").await;
    // Again: the same answer, nothing new.
    let again: Value = close().await.json().await.unwrap();
    assert_eq!(again["data_erased_after"], body["data_erased_after"]);
    // The customer can still sign in and export until the erasure.
    let page = app
        .client
        .get(app.url("/account"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("will be erased after"), "{html}");
    // The API itself is closed.
    let resp = eventually("the key refused", 10, || async {
        let resp = app.query(&t.api_key, "x", 1).await;
        (resp.status() == 403).then_some(resp)
    })
    .await;
    assert_error(resp, 403, "workspace_unavailable").await;
    let resp = app.client.delete(app.url("/account")).send().await.unwrap();
    assert_error(resp, 401, "unauthorized").await;
}

async fn the_checkout_reminder_is_sent_once_an_hour_after_signup(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tid, session) = app.checkout("reminder@example.com", "starter").await;
    let now = onboard::store::now_ms();
    let sweep = |at: i64| onboard::billing::lifecycle::sweep(&app.state, at);
    assert_eq!(sweep(now + 30 * 60_000).await.unwrap().reminded, 0);
    assert_eq!(sweep(now + 61 * 60_000).await.unwrap().reminded, 1);
    assert_eq!(sweep(now + 120 * 60_000).await.unwrap().reminded, 0, "once");
    let reminder = wait_for_kind(&app, &tid, "checkout_reminder").await;
    list_unsubscribe(&reminder);
    let link = app.url(&format!("/onboarding/checkout?session_id={session}"));
    assert!(reminder.text_body.contains(&link), "{}", reminder.text_body);
    let resp = app.client.get(&link).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()[LOCATION],
        format!("/dev/checkout/{session}").as_str()
    );
    // Once paid, the link leads to the progress page.
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    app.wait_for_status(&tid, "active", 30).await;
    let resp = app.client.get(&link).send().await.unwrap();
    assert_eq!(
        resp.headers()[LOCATION],
        format!("/onboarding/success?session_id={session}").as_str()
    );
}
