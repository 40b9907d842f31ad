//! The read model of operator reports: the numbers of a summary, the live counters and the
//! capacity plan, as data. Engines assemble them from storage; renderers turn them into text,
//! charts, CSV or metrics.

use super::period::Period;
use super::rows::{JobCounts, JobTiming, SlotInterval, UsageRow};
use super::usage::{Breakdown, MonthTiers};
use crate::credit::AccountCredit;
use crate::discount::DiscountTier;
use crate::planner::{CapacityPlan, Occupancy, Span, WaitStats, saturated_time};
use crate::{AccountId, ModelId, Money, Timestamp};
use chrono::{NaiveDate, TimeDelta};

/// One fal account now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    /// The account.
    pub id: AccountId,
    /// Its concurrency limit now.
    pub limit: u32,
    /// Jobs in flight on it now.
    pub in_flight: u32,
    /// Takes new work: neither locked, disabled nor retired.
    pub usable: bool,
    /// fal locked it.
    pub locked: bool,
    /// An operator took it out of rotation.
    pub disabled: bool,
    /// Purchases in the trailing window.
    pub window_sum: Money,
    /// Unexpired credit minus spend.
    pub balance: Money,
    /// Its credit history, for forecasts.
    pub credit: AccountCredit,
}

/// Slots that can run at once now: the usable accounts' limits.
pub fn usable_capacity(accounts: &[AccountState]) -> u32 {
    accounts.iter().filter(|a| a.usable).fold(0u32, |sum, a| sum.saturating_add(a.limit))
}

/// Money of a stretch of time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spend {
    /// Jobs finished.
    pub jobs: u64,
    /// What users were charged.
    pub user_charged: Money,
    /// fal at list price.
    pub fal_list: Money,
    /// fal after the month's volume discount.
    pub fal_discounted: Money,
}

/// The real-time counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    /// When they were read.
    pub at: Timestamp,
    /// Jobs by state.
    pub jobs: JobCounts,
    /// Accounts with their limits and jobs in flight.
    pub accounts: Vec<AccountState>,
    /// Since midnight UTC.
    pub today: Spend,
    /// Since the start of the UTC month.
    pub month: Spend,
    /// Requests sent to fal this month.
    pub month_requests: u64,
    /// The volume tier they reach.
    pub month_tier: DiscountTier,
    /// Waits of the jobs enqueued in the last hour that were claimed.
    pub recent_waits: Option<WaitStats>,
}

/// Waits in seconds (enqueue to first claim) of the jobs enqueued in `[from, to)` that
/// were claimed.
pub fn waits(timings: &[JobTiming], from: Timestamp, to: Timestamp) -> Vec<f64> {
    timings
        .iter()
        .filter(|t| t.enqueued_at >= from && t.enqueued_at < to)
        .filter_map(|t| t.first_claimed_at.map(|c| (c - t.enqueued_at).num_milliseconds().max(0) as f64 / 1000.0))
        .collect()
}

/// How much of a stretch of time users waited because every slot was busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saturation {
    /// The slots counted as full capacity.
    pub capacity: u32,
    /// Time anything was waiting or running.
    pub busy: TimeDelta,
    /// Of which every slot was taken and jobs still waited.
    pub saturated: TimeDelta,
}

impl Saturation {
    /// `saturated` as a share of `busy`, in percent (0 with no busy time).
    pub fn percent(&self) -> f64 {
        let busy = self.busy.num_milliseconds();
        if busy <= 0 { 0.0 } else { self.saturated.num_milliseconds() as f64 * 100.0 / busy as f64 }
    }
}

/// Saturation over `[from, to)` from job timings and slot intervals.
pub fn saturation_of(
    timings: &[JobTiming],
    slots: &[SlotInterval],
    capacity: u32,
    from: Timestamp,
    to: Timestamp,
) -> Saturation {
    let demand: Vec<Span> = timings.iter().map(|t| Span { start: t.enqueued_at, end: t.finished_at }).collect();
    let running: Vec<Span> = slots.iter().map(|s| Span { start: s.claimed_at, end: s.released_at }).collect();
    let demand = Occupancy::of(&demand, from, to);
    let running = Occupancy::of(&running, from, to);
    Saturation { capacity, busy: demand.busy_time(), saturated: saturated_time(&demand, &running, capacity) }
}

/// One account's peak concurrency and limit per day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTrend {
    /// The account.
    pub id: AccountId,
    /// `(day, most jobs in flight at once, limit at the end of the day)`.
    pub days: Vec<(NaiveDate, u32, u32)>,
}

/// One model's jobs and list cost per trend day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelTrend {
    /// The model.
    pub model: String,
    /// `(jobs, fal list cost)` per trend day, aligned with [`Report::trend_days`].
    pub days: Vec<(u64, Money)>,
}

/// A daily, weekly or monthly summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// What it covers.
    pub period: Period,
    /// Money and jobs of the period.
    pub usage: Breakdown,
    /// Requests sent to fal in the period.
    pub requests: u64,
    /// `(YYYY-MM, requests that month so far, tier)` for each month the period touches.
    pub tiers: Vec<(String, u64, DiscountTier)>,
    /// The days the charts cover: the last seven, or the whole period when longer.
    pub trend_days: Vec<NaiveDate>,
    /// Jobs and cost per day by model over `trend_days`.
    pub models: Vec<ModelTrend>,
    /// Peak concurrency per day against the limit, per account, over `trend_days`.
    pub accounts: Vec<AccountTrend>,
    /// Waits of the period's jobs.
    pub waits: Option<WaitStats>,
    /// Time at full capacity with a backlog in the period.
    pub saturation: Saturation,
    /// The counters now.
    pub live: Live,
}

/// The capacity plan with what it was made from.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanReport {
    /// The planner's answer.
    pub plan: CapacityPlan,
    /// The accounts now.
    pub accounts: Vec<AccountState>,
    /// fal list cost over the last credit window (what purchases pay for anyway).
    pub spend_last_window: Money,
    /// The credit window, in days.
    pub window_days: u32,
}

/// A counter a process keeps since it started, exported as-is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// The metric name, `mediagen_…_total`.
    pub name: &'static str,
    /// Its help line.
    pub help: &'static str,
    /// Its value.
    pub value: u64,
}

/// What the metrics endpoint exports: the live counters and this process's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Read from storage, shared by every process.
    pub live: Live,
    /// This process's own.
    pub counters: Vec<Counter>,
    /// This process's job times per model and account, ordered by model then account.
    pub job_times: Vec<JobTimes>,
    /// The jobs this process ended, per model, account and outcome, in that order.
    pub outcomes: Vec<OutcomeCount>,
}

/// How a job ended, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobOutcome {
    /// Delivered and charged.
    Succeeded,
    /// Ended without a result (refunded, or charged under a strict content policy).
    Failed,
    /// Canceled by its user.
    Canceled,
}

impl JobOutcome {
    /// The label value: `succeeded`, `failed`, `canceled`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Failed => "failed",
            JobOutcome::Canceled => "canceled",
        }
    }
}

/// Jobs of one model that ended one way on one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeCount {
    /// The model.
    pub model: ModelId,
    /// The account it was given to; `None` when it ended before any account took it.
    pub account: Option<AccountId>,
    /// How it ended.
    pub outcome: JobOutcome,
    /// How many.
    pub count: u64,
}

/// Who spent what on which model over a period: the ledger rows and the volume tier of each
/// month they touch, from which a renderer writes the cost allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostAllocation {
    /// What it covers.
    pub period: Period,
    /// The period's usage rows.
    pub rows: Vec<UsageRow>,
    /// The volume tier of each month.
    pub tiers: MonthTiers,
}

/// A scheduled summary for the operators: its title and its figures.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorSummary {
    /// `Daily report`, `Weekly report`.
    pub title: String,
    /// The figures.
    pub report: Report,
}

/// Upper bounds, in seconds, of the buckets of every job-time histogram: from a fast
/// image (under a second) to a long one held up in a queue (half an hour).
pub const JOB_TIME_BUCKETS_SECS: [f64; 12] = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// Observations of one duration in [`JOB_TIME_BUCKETS_SECS`] buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last counts those above every bound.
    pub counts: [u64; JOB_TIME_BUCKETS_SECS.len() + 1],
    /// Sum of the observations, in seconds.
    pub sum_secs: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: [0; JOB_TIME_BUCKETS_SECS.len() + 1], sum_secs: 0.0 }
    }
}

impl Histogram {
    /// Counts one duration (negative ones as zero).
    pub fn observe(&mut self, duration: TimeDelta) {
        let secs = duration.num_milliseconds().max(0) as f64 / 1000.0;
        let bucket =
            JOB_TIME_BUCKETS_SECS.iter().position(|bound| secs <= *bound).unwrap_or(JOB_TIME_BUCKETS_SECS.len());
        self.counts[bucket] += 1;
        self.sum_secs += secs;
    }

    /// Observations in total.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound, observations in that bucket)` for the bounded buckets; those above
    /// every bound are `count()` minus their sum.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        JOB_TIME_BUCKETS_SECS.iter().copied().zip(self.counts.iter().copied()).collect()
    }
}

/// How long the jobs of one model on one account took, as this process saw them finish.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTimes {
    /// The model.
    pub model: ModelId,
    /// The fal account they ran on.
    pub account: AccountId,
    /// Our queue: from enqueue to fal accepting the request.
    pub wait: Histogram,
    /// fal: from its accepting the request to the result being ready.
    pub fal: Histogram,
    /// The whole job: from enqueue to the result being ready.
    pub total: Histogram,
}

impl JobTimes {
    /// No observations yet for `model` on `account`.
    pub fn new(model: ModelId, account: AccountId) -> Self {
        JobTimes { model, account, wait: Histogram::default(), fal: Histogram::default(), total: Histogram::default() }
    }

    /// Counts a job enqueued at `enqueued`, accepted by fal at `submitted`, done at `done`.
    pub fn observe(&mut self, enqueued: Timestamp, submitted: Timestamp, done: Timestamp) {
        self.wait.observe(submitted - enqueued);
        self.fal.observe(done - submitted);
        self.total.observe(done - enqueued);
    }
}
