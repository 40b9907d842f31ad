//! The live status line, and the peaks the report checks: samples our database (jobs per
//! state, in flight per account, charges) and the simulator (running and waiting per
//! account) every 100 ms.

use crate::options::StatusMode;
use crate::queries;
use crate::stack::AccountLimit;
use mediagen_domain::Money;
use mediagen_fal_sim::SimHandle;
use mediagen_stack::Store;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

const SAMPLE_EVERY: Duration = Duration::from_millis(100);
const IN_PLACE_EVERY: Duration = Duration::from_millis(250);
const LINE_EVERY: Duration = Duration::from_secs(3);

/// One look at the database and the simulator.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Jobs waiting in our queue.
    pub queued: u32,
    /// Jobs in dispatching, submitted or running, per account (our database).
    pub in_flight: BTreeMap<String, u32>,
    /// Jobs running at fal, per account (the simulator).
    pub fal_running: BTreeMap<String, u32>,
    /// Jobs waiting in fal's own queue, per account (the simulator).
    pub fal_waiting: BTreeMap<String, u32>,
    /// Accounts the bot has locked.
    pub locked: Vec<String>,
    /// Jobs succeeded.
    pub done: u32,
    /// Jobs failed or canceled.
    pub failed: u32,
    /// What users were charged.
    pub spend: Money,
}

/// The highest values seen per account over the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peak {
    /// Jobs in flight in our database at once.
    pub in_flight: u32,
    /// Jobs at fal at once, running or waiting in fal's queue.
    pub held_at_fal: u32,
}

/// Reads one sample; `None` when the database does not answer (the line then shows the last one).
pub async fn sample(store: &Store, fal: &SimHandle) -> Option<Sample> {
    let counts = queries::job_counts(store).await.ok()?;
    let in_flight = store.ports().queue.in_flight_by_account().await.ok()?;
    let spend = queries::charged(store).await.ok()?;
    let locked = queries::locked_accounts(store).await.ok()?;
    let jobs = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let mut sample = Sample {
        queued: jobs(counts.queued),
        done: jobs(counts.succeeded),
        failed: jobs(counts.failed + counts.canceled),
        spend,
        locked: locked.into_iter().map(|id| id.as_str().to_owned()).collect(),
        ..Sample::default()
    };
    for (account, jobs) in in_flight {
        *sample.in_flight.entry(account.as_str().to_owned()).or_default() += jobs;
    }
    for account in fal.accounts() {
        sample.fal_running.insert(account.name.clone(), account.in_progress);
        sample.fal_waiting.insert(account.name, account.queued);
    }
    Some(sample)
}

/// The status line: `12.4s │ queued 41 │ alpha 11/10 (fal 10) │ … │ done 87 │ failed 2 │ spend $3.3930`:
/// in flight per account in our database against its limit, and running at fal.
pub fn line(elapsed: Duration, sample: &Sample, limits: &[AccountLimit]) -> String {
    let mut parts = vec![format!("{:>5.1}s", elapsed.as_secs_f64()), format!("queued {:>3}", sample.queued)];
    for limit in limits {
        let name = limit.account.name;
        let get = |map: &BTreeMap<String, u32>| map.get(name).copied().unwrap_or(0);
        let mut part =
            format!("{name} {:>2}/{} (fal {:>2})", get(&sample.in_flight), limit.limit, get(&sample.fal_running));
        if sample.locked.iter().any(|l| l == name) {
            part.push_str(" LOCKED");
        }
        parts.push(part);
    }
    parts.push(format!("done {:>3}", sample.done));
    parts.push(format!("failed {:>2}", sample.failed));
    parts.push(format!("spend {}", sample.spend));
    parts.join(" │ ")
}

/// Samples until `stop`, printing the status line as `mode` says; returns the peaks.
pub async fn monitor(
    store: Store,
    fal: SimHandle,
    limits: Vec<AccountLimit>,
    mode: StatusMode,
    started: Instant,
    mut stop: watch::Receiver<bool>,
) -> BTreeMap<String, Peak> {
    let mode = mode.resolve();
    let mut peaks: BTreeMap<String, Peak> = BTreeMap::new();
    let mut last = Sample::default();
    let mut printed: Option<Instant> = None;
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if let Some(sample) = sample(&store, &fal).await {
            for limit in &limits {
                let name = limit.account.name;
                let get = |map: &BTreeMap<String, u32>| map.get(name).copied().unwrap_or(0);
                let peak = peaks.entry(name.to_owned()).or_default();
                peak.in_flight = peak.in_flight.max(get(&sample.in_flight));
                peak.held_at_fal = peak.held_at_fal.max(get(&sample.fal_running) + get(&sample.fal_waiting));
            }
            last = sample;
        }
        let every = if mode == StatusMode::InPlace { IN_PLACE_EVERY } else { LINE_EVERY };
        let due = printed.is_none_or(|at| at.elapsed() >= every) || stopping;
        if due && mode != StatusMode::Off {
            let text = line(started.elapsed(), &last, &limits);
            let mut out = std::io::stdout().lock();
            let _ = if mode == StatusMode::InPlace {
                write!(out, "\r\x1b[2K{text}{}", if stopping { "\n" } else { "" })
            } else {
                writeln!(out, "{text}")
            };
            let _ = out.flush();
            printed = Some(Instant::now());
        }
        if stopping {
            return peaks;
        }
    }
}
