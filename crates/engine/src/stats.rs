//! Counters of what the engine did since start, for `/stats` and logs.

use mediagen_domain::insights::{JobOutcome, JobTimes, OutcomeCount};
use mediagen_domain::{AccountId, ModelId, Timestamp};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the engine's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Enhanced prompts served from the cache (no LLM call).
    pub cache_hits: u64,
    /// Enhancements that had to call the LLM.
    pub cache_misses: u64,
    /// Enhancements that failed (the original prompt was used).
    pub enhance_failures: u64,
    /// Requests accepted into the queue.
    pub accepted: u64,
    /// Requests refused at intake.
    pub refused: u64,
    /// Submissions fal accepted.
    pub submitted: u64,
    /// Jobs delivered and charged.
    pub succeeded: u64,
    /// Jobs that ended without a result.
    pub failed: u64,
    /// Jobs canceled by their user.
    pub canceled: u64,
    /// Jobs put back in the queue to be tried again.
    pub retried: u64,
    /// Circuit breakers opened.
    pub breaker_trips: u64,
}

/// A model, the account its job was given to (none before dispatch), and how it ended.
type OutcomeKey = (ModelId, Option<AccountId>, JobOutcome);

/// The live counters behind [`EngineStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) enhance_failures: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) submitted: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) canceled: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) breaker_trips: AtomicU64,
    /// Job times of the successes this process finished, per model and account.
    pub(crate) job_times: Mutex<BTreeMap<(ModelId, AccountId), JobTimes>>,
    /// The jobs this process ended, per model, account (none before dispatch) and outcome.
    pub(crate) outcomes: Mutex<BTreeMap<OutcomeKey, u64>>,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Counts a success: enqueued at `enqueued`, accepted by fal at `submitted`, its
    /// result ready at `done`.
    pub(crate) fn observe_job(
        &self,
        model: &ModelId,
        account: &AccountId,
        enqueued: Timestamp,
        submitted: Timestamp,
        done: Timestamp,
    ) {
        let mut times = self.job_times.lock().unwrap();
        times
            .entry((model.clone(), account.clone()))
            .or_insert_with(|| JobTimes::new(model.clone(), account.clone()))
            .observe(enqueued, submitted, done);
    }

    /// Counts a job this process ended.
    pub(crate) fn count_outcome(&self, model: &ModelId, account: Option<&AccountId>, outcome: JobOutcome) {
        let counter = match outcome {
            JobOutcome::Succeeded => &self.succeeded,
            JobOutcome::Failed => &self.failed,
            JobOutcome::Canceled => &self.canceled,
        };
        bump(counter);
        *self.outcomes.lock().unwrap().entry((model.clone(), account.cloned(), outcome)).or_insert(0) += 1;
    }

    /// The ended jobs so far, ordered by model, account and outcome.
    pub(crate) fn outcomes(&self) -> Vec<OutcomeCount> {
        let outcomes = self.outcomes.lock().unwrap();
        outcomes
            .iter()
            .map(|((model, account, outcome), count)| OutcomeCount {
                model: model.clone(),
                account: account.clone(),
                outcome: *outcome,
                count: *count,
            })
            .collect()
    }

    /// The job times so far, ordered by model then account.
    pub(crate) fn job_times(&self) -> Vec<JobTimes> {
        self.job_times.lock().unwrap().values().cloned().collect()
    }

    pub(crate) fn snapshot(&self) -> EngineStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EngineStats {
            cache_hits: get(&self.cache_hits),
            cache_misses: get(&self.cache_misses),
            enhance_failures: get(&self.enhance_failures),
            accepted: get(&self.accepted),
            refused: get(&self.refused),
            submitted: get(&self.submitted),
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
            canceled: get(&self.canceled),
            retried: get(&self.retried),
            breaker_trips: get(&self.breaker_trips),
        }
    }
}
