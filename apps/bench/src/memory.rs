//! Peak memory of the bot with a full queue, measured in a process of its own so that the
//! simulator, the other workloads and the driver do not count.
//!
//! The parent starts the simulator and a fresh database, then runs this binary again as
//! `mediagen-bench probe-memory`: that child wires the engine, the Postgres store and the
//! fal adapter as production does (messaging recorded), submits the jobs through
//! `Engine::submit` while the engine dispatches, and reports `VmHWM` / `VmRSS`.

use crate::ours::{OVERHANG, bench_plans, engine, engine_config, register_accounts};
use crate::proc_stats::memory_kib;
use crate::rig::{OURS, Sim, fresh_postgres};
use crate::workload::{Arrival, Model};
use anyhow::Context;
use mediagen_engine::IntakeOutcome;
use mediagen_ports::JobQueue;
use mediagen_postgres::PgStore;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where the child finds its database (not on the command line, where `ps` shows it).
pub const DATABASE_ENV: &str = "MEDIAGEN_BENCH_DATABASE_URL";

/// The probe's fal runs in real time, so few of the jobs leave the queue while it runs.
const PROBE_TIME_SCALE: f64 = 1.0;
/// Concurrent submitters in the child (users sending at once).
const SUBMITTERS: usize = 16;
/// Users the jobs belong to.
const USERS: usize = 100;

/// What the child measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryFigures {
    /// Jobs submitted through `Engine::submit`.
    pub submitted: usize,
    /// Jobs still queued when memory was read.
    pub queued_at_measure: u32,
    /// Resident memory before the store and engine were built, MiB.
    pub rss_at_start_mib: f64,
    /// Peak resident memory (`VmHWM`) of the process, MiB.
    pub peak_rss_mib: f64,
    /// Resident memory (`VmRSS`) when read, MiB.
    pub rss_mib: f64,
    /// Requests accepted per second at intake (16 at a time, while the engine dispatches).
    pub intake_per_sec: f64,
}

/// Runs the child (`exe probe-memory`) with `jobs` jobs against a simulator started on
/// `sim_runtime` and a fresh database, and returns what it measured.
///
/// # Errors
/// When the simulator or database cannot start, or the child fails.
pub fn measure(exe: &Path, sim_runtime: &tokio::runtime::Runtime, jobs: usize) -> anyhow::Result<MemoryFigures> {
    let sim = Sim::start(sim_runtime, &OURS, PROBE_TIME_SCALE)?;
    let helper = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let db = helper.block_on(async {
        let (db, store) = fresh_postgres().await?;
        register_accounts(&store, &OURS).await?;
        anyhow::Ok(db)
    })?;
    let output = Command::new(exe)
        .arg("probe-memory")
        .arg("--jobs")
        .arg(jobs.to_string())
        .arg("--fal-url")
        .arg(sim.base_url())
        .env(DATABASE_ENV, db.url())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {} probe-memory", exe.display()))?;
    helper.block_on(async move { drop(db) });
    drop(sim);
    anyhow::ensure!(output.status.success(), "the memory probe failed: {}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).context("the probe printed no result")?;
    serde_json::from_str(line).context("the probe's result")
}

/// The child's side: builds the bot, submits `jobs` jobs and reads its own memory.
///
/// # Errors
/// When the database or the simulator cannot be reached.
pub fn probe(jobs: usize, fal_url: &str) -> anyhow::Result<MemoryFigures> {
    let url = std::env::var(DATABASE_ENV).with_context(|| format!("{DATABASE_ENV} is not set"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let rss_at_start = memory_kib().map_or(0, |(_, rss)| rss);
        let store = Arc::new(PgStore::connect(&url, 10).await.context("connect")?);
        let mut config = engine_config(bench_plans(5), "bench-probe", PROBE_TIME_SCALE, OVERHANG);
        config.shutdown_grace = Duration::from_millis(500);
        let (engine, _, _) = engine(Arc::clone(&store), fal_url, &OURS, config, PROBE_TIME_SCALE)?;
        let (stop, shutdown) = watch::channel(false);
        let runner = {
            let engine = engine.clone();
            tokio::spawn(async move { engine.run(shutdown).await })
        };

        let start = Instant::now();
        let mut submitters = tokio::task::JoinSet::new();
        for first in 0..SUBMITTERS {
            let engine = engine.clone();
            submitters.spawn(async move {
                let mut accepted = 0usize;
                for index in (first..jobs).step_by(SUBMITTERS) {
                    let arrival = Arrival {
                        index,
                        at: 0.0,
                        user: 40_001 + (index % USERS) as i64,
                        model: Model::NanoBanana,
                        num_images: 1,
                    };
                    let request = crate::ours::intake_request("probe", &arrival);
                    if matches!(engine.intake.submit(request).await, IntakeOutcome::Queued { .. }) {
                        accepted += 1;
                    }
                }
                accepted
            });
        }
        let mut submitted = 0;
        while let Some(accepted) = submitters.join_next().await {
            submitted += accepted.context("a submitter panicked")?;
        }
        let intake_per_sec = submitted as f64 / start.elapsed().as_secs_f64();
        // Let the dispatcher take its share of the queue before reading memory.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let queued_at_measure = store.queued_count().await?;
        let (peak, rss) = memory_kib().context("read /proc/self/status")?;
        stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), runner).await;
        let mib = |kib: u64| kib as f64 / 1024.0;
        Ok(MemoryFigures {
            submitted,
            queued_at_measure,
            rss_at_start_mib: mib(rss_at_start),
            peak_rss_mib: mib(peak),
            rss_mib: mib(rss),
            intake_per_sec,
        })
    })
}
