#![doc = include_str!("../README.md")]

mod analysis;
mod baseline;
mod chart;
mod claims;
mod counting;
mod memory;
mod ours;
mod proc_stats;
mod recorder;
mod report;
mod rig;
mod workload;

pub use memory::probe as probe_memory;
pub use report::Results;

use anyhow::Context;
use rig::{BASELINE, OURS, RunOutput, Sim, Strategy, finish_run, on_counted_runtime};
use std::path::PathBuf;
use std::time::Instant;
use workload::{Sizes, Workload};

/// How to run the bench.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tiny workloads (a few dozen jobs, seconds) instead of the full ones.
    pub smoke: bool,
    /// Where `results.json` and `burst.png` go (created if missing).
    pub out_dir: PathBuf,
    /// Seed of the workloads.
    pub seed: u64,
    /// This binary, run again as `probe-memory` to measure memory in a process of its own.
    pub probe_exe: PathBuf,
    /// Run only these parts; empty runs everything.
    pub only: Vec<Part>,
    /// `EngineConfig::overhang` of the mediagen runs.
    pub overhang: u32,
}

/// The overhang the bench runs with unless told otherwise.
pub const DEFAULT_OVERHANG: u32 = ours::OVERHANG;

/// A part of the bench, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// (a) The steady day.
    Day,
    /// (b) The burst, and its chart.
    Burst,
    /// (c) The heavy user.
    Heavy,
    /// Peak memory with 10,000 queued jobs.
    Memory,
    /// PostgreSQL claim throughput.
    Claims,
}

/// Per-user in-flight cap of the `mediagen` strategy: the shipped `pro` plan's.
const MAX_IN_FLIGHT: u32 = 5;
/// Sampling step of the chart, simulated seconds.
const CHART_STEP: f64 = 0.1;

/// Runs every workload with every strategy, the memory probe and the claim benchmark
/// (or only the parts in `options.only`); writes `results.json`, `burst.png` and the
/// per-request timelines into `options.out_dir`.
///
/// # Errors
/// When PostgreSQL or the simulator cannot be reached, a run does not finish, or the
/// output cannot be written.
pub fn run(options: &Options) -> anyhow::Result<Results> {
    let started = Instant::now();
    let load_at_start = load_average();
    let sizes = if options.smoke { Sizes::SMOKE } else { Sizes::FULL };
    let wanted = |part: Part| options.only.is_empty() || options.only.contains(&part);
    std::fs::create_dir_all(&options.out_dir).with_context(|| format!("create {}", options.out_dir.display()))?;
    let sim_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("fal-sim").enable_all().build()?;

    let mut played: Vec<(Workload, Vec<RunOutput>)> = Vec::new();
    if wanted(Part::Day) {
        let day = workload::day(&sizes, options.seed);
        eprintln!("bench: {} (both strategies at once)", day.description);
        let runs = std::thread::scope(|scope| {
            let baseline = scope.spawn(|| run_baseline(&sim_runtime, &day));
            let ours = run_ours(&sim_runtime, &day, Strategy::Mediagen, options.overhang);
            let baseline = baseline.join().map_err(|_| anyhow::anyhow!("the baseline thread panicked"))?;
            anyhow::Ok(vec![baseline?, ours?])
        })?;
        played.push((day, runs));
    }
    let mut chart = None;
    if wanted(Part::Burst) {
        let burst = workload::burst(&sizes, options.seed);
        eprintln!("bench: {}", burst.description);
        let runs = vec![
            run_baseline(&sim_runtime, &burst)?,
            run_ours(&sim_runtime, &burst, Strategy::Mediagen, options.overhang)?,
        ];
        chart = Some(burst_chart(options, &burst, &runs)?);
        played.push((burst, runs));
    }
    if wanted(Part::Heavy) {
        let heavy = workload::heavy(&sizes, options.seed);
        eprintln!("bench: {}", heavy.description);
        let runs = vec![
            run_baseline(&sim_runtime, &heavy)?,
            run_ours(&sim_runtime, &heavy, Strategy::Mediagen, options.overhang)?,
            run_ours(&sim_runtime, &heavy, Strategy::MediagenNoCap, options.overhang)?,
        ];
        played.push((heavy, runs));
    }
    for (workload, runs) in &played {
        write_timelines(options, workload, runs)?;
    }
    let workloads: Vec<report::WorkloadResults> = played.iter().map(|(w, r)| summarize(w, r)).collect();

    let mut memory = None;
    if wanted(Part::Memory) {
        let queued = if options.smoke { 300 } else { 10_000 };
        eprintln!("bench: memory with {queued} jobs submitted");
        memory = Some(memory::measure(&options.probe_exe, &sim_runtime, queued)?);
    }
    let mut claims = Vec::new();
    if wanted(Part::Claims) {
        let claim_jobs = if options.smoke { 400 } else { 5_000 };
        // The engine's batch with 1 and 4 claimers, then a larger batch for comparison.
        for (claimers, batch) in [(1, claims::DEFAULT_BATCH), (4, claims::DEFAULT_BATCH), (1, 64)] {
            eprintln!("bench: claim throughput, {claimers} claimer(s), batches of {batch}, {claim_jobs} jobs");
            claims.push(claims::measure(claim_jobs, claimers, batch)?);
        }
    }
    sim_runtime.shutdown_timeout(std::time::Duration::from_secs(2));

    let targets = report::targets(&workloads, memory.as_ref(), &claims, options.overhang);
    let results = Results {
        mode: if options.smoke { "smoke" } else { "full" }.to_owned(),
        seed: options.seed,
        setup: report::Setup {
            mediagen_accounts: OURS.to_vec(),
            baseline_accounts: BASELINE.to_vec(),
            overhang: options.overhang,
            max_in_flight_per_user: MAX_IN_FLIGHT,
            notes: notes(),
        },
        workloads,
        memory,
        claims,
        targets,
        chart,
        elapsed_secs: started.elapsed().as_secs_f64(),
        load_average: (load_at_start, load_average()),
    };
    let json = serde_json::to_string_pretty(&results)?;
    let path = options.out_dir.join("results.json");
    std::fs::write(&path, json).with_context(|| format!("write {}", path.display()))?;
    Ok(results)
}

/// The table printed after a run.
pub fn table(results: &Results) -> String {
    report::table(results)
}

fn run_baseline(sim_runtime: &tokio::runtime::Runtime, workload: &Workload) -> anyhow::Result<RunOutput> {
    let sim = Sim::start(sim_runtime, &BASELINE, workload.time_scale)?;
    let (work, base) = (workload.clone(), sim.base_url());
    let run = on_counted_runtime("bench-baseline", move |cpu| baseline::run(work, base, BASELINE[0], cpu))?;
    Ok(finish_run(Strategy::Baseline, &BASELINE, &sim, run))
}

fn run_ours(
    sim_runtime: &tokio::runtime::Runtime,
    workload: &Workload,
    strategy: Strategy,
    overhang: u32,
) -> anyhow::Result<RunOutput> {
    let sim = Sim::start(sim_runtime, &OURS, workload.time_scale)?;
    let (work, base) = (workload.clone(), sim.base_url());
    let cap = if strategy == Strategy::MediagenNoCap { 10_000 } else { MAX_IN_FLIGHT };
    let run = on_counted_runtime("bench-mediagen", move |cpu| {
        ours::run(work, base, OURS.to_vec(), ours::bench_plans(cap), overhang, cpu)
    })?;
    Ok(finish_run(strategy, &OURS, &sim, run))
}

/// Writes each run's per-request timeline to `jobs/<workload>-<strategy>.csv`.
fn write_timelines(options: &Options, workload: &Workload, runs: &[RunOutput]) -> anyhow::Result<()> {
    let dir = options.out_dir.join("jobs");
    std::fs::create_dir_all(&dir)?;
    for run in runs {
        let path = dir.join(format!("{}-{}.csv", workload.key, run.strategy.name()));
        std::fs::write(&path, analysis::csv(&analysis::timelines(run, workload.time_scale)))
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

fn summarize(workload: &Workload, runs: &[RunOutput]) -> report::WorkloadResults {
    report::WorkloadResults {
        key: workload.key.to_owned(),
        description: workload.description.clone(),
        time_scale: workload.time_scale,
        jobs: workload.arrivals.len(),
        users: workload.jobs_per_user().len(),
        light_users: workload.light_users().len(),
        strategies: runs.iter().map(|run| analysis::figures(run, workload)).collect(),
    }
}

fn burst_chart(options: &Options, burst: &Workload, runs: &[RunOutput]) -> anyhow::Result<chart::Legend> {
    let timelines: Vec<_> = runs.iter().map(|r| analysis::timelines(r, burst.time_scale)).collect();
    let until = timelines
        .iter()
        .flatten()
        .filter_map(|t| t.finished.or(t.end))
        .fold(burst.arrivals.last().map_or(1.0, |a| a.at), f64::max);
    let mut panels = Vec::new();
    // Ours first, then the baseline.
    for (run, timeline) in runs.iter().zip(&timelines).rev() {
        let names: Vec<String> = run.accounts.iter().map(|a| a.name.to_owned()).collect();
        let limits = run.accounts.iter().map(|a| (a.name.to_owned(), a.limit)).collect();
        let accounts: Vec<String> = run.accounts.iter().map(|a| format!("{} {} slots", a.name, a.limit)).collect();
        panels.push(chart::Panel {
            title: format!("{}: {}", run.strategy.name(), accounts.join(" + ")),
            series: analysis::series(timeline, &names, CHART_STEP, until),
            limits,
        });
    }
    chart::draw(
        &options.out_dir.join("burst.png"),
        &format!("burst: {} requests - waiting and running per fal account, simulated seconds", burst.arrivals.len()),
        &panels,
    )
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn notes() -> Vec<String> {
    [
        "Times are simulated seconds from the workload's start. The simulator divides service times by the time \
         scale, and so does the bench with every interval of the engine and the fal adapter (status polls, claim \
         gap, dispatch tick, account refresh, rescue, operator checks, retries), so time-driven work happens as \
         often per simulated day as in production. Not scaled: the lease (and its renewal every 40 s), which \
         guards against real stalls, and real overheads (HTTP, SQL): at scale S, 1 ms of real overhead shows as \
         S/1000 simulated seconds.",
        "Wait = arrival at the bot to the start of the run at fal (IN_PROGRESS), from the simulator's records; \
         makespan = first arrival to the last result delivered (downloaded, for the baseline).",
        "Lower bound = max(total service time / total slots, max over jobs of arrival + own service time).",
        "Utilization = busy slot-seconds / available slot-seconds (slots x time) while there is a backlog: \
         requests waiting (in our queue or fal's) and at least as many requests present as slots, so every slot \
         could be busy. With a per-user cap, a capped heavy user's queued jobs count although the policy keeps \
         them waiting; a lone request in transit while slots idle is no backlog (it shows in the waits).",
        "Light users = users who sent at most the median number of requests per user in that workload.",
        "Jain's index over each user's mean wait: 1 = everyone waited the same; a heavy user who waits for their own \
         jobs lowers it.",
        "CPU = on-CPU time of the threads of the runtime the bot ran on (engine, sqlx, fal adapter), from \
         /proc/self/task/*/schedstat, during the workload, divided by its requests; the simulator runs on other threads.",
        "db/job = storage port calls per request through a counting decorator of the ports (a transaction such as \
         enqueue or claim is one call and several statements); JobQueue::wait_for_change is left out (it waits on \
         LISTEN and sends nothing).",
        "The baseline gets one account with the same 30 slots in total, so differences come from the queueing \
         policy and our overhead, not from capacity; a simple bot on the $100 account alone would have 20.",
        "The day runs both strategies at the same time (each its own simulator and runtime) to keep the bench short.",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}
