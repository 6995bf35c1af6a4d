//! Alerts: `GET /admin/alerts` judges each rule from hand-built data on both stores (firing and
//! not, at the thresholds), the rules file says the same as the service's table, and promtool
//! checks and unit-tests the rules file when it is installed.

use std::path::{Path, PathBuf};

use onboard::alerts::{Comparison, RULES, Rule};
use onboard::analytics::Milestone;
use onboard::domain::{Plan, TenantId, TenantStatus};
use onboard::jobs::{JobKind, NewJob};
use onboard::store::{NewTenant, now_ms};
use serde_json::{Value, json};
use yaml_rust2::{Yaml, YamlLoader};

use crate::helpers::{Backend, TestApp, assert_error, spawn_app, spawn_app_without_worker};
use crate::store_tests;

store_tests!(
    alerts_need_the_operator_token_and_start_quiet,
    the_queue_backlog_fires_above_one_hundred_unfinished_jobs,
    provisioning_success_fires_below_ninety_five_percent_of_the_last_hour,
    webhook_latency_fires_when_the_p95_stripe_delay_passes_thirty_seconds,
    provisioning_p50_fires_above_two_minutes_over_the_last_hour,
    activation_fires_below_forty_percent_of_at_least_ten_recent_tenants,
);

const ADMIN: &str = "alerts-admin-token-0123456789abcdef";

async fn app(backend: Backend) -> TestApp {
    spawn_app_without_worker(backend, &[("ADMIN_TOKEN", ADMIN)]).await
}

/// The whole answer of `GET /admin/alerts`.
async fn alerts(app: &TestApp) -> Value {
    let resp = app
        .client
        .get(app.url("/admin/alerts"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// One rule's entry of `GET /admin/alerts`.
async fn alert(app: &TestApp, rule: &Rule) -> Value {
    let body = alerts(app).await;
    body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == rule.name)
        .unwrap_or_else(|| panic!("{} missing from {body}", rule.name))
        .clone()
}

/// A tenant awaiting payment, stored as signup stores it.
async fn new_tenant(app: &TestApp) -> TenantId {
    let id = TenantId::generate();
    let email = format!("{}@example.com", id.as_str().to_lowercase());
    let mut tx = app.store.begin().await.unwrap();
    tx.insert_tenant(&NewTenant {
        id: id.clone(),
        email: email.clone(),
        email_normalized: email,
        company_name: "Alerting Co".into(),
        password_hash: "$argon2id$not-used".into(),
        plan: Plan::Pro,
        status: TenantStatus::PendingPayment,
        reason: "signup".into(),
        stripe_checkout_session_id: None,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

/// A new tenant taken along `path` by the store's own transitions (which write the status
/// history and the funnel times, as in production).
async fn tenant_through(app: &TestApp, path: &[TenantStatus]) -> TenantId {
    let id = new_tenant(app).await;
    for to in path {
        let mut tx = app.store.begin().await.unwrap();
        tx.transition_tenant(&id, *to, "alerts test", "test")
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    id
}

const PAID: &[TenantStatus] = &[TenantStatus::Provisioning];
const SUCCEEDED: &[TenantStatus] = &[TenantStatus::Provisioning, TenantStatus::Active];
const FAILED: &[TenantStatus] = &[TenantStatus::Provisioning, TenantStatus::Failed];

async fn exec(app: &TestApp, sql: &'static str, a: i64, b: &str) {
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query(sql)
            .bind(a)
            .bind(b)
            .execute(pool)
            .await
            .unwrap();
    });
}

const HOUR_MS: i64 = 3_600_000;

async fn alerts_need_the_operator_token_and_start_quiet(backend: Backend) {
    let app = app(backend.clone()).await;
    let no_token = app.get("/admin/alerts").await;
    assert_error(no_token, 401, "unauthorized").await;
    let wrong = app
        .client
        .get(app.url("/admin/alerts"))
        .bearer_auth("not-the-admin-token")
        .send()
        .await
        .unwrap();
    assert_error(wrong, 401, "unauthorized").await;

    // A new deployment: no job, no run, no event, no tenant. Nothing fires, and what could not
    // be measured says so with a null value.
    let body = alerts(&app).await;
    assert_eq!(body["firing"], 0, "{body}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(body["evaluated_at"].as_str().unwrap()).is_ok(),
        "{body}"
    );
    let list = body["alerts"].as_array().unwrap();
    assert_eq!(list.len(), RULES.len());
    for (a, rule) in list.iter().zip(RULES.iter()) {
        assert_eq!(a["name"], rule.name);
        assert_eq!(a["state"], "ok", "{a}");
        assert_eq!(a["threshold"].as_f64(), Some(rule.threshold));
        assert_eq!(a["unit"], rule.unit);
        assert_eq!(a["severity"], rule.severity);
        assert_eq!(a["summary"], rule.summary);
        assert_eq!(a["runbook"], rule.runbook);
        assert!(!a["basis"].as_str().unwrap().is_empty(), "{a}");
    }
    assert_eq!(list[0]["value"], 0.0);
    for a in &list[1..] {
        assert!(a["value"].is_null(), "{a}");
    }

    // Without ADMIN_TOKEN the operator endpoints are closed.
    let closed = spawn_app(backend).await;
    assert_error(closed.get("/admin/alerts").await, 403, "operator_disabled").await;
}

async fn the_queue_backlog_fires_above_one_hundred_unfinished_jobs(backend: Backend) {
    let app = app(backend).await;
    let kind = JobKind::new("alerts_probe", 0);
    let enqueue = |n: i64| {
        let store = app.store.clone();
        async move {
            for _ in 0..n {
                let job = NewJob::new(kind, &json!({}), 1).at(now_ms() + 24 * HOUR_MS);
                assert!(store.enqueue(job).await.unwrap());
            }
        }
    };
    // Finished jobs are not a backlog: ten done and ten dead.
    enqueue(20).await;
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query(
            "UPDATE jobs SET status = CASE WHEN id IN (SELECT id FROM jobs WHERE kind = $1 ORDER BY id LIMIT 10) \
             THEN 'done' ELSE 'dead' END WHERE kind = $1",
        )
        .bind(kind.as_str())
        .execute(pool)
        .await
        .unwrap();
    });
    let existing = app.store.unfinished_jobs(None).await.unwrap();
    enqueue(100 - existing).await;
    // One of them running counts too.
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query(
            "UPDATE jobs SET status = 'running', locked_until = $1 WHERE id = \
             (SELECT id FROM jobs WHERE kind = $2 AND status = 'queued' ORDER BY id LIMIT 1)",
        )
        .bind(now_ms() + HOUR_MS)
        .bind(kind.as_str())
        .execute(pool)
        .await
        .unwrap();
    });

    let at_100 = alert(&app, &onboard::alerts::QUEUE_BACKLOG).await;
    assert_eq!(at_100["state"], "ok", "{at_100}");
    assert_eq!(at_100["value"], 100.0);
    assert_eq!(at_100["basis"], "100 jobs queued or running");

    enqueue(1).await;
    let body = alerts(&app).await;
    let at_101 = &body["alerts"][0];
    assert_eq!(at_101["name"], "OnboardJobQueueBacklog");
    assert_eq!(at_101["state"], "firing", "{at_101}");
    assert_eq!(at_101["value"], 101.0);
    assert_eq!(body["firing"], 1, "{body}");
}

async fn provisioning_success_fires_below_ninety_five_percent_of_the_last_hour(backend: Backend) {
    let app = app(backend).await;
    let rule = &onboard::alerts::PROVISIONING_SUCCESS;
    // Failures from two hours ago are outside the window.
    for _ in 0..5 {
        let id = tenant_through(&app, FAILED).await;
        exec(
            &app,
            "UPDATE tenant_status_history SET at = at - $1 WHERE tenant_id = $2",
            2 * HOUR_MS,
            id.as_str(),
        )
        .await;
    }
    let quiet = alert(&app, rule).await;
    assert_eq!(quiet["state"], "ok");
    assert!(quiet["value"].is_null(), "{quiet}");

    // 19 of 20: exactly 95%, which is not below 95%. A tenant still provisioning has not
    // ended its run.
    for _ in 0..19 {
        tenant_through(&app, SUCCEEDED).await;
    }
    tenant_through(&app, FAILED).await;
    tenant_through(&app, PAID).await;
    let at_95 = alert(&app, rule).await;
    assert_eq!(at_95["state"], "ok", "{at_95}");
    assert_eq!(at_95["value"], 0.95);
    assert_eq!(
        at_95["basis"],
        "19 of 20 provisioning runs that ended in the last hour succeeded"
    );

    // 47 of 50: 94%.
    for _ in 0..28 {
        tenant_through(&app, SUCCEEDED).await;
    }
    for _ in 0..2 {
        tenant_through(&app, FAILED).await;
    }
    let at_94 = alert(&app, rule).await;
    assert_eq!(at_94["state"], "firing", "{at_94}");
    assert_eq!(at_94["value"], 0.94);

    // A retry that succeeds is one more failed run and one more successful one: 48 of 52 is still below.
    let retried = tenant_through(&app, FAILED).await;
    let mut tx = app.store.begin().await.unwrap();
    tx.transition_tenant(&retried, TenantStatus::Provisioning, "retry", "operator")
        .await
        .unwrap();
    tx.transition_tenant(&retried, TenantStatus::Active, "all steps done", "test")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let after_retry = alert(&app, rule).await;
    assert_eq!(
        after_retry["basis"],
        "48 of 52 provisioning runs that ended in the last hour succeeded"
    );
    assert_eq!(after_retry["state"], "firing");
}

/// A signed Stripe event created `delay_secs` before now, delivered through the webhook.
async fn deliver_created_ago(app: &TestApp, delay_secs: i64) -> String {
    let id = format!("evt_alerts_{}", ulid::Ulid::new());
    let event = json!({
        "id": id,
        "object": "event",
        "type": "customer.created",
        "created": chrono::Utc::now().timestamp() - delay_secs,
        "data": {"object": {"id": format!("cus_{}", ulid::Ulid::new()), "object": "customer"}},
    });
    let resp = app.deliver_event(&event).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    id
}

async fn webhook_latency_fires_when_the_p95_stripe_delay_passes_thirty_seconds(backend: Backend) {
    let app = app(backend).await;
    let rule = &onboard::alerts::WEBHOOK_LATENCY;
    // Very late events received ten minutes ago are outside the 5-minute window.
    for _ in 0..3 {
        let id = deliver_created_ago(&app, 3600).await;
        exec(
            &app,
            "UPDATE webhook_events SET received_at = received_at - $1 WHERE id = $2",
            600_000,
            &id,
        )
        .await;
    }
    let quiet = alert(&app, rule).await;
    assert_eq!(quiet["state"], "ok");
    assert!(quiet["value"].is_null(), "{quiet}");
    assert_eq!(
        quiet["basis"],
        "no Stripe event received in the last 5 minutes"
    );

    // One slow event in twenty: the p95 (nearest rank, the 19th) is a fast one.
    for _ in 0..19 {
        deliver_created_ago(&app, 2).await;
    }
    deliver_created_ago(&app, 120).await;
    let fast = alert(&app, rule).await;
    assert_eq!(fast["state"], "ok", "{fast}");
    let p95 = fast["value"].as_f64().unwrap();
    assert!((2.0..30.0).contains(&p95), "{fast}");

    // Two in twenty-one: the 20th is slow.
    deliver_created_ago(&app, 120).await;
    let slow = alert(&app, rule).await;
    assert_eq!(slow["state"], "firing", "{slow}");
    assert!(slow["value"].as_f64().unwrap() >= 120.0, "{slow}");
    assert_eq!(
        slow["basis"],
        "p95 of the delays of 21 Stripe events received in the last 5 minutes"
    );
}

/// A tenant that became active now, `secs` after its payment was confirmed.
async fn provisioned_in(app: &TestApp, secs: i64) -> TenantId {
    let id = tenant_through(app, SUCCEEDED).await;
    exec(
        app,
        "UPDATE tenant_activation SET paid_at = provisioned_at - $1 WHERE tenant_id = $2",
        secs * 1000,
        id.as_str(),
    )
    .await;
    id
}

async fn provisioning_p50_fires_above_two_minutes_over_the_last_hour(backend: Backend) {
    let app = app(backend).await;
    let rule = &onboard::alerts::PROVISIONING_SLOW;
    // A slow one that finished two hours ago is outside the window; a tenant still
    // provisioning has no duration yet.
    let old = provisioned_in(&app, 1000).await;
    exec(
        &app,
        "UPDATE tenant_activation SET paid_at = paid_at - $1, provisioned_at = provisioned_at - $1 \
         WHERE tenant_id = $2",
        2 * HOUR_MS,
        old.as_str(),
    )
    .await;
    tenant_through(&app, PAID).await;
    let quiet = alert(&app, rule).await;
    assert_eq!(quiet["state"], "ok");
    assert!(quiet["value"].is_null(), "{quiet}");

    // 60, 60, 200 s: the median is 60 s.
    for secs in [60, 200, 60] {
        provisioned_in(&app, secs).await;
    }
    let fast = alert(&app, rule).await;
    assert_eq!(fast["state"], "ok", "{fast}");
    assert_eq!(fast["value"], 60.0);

    // Exactly 120 s at the median is not above it: 60, 60, 120, 200, 200.
    for secs in [120, 200] {
        provisioned_in(&app, secs).await;
    }
    let at_120 = alert(&app, rule).await;
    assert_eq!(at_120["state"], "ok", "{at_120}");
    assert_eq!(at_120["value"], 120.0);

    // 60, 60, 120, 200, 200, 200, 200: the median is 200 s.
    for secs in [200, 200] {
        provisioned_in(&app, secs).await;
    }
    let slow = alert(&app, rule).await;
    assert_eq!(slow["state"], "firing", "{slow}");
    assert_eq!(slow["value"], 200.0);
    assert_eq!(
        slow["basis"],
        "median of 7 paid tenants that became active in the last hour"
    );
}

async fn activation_fires_below_forty_percent_of_at_least_ten_recent_tenants(backend: Backend) {
    let app = app(backend).await;
    let rule = &onboard::alerts::ACTIVATION_RATE;
    // Nine tenants paid this week, none activated: 0%, but too few to judge. A tenant that
    // signed up and never paid is not counted.
    let mut paid = Vec::new();
    for _ in 0..9 {
        paid.push(tenant_through(&app, PAID).await);
    }
    new_tenant(&app).await;
    let nine = alert(&app, rule).await;
    assert_eq!(nine["state"], "ok", "{nine}");
    assert_eq!(nine["value"], 0.0);
    assert_eq!(
        nine["basis"],
        "0 of 9 tenants who paid in the last 7 days ran a first query (judged from 10 tenants on)"
    );

    paid.push(tenant_through(&app, SUCCEEDED).await);
    let ten = alert(&app, rule).await;
    assert_eq!(ten["state"], "firing", "{ten}");
    assert_eq!(ten["value"], 0.0);

    // Four of ten ran a first query: exactly 40%, not below it.
    for id in &paid[..4] {
        app.store
            .record_milestone(id, Milestone::FirstQueryExecuted, None)
            .await
            .unwrap();
    }
    let at_40 = alert(&app, rule).await;
    assert_eq!(at_40["state"], "ok", "{at_40}");
    assert_eq!(at_40["value"], 0.4);
    assert_eq!(
        at_40["basis"],
        "4 of 10 tenants who paid in the last 7 days ran a first query"
    );

    // A tenant that paid eight days ago is outside the window.
    let old = tenant_through(&app, PAID).await;
    exec(
        &app,
        "UPDATE tenant_activation SET paid_at = paid_at - $1 WHERE tenant_id = $2",
        8 * 24 * HOUR_MS,
        old.as_str(),
    )
    .await;
    assert_eq!(alert(&app, rule).await["value"], 0.4);

    // One more this week without a query: 4 of 11.
    tenant_through(&app, PAID).await;
    let below = alert(&app, rule).await;
    assert_eq!(below["state"], "firing", "{below}");
    // (serde_json reads floats back to within an ulp, not always to the same bits.)
    let value = below["value"].as_f64().unwrap();
    assert!((value - 4.0 / 11.0).abs() < 1e-9, "{below}");
}

fn prometheus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus")
}

fn load_yaml(name: &str) -> Yaml {
    let path = prometheus_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        .remove(0)
}

/// `3600` → `1h`, `300` → `5m`, `604800` → `7d`: Prometheus durations.
fn prometheus_duration(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s => format!("{}m", s / 60),
    }
}

/// The rules file and the service's table must say the same thing, so the alerts Prometheus
/// sends and those `GET /admin/alerts` shows cannot drift apart.
#[test]
fn the_rules_file_matches_the_services_table() {
    let doc = load_yaml("alerts.yml");
    let rules: Vec<&Yaml> = doc["groups"]
        .as_vec()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_vec().expect("rules").iter())
        .collect();
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    let want: Vec<&str> = RULES.iter().map(|r| r.name).collect();
    assert_eq!(names, want, "the same alerts, in the same order");
    for (yaml, rule) in rules.iter().zip(RULES.iter()) {
        let name = rule.name;
        let text = |y: &Yaml| y.as_str().map(str::to_string);
        assert_eq!(
            text(&yaml["labels"]["severity"]).as_deref(),
            Some(rule.severity),
            "{name}"
        );
        assert_eq!(
            text(&yaml["for"]).as_deref(),
            Some(rule.pending_for),
            "{name}"
        );
        let annotations = &yaml["annotations"];
        assert_eq!(
            text(&annotations["summary"]).as_deref(),
            Some(rule.summary),
            "{name}"
        );
        assert_eq!(
            text(&annotations["runbook"]).as_deref(),
            Some(rule.runbook),
            "{name}"
        );
        assert_eq!(
            text(&annotations["threshold"]),
            Some(rule.threshold.to_string()),
            "{name}"
        );
        // The expression compares with the same threshold on the same side, over the same
        // window, with the same least number of observations.
        let expr: String = text(&yaml["expr"])
            .expect("expr")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let op = rule.comparison.operator();
        let comparison = format!("{op} {}", rule.threshold);
        assert!(
            expr.contains(&comparison),
            "{name}: {expr} lacks {comparison}"
        );
        let other = match rule.comparison {
            Comparison::Above => "<",
            Comparison::Below => ">",
        };
        assert!(
            !expr.contains(&format!("{other} {}", rule.threshold)),
            "{name}: {expr}"
        );
        if rule.window_secs > 0 {
            let d = prometheus_duration(rule.window_secs);
            assert!(
                expr.contains(&format!("[{d}]")) || expr.contains(&format!("_{d}")),
                "{name}: {expr} does not look over {d}"
            );
        }
        if rule.min_samples > 1 {
            let guard = format!(">= {}", rule.min_samples);
            assert!(expr.contains(&guard), "{name}: {expr} lacks {guard}");
        }
    }
}

/// Every alert is unit-tested both ways in alerts_test.yml: series that fire it and series
/// that do not.
#[test]
fn the_promtool_tests_fire_and_spare_every_alert() {
    let doc = load_yaml("alerts_test.yml");
    let mut fired = std::collections::BTreeSet::new();
    let mut spared = std::collections::BTreeSet::new();
    for test in doc["tests"].as_vec().expect("tests") {
        for case in test["alert_rule_test"].as_vec().expect("alert_rule_test") {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            match case["exp_alerts"].as_vec() {
                Some(v) if !v.is_empty() => fired.insert(name),
                _ => spared.insert(name),
            };
        }
    }
    for rule in RULES {
        assert!(fired.contains(rule.name), "nothing fires {}", rule.name);
        assert!(spared.contains(rule.name), "nothing spares {}", rule.name);
    }
}

/// `promtool check rules` and `promtool test rules`, as CI runs them (`.ci/run` installs
/// Debian's `prometheus`); skipped, saying so, where promtool is not installed.
#[test]
fn promtool_checks_and_tests_the_rules() {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("promtool").is_file())
    });
    if !found {
        eprintln!("SKIPPED promtool test: promtool is not on PATH (apt-get install prometheus)");
        return;
    }
    let dir = prometheus_dir();
    for (args, file) in [
        (["check", "rules"], "alerts.yml"),
        (["test", "rules"], "alerts_test.yml"),
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .arg(dir.join(file))
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {} {file} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The helper that names a rule's window in Prometheus's terms.
#[test]
fn windows_are_named_as_prometheus_writes_them() {
    assert_eq!(prometheus_duration(300), "5m");
    assert_eq!(prometheus_duration(3600), "1h");
    assert_eq!(prometheus_duration(7 * 86_400), "7d");
}
