//! The subscription after day one: invoice and subscription events through the real webhook,
//! in every delivery order, on both stores.

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{
    ActiveTenant, Backend, TestApp, assert_error, eventually, spawn_app, spawn_app_with,
};
use crate::store_tests;
use onboard::domain::TenantId;

store_tests!(
    a_failed_payment_makes_the_tenant_past_due_and_a_paid_invoice_brings_it_back,
    an_unpaid_subscription_suspends_the_api_with_402_and_keeps_the_data,
    subscription_updates_sync_plan_and_cancel_at_period_end,
    a_deleted_subscription_cancels_the_tenant,
    every_delivery_order_ends_in_the_same_state,
    an_invoice_for_an_unknown_subscription_is_found_by_its_metadata,
    history_stored_before_its_handlers_existed_is_replayed_once,
    a_canceled_tenant_is_erased_after_the_grace_period_leaving_no_personal_data,
    signups_that_never_pay_are_abandoned_after_seven_days,
    a_tie_is_settled_by_reading_the_subscription_from_stripe,
    a_payment_that_fails_during_provisioning_is_followed_once_active,
);

/// The Stripe ids the dev checkout stored for a tenant.
pub async fn stripe_ids(app: &TestApp, tenant_id: &str) -> (String, String) {
    let t = app
        .store
        .tenant(&TenantId::parse(tenant_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    (
        t.stripe_customer_id
            .expect("customer id stored at checkout"),
        t.stripe_subscription_id
            .expect("subscription id stored at checkout"),
    )
}

pub fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2025-10-29.clover",
        "created": created,
        "livemode": false,
        "type": kind,
        "data": {"object": object},
    })
}

/// An invoice in the shape of API versions since 2025-03-31 (`parent.subscription_details`).
pub fn invoice(customer: &str, subscription: &str, tenant_id: &str, status: &str) -> Value {
    json!({
        "id": format!("in_{}", ulid::Ulid::new()),
        "object": "invoice",
        "customer": customer,
        "status": status,
        "billing_reason": "subscription_cycle",
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription, "metadata": {"tenant_id": tenant_id}},
        },
    })
}

/// An invoice in the older shape (top-level `subscription`).
fn legacy_invoice(customer: &str, subscription: &str, status: &str) -> Value {
    json!({
        "id": format!("in_{}", ulid::Ulid::new()),
        "object": "invoice",
        "customer": customer,
        "subscription": subscription,
        "status": status,
    })
}

pub fn subscription(
    customer: &str,
    subscription: &str,
    tenant_id: &str,
    status: &str,
    cancel_at_period_end: bool,
    plan: &str,
) -> Value {
    json!({
        "id": subscription,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": cancel_at_period_end,
        "metadata": {"tenant_id": tenant_id},
        "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_unknown", "lookup_key": plan}}]},
    })
}

pub fn evt_id() -> String {
    format!("evt_{}", ulid::Ulid::new())
}

pub async fn deliver(app: &TestApp, event: &Value) {
    let resp = app.deliver_event(event).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// Waits until every stored event has been processed.
pub async fn settled(app: &TestApp) {
    eventually("every event processed", 30, || async {
        let left = app
            .store
            .unfinished_jobs(Some(
                <onboard::billing::events::EventJob as onboard::jobs::Task>::KIND,
            ))
            .await
            .unwrap();
        (left == 0).then_some(())
    })
    .await;
}

async fn status_of(app: &TestApp, tenant_id: &str) -> String {
    app.store
        .tenant(&TenantId::parse(tenant_id).unwrap())
        .await
        .unwrap()
        .unwrap()
        .status
        .to_string()
}

async fn a_failed_payment_makes_the_tenant_past_due_and_a_paid_invoice_brings_it_back(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("dunning@example.com", "starter").await;
    let (cus, sub) = stripe_ids(&app, &t.tenant_id).await;
    let now = chrono::Utc::now().timestamp();
    deliver(
        &app,
        &event(
            &evt_id(),
            "invoice.payment_failed",
            now,
            invoice(&cus, &sub, &t.tenant_id, "open"),
        ),
    )
    .await;
    app.wait_for_status(&t.tenant_id, "past_due", 10).await;
    // A past-due workspace keeps working while Stripe retries the card.
    assert_eq!(app.query(&t.api_key, "sample", 1).await.status(), 200);
    deliver(
        &app,
        &event(
            &evt_id(),
            "invoice.paid",
            now + 60,
            legacy_invoice(&cus, &sub, "paid"),
        ),
    )
    .await;
    app.wait_for_status(&t.tenant_id, "active", 10).await;
    let id = TenantId::parse(&t.tenant_id).unwrap();
    assert_eq!(
        app.status_path(&id).await,
        [
            "pending_payment",
            "provisioning",
            "active",
            "past_due",
            "active"
        ]
    );
    let billing = app.store.billing(&id).await.unwrap().unwrap();
    assert_eq!(billing.subscription_status.as_deref(), Some("active"));
    assert_eq!(billing.subscription_at, Some(now + 60));
}

async fn an_unpaid_subscription_suspends_the_api_with_402_and_keeps_the_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("unpaid@example.com", "starter").await;
    app.upload(&t.api_key, "kept", "This document survives a suspension.")
        .await;
    let (cus, sub) = stripe_ids(&app, &t.tenant_id).await;
    let now = chrono::Utc::now().timestamp();
    deliver(
        &app,
        &event(
            &evt_id(),
            "customer.subscription.updated",
            now,
            subscription(&cus, &sub, &t.tenant_id, "unpaid", false, "starter"),
        ),
    )
    .await;
    app.wait_for_status(&t.tenant_id, "suspended", 10).await;
    // Verified keys are cached for 3 s per process; the suspension shows within that.
    let resp = eventually("the API refusing a suspended workspace", 10, || async {
        let resp = app.query(&t.api_key, "survives", 1).await;
        (resp.status() == 402).then_some(resp)
    })
    .await;
    let err = assert_error(resp, 402, "workspace_suspended").await;
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("unpaid") && msg.contains("/account") && msg.contains("data is kept"),
        "{msg}"
    );
    deliver(
        &app,
        &event(
            &evt_id(),
            "invoice.paid",
            now + 5,
            invoice(&cus, &sub, &t.tenant_id, "paid"),
        ),
    )
    .await;
    app.wait_for_status(&t.tenant_id, "active", 10).await;
    let body = eventually("the API working again", 10, || async {
        let resp = app.query(&t.api_key, "survives", 1).await;
        if resp.status() == 200 {
            Some(resp.json::<Value>().await.unwrap())
        } else {
            None
        }
    })
    .await;
    assert!(body.to_string().contains("survives a suspension"), "{body}");
}

async fn subscription_updates_sync_plan_and_cancel_at_period_end(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("upgrade@example.com", "starter").await;
    let (cus, sub) = stripe_ids(&app, &t.tenant_id).await;
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let now = chrono::Utc::now().timestamp();
    deliver(
        &app,
        &event(
            &evt_id(),
            "customer.subscription.updated",
            now,
            subscription(&cus, &sub, &t.tenant_id, "active", true, "pro"),
        ),
    )
    .await;
    settled(&app).await;
    let tenant = app.store.tenant(&id).await.unwrap().unwrap();
    assert_eq!(tenant.plan.as_str(), "pro");
    assert_eq!(tenant.status.as_str(), "active");
    let billing = app.store.billing(&id).await.unwrap().unwrap();
    assert!(billing.cancel_at_period_end);
    // An older update delivered late changes nothing.
    deliver(
        &app,
        &event(
            &evt_id(),
            "customer.subscription.updated",
            now - 100,
            subscription(&cus, &sub, &t.tenant_id, "past_due", false, "starter"),
        ),
    )
    .await;
    settled(&app).await;
    let tenant = app.store.tenant(&id).await.unwrap().unwrap();
    assert_eq!(
        (tenant.plan.as_str(), tenant.status.as_str()),
        ("pro", "active")
    );
    assert!(
        app.store
            .billing(&id)
            .await
            .unwrap()
            .unwrap()
            .cancel_at_period_end
    );
}

async fn a_deleted_subscription_cancels_the_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("deleted@example.com", "starter").await;
    let (cus, sub) = stripe_ids(&app, &t.tenant_id).await;
    let now = chrono::Utc::now().timestamp();
    deliver(
        &app,
        &event(
            &evt_id(),
            "customer.subscription.deleted",
            now,
            subscription(&cus, &sub, &t.tenant_id, "canceled", false, "starter"),
        ),
    )
    .await;
    app.wait_for_status(&t.tenant_id, "canceled", 10).await;
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let billing = app.store.billing(&id).await.unwrap().unwrap();
    assert!(billing.canceled_at.is_some());
    // A later "paid" cannot revive a deleted subscription.
    deliver(
        &app,
        &event(
            &evt_id(),
            "invoice.paid",
            now + 10,
            invoice(&cus, &sub, &t.tenant_id, "paid"),
        ),
    )
    .await;
    settled(&app).await;
    assert_eq!(status_of(&app, &t.tenant_id).await, "canceled");
    let resp = eventually("the API refusing a canceled workspace", 10, || async {
        let resp = app.query(&t.api_key, "x", 1).await;
        (resp.status() == 403).then_some(resp)
    })
    .await;
    assert_error(resp, 403, "workspace_unavailable").await;
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

/// One event of a history, before it is addressed to a tenant.
#[derive(Clone, Debug)]
enum Step {
    Failed(i64),
    Paid(i64),
    Sub(i64, &'static str, bool, &'static str),
    Deleted(i64),
}

impl Step {
    fn event(&self, t: &ActiveTenant, cus: &str, sub: &str) -> Value {
        let tid = &t.tenant_id;
        match *self {
            Step::Failed(at) => event(
                &evt_id(),
                "invoice.payment_failed",
                at,
                invoice(cus, sub, tid, "open"),
            ),
            Step::Paid(at) => event(
                &evt_id(),
                "invoice.paid",
                at,
                legacy_invoice(cus, sub, "paid"),
            ),
            Step::Sub(at, status, cape, plan) => event(
                &evt_id(),
                "customer.subscription.updated",
                at,
                subscription(cus, sub, tid, status, cape, plan),
            ),
            Step::Deleted(at) => event(
                &evt_id(),
                "customer.subscription.deleted",
                at,
                subscription(cus, sub, tid, "canceled", false, "pro"),
            ),
        }
    }
}

/// Tenant status, subscription status, plan, `cancel_at_period_end`.
type Final = (&'static str, &'static str, &'static str, bool);

/// Every order of delivery of the same events ends in the same tenant status, subscription
/// status, plan and `cancel_at_period_end`: one tenant per order, all delivered concurrently.
async fn every_delivery_order_ends_in_the_same_state(backend: Backend) {
    let app = spawn_app(backend).await;
    let base = chrono::Utc::now().timestamp();
    let histories: [(Vec<Step>, Final); 3] = [
        (
            // Dunning that ends paid, then an upgrade scheduled to cancel at period end; the
            // failed payment and its subscription update share a second.
            vec![
                Step::Failed(base + 10),
                Step::Sub(base + 10, "past_due", false, "starter"),
                Step::Paid(base + 30),
                Step::Sub(base + 31, "active", true, "pro"),
            ],
            ("active", "active", "pro", true),
        ),
        (
            // Dunning that ends suspended.
            vec![
                Step::Paid(base + 5),
                Step::Failed(base + 10),
                Step::Sub(base + 20, "unpaid", false, "starter"),
            ],
            ("suspended", "unpaid", "starter", false),
        ),
        (
            // A cancellation among later events: canceled wins.
            vec![
                Step::Failed(base + 10),
                Step::Deleted(base + 15),
                Step::Paid(base + 30),
            ],
            ("canceled", "canceled", "pro", false),
        ),
    ];
    let mut runs = Vec::new();
    for (h, (steps, expected)) in histories.iter().enumerate() {
        for (p, order) in permutations(steps).into_iter().enumerate() {
            runs.push((h, p, order, *expected));
        }
    }
    // A few signups at a time: the password-hashing queue is bounded and answers 503 beyond it.
    let tenants: Vec<ActiveTenant> = futures_util::stream::iter(runs.iter().map(|(h, p, _, _)| {
        let app = &app;
        async move {
            app.active_tenant(&format!("order-{h}-{p}@example.com"), "starter")
                .await
        }
    }))
    .buffered(3)
    .collect()
    .await;
    futures_util::future::join_all(runs.iter().zip(&tenants).map(|((_, _, order, _), t)| {
        let app = &app;
        async move {
            let (cus, sub) = stripe_ids(app, &t.tenant_id).await;
            // One tenant's events arrive in this order, each after the previous was stored.
            for step in order {
                deliver(app, &step.event(t, &cus, &sub)).await;
            }
        }
    }))
    .await;
    settled(&app).await;
    for ((h, _, order, expected), t) in runs.iter().zip(&tenants) {
        let id = TenantId::parse(&t.tenant_id).unwrap();
        let tenant = app.store.tenant(&id).await.unwrap().unwrap();
        let billing = app.store.billing(&id).await.unwrap().unwrap();
        let got = (
            tenant.status.as_str(),
            billing.subscription_status.as_deref().unwrap_or("none"),
            tenant.plan.as_str(),
            billing.cancel_at_period_end,
        );
        assert_eq!(got, *expected, "history {h}, order {order:?}");
    }
}

async fn an_invoice_for_an_unknown_subscription_is_found_by_its_metadata(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("metadata@example.com", "starter").await;
    let now = chrono::Utc::now().timestamp();
    deliver(
        &app,
        &event(
            &evt_id(),
            "invoice.payment_failed",
            now,
            invoice("cus_other", "sub_other", &t.tenant_id, "open"),
        ),
    )
    .await;
    app.wait_for_status(&t.tenant_id, "past_due", 10).await;
    // An invoice that names nothing we know is acknowledged, recorded, and changes nothing.
    let stray = evt_id();
    deliver(
        &app,
        &event(
            &stray,
            "invoice.paid",
            now + 5,
            legacy_invoice("cus_nobody", "sub_nobody", "paid"),
        ),
    )
    .await;
    settled(&app).await;
    assert_eq!(status_of(&app, &t.tenant_id).await, "past_due");
}

/// Stores `event` as an event of a type nobody handled when it arrived (the history received
/// before the lifecycle handlers existed).
async fn store_as_ignored(app: &TestApp, event: &Value) {
    let payload = event.to_string();
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query(
            "INSERT INTO webhook_events (id, type, object_id, created, payload, received_at, processed_at, outcome) \
             VALUES ($1, $2, NULL, $3, $4, 0, 0, 'ignored: unhandled type')",
        )
        .bind(event["id"].as_str().unwrap())
        .bind(event["type"].as_str().unwrap())
        .bind(event["created"].as_i64().unwrap())
        .bind(&payload)
        .execute(pool)
        .await
        .unwrap();
    });
}

async fn history_stored_before_its_handlers_existed_is_replayed_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("replay@example.com", "starter").await;
    let other = app.active_tenant("bystander@example.com", "starter").await;
    let (cus, sub) = stripe_ids(&app, &t.tenant_id).await;
    let (ocus, osub) = stripe_ids(&app, &other.tenant_id).await;
    let now = chrono::Utc::now().timestamp();
    let failed = event(
        &evt_id(),
        "invoice.payment_failed",
        now - 100,
        legacy_invoice(&cus, &sub, "open"),
    );
    let unpaid = event(
        &evt_id(),
        "customer.subscription.updated",
        now - 50,
        subscription(&cus, &sub, &t.tenant_id, "unpaid", false, "starter"),
    );
    let bystander = event(
        &evt_id(),
        "invoice.payment_failed",
        now - 70,
        legacy_invoice(&ocus, &osub, "open"),
    );
    // Stored newest first: the replay orders by Stripe time, not by arrival.
    for e in [&unpaid, &bystander, &failed] {
        store_as_ignored(&app, e).await;
    }
    let (ok, out, err) =
        crate::pipeline::operator(&app, &["events", "replay", "--tenant", &t.tenant_id]);
    assert!(ok, "{err}");
    // Its checkout's completion is replayed too, and changes nothing.
    assert!(
        out.contains("replayed 3 event(s): 2 changed something"),
        "{out}"
    );
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let path = [
        "pending_payment",
        "provisioning",
        "active",
        "past_due",
        "suspended",
    ];
    assert_eq!(app.status_path(&id).await, path);
    assert_eq!(
        status_of(&app, &other.tenant_id).await,
        "active",
        "only the named tenant"
    );

    let (ok, out, err) =
        crate::pipeline::operator(&app, &["events", "replay", "--tenant", &t.tenant_id]);
    assert!(ok, "{err}");
    assert!(
        out.contains("replayed 3 event(s): 0 changed something"),
        "{out}"
    );
    assert_eq!(
        app.status_path(&id).await,
        path,
        "a second replay changes nothing"
    );

    let (ok, out, err) =
        crate::pipeline::operator(&app, &["events", "list", "--tenant", &t.tenant_id]);
    assert!(ok, "{err}");
    let failed_id = failed["id"].as_str().unwrap();
    let row = out
        .lines()
        .find(|l| l.starts_with(failed_id))
        .unwrap_or_else(|| panic!("{failed_id} in:\n{out}"));
    assert!(
        row.contains("invoice.payment_failed") && row.contains("no change"),
        "{row}"
    );
    assert!(out.contains("3 event(s)"), "{out}");

    // All types since a date: the bystander's event is applied too.
    let day = chrono::DateTime::from_timestamp(now - 200, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let (ok, out, err) = crate::pipeline::operator(
        &app,
        &[
            "events",
            "replay",
            "--type",
            "invoice.payment_failed",
            "--since",
            &day,
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("1 changed something"), "{out}");
    assert_eq!(status_of(&app, &other.tenant_id).await, "past_due");

    let (ok, _, err) =
        crate::pipeline::operator(&app, &["events", "replay", "--since", "last week"]);
    assert!(!ok && err.contains("--since 'last week'"), "{err}");
}

/// Every row of every table of the test database, as text (the test's database dump).
pub async fn dump(app: &TestApp) -> String {
    let mut out = String::new();
    match &app.store {
        onboard::store::Store::Sqlite(pools) => {
            let pool = &pools.write;
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for table in tables {
                let cols: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                        .bind(&table)
                        .fetch_all(pool)
                        .await
                        .unwrap();
                let expr = cols
                    .iter()
                    .map(|c| format!("COALESCE(CAST(\"{c}\" AS BLOB), '')"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ");
                let rows: Vec<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT CAST({expr} AS BLOB) FROM \"{table}\""
                )))
                .fetch_all(pool)
                .await
                .unwrap();
                for r in rows {
                    out.push_str(&format!("{table}: {}\n", String::from_utf8_lossy(&r)));
                }
            }
        }
        onboard::store::Store::Postgres(pool) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for table in tables {
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT t::text FROM \"{table}\" t"
                )))
                .fetch_all(pool)
                .await
                .unwrap();
                for r in rows {
                    out.push_str(&format!("{table}: {r}\n"));
                }
            }
        }
    }
    out
}

async fn a_canceled_tenant_is_erased_after_the_grace_period_leaving_no_personal_data(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &[("DEPROVISION_GRACE_DAYS", "0")]).await;
    let email = "erase.me.4821@example.com";
    let t = app.active_tenant(email, "starter").await;
    let keep = app.active_tenant("keep.me@example.com", "starter").await;
    app.upload(
        &t.api_key,
        "notes",
        &format!("Contact {email} about the renewal."),
    )
    .await;
    crate::login::signed_in(&app, &t).await;
    crate::login::forgot(&app, email).await;
    eventually("the reset email", 30, || async {
        let emails = app.store.list_emails(Some(&t.tenant_id), 20).await.unwrap();
        emails
            .iter()
            .any(|e| e.kind == "password_reset")
            .then_some(())
    })
    .await;
    assert!(
        dump(&app).await.contains(email),
        "the dump finds personal data"
    );
    let (cus, sub) = stripe_ids(&app, &t.tenant_id).await;
    deliver(
        &app,
        &event(
            &evt_id(),
            "customer.subscription.deleted",
            chrono::Utc::now().timestamp(),
            subscription(&cus, &sub, &t.tenant_id, "canceled", false, "starter"),
        ),
    )
    .await;
    app.wait_for_status(&t.tenant_id, "canceled", 10).await;
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let namespace_before = app.state.vectors.count(&t.tenant_id).await.unwrap();
    assert!(namespace_before > 0);

    let erased = onboard::provisioning::deprovision::run_due(&app.state)
        .await
        .unwrap();
    assert_eq!(erased, 1, "only the canceled tenant is due");
    let dump = dump(&app).await;
    let leaks: Vec<&str> = dump
        .lines()
        .filter(|l| l.to_lowercase().contains(email))
        .collect();
    assert!(
        leaks.is_empty(),
        "personal data left:\n{}",
        leaks.join("\n")
    );
    assert!(
        dump.contains("keep.me@example.com"),
        "other tenants are kept"
    );
    // The anonymised row stays, so the funnel still counts the tenant.
    let row = app
        .store
        .tenant(&id)
        .await
        .unwrap()
        .expect("tenant row kept");
    assert_eq!(row.status.as_str(), "canceled");
    assert!(row.email.is_empty() && row.company_name.is_empty());
    let people = app.store.members(&id).await.unwrap();
    assert!(!people.is_empty(), "the user rows stay, anonymised");
    assert!(
        people
            .iter()
            .all(|u| u.email.is_empty() && u.name.is_empty() && u.password_hash.is_empty()),
        "the people's addresses, names and passwords are erased"
    );
    assert!(
        app.store
            .billing(&id)
            .await
            .unwrap()
            .unwrap()
            .erased_at
            .is_some()
    );
    assert!(
        !app.state
            .vectors
            .namespace_exists(&t.tenant_id)
            .await
            .unwrap()
    );
    let keys = app.store.list_api_keys(&id).await.unwrap();
    assert!(keys.iter().all(|k| k.revoked_at.is_some()), "keys revoked");
    assert_eq!(
        app.query(&t.api_key, "renewal", 1).await.status(),
        401,
        "a revoked key is refused"
    );
    // The email can sign up again, and a second run erases nothing more.
    assert_eq!(
        onboard::provisioning::deprovision::run_due(&app.state)
            .await
            .unwrap(),
        0
    );
    app.signup(email, "starter").await;
    assert_eq!(app.query(&keep.api_key, "sample", 1).await.status(), 200);
}

async fn signups_that_never_pay_are_abandoned_after_seven_days(backend: Backend) {
    let app = spawn_app(backend).await;
    let (stale, _) = app.checkout("never-paid@example.com", "starter").await;
    let now = onboard::store::now_ms();
    let report = onboard::billing::lifecycle::sweep(&app.state, now + 6 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(report.abandoned, 0, "six days is not yet abandoned");
    let report = onboard::billing::lifecycle::sweep(&app.state, now + 7 * 86_400_000 + 1000)
        .await
        .unwrap();
    assert_eq!(report.abandoned, 1);
    assert_eq!(status_of(&app, &stale).await, "abandoned");
    let history = app
        .store
        .status_history(&TenantId::parse(&stale).unwrap())
        .await
        .unwrap();
    assert_eq!(
        history.last().unwrap().reason,
        "no payment within 7 days of signup"
    );
    // The address is free again.
    app.signup("never-paid@example.com", "starter").await;
}

/// Two events of the same second that disagree: without Stripe the fixed rank decides (see the
/// permutation test); with Stripe configured, the subscription is read back and Stripe's answer
/// is held, in either delivery order.
async fn a_tie_is_settled_by_reading_the_subscription_from_stripe(backend: Backend) {
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let stripe = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/v1/subscriptions/sub_[A-Za-z0-9_]+$"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"id": "sub_x", "object": "subscription", "status": "active"}),
            ),
        )
        .mount(&stripe)
        .await;
    let app = spawn_app(backend).await;
    let first = app.active_tenant("tie-one@example.com", "starter").await;
    let second = app.active_tenant("tie-two@example.com", "starter").await;
    let app = app
        .restart_with(&[
            ("STRIPE_SECRET_KEY", "sk_test_tie"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_tie"),
            ("STRIPE_API_BASE", &stripe.uri()),
            ("STRIPE_PRICE_ID_STARTER", "price_starter"),
            ("STRIPE_PRICE_ID_PRO", "price_pro"),
        ])
        .await;
    let at = chrono::Utc::now().timestamp();
    for (t, failed_first) in [(&first, true), (&second, false)] {
        let (cus, sub) = stripe_ids(&app, &t.tenant_id).await;
        let failed = event(
            &evt_id(),
            "invoice.payment_failed",
            at,
            invoice(&cus, &sub, &t.tenant_id, "open"),
        );
        let updated = event(
            &evt_id(),
            "customer.subscription.updated",
            at,
            subscription(&cus, &sub, &t.tenant_id, "active", false, "starter"),
        );
        let order = if failed_first {
            [failed, updated]
        } else {
            [updated, failed]
        };
        for e in &order {
            deliver(&app, e).await;
            settled(&app).await;
        }
        let id = TenantId::parse(&t.tenant_id).unwrap();
        assert_eq!(
            app.store
                .billing(&id)
                .await
                .unwrap()
                .unwrap()
                .subscription_status
                .as_deref(),
            Some("active"),
            "failed first: {failed_first}"
        );
        assert_eq!(status_of(&app, &t.tenant_id).await, "active");
    }
    let asked = stripe.received_requests().await.unwrap();
    assert_eq!(asked.len(), 2, "one read per tie");
}

/// The subscription changes while the workspace is being set up: the tenant cannot be past due
/// before it is active, so the held status is applied when provisioning finishes.
async fn a_payment_that_fails_during_provisioning_is_followed_once_active(backend: Backend) {
    let app = crate::helpers::spawn_app_without_worker(backend, &[]).await;
    let (tid, session) = app.checkout("early-fail@example.com", "starter").await;
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    app.wait_for_status(&tid, "provisioning", 10).await;
    let (cus, sub) = stripe_ids(&app, &tid).await;
    let failed = event(
        &evt_id(),
        "invoice.payment_failed",
        chrono::Utc::now().timestamp(),
        invoice(&cus, &sub, &tid, "open"),
    );
    deliver(&app, &failed).await;
    onboard::billing::events::process(&app.state, failed["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        status_of(&app, &tid).await,
        "provisioning",
        "held, not applied yet"
    );
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(onboard::tasks::run_worker(app.state.clone(), 2, stop_rx));
    app.wait_for_status(&tid, "past_due", 30).await;
    let id = TenantId::parse(&tid).unwrap();
    assert_eq!(
        app.status_path(&id).await,
        ["pending_payment", "provisioning", "active", "past_due"]
    );
    let _ = stop.send(true);
    let _ = worker.await;
}
