//! `onboard demo`: the whole journey once, on a temporary database, in one process, printing
//! each step with its duration. It drives the real HTTP server over loopback, as a customer would.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::Settings;
use crate::domain::TenantId;
use crate::http::Application;
use crate::store::Store;

/// Runs the demo and prints the report.
pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let db = format!("sqlite://{}", dir.join("demo.db").display());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let settings = Settings::with_overrides(&[
        ("DATABASE_URL", &db),
        ("ONBOARD_ADDR", &addr.to_string()),
        ("APP_URL", &base),
    ])?;
    println!("onboard demo: a temporary database at {}\n", dir.display());
    let total = Instant::now();

    let t = Instant::now();
    let store = Store::connect(&db, 5).await?;
    let app = Application::from_listener(listener, settings, store.clone());
    let state = app.state().clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(crate::tasks::run_worker(
        state.clone(),
        state.settings.worker_concurrency(),
        stop_rx,
    ));
    let (shut_tx, shut_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = shut_rx.await;
    }));
    step("start server and worker (migrated SQLite)", t, &base);

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let t = Instant::now();
    let signup: Value = http
        .post(format!("{base}/signup"))
        .json(&json!({"email": "alice@startup.com", "company_name": "Startup Inc", "password": "SecurePass123!", "plan": "pro"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let tenant_id = signup["tenant_id"].as_str().unwrap_or_default().to_string();
    let checkout_url = signup["checkout_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    step("POST /signup", t, &format!("{tenant_id} pending_payment"));

    let t = Instant::now();
    http.get(&checkout_url).send().await?.error_for_status()?;
    step("open the dev checkout page", t, &checkout_url);

    let t = Instant::now();
    let pay = http.post(format!("{checkout_url}/pay")).send().await?;
    anyhow::ensure!(
        pay.status().is_redirection(),
        "pay answered {}",
        pay.status()
    );
    step(
        "Pay: signed checkout.session.completed → /webhook/stripe",
        t,
        "event stored, job queued",
    );

    let t = Instant::now();
    let session = checkout_url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let progress = loop {
        let p: Value = http
            .get(format!("{base}/onboarding/status?session_id={session}"))
            .send()
            .await?
            .json()
            .await?;
        if p["status"] == "active"
            || p["status"] == "failed"
            || t.elapsed() > Duration::from_secs(30)
        {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    step(
        "provisioning (worker)",
        t,
        progress["status"].as_str().unwrap_or("?"),
    );
    for s in progress["steps"].as_array().into_iter().flatten() {
        println!(
            "      {:<14} {:<8} {} ms",
            s["step"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            s["duration_ms"].as_i64().unwrap_or(0)
        );
    }

    let t = Instant::now();
    let id = TenantId::parse(&tenant_id).ok_or_else(|| anyhow::anyhow!("bad tenant id"))?;
    let email = loop {
        let emails = store.list_emails(Some(id.as_str()), 5).await?;
        if let Some(e) = emails.into_iter().find(|e| e.status == "sent") {
            break Some(e);
        }
        if t.elapsed() > Duration::from_secs(10) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    step(
        "welcome email delivered (outbox)",
        t,
        email.as_ref().map_or("not sent", |e| e.subject.as_str()),
    );

    // The customer's first real work with the key the success page showed.
    let key = progress["api_key"].as_str().unwrap_or("");
    let t = Instant::now();
    let doc: Value = http
        .post(format!("{base}/v1/documents"))
        .bearer_auth(key)
        .json(&serde_json::json!({
            "title": "Refund policy",
            "content": "Customers on any plan may ask for a full refund within 30 days of paying.\n\nAfter 30 days, refunds are pro-rated to the unused part of the month."
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    step(
        "first document: POST /v1/documents",
        t,
        &format!(
            "{} ({} chunk)",
            doc["id"].as_str().unwrap_or("?"),
            doc["chunk_count"]
        ),
    );
    let t = Instant::now();
    let answer: Value = http
        .post(format!("{base}/v1/query"))
        .bearer_auth(key)
        .json(&serde_json::json!({"query": "can I get a refund after two weeks?", "top_k": 3}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let top = &answer["results"][0];
    step(
        "first query: POST /v1/query",
        t,
        &format!(
            "top hit \"{}\" (score {:.2})",
            top["title"].as_str().unwrap_or("none"),
            top["score"].as_f64().unwrap_or(0.0)
        ),
    );

    let tenant = store
        .tenant(&id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("tenant vanished"))?;
    let milestones: Vec<String> = store
        .milestones(&id)
        .await?
        .into_iter()
        .map(|m| m.milestone)
        .collect();
    println!(
        "\nfinal tenant  {} ({}) status={} plan={}",
        tenant.id, tenant.company_name, tenant.status, tenant.plan
    );
    println!(
        "api key       {}… (shown once; {} characters)",
        &key[..key.len().min(16)],
        key.len()
    );
    if let Some(e) = &email {
        let link = e
            .text_body
            .lines()
            .find(|l| l.contains("/login/magic?token="))
            .unwrap_or("")
            .trim();
        println!(
            "welcome email to {}: \"{}\"\n              login link {}",
            e.to_email, e.subject, link
        );
    }
    println!("milestones    {}", milestones.join(", "));
    println!(
        "total         {:.0} ms",
        total.elapsed().as_secs_f64() * 1000.0
    );

    let _ = stop_tx.send(true);
    let _ = worker.await;
    let _ = shut_tx.send(());
    let _ = server.await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        tenant.status.as_str() == "active",
        "the demo tenant ended {}",
        tenant.status
    );
    Ok(())
}

fn step(name: &str, started: Instant, detail: &str) {
    println!(
        "{:>7.1} ms  {name:<58} {detail}",
        started.elapsed().as_secs_f64() * 1000.0
    );
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("onboard-demo-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
