//! Foundation benchmark (issue 2), one run, release build, loopback only:
//! - signups/s through the real server against bare argon2id hashes/s with the same parameters
//!   on the same cores (a signup should cost nothing beyond its hash: target ≥ 0.8);
//! - `GET /tenant/{id}` requests/s against `GET /health` (target ≥ 0.7), with p50/p99.
//!
//! Run: `cargo bench --bench foundation` (needs `wrk`; `BENCH_SECONDS` sets each run's length).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Server, bench_file, bench_seconds, curl_post_json, wrk};

fn bare_hash_rate(secs: u32) -> f64 {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(onboard::domain::password::hash_bytes(b"BenchPass123!"));
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(u64::from(secs)));
        stop.store(true, Ordering::Relaxed);
    });
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let secs = bench_seconds();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "onboard foundation benchmark: {cores} cores, {secs} s per run, wrk -t2 over loopback"
    );

    let hash_rate = bare_hash_rate(secs);
    println!("bare argon2id (m=19456,t=2,p=1) on {cores} threads: {hash_rate:.1} hashes/s");

    let server = Server::start(&[("SIGNUP_RATE_LIMIT_PER_HOUR", "0")]);
    let signup = wrk(
        &format!("{}/signup", server.base),
        8,
        secs,
        Some(&bench_file("wrk/signup.lua")),
    );
    assert_eq!(
        signup.errors, 0,
        "every benchmark signup must succeed: {signup:?}"
    );
    println!(
        "POST /signup: {:.1} signups/s  p50 {:.1} ms  p99 {:.1} ms  ({} requests)",
        signup.requests_per_sec, signup.p50_ms, signup.p99_ms, signup.requests
    );

    let created = curl_post_json(
        &format!("{}/signup", server.base),
        r#"{"email":"lookup@example.com","company_name":"Lookup","password":"BenchPass123!"}"#,
    )
    .expect("create the tenant to look up");
    let v: serde_json::Value = serde_json::from_str(&created).unwrap();
    let id = v["tenant_id"].as_str().unwrap();

    let health = wrk(&format!("{}/health", server.base), 32, secs, None);
    let tenant = wrk(&format!("{}/tenant/{id}", server.base), 32, secs, None);
    assert_eq!(health.errors + tenant.errors, 0, "{health:?} {tenant:?}");
    for (name, r) in [("GET /health", &health), ("GET /tenant/{id}", &tenant)] {
        println!(
            "{name}: {:.0} req/s  p50 {:.2} ms  p99 {:.2} ms",
            r.requests_per_sec, r.p50_ms, r.p99_ms
        );
    }
    println!();
    println!("| measure | value | target |");
    println!("| --- | --- | --- |");
    println!(
        "| signups/s ÷ bare argon2id hashes/s | {:.1} / {:.1} = **{:.2}** | ≥ 0.8 |",
        signup.requests_per_sec,
        hash_rate,
        signup.requests_per_sec / hash_rate
    );
    println!(
        "| GET /tenant/{{id}} ÷ GET /health req/s | {:.0} / {:.0} = **{:.2}** | ≥ 0.7 |",
        tenant.requests_per_sec,
        health.requests_per_sec,
        tenant.requests_per_sec / health.requests_per_sec
    );
    println!(
        "| signup p50 / p99 | {:.1} ms / {:.1} ms | |\n| tenant lookup p50 / p99 | {:.2} ms / {:.2} ms | |\n| health p50 / p99 | {:.2} ms / {:.2} ms | |",
        signup.p50_ms, signup.p99_ms, tenant.p50_ms, tenant.p99_ms, health.p50_ms, health.p99_ms
    );
}
