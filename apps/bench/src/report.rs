//! The results: one JSON document, a table for the terminal, and the product's performance
//! targets checked (reported, never asserted).

use crate::analysis::StrategyFigures;
use crate::chart::Legend;
use crate::claims::ClaimFigures;
use crate::memory::MemoryFigures;
use crate::rig::Account;
use serde::Serialize;
use std::fmt::Write as _;

/// Everything one run of the bench measured, as written to `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// `full` or `smoke`.
    pub mode: String,
    /// Seed of the workloads.
    pub seed: u64,
    /// How the bots were set up.
    pub setup: Setup,
    /// Per workload, every strategy's figures.
    pub workloads: Vec<WorkloadResults>,
    /// Peak memory of the bot with a full queue (`None` when left out with `--only`).
    pub memory: Option<MemoryFigures>,
    /// PostgreSQL claim throughput, with 1 and 4 claimers.
    pub claims: Vec<ClaimFigures>,
    /// The performance targets, met or not, with what limits them.
    pub targets: Vec<Target>,
    /// The burst chart and what its lines mean (`None` when the burst was left out).
    pub chart: Option<Legend>,
    /// Real seconds the whole bench took.
    pub elapsed_secs: f64,
    /// `/proc/loadavg` at the start and the end: other work on the machine skews every
    /// real-time figure.
    pub load_average: (String, String),
}

/// The fixed choices behind the figures.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// mediagen's fal accounts.
    pub mediagen_accounts: Vec<Account>,
    /// The simple bot's account.
    pub baseline_accounts: Vec<Account>,
    /// `EngineConfig::overhang` used.
    pub overhang: u32,
    /// In-flight cap per user of the `mediagen` strategy (`mediagen-nocap`: none).
    pub max_in_flight_per_user: u32,
    /// Notes on method.
    pub notes: Vec<String>,
}

/// One workload's results.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadResults {
    /// `day`, `burst` or `heavy`.
    pub key: String,
    /// What it is.
    pub description: String,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    /// Requests.
    pub jobs: usize,
    /// Users.
    pub users: usize,
    /// Users counted as light.
    pub light_users: usize,
    /// One entry per strategy.
    pub strategies: Vec<StrategyFigures>,
}

impl WorkloadResults {
    /// The figures of `strategy`, when it ran.
    pub fn strategy(&self, strategy: &str) -> Option<&StrategyFigures> {
        self.strategies.iter().find(|s| s.strategy == strategy)
    }
}

/// One performance target.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is measured.
    pub name: String,
    /// The goal.
    pub goal: String,
    /// What the bench got.
    pub value: String,
    /// Whether the goal was met.
    pub met: bool,
    /// Why, when it was not (or what it depends on).
    pub note: String,
}

/// Checks the performance targets against `results`.
pub fn targets(
    workloads: &[WorkloadResults],
    memory: Option<&MemoryFigures>,
    claims: &[ClaimFigures],
    overhang: u32,
) -> Vec<Target> {
    let find = |key: &str| workloads.iter().find(|w| w.key == key);
    let mut out = Vec::new();
    if let Some(burst) = find("burst")
        && let Some(ours) = burst.strategy("mediagen")
    {
        let util = ours.utilization_during_backlog.unwrap_or(0.0);
        out.push(Target {
            name: "slot utilization during backlog (burst, mediagen)".into(),
            goal: ">= 0.97".into(),
            value: format!("{util:.3}"),
            met: util >= 0.97,
            note: format!(
                "a slot freed at fal is seen at the adapter's next status poll (0.5 s growing to 5 s, simulated); \
                 meanwhile only the {overhang} jobs per account parked in fal's queue (overhang) can take it",
                overhang = overhang
            ),
        });
        let baseline = burst.strategy("baseline").map_or(String::new(), |b| {
            format!(
                "; the baseline, whose slots never idle at fal, gets {:.3} and makespan {:.1} s against our {:.1} s",
                b.makespan_over_bound, b.makespan_s, ours.makespan_s
            )
        });
        out.push(Target {
            name: "burst makespan / lower bound (mediagen)".into(),
            goal: "<= 1.05".into(),
            value: format!("{:.3}", ours.makespan_over_bound),
            met: ours.makespan_over_bound <= 1.05,
            note: format!(
                "the bound assumes the work splits evenly to the end; in fact the last runs (up to 8 s) start one by \
                 one as the queue empties, and each result is seen at the next poll and then downloaded{baseline}"
            ),
        });
    }
    if let Some(heavy) = find("heavy")
        && let (Some(ours), Some(base)) = (heavy.strategy("mediagen"), heavy.strategy("baseline"))
    {
        let ratio = if base.light_wait.p95 > 0.0 { ours.light_wait.p95 / base.light_wait.p95 } else { f64::INFINITY };
        out.push(Target {
            name: "light users' p95 wait, heavy workload: mediagen / baseline".into(),
            goal: "<= 0.20".into(),
            value: format!("{ratio:.3} ({:.2} s vs {:.2} s)", ours.light_wait.p95, base.light_wait.p95),
            met: ratio <= 0.2,
            note: match heavy.strategy("mediagen-nocap") {
                Some(nocap) => format!(
                    "from the per-user in-flight cap: without it (mediagen-nocap) the heavy user fills every slot \
                     first and light users wait {:.2} s at p95 (fal does not preempt)",
                    nocap.light_wait.p95
                ),
                None => String::new(),
            },
        });
    }
    let mut worst: Option<(String, u32, u32)> = None;
    let mut all_within = true;
    for w in workloads {
        for s in &w.strategies {
            for a in &s.accounts {
                all_within &= a.within_limit;
                if worst.as_ref().is_none_or(|(_, m, l)| a.max_in_progress * l > m * a.limit) {
                    worst = Some((format!("{}/{}/{}", w.key, s.strategy, a.name), a.max_in_progress, a.limit));
                }
            }
        }
    }
    out.push(Target {
        name: "never above an account's limit (every run, every account)".into(),
        goal: "max concurrency <= limit".into(),
        value: worst.map_or("no runs".into(), |(at, m, l)| format!("highest {m}/{l} ({at})")),
        met: all_within,
        note: "observed by the simulator, which counts IN_PROGRESS requests per account".into(),
    });
    let cpu: Vec<(String, f64)> = workloads
        .iter()
        .flat_map(|w| {
            w.strategies
                .iter()
                .filter(|s| s.strategy.starts_with("mediagen"))
                .map(move |s| (format!("{} {}", w.key, s.strategy), s.cpu_ms_per_job))
        })
        .collect();
    if !cpu.is_empty() {
        let worst = cpu.iter().map(|(_, ms)| *ms).fold(0.0, f64::max);
        let listed: Vec<String> = cpu.iter().map(|(at, ms)| format!("{at} {ms:.2}")).collect();
        out.push(Target {
            name: "engine CPU per job (mediagen, every workload)".into(),
            goal: "< 1 ms".into(),
            value: format!("{} ms", listed.join(", ")),
            met: worst < 1.0,
            note: "CPU of the bot's threads: per job about 10 storage calls (sqlx, several statements each) and \
                   about 10 HTTP calls to fal (submit, status polls, result, download; the baseline's HTTP alone \
                   costs about 1 ms/job); on the day, time-driven work (a claim round every dispatch tick, account \
                   refreshes, rescues) adds as much again per job at 2,000 jobs a day"
                .into(),
        });
    }
    if let Some(memory) = memory {
        out.push(Target {
            name: format!("peak RSS with {} queued jobs", memory.submitted),
            goal: "< 64 MB".into(),
            value: format!("{:.1} MiB ({} still queued)", memory.peak_rss_mib, memory.queued_at_measure),
            met: memory.peak_rss_mib < 64.0,
            note: "VmHWM of a process running only the bot (engine, PgStore pool, fal adapter)".into(),
        });
    }
    for claim in claims.iter().filter(|c| c.batch == crate::claims::DEFAULT_BATCH) {
        out.push(Target {
            name: format!("PostgreSQL claim throughput, {} claimer(s), batches of {}", claim.claimers, claim.batch),
            goal: ">= 2000 jobs/s".into(),
            value: format!("{:.0} jobs/s", claim.jobs_per_sec),
            met: claim.jobs_per_sec >= 2000.0,
            note: format!(
                "{} jobs queued at the start; every claim ranks the whole queued set (a window over all queued jobs) \
                 and all claims serialize on one advisory lock, so more claimers do not help; a larger batch \
                 amortizes the ranking{}",
                claim.queued,
                claims.iter().find(|c| c.batch != claim.batch && c.claimers == claim.claimers).map_or(
                    String::new(),
                    |c| format!(" ({} jobs/s with batches of {})", c.jobs_per_sec.round(), c.batch)
                )
            ),
        });
    }
    out
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The table printed on stdout.
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<15} {:>5} {:>5} {:>8} {:>8} {:>5} {:>5} {:>19} {:>19} {:>5} {:<22} {:>7} {:>6}",
        "load",
        "strategy",
        "jobs",
        "ok",
        "makespan",
        "bound",
        "ratio",
        "util",
        "wait p50/p95/max",
        "light p50/p95/max",
        "jain",
        "max conc/limit",
        "cpu ms",
        "db/job"
    );
    for w in &results.workloads {
        for s in &w.strategies {
            let conc: Vec<String> = s.accounts.iter().map(|a| format!("{}/{}", a.max_in_progress, a.limit)).collect();
            let q = |x: &crate::analysis::WaitSummary| format!("{:.1}/{:.1}/{:.1}", x.p50, x.p95, x.max);
            let _ = writeln!(
                out,
                "{:<6} {:<15} {:>5} {:>5} {:>8.1} {:>8.1} {:>5.2} {:>5} {:>19} {:>19} {:>5.2} {:<22} {:>7.3} {:>6}",
                w.key,
                s.strategy,
                s.jobs,
                s.succeeded,
                s.makespan_s,
                s.lower_bound_s,
                s.makespan_over_bound,
                opt(s.utilization_during_backlog, 2),
                q(&s.wait),
                q(&s.light_wait),
                s.jain_fairness,
                conc.join(" "),
                s.cpu_ms_per_job,
                opt(s.db_calls_per_job, 1),
            );
        }
    }
    for w in results.workloads.iter().filter(|w| w.time_scale >= 100.0) {
        for s in &w.strategies {
            let r = &s.wait_real_ms;
            let _ = writeln!(
                out,
                "{} {}: wait in real time p50/p95/max {:.1}/{:.1}/{:.1} ms (at x{} every real ms is {} simulated ms)",
                w.key, s.strategy, r.p50, r.p95, r.max, w.time_scale, w.time_scale
            );
        }
    }
    let _ = writeln!(out, "load average at start / end: {} / {}", results.load_average.0, results.load_average.1);
    let _ = writeln!(out, "times in simulated seconds; time scale: {}", {
        let scales: Vec<String> = results.workloads.iter().map(|w| format!("{} x{}", w.key, w.time_scale)).collect();
        scales.join(", ")
    });
    if let Some(m) = &results.memory {
        let _ = writeln!(
            out,
            "memory: peak RSS {:.1} MiB, RSS {:.1} MiB with {} jobs submitted ({} still queued); {:.1} MiB at start; \
             intake {:.0} jobs/s",
            m.peak_rss_mib, m.rss_mib, m.submitted, m.queued_at_measure, m.rss_at_start_mib, m.intake_per_sec
        );
    }
    for c in &results.claims {
        let _ = writeln!(
            out,
            "claims: {} claimer(s): {:.0} jobs/s ({} jobs in {:.2} s, {} calls of up to {}); enqueue {:.0} jobs/s",
            c.claimers, c.jobs_per_sec, c.queued, c.seconds, c.calls, c.batch, c.enqueue_per_sec
        );
    }
    let _ = writeln!(out, "targets:");
    for t in &results.targets {
        let _ = writeln!(out, "  [{}] {}: {} (goal {})", if t.met { "met" } else { "MISSED" }, t.name, t.value, t.goal);
    }
    if let Some(chart) = &results.chart {
        let _ = writeln!(out, "chart: {}", chart.path);
        for (panel, lines) in &chart.panels {
            let lines: Vec<String> = lines.iter().map(|(color, meaning)| format!("{color} = {meaning}")).collect();
            let _ = writeln!(out, "  {panel}: {}", lines.join("; "));
        }
    }
    out
}
