//! Capacity planning: how many fal slots keep the queue wait under a target, from what
//! the queue has measured.
//!
//! # The model
//! Each job wants a slot from the moment it is enqueued until it finishes; it waits in our
//! queue while every slot is taken. With Poisson arrivals at rate `λ`, a mean slot time `S`
//! and `c` slots this is the M/M/c queue, whose Erlang C formula gives the probability
//! `C(c, A)` that a job has to wait at all (`A = λ·S`, the offered load in Erlangs) and the
//! tail of the wait: `P(W > t) = C(c, A) · e^{-(c/S - λ)·t}`. The p95 wait is the `t` where
//! that tail falls to 5 %.
//!
//! # What is measured
//! - `λ`: the *typical daily busy window*. For each UTC day with arrivals, the most jobs
//!   that arrived in any window of [`PlannerSettings::busy_window`] (sliding, so a peak that
//!   straddles the hour is not split); the median of those daily peaks, so one unusual day
//!   neither makes nor breaks the plan. Arrival times do not depend on the capacity the
//!   history was served with, which is why they, and not queue lengths, drive the model.
//! - `S`: the mean time a finished job held a slot, retries included.
//! - For comparison: the observed demand (jobs wanting to run = in flight + queued) and the
//!   observed waits (enqueue to first claim), as distributions over the history.
//!
//! Everything is a pure function of the history and `now`.

use crate::credit::ConcurrencyTiers;
use crate::money::Money;
use crate::{ModelId, Timestamp};
use chrono::{NaiveDate, TimeDelta};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The wait quantile the target is about: p95.
pub const WAIT_QUANTILE: f64 = 0.95;

/// Slots the enterprise search gives up at: no fal deal goes past this.
const MAX_SLOTS: u32 = 10_000;

/// The operator's planning knobs (the `[planner]` settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlannerSettings {
    /// The p95 queue wait to stay under, in seconds.
    pub target_wait_secs: u64,
    /// How far back the history goes, in days.
    pub history_days: u32,
    /// The length of the busy window arrivals are counted in, in minutes.
    pub busy_window_minutes: u32,
}

impl Default for PlannerSettings {
    /// A p95 wait of 30 s, 28 days of history (one credit window), the busy hour.
    fn default() -> Self {
        Self { target_wait_secs: 30, history_days: 28, busy_window_minutes: 60 }
    }
}

impl PlannerSettings {
    /// The p95 wait target.
    pub fn target_wait(&self) -> TimeDelta {
        TimeDelta::seconds(i64::try_from(self.target_wait_secs).unwrap_or(i64::MAX / 1000))
    }

    /// The history window.
    pub fn history(&self) -> TimeDelta {
        TimeDelta::days(i64::from(self.history_days.max(1)))
    }

    /// The busy window.
    pub fn busy_window(&self) -> TimeDelta {
        TimeDelta::minutes(i64::from(self.busy_window_minutes.max(1)))
    }
}

// ---------------------------------------------------------------------------------------
// Percentiles and occupancy

/// The nearest-rank percentile (`percent` in 0..=100) of `values`; `None` when empty.
///
/// Nearest rank: the smallest value with at least `percent` % of the values at or below
/// it, so the result is always one of the values (p100 is the maximum, p0 the minimum).
pub fn percentile<T: Copy + PartialOrd>(values: &[T], percent: f64) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = sorted.len();
    let rank = ((percent.clamp(0.0, 100.0) / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// A half-open stretch of time `[start, end)`; `end` is `None` while it is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// When it began.
    pub start: Timestamp,
    /// When it ended, if it has.
    pub end: Option<Timestamp>,
}

/// How many spans are open at each instant of a window: a step function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupancy {
    from: Timestamp,
    to: Timestamp,
    /// `(instant, level)`: the level holds from the instant to the next one (or `to`).
    /// The first step is at `from`; consecutive levels differ.
    steps: Vec<(Timestamp, u32)>,
}

impl Occupancy {
    /// The occupancy of `spans` over `[from, to)`; open spans count until `to`.
    pub fn of(spans: &[Span], from: Timestamp, to: Timestamp) -> Self {
        let mut changes: Vec<(Timestamp, i64)> = Vec::with_capacity(spans.len() * 2);
        for span in spans {
            let start = span.start.max(from);
            let end = span.end.unwrap_or(to).min(to);
            if start < end {
                changes.push((start, 1));
                changes.push((end, -1));
            }
        }
        changes.sort_unstable();
        let mut steps = vec![(from, 0u32)];
        let mut level: i64 = 0;
        let mut i = 0;
        while i < changes.len() {
            let at = changes[i].0;
            while i < changes.len() && changes[i].0 == at {
                level += changes[i].1;
                i += 1;
            }
            if at >= to {
                break;
            }
            let value = u32::try_from(level.max(0)).unwrap_or(u32::MAX);
            match steps.last_mut() {
                Some(last) if last.0 == at => last.1 = value,
                Some(last) if last.1 == value => {}
                _ => steps.push((at, value)),
            }
        }
        // A step set at `from` may equal the one before it was overwritten; merge runs.
        steps.dedup_by(|later, earlier| later.1 == earlier.1);
        Occupancy { from, to, steps }
    }

    /// The steps: `(instant, level)`, each level holding until the next instant.
    pub fn steps(&self) -> &[(Timestamp, u32)] {
        &self.steps
    }

    /// `(level, how long)` for each step, clipped to the window.
    fn durations(&self) -> impl Iterator<Item = (u32, TimeDelta)> + '_ {
        self.steps.iter().enumerate().map(|(i, (at, level))| {
            let end = self.steps.get(i + 1).map_or(self.to, |next| next.0);
            (*level, end - *at)
        })
    }

    /// The highest level reached.
    pub fn peak(&self) -> u32 {
        self.steps.iter().map(|(_, level)| *level).max().unwrap_or(0)
    }

    /// The level at `at` (0 outside the window).
    pub fn level_at(&self, at: Timestamp) -> u32 {
        if at < self.from || at >= self.to {
            return 0;
        }
        let index = self.steps.partition_point(|(t, _)| *t <= at);
        self.steps[index.saturating_sub(1)].1
    }

    /// Time with at least one span open.
    pub fn busy_time(&self) -> TimeDelta {
        self.durations().filter(|(level, _)| *level > 0).map(|(_, d)| d).sum()
    }

    /// The time-weighted percentile of the level over the busy time (level above 0):
    /// the smallest level the occupancy stays at or below for `percent` % of that time.
    /// 0 when nothing was ever open.
    pub fn busy_percentile(&self, percent: f64) -> u32 {
        let mut busy: Vec<(u32, i64)> = self
            .durations()
            .filter(|(level, d)| *level > 0 && *d > TimeDelta::zero())
            .map(|(level, d)| (level, d.num_milliseconds()))
            .collect();
        let total: i64 = busy.iter().map(|(_, ms)| ms).sum();
        if total == 0 {
            return 0;
        }
        busy.sort_unstable();
        let needed = (percent.clamp(0.0, 100.0) / 100.0) * total as f64;
        let mut seen = 0i64;
        for (level, ms) in &busy {
            seen += ms;
            if seen as f64 >= needed {
                return *level;
            }
        }
        busy.last().map_or(0, |(level, _)| *level)
    }

    /// The time-weighted percentile of the level over the union of `windows` (each
    /// `[start, end)`, assumed not to overlap), zero levels included: the smallest level
    /// the occupancy stays at or below for `percent` % of that time. 0 for no time.
    pub fn percentile_within(&self, windows: &[(Timestamp, Timestamp)], percent: f64) -> u32 {
        let mut weighted: Vec<(u32, i64)> = Vec::new();
        for (i, (at, level)) in self.steps.iter().enumerate() {
            let end = self.steps.get(i + 1).map_or(self.to, |next| next.0);
            for (start, stop) in windows {
                let (a, b) = ((*at).max(*start), end.min(*stop));
                if a < b {
                    weighted.push((*level, (b - a).num_milliseconds()));
                }
            }
        }
        let total: i64 = weighted.iter().map(|(_, ms)| ms).sum();
        if total == 0 {
            return 0;
        }
        weighted.sort_unstable();
        let needed = (percent.clamp(0.0, 100.0) / 100.0) * total as f64;
        let mut seen = 0i64;
        for (level, ms) in &weighted {
            seen += ms;
            if seen as f64 >= needed {
                return *level;
            }
        }
        weighted.last().map_or(0, |(level, _)| *level)
    }

    /// The highest level reached on each UTC day of the window (a level carried over
    /// midnight counts for the new day too).
    pub fn daily_peaks(&self) -> BTreeMap<NaiveDate, u32> {
        let mut peaks = BTreeMap::new();
        if self.from >= self.to {
            return peaks;
        }
        let mut day = self.from.date_naive();
        let last = (self.to - TimeDelta::nanoseconds(1)).date_naive();
        while day <= last {
            let midnight = day.and_time(chrono::NaiveTime::MIN).and_utc().max(self.from);
            peaks.insert(day, self.level_at(midnight));
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        for (at, level) in &self.steps {
            let entry = peaks.entry(at.date_naive()).or_insert(0);
            *entry = (*entry).max(*level);
        }
        peaks
    }
}

/// Time in `[from, to)` when every slot was taken (`running >= capacity`) and jobs were
/// still waiting (`demand > running`): the time users queued because fal was full.
///
/// `demand` counts jobs wanting to run (in flight + queued), `running` jobs in flight;
/// both must cover the same window. A capacity of 0 never counts as full.
pub fn saturated_time(demand: &Occupancy, running: &Occupancy, capacity: u32) -> TimeDelta {
    if capacity == 0 {
        return TimeDelta::zero();
    }
    let mut instants: Vec<Timestamp> = demand.steps.iter().chain(running.steps.iter()).map(|(at, _)| *at).collect();
    instants.sort_unstable();
    instants.dedup();
    let end = demand.to.min(running.to);
    let mut total = TimeDelta::zero();
    for (i, at) in instants.iter().enumerate() {
        if *at >= end {
            break;
        }
        let next = instants.get(i + 1).copied().unwrap_or(end).min(end);
        let (wanting, in_flight) = (demand.level_at(*at), running.level_at(*at));
        if in_flight >= capacity && wanting > in_flight {
            total += next - *at;
        }
    }
    total
}

/// Each UTC day's busiest window of arrivals and the typical (median) one.
#[derive(Debug, Clone, PartialEq)]
pub struct BusyWindows {
    /// `(start, arrivals)` of each day's busiest window, by day.
    pub windows: Vec<(Timestamp, usize)>,
    /// The median of the daily peaks, as arrivals per second (0 with no arrivals).
    pub rate: f64,
}

/// For each UTC day with arrivals, the most arrivals in any `[t, t + window)` starting
/// that day (sliding, so a burst straddling the hour is not split), and their median as a
/// rate per second.
pub fn busy_windows(arrivals: &[Timestamp], window: TimeDelta) -> BusyWindows {
    let window_secs = window.num_milliseconds() as f64 / 1000.0;
    if arrivals.is_empty() || window_secs <= 0.0 {
        return BusyWindows { windows: Vec::new(), rate: 0.0 };
    }
    let mut sorted = arrivals.to_vec();
    sorted.sort_unstable();
    let mut peaks: BTreeMap<NaiveDate, (Timestamp, usize)> = BTreeMap::new();
    let mut end = 0;
    for (start, at) in sorted.iter().enumerate() {
        while end < sorted.len() && sorted[end] < *at + window {
            end += 1;
        }
        let count = end - start;
        let peak = peaks.entry(at.date_naive()).or_insert((*at, 0));
        if count > peak.1 {
            *peak = (*at, count);
        }
    }
    let windows: Vec<(Timestamp, usize)> = peaks.into_values().collect();
    let counts: Vec<usize> = windows.iter().map(|(_, count)| *count).collect();
    BusyWindows { rate: median(&counts) / window_secs, windows }
}

/// The median of the daily busiest windows as a rate per second; see [`busy_windows`].
pub fn busy_arrival_rate(arrivals: &[Timestamp], window: TimeDelta) -> f64 {
    busy_windows(arrivals, window).rate
}

fn median(values: &[usize]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2] as f64,
        n => (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0,
    }
}

// ---------------------------------------------------------------------------------------
// Erlang C

/// The probability that a job has to wait, for `servers` slots and an offered load of
/// `load` Erlangs (Erlang C). 1 when the load reaches the slots (the queue never drains),
/// 0 for no load.
///
/// Computed through the Erlang B recursion, which stays stable for thousands of slots.
pub fn erlang_c(servers: u32, load: f64) -> f64 {
    if load <= 0.0 {
        return 0.0;
    }
    let c = f64::from(servers);
    if servers == 0 || load >= c {
        return 1.0;
    }
    let mut b = 1.0;
    for k in 1..=servers {
        b = load * b / (f64::from(k) + load * b);
    }
    c * b / (c - load * (1.0 - b))
}

/// An M/M/c queue: Poisson arrivals, exponential slot times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueModel {
    /// Arrivals per second.
    pub arrival_rate: f64,
    /// Mean time a job holds a slot, in seconds.
    pub mean_service_secs: f64,
}

impl QueueModel {
    /// The offered load `λ·S` in Erlangs: the slots busy on average with no queue.
    pub fn offered_load(&self) -> f64 {
        (self.arrival_rate * self.mean_service_secs).max(0.0)
    }

    /// The share of time slots are busy, `A / c` (1 or more means the queue grows).
    pub fn utilization(&self, servers: u32) -> f64 {
        if servers == 0 { f64::INFINITY } else { self.offered_load() / f64::from(servers) }
    }

    /// The probability of waiting at all.
    pub fn wait_probability(&self, servers: u32) -> f64 {
        erlang_c(servers, self.offered_load())
    }

    /// The rate the wait tail decays at, `c/S - λ`; `None` when the queue never drains.
    fn drain_rate(&self, servers: u32) -> Option<f64> {
        if self.arrival_rate <= 0.0 {
            return Some(f64::INFINITY);
        }
        if self.mean_service_secs <= 0.0 {
            return Some(f64::INFINITY);
        }
        let rate = f64::from(servers) / self.mean_service_secs - self.arrival_rate;
        (rate > 0.0).then_some(rate)
    }

    /// The mean wait in seconds, `C / (c/S - λ)`; `None` when the queue never drains.
    pub fn mean_wait(&self, servers: u32) -> Option<f64> {
        let rate = self.drain_rate(servers)?;
        Some(if rate.is_infinite() { 0.0 } else { self.wait_probability(servers) / rate })
    }

    /// The wait in seconds that a share `quantile` (e.g. 0.95) of jobs stay within;
    /// `None` when the queue never drains.
    pub fn wait_quantile(&self, servers: u32, quantile: f64) -> Option<f64> {
        let rate = self.drain_rate(servers)?;
        if rate.is_infinite() {
            return Some(0.0);
        }
        let tail = 1.0 - quantile.clamp(0.0, 1.0);
        let waiting = self.wait_probability(servers);
        if waiting <= tail {
            return Some(0.0);
        }
        Some((waiting / tail).ln() / rate)
    }

    /// The fewest slots whose p95 wait is at most `target_secs`; `None` past [`MAX_SLOTS`].
    pub fn slots_for(&self, target_secs: f64) -> Option<u32> {
        let start = self.offered_load().floor() as u32;
        (start.max(1)..=MAX_SLOTS)
            .find(|c| self.wait_quantile(*c, WAIT_QUANTILE).is_some_and(|wait| wait <= target_secs))
    }
}

// ---------------------------------------------------------------------------------------
// The plan

/// One job of the history, as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannerJob {
    /// The model it ran.
    pub model: ModelId,
    /// When it entered our queue.
    pub enqueued_at: Timestamp,
    /// When a dispatcher first took it (end of its first wait).
    pub first_claimed_at: Option<Timestamp>,
    /// When it ended, if it has.
    pub finished_at: Option<Timestamp>,
    /// Total time it held a slot, over all its attempts.
    pub slot_time: TimeDelta,
}

/// The capacity there is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentCapacity {
    /// fal accounts in use (at least one is assumed).
    pub accounts: u32,
    /// Their concurrency limits, summed.
    pub slots: u32,
}

/// How long each model holds a slot.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelService {
    /// The model.
    pub model: ModelId,
    /// Finished jobs measured.
    pub jobs: u64,
    /// Mean slot time in seconds.
    pub mean_secs: f64,
    /// p95 slot time in seconds.
    pub p95_secs: f64,
}

/// A distribution of jobs at once: time-weighted over the daily busy windows (where the
/// plan is made), and the peak over the whole history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Concurrency {
    /// Median over the busy windows.
    pub p50: u32,
    /// p95 over the busy windows.
    pub p95: u32,
    /// The most at any instant of the history.
    pub peak: u32,
}

/// Observed waits in our queue (enqueue to first claim), in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitStats {
    /// Jobs measured.
    pub jobs: u64,
    /// Median.
    pub p50: f64,
    /// p95.
    pub p95: f64,
    /// Longest.
    pub max: f64,
}

/// Waits from the observed history: `None` when no job was claimed.
pub fn wait_stats(waits_secs: &[f64]) -> Option<WaitStats> {
    Some(WaitStats {
        jobs: waits_secs.len() as u64,
        p50: percentile(waits_secs, 50.0)?,
        p95: percentile(waits_secs, 95.0)?,
        max: percentile(waits_secs, 100.0)?,
    })
}

/// What one purchase tier (or an enterprise deal) would give.
#[derive(Debug, Clone, PartialEq)]
pub struct TierForecast {
    /// Credits to buy per account per window for the tier; `None` for enterprise.
    pub min_window_sum: Option<Money>,
    /// Slots per account.
    pub limit: u32,
    /// Slots over all accounts.
    pub slots: u32,
    /// `A / slots`.
    pub utilization: f64,
    /// Chance a job waits at all.
    pub wait_probability: f64,
    /// Predicted p95 wait in seconds; `None` when the queue would never drain.
    pub p95_wait_secs: Option<f64>,
    /// Predicted mean wait in seconds; `None` when the queue would never drain.
    pub mean_wait_secs: Option<f64>,
    /// The p95 wait is within the target.
    pub meets_target: bool,
    /// Accounts at this tier that would meet the target; `None` if no count up to the
    /// slot ceiling does (or for the enterprise row).
    pub accounts_needed: Option<u32>,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Recommendation {
    /// The cheapest tier that meets the target, as an index into [`CapacityPlan::options`].
    Tier(usize),
    /// No published tier is enough with the current accounts: a negotiated limit of this
    /// many slots per account would be (or more accounts: see each option).
    Enterprise {
        /// Slots each account would need.
        slots_per_account: u32,
    },
    /// Not enough history to say anything.
    NoData,
}

/// The measured load, every tier's forecast and the recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityPlan {
    /// The history window `[from, to)`.
    pub from: Timestamp,
    /// End of the history window (now).
    pub to: Timestamp,
    /// Jobs that arrived in the window.
    pub arrivals: u64,
    /// The typical daily busy-window arrival rate, per second.
    pub busy_arrival_rate: f64,
    /// Mean slot time over finished jobs, in seconds.
    pub mean_service_secs: f64,
    /// `busy_arrival_rate × mean_service_secs`, Erlangs.
    pub offered_load: f64,
    /// Slot time per model, busiest first.
    pub models: Vec<ModelService>,
    /// Jobs wanting to run (in flight + queued), over busy time.
    pub demand: Concurrency,
    /// Jobs in flight, over busy time.
    pub in_flight: Concurrency,
    /// Waits seen.
    pub observed_wait: Option<WaitStats>,
    /// The capacity now.
    pub current: CurrentCapacity,
    /// The model's p95 wait at the current capacity; `None` when it would never drain.
    pub predicted_wait_now_secs: Option<f64>,
    /// The target, in seconds.
    pub target_wait_secs: f64,
    /// The base limit, each published tier, and enterprise last.
    pub options: Vec<TierForecast>,
    /// What to do.
    pub recommendation: Recommendation,
}

/// Plans capacity from `jobs` (every job whose life overlaps the history window) and
/// `slots` (every slot interval, all accounts), under `tiers`, at `now`.
pub fn plan(
    jobs: &[PlannerJob],
    slots: &[Span],
    current: CurrentCapacity,
    tiers: &ConcurrencyTiers,
    settings: &PlannerSettings,
    now: Timestamp,
) -> CapacityPlan {
    let from = now - settings.history();
    let accounts = current.accounts.max(1);
    let arrivals: Vec<Timestamp> = jobs.iter().map(|j| j.enqueued_at).filter(|at| *at >= from && *at < now).collect();
    let busy = busy_windows(&arrivals, settings.busy_window());
    let busy_arrival_rate = busy.rate;
    let windows: Vec<(Timestamp, Timestamp)> =
        busy.windows.iter().map(|(start, _)| (*start, (*start + settings.busy_window()).min(now))).collect();

    let finished: Vec<&PlannerJob> =
        jobs.iter().filter(|j| j.finished_at.is_some() && j.slot_time > TimeDelta::zero()).collect();
    let secs = |d: TimeDelta| d.num_milliseconds() as f64 / 1000.0;
    let mean_service_secs = if finished.is_empty() {
        0.0
    } else {
        finished.iter().map(|j| secs(j.slot_time)).sum::<f64>() / finished.len() as f64
    };
    let mut by_model: BTreeMap<&ModelId, Vec<f64>> = BTreeMap::new();
    for job in &finished {
        by_model.entry(&job.model).or_default().push(secs(job.slot_time));
    }
    let mut models: Vec<ModelService> = by_model
        .into_iter()
        .map(|(model, times)| ModelService {
            model: model.clone(),
            jobs: times.len() as u64,
            mean_secs: times.iter().sum::<f64>() / times.len() as f64,
            p95_secs: percentile(&times, 95.0).unwrap_or(0.0),
        })
        .collect();
    models.sort_by(|a, b| b.jobs.cmp(&a.jobs).then_with(|| a.model.cmp(&b.model)));

    let demand_spans: Vec<Span> = jobs.iter().map(|j| Span { start: j.enqueued_at, end: j.finished_at }).collect();
    let demand = Occupancy::of(&demand_spans, from, now);
    let running = Occupancy::of(slots, from, now);
    let concurrency = |o: &Occupancy| Concurrency {
        p50: o.percentile_within(&windows, 50.0),
        p95: o.percentile_within(&windows, 95.0),
        peak: o.peak(),
    };
    let waits: Vec<f64> = jobs
        .iter()
        .filter(|j| j.enqueued_at >= from)
        .filter_map(|j| j.first_claimed_at.map(|claimed| secs(claimed - j.enqueued_at).max(0.0)))
        .collect();

    let model = QueueModel { arrival_rate: busy_arrival_rate, mean_service_secs };
    let target = secs(settings.target_wait());
    let forecast = |min_window_sum: Option<Money>, limit: u32| {
        let total = limit.saturating_mul(accounts);
        let p95 = model.wait_quantile(total, WAIT_QUANTILE);
        TierForecast {
            min_window_sum,
            limit,
            slots: total,
            utilization: model.utilization(total),
            wait_probability: model.wait_probability(total),
            p95_wait_secs: p95,
            mean_wait_secs: model.mean_wait(total),
            meets_target: p95.is_some_and(|wait| wait <= target),
            accounts_needed: min_window_sum.and_then(|_| {
                let least = (model.offered_load() / f64::from(limit.max(1))).floor() as u32;
                (least.max(1)..=MAX_SLOTS / limit.max(1)).find(|n| {
                    model.wait_quantile(limit.saturating_mul(*n), WAIT_QUANTILE).is_some_and(|wait| wait <= target)
                })
            }),
        }
    };
    let mut options = vec![forecast(Some(Money::ZERO), tiers.base_limit())];
    options.extend(tiers.tiers().iter().map(|tier| forecast(Some(tier.min_window_sum), tier.limit)));
    let needed_total = model.slots_for(target);
    let enterprise_limit = needed_total.map_or(MAX_SLOTS, |total| total.div_ceil(accounts));
    options.push(forecast(None, enterprise_limit));

    let recommendation = if arrivals.is_empty() || mean_service_secs <= 0.0 {
        Recommendation::NoData
    } else {
        match options.iter().position(|o| o.min_window_sum.is_some() && o.meets_target) {
            Some(index) => Recommendation::Tier(index),
            None => Recommendation::Enterprise { slots_per_account: enterprise_limit },
        }
    };
    CapacityPlan {
        from,
        to: now,
        arrivals: arrivals.len() as u64,
        busy_arrival_rate,
        mean_service_secs,
        offered_load: model.offered_load(),
        models,
        demand: concurrency(&demand),
        in_flight: concurrency(&running),
        observed_wait: wait_stats(&waits),
        current,
        predicted_wait_now_secs: model.wait_quantile(current.slots, WAIT_QUANTILE),
        target_wait_secs: target,
        options,
        recommendation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn t0() -> Timestamp {
        Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        t0() + TimeDelta::seconds(secs)
    }

    fn span(start: i64, end: Option<i64>) -> Span {
        Span { start: at(start), end: end.map(at) }
    }

    /// A small deterministic generator (xorshift64*), so synthetic loads are the same on
    /// every run without a dependency.
    struct Rng(u64);

    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        fn exponential(&mut self, mean: f64) -> f64 {
            -mean * self.unit().ln()
        }
    }

    /// Jobs arriving as a Poisson process whose rate (per second) is `rate(hour of day)`,
    /// each holding a slot for an exponential time of mean `service` seconds, served at
    /// once (as with ample capacity), over `days` days before `now`.
    fn synthetic(days: i64, service: f64, rate: impl Fn(u32) -> f64, seed: u64) -> (Vec<PlannerJob>, Vec<Span>) {
        let mut rng = Rng(seed);
        let start = t0();
        let end = start + TimeDelta::days(days);
        let mut now = start;
        let (mut jobs, mut slots) = (Vec::new(), Vec::new());
        // Thinning: draw at the highest rate, keep each arrival with probability rate/max.
        let max = (0..24).map(&rate).fold(0.0f64, f64::max);
        loop {
            now += TimeDelta::milliseconds((rng.exponential(1.0 / max) * 1000.0) as i64);
            if now >= end {
                break;
            }
            let hour =
                u32::try_from((now - now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc()).num_hours()).unwrap();
            if rng.unit() > rate(hour) / max {
                continue;
            }
            let held = TimeDelta::milliseconds((rng.exponential(service) * 1000.0).max(1.0) as i64);
            let done = now + held;
            jobs.push(PlannerJob {
                model: ModelId::new("fal-ai/nano-banana"),
                enqueued_at: now,
                first_claimed_at: Some(now),
                finished_at: Some(done),
                slot_time: held,
            });
            slots.push(Span { start: now, end: Some(done) });
        }
        (jobs, slots)
    }

    fn limits(plan: &CapacityPlan) -> Vec<u32> {
        plan.options.iter().map(|o| o.limit).collect()
    }

    fn recommended(plan: &CapacityPlan) -> (Option<Money>, u32) {
        match plan.recommendation {
            Recommendation::Tier(i) => (plan.options[i].min_window_sum, plan.options[i].limit),
            ref other => panic!("expected a tier, got {other:?}"),
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values = [15, 20, 35, 40, 50];
        assert_eq!(percentile(&values, 5.0), Some(15));
        assert_eq!(percentile(&values, 30.0), Some(20));
        assert_eq!(percentile(&values, 40.0), Some(20));
        assert_eq!(percentile(&values, 50.0), Some(35));
        assert_eq!(percentile(&values, 100.0), Some(50));
        assert_eq!(percentile(&values, 0.0), Some(15));
        assert_eq!(percentile(&[3.5, 1.5, 2.5], 95.0), Some(3.5));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
    }

    #[test]
    fn erlang_c_matches_known_values() {
        // Two slots, one Erlang: B = 0.2, C = 1/3.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        // One slot is M/M/1: the chance of waiting is the utilization.
        assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12);
        // The textbook table: 10 agents, 8 Erlangs → 0.4092.
        assert!((erlang_c(10, 8.0) - 0.409_2).abs() < 1e-4, "{}", erlang_c(10, 8.0));
        assert_eq!(erlang_c(10, 10.0), 1.0, "at the limit the queue never drains");
        assert_eq!(erlang_c(10, 0.0), 0.0);
        assert_eq!(erlang_c(0, 1.0), 1.0);
        // Stable for large systems.
        let big = erlang_c(2_000, 1_900.0);
        assert!(big > 0.0 && big < 1.0, "{big}");
    }

    #[test]
    fn wait_quantiles_follow_the_exponential_tail() {
        // M/M/1 at 0.5 Erlang with 10 s jobs: C = 0.5, drain rate 0.1 - 0.05 = 0.05/s.
        let m = QueueModel { arrival_rate: 0.05, mean_service_secs: 10.0 };
        assert!((m.offered_load() - 0.5).abs() < 1e-12);
        assert!((m.mean_wait(1).unwrap() - 10.0).abs() < 1e-9, "C / rate = 0.5 / 0.05");
        let p95 = m.wait_quantile(1, 0.95).unwrap();
        assert!((p95 - (0.5f64 / 0.05).ln() / 0.05).abs() < 1e-9, "{p95}");
        assert_eq!(m.wait_quantile(1, 0.4), Some(0.0), "60 % never wait, so p40 is zero");
        assert_eq!(m.wait_quantile(0, 0.95), None);
        let full = QueueModel { arrival_rate: 1.0, mean_service_secs: 20.0 };
        assert_eq!(full.wait_quantile(20, 0.95), None, "20 Erlangs on 20 slots never drain");
        assert_eq!(full.mean_wait(19), None);
        assert!(full.wait_quantile(21, 0.95).unwrap() > 0.0);
        let idle = QueueModel { arrival_rate: 0.0, mean_service_secs: 20.0 };
        assert_eq!(idle.wait_quantile(1, 0.95), Some(0.0));
        // The fewest slots for a target: 10 Erlangs and 20 s jobs.
        let m = QueueModel { arrival_rate: 0.5, mean_service_secs: 20.0 };
        let c = m.slots_for(5.0).unwrap();
        assert!(m.wait_quantile(c, 0.95).unwrap() <= 5.0);
        assert!(m.wait_quantile(c - 1, 0.95).is_none_or(|w| w > 5.0));
    }

    #[test]
    fn occupancy_is_a_half_open_step_function() {
        let spans = [span(0, Some(10)), span(5, Some(15)), span(10, Some(20)), span(30, None), span(-5, Some(2))];
        let o = Occupancy::of(&spans, at(0), at(40));
        // [0,2): the early span and the first = 2; [2,5): 1; [5,15): 2 (one ends at 10 as
        // another starts); [15,20): 1; [20,30): 0; [30,40): 1.
        assert_eq!(o.steps(), &[(at(0), 2), (at(2), 1), (at(5), 2), (at(15), 1), (at(20), 0), (at(30), 1)]);
        assert_eq!(o.peak(), 2);
        assert_eq!(o.level_at(at(10)), 2);
        assert_eq!(o.level_at(at(25)), 0);
        assert_eq!(o.level_at(at(40)), 0, "the window is half-open");
        assert_eq!(o.busy_time(), TimeDelta::seconds(30));
        // Busy time: level 2 for 12 s, level 1 for 18 s.
        assert_eq!(o.busy_percentile(50.0), 1);
        assert_eq!(o.busy_percentile(60.0), 1);
        assert_eq!(o.busy_percentile(61.0), 2);
        assert_eq!(o.busy_percentile(95.0), 2);
        assert_eq!(Occupancy::of(&[], at(0), at(10)).busy_percentile(95.0), 0);
        assert_eq!(Occupancy::of(&[], at(0), at(10)).steps(), &[(at(0), 0)]);
    }

    #[test]
    fn daily_peaks_count_levels_carried_over_midnight() {
        let day = 86_400;
        let spans = [span(day - 10, Some(day + 10)), span(100, Some(200)), span(150, Some(160))];
        let o = Occupancy::of(&spans, at(0), at(3 * day));
        let peaks: Vec<u32> = o.daily_peaks().into_values().collect();
        assert_eq!(peaks, vec![2, 1, 0]);
    }

    #[test]
    fn saturation_needs_full_slots_and_a_backlog() {
        // Two slots. Demand: 3 jobs over [0,10), 1 over [10,20). Running: 2 over [0,8),
        // 1 over [8,20). Full with a backlog only during [0,8).
        let demand = Occupancy::of(&[span(0, Some(10)), span(0, Some(10)), span(0, Some(20))], at(0), at(30));
        let running = Occupancy::of(&[span(0, Some(8)), span(0, Some(20))], at(0), at(30));
        assert_eq!(saturated_time(&demand, &running, 2), TimeDelta::seconds(8));
        assert_eq!(saturated_time(&demand, &running, 3), TimeDelta::zero(), "never 3 in flight");
        assert_eq!(saturated_time(&demand, &running, 0), TimeDelta::zero());
        // A backlog held back by per-user caps while slots are free is not saturation.
        let capped = Occupancy::of(&[span(0, Some(10))], at(0), at(30));
        assert_eq!(saturated_time(&demand, &capped, 2), TimeDelta::zero());
    }

    #[test]
    fn busy_rate_is_the_median_of_daily_busiest_windows() {
        let hour = TimeDelta::hours(1);
        let mut arrivals = Vec::new();
        // Day 0: 100 arrivals in a burst straddling 10:00; day 1: 50; day 2: 10.
        for i in 0..100 {
            arrivals.push(at(9 * 3600 + 1800 + i * 30));
        }
        for i in 0..50 {
            arrivals.push(at(86_400 + i * 60));
        }
        for i in 0..10 {
            arrivals.push(at(2 * 86_400 + i * 600));
        }
        assert!((busy_arrival_rate(&arrivals, hour) - 50.0 / 3600.0).abs() < 1e-12);
        assert_eq!(busy_arrival_rate(&[], hour), 0.0);
        assert!((busy_arrival_rate(&arrivals[..100], hour) - 100.0 / 3600.0).abs() < 1e-12, "sliding window");
    }

    #[test]
    fn the_seed_scenario_of_a_hundred_users_recommends_500_dollars_for_30_slots() {
        // About 100 users over a week: quiet nights, a busy afternoon and an evening peak.
        // Jobs hold a slot for 20 s on average; the evening peak hour brings 1.1 jobs a second
        // (22 Erlangs), which shows up as 20 to 30 jobs at once.
        let rate = |hour: u32| match hour {
            0..=7 => 0.01,
            8..=15 => 0.25,
            16..=18 => 0.6,
            19 => 1.1,
            20..=21 => 0.6,
            _ => 0.1,
        };
        let (jobs, slots) = synthetic(7, 20.0, rate, 0x5EED);
        let now = t0() + TimeDelta::days(7);
        let settings = PlannerSettings { history_days: 7, ..PlannerSettings::default() };
        let current = CurrentCapacity { accounts: 1, slots: 20 };
        let plan = plan(&jobs, &slots, current, &ConcurrencyTiers::default(), &settings, now);

        assert!((plan.mean_service_secs - 20.0).abs() < 1.0, "{}", plan.mean_service_secs);
        assert!((plan.busy_arrival_rate - 1.1).abs() < 0.08, "{}", plan.busy_arrival_rate);
        // Over the busy hours demand sits between 20 and 30 jobs at once.
        assert!((18..=26).contains(&plan.demand.p50), "{:?}", plan.demand);
        assert!((26..=34).contains(&plan.demand.p95), "{:?}", plan.demand);
        assert!(plan.demand.peak >= plan.demand.p95 && plan.demand.peak <= 50, "{:?}", plan.demand);
        assert_eq!(limits(&plan), vec![2, 10, 20, 30, 40, plan.options[5].limit]);
        assert_eq!(recommended(&plan), (Some(Money::from_dollars(500)), 30));
        // 20 slots cannot drain 22 Erlangs; 30 keep the p95 wait within seconds.
        assert_eq!(plan.options[2].p95_wait_secs, None);
        assert!(plan.options[3].p95_wait_secs.unwrap() < 5.0, "{:?}", plan.options[3]);
        assert_eq!(plan.predicted_wait_now_secs, None, "the current 20 slots would not keep up");
        assert_eq!(plan.options[2].accounts_needed, Some(2), "or two accounts at $100");
        let enterprise = &plan.options[5];
        assert_eq!(enterprise.min_window_sum, None);
        assert!((23..=30).contains(&enterprise.limit), "{enterprise:?}");
        assert!(enterprise.meets_target);
    }

    #[test]
    fn a_light_load_needs_only_the_first_tier_and_an_idle_one_nothing() {
        // 0.15 jobs a second for 20 s: 3 Erlangs all day.
        let (jobs, slots) = synthetic(3, 20.0, |_| 0.15, 7);
        let now = t0() + TimeDelta::days(3);
        let settings = PlannerSettings { history_days: 3, ..PlannerSettings::default() };
        let current = CurrentCapacity { accounts: 1, slots: 2 };
        let plan = plan(&jobs, &slots, current, &ConcurrencyTiers::default(), &settings, now);
        assert_eq!(recommended(&plan), (Some(Money::from_dollars(10)), 10));
        assert_eq!(plan.options[0].p95_wait_secs, None, "2 slots cannot take 3 Erlangs");

        // A job every ten minutes: the two slots of a new account are plenty.
        let (jobs, slots) = synthetic(3, 20.0, |_| 1.0 / 600.0, 11);
        let plan = super::plan(&jobs, &slots, current, &ConcurrencyTiers::default(), &settings, now);
        assert_eq!(recommended(&plan), (Some(Money::ZERO), 2));
    }

    #[test]
    fn a_load_beyond_the_top_tier_asks_for_enterprise_or_more_accounts() {
        // 2.5 jobs a second for 20 s: 50 Erlangs, more than 40 slots can take.
        let (jobs, slots) = synthetic(2, 20.0, |_| 2.5, 3);
        let now = t0() + TimeDelta::days(2);
        let settings = PlannerSettings { history_days: 2, ..PlannerSettings::default() };
        let one = CurrentCapacity { accounts: 1, slots: 40 };
        let plan_one = plan(&jobs, &slots, one, &ConcurrencyTiers::default(), &settings, now);
        let Recommendation::Enterprise { slots_per_account } = plan_one.recommendation else {
            panic!("{:?}", plan_one.recommendation)
        };
        assert!((51..=62).contains(&slots_per_account), "{slots_per_account}");
        assert_eq!(plan_one.options[4].accounts_needed, Some(2), "two accounts at $1000");
        assert_eq!(plan_one.options[3].accounts_needed, Some(2), "or two at $500");

        // With two accounts the $500 tier (60 slots) is enough.
        let two = CurrentCapacity { accounts: 2, slots: 80 };
        let plan_two = plan(&jobs, &slots, two, &ConcurrencyTiers::default(), &settings, now);
        assert_eq!(recommended(&plan_two), (Some(Money::from_dollars(500)), 30));
        assert_eq!(plan_two.options[3].slots, 60);
    }

    #[test]
    fn no_history_means_no_recommendation() {
        let settings = PlannerSettings::default();
        let current = CurrentCapacity { accounts: 1, slots: 2 };
        let plan = plan(&[], &[], current, &ConcurrencyTiers::default(), &settings, at(0));
        assert_eq!(plan.recommendation, Recommendation::NoData);
        assert_eq!(plan.observed_wait, None);
        assert_eq!(plan.demand, Concurrency::default());
    }

    #[test]
    fn observed_waits_and_service_per_model_come_from_the_history() {
        let job = |model: &str, enq: i64, claim: i64, end: i64| PlannerJob {
            model: ModelId::new(model),
            enqueued_at: at(enq),
            first_claimed_at: Some(at(claim)),
            finished_at: Some(at(end)),
            slot_time: TimeDelta::seconds(end - claim),
        };
        let jobs = [job("a", 0, 0, 10), job("a", 1, 5, 35), job("b", 2, 10, 70), job("b", 3, 12, 72)];
        let slots: Vec<Span> =
            jobs.iter().map(|j| Span { start: j.first_claimed_at.unwrap(), end: j.finished_at }).collect();
        let settings = PlannerSettings { history_days: 1, ..PlannerSettings::default() };
        let plan = plan(
            &jobs,
            &slots,
            CurrentCapacity { accounts: 1, slots: 2 },
            &ConcurrencyTiers::default(),
            &settings,
            at(3600),
        );
        assert_eq!(plan.arrivals, 4);
        assert_eq!(plan.observed_wait, Some(WaitStats { jobs: 4, p50: 4.0, p95: 9.0, max: 9.0 }));
        assert!((plan.mean_service_secs - (10.0 + 30.0 + 60.0 + 60.0) / 4.0).abs() < 1e-9);
        let models: Vec<(&str, u64, f64, f64)> =
            plan.models.iter().map(|m| (m.model.as_str(), m.jobs, m.mean_secs, m.p95_secs)).collect();
        assert_eq!(models, vec![("a", 2, 20.0, 30.0), ("b", 2, 60.0, 60.0)]);
        // Demand: 1 at [0,1), 2 at [1,2), 3 at [2,3), 4 at [3,10), 3 at [10,35), 2 at [35,70),
        // 1 at [70,72), then nothing for the rest of the busy hour [0, 3600): 98 % of it idle.
        assert_eq!(plan.demand, Concurrency { p50: 0, p95: 0, peak: 4 });
        assert_eq!(plan.in_flight.peak, 3, "the first slot frees at 10 s, before the fourth job starts at 12 s");
        assert!((plan.busy_arrival_rate - 4.0 / 3600.0).abs() < 1e-12);
    }
}
