//! `GET /metrics`: the Prometheus exposition scraped from the real router after the actions that
//! produce each family, on both stores. The exposition is parsed line by line (every sample is
//! `name{labels} value` under a family described by `# HELP` and `# TYPE`), and values are read
//! from the parsed samples.

use std::collections::{BTreeMap, HashSet};

use onboard::jobs::Task;

use crate::helpers::{Backend, TestApp, eventually, spawn_app_with, spawn_app_without_worker};
use crate::store_tests;

store_tests!(
    the_journey_shows_in_every_family,
    failed_attempts_and_failed_emails_are_counted,
    queue_gauges_and_activation_are_read_from_the_database,
);

/// Every exported family with its type (counters as exposed, with `_total`).
const FAMILIES: &[(&str, &str)] = &[
    ("onboard_signups_total", "counter"),
    ("onboard_checkouts_completed_total", "counter"),
    ("onboard_provisioning_started_total", "counter"),
    ("onboard_provisioning_succeeded_total", "counter"),
    ("onboard_provisioning_failed_total", "counter"),
    ("onboard_emails_sent_total", "counter"),
    ("onboard_emails_failed_total", "counter"),
    ("onboard_http_requests_total", "counter"),
    ("onboard_webhook_invalid_signature_total", "counter"),
    ("onboard_webhook_received_total", "counter"),
    ("onboard_webhook_duplicate_total", "counter"),
    ("onboard_webhook_unhandled_total", "counter"),
    ("onboard_webhook_unknown_tenant_total", "counter"),
    ("onboard_jobs_succeeded_total", "counter"),
    ("onboard_jobs_failed_total", "counter"),
    ("onboard_jobs_dead_total", "counter"),
    ("onboard_tenants_provisioned_total", "counter"),
    ("onboard_email_unknown_outcomes_total", "counter"),
    ("onboard_provisioning_duration_seconds", "histogram"),
    ("onboard_time_to_activation_seconds", "histogram"),
    ("onboard_webhook_ack_seconds", "histogram"),
    ("onboard_stripe_event_delay_seconds", "histogram"),
    ("onboard_http_request_duration_seconds", "histogram"),
    ("onboard_jobs_queued", "gauge"),
    ("onboard_jobs_oldest_age_seconds", "gauge"),
    ("onboard_activation_rate_7d", "gauge"),
    ("onboard_activation_tenants_7d", "gauge"),
];

/// A parsed exposition: each family's type, and each series (`name{labels}` as written) with
/// its value.
struct Exposition {
    text: String,
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, f64>,
}

impl Exposition {
    /// Parses the Prometheus text format strictly enough to catch a malformed line: comments
    /// are `# HELP name text` or `# TYPE name type` (HELP first); a sample is a valid metric
    /// name, optional `{k="v",…}` labels with escaped values, one space and a number, under a
    /// family whose TYPE came before (histograms' `_bucket`, `_sum`, `_count` under theirs).
    fn parse(text: String) -> Exposition {
        let mut types = BTreeMap::new();
        let mut helped = HashSet::new();
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(valid_name(name), "bad HELP line: {line}");
                assert!(helped.insert(name.to_string()), "HELP twice: {line}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name type");
                assert!(helped.contains(name), "TYPE before HELP: {line}");
                assert!(
                    ["counter", "gauge", "histogram"].contains(&kind),
                    "type: {line}"
                );
                let previous = types.insert(name.to_string(), kind.to_string());
                assert!(previous.is_none(), "TYPE twice: {line}");
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment: {line}");
            let (series, value) = split_sample(line);
            let name = series.split('{').next().unwrap();
            assert!(valid_name(name), "bad metric name: {line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample before its TYPE: {line}");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse::<f64>()
                    .unwrap_or_else(|_| panic!("bad value: {line}")),
            };
            let previous = samples.insert(series.to_string(), value);
            assert!(previous.is_none(), "series twice: {line}");
        }
        Exposition {
            text,
            types,
            samples,
        }
    }

    /// The value of a series, written exactly as exposed (labels in their order).
    fn value(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in\n{}", self.text))
    }

    fn get(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }

    /// Every family of [`FAMILIES`] is described with its type, except the labelled ones in
    /// `unseen`, which have no series yet (a family without one is not exposed at all).
    fn assert_families(&self, unseen: &[&str]) {
        for (name, kind) in FAMILIES {
            let want = (!unseen.contains(name)).then_some(*kind);
            assert_eq!(
                self.types.get(*name).map(String::as_str),
                want,
                "{name} in\n{}",
                self.text
            );
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name{labels} value` → (`name{labels}`, `value`), checking the labels' syntax.
fn split_sample(line: &str) -> (&str, &str) {
    let Some(open) = line.find('{') else {
        let (series, value) = line.split_once(' ').expect("name value");
        return (series, value);
    };
    let bytes = line.as_bytes();
    let mut i = open + 1;
    loop {
        let key_start = i;
        while bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' {
            i += 1;
        }
        assert!(i > key_start, "empty label name: {line}");
        assert_eq!(
            &line[i..i + 2],
            "=\"",
            "label without a quoted value: {line}"
        );
        i += 2;
        while bytes[i] != b'"' {
            if bytes[i] == b'\\' {
                assert!(
                    matches!(bytes[i + 1], b'\\' | b'"' | b'n'),
                    "bad escape: {line}"
                );
                i += 1;
            }
            i += 1;
        }
        i += 1;
        match bytes[i] {
            b',' => i += 1,
            b'}' => break,
            _ => panic!("bad label list: {line}"),
        }
    }
    let (series, rest) = line.split_at(i + 1);
    let value = rest.strip_prefix(' ').expect("one space before the value");
    assert!(!value.contains(' '), "one value, no timestamp: {line}");
    (series, value)
}

/// Scrapes `/metrics` and parses it.
async fn scrape(app: &TestApp) -> Exposition {
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Exposition::parse(resp.text().await.unwrap())
}

/// Scrapes until `ready` holds of the exposition.
async fn scrape_until(
    app: &TestApp,
    what: &str,
    ready: impl Fn(&Exposition) -> bool,
) -> Exposition {
    eventually(what, 30, || async {
        let e = scrape(app).await;
        ready(&e).then_some(e)
    })
    .await
}

async fn the_journey_shows_in_every_family(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    // Signup, checkout paid through the dev checkout (a signed webhook to ourselves),
    // provisioning to active, the welcome email sent, a first query.
    let tenant = app.active_tenant("journey@example.com", "pro").await;
    app.query_ok(&tenant.api_key, "sample", 1).await;
    assert_eq!(app.get("/no/such/page").await.status(), 404);
    let e = scrape_until(&app, "the welcome email sent and the activation", |e| {
        e.get("onboard_emails_sent_total{kind=\"welcome\"}") == Some(1.0)
            && e.get("onboard_time_to_activation_seconds_count") == Some(1.0)
    })
    .await;
    // Nothing failed to send.
    e.assert_families(&["onboard_emails_failed_total"]);

    for (series, want) in [
        ("onboard_signups_total", 1.0),
        ("onboard_checkouts_completed_total", 1.0),
        ("onboard_provisioning_started_total", 1.0),
        ("onboard_provisioning_succeeded_total", 1.0),
        ("onboard_provisioning_failed_total", 0.0),
        ("onboard_tenants_provisioned_total", 1.0),
        ("onboard_webhook_received_total", 1.0),
        ("onboard_webhook_invalid_signature_total", 0.0),
        ("onboard_provisioning_duration_seconds_count", 1.0),
        ("onboard_webhook_ack_seconds_count", 1.0),
        ("onboard_stripe_event_delay_seconds_count", 1.0),
        ("onboard_activation_tenants_7d", 1.0),
        ("onboard_activation_rate_7d", 1.0),
    ] {
        assert_eq!(e.value(series), want, "{series} in\n{}", e.text);
    }
    assert!(e.value("onboard_jobs_succeeded_total") >= 2.0);
    // Cumulative buckets end with +Inf holding every observation.
    assert_eq!(
        e.value("onboard_provisioning_duration_seconds_bucket{le=\"+Inf\"}"),
        1.0
    );
    assert_eq!(
        e.value("onboard_time_to_activation_seconds_bucket{le=\"+Inf\"}"),
        1.0
    );
    assert!(e.value("onboard_provisioning_duration_seconds_sum") < 600.0);

    // HTTP requests carry the route template, never the raw path.
    assert!(
        e.value("onboard_http_requests_total{method=\"POST\",route=\"/signup\",status=\"201\"}")
            == 1.0
    );
    assert!(
        e.value(
            "onboard_http_requests_total{method=\"GET\",route=\"/tenant/{tenant_id}\",status=\"200\"}"
        ) >= 1.0
    );
    assert_eq!(
        e.value("onboard_http_requests_total{method=\"POST\",route=\"/v1/query\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        e.value(
            "onboard_http_requests_total{method=\"POST\",route=\"/webhook/stripe\",status=\"200\"}"
        ),
        1.0
    );
    assert!(
        e.value("onboard_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}")
            >= 1.0
    );
    assert!(
        e.value(
            "onboard_http_request_duration_seconds_count{method=\"GET\",route=\"/tenant/{tenant_id}\"}"
        ) >= 1.0
    );
    assert!(
        !e.text.contains(&tenant.tenant_id) && !e.text.contains("/no/such/page"),
        "a raw path became a label:\n{}",
        e.text
    );
}

async fn failed_attempts_and_failed_emails_are_counted(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("JOB_BACKOFF_BASE_MS", "5"),
            ("MAX_PROVISIONING_RETRIES", "2"),
        ],
    )
    .await;
    let (tid, session) = app.checkout("failing@example.com", "pro").await;
    app.state.vectors.simulate_outage(true);
    app.state.mailer.simulate_outage(true);
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    app.wait_for_status(&tid, "failed", 30).await;
    // The failure notice is queued with the tenant's failure; its delivery fails too.
    let e = scrape_until(&app, "the failure notice's failed send", |e| {
        e.get("onboard_emails_failed_total{kind=\"provisioning_failed\"}")
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    e.assert_families(&["onboard_emails_sent_total"]);
    assert_eq!(e.value("onboard_provisioning_started_total"), 2.0);
    assert_eq!(e.value("onboard_provisioning_failed_total"), 2.0);
    assert_eq!(e.value("onboard_provisioning_succeeded_total"), 0.0);
    assert_eq!(e.value("onboard_provisioning_duration_seconds_count"), 0.0);
    assert!(e.value("onboard_jobs_dead_total") >= 1.0);
    // Paid, never active: in the 7-day window, not activated.
    assert_eq!(e.value("onboard_activation_tenants_7d"), 1.0);
    assert_eq!(e.value("onboard_activation_rate_7d"), 0.0);

    app.state.mailer.simulate_outage(false);
    let e = scrape_until(&app, "the failure notice sent once email is back", |e| {
        e.get("onboard_emails_sent_total{kind=\"provisioning_failed\"}") == Some(1.0)
    })
    .await;
    assert!(e.value("onboard_emails_failed_total{kind=\"provisioning_failed\"}") >= 1.0);
}

async fn queue_gauges_and_activation_are_read_from_the_database(backend: Backend) {
    // No worker: the provisioning job a payment enqueues stays queued.
    let app = spawn_app_without_worker(backend, &[]).await;
    let e = scrape(&app).await;
    // Before any request or email, the labelled families have no series; the rest are there.
    e.assert_families(&[
        "onboard_emails_sent_total",
        "onboard_emails_failed_total",
        "onboard_http_requests_total",
        "onboard_http_request_duration_seconds",
    ]);
    // Every registered kind is reported, 0 when it has no job.
    for kind in onboard::tasks::kind_names() {
        assert_eq!(
            e.value(&format!("onboard_jobs_queued{{kind=\"{kind}\"}}")),
            0.0
        );
        assert_eq!(
            e.value(&format!(
                "onboard_jobs_oldest_age_seconds{{kind=\"{kind}\"}}"
            )),
            0.0
        );
    }
    assert_eq!(e.value("onboard_activation_tenants_7d"), 0.0);
    assert_eq!(e.value("onboard_activation_rate_7d"), 0.0);

    let (tid, session) = app.checkout("queued@example.com", "pro").await;
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    app.wait_for_status(&tid, "provisioning", 10).await;
    let e = scrape(&app).await;
    assert_eq!(
        e.value("onboard_jobs_queued{kind=\"provision_tenant\"}"),
        1.0
    );
    assert!(e.value("onboard_jobs_oldest_age_seconds{kind=\"provision_tenant\"}") < 3600.0);
    assert_eq!(e.value("onboard_activation_tenants_7d"), 1.0);
    assert_eq!(e.value("onboard_activation_rate_7d"), 0.0);

    // The job made an hour old: the gauge says so.
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query(
            "UPDATE jobs SET created_at = created_at - 3600000, run_at = run_at - 3600000 \
             WHERE kind = 'provision_tenant'",
        )
        .execute(pool)
        .await
        .unwrap();
    });
    // A job scheduled for later counts as queued but has not started waiting.
    let later = onboard::email::Delivery {
        email_id: "eml_later".into(),
    }
    .job(1)
    .at(onboard::store::now_ms() + 3_600_000);
    assert!(app.store.enqueue(later).await.unwrap());
    let e = scrape(&app).await;
    let age = e.value("onboard_jobs_oldest_age_seconds{kind=\"provision_tenant\"}");
    assert!((3600.0..3700.0).contains(&age), "age {age}");
    assert_eq!(e.value("onboard_jobs_queued{kind=\"send_email\"}"), 1.0);
    assert_eq!(
        e.value("onboard_jobs_oldest_age_seconds{kind=\"send_email\"}"),
        0.0
    );
    // Another process over the same database reports the same figures.
    let other = onboard::http::router(onboard::app::AppState::new(
        (*app.state.settings).clone(),
        app.store.clone(),
    ));
    let resp = tower::ServiceExt::oneshot(
        other,
        axum::http::Request::get("/metrics")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let theirs = Exposition::parse(String::from_utf8(body.to_vec()).unwrap());
    for series in [
        "onboard_jobs_queued{kind=\"provision_tenant\"}",
        "onboard_jobs_queued{kind=\"send_email\"}",
        "onboard_activation_tenants_7d",
    ] {
        assert_eq!(theirs.value(series), e.value(series), "{series}");
    }
    assert_eq!(
        theirs.value("onboard_signups_total"),
        0.0,
        "its own counters"
    );
}
