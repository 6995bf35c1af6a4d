//! The Stripe side of the account actions, against a local Stripe fake (wiremock on 127.0.0.1):
//! the billing portal, closing an account, approving an enterprise signup (HTTP and CLI),
//! `TRIAL_DAYS` on the checkout, and resuming an open checkout from the reminder link.

use onboard::billing::stripe::STRIPE_API_VERSION;
use onboard::domain::TenantId;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{
    ActiveTenant, Backend, TEST_PASSWORD, TestApp, assert_error, eventually, spawn_app_with,
};
use crate::pipeline::operator_with_env;
use crate::store_tests;

store_tests!(
    stripe_billing_portal_redirects_to_the_customers_portal_session,
    stripe_closing_the_account_cancels_the_subscription_once,
    stripe_approving_an_enterprise_signup_invoices_it_and_provisions,
    stripe_cli_approve_invoices_a_second_enterprise_tenant,
    approving_without_stripe_provisions_with_no_invoice,
    stripe_trial_days_are_added_to_the_checkout_request,
    stripe_checkout_reminder_resumes_the_open_checkout,
);

const SECRET_KEY: &str = "sk_test_account_actions";
const WEBHOOK_SECRET: &str = "whsec_test_account_actions";
const ADMIN_TOKEN: &str = "operator-token-stripe-123456";
const ENTERPRISE_PRICE: &str = "price_ent";

/// A Stripe fake whose Checkout Sessions are created as `cs_test_{tenant}`, open, with a hosted
/// page URL. Other endpoints are mounted by each test.
async fn fake_stripe() -> MockServer {
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(|req: &Request| {
            let tenant = form_field(&req.body, "client_reference_id").unwrap_or_default();
            let id = format!("cs_test_{tenant}");
            ResponseTemplate::new(200).set_body_json(json!({
                "id": id, "object": "checkout.session", "status": "open",
                "url": format!("https://checkout.stripe.com/c/pay/{id}")
            }))
        })
        .mount(&stripe)
        .await;
    stripe
}

/// The Stripe settings of a server talking to `stripe`, plus `extra`.
fn stripe_settings<'a>(
    stripe: &'a MockServer,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, String)> {
    let mut s: Vec<(&str, String)> = vec![
        ("STRIPE_SECRET_KEY", SECRET_KEY.into()),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("STRIPE_API_BASE", stripe.uri()),
        ("STRIPE_PRICE_ID_STARTER", "price_starter".into()),
        ("STRIPE_PRICE_ID_PRO", "price_pro".into()),
    ];
    s.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    s
}

async fn spawn_with_stripe(
    backend: Backend,
    stripe: &MockServer,
    extra: &[(&str, &str)],
) -> TestApp {
    let settings = stripe_settings(stripe, extra);
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(backend, &pairs).await
}

fn form_field(body: &[u8], key: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The requests the fake received with `verb` on `route`, oldest first.
async fn requests_to(stripe: &MockServer, verb: &str, route: &str) -> Vec<Request> {
    stripe
        .received_requests()
        .await
        .expect("request recording is on")
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == route)
        .collect()
}

/// Every request to Stripe carries the secret key and the pinned API version; form POSTs say so.
fn assert_stripe_headers(req: &Request) {
    assert_eq!(
        req.headers["authorization"],
        format!("Bearer {SECRET_KEY}").as_str()
    );
    assert_eq!(req.headers["stripe-version"], STRIPE_API_VERSION);
    if req.method.as_str() == "POST" {
        assert_eq!(
            req.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
    }
}

fn body_of(req: &Request) -> String {
    String::from_utf8(req.body.clone()).expect("a UTF-8 body")
}

/// A Stripe-paying tenant made active by a signed `checkout.session.completed`.
struct Paid {
    tenant: ActiveTenant,
    customer: String,
    subscription: String,
}

impl Paid {
    fn id(&self) -> TenantId {
        TenantId::parse(&self.tenant.tenant_id).unwrap()
    }
}

fn completed_event(session: &str, tid: &str, customer: &str, subscription: &str) -> Value {
    json!({
        "id": format!("evt_completed_{session}"), "object": "event",
        "api_version": STRIPE_API_VERSION, "livemode": false,
        "type": "checkout.session.completed", "created": chrono::Utc::now().timestamp(),
        "data": {"object": {
            "id": session, "object": "checkout.session", "status": "complete",
            "payment_status": "paid", "client_reference_id": tid,
            "metadata": {"tenant_id": tid, "plan": "starter"},
            "customer": customer, "subscription": subscription
        }}
    })
}

/// Signs `name` up on the starter plan (a Checkout Session at the fake), pays by a signed
/// webhook naming its customer and subscription, and waits until it is active.
async fn paid_tenant(app: &TestApp, name: &str) -> Paid {
    let email = format!("{name}-{}@example.com", ulid::Ulid::new());
    let b = app.signup(&email, "starter").await;
    let tid = b["tenant_id"].as_str().unwrap().to_string();
    let session = format!("cs_test_{tid}");
    assert_eq!(
        b["checkout_url"],
        format!("https://checkout.stripe.com/c/pay/{session}")
    );
    let customer = format!("cus_{}", &tid["tenant_".len()..]);
    let subscription = format!("sub_{}", &tid["tenant_".len()..]);
    let event = completed_event(&session, &tid, &customer, &subscription);
    assert_eq!(app.deliver_event(&event).await.status(), 200);
    app.wait_for_status(&tid, "active", 30).await;
    let progress: Value = app
        .get(&format!("/onboarding/status?session_id={session}"))
        .await
        .json()
        .await
        .unwrap();
    let api_key = progress["api_key"]
        .as_str()
        .expect("the first key is revealed once")
        .to_string();
    let t = app
        .store
        .tenant(&TenantId::parse(&tid).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.stripe_customer_id.as_deref(), Some(customer.as_str()));
    assert_eq!(
        t.stripe_subscription_id.as_deref(),
        Some(subscription.as_str())
    );
    Paid {
        tenant: ActiveTenant {
            tenant_id: tid,
            email,
            password: TEST_PASSWORD.to_string(),
            api_key,
        },
        customer,
        subscription,
    }
}

async fn post_with_cookie(app: &TestApp, route: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = app.client.post(app.url(route));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.unwrap()
}

async fn delete_account(app: &TestApp, cookie: Option<&str>) -> reqwest::Response {
    let mut req = app.client.delete(app.url("/account"));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.unwrap()
}

async fn wait_for_no_unfinished_jobs(app: &TestApp, kind: onboard::jobs::JobKind) {
    eventually(&format!("{} jobs to finish", kind.as_str()), 20, || async {
        let left = app.store.unfinished_jobs(Some(kind)).await.unwrap();
        (left == 0).then_some(())
    })
    .await;
}

async fn stripe_billing_portal_redirects_to_the_customers_portal_session(backend: Backend) {
    let stripe = fake_stripe().await;
    let app = spawn_with_stripe(backend, &stripe, &[]).await;
    // The client must see the redirect, not follow it to Stripe.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let paid = paid_tenant(&app, "portal").await;
    let portal_url = format!(
        "https://billing.stripe.com/p/session/test_{}",
        paid.customer
    );
    Mock::given(method("POST"))
        .and(path("/v1/billing_portal/sessions"))
        .and(body_string_contains(format!("customer={}&", paid.customer)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "bps_test_portal", "object": "billing_portal.session",
            "customer": paid.customer, "url": portal_url
        })))
        .expect(1)
        .mount(&stripe)
        .await;

    // Not signed in: nothing is asked of Stripe.
    let resp = client
        .post(app.url("/account/billing-portal"))
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "unauthorized").await;
    assert!(
        requests_to(&stripe, "POST", "/v1/billing_portal/sessions")
            .await
            .is_empty()
    );

    let cookie = crate::login::signed_in(&app, &paid.tenant).await;
    let resp = client
        .post(app.url("/account/billing-portal"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], portal_url.as_str());
    let reqs = requests_to(&stripe, "POST", "/v1/billing_portal/sessions").await;
    assert_eq!(reqs.len(), 1);
    assert_stripe_headers(&reqs[0]);
    assert_eq!(
        body_of(&reqs[0]),
        format!(
            "customer={}&return_url=http%3A%2F%2F127.0.0.1%3A{}%2Faccount",
            paid.customer,
            app.addr.port()
        )
    );
    assert_eq!(
        form_field(&reqs[0].body, "return_url").as_deref(),
        Some(app.url("/account").as_str())
    );

    // Stripe failing (after the client's retries) is a 502 naming the payment provider.
    let other = paid_tenant(&app, "portal-outage").await;
    Mock::given(method("POST"))
        .and(path("/v1/billing_portal/sessions"))
        .and(body_string_contains(format!(
            "customer={}&",
            other.customer
        )))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"error": {"message": "An unknown error occurred", "type": "api_error"}}),
        ))
        .expect(3)
        .mount(&stripe)
        .await;
    let cookie = crate::login::signed_in(&app, &other.tenant).await;
    let resp = post_with_cookie(&app, "/account/billing-portal", Some(&cookie)).await;
    assert_error(resp, 502, "payment_provider_error").await;
    stripe.verify().await;
}

async fn stripe_closing_the_account_cancels_the_subscription_once(backend: Backend) {
    let stripe = fake_stripe().await;
    let app = spawn_with_stripe(backend, &stripe, &[("DEPROVISION_GRACE_DAYS", "7")]).await;
    let paid = paid_tenant(&app, "closing").await;
    let id = paid.id();
    let tid = paid.tenant.tenant_id.clone();
    let sub_path = format!("/v1/subscriptions/{}", paid.subscription);
    Mock::given(method("DELETE"))
        .and(path(sub_path.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": paid.subscription, "object": "subscription", "customer": paid.customer,
            "status": "canceled", "canceled_at": chrono::Utc::now().timestamp(),
            "metadata": {"tenant_id": tid}
        })))
        .expect(1)
        .mount(&stripe)
        .await;

    assert_error(delete_account(&app, None).await, 401, "unauthorized").await;
    let cookie = crate::login::signed_in(&app, &paid.tenant).await;
    let before = chrono::Utc::now();
    let resp = delete_account(&app, Some(&cookie)).await;
    let after = chrono::Utc::now();
    assert_eq!(resp.status(), 200);
    let closed: Value = resp.json().await.unwrap();
    assert_eq!(closed["tenant_id"], tid.as_str());
    assert_eq!(closed["status"], "canceled");
    let erase = chrono::DateTime::parse_from_rfc3339(closed["data_erased_after"].as_str().unwrap())
        .expect("data_erased_after is RFC 3339")
        .with_timezone(&chrono::Utc);
    let grace = chrono::Duration::days(7);
    assert!(
        erase >= before + grace - chrono::Duration::seconds(1)
            && erase <= after + grace + chrono::Duration::seconds(1),
        "{erase} is not 7 days after the request ({before} .. {after})"
    );

    let reqs = requests_to(&stripe, "DELETE", &sub_path).await;
    assert_eq!(reqs.len(), 1);
    assert_stripe_headers(&reqs[0]);
    let t = app.store.tenant(&id).await.unwrap().unwrap();
    assert_eq!(t.status.as_str(), "canceled");
    let billing = app.store.billing(&id).await.unwrap().unwrap();
    assert_eq!(billing.subscription_status.as_deref(), Some("canceled"));
    let canceled_at = billing.canceled_at.expect("canceled_at is recorded");
    assert_eq!(
        erase.timestamp_millis(),
        canceled_at + 7 * 86_400_000,
        "the erasure date is counted from the cancellation"
    );
    let emails = app.store.list_emails(Some(&tid), 20).await.unwrap();
    let canceled: Vec<_> = emails
        .iter()
        .filter(|e| e.kind == "subscription_canceled")
        .collect();
    assert_eq!(canceled.len(), 1, "{emails:?}");
    let erase_day = onboard::billing::notify::human_date(erase.timestamp_millis());
    assert!(
        canceled[0].text_body.contains(&erase_day),
        "the email names the erasure date {erase_day}:\n{}",
        canceled[0].text_body
    );
    let path_after_cancel = app.status_path(&id).await;
    assert_eq!(
        path_after_cancel,
        ["pending_payment", "provisioning", "active", "canceled"]
    );

    // Stripe then says the subscription was deleted: acknowledged, nothing changes.
    let deleted = onboard::billing::account::dev_subscription_deleted_event(&t);
    assert_eq!(deleted["data"]["object"]["id"], paid.subscription.as_str());
    assert_eq!(app.deliver_event(&deleted).await.status(), 200);
    wait_for_no_unfinished_jobs(
        &app,
        <onboard::billing::events::EventJob as onboard::jobs::Task>::KIND,
    )
    .await;
    assert_eq!(app.status_path(&id).await, path_after_cancel);
    let events = onboard::billing::events::list(&app.store, Some(&id), 10)
        .await
        .unwrap();
    let seen = events
        .iter()
        .find(|e| e.kind == "customer.subscription.deleted")
        .expect("the event is stored");
    assert!(seen.processed_at.is_some());
    assert!(
        !seen.outcome.as_deref().unwrap_or("").contains("->"),
        "the event moved the tenant: {:?}",
        seen.outcome
    );
    assert_eq!(
        app.store
            .list_emails(Some(&tid), 20)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == "subscription_canceled")
            .count(),
        1,
        "one cancellation email"
    );

    // Closing it again answers the same and asks nothing more of Stripe.
    let resp = delete_account(&app, Some(&cookie)).await;
    assert_eq!(resp.status(), 200);
    let again: Value = resp.json().await.unwrap();
    assert_eq!(again["status"], "canceled");
    assert_eq!(again["data_erased_after"], closed["data_erased_after"]);
    assert_eq!(requests_to(&stripe, "DELETE", &sub_path).await.len(), 1);
    assert_eq!(app.status_path(&id).await, path_after_cancel);

    // Stripe failing: 502, and the account stays as it was.
    let other = paid_tenant(&app, "closing-outage").await;
    let other_path = format!("/v1/subscriptions/{}", other.subscription);
    Mock::given(method("DELETE"))
        .and(path(other_path.as_str()))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"error": {"message": "An unknown error occurred", "type": "api_error"}}),
        ))
        .expect(3)
        .mount(&stripe)
        .await;
    let cookie = crate::login::signed_in(&app, &other.tenant).await;
    assert_error(
        delete_account(&app, Some(&cookie)).await,
        502,
        "payment_provider_error",
    )
    .await;
    let other_id = other.id();
    let t = app.store.tenant(&other_id).await.unwrap().unwrap();
    assert_eq!(t.status.as_str(), "active");
    assert_eq!(
        app.status_path(&other_id).await,
        ["pending_payment", "provisioning", "active"]
    );
    let billing = app.store.billing(&other_id).await.unwrap().unwrap();
    assert!(billing.canceled_at.is_none());
    assert_ne!(billing.subscription_status.as_deref(), Some("canceled"));
    assert!(
        app.store
            .list_emails(Some(&other.tenant.tenant_id), 20)
            .await
            .unwrap()
            .iter()
            .all(|e| e.kind != "subscription_canceled")
    );
    stripe.verify().await;
}

/// Mounts Stripe's invoicing endpoints: customers `cus_{tenant}`, subscriptions `sub_{tenant}`
/// whose latest invoice `in_{tenant}` is a draft, finalize (which gives it a hosted URL) and
/// send. Ids are derived from `metadata[tenant_id]`, so several tenants can be invoiced.
async fn mount_invoicing(stripe: &MockServer) {
    fn suffix(req: &Request) -> String {
        form_field(&req.body, "metadata[tenant_id]")
            .unwrap_or_default()
            .trim_start_matches("tenant_")
            .to_string()
    }
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(|req: &Request| {
            ResponseTemplate::new(200).set_body_json(json!({
                "id": format!("cus_{}", suffix(req)), "object": "customer"
            }))
        })
        .mount(stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/subscriptions"))
        .respond_with(|req: &Request| {
            let s = suffix(req);
            ResponseTemplate::new(200).set_body_json(json!({
                "id": format!("sub_{s}"), "object": "subscription", "status": "active",
                "collection_method": "send_invoice",
                "latest_invoice": {"id": format!("in_{s}"), "object": "invoice",
                    "status": "draft", "hosted_invoice_url": null}
            }))
        })
        .mount(stripe)
        .await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(
            r"^/v1/invoices/in_[A-Za-z0-9]+/(finalize|send)$",
        ))
        .respond_with(|req: &Request| {
            let invoice = req.url.path().split('/').nth(3).unwrap_or_default();
            ResponseTemplate::new(200).set_body_json(json!({
                "id": invoice, "object": "invoice", "status": "open",
                "hosted_invoice_url": hosted_invoice_url(invoice)
            }))
        })
        .mount(stripe)
        .await;
}

fn hosted_invoice_url(invoice: &str) -> String {
    format!("https://invoice.stripe.com/i/acct_test/{invoice}")
}

/// An enterprise signup, waiting in `sales_review`; its tenant id.
async fn enterprise_signup(app: &TestApp, email: &str, company: &str) -> String {
    let resp = app
        .post_json(
            "/signup",
            &json!({"email": email, "company_name": company, "password": TEST_PASSWORD, "plan": "enterprise"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["status"], "sales_review");
    assert!(b["checkout_url"].is_null());
    b["tenant_id"].as_str().unwrap().to_string()
}

async fn approve(app: &TestApp, tid: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/admin/tenants/{tid}/approve")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// The four invoicing requests the fake got for `tid`, in order, each checked exactly.
async fn assert_invoiced(stripe: &MockServer, tid: &str, email_enc: &str, name_enc: &str) {
    let s = tid.trim_start_matches("tenant_");
    let invoice = format!("in_{s}");
    let all: Vec<Request> = stripe
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.url.path() != "/v1/checkout/sessions"
                && (body_of(r).contains(tid) || r.url.path().contains(&invoice))
        })
        .collect();
    let routes: Vec<&str> = all.iter().map(|r| r.url.path()).collect();
    let finalize = format!("/v1/invoices/{invoice}/finalize");
    let send = format!("/v1/invoices/{invoice}/send");
    assert_eq!(
        routes,
        [
            "/v1/customers",
            "/v1/subscriptions",
            finalize.as_str(),
            send.as_str()
        ]
    );
    let want = [
        (
            format!("email={email_enc}&name={name_enc}&metadata[tenant_id]={tid}"),
            format!("onboard-{tid}-customer-v1"),
        ),
        (
            format!(
                "customer=cus_{s}&items[0][price]={ENTERPRISE_PRICE}&collection_method=send_invoice\
                 &days_until_due=30&metadata[tenant_id]={tid}&expand[0]=latest_invoice"
            ),
            format!("onboard-{tid}-subscription-v1"),
        ),
        (String::new(), format!("onboard-{tid}-finalize-v1")),
        (String::new(), format!("onboard-{tid}-send-invoice-v1")),
    ];
    for (req, (body, key)) in all.iter().zip(want) {
        assert_eq!(req.method.as_str(), "POST", "{}", req.url);
        assert_stripe_headers(req);
        assert_eq!(body_of(req), body, "{}", req.url);
        assert_eq!(req.headers["idempotency-key"], key.as_str(), "{}", req.url);
    }
}

async fn stripe_approving_an_enterprise_signup_invoices_it_and_provisions(backend: Backend) {
    let stripe = fake_stripe().await;
    mount_invoicing(&stripe).await;
    let app = spawn_with_stripe(
        backend,
        &stripe,
        &[
            ("STRIPE_PRICE_ID_ENTERPRISE", ENTERPRISE_PRICE),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await;
    let tid = enterprise_signup(&app, "cio+ent@bigcorp.example.com", "Big Corp & Co").await;
    assert!(
        stripe.received_requests().await.unwrap().is_empty(),
        "an enterprise signup has no checkout"
    );

    assert_error(approve(&app, &tid, None).await, 401, "unauthorized").await;
    assert_error(
        approve(&app, &tid, Some("not-the-operator-token")).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(stripe.received_requests().await.unwrap().is_empty());

    let resp = approve(&app, &tid, Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status(), 202);
    let b: Value = resp.json().await.unwrap();
    let s = tid.trim_start_matches("tenant_");
    let invoice_url = hosted_invoice_url(&format!("in_{s}"));
    assert_eq!(b["tenant_id"], tid.as_str());
    assert_eq!(b["status"], "provisioning");
    assert_eq!(b["invoice_url"], invoice_url.as_str());
    assert_invoiced(
        &stripe,
        &tid,
        "cio%2Bent%40bigcorp.example.com",
        "Big%20Corp%20%26%20Co",
    )
    .await;

    app.wait_for_status(&tid, "active", 30).await;
    let id = TenantId::parse(&tid).unwrap();
    let t = app.store.tenant(&id).await.unwrap().unwrap();
    assert_eq!(
        t.stripe_customer_id.as_deref(),
        Some(format!("cus_{s}").as_str())
    );
    assert_eq!(
        t.stripe_subscription_id.as_deref(),
        Some(format!("sub_{s}").as_str())
    );
    assert_eq!(
        app.status_path(&id).await,
        ["sales_review", "provisioning", "active"]
    );

    // Stripe failing (after the client's retries): 502, and the signup still waits for sales.
    let failing = enterprise_signup(&app, "cfo@failing.example.com", "Failing Corp").await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .and(body_string_contains(failing.as_str()))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"error": {"message": "An unknown error occurred", "type": "api_error"}}),
        ))
        .with_priority(1)
        .expect(3)
        .mount(&stripe)
        .await;
    assert_error(
        approve(&app, &failing, Some(ADMIN_TOKEN)).await,
        502,
        "payment_provider_error",
    )
    .await;
    let failing_id = TenantId::parse(&failing).unwrap();
    let t = app.store.tenant(&failing_id).await.unwrap().unwrap();
    assert_eq!(t.status.as_str(), "sales_review");
    assert!(t.stripe_customer_id.is_none() && t.stripe_subscription_id.is_none());
    assert_eq!(app.status_path(&failing_id).await, ["sales_review"]);
    assert!(
        requests_to(&stripe, "POST", "/v1/subscriptions")
            .await
            .iter()
            .all(|r| !body_of(r).contains(&failing)),
        "nothing is subscribed after the customer could not be created"
    );
    stripe.verify().await;

    // Approved once: again is refused, and Stripe is not called again.
    let seen = stripe.received_requests().await.unwrap().len();
    let err = assert_error(
        approve(&app, &tid, Some(ADMIN_TOKEN)).await,
        409,
        "not_possible",
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("sales_review"),
        "{err}"
    );
    let unknown = TenantId::generate();
    assert_error(
        approve(&app, unknown.as_str(), Some(ADMIN_TOKEN)).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        approve(&app, "acme", Some(ADMIN_TOKEN)).await,
        400,
        "invalid_tenant_id",
    )
    .await;
    assert_eq!(stripe.received_requests().await.unwrap().len(), seen);
}

async fn stripe_cli_approve_invoices_a_second_enterprise_tenant(backend: Backend) {
    let stripe = fake_stripe().await;
    mount_invoicing(&stripe).await;
    let app = spawn_with_stripe(
        backend,
        &stripe,
        &[("STRIPE_PRICE_ID_ENTERPRISE", ENTERPRISE_PRICE)],
    )
    .await;
    let first = enterprise_signup(&app, "first@bigcorp.example.com", "BigCorp").await;
    let second = enterprise_signup(&app, "second@othercorp.example.com", "OtherCorp").await;
    let uri = stripe.uri();
    let env = [
        ("STRIPE_SECRET_KEY", SECRET_KEY),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("STRIPE_API_BASE", uri.as_str()),
        ("STRIPE_PRICE_ID_ENTERPRISE", ENTERPRISE_PRICE),
    ];

    let (ok, out, err) = operator_with_env(&app, &["tenants", "approve", &second], &env);
    assert!(ok, "{out}{err}");
    let s = second.trim_start_matches("tenant_");
    let invoice_url = hosted_invoice_url(&format!("in_{s}"));
    assert!(
        out.contains(&format!("tenant {second} approved")) && out.contains(&invoice_url),
        "{out}"
    );
    assert_invoiced(
        &stripe,
        &second,
        "second%40othercorp.example.com",
        "OtherCorp",
    )
    .await;
    // The running server's worker provisions it.
    app.wait_for_status(&second, "active", 30).await;
    let id = TenantId::parse(&second).unwrap();
    let t = app.store.tenant(&id).await.unwrap().unwrap();
    assert_eq!(
        t.stripe_customer_id.as_deref(),
        Some(format!("cus_{s}").as_str())
    );
    assert_eq!(
        t.stripe_subscription_id.as_deref(),
        Some(format!("sub_{s}").as_str())
    );
    assert_eq!(
        app.status_path(&id).await,
        ["sales_review", "provisioning", "active"]
    );
    let first_t = app
        .store
        .tenant(&TenantId::parse(&first).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first_t.status.as_str(),
        "sales_review",
        "only the one named"
    );

    // Refusals: a tenant that is not waiting for sales (the one just approved, a self-service
    // signup), an unknown tenant, something that is not a tenant id. Stripe is not called.
    let seen = stripe.received_requests().await.unwrap().len();
    let starter = app
        .signup("selfserve@example.com", "starter")
        .await
        .get("tenant_id")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    let seen = seen + 1; // its checkout session
    for (tid, status) in [(&second, "active"), (&starter, "pending_payment")] {
        let (ok, out, err) = operator_with_env(&app, &["tenants", "approve", tid], &env);
        assert!(!ok, "{out}");
        assert!(
            err.contains("sales_review") && err.contains(tid.as_str()) && err.contains(status),
            "{err}"
        );
    }
    let unknown = TenantId::generate().to_string();
    let (ok, out, err) = operator_with_env(&app, &["tenants", "approve", &unknown], &env);
    assert!(!ok, "{out}");
    assert!(err.contains("tenant not found"), "{err}");
    let (ok, _, err) = operator_with_env(&app, &["tenants", "approve", "acme"], &env);
    assert!(!ok);
    assert!(err.contains("'acme' is not a tenant id"), "{err}");
    assert_eq!(stripe.received_requests().await.unwrap().len(), seen);
}

async fn approving_without_stripe_provisions_with_no_invoice(backend: Backend) {
    let app = spawn_app_with(backend, &[("ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let tid = enterprise_signup(&app, "cio@nostripe.example.com", "NoStripe").await;
    let resp = approve(&app, &tid, Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status(), 202);
    let b: Value = resp.json().await.unwrap();
    assert!(b.get("invoice_url").is_some_and(Value::is_null), "{b}");
    assert_eq!(b["status"], "provisioning");
    app.wait_for_status(&tid, "active", 30).await;
    let t = app
        .store
        .tenant(&TenantId::parse(&tid).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(t.stripe_customer_id.is_none() && t.stripe_subscription_id.is_none());
}

async fn stripe_trial_days_are_added_to_the_checkout_request(backend: Backend) {
    let stripe = fake_stripe().await;
    let app = spawn_with_stripe(backend, &stripe, &[("TRIAL_DAYS", "14")]).await;
    let b = app.signup("trial+one@example.com", "pro").await;
    let tid = b["tenant_id"].as_str().unwrap();
    let reqs = requests_to(&stripe, "POST", "/v1/checkout/sessions").await;
    assert_eq!(reqs.len(), 1);
    assert_stripe_headers(&reqs[0]);
    let body = body_of(&reqs[0]);
    assert!(
        body.ends_with("&subscription_data[trial_period_days]=14"),
        "{body}"
    );
    assert_eq!(
        body,
        onboard::billing::stripe::checkout_form_body(&onboard::billing::stripe::CheckoutRequest {
            tenant_id: tid.into(),
            plan: "pro".into(),
            price_id: "price_pro".into(),
            customer_email: "trial+one@example.com".into(),
            success_url: app.url("/onboarding/success?session_id={CHECKOUT_SESSION_ID}"),
            cancel_url: app.url("/onboarding/cancel"),
            trial_days: 14,
        })
    );
    assert_eq!(body.matches("trial_period_days").count(), 1);
}

/// A `TRIAL_DAYS` beyond 730 stops start-up with one line naming it.
#[test]
fn stripe_trial_days_out_of_range_stops_start_up() {
    let err = onboard::config::Settings::with_overrides(&[("TRIAL_DAYS", "999")])
        .expect_err("TRIAL_DAYS=999 is refused");
    assert_eq!(err.key, "TRIAL_DAYS");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onboard"))
        .arg("migrate")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TRIAL_DAYS", "999")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("TRIAL_DAYS"), "{stderr}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was created before the refusal"
    );
}

async fn stripe_checkout_reminder_resumes_the_open_checkout(backend: Backend) {
    let stripe = fake_stripe().await;
    let app = spawn_with_stripe(backend, &stripe, &[]).await;
    let b = app.signup("resume@example.com", "starter").await;
    let tid = b["tenant_id"].as_str().unwrap().to_string();
    let session = format!("cs_test_{tid}");
    let hosted =
        format!("https://checkout.stripe.com/c/pay/{session}#fidkdWxOYHwnPyd1blpxYHZxWjA0");
    Mock::given(method("GET"))
        .and(path(format!("/v1/checkout/sessions/{session}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": session, "object": "checkout.session", "status": "open",
            "payment_status": "unpaid", "client_reference_id": tid, "url": hosted
        })))
        .expect(1)
        .mount(&stripe)
        .await;

    let resp = app
        .get(&format!("/onboarding/checkout?session_id={session}"))
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], hosted.as_str());
    let reqs = requests_to(&stripe, "GET", &format!("/v1/checkout/sessions/{session}")).await;
    assert_eq!(reqs.len(), 1);
    assert_stripe_headers(&reqs[0]);

    // A session we never created: a page for a person, and no question to Stripe.
    let resp = app
        .get("/onboarding/checkout?session_id=cs_test_nosuchsession")
        .await;
    assert_eq!(resp.status(), 404);
    assert!(
        resp.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = resp.text().await.unwrap();
    assert!(page.contains("We could not find your checkout"), "{page}");
    assert!(
        requests_to(
            &stripe,
            "GET",
            "/v1/checkout/sessions/cs_test_nosuchsession"
        )
        .await
        .is_empty()
    );

    // Paid and active: the link leads to the success page, without asking Stripe.
    let event = completed_event(&session, &tid, "cus_resume", "sub_resume");
    assert_eq!(app.deliver_event(&event).await.status(), 200);
    app.wait_for_status(&tid, "active", 30).await;
    let resp = app
        .get(&format!("/onboarding/checkout?session_id={session}"))
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()[LOCATION],
        format!("/onboarding/success?session_id={session}").as_str()
    );
    stripe.verify().await;
}
