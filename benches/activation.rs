//! Activation at scale: `POST /activation/track` events per second (durable, each request
//! authenticated by an API key) and `GET /activation/metrics` latency, with 1,000,000 events
//! over 100,000 tenants loaded first, on SQLite and on PostgreSQL (`BENCH_DATABASE_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`; skipped if unreachable).
//!
//! `cargo bench --bench activation` (needs `wrk`). `BENCH_ONLY=sqlite|postgres` runs one
//! half; `BENCH_SECONDS` sets each wrk run (default 10).

mod common;

use std::time::Instant;

use common::{bench_file, bench_seconds, wrk_with_headers};
use onboard::config::Settings;
use onboard::store::Store;

const TENANTS: i64 = 100_000;
const EVENTS: i64 = 1_000_000;
const ADMIN: &str = "bench-admin-token-0123456789abcdef";
/// Tenants that track during the ingest run, each with its own key.
const TRACKERS: usize = 8;

/// Loads TENANTS tenants over the last 180 days with a realistic funnel, and events up to
/// EVENTS in all (the signup events the tenants' trigger writes, and the rest), through the
/// same triggers that keep the rollups in production.
async fn load(store: &Store) {
    let now = onboard::store::now_ms();
    let postgres = matches!(store, Store::Postgres(_));
    let (series, id, num) = if postgres {
        (
            format!(
                "SELECT generate_series(CAST(0 AS BIGINT), {}) AS i",
                TENANTS - 1
            ),
            "'tenant_bench' || lpad(i::text, 8, '0')",
            "CAST(substr(tenant_id, 13) AS BIGINT)",
        )
    } else {
        (
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {}) SELECT i FROM n",
                TENANTS - 1
            ),
            "'tenant_bench' || printf('%08d', i)",
            "CAST(substr(tenant_id, 13) AS INTEGER)",
        )
    };
    let plans = "CASE i % 3 WHEN 0 THEN 'starter' WHEN 1 THEN 'pro' ELSE 'enterprise' END";
    let statements = [
        format!(
            "INSERT INTO tenants (id, email, email_normalized, company_name, plan, status, created_at, updated_at, activated_at) \
             SELECT {id}, 'b' || i || '@bench.example', 'b' || i || '@bench.example', 'Bench ' || i, {plans}, 'active', \
             {now} - (i % 180) * 86400000 - (i * 7919) % 86400000, {now}, {now} FROM ({series}) s"
        ),
        format!(
            "UPDATE tenant_activation SET \
             paid_at = CASE WHEN {num} % 10 < 8 THEN signed_up_at + 600000 END, \
             provisioned_at = CASE WHEN {num} % 10 < 8 THEN signed_up_at + 660000 END, \
             first_login_at = CASE WHEN {num} % 10 < 6 THEN signed_up_at + 3600000 END, \
             first_document_at = CASE WHEN {num} % 10 < 4 THEN signed_up_at + 7200000 END, \
             first_query_at = CASE WHEN {num} % 10 < 3 THEN signed_up_at + ({num} % 97) * 3600000 + 120000 END, \
             integration_at = CASE WHEN {num} % 10 < 1 THEN signed_up_at + 200000000 END, \
             variant = CASE WHEN {num} % 2 = 0 THEN 'quick' ELSE 'guided' END, \
             wizard_viewed = CASE WHEN {num} % 10 < 6 THEN 3 ELSE 1 END, \
             wizard_completed = CASE WHEN {num} % 10 < 3 THEN 3 WHEN {num} % 10 < 4 THEN 1 ELSE 0 END"
        ),
    ];
    for sql in &statements {
        exec(store, sql).await;
    }
    // The other events, in chunks so neither store builds one giant statement.
    let types = "CASE i % 6 WHEN 0 THEN 'wizard_step_viewed' WHEN 1 THEN 'wizard_step_completed' WHEN 2 THEN 'first_login' \
                 WHEN 3 THEN 'first_document_upload' WHEN 4 THEN 'first_query_executed' ELSE 'wizard_step_skipped' END";
    let rest = EVENTS - TENANTS;
    let chunk = 100_000;
    let mut from = 0;
    while from < rest {
        let to = (from + chunk).min(rest) - 1;
        let series = if postgres {
            format!("SELECT generate_series(CAST({from} AS BIGINT), {to}) AS i")
        } else {
            format!(
                "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {to}) SELECT i FROM n"
            )
        };
        let tenant = if postgres {
            format!("'tenant_bench' || lpad((i % {TENANTS})::text, 8, '0')")
        } else {
            format!("'tenant_bench' || printf('%08d', i % {TENANTS})")
        };
        exec(
            store,
            &format!(
                "INSERT INTO activation_events (id, tenant_id, event_type, source, client_event_id, metadata, flagged, occurred_at) \
                 SELECT 'aev_bench' || i, {tenant}, {types}, CASE WHEN i % 3 = 0 THEN 'server' ELSE 'client' END, NULL, \
                 '{{\"step\":1}}', CASE WHEN i % 17 = 0 THEN 1 ELSE 0 END, {now} - (i % 180) * 86400000 FROM ({series}) s"
            ),
        )
        .await;
        from = to + 1;
    }
    if postgres {
        // Loading rewrote each rollup row thousands of times in one go; production's updates
        // come a few at a time and autovacuum keeps the tables at their size. Compact them
        // as autovacuum would have, and set the visibility map for index-only scans.
        exec(store, "VACUUM FULL activation_rollup").await;
        exec(store, "VACUUM FULL activation_event_daily").await;
        for table in [
            "tenants",
            "tenant_activation",
            "activation_events",
            "activation_rollup",
            "activation_event_daily",
        ] {
            exec(store, &format!("VACUUM ANALYZE {table}")).await;
        }
    }
}

async fn exec(store: &Store, sql: &str) {
    let sql = sql.to_string();
    onboard::with_pool!(store, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .expect("load statement");
    });
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    onboard::with_pool!(store, |pool| {
        sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
    })
}

async fn postgres_schema() -> Option<String> {
    let base = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pool = sqlx::PgPool::connect(&base).await.ok()?;
    let schema = format!("bench_{}", ulid::Ulid::new().to_string().to_lowercase());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .ok()?;
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options[search_path]={schema}"))
}

fn run_backend(name: &str, url: &str, secs: u32) -> Vec<String> {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = server_rt.block_on(Store::connect(url, 10)).unwrap();
    let started = Instant::now();
    server_rt.block_on(load(&store));
    let loaded = server_rt.block_on(count(&store, "SELECT COUNT(*) FROM activation_events"));
    println!(
        "{name}: loaded {TENANTS} tenants and {loaded} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = Settings::with_overrides(&[
        ("DATABASE_URL", url),
        ("APP_URL", &base),
        ("RUST_LOG", "error"),
        ("ADMIN_TOKEN", ADMIN),
        // The loaded history spans 180 days: keep it all, so that retention's first sweep does
        // not run during the measurement.
        ("EVENT_RETENTION_DAYS", "365"),
    ])
    .unwrap();
    let app = onboard::http::Application::from_listener(listener, settings, store.clone());
    let state = app.state().clone();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    server_rt.spawn(onboard::tasks::run_worker(state, 4, stop_rx));
    server_rt.spawn(app.run_until(std::future::pending()));

    // Tenants that really signed up and paid, each tracking with its own key.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let trackers: Vec<String> = (0..TRACKERS)
        .map(|i| {
            let (tenant, key) = client_rt.block_on(common::active_tenant(
                &http,
                &base,
                &format!("tracker{i}@bench.example"),
            ));
            format!("{tenant} {key}")
        })
        .collect();

    // Ingest: wrk with 64 connections (the events in flight are what a commit can batch),
    // every request authenticated and answered only once its event is committed. The
    // baseline is `/health` on the same server just before: what this machine's HTTP stack
    // and wrk can do with no work behind them.
    let health = wrk_with_headers(&format!("{base}/health"), 64, secs.div_ceil(2), None, &[]);
    // SAFETY: set before wrk starts; no other thread reads the environment meanwhile.
    unsafe { std::env::set_var("BENCH_TRACK", trackers.join(",")) };
    let script = bench_file("wrk/track.lua");
    let before = server_rt.block_on(count(&store, "SELECT COUNT(*) FROM activation_events"));
    let _ = wrk_with_headers(&base, 64, 2, Some(&script), &[]);
    let ingest = wrk_with_headers(&base, 64, secs, Some(&script), &[]);
    assert_eq!(ingest.errors, 0, "every track must succeed");
    let after = server_rt.block_on(count(&store, "SELECT COUNT(*) FROM activation_events"));
    println!(
        "{name}: track {:.0} events/s (p50 {:.2} ms, p99 {:.2} ms), {} events stored by the two runs; /health {:.0} req/s",
        ingest.requests_per_sec,
        ingest.p50_ms,
        ingest.p99_ms,
        after - before,
        health.requests_per_sec
    );

    // Metrics over everything, and with filters (whole days read the rollups; a time inside
    // a day reads the tenants' rows).
    let auth = format!("Authorization: Bearer {ADMIN}");
    let day = |days: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days))
            .format("%Y-%m-%d")
            .to_string()
    };
    let mut rows = vec![
        format!(
            "| {name} | track, 64 connections, API-key auth, durable | {:.0} events/s (p99 {:.1} ms) | ≥ 15,000 events/s |",
            ingest.requests_per_sec, ingest.p99_ms
        ),
        format!(
            "| {name} | track ÷ `/health` req/s, same server, same run | {:.0} / {:.0} = {:.2} | |",
            ingest.requests_per_sec,
            health.requests_per_sec,
            ingest.requests_per_sec / health.requests_per_sec
        ),
    ];
    // On PostgreSQL, first as the tables stand after the ingest, then after the pass autovacuum
    // makes on a table with that many changed rows (it sets the visibility map, which lets the
    // quantiles' index walk skip the table): both are reported.
    let postgres = matches!(store, Store::Postgres(_));
    let passes: &[&str] = if postgres {
        &["", " (after VACUUM)"]
    } else {
        &[""]
    };
    for pass in passes {
        if !pass.is_empty() {
            let dead = server_rt.block_on(count(
                &store,
                "SELECT CAST(n_dead_tup AS BIGINT) FROM pg_stat_user_tables \
                 WHERE relname = 'tenant_activation' AND schemaname = current_schema()",
            ));
            println!("{name}: tenant_activation holds {dead} dead row versions; VACUUM");
            server_rt.block_on(exec(&store, "VACUUM tenant_activation"));
        }
        for (what, query, target) in [
            ("metrics, all tenants", String::new(), "p99 ≤ 20 ms"),
            (
                "metrics, plan + 90 days",
                format!("?plan=pro&from={}", day(90)),
                "p99 ≤ 20 ms",
            ),
            (
                "metrics, variant + from a time of day",
                format!("?variant=quick&from={}T12:00:00Z", day(30)),
                "(not a target)",
            ),
        ] {
            let url = format!("{base}/activation/metrics{query}");
            let _ = wrk_with_headers(&url, 2, 1, None, &[&auth]);
            let m = wrk_with_headers(&url, 2, secs, None, &[&auth]);
            assert_eq!(m.errors, 0, "metrics must answer 200");
            println!(
                "{name}: {what}{pass}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                m.requests_per_sec, m.p50_ms, m.p99_ms
            );
            rows.push(format!(
                "| {name} | {what}{pass} | p50 {:.2} ms / p99 {:.2} ms | {target} |",
                m.p50_ms, m.p99_ms
            ));
        }
    }
    drop(server_rt);
    rows
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secs = bench_seconds();
    println!(
        "onboard activation benchmark: {} cores, loopback, {TENANTS} tenants, {EVENTS} events",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let mut rows = Vec::new();
    if only != "postgres" {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        rows.extend(run_backend("SQLite", &url, secs));
    }
    if only != "sqlite" {
        let rt = tokio::runtime::Runtime::new().unwrap();
        match rt.block_on(postgres_schema()) {
            Some(url) => rows.extend(run_backend("PostgreSQL", &url, secs)),
            None => println!("PostgreSQL: SKIPPED (no server at BENCH_DATABASE_URL)"),
        }
    }
    println!("\n| store | measure | value | target |\n| --- | --- | --- | --- |");
    for r in rows {
        println!("{r}");
    }
}
