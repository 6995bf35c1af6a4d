//! The database goes away under load (a restart, a failover): every request in the meantime is
//! answered 503 with `Retry-After` or served, never 500, and the service recovers by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use crate::helpers::{Backend, TestDb, eventually, spawn_app_on};

/// Names this test's connections, so only they are terminated (other tests share the server).
const APPLICATION: &str = "onboard_outage_test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(onboard_postgres_tests),
    ignore = "set TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn terminated_database_connections_are_a_503_for_a_moment_never_a_500() {
    let backend = Backend::postgres();
    let mut db = TestDb::create(&backend).await;
    db.url = format!("{}&application_name={APPLICATION}", db.url);
    let app = Arc::new(spawn_app_on(db, &[]).await);
    let t = app.fresh_tenant("outage").await;

    // Steady traffic of every kind: public reads, authenticated reads and writes, signups.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (app, stop, key, tid) = (
            app.clone(),
            stop.clone(),
            t.api_key.clone(),
            t.tenant_id.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let resp = match n % 4 {
                    0 => app.get(&format!("/tenant/{tid}")).await,
                    1 => app.call(reqwest::Method::GET, "/v1/documents", &key).await,
                    2 => app.query(&key, "refund", 2).await,
                    _ => {
                        app.post_json(
                            "/signup",
                            &json!({"email": format!("load-{worker}-{n}@example.com"), "company_name": "Load", "password": crate::helpers::TEST_PASSWORD}),
                        )
                        .await
                    }
                };
                let status = resp.status().as_u16();
                let retry_after = resp.headers().contains_key("retry-after");
                statuses.push((status, retry_after));
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            statuses
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // Every connection of this server is killed, as a restart would.
    let admin = sqlx::PgPool::connect(&match &backend {
        Backend::Postgres(url) => url.clone(),
        Backend::Sqlite => unreachable!(),
    })
    .await
    .unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1) AS t",
    )
    .bind(APPLICATION)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(killed > 0, "the server's connections were found");

    // It recovers by itself: soon every kind of request succeeds again.
    eventually("requests to succeed again", 30, || async {
        let ok = app.get(&format!("/tenant/{}", t.tenant_id)).await.status() == 200
            && app
                .call(reqwest::Method::GET, "/v1/documents", &t.api_key)
                .await
                .status()
                == 200
            && app.query(&t.api_key, "refund", 2).await.status() == 200;
        ok.then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    for l in load {
        all.extend(l.await.unwrap());
    }
    admin.close().await;

    let server_errors: Vec<_> = all.iter().filter(|(s, _)| *s >= 500 && *s != 503).collect();
    assert!(server_errors.is_empty(), "no 500s: {server_errors:?}");
    let unavailable = all.iter().filter(|(s, _)| *s == 503).count();
    assert!(
        all.iter()
            .filter(|(s, _)| *s == 503)
            .all(|(_, retry)| *retry),
        "every 503 says when to retry"
    );
    let served = all.iter().filter(|(s, _)| *s < 400).count();
    eprintln!(
        "{} requests during the outage test: {served} served, {unavailable} answered 503",
        all.len()
    );
    assert!(served > 0);
    // And provisioning still works afterwards.
    app.fresh_tenant("after-outage").await;
}
