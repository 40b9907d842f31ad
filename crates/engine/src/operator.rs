//! The operator's side of the engine: the fal accounts (limits from the credit window,
//! when they drop, the top-up that keeps them, balances, locks, keys and breakers),
//! recording a purchase, the `/stats` figures, and the upkeep loop that runs the alert
//! checks, the key probes and the scheduled summaries.

use crate::accounts::AccountCache;
use crate::breaker::Breakers;
use crate::{EngineConfig, Insights, Shared};
use mediagen_domain::credit::{CreditPurchase, LimitDrop, TopUp};
use mediagen_domain::discount::DiscountTier;
use mediagen_domain::quota::{day_start, month_start};
use mediagen_domain::{AccountId, Money, Timestamp};
use mediagen_ports::{
    AccountLock, AccountStore, AlertLog, Clock, Generation, JobQueue, KeyStatus, Messaging, ModelUsage, ReportStore,
    StorageError, UsageStore,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One fal account as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOverview {
    /// The account.
    pub id: AccountId,
    /// Its concurrency limit now.
    pub limit: u32,
    /// Jobs in flight on it now.
    pub in_flight: u32,
    /// Credits bought over the trailing window (what the limit is computed from).
    pub window_sum: Money,
    /// Unexpired credits minus spend.
    pub balance: Money,
    /// The next time the limit drops if nothing is bought.
    pub next_drop: Option<LimitDrop>,
    /// The top-up that keeps the current limit over the warning horizon.
    pub top_up: Option<TopUp>,
    /// Set when fal locked it.
    pub locked: Option<AccountLock>,
    /// Taken out of rotation by an operator.
    pub disabled: bool,
    /// A negotiated limit that overrides the tiers.
    pub limit_override: Option<u32>,
    /// Paused by the circuit breaker after repeated upstream failures.
    pub paused: bool,
    /// No longer configured: it takes no new work.
    pub retired: bool,
    /// Its keys, and since when fal refuses each refused one.
    pub keys: Vec<KeyStatus>,
}

/// The operator's figures for today and the month so far (`/stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorStats {
    /// Jobs, charges and fal's cost per model since midnight UTC.
    pub today: Vec<ModelUsage>,
    /// The same since the first of the month.
    pub month: Vec<ModelUsage>,
    /// Requests sent to fal this month (what the volume discount counts).
    pub month_requests: u64,
    /// The volume tier those requests reach.
    pub tier: DiscountTier,
    /// fal's list cost this month.
    pub fal_month_list: Money,
    /// That cost after the tier's discount.
    pub fal_month_discounted: Money,
    /// Users with a job this month.
    pub active_users: usize,
    /// Jobs waiting now.
    pub queued: u32,
    /// Every account, with its limit and jobs in flight.
    pub accounts: Vec<AccountOverview>,
    /// Prompt cache hits and misses since this process started.
    pub cache_hits: u64,
    /// See `cache_hits`.
    pub cache_misses: u64,
}

/// The ports account upkeep, alerts and summaries need.
#[derive(Clone)]
pub struct OperatorPorts {
    /// Accounts, purchases, spend and locks.
    pub accounts: Arc<dyn AccountStore>,
    /// Which alerts and summaries already went out.
    pub alerts: Arc<dyn AlertLog>,
    /// Alerts and summaries to the operators.
    pub messaging: Arc<dyn Messaging>,
    /// The keys' states at fal, and probes of refused ones.
    pub generation: Arc<dyn Generation>,
    /// Jobs in flight per account, and the queue length.
    pub queue: Arc<dyn JobQueue>,
    /// Spend and requests for budget and discount alerts and `/stats`.
    pub usage: Arc<dyn UsageStore>,
    /// Slot intervals for the saturation alert.
    pub reports: Arc<dyn ReportStore>,
    /// The instant of every alert and check.
    pub clock: Arc<dyn Clock>,
}

/// The fal accounts as this process sees them (limits, locks, refused keys, breakers),
/// the operator's alerts, and the scheduled summaries. Owns those states and the cache
/// of account snapshots.
#[derive(Clone)]
pub struct Operator {
    pub(crate) inner: Arc<OperatorInner>,
}

pub(crate) struct OperatorInner {
    pub(crate) ports: OperatorPorts,
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) counters: Arc<crate::stats::Counters>,
    pub(crate) wake: Arc<tokio::sync::Notify>,
    pub(crate) insights: Insights,
    pub(crate) breakers: Breakers,
    pub(crate) accounts: AccountCache,
    /// Keys fal refused that the operator was already told about (account, key).
    pub(crate) refused_keys: Mutex<HashSet<(AccountId, String)>>,
    /// Accounts this process saw locked, so a lock is handled (and alerted) once.
    pub(crate) locked: Mutex<HashSet<AccountId>>,
    /// Scheduled reports this process saw sent (key, period), so it asks storage once.
    pub(crate) reports_sent: Mutex<HashSet<(String, String)>>,
}

impl Operator {
    pub(crate) fn new(ports: OperatorPorts, shared: Shared, insights: Insights) -> Self {
        let inner = OperatorInner {
            breakers: Breakers::new(shared.config.breaker),
            ports,
            config: shared.config,
            counters: shared.counters,
            wake: shared.wake,
            insights,
            accounts: AccountCache::default(),
            refused_keys: Mutex::default(),
            locked: Mutex::default(),
            reports_sent: Mutex::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Alert checks, key probes and scheduled summaries on their timers, until aborted.
    pub(crate) async fn upkeep(self) {
        let config = &self.inner.config;
        let mut checks = tokio::time::interval(config.operator_checks.max(Duration::from_millis(10)));
        let mut reports = tokio::time::interval(config.report_tick.max(Duration::from_millis(10)));
        let mut keys = tokio::time::interval(config.key_probe_interval.max(Duration::from_millis(10)));
        for timer in [&mut checks, &mut reports, &mut keys] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                _ = keys.tick() => self.key_upkeep().await,
                _ = checks.tick() => self.operator_checks().await,
                _ = reports.tick() => self.scheduled_reports().await,
            }
        }
    }

    /// Every account with its limit, window, balance and what happens next.
    ///
    /// # Errors
    /// The storage error when the accounts cannot be read.
    pub async fn accounts_overview(&self) -> Result<Vec<AccountOverview>, StorageError> {
        self.inner.accounts.invalidate();
        let accounts = self.accounts().await?;
        let in_flight = self.inner.ports.queue.in_flight_by_account().await?;
        let now = self.inner.ports.clock.now();
        let horizon = self.inner.config.limit_drop_warning;
        let keys = self.inner.ports.generation.key_statuses();
        Ok(accounts
            .iter()
            .map(|a| AccountOverview {
                id: a.record.id.clone(),
                limit: a.limit,
                in_flight: in_flight.iter().find(|(id, _)| *id == a.record.id).map_or(0, |(_, n)| *n),
                window_sum: a.window_sum(now),
                balance: a.balance(now),
                next_drop: a.credit.limit_drops(now).into_iter().next(),
                top_up: a.credit.topup_to_keep_limit(now, horizon),
                locked: a.record.locked.clone(),
                disabled: a.record.disabled,
                limit_override: a.record.limit_override,
                paused: self.inner.breakers.is_open(&a.record.id),
                retired: a.record.retired_since.is_some(),
                keys: keys.iter().filter(|k| k.account == a.record.id).cloned().collect(),
            })
            .collect())
    }

    /// Puts a key fal refused back in use (the operator fixed it at fal); false when the
    /// account has no key of that name.
    pub fn enable_key(&self, account: &AccountId, key: &str) -> bool {
        if !self.inner.ports.generation.enable_key(account, key) {
            return false;
        }
        self.inner.refused_keys.lock().unwrap().remove(&(account.clone(), key.to_owned()));
        self.inner.accounts.invalidate();
        self.inner.wake.notify_one();
        true
    }

    /// Records a credit purchase (the operator bought credits at fal) and returns the
    /// account's limit afterwards. Buying credit also clears a lock: fal unlocks on top-up.
    ///
    /// # Errors
    /// `NotFound` for an unknown account; other storage errors as they come.
    pub async fn record_purchase(
        &self,
        account: &AccountId,
        amount: Money,
        at: Timestamp,
    ) -> Result<u32, StorageError> {
        let ports = &self.inner.ports;
        ports.accounts.add_purchase(account, &CreditPurchase { amount, purchased_at: at }).await?;
        ports.accounts.set_lock(account, None).await?;
        self.inner.locked.lock().unwrap().remove(account);
        self.inner.accounts.invalidate();
        self.inner.wake.notify_one();
        let accounts = self.accounts().await?;
        Ok(accounts.iter().find(|a| a.record.id == *account).map_or(0, |a| a.limit))
    }

    /// The operator's figures: usage today and this month, the volume tier and what it
    /// saves, the queue and the accounts.
    ///
    /// # Errors
    /// The first storage error met.
    pub async fn operator_stats(&self) -> Result<OperatorStats, StorageError> {
        let ports = &self.inner.ports;
        let now = ports.clock.now();
        let (day, month) = (day_start(now), month_start(now));
        let today = ports.usage.usage_by_model(day, now).await?;
        let month_usage = ports.usage.usage_by_model(month, now).await?;
        let active_users = ports.usage.usage_by_user(month, now).await?.len();
        let queued = ports.queue.queued_count().await?;
        let accounts = self.accounts_overview().await?;
        let month_requests = ports.usage.request_count(month, now).await?;
        let tier = self.inner.config.catalog.volume_discounts().tier_for(month_requests).clone();
        let fal_month_list = Money::saturating_sum(month_usage.iter().map(|m| m.fal_cost));
        let stats = self.inner.counters.snapshot();
        Ok(OperatorStats {
            today,
            month: month_usage,
            month_requests,
            fal_month_discounted: tier.apply(fal_month_list),
            tier,
            fal_month_list,
            active_users,
            queued,
            accounts,
            cache_hits: stats.cache_hits,
            cache_misses: stats.cache_misses,
        })
    }
}
