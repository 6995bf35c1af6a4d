//! Workspace benchmark (issue 4), release build, loopback only, embedded store on SQLite:
//! - ingest: documents of 2 KB each posted by 8 concurrent clients until the tenant's namespace
//!   holds 10,000 chunks; documents per second.
//! - query latency: `POST /v1/query` (top_k 5) over those 10,000 chunks, wrk, p50/p99.
//! - API-key authentication overhead: `GET /v1/documents/{id}` with a Bearer key through the
//!   real router, against the same router with `/v1` acting as a fixed caller
//!   (`http::router_without_v1_auth`), alternating five runs each in the same process (median).
//!
//! The server runs in this process (its own 2-thread runtime) so the baseline router can be
//! mounted beside the real one; wrk drives both from outside. Run: `cargo bench --bench workspace`.

mod common;

use std::time::{Duration, Instant};

use common::{bench_file, bench_seconds, wrk_with_headers};
use onboard::config::Settings;
use onboard::domain::{Plan, TenantId, TenantStatus};
use onboard::store::Store;
use onboard::workspace::api_keys::Principal;
use onboard::workspace::key_cache::Caller;
use serde_json::{Value, json};

const CHUNKS: usize = 10_000;

/// A 2 KB document of varied prose (so chunks differ), about three chunks.
fn document(i: usize) -> String {
    const WORDS: &[&str] = &[
        "tenant",
        "invoice",
        "vector",
        "namespace",
        "refund",
        "latency",
        "onboarding",
        "query",
        "document",
        "payment",
        "webhook",
        "retry",
        "schema",
        "cluster",
        "replica",
        "policy",
        "customer",
        "upgrade",
        "quota",
        "billing",
        "search",
        "embedding",
        "chunk",
        "index",
    ];
    let mut s = String::with_capacity(2100);
    let mut n = i * 7919;
    while s.len() < 2000 {
        for _ in 0..12 {
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(WORDS[(n >> 33) % WORDS.len()]);
            s.push(' ');
        }
        s.push_str(&format!("item{} number{}.\n\n", n % 997, i));
    }
    s.truncate(2048);
    s
}

fn serve(rt: &tokio::runtime::Runtime, router: axum::Router) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    base
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secs = bench_seconds();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // The real application, with its worker, and limits lifted for the load.
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = Settings::with_overrides(&[
        ("DATABASE_URL", &db),
        ("APP_URL", &base),
        ("RUST_LOG", "error"),
        (
            "PLAN_LIMITS",
            "starter.max_documents=-1,starter.max_queries_per_month=-1",
        ),
    ])
    .unwrap();
    let store = server_rt.block_on(Store::connect(&db, 10)).unwrap();
    let app = onboard::http::Application::from_listener(listener, settings, store.clone());
    let state = app.state().clone();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    server_rt.spawn(onboard::tasks::run_worker(state.clone(), 4, stop_rx));
    server_rt.spawn(app.run_until(std::future::pending()));

    // Redirects are not followed: the dev checkout's Pay answers 303, which is what we check.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (tenant_id, key) =
        client_rt.block_on(common::active_tenant(&http, &base, "bench@example.com"));
    println!(
        "onboard workspace benchmark: {} cores, loopback, embedded vector store on SQLite",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // Ingest until the namespace holds CHUNKS chunks (the three sample chunks count).
    let (docs, elapsed, first_id) = client_rt.block_on(ingest(&http, &base, &key, CHUNKS));
    let ingest_rate = docs as f64 / elapsed.as_secs_f64();
    println!(
        "ingest: {docs} documents of 2 KB ({CHUNKS} chunks) in {:.1} s = {ingest_rate:.0} documents/s",
        elapsed.as_secs_f64()
    );

    // Query latency over the full namespace (one warm-up run loads it into memory).
    let query_script = bench_file("wrk/query.lua");
    // SAFETY: set before wrk starts; no other thread reads the environment meanwhile.
    unsafe { std::env::set_var("BENCH_API_KEY", &key) };
    let _ = common::wrk(&base, 4, 2, Some(&query_script));
    let q = common::wrk(&base, 4, secs, Some(&query_script));
    assert_eq!(q.errors, 0, "every query must succeed");
    println!(
        "query over {CHUNKS} chunks: {:.0} queries/s, p50 {:.2} ms, p99 {:.2} ms",
        q.requests_per_sec, q.p50_ms, q.p99_ms
    );

    // Auth overhead: the same endpoint, with the key checked vs. a fixed caller.
    let tid = TenantId::parse(&tenant_id).unwrap();
    let caller = Caller {
        principal: std::sync::Arc::new(Principal {
            tenant_id: tid,
            key_id: "bench".into(),
            scopes: vec![
                "documents:write".into(),
                "query".into(),
                "keys:manage".into(),
            ],
            own: false,
            role: onboard::domain::Role::Owner,
            created_by: None,
        }),
        plan: Plan::Starter,
        status: TenantStatus::Active,
    };
    let baseline = serve(
        &server_rt,
        onboard::http::router_without_v1_auth(state.clone(), caller),
    );
    let path = format!("/v1/documents/{first_id}");
    let auth_header = format!("Authorization: Bearer {key}");
    let (mut with_auth, mut without) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let a = wrk_with_headers(
            &format!("{base}{path}"),
            16,
            secs.div_ceil(2),
            None,
            &[&auth_header],
        );
        let b = wrk_with_headers(
            &format!("{baseline}{path}"),
            16,
            secs.div_ceil(2),
            None,
            &[],
        );
        assert_eq!(a.errors + b.errors, 0);
        with_auth.push(a.requests_per_sec);
        without.push(b.requests_per_sec);
    }
    with_auth.sort_by(f64::total_cmp);
    without.sort_by(f64::total_cmp);
    let (a, b) = (with_auth[2], without[2]);
    let overhead = (b / a - 1.0) * 100.0;
    println!(
        "GET /v1/documents/{{id}}: {a:.0} req/s with API-key auth, {b:.0} req/s without (median of 5): auth adds {overhead:.1}% per request"
    );

    println!("\n| measure | value | target |\n| --- | --- | --- |");
    println!(
        "| ingest, 2 KB documents, 8 clients | {ingest_rate:.0} documents/s | ≥ 200 documents/s |"
    );
    println!(
        "| query p50 / p99, {CHUNKS} chunks, top_k 5 | {:.2} ms / {:.2} ms | p99 ≤ 20 ms |",
        q.p50_ms, q.p99_ms
    );
    println!("| API-key auth overhead (req/s without ÷ with − 1) | {overhead:.1}% | ≤ 10% |");
    drop(server_rt);
}

/// Posts documents with 8 concurrent clients until `chunks` chunks are stored.
async fn ingest(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    chunks: usize,
) -> (usize, Duration, String) {
    let per_doc = onboard::search::chunker::chunk(&document(0)).len();
    let docs = (chunks - 3).div_ceil(per_doc);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, base, key, next) = (
            http.clone(),
            base.to_string(),
            key.to_string(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut first = None;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= docs {
                    return first;
                }
                let resp = http
                    .post(format!("{base}/v1/documents"))
                    .bearer_auth(&key)
                    .json(&json!({"title": format!("Bench document {i}"), "content": document(i)}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    resp.status(),
                    201,
                    "{}",
                    resp.text().await.unwrap_or_default()
                );
                if first.is_none() {
                    let body: Value = resp.json().await.unwrap();
                    first = body["id"].as_str().map(str::to_string);
                }
            }
        }));
    }
    let mut first_id = None;
    for t in tasks {
        if let Some(id) = t.await.unwrap() {
            first_id.get_or_insert(id);
        }
    }
    (docs, started.elapsed(), first_id.unwrap())
}
