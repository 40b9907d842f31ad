#![doc = include_str!("../README.md")]

mod accounts;
mod alerts;
mod breaker;
mod cancel;
mod config;
mod dispatch;
mod enhance;
mod follow;
pub mod insights;
mod intake;
mod leases;
mod operator;
mod people;
mod progress;
mod reports;
mod stats;
mod tasks;

pub use breaker::BreakerConfig;
pub use cancel::CancelOutcome;
pub use config::{EngineConfig, InsightsConfig, RetryPolicy};
pub use enhance::{EnhanceOutcome, EnhanceRequest};
pub use intake::{IntakeOutcome, IntakeRequest};
pub use mediagen_domain::insights::{Period, ReportKind};
pub use operator::AccountOverview;
pub use people::OperatorStats;
pub use stats::EngineStats;

use mediagen_domain::{AccountId, JobId};
use mediagen_ports::{
    AccountStore, AlertLog, Clock, Generation, JobQueue, Messaging, PromptCache, ReportStore, UsageStore, UserStore,
};
use progress::{ProgressMessages, Throttle};
use stats::Counters;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use tasks::TaskCounter;
use tokio::sync::{Notify, watch};

/// The ports the engine talks through, resolved once by the app.
#[derive(Clone)]
pub struct Ports {
    /// Runs models on fal accounts: uploads, submits, follows, downloads.
    pub generation: Arc<dyn Generation>,
    /// Notices and results to users, alerts to operators, users' input files.
    pub messaging: Arc<dyn Messaging>,
    /// The durable queue and its ledger: enqueue, claim, finish, leases.
    pub queue: Arc<dyn JobQueue>,
    /// Users, their plans and settings.
    pub users: Arc<dyn UserStore>,
    /// fal accounts, their purchases, spend and locks.
    pub accounts: Arc<dyn AccountStore>,
    /// Enhanced prompts, reused for the same prompt until they expire.
    pub prompt_cache: Arc<dyn PromptCache>,
    /// Which operator alerts already fired, so each fires once.
    pub alerts: Arc<dyn AlertLog>,
    /// Media records and the month's usage figures.
    pub usage: Arc<dyn UsageStore>,
    /// What reports, the capacity planner, `/metrics` and the credit and capacity alerts read.
    pub reports: Arc<dyn ReportStore>,
    /// The current instant for everything stored (leases, quotas, alert periods).
    pub clock: Arc<dyn Clock>,
}

/// The use cases: intake, prompt enhancement, dispatch, following, completion,
/// cancellation, rescue and operator alerts.
///
/// Cheap to clone: clones share one state, so a front end can hold one while
/// [`Engine::run`] drives the loops.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    ports: Ports,
    config: EngineConfig,
    counters: Counters,
    breakers: breaker::Breakers,
    throttle: Arc<Throttle>,
    messages: ProgressMessages,
    accounts: accounts::AccountView,
    /// Wakes the dispatcher when a job is enqueued or a slot frees in this process.
    wake: Notify,
    /// Dispatches and followers in flight.
    tasks: TaskCounter,
    /// Set when the shutdown grace is over: background work stops where it is.
    stop: watch::Sender<bool>,
    /// Set on a shutdown signal: no more claims or rescues.
    draining: AtomicBool,
    /// The leases this process's tasks hold: the only ones the heartbeat renews.
    leases: leases::LiveLeases,
    /// Keys fal refused that the operator was already told about (account, key).
    refused_keys: Mutex<HashSet<(AccountId, String)>>,
    /// Upstream failures per job seen by this process (see `Engine::retry_or_fail`).
    failures: Mutex<HashMap<JobId, u32>>,
    /// Jobs this process ended and told the user about; wakes `Engine::await_rewrite`.
    ended: tokio::sync::broadcast::Sender<JobId>,
    /// Accounts this process saw locked, so a lock is handled (and alerted) once.
    locked: Mutex<HashSet<AccountId>>,
    /// Scheduled reports this process saw sent (key, period), so it asks storage once.
    reports_sent: Mutex<HashSet<(String, String)>>,
}

impl Engine {
    /// An engine over `ports`, configured by `config`. Starts nothing: call [`Engine::run`].
    pub fn new(ports: Ports, config: EngineConfig) -> Self {
        let throttle = Throttle::new(Arc::clone(&ports.messaging), config.progress_interval);
        let inner = Inner {
            breakers: breaker::Breakers::new(config.breaker),
            throttle,
            ports,
            config,
            counters: Counters::default(),
            messages: ProgressMessages::default(),
            accounts: accounts::AccountView::default(),
            wake: Notify::new(),
            tasks: TaskCounter::default(),
            stop: watch::Sender::new(false),
            draining: AtomicBool::new(false),
            leases: leases::LiveLeases::default(),
            refused_keys: Mutex::default(),
            failures: Mutex::default(),
            ended: tokio::sync::broadcast::Sender::new(64),
            locked: Mutex::default(),
            reports_sent: Mutex::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// What the engine did since it was made.
    pub fn stats(&self) -> EngineStats {
        self.inner.counters.snapshot()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Runs `work` in the background, counted for shutdown and stopped when the grace ends.
    pub(crate) fn spawn_tracked<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let guard = self.inner.tasks.enter();
        let mut stop = self.inner.stop.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                () = work => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
            drop(guard);
        });
    }
}
