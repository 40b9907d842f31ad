//! What the engine is told at start: the rules (catalog, plans, credit and budget policy)
//! and the knobs of its loops.

use crate::breaker::BreakerConfig;
use chrono::{NaiveTime, TimeDelta, Weekday};
use mediagen_domain::SettlementPolicy;
use mediagen_domain::backoff::Backoff;
use mediagen_domain::budget::BudgetPolicy;
use mediagen_domain::catalog::Catalog;
use mediagen_domain::credit::CreditPolicy;
use mediagen_domain::planner::PlannerSettings;
use mediagen_domain::quota::Plans;
use std::time::Duration;

/// Everything the engine needs besides its ports.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Models, prices, the prompt helper and volume discounts.
    pub catalog: Catalog,
    /// Quota plans (intake) and in-flight caps (dispatch).
    pub plans: Plans,
    /// Which failures the user pays for.
    pub settlement: SettlementPolicy,
    /// fal's rules that turn an account's purchases into its concurrency limit.
    pub credit: CreditPolicy,
    /// The operator's monthly budget and its alert thresholds.
    pub budget: BudgetPolicy,
    /// This process's name as the owner of the leases it takes (unique per process).
    pub owner: String,
    /// Extra jobs each account may hold in fal's own queue beyond its limit.
    pub overhang: u32,
    /// Most jobs claimed in one call.
    pub claim_batch: u32,
    /// How long a claim or a renewal keeps a job ours.
    pub lease: Duration,
    /// The longest a job may spend at fal, queued and running, counted from when fal
    /// accepted it (across restarts); then it is canceled at fal and refunded.
    pub follow_deadline: Duration,
    /// How often keys fal refused are tried again.
    pub key_probe_interval: Duration,
    /// Retries of upstream failures.
    pub retry: RetryPolicy,
    /// The per-account circuit breaker.
    pub breaker: BreakerConfig,
    /// Shortest gap between two edits of progress messages in one chat.
    pub progress_interval: Duration,
    /// Average time a job holds a slot, for the wait estimate shown at intake.
    pub mean_service: Duration,
    /// The dispatcher looks for work at least this often, even without a wake-up.
    pub dispatch_tick: Duration,
    /// Shortest gap between two claims, so a burst of enqueues is claimed in one go.
    pub min_claim_gap: Duration,
    /// How often fal is asked where a submitted job stands (for `mark_running`); `None`
    /// waits for the result without asking.
    pub status_poll: Option<Duration>,
    /// How long account limits (purchases, spend, locks) are reused before being read again.
    pub accounts_refresh: Duration,
    /// How often expired leases are rescued (also once at start).
    pub rescue_interval: Duration,
    /// How often the operator checks run (limit drops, budget, discount tiers).
    pub operator_checks: Duration,
    /// How far ahead a concurrency-limit drop is announced to the operator.
    pub limit_drop_warning: chrono::TimeDelta,
    /// After a shutdown signal, how long jobs already at fal are still followed.
    pub shutdown_grace: Duration,
    /// Scheduled reports, the thresholds of the credit and capacity alerts, the planner.
    pub insights: InsightsConfig,
    /// How often the engine looks whether a scheduled report is due.
    pub report_tick: Duration,
}

impl EngineConfig {
    /// Sensible defaults around the given rules; `owner` must be unique per process.
    pub fn new(catalog: Catalog, plans: Plans, owner: impl Into<String>) -> Self {
        Self {
            catalog,
            plans,
            settlement: SettlementPolicy::default(),
            credit: CreditPolicy::default(),
            budget: BudgetPolicy::default(),
            owner: owner.into(),
            overhang: 1,
            claim_batch: 16,
            lease: Duration::from_secs(120),
            follow_deadline: Duration::from_secs(15 * 60),
            key_probe_interval: Duration::from_secs(5 * 60),
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            progress_interval: Duration::from_millis(1100),
            mean_service: Duration::from_secs(20),
            dispatch_tick: Duration::from_secs(5),
            min_claim_gap: Duration::from_millis(200),
            status_poll: Some(Duration::from_secs(2)),
            accounts_refresh: Duration::from_secs(30),
            rescue_interval: Duration::from_secs(60),
            operator_checks: Duration::from_secs(15 * 60),
            limit_drop_warning: chrono::TimeDelta::days(3),
            shutdown_grace: Duration::from_secs(30),
            insights: InsightsConfig::default(),
            report_tick: Duration::from_secs(60),
        }
    }
}

/// Operator intelligence: when summaries go out, when credit and capacity alerts fire,
/// and what the capacity planner aims for.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightsConfig {
    /// When the daily summary (of the previous UTC day) goes out, UTC; `None` turns it off.
    pub daily_report_at: Option<NaiveTime>,
    /// The day and time the weekly summary (of the seven days before) goes out, UTC.
    pub weekly_report_at: Option<(Weekday, NaiveTime)>,
    /// Warn when an account's unexpired credit runs out within this at the current burn.
    pub balance_warning: TimeDelta,
    /// The burn rate is the average daily fal spend over this trailing stretch.
    pub burn_window: TimeDelta,
    /// Warn when a purchase with unspent credit expires within this.
    pub expiry_warning: TimeDelta,
    /// Alert when, today, the share of busy time spent at full capacity with jobs waiting
    /// reaches this many percent.
    pub saturation_percent: f64,
    /// ...but only once the day has had at least this much busy time.
    pub saturation_min_busy: TimeDelta,
    /// The capacity planner's target and history.
    pub planner: PlannerSettings,
}

impl Default for InsightsConfig {
    /// Daily summary at 08:00 UTC, weekly on Monday at 08:00; warn 7 days before credit runs
    /// out (7-day burn) and 30 days before unspent credit expires; saturation alert at 20 %
    /// of at least 30 minutes of busy time; the planner's defaults.
    fn default() -> Self {
        let eight = NaiveTime::from_hms_opt(8, 0, 0).unwrap_or(NaiveTime::MIN);
        Self {
            daily_report_at: Some(eight),
            weekly_report_at: Some((Weekday::Mon, eight)),
            balance_warning: TimeDelta::days(7),
            burn_window: TimeDelta::days(7),
            expiry_warning: TimeDelta::days(30),
            saturation_percent: 20.0,
            saturation_min_busy: TimeDelta::minutes(30),
            planner: PlannerSettings::default(),
        }
    }
}

/// How upstream failures are retried: exponential back-off with jitter, up to a limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries in total (the first one included); the job fails after the last.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub base_delay: Duration,
    /// The delay never grows past this.
    pub max_delay: Duration,
    /// Share of the delay (0 to 1) drawn at random and taken off, so that jobs failed
    /// together do not come back together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, base_delay: Duration::from_secs(2), max_delay: Duration::from_secs(60), jitter: 0.5 }
    }
}

impl RetryPolicy {
    /// True when a job that has failed `failures` times may be tried again.
    pub fn allows_retry(&self, failures: u32) -> bool {
        failures < self.max_attempts
    }

    /// The back-off these settings describe (the domain's one rule).
    pub fn backoff(&self) -> Backoff {
        Backoff { base: self.base_delay, max: self.max_delay, jitter: self.jitter }
    }

    /// The delay before retry number `retry` (1 = first retry), jitter included.
    pub fn delay(&self, retry: u32) -> Duration {
        self.backoff().delay(retry, rand::random::<f64>(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_cap_and_jitter_only_shortens() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
            jitter: 0.5,
        };
        let backoff = policy.backoff();
        assert_eq!(backoff.delay(1, 0.0, None), Duration::from_secs(2));
        assert_eq!(backoff.delay(3, 0.0, None), Duration::from_secs(8));
        assert_eq!(backoff.delay(4, 0.0, None), Duration::from_secs(10), "capped");
        assert_eq!(backoff.delay(2, 0.5, None), Duration::from_secs(3), "half the jitter share taken off");
        for _ in 0..100 {
            let d = policy.delay(2);
            assert!(d > Duration::from_secs(2) && d <= Duration::from_secs(4), "{d:?}");
        }
        assert!(policy.allows_retry(4));
        assert!(!policy.allows_retry(5));
    }
}
