//! Pay → provision → welcome, on both stores.

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Backend, TestApp, assert_error, eventually, spawn_app, spawn_app_with};
use crate::store_tests;
use onboard::domain::TenantId;

store_tests!(
    paying_on_the_dev_checkout_provisions_the_tenant_end_to_end,
    webhook_refuses_bad_signatures_and_stores_nothing,
    events_delivered_three_times_concurrently_provision_once,
    a_failing_vector_store_fails_the_tenant_after_retries_and_retry_recovers,
    a_failing_email_transport_dead_letters_the_email_and_a_retry_sends_it_once,
    the_sweeper_fails_a_stuck_tenant_without_anyone_reading_it,
    enterprise_signups_go_to_sales_review_and_notify_the_operator,
    operator_provision_endpoint_requires_the_admin_token,
    signup_with_stripe_sends_the_exact_checkout_request,
    stripe_errors_answer_502_and_store_nothing,
    operator_commands_show_stats_list_tenants_and_retry,
    the_success_page_racing_the_webhook_provisions_once,
    the_sweeper_racing_a_slow_provisioning_job_fails_the_tenant_cleanly,
);

async fn completed_event(app: &TestApp, tenant_id: &str, session: &str) -> Value {
    let t = app
        .store
        .tenant(&TenantId::parse(tenant_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    onboard::billing::checkout::dev_completed_event(&t, session)
}

async fn paying_on_the_dev_checkout_provisions_the_tenant_end_to_end(backend: Backend) {
    let app = spawn_app(backend).await;
    // A bad session id is named for what is wrong with it.
    for (query, message) in [
        ("", "session_id is required"),
        ("?session_id=", "session_id is required"),
        (
            &*format!("?session_id={}", "x".repeat(256)),
            "session_id is longer than 255 characters",
        ),
    ] {
        let resp = app.get(&format!("/onboarding/status{query}")).await;
        let err = assert_error(resp, 400, "invalid_session_id").await;
        assert_eq!(err["message"], message);
        assert_eq!(err["field"], "session_id");
    }
    // The success page is for a person: the same mistakes get an HTML page saying what is wrong.
    for (query, status, says) in [
        ("", 400, "The link is incomplete (session_id is required)."),
        (
            "?session_id=cs_dev_nosuchsession",
            404,
            "There is no checkout with this session id.",
        ),
    ] {
        let resp = app.get(&format!("/onboarding/success{query}")).await;
        assert_eq!(resp.status(), status);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let page = resp.text().await.unwrap();
        assert!(
            page.contains("We could not find your checkout") && page.contains(says),
            "{page}"
        );
    }
    let (tid, session) = app.checkout("journey@example.com", "pro").await;
    let resp = app.dev_checkout(&session, "pay").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"],
        format!("/onboarding/success?session_id={session}")
    );
    let t = app.wait_for_status(&tid, "active", 20).await;
    assert!(t["activated_at"].is_string());
    for action in ["pay", "cancel"] {
        let resp = app.dev_checkout(&session, action).await;
        assert_error(resp, 409, "checkout_closed").await;
    }

    // The success page renders the progress itself (it works without JavaScript), so its
    // first load after activation is the key's one showing; the status poll then has none.
    let page = app
        .get(&format!("/onboarding/success?session_id={session}"))
        .await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    let key = html
        .split("<pre id=\"keyvalue\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .filter(|k| k.starts_with("onb_"))
        .unwrap_or_else(|| panic!("the page shows the key once: {html}"))
        .to_string();
    let progress: Value = app
        .get(&format!("/onboarding/status?session_id={session}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        progress["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "done"),
        "{progress}"
    );
    let again: Value = app
        .get(&format!("/onboarding/status?session_id={session}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(again["api_key"].is_null(), "the key is shown only once");
    let principal = app
        .store
        .authenticate_api_key(&app.state.signer, &key)
        .await
        .unwrap();
    assert_eq!(principal.tenant_id.as_str(), tid);

    let id = TenantId::parse(&tid).unwrap();
    assert_eq!(
        app.state.vectors.count(&tid).await.unwrap(),
        3,
        "sample documents loaded"
    );
    let keys = app.store.list_api_keys(&id).await.unwrap();
    assert_eq!(
        keys.iter().filter(|k| k.revoked_at.is_none()).count(),
        1,
        "one live key; the temporary one is revoked"
    );
    let emails = wait_for_sent_emails(&app, &tid, 1).await;
    let welcome = &emails[0];
    assert_eq!(welcome.kind, "welcome");
    assert!(welcome.text_body.contains(&app.url("/login/magic?token=")));
    assert!(
        !welcome.text_body.contains(&key) && !welcome.html_body.contains(&key),
        "no key in email"
    );
    assert!(welcome.html_body.contains(&welcome.preheader));
    assert!(
        welcome.message_id.starts_with('<')
            && welcome.message_id.ends_with('>')
            && welcome.message_id.matches('@').count() == 1,
        "a well-formed Message-ID: {}",
        welcome.message_id
    );
    let mailbox = app.get("/dev/mailbox").await.text().await.unwrap();
    assert!(mailbox.contains(&welcome.subject.replace('&', "&amp;")));
    assert_eq!(
        app.status_path(&id).await,
        ["pending_payment", "provisioning", "active"]
    );
    assert_eq!(
        app.store
            .unfinished_jobs(Some(
                <onboard::provisioning::ProvisionJob as onboard::jobs::Task>::KIND
            ))
            .await
            .unwrap(),
        0
    );
}

async fn wait_for_no_unfinished_jobs(app: &TestApp, kind: onboard::jobs::JobKind) {
    eventually(&format!("{} jobs to finish", kind.as_str()), 20, || async {
        let left = app.store.unfinished_jobs(Some(kind)).await.unwrap();
        (left == 0).then_some(())
    })
    .await;
}

async fn wait_for_sent_emails(
    app: &TestApp,
    tid: &str,
    n: usize,
) -> Vec<onboard::email::StoredEmail> {
    eventually(&format!("{n} sent email(s) for {tid}"), 10, || async {
        let emails = app.store.list_emails(Some(tid), 10).await.unwrap();
        (emails.iter().filter(|e| e.status == "sent").count() >= n).then_some(emails)
    })
    .await
}

async fn webhook_refuses_bad_signatures_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = include_str!("../fixtures/contracts/event_checkout.session.completed.json");
    let url = app.url("/webhook/stripe");
    for sig in [None, Some("t=1,v1=00"), Some("garbage")] {
        let mut req = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = sig {
            req = req.header("stripe-signature", s);
        }
        let err = assert_error(req.send().await.unwrap(), 400, "invalid_signature").await;
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .starts_with("Invalid signature")
        );
    }
    // Signed with another secret.
    let header = onboard::billing::signature::sign(
        body.as_bytes(),
        "whsec_other",
        chrono::Utc::now().timestamp(),
    );
    let resp = app
        .client
        .post(&url)
        .header("stripe-signature", header)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("onboard_webhook_invalid_signature_total 4"),
        "{metrics}"
    );
    assert!(metrics.contains("onboard_webhook_received_total 0"));
    // A valid event for a tenant we do not know: 200, recorded, never retried; delivered three
    // times it is stored and counted once.
    let event: Value = serde_json::from_str(body).unwrap();
    for _ in 0..3 {
        assert_eq!(app.deliver_event(&event).await.status(), 200);
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "onboard_webhook_received_total 1",
        "onboard_webhook_duplicate_total 2",
        "onboard_webhook_unknown_tenant_total 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

async fn events_delivered_three_times_concurrently_provision_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tid, session) = app.checkout("dup@example.com", "pro").await;
    let completed = completed_event(&app, &tid, &session).await;
    let t = app
        .store
        .tenant(&TenantId::parse(&tid).unwrap())
        .await
        .unwrap()
        .unwrap();
    let expired = onboard::billing::checkout::dev_expired_event(&t, &session);
    // The customer reaches the success page first: it fulfils from the dev session once paid.
    let deliveries = (0..3).map(|_| app.deliver_event(&completed));
    for resp in futures_util::future::join_all(deliveries).await {
        assert_eq!(resp.status(), 200);
    }
    let _ = app
        .get(&format!("/onboarding/success?session_id={session}"))
        .await;
    for _ in 0..3 {
        assert_eq!(
            app.deliver_event(&expired).await.status(),
            200,
            "expired after completed"
        );
    }
    app.wait_for_status(&tid, "active", 20).await;
    for _ in 0..3 {
        assert_eq!(app.deliver_event(&completed).await.status(), 200);
    }
    wait_for_sent_emails(&app, &tid, 1).await;
    // Let every queued event job finish before counting.
    wait_for_no_unfinished_jobs(
        &app,
        <onboard::billing::events::EventJob as onboard::jobs::Task>::KIND,
    )
    .await;
    let id = TenantId::parse(&tid).unwrap();
    let t = app.store.tenant(&id).await.unwrap().unwrap();
    assert_eq!(
        t.status.as_str(),
        "active",
        "an expired event never moves a paid tenant back"
    );
    let keys = app.store.list_api_keys(&id).await.unwrap();
    assert_eq!(
        keys.iter().filter(|k| k.name == "Default key").count(),
        1,
        "one key"
    );
    assert_eq!(
        app.store.list_emails(Some(&tid), 10).await.unwrap().len(),
        1,
        "one welcome email"
    );
    assert_eq!(
        app.status_path(&id).await,
        ["pending_payment", "provisioning", "active"]
    );
}

/// A tenant that paid while the vector store was down, after its `retries` attempts: the app
/// (vector store still down), the tenant id and its checkout session.
async fn tenant_failed_by_a_vector_outage(
    backend: Backend,
    retries: &str,
) -> (TestApp, String, String) {
    let app = spawn_app_with(
        backend,
        &[
            ("JOB_BACKOFF_BASE_MS", "20"),
            ("MAX_PROVISIONING_RETRIES", retries),
        ],
    )
    .await;
    let (tid, session) = app.checkout("flaky@example.com", "pro").await;
    app.state.vectors.simulate_outage(true);
    assert_eq!(
        app.deliver_event(&completed_event(&app, &tid, &session).await)
            .await
            .status(),
        200
    );
    app.wait_for_status(&tid, "failed", 20).await;
    (app, tid, session)
}

async fn a_failing_vector_store_fails_the_tenant_after_retries_and_retry_recovers(
    backend: Backend,
) {
    let (app, tid, session) = tenant_failed_by_a_vector_outage(backend, "3").await;
    let reason = app
        .store
        .tenant(&TenantId::parse(&tid).unwrap())
        .await
        .unwrap()
        .unwrap()
        .status_reason
        .unwrap_or_default();
    assert!(
        reason.contains("after 3 attempts") && reason.contains("namespace"),
        "{reason}"
    );
    let dead = app.store.list_jobs("dead", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    // Retrying a tenant that is not failed is refused.
    app.state.vectors.simulate_outage(false);
    let resp = app
        .client
        .post(app.url(&format!("/tenant/{tid}/retry?session_id={session}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    app.wait_for_status(&tid, "active", 20).await;
    let resp = app
        .client
        .post(app.url(&format!("/tenant/{tid}/retry?session_id={session}")))
        .send()
        .await
        .unwrap();
    assert_error(resp, 409, "invalid_transition").await;
    assert_eq!(app.state.vectors.count(&tid).await.unwrap(), 3);
}

async fn the_sweeper_fails_a_stuck_tenant_without_anyone_reading_it(backend: Backend) {
    let app = spawn_app_with(backend, &[("PROVISIONING_TIMEOUT_SECONDS", "1")]).await;
    let (tid, _) = app.checkout("stuck@example.com", "pro").await;
    let id = TenantId::parse(&tid).unwrap();
    // Provisioning started, but its job was lost (no job enqueued).
    let mut tx = app.store.begin().await.unwrap();
    tx.transition_tenant(
        &id,
        onboard::domain::TenantStatus::Provisioning,
        "paid",
        "test",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let reason = eventually("the sweeper to fail the tenant", 20, || async {
        let t = app.store.tenant(&id).await.unwrap().unwrap();
        (t.status.as_str() == "failed").then_some(t.status_reason)
    })
    .await;
    assert!(reason.unwrap().contains("did not finish within 1 s"));
}

async fn enterprise_signups_go_to_sales_review_and_notify_the_operator(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app
        .post_json("/signup", &json!({"email": "cio@bigcorp.com", "company_name": "BigCorp", "password": "SecurePass123!", "plan": "enterprise"}))
        .await;
    assert_eq!(resp.status(), 201);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["status"], "sales_review");
    assert!(b["checkout_url"].is_null());
    assert!(b["message"].as_str().unwrap().contains("sales"));
    let emails = wait_for_sent_emails(&app, b["tenant_id"].as_str().unwrap(), 1).await;
    assert_eq!(emails[0].kind, "enterprise_request");
    assert_eq!(emails[0].to_email, "operators@onboard.local");
}

async fn operator_provision_endpoint_requires_the_admin_token(backend: Backend) {
    let closed = spawn_app(backend.clone()).await;
    let resp = closed
        .post_json("/provision", &json!({"tenant_id": "tenant_01ABC"}))
        .await;
    assert_error(resp, 403, "operator_disabled").await;
    let app = spawn_app_with(backend, &[("ADMIN_TOKEN", "operator-token-123456")]).await;
    let (tid, _) = app.checkout("op@example.com", "pro").await;
    let resp = app
        .post_json("/provision", &json!({"tenant_id": tid}))
        .await;
    assert_error(resp, 401, "unauthorized").await;
    // Authentication comes before the body is even read.
    let resp = app.post_json("/provision", &json!({"tenant_id": 5})).await;
    assert_error(resp, 401, "unauthorized").await;
    let resp = app
        .client
        .post(app.url("/provision"))
        .bearer_auth("operator-token-123456")
        .json(&json!({"tenant_id": tid}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 409, "invalid_transition").await;
    // Something that is not a tenant id is named as such, not looked up.
    let resp = app
        .client
        .post(app.url("/provision"))
        .bearer_auth("operator-token-123456")
        .json(&json!({"tenant_id": "acme"}))
        .send()
        .await
        .unwrap();
    let err = assert_error(resp, 400, "invalid_tenant_id").await;
    assert_eq!(err["field"], "tenant_id");
}

async fn signup_with_stripe_sends_the_exact_checkout_request(backend: Backend) {
    let stripe = MockServer::start().await;
    let app = spawn_app_with(
        backend,
        &[
            ("STRIPE_SECRET_KEY", "sk_test_123"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_test_fake_stripe_secret"),
            ("STRIPE_API_BASE", &stripe.uri()),
            ("STRIPE_PRICE_ID_PRO", "price_TestPro"),
        ],
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .and(header("authorization", "Bearer sk_test_123"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "cs_test_captured123", "object": "checkout.session",
            "url": "https://checkout.stripe.com/c/pay/cs_test_captured123#fid"
        })))
        .expect(1)
        .mount(&stripe)
        .await;
    let b = app.signup("alice+test@example.com", "pro").await;
    assert_eq!(
        b["checkout_url"],
        "https://checkout.stripe.com/c/pay/cs_test_captured123#fid"
    );
    let reqs = stripe.received_requests().await.unwrap();
    let body = String::from_utf8(reqs[0].body.clone()).unwrap();
    let tid = b["tenant_id"].as_str().unwrap();
    let success =
        onboard::billing::stripe::checkout_form_body(&onboard::billing::stripe::CheckoutRequest {
            tenant_id: tid.into(),
            plan: "pro".into(),
            price_id: "price_TestPro".into(),
            customer_email: "alice+test@example.com".into(),
            success_url: app.url("/onboarding/success?session_id={CHECKOUT_SESSION_ID}"),
            cancel_url: app.url("/onboarding/cancel"),
            trial_days: 0,
        });
    assert_eq!(body, success);
    assert!(body.contains("customer_email=alice%2Btest%40example.com"));
    assert!(body.contains(&format!("subscription_data[metadata][tenant_id]={tid}")));
    assert_eq!(
        reqs[0].headers["idempotency-key"],
        format!("onboard-{tid}-checkout-v1").as_str()
    );
    let t = app
        .store
        .tenant(&TenantId::parse(tid).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        t.stripe_checkout_session_id.as_deref(),
        Some("cs_test_captured123")
    );

    // The customer pays on Stripe and lands on the success page before the webhook: the page
    // asks Stripe for the session (shaped as in the contract's event) and fulfils it.
    let contract: Value = serde_json::from_str(include_str!(
        "../fixtures/contracts/event_checkout.session.completed.json"
    ))
    .unwrap();
    let mut session = contract["data"]["object"].clone();
    session["id"] = json!("cs_test_captured123");
    session["client_reference_id"] = json!(tid);
    session["metadata"] = json!({"tenant_id": tid});
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions/cs_test_captured123"))
        .and(header("authorization", "Bearer sk_test_123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(session.clone()))
        .mount(&stripe)
        .await;
    let page = app
        .get("/onboarding/success?session_id=cs_test_captured123")
        .await;
    assert_eq!(page.status(), 200);
    app.wait_for_status(tid, "active", 20).await;
    let id = TenantId::parse(tid).unwrap();
    let t = app.store.tenant(&id).await.unwrap().unwrap();
    assert_eq!(
        t.stripe_customer_id,
        session["customer"].as_str().map(String::from)
    );
    assert_eq!(
        t.stripe_subscription_id,
        session["subscription"].as_str().map(String::from)
    );
    // Stripe's webhook arrives afterwards: acknowledged, nothing happens twice.
    let mut event = contract.clone();
    event["id"] = json!("evt_after_success_page");
    event["data"]["object"] = session;
    assert_eq!(app.deliver_event(&event).await.status(), 200);
    assert_eq!(
        wait_for_sent_emails(&app, tid, 1).await.len(),
        1,
        "one email"
    );
    assert_eq!(
        app.status_path(&id).await,
        ["pending_payment", "provisioning", "active"]
    );
}

async fn stripe_errors_answer_502_and_store_nothing(backend: Backend) {
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": {"message": "No such price", "type": "invalid_request_error"}}),
        ))
        .mount(&stripe)
        .await;
    let app = spawn_app_with(
        backend,
        &[
            ("STRIPE_SECRET_KEY", "sk_test_123"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_test_fake_stripe_secret"),
            ("STRIPE_API_BASE", &stripe.uri()),
            ("STRIPE_PRICE_ID_PRO", "price_bad"),
        ],
    )
    .await;
    let resp = app
        .post_json("/signup", &json!({"email": "s@example.com", "company_name": "S", "password": "SecurePass123!", "plan": "pro"}))
        .await;
    assert_error(resp, 502, "payment_provider_error").await;
    assert!(
        app.store.list_tenants(None, 10).await.unwrap().is_empty(),
        "nothing half-written"
    );
}

async fn a_failing_email_transport_dead_letters_the_email_and_a_retry_sends_it_once(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &[("JOB_BACKOFF_BASE_MS", "5")]).await;
    let (tid, session) = app.checkout("mailfail@example.com", "pro").await;
    app.state.mailer.simulate_outage(true);
    assert_eq!(
        app.deliver_event(&completed_event(&app, &tid, &session).await)
            .await
            .status(),
        200
    );
    // Email delivery is its own job: the workspace is ready even while email is down.
    app.wait_for_status(&tid, "active", 20).await;
    let dead = eventually("the email job to be dead-lettered", 30, || async {
        let dead = app.store.list_jobs("dead", 10).await.unwrap();
        dead.into_iter().find(|j| j.kind == "send_email")
    })
    .await;
    assert_eq!(dead.attempts, dead.max_attempts);
    assert!(
        dead.last_error.as_deref().unwrap_or("").contains("outage"),
        "{dead:?}"
    );
    let emails = app.store.list_emails(Some(&tid), 10).await.unwrap();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].status, "queued");
    assert_eq!(
        emails[0].attempts, dead.attempts,
        "each attempt is recorded on the email"
    );
    assert!(emails[0].last_error.is_some());

    app.state.mailer.simulate_outage(false);
    app.store.retry_job(&dead.id).await.unwrap();
    app.state.jobs_ready.notify_waiters();
    let emails = wait_for_sent_emails(&app, &tid, 1).await;
    assert_eq!(emails.len(), 1, "sent once, never duplicated");
    assert_eq!(emails[0].transport.as_deref(), Some("outbox"));
}

/// Runs `onboard <args>` against the test's database; (success, stdout, stderr).
pub fn operator(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    operator_with_env(app, args, &[])
}

/// [`operator`] with more settings in its environment (e.g. `STRIPE_*` for a fake Stripe).
pub fn operator_with_env(
    app: &TestApp,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onboard"))
        .args(args)
        .current_dir(dir.path())
        .env("DATABASE_URL", &app.db.url)
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn operator_commands_show_stats_list_tenants_and_retry(backend: Backend) {
    let (app, tid, _) = tenant_failed_by_a_vector_outage(backend, "2").await;
    let dead = app.store.list_jobs("dead", 10).await.unwrap();
    assert_eq!(dead.len(), 1);

    let (ok, stats, err) = operator(&app, &["jobs", "stats"]);
    assert!(ok, "{err}");
    let row = stats
        .lines()
        .find(|l| l.starts_with("provision_tenant"))
        .unwrap_or_else(|| panic!("no provision_tenant row in:\n{stats}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[4], "1", "one dead provisioning job: {row}");
    let dead_line = format!("dead {} provision_tenant after 2 attempts", dead[0].id);
    assert!(stats.contains(&dead_line), "{dead_line} in:\n{stats}");
    assert!(
        stats.contains("vector store"),
        "the last error is shown:\n{stats}"
    );

    let (ok, list, err) = operator(&app, &["tenants", "list", "--status", "failed"]);
    assert!(ok, "{err}");
    assert!(
        list.contains(&tid) && list.contains("1 tenant(s)"),
        "{list}"
    );
    // Columns line up under the header.
    let row = format!("{tid:<34} {:<16} {:<11} ", "failed", "pro");
    assert!(
        list.lines().any(|l| l.starts_with(&row)),
        "{row:?} in:\n{list}"
    );
    let (ok, list, _) = operator(&app, &["tenants", "list", "--status", "active"]);
    assert!(ok && list.contains("0 tenant(s)"), "{list}");
    let (ok, _, err) = operator(&app, &["tenants", "list", "--status", "sleepy"]);
    assert!(!ok && err.contains("sleepy"), "{err}");

    // Fixed: the operator retries the tenant and the running server's worker provisions it.
    app.state.vectors.simulate_outage(false);
    let (ok, out, err) = operator(&app, &["tenants", "retry", &tid]);
    assert!(ok && out.contains("provisioning again"), "{out}{err}");
    app.wait_for_status(&tid, "active", 20).await;
    // An active tenant is not retried; an unknown job is named.
    let (ok, _, err) = operator(&app, &["tenants", "retry", &tid]);
    assert!(!ok && err.contains("active"), "{err}");
    // Forcing a tenant that is (still) provisioning is recorded in its history.
    let (stuck, _) = app.checkout("forced@example.com", "starter").await;
    let stuck_id = TenantId::parse(&stuck).unwrap();
    let mut tx = app.store.begin().await.unwrap();
    tx.transition_tenant(
        &stuck_id,
        onboard::domain::TenantStatus::Provisioning,
        "paid",
        "test",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (ok, out, err) = operator(&app, &["tenants", "retry", "--force", &stuck]);
    assert!(ok, "{out}{err}");
    let history = app.store.status_history(&stuck_id).await.unwrap();
    let forced = history
        .iter()
        .find(|h| h.from_status.as_deref() == Some("provisioning") && h.to_status == "provisioning")
        .expect("the forced restart is in the history");
    assert_eq!(forced.actor, "operator");
    assert!(forced.reason.contains("forced"), "{}", forced.reason);
    let (ok, _, err) = operator(&app, &["jobs", "retry", "job_nosuchjob"]);
    assert!(!ok && err.contains("job"), "{err}");

    // The dead job can be put back too; it finds the tenant active and changes nothing.
    let (ok, out, err) = operator(&app, &["jobs", "retry", &dead[0].id]);
    assert!(ok && out.contains("queued again"), "{out}{err}");
    wait_for_no_unfinished_jobs(
        &app,
        <onboard::provisioning::ProvisionJob as onboard::jobs::Task>::KIND,
    )
    .await;
    assert!(
        app.store.list_jobs("dead", 10).await.unwrap().is_empty(),
        "the retried job finished instead of dying again"
    );
    let id = TenantId::parse(&tid).unwrap();
    assert_eq!(
        app.status_path(&id).await,
        [
            "pending_payment",
            "provisioning",
            "failed",
            "provisioning",
            "active"
        ]
    );
    assert_eq!(
        app.store
            .list_api_keys(&id)
            .await
            .unwrap()
            .iter()
            .filter(|k| k.name == "Default key")
            .count(),
        1
    );
}

/// A fake Stripe whose checkout sessions are created with ids `cs_test_race_{n}` and, once
/// paid, retrieved as complete and paid for the tenant recorded at creation.
async fn racing_stripe() -> MockServer {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let stripe = MockServer::start().await;
    let sessions: Arc<Mutex<std::collections::HashMap<String, String>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let created = sessions.clone();
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(move |req: &wiremock::Request| {
            let n = next.fetch_add(1, Ordering::SeqCst);
            let id = format!("cs_test_race_{n}");
            let tenant = url::form_urlencoded::parse(&req.body)
                .find(|(k, _)| k == "client_reference_id")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            created.lock().unwrap().insert(id.clone(), tenant);
            ResponseTemplate::new(200).set_body_json(json!({
                "id": id, "object": "checkout.session",
                "url": format!("https://checkout.stripe.com/c/pay/{id}")
            }))
        })
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .respond_with(move |req: &wiremock::Request| {
            let id = req
                .url
                .path()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let tenant = sessions
                .lock()
                .unwrap()
                .get(&id)
                .cloned()
                .unwrap_or_default();
            ResponseTemplate::new(200).set_body_json(race_session(&id, &tenant))
        })
        .mount(&stripe)
        .await;
    stripe
}

fn race_session(id: &str, tenant: &str) -> Value {
    json!({
        "id": id, "object": "checkout.session", "status": "complete", "payment_status": "paid",
        "client_reference_id": tenant, "metadata": {"tenant_id": tenant},
        "customer": format!("cus_{id}"), "subscription": format!("sub_{id}")
    })
}

async fn the_success_page_racing_the_webhook_provisions_once(backend: Backend) {
    let stripe = racing_stripe().await;
    let app = spawn_app_with(
        backend,
        &[
            ("STRIPE_SECRET_KEY", "sk_test_race"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_test_race_secret"),
            ("STRIPE_API_BASE", &stripe.uri()),
            ("STRIPE_PRICE_ID_STARTER", "price_race"),
        ],
    )
    .await;
    let mut tenants = Vec::new();
    for i in 0..6 {
        let b = app
            .signup(&format!("race-{i}@example.com"), "starter")
            .await;
        let tid = b["tenant_id"].as_str().unwrap().to_string();
        let session = b["checkout_url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        tenants.push((tid, session));
    }
    // The customer lands on the success page (and its poll starts) while Stripe's webhook
    // arrives, all at once.
    let races = tenants.iter().map(|(tid, session)| {
        let app = &app;
        async move {
            let event = json!({
                "id": format!("evt_race_{session}"), "object": "event",
                "type": "checkout.session.completed", "created": chrono::Utc::now().timestamp(),
                "data": {"object": race_session(session, tid)}
            });
            let success = format!("/onboarding/success?session_id={session}");
            let status = format!("/onboarding/status?session_id={session}");
            let (page, hook, poll) = tokio::join!(
                app.get(&success),
                app.deliver_event(&event),
                app.get(&status),
            );
            assert_eq!(page.status(), 200);
            assert_eq!(hook.status(), 200);
            assert_eq!(poll.status(), 200);
        }
    });
    futures_util::future::join_all(races).await;
    for (tid, _) in &tenants {
        app.wait_for_status(tid, "active", 30).await;
        let id = TenantId::parse(tid).unwrap();
        assert_eq!(
            app.status_path(&id).await,
            ["pending_payment", "provisioning", "active"],
            "{tid}"
        );
        let keys = app.store.list_api_keys(&id).await.unwrap();
        assert_eq!(keys.iter().filter(|k| k.name == "Default key").count(), 1);
        assert_eq!(
            wait_for_sent_emails(&app, tid, 1).await.len(),
            1,
            "{tid}: one email"
        );
    }
}

async fn the_sweeper_racing_a_slow_provisioning_job_fails_the_tenant_cleanly(backend: Backend) {
    // Each Pinecone answer takes four seconds: the job (two calls) outlives the one-second
    // timeout and the sweeper's next round (every 5 s), which fails the tenant under it.
    let pinecone = crate::fakes::FakePinecone::start("pcsk_test_sweeper_000000000", 384).await;
    pinecone.set_delay(std::time::Duration::from_secs(4));
    let host = pinecone.uri();
    let app = spawn_app_with(
        backend,
        &[
            ("PINECONE_API_KEY", "pcsk_test_sweeper_000000000"),
            ("PINECONE_INDEX_HOST", host.as_str()),
            ("PROVISIONING_TIMEOUT_SECONDS", "1"),
        ],
    )
    .await;
    let (tid, session) = app.checkout("swept@example.com", "starter").await;
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    app.wait_for_status(&tid, "failed", 30).await;
    let id = TenantId::parse(&tid).unwrap();
    // The job finishes after the sweep: it must not bring the tenant back, issue a key or send
    // an email behind the failure.
    eventually("the slow job to finish", 60, || async {
        (app.store
            .unfinished_jobs(Some(
                <onboard::provisioning::ProvisionJob as onboard::jobs::Task>::KIND,
            ))
            .await
            .unwrap()
            == 0)
            .then_some(())
    })
    .await;
    let t = app.store.tenant(&id).await.unwrap().unwrap();
    assert_eq!(t.status.as_str(), "failed");
    assert!(
        t.status_reason
            .unwrap()
            .contains("did not finish within 1 s")
    );
    assert!(
        app.store
            .list_api_keys(&id)
            .await
            .unwrap()
            .iter()
            .all(|k| k.name != "Default key"),
        "no key behind the failure"
    );
    // No welcome behind the failure; the customer is told it failed, with the retry link.
    let kinds: Vec<String> = app
        .store
        .list_emails(Some(&tid), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["provisioning_failed"]);
    // The customer retries with a responsive Pinecone: everything happens once.
    pinecone.set_delay(std::time::Duration::ZERO);
    let resp = app
        .client
        .post(app.url(&format!("/tenant/{tid}/retry?session_id={session}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    app.wait_for_status(&tid, "active", 30).await;
    assert_eq!(
        app.status_path(&id).await,
        [
            "pending_payment",
            "provisioning",
            "failed",
            "provisioning",
            "active"
        ]
    );
    let keys = app.store.list_api_keys(&id).await.unwrap();
    assert_eq!(keys.iter().filter(|k| k.name == "Default key").count(), 1);
    let emails = wait_for_sent_emails(&app, &tid, 2).await;
    let mut kinds: Vec<&str> = emails.iter().map(|e| e.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["provisioning_failed", "welcome"],
        "one welcome, after the failure notice"
    );
}
