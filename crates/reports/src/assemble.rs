//! The queries behind every report: the only part of the crate that touches a port.

use crate::period::Period;
use crate::usage::{Breakdown, MonthTiers, breakdown, month_of};
use chrono::{NaiveDate, TimeDelta};
use mediagen_domain::credit::{AccountCredit, CreditPolicy};
use mediagen_domain::discount::{DiscountTier, VolumeDiscounts};
use mediagen_domain::planner::{
    CapacityPlan, CurrentCapacity, Occupancy, PlannerJob, PlannerSettings, Span, WaitStats, saturated_time, wait_stats,
};
use mediagen_domain::quota::{month_start, next_month_start};
use mediagen_domain::{AccountId, Money, Timestamp};
use mediagen_ports::{AccountStore, JobCounts, JobQueue, JobTiming, ReportStore, SlotInterval, StorageError};
use std::collections::{BTreeMap, HashMap};

/// The ports reports read.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// Usage, requests, job timings and slot intervals.
    pub reports: &'a dyn ReportStore,
    /// Accounts, their purchases and spend.
    pub accounts: &'a dyn AccountStore,
    /// Jobs in flight per account.
    pub queue: &'a dyn JobQueue,
}

/// The rules figures are computed under.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The monthly volume discount tiers.
    pub discounts: &'a VolumeDiscounts,
    /// Tiers, window, expiry and lock threshold of fal credit.
    pub credit: &'a CreditPolicy,
}

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

/// Every account with its limit, balance and jobs in flight now.
///
/// # Errors
/// The storage error when accounts or in-flight counts cannot be read.
pub async fn account_states(
    sources: &Sources<'_>,
    rules: &Rules<'_>,
    now: Timestamp,
) -> Result<Vec<AccountState>, StorageError> {
    let records = sources.accounts.list_accounts().await?;
    let in_flight: HashMap<AccountId, u32> = sources.queue.in_flight_by_account().await?.into_iter().collect();
    let mut states = Vec::with_capacity(records.len());
    for record in records {
        let mut credit = AccountCredit::new(rules.credit.clone());
        credit.override_limit = record.limit_override;
        credit.purchases = sources.accounts.purchases(&record.id).await?;
        credit.spends = sources.accounts.spends(&record.id).await?;
        states.push(AccountState {
            limit: credit.concurrency_limit(now),
            in_flight: in_flight.get(&record.id).copied().unwrap_or(0),
            usable: record.takes_work(),
            locked: record.locked.is_some(),
            disabled: record.disabled,
            window_sum: credit.window_sum(now),
            balance: credit.balance(now),
            credit,
            id: record.id,
        });
    }
    Ok(states)
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

/// Reads the real-time counters.
///
/// # Errors
/// The first storage error met.
pub async fn live(sources: &Sources<'_>, rules: &Rules<'_>, now: Timestamp) -> Result<Live, StorageError> {
    let month = month_start(now);
    let rows = sources.reports.usage_rows(month, now).await?;
    let requests = sources.reports.requests_by_day(month, now).await?;
    let tiers = MonthTiers::new(&requests, rules.discounts);
    let (month_requests, month_tier) = tiers.get(month_of(now.date_naive()));
    let usage = breakdown(&rows, &tiers);
    let today_key = now.date_naive().to_string();
    let spend = |line: Option<&crate::usage::Line>| {
        line.map_or_else(Spend::default, |l| Spend {
            jobs: l.jobs,
            user_charged: l.user_charged,
            fal_list: l.fal_list,
            fal_discounted: l.fal_discounted,
        })
    };
    let hour_ago = now - TimeDelta::hours(1);
    let timings = sources.reports.job_timings(hour_ago, now).await?;
    Ok(Live {
        at: now,
        jobs: sources.reports.job_counts().await?,
        accounts: account_states(sources, rules, now).await?,
        today: spend(usage.by_day.iter().find(|l| l.key == today_key)),
        month: spend(Some(&usage.total)),
        month_requests,
        month_tier,
        recent_waits: wait_stats(&waits(&timings, hour_ago, now)),
    })
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

/// Reads the history of `[from, to)` and measures its saturation at `capacity` slots.
///
/// # Errors
/// The storage error when timings or slots cannot be read.
pub async fn saturation(
    reports: &dyn ReportStore,
    capacity: u32,
    from: Timestamp,
    to: Timestamp,
) -> Result<Saturation, StorageError> {
    let timings = reports.job_timings(from, to).await?;
    let slots = reports.slot_intervals(from, to).await?;
    Ok(saturation_of(&timings, &slots, capacity, from, to))
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

/// Assembles the report of `period`.
///
/// # Errors
/// The first storage error met.
pub async fn report(
    sources: &Sources<'_>,
    rules: &Rules<'_>,
    period: Period,
    now: Timestamp,
) -> Result<Report, StorageError> {
    let live = live(sources, rules, now).await?;
    let period_days = period.days();
    let last_day = period_days.last().copied().unwrap_or_else(|| period.from.date_naive());
    let first_trend_day = last_day - TimeDelta::days(6);
    let trend_days: Vec<NaiveDate> = if period_days.len() >= 7 {
        period_days.clone()
    } else {
        (0..7).filter_map(|i| first_trend_day.checked_add_signed(TimeDelta::days(i))).collect()
    };
    let midnight = |day: NaiveDate| day.and_time(chrono::NaiveTime::MIN).and_utc();
    let trend_from = trend_days.first().map_or(period.from, |d| midnight(*d)).min(period.from);

    let rows = sources.reports.usage_rows(trend_from, period.to).await?;
    let months_from = month_start(trend_from);
    let months_to =
        if period.to >= now { now } else { next_month_start(period.to - TimeDelta::nanoseconds(1)).min(now) };
    let requests = sources.reports.requests_by_day(months_from, months_to.max(period.to)).await?;
    let tiers = MonthTiers::new(&requests, rules.discounts);

    let in_period: Vec<_> = rows.iter().filter(|r| period_days.contains(&r.day)).cloned().collect();
    let usage = breakdown(&in_period, &tiers);
    let period_requests = requests.iter().filter(|d| period_days.contains(&d.day)).map(|d| d.count).sum();
    let mut months: Vec<(i32, u32)> = period_days.iter().map(|d| month_of(*d)).collect();
    months.dedup();
    let tier_lines = months
        .into_iter()
        .map(|month| {
            let (n, tier) = tiers.get(month);
            (format!("{:04}-{:02}", month.0, month.1), n, tier)
        })
        .collect();

    let mut by_model: BTreeMap<&str, BTreeMap<NaiveDate, (u64, Money)>> = BTreeMap::new();
    for row in &rows {
        let day = by_model.entry(row.model.as_str()).or_default().entry(row.day).or_default();
        day.0 += row.jobs;
        day.1 = day.1.saturating_add(row.fal_cost);
    }
    let models = by_model
        .into_iter()
        .map(|(model, days)| ModelTrend {
            model: model.to_owned(),
            days: trend_days.iter().map(|d| days.get(d).copied().unwrap_or((0, Money::ZERO))).collect(),
        })
        .collect();

    let slots = sources.reports.slot_intervals(trend_from, period.to).await?;
    let accounts = live
        .accounts
        .iter()
        .map(|account| {
            let spans: Vec<Span> = slots
                .iter()
                .filter(|s| s.account == account.id)
                .map(|s| Span { start: s.claimed_at, end: s.released_at })
                .collect();
            let peaks = Occupancy::of(&spans, trend_from, period.to).daily_peaks();
            let days = trend_days
                .iter()
                .map(|day| {
                    let end = midnight(*day) + TimeDelta::days(1);
                    let at = end.min(now) - TimeDelta::milliseconds(1);
                    (*day, peaks.get(day).copied().unwrap_or(0), account.credit.concurrency_limit(at))
                })
                .collect();
            AccountTrend { id: account.id.clone(), days }
        })
        .collect();

    let timings = sources.reports.job_timings(period.from, period.to).await?;
    let period_slots: Vec<SlotInterval> = slots
        .iter()
        .filter(|s| s.claimed_at < period.to && s.released_at.is_none_or(|r| r > period.from))
        .cloned()
        .collect();
    let saturation = saturation_of(&timings, &period_slots, usable_capacity(&live.accounts), period.from, period.to);
    Ok(Report {
        period,
        usage,
        requests: period_requests,
        tiers: tier_lines,
        trend_days,
        models,
        accounts,
        waits: wait_stats(&waits(&timings, period.from, period.to)),
        saturation,
        live,
    })
}

/// The cost allocation of `period` as CSV (see [`crate::csv::allocation`]).
///
/// # Errors
/// The first storage error met.
pub async fn cost_allocation(
    sources: &Sources<'_>,
    rules: &Rules<'_>,
    period: Period,
    now: Timestamp,
) -> Result<String, StorageError> {
    let rows = sources.reports.usage_rows(period.from, period.to).await?;
    let months_to =
        if period.to >= now { now } else { next_month_start(period.to - TimeDelta::nanoseconds(1)).min(now) };
    let requests = sources.reports.requests_by_day(month_start(period.from), months_to.max(period.to)).await?;
    Ok(crate::csv::allocation(&rows, &MonthTiers::new(&requests, rules.discounts)))
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

/// Plans capacity from the history before `now`.
///
/// # Errors
/// The first storage error met.
pub async fn capacity_plan(
    sources: &Sources<'_>,
    rules: &Rules<'_>,
    settings: &PlannerSettings,
    now: Timestamp,
) -> Result<PlanReport, StorageError> {
    let from = now - settings.history();
    let accounts = account_states(sources, rules, now).await?;
    let timings = sources.reports.job_timings(from, now).await?;
    let slots = sources.reports.slot_intervals(from, now).await?;
    let mut held: HashMap<mediagen_domain::JobId, TimeDelta> = HashMap::new();
    for slot in &slots {
        *held.entry(slot.job).or_insert_with(TimeDelta::zero) += slot.released_at.unwrap_or(now) - slot.claimed_at;
    }
    let jobs: Vec<PlannerJob> = timings
        .iter()
        .map(|t| PlannerJob {
            model: t.model.clone(),
            enqueued_at: t.enqueued_at,
            first_claimed_at: t.first_claimed_at,
            finished_at: t.finished_at,
            slot_time: held.get(&t.job).copied().unwrap_or_else(TimeDelta::zero),
        })
        .collect();
    let spans: Vec<Span> = slots.iter().map(|s| Span { start: s.claimed_at, end: s.released_at }).collect();
    let usable: Vec<&AccountState> = accounts.iter().filter(|a| a.usable).collect();
    let current = CurrentCapacity {
        accounts: u32::try_from(usable.len().max(1)).unwrap_or(u32::MAX),
        slots: usable_capacity(&accounts),
    };
    let plan = mediagen_domain::planner::plan(&jobs, &spans, current, &rules.credit.tiers, settings, now);
    let window = rules.credit.window();
    let recent = sources.reports.usage_rows(now - window, now).await?;
    let spend_last_window = Money::saturating_sum(recent.iter().map(|r| r.fal_cost));
    Ok(PlanReport { plan, accounts, spend_last_window, window_days: rules.credit.window_days })
}
