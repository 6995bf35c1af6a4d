//! Pipeline benchmark (issue 3), release build, loopback only, on SQLite and on PostgreSQL:
//! - webhook acknowledgement latency at a steady rate: every request is a distinct, validly
//!   signed Stripe event, sent on a fixed schedule (open loop: latency counts from the scheduled
//!   send time, so a stall is not hidden). wrk cannot sign each request, hence our own driver.
//! - paid → active: 50 tenants pay at once (50 signed `checkout.session.completed` sent
//!   together); for each, `activated_at` minus the moment its event was sent.
//!
//! Run: `cargo bench --bench pipeline` (`BENCH_DATABASE_URL` = a PostgreSQL URL, default
//! `postgres://postgres@127.0.0.1:5432/test`; the PostgreSQL half is skipped if unreachable).
//! `BENCH_WORKERS` and `BENCH_POOL` override the server's `WORKER_CONCURRENCY` and
//! `DATABASE_MAX_CONNECTIONS` (defaults: the server's own) to explore the tuning.

mod common;

use std::time::{Duration, Instant};

use common::{Server, bench_seconds};
use serde_json::{Value, json};

const SECRET: &str = "whsec_bench_secret_for_loopback_only";

fn signed(event: &Value) -> (String, String) {
    let body = event.to_string();
    let header =
        onboard::billing::signature::sign(body.as_bytes(), SECRET, chrono::Utc::now().timestamp());
    (body, header)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn webhook_ack(
    client: &reqwest::Client,
    base: &str,
    rate: u32,
    secs: u32,
) -> (f64, f64, f64, usize) {
    let total = (rate * secs) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    // Pre-sign every event so signing is not part of the measured path.
    let requests: Vec<(String, String)> = (0..total)
        .map(|i| {
            signed(&json!({
                "id": format!("evt_bench_{i}_{}", ulid::Ulid::new()), "object": "event", "type": "checkout.session.completed",
                "created": chrono::Utc::now().timestamp(),
                "data": {"object": {"id": format!("cs_bench_{i}"), "object": "checkout.session", "status": "complete",
                    "payment_status": "paid", "metadata": {"tenant_id": "tenant_01NOSUCHTENANT"}}}
            }))
        })
        .collect();
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total);
    for (i, (body, header)) in requests.into_iter().enumerate() {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, url) = (client.clone(), format!("{base}/webhook/stripe"));
        tasks.push(tokio::spawn(async move {
            let ok = client
                .post(url)
                .header("content-type", "application/json")
                .header("stripe-signature", header)
                .body(body)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            (scheduled.elapsed().as_secs_f64() * 1000.0, ok)
        }));
    }
    let mut lat = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (ms, ok) = t.await.unwrap();
        if !ok {
            errors += 1;
        }
        lat.push(ms);
    }
    lat.sort_by(f64::total_cmp);
    (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.iter().cloned().fold(0.0, f64::max),
        errors,
    )
}

async fn paid_to_active(client: &reqwest::Client, base: &str, n: usize) -> (f64, f64, f64) {
    let mut tenants = Vec::new();
    for i in 0..n {
        let email = format!("pay{i}-{}@example.com", ulid::Ulid::new());
        let (tid, session) = common::signup(client, base, &email).await;
        tenants.push((tid, session));
    }
    let events: Vec<(String, (String, String))> = tenants
        .iter()
        .map(|(tid, session)| {
            let ev = json!({
                "id": format!("evt_pay_{}", ulid::Ulid::new()), "object": "event", "type": "checkout.session.completed",
                "created": chrono::Utc::now().timestamp(),
                "data": {"object": {"id": session, "object": "checkout.session", "status": "complete", "payment_status": "paid",
                    "client_reference_id": tid, "customer": "cus_bench", "subscription": "sub_bench",
                    "metadata": {"tenant_id": tid}}}
            });
            (tid.clone(), signed(&ev))
        })
        .collect();
    let _ = std::process::Command::new("sync").status();
    let mut sends = Vec::new();
    for (tid, (body, header)) in events {
        let (client, url) = (client.clone(), format!("{base}/webhook/stripe"));
        sends.push(tokio::spawn(async move {
            let sent_ms = chrono::Utc::now().timestamp_millis();
            let r = client
                .post(url)
                .header("stripe-signature", header)
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            (tid, sent_ms)
        }));
    }
    let burst = Instant::now();
    let mut sent = Vec::new();
    for s in sends {
        sent.push(s.await.unwrap());
    }
    println!(
        "  all {n} payments acknowledged after {:.0} ms",
        burst.elapsed().as_secs_f64() * 1000.0
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lat = Vec::new();
    for (tid, sent_ms) in &sent {
        let activated = common::poll_tenant(client, base, tid, deadline, |t| {
            t["activated_at"].as_str().map(|at| {
                chrono::DateTime::parse_from_rfc3339(at)
                    .unwrap()
                    .timestamp_millis()
            })
        })
        .await;
        lat.push((activated - sent_ms) as f64);
    }
    lat.sort_by(f64::total_cmp);
    (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.iter().cloned().fold(0.0, f64::max),
    )
}

async fn run_backend(name: &str, db_url: Option<&str>, rate: u32, secs: u32) -> Vec<String> {
    let mut envs = vec![
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("SIGNUP_RATE_LIMIT_PER_HOUR", "0"),
        ("RUST_LOG", "error"),
    ];
    let conc = std::env::var("BENCH_WORKERS").unwrap_or_default();
    if !conc.is_empty() {
        envs.push(("WORKER_CONCURRENCY", conc.as_str()));
    }
    let pool = std::env::var("BENCH_POOL").unwrap_or_default();
    if !pool.is_empty() {
        envs.push(("DATABASE_MAX_CONNECTIONS", pool.as_str()));
    }
    if let Some(url) = db_url {
        envs.push(("DATABASE_URL", url));
    }
    let server = Server::start(&envs);
    let client = reqwest::Client::new();
    // Dirty pages left by a build just before would otherwise be written back during the run,
    // stalling the database's own flushes.
    let _ = std::process::Command::new("sync").status();
    let (p50, p99, max, errors) = webhook_ack(&client, &server.base, rate, secs).await;
    assert_eq!(errors, 0, "every webhook delivery must be acknowledged");
    println!(
        "{name}: webhook ack at {rate}/s for {secs} s: p50 {p50:.2} ms  p99 {p99:.2} ms  max {max:.2} ms"
    );
    // Checkout events are applied in the acknowledging transaction, so the ack run leaves no
    // queued work behind for the payments below to wait on. A first, unmeasured round of 20
    // payments warms the server up as any server that has been running is: its database pool
    // has opened its connections and each connection has prepared the pipeline's statements
    // (a cold pool costs a PostgreSQL backend start and a prepare per statement per connection).
    let _ = paid_to_active(&client, &server.base, 20).await;
    let (a50, a99, amax) = paid_to_active(&client, &server.base, 50).await;
    println!(
        "{name}: paid → active, 50 at once: p50 {a50:.0} ms  p99 {a99:.0} ms  max {amax:.0} ms"
    );
    vec![
        format!(
            "| {name} | webhook ack p50 / p99 at {rate} events/s | {p50:.2} ms / {p99:.2} ms | p99 ≤ 10 ms |"
        ),
        format!(
            "| {name} | paid → active p50 / p99 (50 tenants at once) | {a50:.0} ms / {a99:.0} ms | p50 ≤ 100 ms, p99 ≤ 1 s |"
        ),
    ]
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

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secs = bench_seconds();
    let rate = std::env::var("BENCH_WEBHOOK_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    println!(
        "onboard pipeline benchmark: {} cores, loopback",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    // `BENCH_ONLY=sqlite` or `BENCH_ONLY=postgres` runs one half (for profiling one store).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let mut rows = Vec::new();
    if only != "postgres" {
        rows.extend(run_backend("SQLite", None, rate, secs).await);
    }
    if only != "sqlite" {
        match postgres_schema().await {
            Some(url) => rows.extend(run_backend("PostgreSQL", Some(&url), rate, secs).await),
            None => println!("PostgreSQL: SKIPPED (no server at BENCH_DATABASE_URL)"),
        }
    }
    println!("\n| store | measure | value | target |\n| --- | --- | --- | --- |");
    for r in rows {
        println!("{r}");
    }
}
