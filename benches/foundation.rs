//! Foundation benchmark (issue 2), three rounds (the median reported), release build, loopback only:
//! - signups/s through the real server against bare argon2id hashes/s with the same parameters
//!   on the same cores (a signup should cost nothing beyond its hash: target ≥ 0.8);
//! - `GET /tenant/{id}` requests/s against `GET /health` (target ≥ 0.7), with p50/p99.
//!
//! - memory (issue 10): the server's RSS after a signup flood and after a sign-in flood (target
//!   at most 80 MiB each), with argon2's working memory reused rather than reallocated;
//! - a sign-in flood (issue 10): 200 unknown-email sign-ins a second from ever-changing client
//!   addresses, sent open-loop, while wrk drives signups: signup p99 must stay under 2 s.
//!
//! Run: `cargo bench --bench foundation` (needs `wrk`; `BENCH_SECONDS` sets each run's length;
//! `BENCH_ONLY=ratios|memory|flood` runs one part).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Server, bench_file, bench_seconds, curl_post_json, wrk};

/// Bare argon2id hashes a second on every core, each thread reusing its working memory as the
/// server does: the physical floor of a signup.
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
                let mut memory = onboard::domain::password::HashMemory::new();
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(onboard::domain::password::hash_with(
                        b"BenchPass123!",
                        &mut memory,
                    ));
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(u64::from(secs)));
        stop.store(true, Ordering::Relaxed);
    });
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Rounds of each comparison; the median round is reported.
const ROUNDS: usize = 3;

fn main() {
    let secs = bench_seconds();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "onboard foundation benchmark: {cores} cores, {secs} s per run, wrk -t2 over loopback"
    );

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only == "memory" {
        return memory(secs);
    }
    if only == "flood" {
        return login_flood(secs);
    }
    let server = Server::start(&[("SIGNUP_RATE_LIMIT_PER_HOUR", "0")]);
    let created = curl_post_json(
        &format!("{}/signup", server.base),
        r#"{"email":"lookup@example.com","company_name":"Lookup","password":"BenchPass123!"}"#,
    )
    .expect("create the tenant to look up");
    let v: serde_json::Value = serde_json::from_str(&created).unwrap();
    let id = v["tenant_id"].as_str().unwrap();

    // Each ratio's two sides run back to back, in three rounds; the round with the median ratio
    // is reported. On this shared 2-core machine single runs of either ratio have ranged by
    // ±0.15 within minutes of each other.
    let mut signups = Vec::new();
    let mut lookups = Vec::new();
    for round in 1..=ROUNDS {
        let hash_rate = bare_hash_rate(secs);
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
        let health = wrk(&format!("{}/health", server.base), 32, secs, None);
        let tenant = wrk(&format!("{}/tenant/{id}", server.base), 32, secs, None);
        assert_eq!(health.errors + tenant.errors, 0, "{health:?} {tenant:?}");
        println!(
            "round {round}: argon2id {hash_rate:.1} hashes/s, POST /signup {:.1}/s (ratio {:.2}); \
             GET /health {:.0}/s, GET /tenant/{{id}} {:.0}/s (ratio {:.2})",
            signup.requests_per_sec,
            signup.requests_per_sec / hash_rate,
            health.requests_per_sec,
            tenant.requests_per_sec,
            tenant.requests_per_sec / health.requests_per_sec
        );
        signups.push((signup.requests_per_sec / hash_rate, hash_rate, signup));
        lookups.push((
            tenant.requests_per_sec / health.requests_per_sec,
            tenant,
            health,
        ));
    }
    signups.sort_by(|a, b| a.0.total_cmp(&b.0));
    lookups.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (_, hash_rate, signup) = &signups[ROUNDS / 2];
    let (_, tenant, health) = &lookups[ROUNDS / 2];
    println!();
    println!("| measure | value (median of {ROUNDS} rounds) | target |");
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

    println!();
    drop(server);
    if only == "ratios" {
        return;
    }
    memory(secs);
    println!();
    login_flood(secs);
}

/// RSS at start, after a signup flood and after a sign-in flood, each also 5 s later.
fn memory(secs: u32) {
    let server = Server::start(&[
        ("SIGNUP_RATE_LIMIT_PER_HOUR", "0"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("LOGIN_FAILURES_PER_IP", "0"),
    ]);
    let at_start = server.rss_mib();
    let signup = wrk(
        &format!("{}/signup", server.base),
        8,
        secs,
        Some(&bench_file("wrk/signup.lua")),
    );
    let after_signups = server.rss_mib();
    std::thread::sleep(Duration::from_secs(5));
    let signups_later = server.rss_mib();
    let login = wrk(
        &format!("{}/login", server.base),
        8,
        secs,
        Some(&bench_file("wrk/login.lua")),
    );
    let after_logins = server.rss_mib();
    std::thread::sleep(Duration::from_secs(5));
    let logins_later = server.rss_mib();
    println!("| memory (RSS) | MiB | target |\n| --- | --- | --- |");
    println!("| at start | {at_start:.0} | |");
    println!(
        "| after {secs} s of signups ({:.0}/s) | {after_signups:.0} (5 s later {signups_later:.0}) | ≤ 80 |",
        signup.requests_per_sec
    );
    println!(
        "| after {secs} s of sign-ins ({:.0}/s, unknown emails) | {after_logins:.0} (5 s later {logins_later:.0}) | ≤ 80 |",
        login.requests_per_sec
    );
}

/// Signup latency while 200 unknown-email sign-ins a second arrive, open-loop, each from its own
/// address: the bounded hashing queue must keep signups flowing.
fn login_flood(secs: u32) {
    onboard::outbound::ensure_crypto_provider();
    let server = Server::start(&[
        ("SIGNUP_RATE_LIMIT_PER_HOUR", "0"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("LOGIN_FAILURES_PER_IP", "0"),
    ]);
    let rate = 200u32;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let base = server.base.clone();
    let flood = runtime.spawn(async move {
        let client = reqwest::Client::new();
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
        // A little longer than the signups, so they run under the whole flood.
        let total = (rate * (secs + 2)) as usize;
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            tokio::time::sleep_until((start + interval * i as u32).into()).await;
            let (client, url) = (client.clone(), format!("{base}/login"));
            tasks.push(tokio::spawn(async move {
                client
                    .post(url)
                    .header("x-forwarded-for", format!("10.9.{}.{}", (i / 250) % 250, i % 250 + 1))
                    .json(&serde_json::json!({"email": format!("nobody-{i}@example.com"), "password": "WrongPass123!"}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }));
        }
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for t in tasks {
            *statuses.entry(t.await.unwrap()).or_default() += 1;
        }
        statuses
    });
    std::thread::sleep(Duration::from_secs(1));
    let signup = wrk(
        &format!("{}/signup", server.base),
        8,
        secs,
        Some(&bench_file("wrk/signup.lua")),
    );
    let statuses = runtime.block_on(flood).unwrap();
    let answered: Vec<String> = statuses
        .iter()
        .map(|(code, n)| {
            format!(
                "{n} × {}",
                if *code == 0 {
                    "no answer".to_string()
                } else {
                    code.to_string()
                }
            )
        })
        .collect();
    println!("| under {rate} unknown-email sign-ins/s | value | target |\n| --- | --- | --- |");
    println!(
        "| signups/s, p50 / p99 | {:.1}/s, {:.0} ms / {:.0} ms | p99 < 2000 ms |",
        signup.requests_per_sec, signup.p50_ms, signup.p99_ms
    );
    println!(
        "| sign-in answers | {} | 503 when the queue is full, at once |",
        answered.join(", ")
    );
    assert_eq!(
        signup.errors, 0,
        "every signup succeeded under the flood: {signup:?}"
    );
}
