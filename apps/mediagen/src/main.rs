//! The `mediagen` binary: `run` the bot, `migrate` the database, move a SQLite database to
//! PostgreSQL (`migrate-storage`), start the `fal-sim` simulator, print the `catalog` or the
//! settings in force (`config show`), or answer the operator from the database: the
//! capacity `plan` and usage `report`s; `doctor` checks what the bot needs from outside,
//! `init` writes a first settings file.

use anyhow::Context;
use clap::{Parser, Subcommand};
use mediagen::settings::Settings;
use std::path::PathBuf;
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "mediagen", version, about = "A Telegram bot that makes images through fal.ai")]
struct Cli {
    /// Where `config/` lives; its files override the compiled-in ones, which are used
    /// where it has none.
    #[arg(long, env = "MEDIAGEN_HOME", default_value = ".", global = true)]
    home: PathBuf,
    /// An operator's settings file layered over config/default.toml.
    #[arg(long, env = "MEDIAGEN_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bot (the default).
    Run,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Copy a SQLite database into an empty PostgreSQL one, once, keeping every id (stop the
    /// bot first; then point DATABASE_URL at PostgreSQL).
    MigrateStorage {
        /// The SQLite database to copy, e.g. `sqlite://mediagen.sqlite`.
        #[arg(long)]
        from: String,
        /// The empty PostgreSQL database to fill, e.g. `postgres://user@host/mediagen`.
        #[arg(long)]
        to: String,
    },
    /// Check the token, webhook, fal keys, database, admins, metrics port and clock; print one
    /// line per check with the fix for each failure; exit 1 when any check fails.
    Doctor,
    /// Set up: check a token, fal keys, admins and a database as they are given (flags, or
    /// questions in a terminal), write a settings file without secrets, and print the
    /// environment lines for the secrets and the commands to run next.
    Init(mediagen::init::InitArgs),
    /// Start the fal simulator (for the demo, tests and benchmarks).
    FalSim(mediagen_fal_sim::SimArgs),
    /// Print the model catalog with its prices.
    Catalog,
    /// The settings: `mediagen config show`.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Recommend the fal credit tier (or number of accounts) that keeps the p95 queue wait
    /// under a target, from the measured history.
    Plan {
        /// The p95 wait target in seconds (default: `[planner] target_wait_secs`).
        #[arg(long)]
        target_wait: Option<u64>,
    },
    /// Print a usage and cost report: `day`, `week`, `month` (so far), or `csv` (the cost
    /// allocation per user and model; `csv-week`, `csv-day` for other periods).
    Report {
        /// day | week | month | csv | csv-day | csv-week | csv-month.
        #[arg(default_value = "day")]
        what: String,
        /// The last complete period (yesterday, the seven days before today, last month).
        #[arg(long)]
        previous: bool,
        /// Also write the chart as a PNG to this file.
        #[arg(long)]
        chart: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the settings in force, each with the file or variable it came from (secrets
    /// are never shown), and the warnings the bot would log at start.
    Show,
}

fn load(cli: &Cli) -> anyhow::Result<Settings> {
    Settings::load(&cli.home, cli.config.as_deref(), &std::env::vars().collect())
}

/// Logs to stderr, as JSON lines when `[log] format = "json"` (for log shippers), else
/// human-readable. `RUST_LOG` picks the levels; prompts and secrets are never logged at info.
fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Settings decide the log format; a command that fails to load them still logs, plainly.
    let json = load(&cli).map(|settings| settings.log.format == "json").unwrap_or(false);
    init_logging(json);
    match cli.command.as_ref().unwrap_or(&Command::Run) {
        Command::Run => {
            let settings = load(&cli)?;
            for warning in settings.warnings() {
                tracing::warn!("{warning}");
            }
            let (stop, shutdown) = watch::channel(false);
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutdown signal: finishing jobs at fal, then stopping");
                let _ = stop.send(true);
            });
            mediagen::wiring::run(settings, shutdown).await
        }
        Command::Migrate => {
            let settings = load(&cli)?;
            mediagen::wiring::connect(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::MigrateStorage { from, to } => {
            let moved = mediagen::storage::migrate_storage(from, to).await?;
            for (table, rows) in &moved.tables {
                println!("{table:<18} {rows:>9} rows");
            }
            for (kind, micros) in &moved.ledger {
                println!("ledger {kind:<11} {:>9} (equal on both sides)", mediagen_domain::Money::from_micros(*micros));
            }
            println!("copied; now set DATABASE_URL to the PostgreSQL URL and start the bot");
            Ok(())
        }
        Command::Plan { target_wait } => {
            let settings = load(&cli)?;
            println!("{}", mediagen::insights::plan(&settings, *target_wait, chrono::Utc::now()).await?);
            Ok(())
        }
        Command::Report { what, previous, chart } => {
            let settings = load(&cli)?;
            let request = mediagen::insights::ReportRequest::parse(what)?;
            let now = chrono::Utc::now();
            print!("{}", mediagen::insights::report(&settings, request, *previous, chart.as_deref(), now).await?);
            Ok(())
        }
        Command::Config(ConfigCommand::Show) => {
            let vars = std::env::vars().collect();
            print!("{}", mediagen::show::config_show(&cli.home, cli.config.as_deref(), &vars)?);
            Ok(())
        }
        Command::Doctor => {
            let settings = match load(&cli) {
                Ok(settings) => settings,
                Err(error) => {
                    println!("FAIL settings: {error:#}");
                    println!("     fix: correct the file or variable named above");
                    std::process::exit(1);
                }
            };
            let report = mediagen::doctor::diagnose(&settings).await;
            print!("{report}");
            if report.failed() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Init(args) => {
            let settings = load(&cli)?;
            let written = mediagen::init::run(args.clone(), &settings, &mut std::io::stdout()).await?;
            if !written {
                println!("nothing written: fix the failure above and run `mediagen init` again");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::FalSim(args) => mediagen_fal_sim::run_cli(args.clone()).await.context("fal simulator"),
        Command::Catalog => {
            let settings = load(&cli)?;
            for model in settings.catalog.models() {
                let state = if model.enabled { "" } else { " (disabled)" };
                println!("{:<45} {:<14} {}{state}", model.id.as_str(), format!("{:?}", model.kind), model.pricing);
            }
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
