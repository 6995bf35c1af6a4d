//! Activation tracking and metrics over distinct tenants, on both stores.

use reqwest::header::COOKIE;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, spawn_app_with};
use crate::store_tests;

store_tests!(
    the_seed_example_gives_fifty_percent_and_repeats_count_once,
    track_checks_who_is_calling_and_what_is_sent,
    metrics_filter_by_signup_date_and_plan,
    the_wizard_follows_the_tenants_real_actions_in_its_variant,
    the_funnel_maths_on_hand_built_tenants,
    retention_deletes_raw_events_and_keeps_the_aggregates,
    concurrent_tracks_share_commits_and_keep_their_own_answers,
);

const ADMIN: &str = "activation-admin-token-0123456789";

async fn app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[("ADMIN_TOKEN", ADMIN)]).await
}

async fn metrics(app: &TestApp, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/activation/metrics{query}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
}

async fn metrics_ok(app: &TestApp, query: &str) -> Value {
    let resp = metrics(app, query).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn track(app: &TestApp, bearer: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = app.client.post(app.url("/activation/track")).json(body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.send().await.unwrap()
}

async fn the_seed_example_gives_fifty_percent_and_repeats_count_once(backend: Backend) {
    let app = app(backend).await;
    let one = app.active_tenant("seed-one@example.com", "pro").await;
    let _two = app.active_tenant("seed-two@example.com", "starter").await;
    // One tenant logs in and queries, twice each: distinct tenants, not events, count.
    for _ in 0..2 {
        crate::login::signed_in(&app, &one).await;
        app.query_ok(&one.api_key, "sample", 1).await;
    }
    let body = crate::helpers::eventually("the milestones recorded", 10, || async {
        let b = metrics_ok(&app, "").await;
        (b["metrics"]["first_query_executed"] == 1).then_some(b)
    })
    .await;
    let m = &body["metrics"];
    assert_eq!(m["total_signups"], 2);
    assert_eq!(m["payment_confirmed"], 2);
    assert_eq!(m["first_login"], 1);
    assert_eq!(m["first_query_executed"], 1);
    assert_eq!(m["login_rate"], 50.0);
    assert_eq!(m["activation_rate"], 50.0);
    let funnel: Vec<(String, i64)> = m["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["tenants"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64)> = [
        ("signed_up", 2),
        ("paid", 2),
        ("provisioned", 2),
        ("first_login", 1),
        ("first_document", 0),
        ("first_query", 1),
        ("integration", 0),
    ]
    .iter()
    .map(|(s, n)| (s.to_string(), *n))
    .collect();
    assert_eq!(funnel, want);
    assert_eq!(m["funnel"][3]["dropped"], 1);
    assert_eq!(m["funnel"][3]["step_conversion"], 50.0);
    assert_eq!(m["time_to_activation"]["activated"], 1);
    assert_eq!(m["time_to_activation"]["within_24h_rate"], 50.0);
    assert!(m["time_to_activation"]["p50_seconds"].as_f64().unwrap() >= 0.0);
    // Events: 2 signups, 2 payments, 1 login, 1 query (server), and nothing for the repeats.
    assert_eq!(body["total_events"], 6);
    assert!(body["timestamp"].is_string());
}

async fn track_checks_who_is_calling_and_what_is_sent(backend: Backend) {
    let app = app(backend).await;
    let one = app.active_tenant("track-one@example.com", "pro").await;
    let two = app.active_tenant("track-two@example.com", "pro").await;
    app.query_ok(&one.api_key, "sample", 1).await;
    let event = |tenant: &str, kind: &str| json!({"tenant_id": tenant, "event_type": kind, "metadata": {"query": "test query"}});

    assert_error(
        track(&app, None, &event(&one.tenant_id, "first_login")).await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        track(
            &app,
            Some("onb_forged"),
            &event(&one.tenant_id, "first_login"),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        track(
            &app,
            Some(&one.api_key),
            &event(&two.tenant_id, "first_login"),
        )
        .await,
        403,
        "wrong_tenant",
    )
    .await;
    let err = assert_error(
        track(
            &app,
            Some(&one.api_key),
            &event(&one.tenant_id, "clicked_button"),
        )
        .await,
        400,
        "invalid_event_type",
    )
    .await;
    assert_eq!(err["field"], "event_type");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("first_query_executed, integration_configured")
    );
    let bad_meta =
        json!({"tenant_id": one.tenant_id, "event_type": "first_login", "metadata": [1, 2]});
    assert_error(
        track(&app, Some(&one.api_key), &bad_meta).await,
        400,
        "invalid_metadata",
    )
    .await;
    let big = json!({"tenant_id": one.tenant_id, "event_type": "first_login", "metadata": {"x": "y".repeat(5000)}});
    let err = assert_error(
        track(&app, Some(&one.api_key), &big).await,
        400,
        "invalid_metadata",
    )
    .await;
    assert!(err["message"].as_str().unwrap().contains("4096"));
    let no_tenant = json!({"event_type": "first_login"});
    assert_error(
        track(&app, Some(&one.api_key), &no_tenant).await,
        400,
        "invalid_tenant_id",
    )
    .await;

    // The seed's request, with the tenant's own key: tracked, verified by the server's record.
    let resp = track(
        &app,
        Some(&one.api_key),
        &event(&one.tenant_id, "first_query_executed"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["status"], "tracked");
    assert_eq!(b["event"]["source"], "client");
    assert_eq!(b["event"]["flagged"], false);
    assert_eq!(b["event"]["metadata"]["query"], "test query");
    // A milestone the server never saw (tenant two never queried) is kept, flagged.
    let b: Value = track(
        &app,
        Some(&two.api_key),
        &event(&two.tenant_id, "first_query_executed"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(b["event"]["flagged"], true);
    // A retry with the same event_id is stored once.
    let with_id = json!({"tenant_id": one.tenant_id, "event_type": "wizard_step_viewed", "metadata": {"step": 1}, "event_id": "evt-42"});
    let first: Value = track(&app, Some(&one.api_key), &with_id)
        .await
        .json()
        .await
        .unwrap();
    let again: Value = track(&app, Some(&one.api_key), &with_id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["event"]["id"], again["event"]["id"]);
    assert_eq!(
        (
            first["event"]["duplicate"].clone(),
            again["event"]["duplicate"].clone()
        ),
        (json!(false), json!(true))
    );
    // A session works as well as a key; the operator tracks for anyone, and names a tenant that exists.
    let cookie = crate::login::signed_in(&app, &two).await;
    let resp = app
        .client
        .post(app.url("/activation/track"))
        .header(COOKIE, cookie)
        .json(&event(&two.tenant_id, "wizard_step_completed"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        track(
            &app,
            Some(ADMIN),
            &event(&two.tenant_id, "integration_configured")
        )
        .await
        .status(),
        200
    );
    assert_error(
        track(
            &app,
            Some(ADMIN),
            &event("tenant_01J9Z5QW3Y8K7V6T5R4E3W2Q1A", "first_login"),
        )
        .await,
        404,
        "not_found",
    )
    .await;

    // Client reports never change the distinct counts; they show as a discrepancy rate.
    let m = &metrics_ok(&app, "").await["metrics"];
    assert_eq!(
        m["first_query_executed"], 1,
        "only the server's record counts"
    );
    assert_eq!(m["integration_configured"], 0);
    let q = m["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["event_type"] == "first_query_executed")
        .unwrap();
    assert_eq!(
        (
            q["client_events"].as_i64(),
            q["unverified"].as_i64(),
            q["rate"].as_f64()
        ),
        (Some(2), Some(1), Some(50.0))
    );
}

async fn metrics_filter_by_signup_date_and_plan(backend: Backend) {
    let app = app(backend).await;
    app.active_tenant("filter-pro@example.com", "pro").await;
    app.active_tenant("filter-starter@example.com", "starter")
        .await;
    app.signup("filter-unpaid@example.com", "starter").await;
    let m = metrics_ok(&app, "").await;
    assert_eq!(
        (
            m["metrics"]["total_signups"].as_i64(),
            m["metrics"]["payment_confirmed"].as_i64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(
        metrics_ok(&app, "?plan=pro").await["metrics"]["total_signups"],
        1
    );
    assert_eq!(
        metrics_ok(&app, "?plan=starter").await["metrics"]["total_signups"],
        2
    );
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        metrics_ok(&app, &format!("?from={today}&to={tomorrow}")).await["metrics"]["total_signups"],
        3
    );
    assert_eq!(
        metrics_ok(&app, &format!("?from={tomorrow}")).await["metrics"]["total_signups"],
        0
    );
    assert_eq!(
        metrics_ok(&app, &format!("?to={today}")).await["metrics"]["login_rate"],
        0.0
    );
    let err = assert_error(
        metrics(&app, "?from=last-week").await,
        400,
        "invalid_query_parameter",
    )
    .await;
    assert_eq!(err["field"], "from");
    let err = assert_error(
        metrics(&app, "?plan=gold").await,
        400,
        "invalid_query_parameter",
    )
    .await;
    assert_eq!(err["field"], "plan");
    let resp = app
        .client
        .get(app.url("/activation/metrics"))
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "unauthorized").await;
}

async fn wizard(app: &TestApp, key: Option<&str>) -> Value {
    let mut req = app.client.get(app.url("/wizard/steps"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn states(w: &Value) -> Vec<String> {
    w["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap().to_string())
        .collect()
}

async fn skip(app: &TestApp, key: Option<&str>, step: &str) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/wizard/steps/{step}/skip")));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

async fn the_wizard_follows_the_tenants_real_actions_in_its_variant(backend: Backend) {
    // Everyone quick first.
    let app = spawn_app_with(backend, &[("ADMIN_TOKEN", ADMIN), ("WIZARD_SPLIT", "100")]).await;
    // The seed's curl: no credentials, the default variant's steps in the seed's shape.
    let anon = wizard(&app, None).await;
    assert_eq!(anon["variant"], "quick");
    let first = &anon["steps"][0];
    for field in ["step", "title", "description", "action"] {
        assert!(!first[field].is_null(), "{field} in {first}");
    }
    assert!(first.get("state").is_none());

    let t = app
        .active_tenant("wizard-quick@example.com", "starter")
        .await;
    let w = wizard(&app, Some(&t.api_key)).await;
    assert_eq!(w["variant"], "quick");
    assert_eq!(states(&w), ["pending", "pending"]);
    let skipped: Value = skip(&app, Some(&t.api_key), "1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(states(&skipped), ["skipped", "pending"]);
    app.query_ok(&t.api_key, "sample", 1).await;
    let w = crate::helpers::eventually("the query seen", 10, || async {
        let w = wizard(&app, Some(&t.api_key)).await;
        (states(&w) == ["skipped", "done"]).then_some(w)
    })
    .await;
    assert_eq!(w["steps"][1]["action"], "POST /v1/query");
    app.upload(&t.api_key, "Mine", "My own document.").await;
    crate::helpers::eventually("the upload seen", 10, || async {
        (states(&wizard(&app, Some(&t.api_key)).await) == ["done", "done"]).then_some(())
    })
    .await;
    // Bad input and no credentials.
    assert_error(
        skip(&app, Some(&t.api_key), "abc").await,
        400,
        "invalid_path_parameter",
    )
    .await;
    assert_error(skip(&app, Some(&t.api_key), "9").await, 404, "not_found").await;
    assert_error(skip(&app, None, "1").await, 401, "unauthorized").await;
    let resp = app
        .client
        .get(app.url("/wizard/steps"))
        .bearer_auth("onb_forged")
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "unauthorized").await;
    let skip_events = crate::helpers::eventually("the skip event", 5, || async {
        let m = metrics_ok(&app, "").await;
        (m["total_events"].as_i64().unwrap() > 0).then_some(m)
    })
    .await;
    assert!(skip_events["total_events"].as_i64().unwrap() >= 5);

    // A new split applies to new tenants; the first keeps its variant.
    let app = app
        .restart_with(&[("ADMIN_TOKEN", ADMIN), ("WIZARD_SPLIT", "0")])
        .await;
    assert_eq!(wizard(&app, Some(&t.api_key)).await["variant"], "quick");
    let g = app
        .active_tenant("wizard-guided@example.com", "starter")
        .await;
    let w = wizard(&app, Some(&g.api_key)).await;
    assert_eq!(w["variant"], "guided");
    assert_eq!(states(&w), ["pending", "pending", "pending", "pending"]);
    let resp = app
        .client
        .post(app.url("/v1/api-keys"))
        .bearer_auth(&g.api_key)
        .json(&json!({"name": "my app", "scopes": ["query"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(
        states(&wizard(&app, Some(&g.api_key)).await),
        ["pending", "pending", "done", "pending"]
    );
    // The first call with the tenant's own key is its integration; the provisioning key's
    // calls never were.
    let own = created["api_key"].as_str().expect("the new key's secret");
    app.query_ok(own, "sample", 1).await;
    let w = crate::helpers::eventually("integration_configured", 10, || async {
        let w = wizard(&app, Some(&g.api_key)).await;
        (states(&w) == ["pending", "done", "done", "done"]).then_some(w)
    })
    .await;
    assert_eq!(w["variant"], "guided");
    let m = metrics_ok(&app, "").await;
    assert_eq!(m["metrics"]["integration_configured"], 1);

    // The A/B comparison: one tenant per variant, the quick one skipped its first step.
    let ab = &m["metrics"]["wizard"];
    assert_eq!(ab["variants"][0]["variant"], "quick");
    assert_eq!(ab["variants"][0]["tenants"], 1);
    assert_eq!(ab["variants"][0]["activated"], 1);
    assert_eq!(ab["variants"][0]["skips_by_step"], json!([1, 0]));
    assert_eq!(ab["variants"][1]["variant"], "guided");
    assert_eq!(ab["variants"][1]["skips_by_step"], json!([0, 0, 0, 0]));
    // Views: the step each tenant was shown as its next one (the quick tenant saw step 2 once it
    // skipped step 1; the guided one only ever had step 1 next); completions: what each did.
    assert_eq!(ab["variants"][0]["views_by_step"], json!([1, 1]));
    assert_eq!(ab["variants"][0]["completions_by_step"], json!([1, 1]));
    assert_eq!(ab["variants"][1]["views_by_step"], json!([1, 0, 0, 0]));
    assert_eq!(
        ab["variants"][1]["completions_by_step"],
        json!([0, 1, 1, 1])
    );
    assert!(
        ab["verdict"]
            .as_str()
            .unwrap()
            .starts_with("not enough data yet")
    );
    assert!(ab["p_value"].is_null());
    assert_eq!(
        metrics_ok(&app, "?variant=guided").await["metrics"]["total_signups"],
        1
    );
    let err = assert_error(
        metrics(&app, "?variant=fast").await,
        400,
        "invalid_query_parameter",
    )
    .await;
    assert_eq!(err["field"], "variant");
}

/// Monday 2026-11-02 00:00 UTC, in ms.
const MONDAY: i64 = 1_793_577_600_000;
const HOUR: i64 = 3_600_000;

/// Sets a tenant's funnel times and wizard variant by hand (`None` = not reached).
#[allow(clippy::too_many_arguments)]
async fn set_funnel(
    app: &TestApp,
    tenant: &str,
    signed_up: i64,
    paid: Option<i64>,
    login: Option<i64>,
    document: Option<i64>,
    query: Option<i64>,
    variant: &str,
) {
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query(
            "UPDATE tenant_activation SET signed_up_at = $1, paid_at = $2, provisioned_at = $2, \
             first_login_at = $3, first_document_at = $4, first_query_at = $5, variant = $6 \
             WHERE tenant_id = $7",
        )
        .bind(signed_up)
        .bind(paid)
        .bind(login)
        .bind(document)
        .bind(query)
        .bind(variant)
        .bind(tenant)
        .execute(pool)
        .await
        .unwrap();
    });
}

fn tenant_id(signup: &Value) -> String {
    signup["tenant_id"].as_str().unwrap().to_string()
}

/// Four tenants over two signup weeks, with times chosen by hand; every figure below was
/// computed by hand from them.
async fn the_funnel_maths_on_hand_built_tenants(backend: Backend) {
    let app = app(backend).await;
    let mut ids = Vec::new();
    for (i, plan) in ["starter", "pro", "starter", "starter"].iter().enumerate() {
        ids.push(tenant_id(
            &app.signup(&format!("maths-{i}@example.com"), plan).await,
        ));
    }
    let at = |h: i64| MONDAY + h * HOUR;
    // Week of 2026-11-02: T0 queries 4 h after signup; T1 after 30 h, and its login comes an
    // hour after its query (out of order: the funnel counts each step by tenant regardless).
    set_funnel(
        &app,
        &ids[0],
        at(1),
        Some(at(2)),
        Some(at(3)),
        Some(at(4)),
        Some(at(5)),
        "quick",
    )
    .await;
    set_funnel(
        &app,
        &ids[1],
        at(48),
        Some(at(49)),
        Some(at(79)),
        Some(at(77)),
        Some(at(78)),
        "quick",
    )
    .await;
    // Week of 2026-11-09: T2 paid and stopped; T3 only signed up.
    set_funnel(
        &app,
        &ids[2],
        at(8 * 24),
        Some(at(8 * 24 + 1)),
        None,
        None,
        None,
        "guided",
    )
    .await;
    set_funnel(&app, &ids[3], at(9 * 24), None, None, None, None, "guided").await;

    let m = metrics_ok(&app, "").await["metrics"].clone();
    let counts: Vec<i64> = m["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tenants"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [4, 3, 3, 2, 2, 2, 0]);
    assert_eq!(
        (m["login_rate"].as_f64(), m["activation_rate"].as_f64()),
        (Some(50.0), Some(50.0))
    );
    let t = &m["time_to_activation"];
    assert_eq!(t["activated"], 2);
    // Durations 4 h and 30 h: nearest rank p50 = the 1st, p90 = the 2nd, mean 17 h.
    assert_eq!(t["p50_seconds"], 14_400.0);
    assert_eq!(t["p90_seconds"], 108_000.0);
    assert_eq!(t["mean_seconds"], 61_200.0);
    assert_eq!(t["within_24h_rate"], 25.0);
    let cohorts = m["cohorts"].as_array().unwrap();
    assert_eq!(cohorts.len(), 2, "{cohorts:?}");
    assert_eq!(cohorts[0]["week"], "2026-11-02");
    assert_eq!(
        (
            cohorts[0]["signups"].as_i64(),
            cohorts[0]["first_query"].as_i64(),
            cohorts[0]["activation_rate"].as_f64(),
            cohorts[0]["within_24h_rate"].as_f64()
        ),
        (Some(2), Some(2), Some(100.0), Some(50.0))
    );
    assert_eq!(cohorts[1]["week"], "2026-11-09");
    assert_eq!(
        (
            cohorts[1]["signups"].as_i64(),
            cohorts[1]["paid"].as_i64(),
            cohorts[1]["first_query"].as_i64()
        ),
        (Some(2), Some(1), Some(0))
    );
    // The A/B split counts tenants per variant.
    let variants = m["wizard"]["variants"].as_array().unwrap();
    assert_eq!(
        (
            variants[0]["tenants"].as_i64(),
            variants[0]["activated"].as_i64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(
        (
            variants[1]["tenants"].as_i64(),
            variants[1]["activated"].as_i64()
        ),
        (Some(2), Some(0))
    );

    // Whole days read the rollups; a time inside a day reads the tenants' rows: same answer
    // where they select the same tenants.
    let by_day = metrics_ok(&app, "?from=2026-11-03").await["metrics"].clone();
    let by_time = metrics_ok(&app, "?from=2026-11-02T06:00:00Z").await["metrics"].clone();
    assert_eq!(by_day, by_time);
    assert_eq!(by_day["total_signups"], 3);
    assert_eq!(by_day["time_to_activation"]["p50_seconds"], 108_000.0);
    assert_eq!(
        metrics_ok(&app, "?from=2026-11-10&to=2026-11-11").await["metrics"]["total_signups"],
        1
    );
    assert_eq!(
        metrics_ok(&app, "?variant=guided").await["metrics"]["total_signups"],
        2
    );
    assert_eq!(
        metrics_ok(&app, "?variant=quick").await["metrics"]["time_to_activation"]["p90_seconds"],
        108_000.0
    );

    // A plan change moves the tenant between the rollup's rows.
    assert_eq!(
        metrics_ok(&app, "?plan=pro").await["metrics"]["total_signups"],
        1
    );
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query("UPDATE tenants SET plan = 'pro' WHERE id = $1")
            .bind(&ids[0])
            .execute(pool)
            .await
            .unwrap();
    });
    let pro = metrics_ok(&app, "?plan=pro").await["metrics"].clone();
    assert_eq!(
        (
            pro["total_signups"].as_i64(),
            pro["first_query_executed"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let starter = metrics_ok(&app, "?plan=starter").await["metrics"].clone();
    assert_eq!(
        (
            starter["total_signups"].as_i64(),
            starter["first_query_executed"].as_i64()
        ),
        (Some(2), Some(0))
    );
    assert_eq!(metrics_ok(&app, "").await["metrics"]["total_signups"], 4);
}

/// Raw events older than the retention are deleted, and webhook payloads expired; the
/// metrics read the same afterwards.
async fn retention_deletes_raw_events_and_keeps_the_aggregates(backend: Backend) {
    let app = app(backend).await;
    let paid = app
        .active_tenant("retention-paid@example.com", "starter")
        .await;
    let unpaid = tenant_id(&app.signup("retention-unpaid@example.com", "starter").await);
    for (tenant, event) in [
        (&paid.tenant_id, "payment_confirmed"),
        (&unpaid, "payment_confirmed"),
        (&unpaid, "wizard_step_viewed"),
    ] {
        let resp = track(
            &app,
            Some(ADMIN),
            &json!({"tenant_id": tenant, "event_type": event}),
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    let before = metrics_ok(&app, "").await;
    let discrepancy = before["metrics"]["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["event_type"] == "payment_confirmed")
        .cloned()
        .unwrap();
    assert_eq!(
        (
            discrepancy["client_events"].as_i64(),
            discrepancy["unverified"].as_i64()
        ),
        (Some(2), Some(1))
    );
    let total = before["total_events"].as_i64().unwrap();
    assert!(total >= 6, "{before}");

    // Everything so far becomes 100 days old.
    let age = 100 * 24 * HOUR;
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query("UPDATE activation_events SET occurred_at = occurred_at - $1")
            .bind(age)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE webhook_events SET received_at = received_at - $1")
            .bind(age)
            .execute(pool)
            .await
            .unwrap();
    });
    // One fresh event, which retention keeps.
    let resp = track(
        &app,
        Some(ADMIN),
        &json!({"tenant_id": unpaid, "event_type": "wizard_step_completed"}),
    )
    .await;
    assert_eq!(resp.status(), 200);

    let cutoff = onboard::store::now_ms() - 90 * 24 * HOUR;
    let swept = app.store.sweep_old_events(cutoff).await.unwrap();
    assert_eq!(swept.events_deleted, total as u64);
    assert!(swept.payloads_expired >= 1, "{swept:?}");
    let again = app.store.sweep_old_events(cutoff).await.unwrap();
    assert_eq!(again, onboard::analytics::retention::Swept::default());
    let (raw, payloads): (i64, Vec<String>) = onboard::with_pool!(&app.store, |pool| {
        (
            sqlx::query_scalar("SELECT COUNT(*) FROM activation_events")
                .fetch_one(pool)
                .await
                .unwrap(),
            sqlx::query_scalar("SELECT payload FROM webhook_events")
                .fetch_all(pool)
                .await
                .unwrap(),
        )
    });
    assert_eq!(raw, 1, "only the fresh event is left");
    assert!(
        payloads.iter().all(|p| p == "{\"expired\":true}"),
        "{payloads:?}"
    );

    let after = metrics_ok(&app, "").await;
    assert_eq!(after["total_events"], total + 1);
    let mut want = before["metrics"].clone();
    let mut got = after["metrics"].clone();
    for m in [&mut want, &mut got] {
        m["time_to_activation"]["p50_seconds"] = Value::Null;
        m["time_to_activation"]["p90_seconds"] = Value::Null;
    }
    assert_eq!(got, want, "the funnel survives retention");
}

/// Many tracks at once go through the batching writer: each gets its own answer, a repeated
/// `event_id` is stored once and answered with the first record.
async fn concurrent_tracks_share_commits_and_keep_their_own_answers(backend: Backend) {
    let app = app(backend).await;
    let t = app.active_tenant("batch@example.com", "starter").await;
    let sends = (0..120).map(|i| {
        let app = &app;
        let key = t.api_key.clone();
        let tenant = t.tenant_id.clone();
        async move {
            let body = json!({
                "tenant_id": tenant,
                "event_type": "wizard_step_viewed",
                "metadata": {"i": i},
                "event_id": format!("evt-{}", i % 40),
            });
            let resp = track(app, Some(&key), &body).await;
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    });
    let answers = futures_util::future::join_all(sends).await;
    let fresh: Vec<&Value> = answers
        .iter()
        .filter(|a| a["event"]["duplicate"] == false)
        .collect();
    assert_eq!(fresh.len(), 40, "one stored per event_id");
    for a in &answers {
        let first = fresh
            .iter()
            .find(|f| f["event"]["id"] == a["event"]["id"])
            .expect("a duplicate answers the first record");
        assert_eq!(first["event"]["metadata"], a["event"]["metadata"]);
    }
    let stored: i64 = onboard::with_pool!(&app.store, |pool| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM activation_events WHERE tenant_id = $1 AND source = 'client'",
        )
        .bind(&t.tenant_id)
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(stored, 40);
}
