//! The tenant's workspace over its API key: key attacks, key management, documents, queries,
//! plan limits, isolation between tenants and activation milestones, on both stores.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, eventually, spawn_app, spawn_app_with};
use crate::store_tests;
use onboard::domain::TenantId;

store_tests!(
    requests_without_a_valid_key_are_refused,
    forged_and_tampered_keys_are_refused,
    revocation_is_immediate_here_and_within_seconds_elsewhere,
    expired_keys_are_refused,
    keys_can_be_listed_created_scoped_rotated_and_revoked,
    documents_can_be_added_listed_read_and_deleted,
    bad_documents_get_clear_errors,
    a_document_about_x_ranks_first_for_a_query_about_x,
    plan_limits_refuse_with_the_plan_that_lifts_them,
    tenants_never_see_each_others_data,
    milestones_are_recorded_once_and_only_for_real_activity,
    key_use_is_recorded_in_batches,
    a_key_that_cannot_be_checked_is_a_503_not_a_refusal,
    undecodable_path_parameters_are_a_json_400,
);

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Splits `onb_<header>.<claims>.<sig>` into decoded header and claims.
fn parts(key: &str) -> (Value, Value) {
    let jwt = key.strip_prefix("onb_").unwrap();
    let mut it = jwt.split('.');
    let h = serde_json::from_slice(&B64.decode(it.next().unwrap()).unwrap()).unwrap();
    let c = serde_json::from_slice(&B64.decode(it.next().unwrap()).unwrap()).unwrap();
    (h, c)
}

fn hs(alg: jsonwebtoken::Algorithm, kid: &str, claims: &Value, secret: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.to_string());
    let jwt = jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap();
    format!("onb_{jwt}")
}

async fn get_status(app: &TestApp, key: &str) -> reqwest::Response {
    app.call(Method::GET, "/v1/documents?limit=1", key).await
}

async fn requests_without_a_valid_key_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.get("/v1/documents").await;
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_error(resp, 401, "missing_api_key").await;
    for bad in [
        "",
        "onb_",
        "onb_not.a.jwt",
        "sk_live_something",
        "Basic abc",
    ] {
        let resp = app.call(Method::GET, "/v1/documents", bad).await;
        assert_eq!(resp.status(), 401, "{bad:?}");
    }
    let resp = app
        .client
        .get(app.url("/v1/usage"))
        .header("authorization", "Token abc")
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "missing_api_key").await;
}

/// With the database gone, a key that is not cached cannot be checked: the answer says to try
/// again (503), never that the key is bad (a client would throw a good key away).
async fn a_key_that_cannot_be_checked_is_a_503_not_a_refusal(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("outage").await;
    app.state.store.close().await;
    let resp = get_status(&app, &t.api_key).await;
    assert!(!resp.headers().contains_key("www-authenticate"));
    assert_error(resp, 503, "unavailable").await;
}

async fn undecodable_path_parameters_are_a_json_400(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("path").await;
    let resp = app.call(Method::GET, "/v1/documents/%FF", &t.api_key).await;
    assert_error(resp, 400, "invalid_path_parameter").await;
    for path in ["/tenant/%FF", "/dev/mailbox/%C3"] {
        assert_error(app.get(path).await, 400, "invalid_path_parameter").await;
    }
}

async fn forged_and_tampered_keys_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("forge").await;
    assert_eq!(get_status(&app, &t.api_key).await.status(), 200);
    let (header, claims) = parts(&t.api_key);
    let kid = header["kid"].as_str().unwrap();
    let secret = onboard::config::DEV_JWT_SECRET.as_bytes();

    // alg: none, with the real claims and kid.
    let none = format!(
        "onb_{}.{}.",
        B64.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string()),
        B64.encode(claims.to_string())
    );
    // Another algorithm with the right secret.
    let hs512 = hs(jsonwebtoken::Algorithm::HS512, kid, &claims, secret);
    // Right algorithm, unknown kid.
    let unknown_kid = hs(
        jsonwebtoken::Algorithm::HS256,
        "0badc0ffee00",
        &claims,
        secret,
    );
    // Right kid, wrong secret.
    let wrong_secret = hs(
        jsonwebtoken::Algorithm::HS256,
        kid,
        &claims,
        b"someone-elses-secret-entirely",
    );
    // A flipped signature character.
    // (The first signature character: the last one carries padding bits a decoder may ignore.)
    let sig_at = t.api_key.rfind('.').unwrap() + 1;
    let first = &t.api_key[sig_at..=sig_at];
    let tampered = format!(
        "{}{}{}",
        &t.api_key[..sig_at],
        if first == "A" { "B" } else { "A" },
        &t.api_key[sig_at + 1..]
    );
    // Claims edited to widen the scope, signature kept.
    let mut wider = claims.clone();
    wider["scope"] = json!("documents:write query keys:manage sample_data:write admin");
    let sig = t.api_key.rsplit('.').next().unwrap();
    let edited = format!(
        "onb_{}.{}.{sig}",
        t.api_key
            .strip_prefix("onb_")
            .unwrap()
            .split('.')
            .next()
            .unwrap(),
        B64.encode(wider.to_string())
    );
    for (name, key) in [
        ("alg none", none),
        ("HS512", hs512),
        ("unknown kid", unknown_kid),
        ("wrong secret", wrong_secret),
        ("tampered signature", tampered),
        ("edited claims", edited),
    ] {
        let resp = get_status(&app, &key).await;
        let err = assert_error(resp, 401, "invalid_api_key").await;
        assert!(!err["message"].as_str().unwrap().is_empty(), "{name}");
    }

    // A correctly signed token whose jti is not in our key table, or that names another tenant.
    let mut unknown_jti = claims.clone();
    unknown_jti["jti"] = json!("never-issued");
    let other = app.fresh_tenant("victim").await;
    let mut other_tid = claims.clone();
    other_tid["tid"] = json!(other.tenant_id);
    for (name, c) in [("unknown jti", unknown_jti), ("other tenant", other_tid)] {
        let key = hs(jsonwebtoken::Algorithm::HS256, kid, &c, secret);
        assert_eq!(get_status(&app, &key).await.status(), 401, "{name}");
    }
}

async fn revocation_is_immediate_here_and_within_seconds_elsewhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("revoke").await;
    let created: Value = app
        .authed(Method::POST, "/v1/api-keys", &t.api_key)
        .json(&json!({"name": "ci", "scopes": ["query"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, key) = (
        created["id"].as_str().unwrap().to_string(),
        created["api_key"].as_str().unwrap().to_string(),
    );
    // Another server process (a second OS process) over the same database, with its own
    // cache, has seen the key.
    let elsewhere = crate::helpers::ServerProcess::start(&app).await;
    assert_ne!(elsewhere.pid(), std::process::id());
    let there = |key: String| {
        let (client, url) = (
            app.client.clone(),
            format!("{}/v1/documents?limit=1", elsewhere.base),
        );
        async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(there(key.clone()).await, 200, "cached there");
    assert_eq!(
        get_status(&app, &key).await.status(),
        200,
        "cached here too"
    );

    let resp = app
        .authed(Method::DELETE, &format!("/v1/api-keys/{id}"), &t.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    // Here: the very next request is refused.
    assert_error(get_status(&app, &key).await, 401, "revoked_api_key").await;
    // There: refused once the cache entry ages out, well within 5 s.
    let started = std::time::Instant::now();
    eventually("revocation reaching the other process", 5, || {
        let fut = there(key.clone());
        async move { (fut.await == 401).then_some(()) }
    })
    .await;
    assert!(started.elapsed() <= std::time::Duration::from_secs(5));
    // Revoking twice, or a key that does not exist: 404.
    let again = app
        .authed(Method::DELETE, &format!("/v1/api-keys/{id}"), &t.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}

async fn expired_keys_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("expiry").await;
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let mut tx = app.store.begin().await.unwrap();
    let key = tx
        .issue_api_key(&app.state.signer, &id, "short", &["query"], Some(1), false)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let key = secrecy::ExposeSecret::expose_secret(&key.token).to_string();
    assert_eq!(get_status(&app, &key).await.status(), 200);
    eventually("the one-second key to expire", 5, || async {
        (get_status(&app, &key).await.status() == 401).then_some(())
    })
    .await;
    assert_error(get_status(&app, &key).await, 401, "expired_api_key").await;
}

async fn keys_can_be_listed_created_scoped_rotated_and_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("keys").await;
    let list: Value = app
        .call(Method::GET, "/v1/api-keys", &t.api_key)
        .await
        .json()
        .await
        .unwrap();
    let text = list.to_string();
    assert!(!text.contains(&t.api_key), "secrets are never listed");
    assert!(
        list["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "Default key")
    );

    for (body, field) in [
        (json!({"scopes": ["admin"]}), "scopes"),
        (json!({"scopes": ["sample_data:write"]}), "scopes"),
        (json!({"scopes": []}), "scopes"),
        (json!({"name": ""}), "name"),
        (json!({"expires_in_days": 0}), "expires_in_days"),
    ] {
        let resp = app
            .authed(Method::POST, "/v1/api-keys", &t.api_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let err = assert_error(resp, 400, err_code(field)).await;
        assert_eq!(err["field"], field, "{body}");
    }

    let created: Value = app
        .authed(Method::POST, "/v1/api-keys", &t.api_key)
        .json(&json!({"name": "reader", "scopes": ["query"], "expires_in_days": 30}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reader = created["api_key"].as_str().unwrap().to_string();
    assert_eq!(created["scopes"], json!(["query"]));
    assert!(created["expires_at"].is_i64());
    // A query-only key queries, but cannot write or manage keys.
    assert_eq!(app.query(&reader, "anything", 3).await.status(), 200);
    let resp = app
        .authed(Method::POST, "/v1/documents", &reader)
        .json(&json!({"title": "x", "content": "y"}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, "insufficient_scope").await;
    let resp = app.call(Method::GET, "/v1/api-keys", &reader).await;
    assert_error(resp, 403, "insufficient_scope").await;

    // Rotation: a new secret with the same name and scopes; the old one stops at once.
    let id = created["id"].as_str().unwrap();
    let rotated: Value = app
        .authed(
            Method::POST,
            &format!("/v1/api-keys/{id}/rotate"),
            &t.api_key,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_key = rotated["api_key"].as_str().unwrap();
    assert_ne!(new_key, reader);
    assert_eq!(rotated["name"], "reader");
    assert_eq!(rotated["scopes"], json!(["query"]));
    assert_error(
        app.query(&reader, "anything", 3).await,
        401,
        "revoked_api_key",
    )
    .await;
    assert_eq!(app.query(new_key, "anything", 3).await.status(), 200);
    let resp = app
        .authed(
            Method::POST,
            &format!("/v1/api-keys/{id}/rotate"),
            &t.api_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "a revoked key cannot be rotated");
}

fn err_code(field: &str) -> &'static str {
    match field {
        "scopes" => "invalid_scope",
        "name" => "invalid_name",
        _ => "invalid_expiry",
    }
}

async fn documents_can_be_added_listed_read_and_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("docs").await;
    let key = &t.api_key;
    let doc = app
        .upload(
            key,
            "Refund policy",
            "Customers may ask for a refund within 30 days.",
        )
        .await;
    let id = doc["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("doc_"));
    assert_eq!(doc["chunk_count"], 1);
    assert_eq!(doc["sample"], false);

    // A markdown upload takes its title from the first heading.
    let md = "# Onboarding guide\n\nStep one: sign up.\n\nStep two: upload documents.";
    let resp = app
        .authed(Method::POST, "/v1/documents", key)
        .header("content-type", "text/markdown; charset=utf-8")
        .body(md)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let md_doc: Value = resp.json().await.unwrap();
    assert_eq!(md_doc["title"], "Onboarding guide");
    assert_eq!(md_doc["content_type"], "text/markdown");
    let resp = app
        .authed(Method::POST, "/v1/documents?title=Notes", key)
        .header("content-type", "text/plain")
        .body("plain text body")
        .send()
        .await
        .unwrap();
    let plain: Value = resp.json().await.unwrap();
    assert_eq!(plain["title"], "Notes");

    let got: Value = app
        .authed(Method::GET, &format!("/v1/documents/{id}"), key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        got["content"],
        "Customers may ask for a refund within 30 days."
    );
    assert_eq!(got["metadata"]["source"], "test");

    // The list holds the three sample documents and ours, and pages with a cursor.
    let list: Value = app
        .call(Method::GET, "/v1/documents?limit=100", key)
        .await
        .json()
        .await
        .unwrap();
    let docs = list["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 6);
    assert_eq!(docs.iter().filter(|d| d["sample"] == true).count(), 3);
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = app
            .authed(
                Method::GET,
                &format!("/v1/documents?limit=4&cursor={cursor}"),
                key,
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(
            page["documents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "pages cover every document once: {seen:?}");

    let resp = app
        .authed(Method::DELETE, &format!("/v1/documents/{id}"), key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = app
        .authed(Method::GET, &format!("/v1/documents/{id}"), key)
        .send()
        .await
        .unwrap();
    assert_error(resp, 404, "not_found").await;
    let hits: Value = app
        .query(key, "refund within 30 days", 10)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        hits["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["document_id"] != id.as_str()),
        "a deleted document is no longer found: {hits}"
    );
    let resp = app
        .authed(Method::DELETE, &format!("/v1/documents/{id}"), key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

async fn bad_documents_get_clear_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("bad").await;
    let key = &t.api_key;
    let post = |body: Value| {
        app.authed(Method::POST, "/v1/documents", key)
            .json(&body)
            .send()
    };
    let raw = |content_type: &str, body: reqwest::Body| {
        app.authed(Method::POST, "/v1/documents", key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let err = assert_error(
        post(json!({"content": "x"})).await.unwrap(),
        400,
        "invalid_field",
    )
    .await;
    assert!(err["message"].as_str().unwrap().contains("title"), "{err}");
    let err = assert_error(
        post(json!({"title": " ", "content": "x"})).await.unwrap(),
        400,
        "invalid_title",
    )
    .await;
    assert_eq!(err["field"], "title");
    assert_error(
        post(json!({"title": "t", "content": "  "})).await.unwrap(),
        400,
        "empty_content",
    )
    .await;
    assert_error(
        post(json!({"title": "t", "content": "x", "metadata": [1]}))
            .await
            .unwrap(),
        400,
        "invalid_field",
    )
    .await;
    assert_error(
        post(json!({"title": "t", "content": "x", "extra": 1}))
            .await
            .unwrap(),
        400,
        "invalid_field",
    )
    .await;
    let resp = raw("application/json", "{not json".into()).await.unwrap();
    assert_error(resp, 400, "invalid_json").await;
    let resp = raw(
        "application/vnd.api+json",
        r#"{"title": "JSON:API", "content": "Typed JSON is JSON too."}"#.into(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 201, "an application/…+json document is JSON");
    let resp = raw("application/pdf", "%PDF".into()).await.unwrap();
    assert_error(resp, 415, "unsupported_media_type").await;
    let resp = raw("text/plain", vec![0xff, 0xfe, 0x41].into())
        .await
        .unwrap();
    assert_error(resp, 400, "invalid_encoding").await;
    let big = "a".repeat(1024 * 1024 + 1);
    let resp = raw("text/plain", big.clone().into()).await.unwrap();
    assert_error(resp, 413, "document_too_large").await;
    assert_error(
        post(json!({"title": "t", "content": big})).await.unwrap(),
        413,
        "document_too_large",
    )
    .await;
    // Exactly 1 MiB is accepted.
    let resp = raw("text/plain", "word ".repeat(1024 * 1024 / 5).into())
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    for (body, code) in [
        (json!({"query": ""}), "invalid_query"),
        (json!({"query": "x", "top_k": 0}), "invalid_top_k"),
        (json!({"query": "x", "top_k": 51}), "invalid_top_k"),
        (json!({"query": "x".repeat(2001)}), "invalid_query"),
        (json!({"q": "x"}), "invalid_field"),
    ] {
        let resp = app
            .authed(Method::POST, "/v1/query", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, code).await;
    }
    let resp = app.call(Method::GET, "/v1/documents?limit=0", key).await;
    assert_error(resp, 400, "invalid_limit").await;
    let resp = app
        .call(Method::GET, "/v1/documents?cursor=garbage", key)
        .await;
    assert_error(resp, 400, "invalid_cursor").await;
    // A parameter of the wrong type is a JSON 400 naming it, like every other bad input.
    let resp = app.call(Method::GET, "/v1/documents?limit=abc", key).await;
    let err = assert_error(resp, 400, "invalid_query_parameter").await;
    assert_eq!(err["field"], "limit");
}

async fn a_document_about_x_ranks_first_for_a_query_about_x(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("relevance").await;
    let key = &t.api_key;
    let topics = [
        (
            "Sourdough baking",
            "Feed the sourdough starter with flour and water, let the dough rise overnight, then bake the bread in a hot dutch oven until the crust is dark.",
        ),
        (
            "Kubernetes autoscaling",
            "The horizontal pod autoscaler adds replicas when CPU utilisation passes the target; cluster autoscaler adds nodes when pods cannot be scheduled.",
        ),
        (
            "Quarterly tax filing",
            "Estimated tax payments are due each quarter; file the return with the revenue service and keep receipts for deductible business expenses.",
        ),
    ];
    let mut ids = Vec::new();
    for (title, content) in topics {
        ids.push(
            app.upload(key, title, content).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for (q, want) in [
        (
            "how long should sourdough dough rise before I bake bread",
            0,
        ),
        ("autoscaler adds pod replicas on high CPU", 1),
        ("when are estimated quarterly tax payments due", 2),
    ] {
        let resp = app.query(key, q, 3).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0]["document_id"], ids[want].as_str(), "{q}: {body}");
        assert_eq!(results[0]["title"], topics[want].0);
        assert!(results[0]["snippet"].as_str().unwrap().len() > 10);
        let scores: Vec<f64> = results
            .iter()
            .map(|r| r["score"].as_f64().unwrap())
            .collect();
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "ranked: {scores:?}"
        );
    }
}

async fn plan_limits_refuse_with_the_plan_that_lifts_them(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[(
            "PLAN_LIMITS",
            "starter.max_documents=2,starter.max_queries_per_month=3",
        )],
    )
    .await;
    let t = app.fresh_tenant("limits").await;
    let key = &t.api_key;
    // The three sample documents do not count.
    app.upload(key, "one", "first document").await;
    app.upload(key, "two", "second document").await;
    let resp = app
        .authed(Method::POST, "/v1/documents", key)
        .json(&json!({"title": "three", "content": "one too many"}))
        .send()
        .await
        .unwrap();
    let err = assert_error(resp, 402, "document_limit_reached").await;
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("starter") && msg.contains('2') && msg.contains("pro"),
        "{msg}"
    );
    for _ in 0..3 {
        assert_eq!(app.query(key, "document", 2).await.status(), 200);
    }
    let err = assert_error(
        app.query(key, "document", 2).await,
        429,
        "query_limit_reached",
    )
    .await;
    assert!(err["message"].as_str().unwrap().contains("pro"), "{err}");
    let usage: Value = app
        .call(Method::GET, "/v1/usage", key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["plan"], "starter");
    assert_eq!(usage["documents"], json!({"used": 2, "limit": 2}));
    assert_eq!(usage["queries"], json!({"used": 3, "limit": 3}));
    assert_eq!(usage["users"]["limit"], 3);
    assert_eq!(usage["price_monthly"], 49);
    // The count survives a restart (it is flushed to the database).
    let app = app.restart().await;
    let err = assert_error(
        app.query(key, "document", 2).await,
        429,
        "query_limit_reached",
    )
    .await;
    assert!(!err["message"].as_str().unwrap().is_empty());
}

async fn tenants_never_see_each_others_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.fresh_tenant("alpha").await;
    let b = app.fresh_tenant("beta").await;
    let secret = app
        .upload(
            &a.api_key,
            "Alpha launch plan",
            "Project zephyr launches on the ninth with the falcon partnership.",
        )
        .await;
    let doc_id = secret["id"].as_str().unwrap();

    // B cannot read, delete or find A's document, by id or by search.
    for (method, path) in [
        (Method::GET, format!("/v1/documents/{doc_id}")),
        (Method::DELETE, format!("/v1/documents/{doc_id}")),
    ] {
        let resp = app.call(method, &path, &b.api_key).await;
        assert_error(resp, 404, "not_found").await;
    }
    let list: Value = app
        .call(Method::GET, "/v1/documents?limit=100", &b.api_key)
        .await
        .json()
        .await
        .unwrap();
    assert!(!list.to_string().contains(doc_id));
    let hits: Value = app
        .query(&b.api_key, "project zephyr falcon partnership launch", 50)
        .await
        .json()
        .await
        .unwrap();
    assert!(!hits["results"].to_string().contains("zephyr"), "{hits}");
    // Crafted ids: A's sample document id, SQL-ish and path-ish ids.
    for id in [
        "sample_doc_1%27%20OR%20%271%27=%271",
        "..%2F..%2Fetc",
        "%2A",
    ] {
        let resp = app
            .authed(Method::GET, &format!("/v1/documents/{id}"), &b.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{id}");
    }
    // B cannot revoke or rotate A's keys.
    let a_keys = app
        .store
        .list_api_keys(&TenantId::parse(&a.tenant_id).unwrap())
        .await
        .unwrap();
    let a_key_id = &a_keys.iter().find(|k| k.revoked_at.is_none()).unwrap().id;
    for (method, path) in [
        (Method::DELETE, format!("/v1/api-keys/{a_key_id}")),
        (Method::POST, format!("/v1/api-keys/{a_key_id}/rotate")),
    ] {
        let resp = app.call(method, &path, &b.api_key).await;
        assert_eq!(resp.status(), 404, "{path}");
    }
    // A still has everything.
    assert_eq!(get_status(&app, &a.api_key).await.status(), 200);
    let hits: Value = app
        .query(&a.api_key, "project zephyr falcon", 1)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hits["results"][0]["document_id"], doc_id);
}

async fn milestones_are_recorded_once_and_only_for_real_activity(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("milestones").await;
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let names = |app: &TestApp| {
        let (store, id) = (app.store.clone(), id.clone());
        async move {
            store
                .milestones(&id)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.milestone)
                .collect::<Vec<_>>()
        }
    };
    assert!(
        names(&app).await.is_empty(),
        "sample data is not the tenant's first document"
    );

    // A query that fails is not a first query.
    app.state.vectors.simulate_outage(true);
    let resp = app.query(&t.api_key, "anything", 3).await;
    assert_error(resp, 503, "vector_store_unavailable").await;
    app.state.vectors.simulate_outage(false);
    assert!(names(&app).await.is_empty());

    app.upload(&t.api_key, "first", "the first real document")
        .await;
    app.upload(&t.api_key, "second", "the second real document")
        .await;
    for _ in 0..3 {
        assert_eq!(
            app.query(&t.api_key, "real document", 2).await.status(),
            200
        );
    }
    let got = names(&app).await;
    assert_eq!(got, ["first_document_upload", "first_query_executed"]);
    let records = app.store.milestones(&id).await.unwrap();
    assert!(
        records
            .iter()
            .all(|m| m.source == "server" && m.occurred_at > 0)
    );
    // Another process (fresh memo) does not record them again.
    let app = app.restart().await;
    app.upload(&t.api_key, "third", "after restart").await;
    assert_eq!(app.query(&t.api_key, "restart", 1).await.status(), 200);
    assert_eq!(app.store.milestones(&id).await.unwrap().len(), 2);
}

async fn key_use_is_recorded_in_batches(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.fresh_tenant("lastused").await;
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let default_key = |keys: Vec<onboard::workspace::api_keys::ApiKeyRow>| {
        keys.into_iter().find(|k| k.name == "Default key").unwrap()
    };
    assert!(
        default_key(app.store.list_api_keys(&id).await.unwrap())
            .last_used_at
            .is_none()
    );
    let before = chrono::Utc::now().timestamp_millis();
    for _ in 0..5 {
        assert_eq!(get_status(&app, &t.api_key).await.status(), 200);
    }
    let at = eventually("last_used_at to be written", 5, || async {
        default_key(app.store.list_api_keys(&id).await.unwrap()).last_used_at
    })
    .await;
    assert!(at >= before);
}
