use serde_json::{Value, json};

use crate::helpers::{Backend, TEST_PASSWORD, assert_error, spawn_app, spawn_app_with};
use crate::store_tests;

store_tests!(
    signup_returns_201_with_a_pending_tenant_and_checkout_url,
    signup_defaults_the_plan_to_starter,
    signup_returns_400_naming_each_invalid_field,
    signup_returns_4xx_for_malformed_bodies,
    signup_returns_409_for_a_taken_email_in_any_case,
    concurrent_signups_with_one_email_create_one_tenant,
    signup_stores_only_an_argon2id_hash_and_a_history_row,
    signup_is_rate_limited_per_client_ip,
    forwarded_for_is_believed_only_from_trusted_proxies,
);

fn body(email: &str) -> Value {
    json!({"email": email, "company_name": "Example Corp", "password": "SecurePass123!", "plan": "pro"})
}

async fn signup_returns_201_with_a_pending_tenant_and_checkout_url(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.post_json("/signup", &body("user@example.com")).await;
    assert_eq!(resp.status(), 201);
    let b: Value = resp.json().await.unwrap();
    let id = b["tenant_id"].as_str().unwrap();
    assert!(id.starts_with("tenant_"));
    assert_eq!(b["status"], "pending_payment");
    assert_eq!(b["plan"], "pro");
    let url = b["checkout_url"].as_str().unwrap();
    assert!(url.starts_with(&app.url("/dev/checkout/cs_dev_")), "{url}");
    assert!(b["message"].as_str().unwrap().len() > 10);
}

async fn signup_defaults_the_plan_to_starter(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app
        .post_json(
            "/signup",
            &json!({"email": "a@example.com", "company_name": "A", "password": "12345678"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["plan"], "starter");
}

async fn signup_returns_400_naming_each_invalid_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let long_local = format!("{}@example.com", "a".repeat(65));
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"company_name": "A", "password": "SecurePass123!"}),
            "email",
        ),
        (
            json!({"email": "", "company_name": "A", "password": "SecurePass123!"}),
            "email",
        ),
        (
            json!({"email": "no-at-sign", "company_name": "A", "password": "SecurePass123!"}),
            "email",
        ),
        (
            json!({"email": "a@b@example.com", "company_name": "A", "password": "SecurePass123!"}),
            "email",
        ),
        (
            json!({"email": "a@localhost", "company_name": "A", "password": "SecurePass123!"}),
            "email",
        ),
        (
            json!({"email": long_local, "company_name": "A", "password": "SecurePass123!"}),
            "email",
        ),
        (
            json!({"email": 42, "company_name": "A", "password": "SecurePass123!"}),
            "email",
        ),
        (
            json!({"email": "a@example.com", "password": "SecurePass123!"}),
            "company_name",
        ),
        (
            json!({"email": "a@example.com", "company_name": "   ", "password": "SecurePass123!"}),
            "company_name",
        ),
        (
            json!({"email": "a@example.com", "company_name": "x".repeat(201), "password": "SecurePass123!"}),
            "company_name",
        ),
        (
            json!({"email": "a@example.com", "company_name": "A"}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "company_name": "A", "password": "short"}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "company_name": "A", "password": "p".repeat(129)}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "company_name": "A", "password": "SecurePass123!", "plan": "gold"}),
            "plan",
        ),
        (
            json!({"email": "a@example.com", "company_name": "A", "password": "SecurePass123!", "plan": 3}),
            "plan",
        ),
    ];
    for (body, field) in cases {
        let resp = app.post_json("/signup", &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let b: Value = resp.json().await.unwrap();
        assert_eq!(b["error"]["field"], field, "{body} -> {b}");
        assert!(b["error"]["code"].as_str().is_some());
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(
            !msg.contains("SecurePass123!"),
            "the password is never echoed: {msg}"
        );
    }
    let tenants = app.store.list_tenants(None, 100).await.unwrap();
    assert!(tenants.is_empty(), "no invalid signup created a tenant");
}

async fn signup_returns_4xx_for_malformed_bodies(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.url("/signup");
    let c = &app.client;
    let resp = c
        .post(&url)
        .body(body("a@example.com").to_string())
        .send()
        .await
        .unwrap();
    assert_error(resp, 415, "unsupported_media_type").await;
    let resp = c
        .post(&url)
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_error(resp, 415, "unsupported_media_type").await;
    let resp = c
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "invalid_json").await;
    let resp = c
        .post(&url)
        .header("content-type", "application/json")
        .body("[1,2]")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = c
        .post(&url)
        .header("content-type", "application/json")
        .body("")
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "invalid_json").await;
    let huge = json!({"email": "a@example.com", "company_name": "A", "password": "SecurePass123!", "pad": "x".repeat(70 * 1024)});
    let resp = c.post(&url).json(&huge).send().await.unwrap();
    assert_error(resp, 413, "payload_too_large").await;
    // application/json with a charset parameter is fine.
    let resp = c
        .post(&url)
        .header("content-type", "application/json; charset=utf-8")
        .body(body("charset@example.com").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

async fn signup_returns_409_for_a_taken_email_in_any_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let first: Value = app
        .post_json("/signup", &body("Dup@Example.com"))
        .await
        .json()
        .await
        .unwrap();
    let resp = app.post_json("/signup", &body("dup@example.COM")).await;
    let err = assert_error(resp, 409, "email_taken").await;
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("log in"), "{msg}");
    let text = err.to_string();
    assert!(
        !text.contains(first["tenant_id"].as_str().unwrap()),
        "no tenant detail leaks: {text}"
    );
    assert!(!text.contains("pending_payment"));
}

async fn concurrent_signups_with_one_email_create_one_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/signup"));
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&body("race@example.com"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(app.store.list_tenants(None, 100).await.unwrap().len(), 1);
}

async fn signup_stores_only_an_argon2id_hash_and_a_history_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.signup("hash@example.com", "starter").await;
    let id = onboard::domain::TenantId::parse(b["tenant_id"].as_str().unwrap()).unwrap();
    let owners = app.store.members(&id).await.unwrap();
    assert_eq!(owners.len(), 1, "the signup is the tenant's one user");
    assert_eq!(owners[0].role, onboard::domain::Role::Owner);
    assert_eq!(owners[0].email, "hash@example.com");
    let t = &owners[0];
    assert!(
        t.password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        t.password_hash
    );
    assert!(!t.password_hash.contains(TEST_PASSWORD));
    assert!(onboard::domain::password::verify(
        TEST_PASSWORD,
        &t.password_hash,
        &mut onboard::domain::password::HashMemory::new()
    ));
    let history = app.store.status_history(&id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].from_status, None);
    assert_eq!(history[0].to_status, "pending_payment");
    assert_eq!(history[0].reason, "signup");
}

async fn signup_is_rate_limited_per_client_ip(backend: Backend) {
    let app = spawn_app_with(backend, &[("SIGNUP_RATE_LIMIT_PER_HOUR", "3")]).await;
    for i in 0..3 {
        let resp = app
            .post_json("/signup", &body(&format!("rl{i}@example.com")))
            .await;
        assert_eq!(resp.status(), 201);
    }
    let resp = app.post_json("/signup", &body("rl4@example.com")).await;
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&retry_after), "{retry_after}");
    let err = assert_error(resp, 429, "rate_limited").await;
    assert!(err["message"].as_str().unwrap().contains("3 per hour"));
    // The limit is kept in the database: a second server process over it sees the same count.
    let app = app.restart().await;
    let resp = app.post_json("/signup", &body("rl5@example.com")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(app.store.list_tenants(None, 100).await.unwrap().len(), 3);
}

async fn forwarded_for_is_believed_only_from_trusted_proxies(backend: Backend) {
    let untrusted = spawn_app_with(backend.clone(), &[("SIGNUP_RATE_LIMIT_PER_HOUR", "1")]).await;
    let send = |app: &crate::helpers::TestApp, email: String, xff: &'static str| {
        app.client
            .post(app.url("/signup"))
            .header("x-forwarded-for", xff)
            .json(&body(&email))
            .send()
    };
    assert_eq!(
        send(&untrusted, "u1@example.com".into(), "198.51.100.1")
            .await
            .unwrap()
            .status(),
        201
    );
    // Without TRUSTED_PROXIES the header is ignored: same socket address, so limited.
    assert_eq!(
        send(&untrusted, "u2@example.com".into(), "198.51.100.2")
            .await
            .unwrap()
            .status(),
        429
    );

    let trusted = spawn_app_with(
        backend,
        &[
            ("SIGNUP_RATE_LIMIT_PER_HOUR", "1"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await;
    assert_eq!(
        send(&trusted, "t1@example.com".into(), "198.51.100.1")
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        send(&trusted, "t2@example.com".into(), "198.51.100.2")
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        send(&trusted, "t3@example.com".into(), "198.51.100.1")
            .await
            .unwrap()
            .status(),
        429
    );
}
