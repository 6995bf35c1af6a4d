//! The `onboard` binary: CLI only; everything else lives in the library.

use clap::{Parser, Subcommand};

use onboard::cli;

#[derive(Parser)]
#[command(
    name = "onboard",
    version,
    about = "Self-service SaaS tenant onboarding"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and pages with an in-process worker (the default).
    Serve {
        /// Do not run job workers in this process (run `onboard worker` elsewhere).
        #[arg(long)]
        no_worker: bool,
    },
    /// Run job workers only.
    Worker,
    /// Operator commands on the job queue.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Run the whole journey once on a temporary database and print a report.
    Demo,
    /// Apply database migrations and exit.
    Migrate,
    /// Operator commands on tenants.
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Stored Stripe events: list them, or put them through today's handlers again.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Recent events with their outcome, newest first.
    List {
        /// Only events about this tenant.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put stored events through today's handlers, oldest first (idempotent).
    Replay {
        /// Only events of this type (e.g. invoice.payment_failed).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only events created on or after this date (YYYY-MM-DD, UTC, or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only events about this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Queued / running / retrying / dead / done per job kind, oldest wait, dead jobs.
    Stats,
    /// Put a dead job back in the queue.
    Retry { id: String },
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Retry provisioning of a failed tenant.
    Retry {
        tenant_id: String,
        /// Also re-enqueue a tenant still in provisioning.
        #[arg(long)]
        force: bool,
    },
    /// Approve an enterprise signup in sales_review: provision it (and, with Stripe, invoice it).
    Approve { tenant_id: String },
    /// List tenants, newest first.
    List {
        /// Only tenants in this status (e.g. failed, provisioning).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    let settings = match onboard::config::Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("onboard: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // `serve` and `worker` log what they do; the other commands print their own report.
    let quiet = !matches!(
        args.command,
        None | Some(Command::Serve { .. } | Command::Worker)
    );
    cli::init_tracing(quiet);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let result = runtime.block_on(async move {
        match args.command.unwrap_or(Command::Serve { no_worker: false }) {
            Command::Serve { no_worker } => cli::serve(settings, !no_worker).await,
            Command::Worker => cli::worker(settings).await,
            Command::Demo => onboard::demo::run().await,
            Command::Jobs {
                command: JobsCommand::Stats,
            } => cli::jobs_stats(settings).await,
            Command::Jobs {
                command: JobsCommand::Retry { id },
            } => cli::jobs_retry(settings, &id).await,
            Command::Tenants {
                command: TenantsCommand::Retry { tenant_id, force },
            } => cli::tenants_retry(settings, &tenant_id, force).await,
            Command::Migrate => cli::migrate(settings).await,
            Command::Tenants {
                command: TenantsCommand::Approve { tenant_id },
            } => cli::tenants_approve(settings, &tenant_id).await,
            Command::Events {
                command: EventsCommand::List { tenant, limit },
            } => cli::events_list(settings, tenant.as_deref(), limit).await,
            Command::Events {
                command:
                    EventsCommand::Replay {
                        kind,
                        since,
                        tenant,
                    },
            } => cli::events_replay(settings, kind, since.as_deref(), tenant.as_deref()).await,
            Command::Tenants {
                command: TenantsCommand::List { status, limit },
            } => cli::tenants_list(settings, status.as_deref(), limit).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onboard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
