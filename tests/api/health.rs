use crate::helpers::{Backend, spawn_app};
use crate::store_tests;

store_tests!(
    health_reports_ok_with_a_real_database_check,
    health_is_503_degraded_when_the_database_is_unreachable
);

async fn health_reports_ok_with_a_real_database_check(backend: Backend) {
    let app = spawn_app(backend.clone()).await;
    let resp = app.get("/health").await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());
    let db = &body["services"]["database"];
    assert_eq!(db["status"], "ok");
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres(_) => "postgres",
    };
    assert_eq!(db["backend"], expected);
    assert!(db["latency_ms"].as_f64().is_some());
    assert_eq!(body["services"]["payments"]["backend"], "dev_checkout");
}

async fn health_is_503_degraded_when_the_database_is_unreachable(backend: Backend) {
    let app = spawn_app(backend).await;
    app.store.close().await;
    let resp = app.get("/health").await;
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["services"]["database"]["status"], "down");
    // Other endpoints degrade to a clear 503 instead of a 500.
    let resp = app.get("/tenant/tenant_01HZX3K9Q8W7ABCDEFGHJKMNPQ").await;
    assert_eq!(resp.status(), 503);
}
