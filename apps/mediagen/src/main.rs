//! The `mediagen` binary: `run` the bot, `migrate` the database, start the `fal-sim`
//! simulator, or print the `catalog`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use mediagen::settings::Settings;
use std::path::PathBuf;
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "mediagen", version, about = "A Telegram bot that makes images through fal.ai")]
struct Cli {
    /// Where `config/` lives.
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
    /// Start the fal simulator (for the demo, tests and benchmarks).
    FalSim(mediagen_fal_sim::SimArgs),
    /// Print the model catalog with its prices.
    Catalog,
}

fn load(cli: &Cli) -> anyhow::Result<Settings> {
    Settings::load(&cli.home, cli.config.as_deref(), &std::env::vars().collect())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command.as_ref().unwrap_or(&Command::Run) {
        Command::Run => {
            let settings = load(&cli)?;
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
