//! Worker processes: crash safety and several workers on one database.

use onboard::domain::{Plan, TenantId, TenantStatus};
use onboard::store::NewTenant;

use crate::helpers::{Backend, TestApp, WorkerProcess, eventually, spawn_app_without_worker};
use crate::store_tests;

store_tests!(
    killing_a_worker_mid_provisioning_loses_nothing_and_repeats_nothing,
    payments_arriving_all_at_once_are_acknowledged_and_provisioned,
);

/// Creates `n` tenants awaiting payment.
async fn pending_tenants(app: &TestApp, n: usize) -> Vec<TenantId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = TenantId::generate();
        let mut tx = app.store.begin().await.unwrap();
        tx.insert_tenant(&NewTenant {
            id: id.clone(),
            email: format!("paid{i}@example.com"),
            email_normalized: format!("paid{i}@example.com"),
            company_name: format!("Paid {i}"),
            password_hash: "$argon2id$not-used".into(),
            plan: Plan::Starter,
            status: TenantStatus::PendingPayment,
            reason: "signup".into(),
            stripe_checkout_session_id: Some(format!("cs_dev_{}", ulid::Ulid::new())),
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        ids.push(id);
    }
    ids
}

async fn completed_event_for(app: &TestApp, id: &TenantId) -> serde_json::Value {
    let t = app.store.tenant(id).await.unwrap().unwrap();
    let session = t.stripe_checkout_session_id.clone().unwrap();
    onboard::billing::checkout::dev_completed_event(&t, &session)
}

/// Creates `n` tenants awaiting payment and delivers a signed `checkout.session.completed` for
/// each through the webhook, as Stripe would.
async fn paid_tenants(app: &TestApp, n: usize) -> Vec<TenantId> {
    let ids = pending_tenants(app, n).await;
    for id in &ids {
        let event = completed_event_for(app, id).await;
        assert_eq!(app.deliver_event(&event).await.status(), 200);
    }
    ids
}

async fn active_count(app: &TestApp) -> usize {
    app.store
        .list_tenants(Some(TenantStatus::Active), 10_000)
        .await
        .unwrap()
        .len()
}

/// Every tenant is active, went pending → provisioning → active once, and has exactly one
/// default key, one welcome email, four step records and the three sample vectors.
async fn assert_each_provisioned_exactly_once(app: &TestApp, ids: &[TenantId]) {
    for id in ids {
        let t = app.store.tenant(id).await.unwrap().unwrap();
        assert_eq!(t.status, TenantStatus::Active, "{id}");
        assert_eq!(
            app.status_path(id).await,
            ["pending_payment", "provisioning", "active"],
            "{id}"
        );
        let keys = app.store.list_api_keys(id).await.unwrap();
        assert_eq!(
            keys.iter().filter(|k| k.name == "Default key").count(),
            1,
            "{id}: one key"
        );
        assert_eq!(
            app.store
                .list_emails(Some(id.as_str()), 10)
                .await
                .unwrap()
                .len(),
            1,
            "{id}: one email"
        );
        assert_eq!(
            app.store.provisioning_steps(id).await.unwrap().len(),
            4,
            "{id}"
        );
        assert_eq!(
            app.state.vectors.count(id.as_str()).await.unwrap(),
            3,
            "{id}: sample data once"
        );
    }
}

async fn killing_a_worker_mid_provisioning_loses_nothing_and_repeats_nothing(backend: Backend) {
    let app = spawn_app_without_worker(backend, &[]).await;
    let n = 60;
    let ids = paid_tenants(&app, n).await;
    let lease = [("JOB_LEASE_SECONDS", "1")];
    let mut first = WorkerProcess::start(&app, &lease);
    eventually("the first worker to activate a tenant", 30, || async {
        (active_count(&app).await > 0).then_some(())
    })
    .await;
    first.kill();
    let at_kill = active_count(&app).await;
    assert!(
        at_kill < n,
        "the worker was killed mid-way ({at_kill} of {n} active)"
    );
    let _second = WorkerProcess::start(&app, &lease);
    eventually("every tenant to become active", 60, || async {
        (active_count(&app).await == n).then_some(())
    })
    .await;
    assert_each_provisioned_exactly_once(&app, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(onboard_postgres_tests),
    ignore = "set TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn two_worker_processes_on_postgres_provision_200_tenants_exactly_once() {
    let backend = Backend::postgres();
    let app = spawn_app_without_worker(backend, &[]).await;
    let _a = WorkerProcess::start(&app, &[]);
    let _b = WorkerProcess::start(&app, &[]);
    let ids = paid_tenants(&app, 200).await;
    eventually("all 200 tenants to become active", 120, || async {
        (active_count(&app).await == 200).then_some(())
    })
    .await;
    assert_each_provisioned_exactly_once(&app, &ids).await;
    // Both processes did work: the job rows name their workers.
    let workers: Vec<Option<String>> = match &app.store {
        onboard::store::Store::Postgres(pool) => {
            sqlx::query_scalar("SELECT DISTINCT split_part(locked_by, '/', 1) FROM jobs WHERE kind = 'provision_tenant'")
                .fetch_all(pool)
                .await
                .unwrap()
        }
        onboard::store::Store::Sqlite(_) => unreachable!("postgres test"),
    };
    assert_eq!(
        workers.len(),
        2,
        "both worker processes provisioned tenants: {workers:?}"
    );
}

/// Many more simultaneous deliveries than database connections (the test pool has 5): each
/// webhook's transaction must never wait for a second connection.
async fn payments_arriving_all_at_once_are_acknowledged_and_provisioned(backend: Backend) {
    let app = crate::helpers::spawn_app(backend).await;
    let ids = pending_tenants(&app, 30).await;
    let mut events = Vec::new();
    for id in &ids {
        events.push(completed_event_for(&app, id).await);
    }
    let sends = events.iter().map(|e| app.deliver_event(e));
    let statuses: Vec<u16> = futures_util::future::join_all(sends)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    eventually("all 30 tenants to become active", 60, || async {
        (active_count(&app).await == 30).then_some(())
    })
    .await;
    assert_each_provisioned_exactly_once(&app, &ids).await;
}
