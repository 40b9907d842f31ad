//! mediagen as it runs in production, minus Telegram: the real engine on a fresh
//! PostgreSQL database (`PgStore`, behind the counting decorator) and the real fal adapter,
//! with messaging recorded in memory.

use crate::counting::Counting;
use crate::proc_stats::ThreadCpu;
use crate::recorder::{Ending, Recorder};
use crate::rig::{Account, BotRun, JobRecord, fal_config, fresh_postgres, photo};
use crate::workload::{Arrival, Workload};
use anyhow::Context;
use mediagen_domain::catalog::Catalog;
use mediagen_domain::credit::CreditPurchase;
use mediagen_domain::quota::{Plan, Plans};
use mediagen_domain::{AccountId, ChatId, IdempotencyKey, JobId, Language, MediaRef, ModelId, Money, UserId};
use mediagen_engine::{Engine, EngineConfig, IntakeOutcome, IntakeRequest, Ports};
use mediagen_fal::FalGeneration;
use mediagen_ports::{AccountStore, SystemClock};
use mediagen_postgres::PgStore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Extra jobs each account may hold in fal's own queue (`EngineConfig::overhang`) unless
/// `--overhang` says otherwise; the shipped default is 1. fal's completion is seen only at
/// the adapter's next status poll, and these jobs fill the slot meanwhile. See the README.
pub const OVERHANG: u32 = 6;

/// Simulated seconds a job takes on average (the wait estimate shown at intake).
const MEAN_SERVICE_SECS: f64 = 5.0;

/// One plan for every bench user: no daily or monthly quota (the bench measures the
/// queue, not quotas), and `max_in_flight` jobs at fal at once.
///
/// # Panics
/// Never: the table is valid.
pub fn bench_plans(max_in_flight: u32) -> Plans {
    let plan =
        Plan { name: "bench".to_owned(), daily_jobs: None, monthly_spend: None, max_in_flight, max_queued: 100_000 };
    Plans::new("bench".to_owned(), vec![plan]).expect("a valid plan table")
}

/// The engine's settings: production defaults, with every interval divided by the time
/// scale except the lease, which guards against real stalls.
pub fn engine_config(plans: Plans, owner: &str, time_scale: f64, overhang: u32) -> EngineConfig {
    let sim = |secs: f64| Duration::from_secs_f64(secs / time_scale);
    let mut config = EngineConfig::new(Catalog::builtin(), plans, owner);
    let defaults = config.clone();
    config.overhang = overhang;
    config.mean_service = sim(MEAN_SERVICE_SECS);
    config.progress_interval = sim(defaults.progress_interval.as_secs_f64());
    config.dispatch_tick = sim(defaults.dispatch_tick.as_secs_f64());
    config.min_claim_gap = sim(defaults.min_claim_gap.as_secs_f64());
    config.status_poll = defaults.status_poll.map(|every| sim(every.as_secs_f64()));
    config.retry.base_delay = sim(defaults.retry.base_delay.as_secs_f64());
    config.retry.max_delay = sim(defaults.retry.max_delay.as_secs_f64());
    // Time-driven work keeps its production rate per simulated day.
    config.accounts_refresh = sim(defaults.accounts_refresh.as_secs_f64());
    config.rescue_interval = sim(defaults.rescue_interval.as_secs_f64());
    config.operator_checks = sim(defaults.operator_checks.as_secs_f64());
    config.report_tick = sim(defaults.report_tick.as_secs_f64());
    // Not the lease (nor its renewal every third of it): it guards against real stalls.
    config.shutdown_grace = Duration::from_secs(5);
    config
}

/// A store with `accounts` registered and their purchases recorded a day ago.
///
/// # Errors
/// When the database refuses.
pub async fn register_accounts(store: &PgStore, accounts: &[Account]) -> anyhow::Result<()> {
    let bought_at = chrono::Utc::now() - chrono::TimeDelta::days(1);
    for account in accounts {
        let id = AccountId::new(account.name);
        store.upsert_account(&id, &[format!("{}-key", account.name)]).await?;
        let purchase = CreditPurchase { amount: Money::from_dollars(account.bought_usd), purchased_at: bought_at };
        store.add_purchase(&id, &purchase).await?;
    }
    Ok(())
}

/// The engine over `store` (counted), the fal adapter on `base`, and a recorder.
///
/// # Errors
/// When the fal adapter cannot be configured.
pub fn engine(
    store: Arc<PgStore>,
    base: &str,
    accounts: &[Account],
    config: EngineConfig,
    time_scale: f64,
) -> anyhow::Result<(Engine, Counting, Arc<Recorder>)> {
    let counting = Counting::new(store);
    let shared = Arc::new(counting.clone());
    let fal = FalGeneration::new(fal_config(base, accounts, time_scale)).context("fal adapter")?;
    let recorder = Arc::new(Recorder::new(photo()));
    let ports = Ports {
        generation: Arc::new(fal),
        messaging: recorder.clone(),
        queue: shared.clone(),
        users: shared.clone(),
        accounts: shared.clone(),
        prompt_cache: shared.clone(),
        alerts: shared.clone(),
        usage: shared.clone(),
        reports: shared,
        clock: Arc::new(SystemClock),
    };
    Ok((Engine::new(ports, config), counting, recorder))
}

/// What a user's message becomes once the front end has parsed it.
pub fn intake_request(tag: &str, arrival: &Arrival) -> IntakeRequest {
    let input_media = if arrival.model.has_photo() {
        vec![MediaRef { file_id: format!("photo-{}", arrival.index), size_bytes: Some(photo().len() as u64) }]
    } else {
        Vec::new()
    };
    IntakeRequest {
        key: IdempotencyKey::new(format!("{tag}-{}", arrival.index)),
        user: UserId(arrival.user),
        chat: ChatId(arrival.user),
        language: Language::En,
        model: Some(ModelId::new(arrival.model.endpoint())),
        prompt: arrival.prompt(),
        size: None,
        num_images: arrival.num_images,
        input_media,
        seed: None,
        enhance: Some(false),
    }
}

/// Plays `workload` through mediagen with `plans` and `overhang`, on a fresh database.
///
/// # Errors
/// When the database or the adapter cannot be set up, or jobs do not all end in time.
pub async fn run(
    workload: Workload,
    base: String,
    accounts: Vec<Account>,
    plans: Plans,
    overhang: u32,
    cpu: Arc<ThreadCpu>,
) -> anyhow::Result<BotRun> {
    let (db, store) = fresh_postgres().await?;
    let store = Arc::new(store);
    register_accounts(&store, &accounts).await?;
    let scale = workload.time_scale;
    let config = engine_config(plans, &format!("bench-{}", workload.key), scale, overhang);
    let (engine, counting, recorder) = engine(Arc::clone(&store), &base, &accounts, config, scale)?;
    let (stop, shutdown) = watch::channel(false);
    let runner = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run(shutdown).await })
    };
    // Let the start-up rescue and the first account read pass before measuring.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let cpu_before = cpu.total_ns();
    let calls_before = counting.calls();
    let t0 = Instant::now();
    let mut submits = tokio::task::JoinSet::new();
    for arrival in workload.arrivals.iter().cloned() {
        tokio::time::sleep_until((t0 + Duration::from_secs_f64(arrival.at / scale)).into()).await;
        let engine = engine.clone();
        let request = intake_request(workload.key, &arrival);
        submits.spawn(async move {
            let arrived = Instant::now();
            let outcome = engine.intake.submit(request).await;
            (arrival.index, arrived, outcome)
        });
    }
    let mut accepted: HashMap<usize, JobId> = HashMap::new();
    let mut refused = 0;
    let mut arrived_at: HashMap<usize, Instant> = HashMap::new();
    while let Some(done) = submits.join_next().await {
        let (index, arrived, outcome) = done.context("a submit panicked")?;
        arrived_at.insert(index, arrived);
        match outcome {
            IntakeOutcome::Queued { job, .. } => {
                accepted.insert(index, job);
            }
            other => {
                tracing::warn!(index, ?other, "request not queued");
                refused += 1;
            }
        }
    }
    let last_arrival = workload.arrivals.last().map_or(0.0, |a| a.at);
    let patience = Duration::from_secs_f64(last_arrival / scale) + Duration::from_secs(120);
    let all_ended = recorder.wait_for_endings(accepted.len(), patience).await;
    let cpu_ns = cpu.total_ns() - cpu_before;
    let mut db_calls = counting.calls();
    for (method, count) in &calls_before {
        if let Some(now) = db_calls.get_mut(method) {
            *now -= count;
        }
    }

    stop.send_replace(true);
    if tokio::time::timeout(Duration::from_secs(30), runner).await.is_err() {
        tracing::warn!("the engine did not stop in time");
    }
    anyhow::ensure!(all_ended, "only {} of {} jobs ended in time", recorder.ended_count(), accepted.len());

    let jobs = workload
        .arrivals
        .iter()
        .map(|arrival| {
            let arrived = arrived_at.get(&arrival.index).copied().unwrap_or(t0);
            let (finished, ok) = match accepted.get(&arrival.index) {
                Some(job) => match (recorder.delivered(*job), recorder.ending(*job)) {
                    (Some(delivered), Some((_, Ending::Done))) => (Some(delivered.into_std()), true),
                    (_, Some((at, _))) => (Some(at.into_std()), false),
                    (_, None) => (None, false),
                },
                None => (None, false),
            };
            JobRecord { index: arrival.index, user: arrival.user, arrived, finished, ok }
        })
        .collect();
    drop(engine);
    drop(store);
    drop(db);
    Ok(BotRun { jobs, t0, cpu_ns, db_calls, refused })
}
