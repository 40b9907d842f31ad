//! `mediagen-bench`: see the crate README. Parses flags and hands over to the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// mediagen's queue and dispatch against a simple bot, on the fal simulator and PostgreSQL.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Tiny versions of every workload (seconds, a few dozen jobs).
    #[arg(long)]
    smoke: bool,
    /// Where results.json and burst.png go [default: the workspace's target/bench].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of the workloads.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Run only these parts (repeat or separate with commas).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<PartArg>,
    /// Extra jobs each account may hold in fal's queue (EngineConfig::overhang) in the
    /// mediagen runs.
    #[arg(long, default_value_t = mediagen_bench::DEFAULT_OVERHANG)]
    overhang: u32,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Internal: the memory probe's child process.
    #[command(hide = true)]
    ProbeMemory {
        /// Jobs to submit.
        #[arg(long)]
        jobs: usize,
        /// Base URL of the fal simulator.
        #[arg(long)]
        fal_url: String,
    },
}

/// A part of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PartArg {
    /// (a) the steady day
    Day,
    /// (b) the burst and its chart
    Burst,
    /// (c) the heavy user
    Heavy,
    /// peak memory with 10,000 queued jobs
    Memory,
    /// PostgreSQL claim throughput
    Claims,
}

impl From<PartArg> for mediagen_bench::Part {
    fn from(part: PartArg) -> Self {
        match part {
            PartArg::Day => Self::Day,
            PartArg::Burst => Self::Burst,
            PartArg::Heavy => Self::Heavy,
            PartArg::Memory => Self::Memory,
            PartArg::Claims => Self::Claims,
        }
    }
}

/// `target/bench` of the workspace, or under `CARGO_TARGET_DIR` when set.
fn default_out() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        // apps/bench → the workspace root.
        manifest.ancestors().nth(2).unwrap_or(manifest).join("target")
    });
    target.join("bench")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .init();
    if let Some(Command::ProbeMemory { jobs, fal_url }) = cli.command {
        let figures = mediagen_bench::probe_memory(jobs, &fal_url)?;
        println!("{}", serde_json::to_string(&figures)?);
        return Ok(());
    }
    let options = mediagen_bench::Options {
        smoke: cli.smoke,
        out_dir: cli.out.unwrap_or_else(default_out),
        seed: cli.seed,
        probe_exe: std::env::current_exe().context("find this executable")?,
        only: cli.only.into_iter().map(Into::into).collect(),
        overhang: cli.overhang,
    };
    let results = mediagen_bench::run(&options)?;
    print!("{}", mediagen_bench::table(&results));
    println!("results: {}", options.out_dir.join("results.json").display());
    Ok(())
}
