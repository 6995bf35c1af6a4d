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
    /// Run the HTTP API and pages (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Operator commands on tenants.
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
}

#[derive(Subcommand)]
enum TenantsCommand {
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
    cli::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let result = runtime.block_on(async move {
        match args.command.unwrap_or(Command::Serve) {
            Command::Serve => cli::serve(settings).await,
            Command::Migrate => cli::migrate(settings).await,
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
