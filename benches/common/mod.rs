//! Shared benchmark plumbing: start the release server, drive it with `wrk`, parse the report.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `onboard` process on a loopback port, killed on drop.
pub struct Server {
    pub base: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `onboard serve` with `envs` on a fresh SQLite database (unless `DATABASE_URL` is
    /// given) and waits until `/health` answers.
    pub fn start(envs: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let db = format!("sqlite://{}", dir.path().join("bench.db").display());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onboard"));
        cmd.arg("serve")
            .current_dir(dir.path())
            .env("ONBOARD_ADDR", format!("127.0.0.1:{port}"))
            .env("APP_URL", &base)
            .env("DATABASE_URL", db)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start onboard");
        let server = Server {
            base,
            child,
            _dir: dir,
        };
        server.wait_healthy();
        server
    }

    /// Resident memory of the server process, in MiB (Linux `/proc`).
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server process is alive");
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kb / 1024.0
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if curl(&format!("{}/health", self.base)).is_some_and(|b| b.contains("\"ok\"")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("onboard did not become healthy at {}", self.base);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET or POST with curl; `None` on any failure.
pub fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn curl_post_json(url: &str, body: &str) -> Option<String> {
    let out = Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "10",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            url,
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What wrk measured.
#[derive(Debug, Clone)]
pub struct WrkReport {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    pub errors: u64,
}

/// Runs wrk against `url` for `secs` with `connections` and an optional Lua script.
pub fn wrk(url: &str, connections: u32, secs: u32, script: Option<&Path>) -> WrkReport {
    wrk_with_headers(url, connections, secs, script, &[])
}

fn parse_wrk(text: &str) -> Option<WrkReport> {
    let mut r = WrkReport {
        requests_per_sec: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        requests: 0,
        errors: 0,
    };
    for line in text.lines() {
        let t = line.trim();
        let mut it = t.split_whitespace();
        match (it.next(), it.next()) {
            (Some("Requests/sec:"), Some(v)) => r.requests_per_sec = v.parse().ok()?,
            (Some("50%"), Some(v)) => r.p50_ms = duration_ms(v)?,
            (Some("99%"), Some(v)) => r.p99_ms = duration_ms(v)?,
            (Some("Non-2xx"), _) => r.errors += t.rsplit(' ').next()?.parse::<u64>().ok()?,
            (Some("Socket"), _) => {
                // "Socket errors: connect 0, read 0, write 0, timeout 0"
                r.errors += t
                    .split(',')
                    .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                    .sum::<u64>();
            }
            (Some(n), Some("requests")) => r.requests = n.parse().ok()?,
            _ => {}
        }
    }
    (r.requests_per_sec > 0.0).then_some(r)
}

fn duration_ms(v: &str) -> Option<f64> {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

/// Path of a file under `benches/`.
pub fn bench_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join(name)
}

/// Seconds per wrk run: `BENCH_SECONDS` (default 10).
pub fn bench_seconds() -> u32 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// Like [`wrk`], with extra request headers (`"Name: value"`).
pub fn wrk_with_headers(
    url: &str,
    connections: u32,
    secs: u32,
    script: Option<&Path>,
    headers: &[&str],
) -> WrkReport {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{secs}s"),
        "--latency",
        "--timeout",
        "10s",
    ]);
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(url);
    let out = cmd
        .output()
        .expect("wrk is installed (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse_wrk(&text).unwrap_or_else(|| panic!("could not parse wrk output:\n{text}"))
}

/// GET `url` and parse the JSON answer.
pub async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// Polls `GET /tenant/{tid}` every 20 ms until `pick` finds what it waits for in the tenant,
/// or panics at `deadline`.
pub async fn poll_tenant<T>(
    http: &reqwest::Client,
    base: &str,
    tid: &str,
    deadline: Instant,
    pick: impl Fn(&serde_json::Value) -> Option<T>,
) -> T {
    loop {
        let t = get_json(http, &format!("{base}/tenant/{tid}")).await;
        if let Some(found) = pick(&t) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "tenant {tid} never got there: {t}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Signs a starter tenant up over HTTP; returns its id and its checkout session id.
pub async fn signup(http: &reqwest::Client, base: &str, email: &str) -> (String, String) {
    let resp = http
        .post(format!("{base}/signup"))
        .json(&serde_json::json!({"email": email, "company_name": "Bench", "password": "BenchPass123!", "plan": "starter"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "signup of {email}");
    let r: serde_json::Value = resp.json().await.unwrap();
    let tenant_id = r["tenant_id"].as_str().unwrap().to_string();
    let session = r["checkout_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    (tenant_id, session)
}

/// Signs `email` up, pays through the dev checkout, waits until active; (tenant id, first key).
pub async fn active_tenant(http: &reqwest::Client, base: &str, email: &str) -> (String, String) {
    let (tid, session) = signup(http, base, email).await;
    let pay = http
        .post(format!("{base}/dev/checkout/{session}/pay"))
        .send()
        .await
        .unwrap();
    assert_eq!(pay.status(), 303);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    poll_tenant(http, base, &tid, deadline, |t| {
        (t["status"] == "active").then_some(())
    })
    .await;
    let progress = get_json(
        http,
        &format!("{base}/onboarding/status?session_id={session}"),
    )
    .await;
    (tid, progress["api_key"].as_str().unwrap().to_string())
}
