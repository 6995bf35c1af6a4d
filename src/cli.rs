//! What each subcommand does.

use tracing_subscriber::EnvFilter;

use crate::config::Settings;
use crate::domain::TenantStatus;
use crate::domain::audit::{Action, Actor};
use crate::http::Application;
use crate::store::{AuditEntry, Store, ms_to_datetime};

/// Logs to stderr; `RUST_LOG` filters (default `info` for the long-running commands, `warn` for
/// those that print their own report), `LOG_FORMAT=json` for JSON lines.
pub fn init_tracing(quiet: bool) {
    let default = if quiet { "warn" } else { "info,sqlx=warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Connects to the configured database and migrates it.
pub async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect(&settings.database_url, settings.database_max_connections)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database (DATABASE_URL): {e:#}"))
}

/// `onboard serve [--no-worker]`.
pub async fn serve(settings: Settings, with_worker: bool) -> anyhow::Result<()> {
    let store = connect(&settings).await?;
    let app = Application::bind(settings, store.clone()).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = with_worker.then(|| {
        let state = app.state().clone();
        let n = state.settings.worker_concurrency();
        tokio::spawn(crate::tasks::run_worker(state, n, stop_rx))
    });
    let addr = app.local_addr();
    let s = &app.state().settings;
    warn_if_dev_aids_are_public(s);
    tracing::info!(
        database = store.backend(),
        "onboard listening on http://{addr}"
    );
    println!(
        "onboard is running at http://{addr}  (public URL {})",
        s.app_url
    );
    println!("  API reference: http://{addr}/docs   health: http://{addr}/health");
    app.run_until(shutdown_signal()).await?;
    let _ = stop_tx.send(true);
    if let Some(w) = worker {
        let _ = w.await;
    }
    store.close().await;
    Ok(())
}

/// Development aids on a non-loopback address (only with an explicit `APP_ENV=development`)
/// are announced loudly: anyone who can reach the server can mark themselves paid and read
/// every tenant's sign-in links.
fn warn_if_dev_aids_are_public(settings: &Settings) {
    let aids = settings.dev_aids();
    if !aids.forced {
        return;
    }
    let mut on = Vec::new();
    if aids.checkout {
        on.push("the dev checkout (anyone can mark a signup paid)");
    }
    if aids.mailbox {
        on.push("/dev/mailbox (every tenant's sign-in links)");
    }
    if aids.derived_webhook_secret {
        on.push("a webhook secret derived from JWT_SECRET");
    }
    let bar = "!".repeat(78);
    eprintln!(
        "{bar}\n!! WARNING: APP_ENV=development on the non-loopback address {}\n!! These development aids are reachable from the network:\n{}\n!! Never run this configuration where strangers can reach it.\n{bar}",
        settings.addr,
        on.iter()
            .map(|a| format!("!!   - {a}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    tracing::warn!(addr = %settings.addr, aids = ?on, "development aids are on for a non-loopback address");
}

/// `onboard worker`: job workers only.
pub async fn worker(settings: Settings) -> anyhow::Result<()> {
    let store = connect(&settings).await?;
    let state = crate::app::AppState::new(settings, store.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let n = state.settings.worker_concurrency();
    let metrics = match state.settings.worker_metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on WORKER_METRICS_ADDR {addr}: {e}"))?;
            let router = crate::http::worker_metrics_router(state.clone());
            let mut stop = stop_rx.clone();
            println!("  metrics: http://{}/metrics", listener.local_addr()?);
            Some(tokio::spawn(async move {
                let done = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(done)
                    .await
                {
                    tracing::error!(error = %e, "the worker's metrics endpoint stopped");
                }
            }))
        }
        None => None,
    };
    let handle = tokio::spawn(crate::tasks::run_worker(state, n, stop_rx));
    println!("onboard worker running on the {} database", store.backend());
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let _ = handle.await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    store.close().await;
    Ok(())
}

/// `onboard jobs stats`.
pub async fn jobs_stats(settings: Settings) -> anyhow::Result<()> {
    let store = connect(&settings).await?;
    println!(
        "{:<20} {:>7} {:>8} {:>9} {:>6} {:>8} {:>12}",
        "KIND", "QUEUED", "RUNNING", "RETRYING", "DEAD", "DONE", "OLDEST WAIT"
    );
    for s in store.job_stats().await? {
        let oldest = s
            .oldest_waiting_secs
            .map(|x| format!("{x}s"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:>7} {:>8} {:>9} {:>6} {:>8} {:>12}",
            s.kind, s.queued, s.running, s.retrying, s.dead, s.done, oldest
        );
    }
    for j in store.list_jobs("dead", 20).await? {
        println!(
            "dead {} {} after {} attempts: {}",
            j.id,
            j.kind,
            j.attempts,
            j.last_error.unwrap_or_default()
        );
    }
    store.close().await;
    Ok(())
}

/// `onboard jobs retry <id>`.
pub async fn jobs_retry(settings: Settings, id: &str) -> anyhow::Result<()> {
    let store = connect(&settings).await?;
    store.retry_job(id).await?;
    println!("job {id} queued again");
    store.close().await;
    Ok(())
}

/// `onboard tenants retry <tenant_id>`.
pub async fn tenants_retry(settings: Settings, id: &str, force: bool) -> anyhow::Result<()> {
    let tenant = tenant_arg(id)?;
    let store = connect(&settings).await?;
    let state = crate::app::AppState::new(settings, store.clone());
    let action = if force {
        Action::OperatorForceProvision
    } else {
        Action::OperatorRetry
    };
    let audit = AuditEntry::new(Actor::Operator, action).with("via", "cli");
    crate::provisioning::retry(&state, &tenant, force, "operator", audit).await?;
    println!("tenant {id} is provisioning again; completed steps are not repeated");
    store.close().await;
    Ok(())
}

/// `onboard tenants approve <tenant_id>`.
pub async fn tenants_approve(settings: Settings, id: &str) -> anyhow::Result<()> {
    let tenant = tenant_arg(id)?;
    let store = connect(&settings).await?;
    let state = crate::app::AppState::new(settings, store.clone());
    let audit = AuditEntry::new(Actor::Operator, Action::OperatorApprove).with("via", "cli");
    let approval = crate::billing::account::approve(&state, &tenant, "operator", audit)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("tenant {id} approved: its workspace is being set up by the workers");
    if let Some(url) = approval.invoice_url {
        println!("invoice sent by Stripe: {url}");
    }
    store.close().await;
    Ok(())
}

/// `onboard migrate`.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let store = connect(&settings).await?;
    println!("migrations applied to {} database", store.backend());
    store.close().await;
    Ok(())
}

/// `onboard tenants list`.
pub async fn tenants_list(
    settings: Settings,
    status: Option<&str>,
    limit: i64,
) -> anyhow::Result<()> {
    let status = status
        .map(|s| s.parse::<TenantStatus>().map_err(anyhow::Error::msg))
        .transpose()?;
    let store = connect(&settings).await?;
    let tenants = store.list_tenants(status, limit.clamp(1, 10_000)).await?;
    println!(
        "{:<34} {:<16} {:<11} {:<25} COMPANY / REASON",
        "TENANT", "STATUS", "PLAN", "CREATED"
    );
    for t in &tenants {
        let created = ms_to_datetime(t.created_at).format("%Y-%m-%d %H:%M:%S UTC");
        let reason = t
            .status_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        println!(
            "{:<34} {:<16} {:<11} {:<25} {}{}",
            t.id, t.status, t.plan, created, t.company_name, reason
        );
    }
    println!("{} tenant(s)", tenants.len());
    store.close().await;
    Ok(())
}

fn tenant_arg(id: &str) -> anyhow::Result<crate::domain::TenantId> {
    crate::domain::TenantId::parse(id).ok_or_else(|| anyhow::anyhow!("'{id}' is not a tenant id"))
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time, as Stripe seconds.
pub fn parse_since(s: &str) -> anyhow::Result<i64> {
    crate::domain::parse_day_or_time(s)
        .map(|t| t.timestamp())
        .ok_or_else(|| {
            anyhow::anyhow!("--since '{s}' is not a date (YYYY-MM-DD) or an RFC 3339 time")
        })
}

/// `onboard events list [--tenant ID] [--limit N]`.
pub async fn events_list(
    settings: Settings,
    tenant: Option<&str>,
    limit: i64,
) -> anyhow::Result<()> {
    let tenant = tenant.map(tenant_arg).transpose()?;
    let store = connect(&settings).await?;
    let events =
        crate::billing::events::list(&store, tenant.as_ref(), limit.clamp(1, 10_000)).await?;
    println!(
        "{:<36} {:<38} {:<20} {:<34} OUTCOME",
        "EVENT", "TYPE", "CREATED", "TENANT"
    );
    for e in &events {
        let created = chrono::DateTime::from_timestamp(e.created, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let outcome = match (&e.outcome, e.processed_at) {
            (Some(o), _) => o.clone(),
            (None, None) => "pending".into(),
            (None, Some(_)) => "processed".into(),
        };
        println!(
            "{:<36} {:<38} {:<20} {:<34} {}",
            e.id,
            e.kind,
            created,
            e.tenant_id.as_deref().unwrap_or("-"),
            outcome
        );
    }
    println!("{} event(s)", events.len());
    store.close().await;
    Ok(())
}

/// `onboard events replay [--type T] [--since DATE] [--tenant ID]`.
pub async fn events_replay(
    settings: Settings,
    kind: Option<String>,
    since: Option<&str>,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let filter = crate::billing::events::ReplayFilter {
        kind,
        since: since.map(parse_since).transpose()?,
        tenant: tenant.map(tenant_arg).transpose()?,
    };
    let store = connect(&settings).await?;
    let state = crate::app::AppState::new(settings, store.clone());
    let report = crate::billing::events::replay(&state, &filter).await?;
    println!(
        "replayed {} event(s): {} changed something, {} of a type no handler takes",
        report.replayed, report.changed, report.ignored
    );
    store.close().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
