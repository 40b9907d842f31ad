//! `mediagen-demo`: the whole bot running locally against the simulators, no keys needed.
//! See the crate README for what it shows and its options.

use clap::{Parser, ValueEnum};
use mediagen_demo::storage::{self, DEFAULT_DATABASE};
use mediagen_demo::{Options, StatusMode};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mediagen-demo",
    about = "The bot against the fal simulator and a fake Telegram, with a crowd of users"
)]
struct Cli {
    /// A short run: ten users and a few dozen jobs.
    #[arg(long)]
    quick: bool,
    /// Simulated users (at least 10, so every scripted case has one).
    #[arg(long, value_parser = clap::value_parser!(u32).range(10..=500))]
    users: Option<u32>,
    /// The fal simulator's speed-up (20: a 6 s job takes 0.3 s).
    #[arg(long)]
    time_scale: Option<f64>,
    /// Seed of the users' scripts and the simulator.
    #[arg(long)]
    seed: Option<u64>,
    /// PostgreSQL instead of the default embedded SQLite file: an admin connection
    /// (postgres://…) used to create and drop the demo database.
    #[arg(long, env = "DEMO_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The demo database's name (PostgreSQL), or the SQLite file's (target/demo/NAME.sqlite);
    /// removed and made again at each start, removed at the end.
    #[arg(long, default_value = DEFAULT_DATABASE)]
    database_name: String,
    /// How the live status is shown.
    #[arg(long, value_enum, default_value_t = Status::Auto)]
    status: Status,
    /// Where `config/` lives (default: this workspace).
    #[arg(long)]
    home: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Status {
    /// In place on a terminal, a line every 3 s otherwise.
    Auto,
    /// In place.
    Tty,
    /// A line every 3 s.
    Lines,
    /// Only the report.
    Off,
}

impl Cli {
    fn options(self) -> anyhow::Result<Options> {
        let mut options = if self.quick { Options::quick() } else { Options::full() };
        options.users = self.users.unwrap_or(options.users);
        options.time_scale = self.time_scale.unwrap_or(options.time_scale);
        options.seed = self.seed.unwrap_or(options.seed);
        options.storage = match self.database_url {
            None => storage::sqlite(&self.database_name)?,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                storage::postgres(Some(url), self.database_name)
            }
            Some(_) => anyhow::bail!(
                "--database-url (DEMO_DATABASE_URL) must be a postgres:// admin URL; leave it unset for the \
                 embedded SQLite file"
            ),
        };
        options.status = match self.status {
            Status::Auto => StatusMode::Auto,
            Status::Tty => StatusMode::InPlace,
            Status::Lines => StatusMode::Lines,
            Status::Off => StatusMode::Off,
        };
        if let Some(home) = self.home {
            options.home = home;
        }
        Ok(options)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // The bot logs to stderr; only errors by default, so the status line stays readable.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error,sqlx=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = match Cli::parse().options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("the demo could not run: {error:#}");
            return ExitCode::from(2);
        }
    };
    let outcome = tokio::select! {
        outcome = mediagen_demo::run(options) => outcome,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the run stops the bot and the fakes and removes the database.
            eprintln!("\ninterrupted: stopped everything and removed the demo database");
            return ExitCode::from(130);
        }
    };
    match outcome {
        Ok(report) => {
            println!("\n{report}");
            if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(error) => {
            eprintln!("\nthe demo could not run: {error:#}");
            ExitCode::from(2)
        }
    }
}
