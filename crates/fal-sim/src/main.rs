//! `fal-sim`: a local fal.ai simulator (see the crate README).

use clap::Parser;
use std::process::ExitCode;

/// A local simulator of fal.ai's queue, storage and CDN APIs.
#[derive(Debug, Parser)]
#[command(name = "fal-sim", version, about)]
struct Cli {
    #[command(flatten)]
    sim: mediagen_fal_sim::SimArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).init();
    match mediagen_fal_sim::run_cli(Cli::parse().sim).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fal-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
