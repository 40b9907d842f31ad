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
mod stored;
mod tasks;

pub use breaker::BreakerConfig;
pub use cancel::CancelOutcome;
pub use config::{EngineConfig, InsightsConfig, RetryPolicy};
pub use enhance::{EnhanceOutcome, EnhanceRequest};
pub use intake::{IntakeOutcome, IntakeRequest};
pub use mediagen_domain::insights::{Period, ReportKind};
pub use operator::AccountOverview;
pub use operator::OperatorStats;
pub use stats::EngineStats;

pub use dispatch::{Dispatcher, DispatcherPorts};
pub use enhance::{PromptPorts, Prompts};
pub use follow::{Follower, FollowerPorts};
pub use intake::{Intake, IntakePorts};
pub use operator::{Operator, OperatorPorts};
pub use people::{People, PeoplePorts};
pub use reports::{Insights, InsightsPorts};

use mediagen_ports::{
    AccountStore, AlertLog, Clock, Generation, JobQueue, Messaging, PromptCache, ReportStore, UsageStore, UserStore,
};
use stats::Counters;
use std::sync::Arc;
use tokio::sync::{Notify, watch};

/// Every port the engine talks through, resolved once by the app; [`Engine::new`] hands
/// each service the ones it needs.
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

/// The use-case services, wired together over one set of ports.
///
/// Each service owns its own state and names the services it calls:
///
/// ```text
/// Intake ──► Follower, Operator, Prompts     People     Insights
/// Dispatcher ──► Follower, Operator, Prompts
/// Follower ──► Operator, Prompts
/// Operator ──► Insights
/// ```
///
/// Cheap to clone: services share their state through `Arc`s, so a front end can hold
/// one while [`Engine::run`] drives the loops.
#[derive(Clone)]
pub struct Engine {
    /// Requests, `/enhance` and cancels from users.
    pub intake: Intake,
    /// Users, their settings, usage and history.
    pub people: People,
    /// Claims, dispatch to fal, the lease heartbeat and rescue.
    pub dispatcher: Dispatcher,
    /// Accounts, alerts, scheduled summaries and the operator's figures.
    pub operator: Operator,
    /// Reports, cost allocation, the capacity plan, live counters and metrics as data.
    pub insights: Insights,
}

impl Engine {
    /// The services over `ports`, configured by `config`. Starts nothing: call [`Engine::run`].
    pub fn new(ports: Ports, config: EngineConfig) -> Self {
        let config = Arc::new(config);
        let counters = Arc::new(Counters::default());
        let wake = Arc::new(Notify::new());
        let shared = Shared { config: Arc::clone(&config), counters: Arc::clone(&counters), wake: Arc::clone(&wake) };
        let insights = Insights::new(
            InsightsPorts {
                reports: Arc::clone(&ports.reports),
                accounts: Arc::clone(&ports.accounts),
                queue: Arc::clone(&ports.queue),
                clock: Arc::clone(&ports.clock),
            },
            shared.clone(),
        );
        let operator = Operator::new(
            OperatorPorts {
                accounts: Arc::clone(&ports.accounts),
                alerts: Arc::clone(&ports.alerts),
                messaging: Arc::clone(&ports.messaging),
                generation: Arc::clone(&ports.generation),
                queue: Arc::clone(&ports.queue),
                usage: Arc::clone(&ports.usage),
                reports: Arc::clone(&ports.reports),
                clock: Arc::clone(&ports.clock),
            },
            shared.clone(),
            insights.clone(),
        );
        let prompts = Prompts::new(
            PromptPorts {
                generation: Arc::clone(&ports.generation),
                prompt_cache: Arc::clone(&ports.prompt_cache),
                clock: Arc::clone(&ports.clock),
            },
            shared.clone(),
        );
        let follower = Follower::new(
            FollowerPorts {
                queue: Arc::clone(&ports.queue),
                users: Arc::clone(&ports.users),
                usage: Arc::clone(&ports.usage),
                messaging: Arc::clone(&ports.messaging),
                generation: Arc::clone(&ports.generation),
                clock: Arc::clone(&ports.clock),
            },
            shared.clone(),
            operator.clone(),
            prompts.clone(),
        );
        let intake = Intake::new(
            IntakePorts {
                queue: Arc::clone(&ports.queue),
                users: Arc::clone(&ports.users),
                messaging: Arc::clone(&ports.messaging),
                generation: Arc::clone(&ports.generation),
                clock: Arc::clone(&ports.clock),
            },
            shared.clone(),
            follower.clone(),
            operator.clone(),
            prompts.clone(),
        );
        let dispatcher = Dispatcher::new(
            DispatcherPorts {
                queue: Arc::clone(&ports.queue),
                messaging: Arc::clone(&ports.messaging),
                generation: Arc::clone(&ports.generation),
                clock: Arc::clone(&ports.clock),
            },
            shared.clone(),
            follower,
            operator.clone(),
            prompts,
        );
        let people = People::new(PeoplePorts {
            users: Arc::clone(&ports.users),
            queue: Arc::clone(&ports.queue),
            usage: Arc::clone(&ports.usage),
            clock: Arc::clone(&ports.clock),
        });
        Self { intake, people, dispatcher, operator, insights }
    }

    /// Runs the dispatcher (claims, heartbeat, rescue) and the operator's upkeep (checks,
    /// key probes, scheduled summaries) until `shutdown` turns true, then drains as
    /// [`Dispatcher::run`] says.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        let upkeep = tokio::spawn(self.operator.clone().upkeep());
        self.dispatcher.run(shutdown).await;
        upkeep.abort();
    }

    /// What the engine did since it was made.
    pub fn stats(&self) -> EngineStats {
        self.insights.stats()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EngineConfig {
        self.insights.config()
    }
}

/// What every service shares: the configuration, this process's counters, and the
/// dispatcher's wake-up (a job enqueued, a slot freed, an account back in rotation).
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) wake: Arc<Notify>,
}
