//! The pages' weight and speed (issue 14), release build, loopback only. For each customer and
//! console page, signed in where it needs to be:
//! - its weight: the HTML plus every stylesheet and script it loads (target < 100 KB);
//! - its time to first byte, p50 and p99 over `wrk -c4` (target p99 < 50 ms), next to
//!   `GET /health` measured in the same run as the baseline (the ratio says what rendering the
//!   page costs over the server's floor).
//!
//! Run: `cargo bench --bench pages` (needs `wrk`; `BENCH_SECONDS` sets each run's length,
//! default 10). wrk's latency is the time to the whole response, so it bounds the first byte
//! from above.

mod common;

use common::{Server, active_tenant, bench_seconds, signup, wrk, wrk_with_headers};

/// The `name=value` of the `Set-Cookie` named `name` in a response's headers.
fn cookie(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("a {name} cookie"))
        .to_string()
}

/// The page's bytes plus those of each `/static/…` file it references.
async fn weight(http: &reqwest::Client, base: &str, path: &str, cookie: &str) -> (usize, usize) {
    let get = |p: String| async move {
        let resp = http
            .get(format!("{base}{p}"))
            .header("Cookie", cookie)
            .header("Accept", "text/html")
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{p}: {}", resp.status());
        resp.bytes().await.unwrap()
    };
    let html = get(path.to_string()).await;
    let text = String::from_utf8_lossy(&html).into_owned();
    let mut total = html.len();
    let mut assets: Vec<&str> = text
        .match_indices("/static/")
        .filter_map(|(at, _)| text[at..].split(['"', '\'']).next())
        .collect();
    assets.sort_unstable();
    assets.dedup();
    for a in assets {
        total += get(a.to_string()).await.len();
    }
    (html.len(), total)
}

fn main() {
    let secs = bench_seconds();
    println!("onboard pages benchmark: {secs} s per page, wrk -t2 -c4 over loopback");
    onboard::outbound::ensure_crypto_provider();
    let token = "bench-operator-token-0123456789abcdef";
    let server = Server::start(&[("ADMIN_TOKEN", token), ("SIGNUP_RATE_LIMIT_PER_HOUR", "0")]);
    let base = server.base.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (session_cookie, operator_cookie, checkout, tenant) = rt.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let (tid, _key) = active_tenant(&http, &base, "pages@example.com").await;
        for i in 0..12 {
            http.post(format!("{base}/v1/documents"))
                .bearer_auth(&_key)
                .header("Content-Type", "text/plain")
                .body(format!(
                    "Document {i}: refunds, shipping and onboarding notes."
                ))
                .send()
                .await
                .unwrap();
        }
        let login = http
            .post(format!("{base}/login"))
            .json(&serde_json::json!({"email": "pages@example.com", "password": "BenchPass123!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200);
        let session = cookie(&login, "onboard_session");
        let admin = http
            .post(format!("{base}/admin/login"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(admin.status(), 303, "operator sign-in");
        let operator = cookie(&admin, "onboard_operator");
        let (_, checkout) = signup(&http, &base, "checkout@example.com").await;
        (session, operator, checkout, tid)
    });
    let pages: Vec<(String, &str)> = vec![
        ("/".into(), ""),
        ("/login".into(), ""),
        (format!("/dev/checkout/{checkout}"), ""),
        (format!("/onboarding/success?session_id={checkout}"), ""),
        ("/onboarding/cancel".into(), ""),
        ("/setup".into(), &session_cookie),
        ("/app".into(), &session_cookie),
        ("/account".into(), &session_cookie),
        ("/app/members".into(), &session_cookie),
        ("/docs".into(), ""),
        ("/admin".into(), &operator_cookie),
        ("/admin/tenants".into(), &operator_cookie),
        (format!("/admin/tenants/{tenant}"), &operator_cookie),
        ("/admin/activation".into(), &operator_cookie),
        ("/admin/at-risk".into(), &operator_cookie),
        ("/admin/jobs".into(), &operator_cookie),
        ("/admin/audit".into(), &operator_cookie),
    ];
    let health = wrk(&format!("{base}/health"), 4, secs, None);
    println!(
        "GET /health: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
        health.requests_per_sec, health.p50_ms, health.p99_ms
    );
    println!();
    println!("| page | HTML | with CSS and JS | p50 | p99 | p50 ÷ /health p50 | targets |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut worst = (0usize, 0.0f64);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, cookie) in &pages {
        let (html, total) = rt.block_on(weight(&http, &base, path, cookie));
        let header = format!("Cookie: {cookie}");
        let mut headers = vec!["Accept: text/html"];
        if !cookie.is_empty() {
            headers.push(header.as_str());
        }
        let r = wrk_with_headers(&format!("{base}{path}"), 4, secs, None, &headers);
        assert_eq!(r.errors, 0, "{path} answered an error under load: {r:?}");
        let ok = total < 100 * 1024 && r.p99_ms < 50.0;
        worst = (worst.0.max(total), worst.1.max(r.p99_ms));
        println!(
            "| `{}` | {:.1} KB | {:.1} KB | {:.2} ms | {:.2} ms | {:.1} | {} |",
            path.split('?')
                .next()
                .unwrap_or(path)
                .replace(&checkout, "{session}")
                .replace(&tenant, "{id}"),
            html as f64 / 1024.0,
            total as f64 / 1024.0,
            r.p50_ms,
            r.p99_ms,
            r.p50_ms / health.p50_ms.max(0.001),
            if ok { "✔" } else { "✘" }
        );
    }
    println!();
    println!(
        "heaviest page {:.1} KB (target < 100 KB), slowest p99 {:.2} ms (target < 50 ms)",
        worst.0 as f64 / 1024.0,
        worst.1
    );
}
