use crate::helpers::{Backend, assert_error, spawn_app};
use crate::store_tests;

store_tests!(
    get_tenant_returns_its_public_status,
    get_tenant_returns_404_json_for_unknown_or_malformed_ids,
    tenant_created_before_a_restart_is_there_after,
    dev_checkout_page_shows_the_plan_and_price,
);

async fn get_tenant_returns_its_public_status(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.signup("status@example.com", "pro").await;
    let id = created["tenant_id"].as_str().unwrap();
    let resp = app.get(&format!("/tenant/{id}")).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["tenant_id"], id);
    assert_eq!(body["status"], "pending_payment");
    assert_eq!(body["plan"], "pro");
    assert_eq!(body["company_name"], "Acme");
    assert!(chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).is_ok());
    assert!(body["activated_at"].is_null());
    let text = body.to_string();
    assert!(
        !text.contains("status@example.com"),
        "email is not public: {text}"
    );
    assert!(!text.contains("argon2"), "hash is not public: {text}");
}

async fn get_tenant_returns_404_json_for_unknown_or_malformed_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/tenant/tenant_01HZX3K9Q8W7ABCDEFGHJKMNPQ",
        "/tenant/not-a-tenant",
        "/tenant/tenant_%27%20OR%201%3D1",
    ] {
        assert_error(app.get(path).await, 404, "not_found").await;
    }
    assert_error(app.get("/no/such/route").await, 404, "not_found").await;
    let resp = app.client.put(app.url("/signup")).send().await.unwrap();
    assert_error(resp, 405, "method_not_allowed").await;
}

async fn tenant_created_before_a_restart_is_there_after(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.signup("restart@example.com", "starter").await;
    let id = created["tenant_id"].as_str().unwrap().to_string();
    let app = app.restart().await;
    let body: serde_json::Value = app
        .get(&format!("/tenant/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["tenant_id"], id.as_str());
    assert_eq!(body["status"], "pending_payment");
    // And the email is still taken.
    let resp = app
        .post_json(
            "/signup",
            &serde_json::json!({"email": "restart@example.com", "company_name": "A", "password": "SecurePass123!"}),
        )
        .await;
    assert_eq!(resp.status(), 409);
}

async fn dev_checkout_page_shows_the_plan_and_price(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.signup("page@example.com", "pro").await;
    let url = created["checkout_url"].as_str().unwrap();
    assert!(url.starts_with(&app.url("/dev/checkout/")), "{url}");
    let resp = app.client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("$199"), "{html}");
    assert!(html.contains("pro"));
}
