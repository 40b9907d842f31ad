//! The read side for operators: the queries behind every report, the live counters and the
//! capacity plan, folded into the domain's read model (`mediagen_domain::insights`).
//! Rendering is the front ends' job; nothing here draws or formats.

use chrono::{NaiveDate, TimeDelta};
use mediagen_domain::account::AccountView;
use mediagen_domain::credit::CreditPolicy;
use mediagen_domain::discount::VolumeDiscounts;
use mediagen_domain::insights::usage::{MonthTiers, breakdown, month_of};
use mediagen_domain::insights::{
    AccountState, AccountTrend, CostAllocation, Live, ModelTrend, Period, PlanReport, Report, Saturation, Spend,
    saturation_of, usable_capacity, waits,
};
use mediagen_domain::planner::{CurrentCapacity, Occupancy, PlannerJob, PlannerSettings, Span, wait_stats};
use mediagen_domain::quota::{month_start, next_month_start};
use mediagen_domain::{AccountId, Money, Timestamp};
use mediagen_ports::{AccountStore, DayCount, JobQueue, ReportStore, SlotInterval, StorageError};
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
        let purchases = sources.accounts.purchases(&record.id).await?;
        let spends = sources.accounts.spends(&record.id).await?;
        let in_flight = in_flight.get(&record.id).copied().unwrap_or(0);
        states.push(AccountView::new(record, rules.credit, purchases, spends, now).state(in_flight, now));
    }
    Ok(states)
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
    let spend = |line: Option<&mediagen_domain::insights::usage::Line>| {
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

/// Requests per day from the start of `from`'s month to the end of `period`'s last month
/// (to `now` for the month under way): what each month's volume tier is counted from.
async fn requests_of_months(
    sources: &Sources<'_>,
    from: Timestamp,
    period: Period,
    now: Timestamp,
) -> Result<Vec<DayCount>, StorageError> {
    let months_end =
        if period.to >= now { now } else { next_month_start(period.to - TimeDelta::nanoseconds(1)).min(now) };
    sources.reports.requests_by_day(month_start(from), months_end.max(period.to)).await
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
    let requests = requests_of_months(sources, trend_from, period, now).await?;
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

/// The ledger rows of `period` and each month's volume tier: what a cost allocation is made of.
///
/// # Errors
/// The first storage error met.
pub async fn cost_allocation(
    sources: &Sources<'_>,
    rules: &Rules<'_>,
    period: Period,
    now: Timestamp,
) -> Result<CostAllocation, StorageError> {
    let rows = sources.reports.usage_rows(period.from, period.to).await?;
    let requests = requests_of_months(sources, period.from, period, now).await?;
    Ok(CostAllocation { period, tiers: MonthTiers::new(&requests, rules.discounts), rows })
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
