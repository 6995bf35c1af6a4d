//! Worker processes: crash safety and several workers on one database.

use onboard::domain::{Plan, TenantId, TenantStatus};
use onboard::store::NewTenant;

use crate::helpers::{Backend, TestApp, WorkerProcess, eventually, spawn_app_without_worker};
use crate::store_tests;

store_tests!(
    killing_a_worker_mid_provisioning_loses_nothing_and_repeats_nothing,
    payments_arriving_all_at_once_are_acknowledged_and_provisioned,
    on_a_slow_pinecone_a_frozen_worker_loses_its_jobs_and_a_killed_one_has_them_reclaimed,
    a_standalone_worker_serves_the_metrics_of_the_work_it_does,
);

/// Provisioning jobs running right now (ids).
async fn running_provisioning_jobs(app: &TestApp) -> Vec<String> {
    onboard::with_reader!(&app.store, |pool| {
        sqlx::query_scalar(
            "SELECT id FROM jobs WHERE kind = 'provision_tenant' AND status = 'running' ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    })
}

/// The provisioning jobs still running once the list has held still for 300 ms (within the
/// 1 s lease, so no other worker has taken any over yet).
async fn settled_running_jobs(app: &TestApp) -> Vec<String> {
    let mut seen = running_provisioning_jobs(app).await;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = running_provisioning_jobs(app).await;
        if now == seen {
            return now;
        }
        seen = now;
    }
}

/// Each job finished after more than one attempt: another worker took it over.
async fn assert_reclaimed(app: &TestApp, jobs: &[String]) {
    for id in jobs {
        let job = app.store.job_by_id(id).await.unwrap().unwrap();
        assert_eq!(job.status, "done", "{id}");
        assert!(job.attempts >= 2, "{id} was reclaimed: {job:?}");
    }
}

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
    eventually(
        "a provisioning job to be running in the first worker",
        30,
        || async { (!running_provisioning_jobs(&app).await.is_empty()).then_some(()) },
    )
    .await;
    first.kill();
    // What was running at the kill stays `running` until its lease expires. A commit the worker
    // had already sent still lands after its death (PostgreSQL finishes a transaction whose
    // COMMIT it received), so the list is read once it stops changing.
    let running_at_kill = settled_running_jobs(&app).await;
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
    eprintln!(
        "killed with {} of {n} tenants active and {} jobs running; all reclaimed",
        at_kill,
        running_at_kill.len()
    );
    assert_reclaimed(&app, &running_at_kill).await;
}

async fn on_a_slow_pinecone_a_frozen_worker_loses_its_jobs_and_a_killed_one_has_them_reclaimed(
    backend: Backend,
) {
    // Every Pinecone answer takes 150 ms: provisioning spans its two transactions and several
    // remote calls, so a worker is caught mid-way.
    let pinecone = crate::fakes::FakePinecone::start("pcsk_test_workers_0000000000", 384).await;
    pinecone.set_delay(std::time::Duration::from_millis(150));
    let host = pinecone.uri();
    let remote = [
        ("PINECONE_API_KEY", "pcsk_test_workers_0000000000"),
        ("PINECONE_INDEX_HOST", host.as_str()),
        ("JOB_LEASE_SECONDS", "1"),
        ("WORKER_CONCURRENCY", "4"),
    ];
    let app = spawn_app_without_worker(backend, &remote[..2]).await;
    let n = 12;
    let ids = paid_tenants(&app, n).await;

    // A live owner that stops answering (SIGSTOP: frozen, not dead) cannot renew its leases:
    // they expire and a second worker takes its jobs over.
    let mut frozen = WorkerProcess::start(&app, &remote);
    let stalled = eventually("jobs to be running in the first worker", 30, || async {
        let running = running_provisioning_jobs(&app).await;
        (!running.is_empty()).then_some(running)
    })
    .await;
    signal(&frozen, "-STOP");
    let mut second = WorkerProcess::start(&app, &remote);
    eventually("the frozen worker's jobs to be taken over", 30, || async {
        let mut taken = 0;
        for id in &stalled {
            let job = app.store.job_by_id(id).await.unwrap().unwrap();
            if job.attempts >= 2 || job.status == "done" {
                taken += 1;
            }
        }
        (taken == stalled.len()).then_some(())
    })
    .await;
    // Woken up, the first worker finishes attempts it no longer owns: they change nothing.
    signal(&frozen, "-CONT");

    // Then the second worker is killed mid-way; a third finishes.
    let killed_with = eventually("a job to be running in the second worker", 30, || async {
        let running = running_provisioning_jobs(&app).await;
        (!running.is_empty() || active_count(&app).await == n).then_some(running)
    })
    .await;
    second.kill();
    frozen.kill();
    let _third = WorkerProcess::start(&app, &remote);
    eventually("every tenant to become active", 60, || async {
        (active_count(&app).await == n).then_some(())
    })
    .await;
    assert_each_provisioned_exactly_once(&app, &ids).await;
    assert_reclaimed(&app, &stalled).await;
    assert_reclaimed(&app, &killed_with).await;
    for id in &ids {
        assert_eq!(pinecone.count(id.as_str()), 3, "{id}: sample vectors once");
    }
}

/// Sends a signal to a worker process (`-STOP`, `-CONT`).
fn signal(worker: &WorkerProcess, which: &str) {
    let status = std::process::Command::new("kill")
        .args([which, &worker.child.id().to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill {which}");
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

/// `onboard worker` with `WORKER_METRICS_ADDR` serves `/metrics` (behind `METRICS_TOKEN`): the
/// provisioning it ran and the emails it sent are counted there, not by the web server.
async fn a_standalone_worker_serves_the_metrics_of_the_work_it_does(backend: Backend) {
    let app = spawn_app_without_worker(backend, &[]).await;
    let port = crate::helpers::free_port();
    let addr = format!("127.0.0.1:{port}");
    let token = "worker-metrics-token-0123456789";
    let _worker = WorkerProcess::start(
        &app,
        &[("WORKER_METRICS_ADDR", &addr), ("METRICS_TOKEN", token)],
    );
    let ids = paid_tenants(&app, 2).await;
    eventually("both tenants active", 60, || async {
        (active_count(&app).await == ids.len()).then_some(())
    })
    .await;
    let url = format!("http://{addr}/metrics");
    let scrape = || async {
        app.client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let sample = |text: &str, name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let text = eventually(
        "the worker's metrics to count both provisionings",
        30,
        || async {
            let text = scrape().await?;
            (sample(&text, "onboard_provisioning_duration_seconds_count") >= 2.0).then_some(text)
        },
    )
    .await;
    assert!(text.contains("# TYPE onboard_jobs_queued gauge"), "{text}");
    let sent = eventually("the welcome emails counted", 30, || async {
        let text = scrape().await?;
        let n = sample(&text, "onboard_emails_sent_total");
        (n >= 2.0).then_some(n)
    })
    .await;
    assert!(sent >= 2.0);
    // The same token as the server's /metrics; nothing else is served there.
    let open = app.client.get(&url).send().await.unwrap();
    assert_eq!(open.status(), 401);
    let other = app
        .client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    // The web server, which ran none of it, counted none of it.
    let served = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        sample(&served, "onboard_provisioning_duration_seconds_count"),
        0.0
    );
}
