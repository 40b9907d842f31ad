//! What every run shares: the fal accounts, the simulator and fresh databases (started
//! by `mediagen-stack`), the fal adapter's settings scaled to simulated time, and what one
//! run hands to the analysis.

use anyhow::Context;
use mediagen_fal::{FalAccountConfig, FalConfig, FalKey, PollConfig, RetryConfig};
use mediagen_fal_sim::{AccountSnapshot, RequestRecord, RunningSim};
use mediagen_postgres::PgStore;
use mediagen_stack::{Database, FalAccount, FalSimOptions, FreshDb, Pool};
use secrecy::SecretString;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proc_stats::ThreadCpu;

/// One fal account of the bench: the simulator's limit, and what our database records
/// as bought in the credit window (which gives our engine the same limit).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Account {
    /// Account name at fal and in our database.
    pub name: &'static str,
    /// The key the simulator accepts (a made-up test key).
    #[serde(skip)]
    pub key: &'static str,
    /// fal's concurrency limit.
    pub limit: u32,
    /// Dollars bought in the last 28 days, recorded in our database.
    pub bought_usd: i64,
}

/// mediagen's accounts: $10 in the window gives 10 slots, $100 gives 20 (fal's table).
pub const OURS: [Account; 2] = [
    Account { name: "acct-a", key: "bench-a:not-a-secret", limit: 10, bought_usd: 10 },
    Account { name: "acct-b", key: "bench-b:not-a-secret", limit: 20, bought_usd: 100 },
];

/// The simple bot's one account, with the same 30 slots in total (see the README).
pub const BASELINE: [Account; 1] =
    [Account { name: "solo", key: "bench-solo:not-a-secret", limit: 30, bought_usd: 500 }];

/// Seed of the simulator's service-time draws: the same for every strategy.
pub const SIM_SEED: u64 = 42;

/// Slots over `accounts`.
pub fn slots(accounts: &[Account]) -> u32 {
    accounts.iter().map(|a| a.limit).sum()
}

/// A running simulator and the instant its clock started.
pub struct Sim {
    /// The simulator.
    pub running: RunningSim,
    /// Its clock's zero: request records count milliseconds from here.
    pub epoch: Instant,
}

impl Sim {
    /// Starts a simulator with `accounts` at `time_scale` on `runtime`.
    ///
    /// # Errors
    /// When it cannot bind or the configuration is invalid.
    pub fn start(runtime: &tokio::runtime::Runtime, accounts: &[Account], time_scale: f64) -> anyhow::Result<Sim> {
        let options = FalSimOptions {
            accounts: accounts
                .iter()
                .map(|a| FalAccount::new(a.name, a.limit).with_key(&format!("{}-key", a.name), a.key))
                .collect(),
            time_scale,
            seed: Some(SIM_SEED),
            ..FalSimOptions::default()
        };
        let before = Instant::now();
        let running = runtime.block_on(mediagen_stack::start_fal_sim(options))?;
        let after = Instant::now();
        // The simulator reads its clock while starting, between these two instants.
        Ok(Sim { running, epoch: before + (after - before) / 2 })
    }

    /// Base URL of the queue API, storage and CDN.
    pub fn base_url(&self) -> String {
        self.running.base_url().trim_end_matches('/').to_owned()
    }
}

/// A fresh PostgreSQL database from `TEST_DATABASE_URL`'s server (dropped with the
/// returned value) and a store on its own pool.
///
/// # Errors
/// When the server cannot be reached or a migration fails.
pub async fn fresh_postgres() -> anyhow::Result<(FreshDb, PgStore)> {
    let db = FreshDb::create(&Database::Postgres).await?;
    let Pool::Postgres(pool) = db.pool() else { anyhow::bail!("a PostgreSQL database has a PostgreSQL pool") };
    let store = PgStore::new(pool.clone()).await.context("a store on the fresh database")?;
    Ok((db, store))
}

/// The fal adapter's settings for `accounts` on the simulator at `base`, with every
/// interval the production defaults would use, divided by the time scale.
pub fn fal_config(base: &str, accounts: &[Account], time_scale: f64) -> FalConfig {
    let ms = |sim_ms: f64| ((sim_ms / time_scale).round() as u64).max(1);
    let defaults = FalConfig::default();
    FalConfig {
        queue_base: base.to_owned(),
        rest_base: base.to_owned(),
        cdn_bases: vec![format!("{base}/files/")],
        accounts: accounts
            .iter()
            .map(|a| FalAccountConfig {
                name: a.name.to_owned(),
                keys: vec![FalKey { name: format!("{}-key", a.name), secret: SecretString::from(a.key) }],
            })
            .collect(),
        poll: PollConfig {
            initial_interval_ms: ms(defaults.poll.initial_interval_ms as f64),
            multiplier: defaults.poll.multiplier,
            max_interval_ms: ms(defaults.poll.max_interval_ms as f64),
            deadline_ms: defaults.poll.deadline_ms,
        },
        retry: RetryConfig {
            base_delay_ms: ms(defaults.retry.base_delay_ms as f64),
            max_delay_ms: ms(defaults.retry.max_delay_ms as f64),
            ..defaults.retry
        },
        ..defaults
    }
}

/// The photo every edit request carries (a 64x64 PNG).
pub fn photo() -> Vec<u8> {
    mediagen_fal_sim::media::seeded_png(7, 64)
}

/// Which bot handled a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Every request straight to fal's queue on one account, as it arrives.
    Baseline,
    /// The real engine: our queue, fair scheduling, both accounts, the shipped `pro`
    /// plan's in-flight cap of 5 per user.
    Mediagen,
    /// The same without a per-user in-flight cap (heavy workload only).
    MediagenNoCap,
}

impl Strategy {
    /// Name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Baseline => "baseline",
            Strategy::Mediagen => "mediagen",
            Strategy::MediagenNoCap => "mediagen-nocap",
        }
    }
}

/// One request's life as the bot saw it (instants of this process).
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// Arrival index.
    pub index: usize,
    /// Who sent it.
    pub user: i64,
    /// When the bot got it.
    pub arrived: Instant,
    /// When results were delivered (or failure told).
    pub finished: Option<Instant>,
    /// True when results were delivered.
    pub ok: bool,
}

/// Everything one strategy's run of one workload produced.
pub struct RunOutput {
    /// Which bot.
    pub strategy: Strategy,
    /// Its accounts.
    pub accounts: Vec<Account>,
    /// One per arrival.
    pub jobs: Vec<JobRecord>,
    /// The workload's zero (arrival `at` = 0).
    pub t0: Instant,
    /// CPU of the bot's runtime threads while it ran the workload.
    pub cpu_ns: u64,
    /// Storage port calls while it ran (mediagen only).
    pub db_calls: BTreeMap<&'static str, u64>,
    /// Real seconds from the first arrival to the last job's end.
    pub real_secs: f64,
    /// fal's records of every request.
    pub requests: Vec<RequestRecord>,
    /// fal's per-account counters (max concurrency observed).
    pub fal_accounts: Vec<AccountSnapshot>,
    /// The simulator's clock zero.
    pub sim_epoch: Instant,
    /// Requests refused at intake (mediagen) — should be 0.
    pub refused: u64,
}

/// What a bot run returns before the simulator is read.
pub struct BotRun {
    /// One per arrival.
    pub jobs: Vec<JobRecord>,
    /// The workload's zero.
    pub t0: Instant,
    /// CPU of the runtime's threads during the workload.
    pub cpu_ns: u64,
    /// Storage port calls during the workload.
    pub db_calls: BTreeMap<&'static str, u64>,
    /// Requests refused at intake.
    pub refused: u64,
}

/// Runs `work` as a task on a fresh 2-worker runtime whose threads' CPU is counted, so
/// nothing of it runs on the caller's thread.
///
/// # Errors
/// When the runtime cannot be built, the task panics, or `work` fails.
pub fn on_counted_runtime<F, Fut, T>(name: &str, work: F) -> anyhow::Result<T>
where
    F: FnOnce(Arc<ThreadCpu>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let cpu = Arc::new(ThreadCpu::default());
    let runtime = cpu.runtime(name, 2).context("build a runtime")?;
    let task = work(Arc::clone(&cpu));
    let result = runtime.block_on(async move { tokio::spawn(task).await });
    runtime.shutdown_timeout(Duration::from_secs(5));
    result.context("the bench task panicked")?
}

/// Reads fal's side of a finished run.
pub fn finish_run(strategy: Strategy, accounts: &[Account], sim: &Sim, run: BotRun) -> RunOutput {
    let handle = sim.running.handle();
    let last = run.jobs.iter().filter_map(|j| j.finished).max().unwrap_or(run.t0);
    RunOutput {
        strategy,
        accounts: accounts.to_vec(),
        real_secs: last.saturating_duration_since(run.t0).as_secs_f64(),
        jobs: run.jobs,
        t0: run.t0,
        cpu_ns: run.cpu_ns,
        db_calls: run.db_calls,
        requests: handle.requests(),
        fal_accounts: handle.accounts(),
        sim_epoch: sim.epoch,
        refused: run.refused,
    }
}
