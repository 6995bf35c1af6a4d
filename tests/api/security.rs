//! Hardening (issue 10): what an attacker, a crash and a slow client find. Headers on every
//! answer, cross-site requests, who may retry a tenant, slow clients, secrets in answers,
//! reused emails, key limits and rotation, metrics, plan storage limits.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use onboard::domain::TenantId;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY};
use serde_json::{Value, json};

use crate::helpers::{Backend, assert_error, spawn_app, spawn_app_with};
use crate::store_tests;

store_tests!(
    every_answer_carries_the_security_headers,
    cross_site_state_changes_are_refused_but_bearer_calls_are_not,
    only_the_checkout_holder_may_retry_a_tenant,
    a_failed_tenant_shows_a_public_reason_not_the_internal_error,
    an_unpaid_signup_gives_its_email_up_after_the_checkout_expired,
    the_first_key_is_revealed_only_within_its_window,
    a_tenant_holds_a_bounded_number_of_keys_listed_in_pages,
    usage_needs_a_scope,
    rotating_the_signing_secret_keeps_issued_keys_working,
    metrics_can_be_closed_with_a_token,
    plans_limit_stored_bytes_and_chunks,
    company_names_with_invisible_formatting_are_refused,
    the_vector_cache_loads_a_namespace_once_for_concurrent_queries,
    the_mailbox_is_closed_when_email_really_leaves,
    the_success_page_asks_stripe_at_most_once_every_few_seconds,
    a_slow_embeddings_api_never_holds_the_database_writer,
);

/// What a page from another site sends along with a form post.
const EVIL_ORIGIN: &str = "https://evil.example";

async fn every_answer_carries_the_security_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let page = app.get("/login").await;
    assert_eq!(page.status(), 200);
    let h = page.headers();
    let csp = h[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let script_src = csp
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .unwrap();
    assert!(!script_src.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.contains_key("referrer-policy"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(
        !h.contains_key("strict-transport-security"),
        "no HSTS over http"
    );
    assert_eq!(h[CACHE_CONTROL], "no-store");

    // No page carries an inline script: every script is a served file.
    for path in ["/login", "/docs", "/login/forgot"] {
        let html = app.get(path).await.text().await.unwrap();
        for tag in html.split("<script").skip(1) {
            assert!(
                tag.trim_start().starts_with("src="),
                "{path} has an inline script: <script{}",
                &tag[..tag.len().min(80)]
            );
        }
    }
    let js = app.get("/static/onboarding.js").await;
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.headers().get(CONTENT_SECURITY_POLICY).is_none());
    assert_error(app.get("/static/nope.js").await, 404, "not_found").await;

    // JSON answers carrying a session or a secret are never cached.
    let t = app.fresh_tenant("headers").await;
    let created = app
        .authed(reqwest::Method::POST, "/v1/api-keys", &t.api_key)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(created.headers()["x-content-type-options"], "nosniff");
    let health = app.get("/health").await;
    assert_eq!(health.headers()[CACHE_CONTROL], "no-store");
}

async fn cross_site_state_changes_are_refused_but_bearer_calls_are_not(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tid, session) = app.checkout("csrf@example.com", "starter").await;
    for (path, body) in [
        (format!("/tenant/{tid}/retry?session_id={session}"), ""),
        ("/logout".to_string(), ""),
        ("/login/forgot".to_string(), "email=csrf%40example.com"),
        (format!("/dev/checkout/{session}/pay"), ""),
    ] {
        let resp = app
            .client
            .post(app.url(&path))
            .header("origin", EVIL_ORIGIN)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(resp, 403, "cross_site_request").await;
    }
    // The dev checkout was not paid by the forged post.
    let status: Value = app
        .get(&format!("/tenant/{tid}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "pending_payment");
    // Newer browsers say so in Sec-Fetch-Site too.
    let resp = app
        .client
        .post(app.url("/logout"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, "cross_site_request").await;

    // An API call carries its own credential, which no other site can borrow.
    let t = app.fresh_tenant("bearer").await;
    let resp = app
        .authed(reqwest::Method::POST, "/v1/query", &t.api_key)
        .header("origin", EVIL_ORIGIN)
        .json(&json!({"query": "refund", "top_k": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

async fn only_the_checkout_holder_may_retry_a_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tid, session) = app.checkout("retry-owner@example.com", "starter").await;
    let (_, other_session) = app.checkout("someone-else@example.com", "starter").await;
    let post = |path: String| {
        let app = &app;
        async move { app.client.post(app.url(&path)).send().await.unwrap() }
    };
    let resp = post(format!("/tenant/{tid}/retry")).await;
    let err = assert_error(resp, 400, "invalid_session_id").await;
    assert_eq!(err["field"], "session_id");
    let resp = post(format!("/tenant/{tid}/retry?session_id={other_session}")).await;
    assert_error(resp, 403, "not_your_tenant").await;
    let resp = post(format!("/tenant/{tid}/retry?session_id=cs_guess")).await;
    assert_error(resp, 403, "not_your_tenant").await;
    // The holder may; this tenant is not failed, so there is nothing to retry.
    let resp = post(format!("/tenant/{tid}/retry?session_id={session}")).await;
    assert_error(resp, 409, "invalid_transition").await;
}

async fn a_failed_tenant_shows_a_public_reason_not_the_internal_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tid, session) = app.checkout("failing@example.com", "starter").await;
    let id = TenantId::parse(&tid).unwrap();
    let internal = "provisioning failed after 3 attempts: step namespace failed: vector store \
                    unavailable: error sending request to http://10.1.2.3:8443/vectors/upsert";
    let mut tx = app.store.begin().await.unwrap();
    tx.transition_tenant(
        &id,
        onboard::domain::TenantStatus::Provisioning,
        "paid",
        "test",
    )
    .await
    .unwrap();
    tx.transition_tenant(&id, onboard::domain::TenantStatus::Failed, internal, "test")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for path in [
        format!("/tenant/{tid}"),
        format!("/onboarding/status?session_id={session}"),
    ] {
        let body = app.get(&path).await.text().await.unwrap();
        assert!(body.contains("\"failed\""), "{path}: {body}");
        assert!(body.contains("retried"), "{path}: {body}");
        for secret in ["10.1.2.3", "vector store unavailable", "upsert"] {
            assert!(!body.contains(secret), "{path} leaks {secret}: {body}");
        }
    }
    // Operators still see the reason.
    let t = app.store.tenant(&id).await.unwrap().unwrap();
    assert_eq!(t.status_reason.as_deref(), Some(internal));
}

async fn an_unpaid_signup_gives_its_email_up_after_the_checkout_expired(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.signup("again@example.com", "starter").await;
    let again = app
        .post_json(
            "/signup",
            &json!({"email": "again@example.com", "company_name": "Acme", "password": crate::helpers::TEST_PASSWORD}),
        )
        .await;
    assert_error(again, 409, "email_taken").await;
    // A day and a bit later the checkout has expired unpaid.
    let old = first["tenant_id"].as_str().unwrap();
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query("UPDATE tenants SET created_at = created_at - $1 WHERE id = $2")
            .bind(25 * 3_600_000_i64)
            .bind(old)
            .execute(pool)
            .await
            .unwrap();
    });
    let second = app.signup("Again@Example.com", "pro").await;
    assert_ne!(second["tenant_id"], first["tenant_id"]);
    let old_now: Value = app
        .get(&format!("/tenant/{old}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(old_now["status"], "abandoned");
    // The new one holds it now: paid-for or pending, it is not released.
    let third = app
        .post_json(
            "/signup",
            &json!({"email": "again@example.com", "company_name": "Acme", "password": crate::helpers::TEST_PASSWORD}),
        )
        .await;
    assert_error(third, 409, "email_taken").await;

    // An active tenant keeps its email however old.
    let t = app.fresh_tenant("keeper").await;
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query("UPDATE tenants SET created_at = created_at - $1 WHERE id = $2")
            .bind(90 * 86_400_000_i64)
            .bind(&t.tenant_id)
            .execute(pool)
            .await
            .unwrap();
    });
    let resp = app
        .post_json(
            "/signup",
            &json!({"email": t.email, "company_name": "Acme", "password": crate::helpers::TEST_PASSWORD}),
        )
        .await;
    assert_error(resp, 409, "email_taken").await;
}

async fn the_first_key_is_revealed_only_within_its_window(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tid, session) = app.checkout("late-reveal@example.com", "starter").await;
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    app.wait_for_status(&tid, "active", 30).await;
    // Eleven minutes pass before anyone looks.
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query("UPDATE tenants SET activated_at = activated_at - $1 WHERE id = $2")
            .bind(11 * 60_000_i64)
            .bind(&tid)
            .execute(pool)
            .await
            .unwrap();
    });
    let status: Value = app
        .get(&format!("/onboarding/status?session_id={session}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "active");
    assert!(status["api_key"].is_null(), "{status}");
    // The housekeeping job erases what could still reveal it.
    let id = TenantId::parse(&tid).unwrap();
    let forgotten = app
        .store
        .forget_stale_reveals(onboard::store::now_ms() + 1)
        .await
        .unwrap();
    assert!(forgotten >= 1);
    let keys = app.store.list_api_keys(&id).await.unwrap();
    for k in keys {
        assert!(
            app.store
                .reveal_api_key_once(&app.state.signer, &k.id)
                .await
                .unwrap()
                .is_none()
        );
    }
}

async fn a_tenant_holds_a_bounded_number_of_keys_listed_in_pages(backend: Backend) {
    let app = spawn_app_with(backend, &[("MAX_API_KEYS", "3")]).await;
    let t = app.fresh_tenant("keys").await;
    let create = |name: &'static str| {
        let (app, key) = (&app, t.api_key.clone());
        async move {
            app.authed(reqwest::Method::POST, "/v1/api-keys", &key)
                .json(&json!({"name": name}))
                .send()
                .await
                .unwrap()
        }
    };
    // The first key is live already: two more fit.
    assert_eq!(create("two").await.status(), 201);
    let three: Value = create("three").await.json().await.unwrap();
    let err = assert_error(create("four").await, 409, "key_limit_reached").await;
    assert!(err["message"].as_str().unwrap().contains('3'), "{err}");
    // Revoking one makes room; rotating never needs any.
    let id = three["id"].as_str().unwrap();
    let rotated = app
        .call(
            reqwest::Method::POST,
            &format!("/v1/api-keys/{id}/rotate"),
            &t.api_key,
        )
        .await;
    assert_eq!(rotated.status(), 201);
    let rotated: Value = rotated.json().await.unwrap();
    let resp = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/api-keys/{}", rotated["id"].as_str().unwrap()),
            &t.api_key,
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(create("four").await.status(), 201);

    // Pages of two, newest first, until the cursor runs out.
    let mut seen = Vec::new();
    let mut path = "/v1/api-keys?limit=2".to_string();
    loop {
        let page: Value = app
            .call(reqwest::Method::GET, &path, &t.api_key)
            .await
            .json()
            .await
            .unwrap();
        let keys = page["keys"].as_array().unwrap();
        assert!(keys.len() <= 2);
        seen.extend(keys.iter().map(|k| k["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/api-keys?limit=2&cursor={c}"),
            None => break,
        }
    }
    let all = app
        .store
        .list_api_keys(&TenantId::parse(&t.tenant_id).unwrap())
        .await
        .unwrap();
    assert_eq!(
        seen,
        all.iter().map(|k| k.id.clone()).collect::<Vec<_>>(),
        "every key once, in order"
    );
    for bad in ["limit=0", "limit=101", "cursor=nonsense"] {
        let resp = app
            .call(
                reqwest::Method::GET,
                &format!("/v1/api-keys?{bad}"),
                &t.api_key,
            )
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

async fn usage_needs_a_scope(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("usage").await;
    assert_eq!(
        app.call(reqwest::Method::GET, "/v1/usage", &t.api_key)
            .await
            .status(),
        200
    );
    let only_query: Value = app
        .authed(reqwest::Method::POST, "/v1/api-keys", &t.api_key)
        .json(&json!({"name": "q", "scopes": ["query"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = app
        .call(
            reqwest::Method::GET,
            "/v1/usage",
            only_query["api_key"].as_str().unwrap(),
        )
        .await;
    assert_error(resp, 403, "insufficient_scope").await;
    let reader: Value = app
        .authed(reqwest::Method::POST, "/v1/api-keys", &t.api_key)
        .json(&json!({"name": "u", "scopes": ["usage:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = app
        .call(
            reqwest::Method::GET,
            "/v1/usage",
            reader["api_key"].as_str().unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let usage: Value = resp.json().await.unwrap();
    assert!(
        usage["bytes"]["limit"].is_u64() && usage["chunks"]["used"].is_i64(),
        "{usage}"
    );
}

async fn rotating_the_signing_secret_keeps_issued_keys_working(backend: Backend) {
    let old_secret = "the-first-signing-secret-of-this-deployment";
    let app = spawn_app_with(
        backend,
        &[("JWT_SECRET", old_secret), ("JWT_KEY_ID", "2026-01")],
    )
    .await;
    let t = app.fresh_tenant("rotation").await;
    let ok = |resp: reqwest::Response| resp.status() == 200;
    assert!(ok(app
        .call(reqwest::Method::GET, "/v1/documents", &t.api_key)
        .await));
    // The next deployment signs with a new secret and keeps the old one for verification.
    let rotated = app
        .restart_with(&[
            ("JWT_SECRET", "the-second-signing-secret-of-this-deployment"),
            ("JWT_KEY_ID", "2026-07"),
            ("JWT_PREVIOUS_SECRETS", &format!("2026-01:{old_secret}")),
        ])
        .await;
    assert!(ok(rotated
        .call(reqwest::Method::GET, "/v1/documents", &t.api_key)
        .await));
    let fresh: Value = rotated
        .authed(reqwest::Method::POST, "/v1/api-keys", &t.api_key)
        .json(&json!({"name": "new"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh = fresh["api_key"].as_str().unwrap().to_string();
    assert!(ok(rotated
        .call(reqwest::Method::GET, "/v1/documents", &fresh)
        .await));
    // Once the old secret is dropped, its keys stop working; the new ones do not.
    let retired = rotated
        .restart_with(&[
            ("JWT_SECRET", "the-second-signing-secret-of-this-deployment"),
            ("JWT_KEY_ID", "2026-07"),
        ])
        .await;
    let resp = retired
        .call(reqwest::Method::GET, "/v1/documents", &t.api_key)
        .await;
    assert_error(resp, 401, "invalid_api_key").await;
    assert!(ok(retired
        .call(reqwest::Method::GET, "/v1/documents", &fresh)
        .await));
}

async fn metrics_can_be_closed_with_a_token(backend: Backend) {
    let open = spawn_app(backend.clone()).await;
    assert_eq!(open.get("/metrics").await.status(), 200);
    let token = "a-metrics-scraper-token";
    let app = spawn_app_with(backend, &[("METRICS_TOKEN", token)]).await;
    let resp = app.get("/metrics").await;
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_error(resp, 401, "unauthorized").await;
    let resp = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("onboard_"));
}

async fn plans_limit_stored_bytes_and_chunks(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[("PLAN_LIMITS", "starter.max_bytes=3000,pro.max_chunks=3")],
    )
    .await;
    let t = app.fresh_tenant("bytes").await;
    let two_kb = "Refunds are issued within five days. ".repeat(55);
    let first = app.upload(&t.api_key, "first", &two_kb).await;
    let resp = app.try_upload(&t.api_key, "second", &two_kb).await;
    let err = assert_error(resp, 402, "storage_limit_reached").await;
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("3000 bytes"), "{message}");
    assert!(message.contains("pro plan"), "{message}");
    // Usage counts what is stored; deleting gives the room back.
    let usage: Value = app
        .call(reqwest::Method::GET, "/v1/usage", &t.api_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["bytes"]["used"], two_kb.len(), "{usage}");
    assert_eq!(
        usage["documents"]["used"], 1,
        "samples do not count: {usage}"
    );
    let resp = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/documents/{}", first["id"].as_str().unwrap()),
            &t.api_key,
        )
        .await;
    assert_eq!(resp.status(), 204);
    app.upload(&t.api_key, "second", &two_kb).await;

    let p = app
        .active_tenant(&format!("chunks-{}@example.com", ulid::Ulid::new()), "pro")
        .await;
    // About 800 characters a chunk: 2 KB is three chunks, the plan's whole allowance.
    let doc = app.upload(&p.api_key, "three chunks", &two_kb).await;
    assert_eq!(doc["chunk_count"], 3, "{doc}");
    let resp = app
        .try_upload(&p.api_key, "one more", "A short note.")
        .await;
    let err = assert_error(resp, 402, "storage_limit_reached").await;
    assert!(err["message"].as_str().unwrap().contains("chunks"));
}

async fn company_names_with_invisible_formatting_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app
        .post_json(
            "/signup",
            &json!({"email": "rlo@example.com", "company_name": "Acme\u{202E}gnp.exe", "password": crate::helpers::TEST_PASSWORD}),
        )
        .await;
    let err = assert_error(resp, 400, "invalid_company_name").await;
    assert_eq!(err["field"], "company_name");
    assert!(err["message"].as_str().unwrap().contains("U+202E"));
}

async fn the_vector_cache_loads_a_namespace_once_for_concurrent_queries(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("single-flight").await;
    app.upload(&t.api_key, "doc", "Refunds are issued within five days.")
        .await;
    // Another process wrote meanwhile: this one's copy is stale and must be reloaded.
    let namespace = onboard::workspace::namespace_for(&TenantId::parse(&t.tenant_id).unwrap());
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query("UPDATE vector_namespaces SET version = version + 1 WHERE name = $1")
            .bind(&namespace)
            .execute(pool)
            .await
            .unwrap();
    });
    let before = app.state.vectors.namespace_loads();
    let queries: Vec<_> = (0..16)
        .map(|_| {
            let (app, key) = (&app, t.api_key.clone());
            async move { app.query(&key, "refund", 3).await.status() }
        })
        .collect();
    for status in futures_util::future::join_all(queries).await {
        assert_eq!(status, 200);
    }
    assert_eq!(
        app.state.vectors.namespace_loads() - before,
        1,
        "sixteen concurrent queries, one load"
    );
}

// ----------------------------------------------------------------------- slow clients

/// Reads until the server closes the connection (or `limit` passes); what it sent.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_hold_connections() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("HTTP_HEADER_TIMEOUT_SECONDS", "1"),
            ("HTTP_REQUEST_TIMEOUT_SECONDS", "2"),
        ],
    )
    .await;
    let addr = app.addr;
    let t = app.fresh_tenant("slow-client").await;
    let key = t.api_key.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        // Slowloris: headers that never end.
        let mut slow_headers = TcpStream::connect(addr).unwrap();
        slow_headers
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let started = Instant::now();
        let (_, closed) = read_until_closed(&mut slow_headers, Duration::from_secs(8));
        let headers_closed_after = started.elapsed();
        assert!(
            closed,
            "a connection that never finishes its headers is closed"
        );

        // An idle kept-alive connection is closed too.
        let mut idle = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(8));
        assert!(closed, "an idle connection is closed");
        let idle_closed_after = started.elapsed();

        // A large upload (within the size limit) at a byte a second, with a valid key: cut
        // with a 408 once the request time is up.
        let mut slow_body = TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /v1/documents?title=slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: text/plain\r\nContent-Length: 900000\r\n\r\n"
        );
        slow_body.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let mut answer = String::new();
        let mut closed = false;
        while started.elapsed() < Duration::from_secs(10) {
            if slow_body.write_all(b"a").is_err() {
                closed = true;
                break;
            }
            let (got, done) = read_until_closed(&mut slow_body, Duration::from_millis(800));
            answer.push_str(&got);
            if done || !answer.is_empty() {
                closed = true;
                break;
            }
        }
        (
            headers_closed_after,
            idle_closed_after,
            closed,
            answer,
            started.elapsed(),
        )
    })
    .await
    .unwrap();
    let (headers_after, idle_after, body_closed, answer, body_after) = outcome;
    assert!(headers_after < Duration::from_secs(4), "{headers_after:?}");
    assert!(idle_after < Duration::from_secs(4), "{idle_after:?}");
    assert!(body_closed, "the slow upload was cut");
    assert!(body_after < Duration::from_secs(6), "{body_after:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // The server still answers everyone else.
    assert_eq!(app.get("/health").await.status(), 200);
}

async fn the_mailbox_is_closed_when_email_really_leaves(backend: Backend) {
    let outbox = spawn_app(backend.clone()).await;
    assert_eq!(outbox.get("/dev/mailbox").await.status(), 200);
    let smtp = spawn_app_with(backend, &[("SMTP_URL", "smtp://127.0.0.1:2525")]).await;
    assert_error(smtp.get("/dev/mailbox").await, 404, "not_found").await;
    assert_error(smtp.get("/dev/mailbox/msg_x").await, 404, "not_found").await;
    // The dev checkout is still on: payments are not configured.
    let (_, session) = smtp.checkout("smtp@example.com", "starter").await;
    assert_eq!(
        smtp.get(&format!("/dev/checkout/{session}")).await.status(),
        200
    );
}

async fn the_success_page_asks_stripe_at_most_once_every_few_seconds(backend: Backend) {
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "cs_test_fanout", "object": "checkout.session",
            "url": "https://checkout.stripe.com/c/pay/cs_test_fanout"
        })))
        .mount(&stripe)
        .await;
    // The customer has not paid yet: every lookup says so.
    Mock::given(method("GET"))
        .and(path_regex("^/v1/checkout/sessions/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "cs_test_fanout", "object": "checkout.session", "status": "open",
            "payment_status": "unpaid"
        })))
        .mount(&stripe)
        .await;
    let app = spawn_app_with(
        backend,
        &[
            ("STRIPE_SECRET_KEY", "sk_test_fanout"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_test_fanout_secret"),
            ("STRIPE_API_BASE", &stripe.uri()),
            ("STRIPE_PRICE_ID_STARTER", "price_fanout"),
        ],
    )
    .await;
    app.signup("fanout@example.com", "starter").await;
    for _ in 0..10 {
        assert_eq!(
            app.get("/onboarding/status?session_id=cs_test_fanout")
                .await
                .status(),
            200
        );
        assert_eq!(
            app.get("/onboarding/success?session_id=cs_test_fanout")
                .await
                .status(),
            200
        );
    }
    let lookups = stripe
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(lookups, 1, "twenty page loads, one lookup at Stripe");
}

async fn a_slow_embeddings_api_never_holds_the_database_writer(backend: Backend) {
    let embeddings = crate::fakes::FakeEmbeddings::start(None, 16).await;
    let url = embeddings.base_url();
    let app = spawn_app_with(
        backend,
        &[
            ("EMBEDDINGS_URL", url.as_str()),
            ("EMBEDDINGS_DIMENSION", "16"),
        ],
    )
    .await;
    let (tid, session) = app.checkout("slow-embed@example.com", "starter").await;
    // Each embeddings call now takes three seconds: provisioning embeds the sample documents.
    embeddings.set_delay(Duration::from_secs(3));
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    crate::helpers::eventually("provisioning to ask the embeddings API", 10, || async {
        (!embeddings.requests().is_empty()).then_some(())
    })
    .await;
    // Meanwhile other writes go through: a signup (and its tenant row) commits while the
    // tenant is still waiting for its embeddings.
    app.signup("meanwhile@example.com", "starter").await;
    let status: Value = app
        .get(&format!("/tenant/{tid}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["status"], "provisioning",
        "the signup did not wait for the embeddings"
    );
    app.wait_for_status(&tid, "active", 30).await;
}
