//! What each subcommand does.

use tracing_subscriber::EnvFilter;

use crate::config::Settings;
use crate::domain::TenantStatus;
use crate::http::Application;
use crate::store::{Store, ms_to_datetime};

/// Logs to stderr; `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` for JSON lines.
pub fn init_tracing() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
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

/// `onboard serve`.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let store = connect(&settings).await?;
    let app = Application::bind(settings, store.clone()).await?;
    let addr = app.local_addr();
    let s = &app.state().settings;
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
