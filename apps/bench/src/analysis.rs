//! From raw instants to the figures: every time in simulated seconds from the workload's
//! start, fal's side (start and end of each run) taken from the simulator's records.

use crate::counting::WAIT_FOR_CHANGE;
use crate::rig::{RunOutput, slots};
use crate::workload::{Workload, index_from_prompt};
use mediagen_fal_sim::{OutcomeKind, RequestRecord};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// One request on the simulated clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Who sent it.
    pub user: i64,
    /// When it reached the bot.
    pub arrival: f64,
    /// When fal started running it (it held a slot from here).
    pub start: Option<f64>,
    /// When fal finished running it.
    pub end: Option<f64>,
    /// When the user had the result (or the failure notice).
    pub finished: Option<f64>,
    /// fal's drawn service time.
    pub service: Option<f64>,
    /// The account that ran it.
    pub account: Option<String>,
    /// Delivered successfully.
    pub ok: bool,
}

/// Quantiles of a list of waits, in simulated seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WaitSummary {
    /// Jobs counted.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl WaitSummary {
    /// Quantiles of `values` (nearest rank); zeros for an empty list.
    pub fn of(values: &[f64]) -> WaitSummary {
        if values.is_empty() {
            return WaitSummary::default();
        }
        let rank = |p: f64| mediagen_domain::planner::percentile(values, p).unwrap_or(0.0);
        WaitSummary {
            count: values.len(),
            p50: rank(50.0),
            p95: rank(95.0),
            max: rank(100.0),
            mean: values.iter().sum::<f64>() / values.len() as f64,
        }
    }
}

/// One fal account's concurrency as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountFigures {
    /// Account name.
    pub name: String,
    /// Its limit.
    pub limit: u32,
    /// Most requests it ran at once.
    pub max_in_progress: u32,
    /// Requests it ran.
    pub jobs_started: u64,
    /// `max_in_progress <= limit`.
    pub within_limit: bool,
}

/// Every figure of one strategy on one workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyFigures {
    /// `baseline`, `mediagen` or `mediagen-nocap`.
    pub strategy: String,
    /// Slots over its accounts.
    pub slots: u32,
    /// Requests sent.
    pub jobs: usize,
    /// Results delivered.
    pub succeeded: usize,
    /// Ended without a result (refused, failed).
    pub failed: usize,
    /// Never ended.
    pub unfinished: usize,
    /// First arrival to last result, simulated s.
    pub makespan_s: f64,
    /// `max(total service / slots, max over jobs of arrival + service)`, simulated s.
    pub lower_bound_s: f64,
    /// `makespan / lower bound`.
    pub makespan_over_bound: f64,
    /// Simulated seconds with a backlog: requests waiting (arrived, not yet started at fal)
    /// and at least as many requests present (running or waiting) as slots.
    pub backlog_s: f64,
    /// Busy slot-seconds over available slot-seconds during that backlog (`None`: there
    /// was none).
    pub utilization_during_backlog: Option<f64>,
    /// Arrival to start at fal, every job.
    pub wait: WaitSummary,
    /// The same in real milliseconds (`wait / time scale`): what our overhead costs when
    /// nothing queues, as on the steady day.
    pub wait_real_ms: WaitSummary,
    /// The same for light users (at most the median number of requests per user).
    pub light_wait: WaitSummary,
    /// Jain's index over users' mean waits: 1 = everyone waited the same.
    pub jain_fairness: f64,
    /// Concurrency per fal account, from the simulator.
    pub accounts: Vec<AccountFigures>,
    /// CPU of the bot's threads (engine, storage and fal adapter; not the simulator or
    /// PostgreSQL) per job, milliseconds.
    pub cpu_ms_per_job: f64,
    /// Storage port calls per job (each at least one database round trip); `None` for the
    /// baseline, which has no database.
    pub db_calls_per_job: Option<f64>,
    /// Storage port calls by method over the whole run (`JobQueue::wait_for_change` only
    /// waits for a notification and is not counted in the per-job figure).
    pub db_calls: BTreeMap<String, u64>,
    /// Real seconds the run took.
    pub real_secs: f64,
}

/// Turns a run into timelines, one per arrival, in arrival order.
pub fn timelines(run: &RunOutput, time_scale: f64) -> Vec<Timeline> {
    let sim = |at: Instant| -> f64 {
        match at.checked_duration_since(run.t0) {
            Some(after) => after.as_secs_f64() * time_scale,
            None => -run.t0.duration_since(at).as_secs_f64() * time_scale,
        }
    };
    let from_ms = |ms: u64| sim(run.sim_epoch + Duration::from_millis(ms));
    let mut by_index: HashMap<usize, &RequestRecord> = HashMap::new();
    for record in &run.requests {
        let prompt = record.input.get("prompt").or_else(|| record.input.get("text")).and_then(|v| v.as_str());
        let Some(index) = prompt.and_then(index_from_prompt) else { continue };
        // A retried request has several records: the successful (else the last) one counts.
        let better = match by_index.get(&index) {
            None => true,
            Some(seen) => seen.outcome != Some(OutcomeKind::Success),
        };
        if better {
            by_index.insert(index, record);
        }
    }
    run.jobs
        .iter()
        .map(|job| {
            let record = by_index.get(&job.index);
            Timeline {
                user: job.user,
                arrival: sim(job.arrived),
                start: record.and_then(|r| r.started_ms).map(from_ms),
                end: record.and_then(|r| r.completed_ms).map(from_ms),
                finished: job.finished.map(sim),
                service: record.and_then(|r| r.service_secs),
                account: record.map(|r| r.account.clone()),
                ok: job.ok,
            }
        })
        .collect()
}

/// The timelines as CSV (one row per request, times in simulated seconds).
pub fn csv(timelines: &[Timeline]) -> String {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    let mut out = String::from("index,user,arrival,start,end,finished,service,account,ok\n");
    for (index, t) in timelines.iter().enumerate() {
        out.push_str(&format!(
            "{index},{},{:.3},{},{},{},{},{},{}\n",
            t.user,
            t.arrival,
            opt(t.start),
            opt(t.end),
            opt(t.finished),
            opt(t.service),
            t.account.as_deref().unwrap_or(""),
            t.ok
        ));
    }
    out
}

fn wait_of(t: &Timeline) -> Option<f64> {
    t.start.map(|s| (s - t.arrival).max(0.0))
}

/// Jain's index of `values`: `(Σx)² / (n·Σx²)`, 1 when all are equal (or all zero).
pub fn jain(values: &[f64]) -> f64 {
    let sum: f64 = values.iter().sum();
    let squares: f64 = values.iter().map(|x| x * x).sum();
    if values.is_empty() || squares <= f64::EPSILON {
        return 1.0;
    }
    sum * sum / (values.len() as f64 * squares)
}

/// Seconds of backlog, and the busy and available slot-seconds within it.
///
/// A request is waiting from its arrival until fal starts it (or it ends without
/// starting); a slot is busy while fal runs a request. There is a backlog while requests
/// wait and there are at least as many requests (running or waiting) as slots: then every
/// slot could be busy. A request in transit while most slots idle (no contention) is not a
/// backlog; its delay shows in the waits.
pub fn backlog(timelines: &[Timeline], slots: u32) -> Backlog {
    let slots = i64::from(slots);
    let mut events: Vec<(f64, i64, i64)> = Vec::new();
    for t in timelines {
        let left_queue = t.start.or(t.finished);
        events.push((t.arrival, 1, 0));
        if let Some(left) = left_queue {
            events.push((left.max(t.arrival), -1, 0));
        }
        if let Some(start) = t.start {
            events.push((start, 0, 1));
            if let Some(end) = t.end.or(t.finished) {
                events.push((end.max(start), 0, -1));
            }
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut waiting, mut busy) = (0i64, 0i64);
    let (mut backlog, mut busy_in_backlog, mut usable) = (0.0, 0.0, 0.0);
    let mut previous = events.first().map_or(0.0, |e| e.0);
    for (at, dw, db) in events {
        let dt = at - previous;
        if waiting > 0 && busy + waiting >= slots && dt > 0.0 {
            backlog += dt;
            busy_in_backlog += busy as f64 * dt;
            usable += slots as f64 * dt;
        }
        waiting += dw;
        busy += db;
        previous = at;
    }
    Backlog { seconds: backlog, busy: busy_in_backlog, usable }
}

/// Slot-seconds while some request waited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Seconds during which some request was waiting.
    pub seconds: f64,
    /// Busy slot-seconds in that time.
    pub busy: f64,
    /// Slot-seconds available in that time (`slots x seconds`).
    pub usable: f64,
}

/// Requests waiting (arrived, not started at fal) and running per account, sampled every
/// `step` simulated seconds from 0 to `until`.
pub fn series(timelines: &[Timeline], accounts: &[String], step: f64, until: f64) -> Series {
    let samples = (until / step).ceil() as usize + 1;
    let mut out = Series {
        times: (0..samples).map(|i| i as f64 * step).collect(),
        waiting: vec![0; samples],
        running: accounts.iter().map(|a| (a.clone(), vec![0; samples])).collect(),
    };
    for t in timelines {
        let left = t.start.or(t.finished).unwrap_or(f64::INFINITY);
        for (i, x) in out.times.iter().enumerate() {
            if t.arrival <= *x && *x < left {
                out.waiting[i] += 1;
            }
        }
        let (Some(start), Some(account)) = (t.start, &t.account) else { continue };
        let end = t.end.or(t.finished).unwrap_or(f64::INFINITY);
        if let Some((_, running)) = out.running.iter_mut().find(|(name, _)| name == account) {
            for (i, x) in out.times.iter().enumerate() {
                if start <= *x && *x < end {
                    running[i] += 1;
                }
            }
        }
    }
    out
}

/// Sampled counts over time, for the chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Sample instants, simulated seconds.
    pub times: Vec<f64>,
    /// Requests waiting (ours and fal's queue alike) at each instant.
    pub waiting: Vec<u32>,
    /// Requests running at fal, per account.
    pub running: Vec<(String, Vec<u32>)>,
}

/// All figures of `run` on `workload`.
pub fn figures(run: &RunOutput, workload: &Workload) -> StrategyFigures {
    let timelines = timelines(run, workload.time_scale);
    let slots = slots(&run.accounts);
    let light: BTreeSet<i64> = workload.light_users();
    let first_arrival = timelines.iter().map(|t| t.arrival).fold(f64::INFINITY, f64::min);
    let last_finish = timelines.iter().filter_map(|t| t.finished).fold(f64::NEG_INFINITY, f64::max);
    let makespan = (last_finish - first_arrival).max(0.0);
    let work: f64 = timelines.iter().filter_map(|t| t.service).sum();
    let critical =
        timelines.iter().filter_map(|t| t.service.map(|s| t.arrival - first_arrival + s)).fold(0.0, f64::max);
    let lower_bound = (work / f64::from(slots.max(1))).max(critical);
    let backlog = backlog(&timelines, slots);

    let waits: Vec<f64> = timelines.iter().filter_map(wait_of).collect();
    let light_waits: Vec<f64> = timelines.iter().filter(|t| light.contains(&t.user)).filter_map(wait_of).collect();
    let mut per_user: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    for t in &timelines {
        if let Some(w) = wait_of(t) {
            let entry = per_user.entry(t.user).or_insert((0.0, 0));
            entry.0 += w;
            entry.1 += 1;
        }
    }
    let user_means: Vec<f64> = per_user.values().map(|(sum, n)| sum / *n as f64).collect();

    let jobs = run.jobs.len();
    let counted: u64 = run.db_calls.iter().filter(|(m, _)| **m != WAIT_FOR_CHANGE).map(|(_, n)| n).sum();
    let per_job = |x: f64| if jobs == 0 { 0.0 } else { x / jobs as f64 };
    StrategyFigures {
        strategy: run.strategy.name().to_owned(),
        slots,
        jobs,
        succeeded: run.jobs.iter().filter(|j| j.ok).count(),
        failed: run.jobs.iter().filter(|j| !j.ok && j.finished.is_some()).count() + run.refused as usize,
        unfinished: run.jobs.iter().filter(|j| j.finished.is_none()).count().saturating_sub(run.refused as usize),
        makespan_s: makespan,
        lower_bound_s: lower_bound,
        makespan_over_bound: if lower_bound > 0.0 { makespan / lower_bound } else { 0.0 },
        backlog_s: backlog.seconds,
        utilization_during_backlog: (backlog.usable > 0.0).then(|| backlog.busy / backlog.usable),
        wait: WaitSummary::of(&waits),
        wait_real_ms: WaitSummary::of(&waits.iter().map(|w| w / workload.time_scale * 1000.0).collect::<Vec<_>>()),
        light_wait: WaitSummary::of(&light_waits),
        jain_fairness: jain(&user_means),
        accounts: run
            .fal_accounts
            .iter()
            .map(|a| AccountFigures {
                name: a.name.clone(),
                limit: a.limit,
                max_in_progress: a.max_in_progress,
                jobs_started: a.jobs_started,
                within_limit: a.max_in_progress <= a.limit,
            })
            .collect(),
        cpu_ms_per_job: per_job(run.cpu_ns as f64 / 1e6),
        db_calls_per_job: (!run.db_calls.is_empty()).then(|| per_job(counted as f64)),
        db_calls: run.db_calls.iter().map(|(m, n)| ((*m).to_owned(), *n)).collect(),
        real_secs: run.real_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(arrival: f64, start: f64, end: f64) -> Timeline {
        Timeline {
            user: 1,
            arrival,
            start: Some(start),
            end: Some(end),
            finished: Some(end),
            service: Some(end - start),
            account: Some("a".into()),
            ok: true,
        }
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let stats = WaitSummary::of(&values);
        assert_eq!((stats.p50, stats.p95, stats.max), (50.0, 95.0, 100.0));
        assert_eq!(WaitSummary::of(&[3.0]).p95, 3.0);
    }

    #[test]
    fn jain_is_one_for_equal_and_one_over_n_for_one_user_waiting() {
        assert!((jain(&[2.0, 2.0, 2.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[0.0, 0.0, 0.0, 4.0]) - 0.25).abs() < 1e-12);
        assert_eq!(jain(&[0.0, 0.0]), 1.0);
    }

    #[test]
    fn backlog_counts_busy_slots_only_while_requests_outnumber_slots() {
        // One slot: job 1 runs 0..2; job 2 arrives at 0, waits until 2, runs 2..4.
        let b = backlog(&[job(0.0, 0.0, 2.0), job(0.0, 2.0, 4.0)], 1);
        assert!((b.seconds - 2.0).abs() < 1e-12);
        assert!((b.busy - 2.0).abs() < 1e-12 && (b.usable - 2.0).abs() < 1e-12);
        // An idle gap while job 2 waits counts as available but not busy.
        let b = backlog(&[job(0.0, 0.0, 1.0), job(0.0, 2.0, 3.0)], 1);
        assert!((b.seconds - 2.0).abs() < 1e-12);
        assert!((b.busy - 1.0).abs() < 1e-12 && (b.usable - 2.0).abs() < 1e-12);
        // Ten slots and one request in transit: no contention, no backlog.
        let b = backlog(&[job(0.0, 1.0, 2.0)], 10);
        assert_eq!(b.seconds, 0.0);
    }
}
