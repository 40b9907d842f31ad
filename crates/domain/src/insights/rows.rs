//! The facts reports are made of, as the `ReportStore` port reads them from storage: plain
//! rows, so the read model that folds them stays pure.

use crate::{AccountId, JobId, ModelId, Money, Timestamp, UserId};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Money and jobs of one (day, user, model, account) group of finished jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The UTC day the jobs finished.
    pub day: NaiveDate,
    /// Who asked.
    pub user: UserId,
    /// The model.
    pub model: ModelId,
    /// The account the jobs last ran on; `None` for jobs that never left the queue.
    pub account: Option<AccountId>,
    /// Jobs finished (every terminal state).
    pub jobs: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// Of which failed.
    pub failed: u64,
    /// Of which canceled.
    pub canceled: u64,
    /// What the users were charged (`charge` ledger rows).
    pub user_charged: Money,
    /// What was given back to them (`refund` ledger rows).
    pub user_refunded: Money,
    /// What fal bills at list price, before the month's volume discount (`fal_cost` rows).
    pub fal_cost: Money,
}

/// A count for one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    /// The day.
    pub day: NaiveDate,
    /// How many.
    pub count: u64,
}

/// Jobs by current state, over every job stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobCounts {
    /// Waiting in our queue.
    pub queued: u64,
    /// Claimed, not yet accepted by fal.
    pub dispatching: u64,
    /// In fal's queue.
    pub submitted: u64,
    /// Running at fal.
    pub running: u64,
    /// Delivered.
    pub succeeded: u64,
    /// Ended without a result.
    pub failed: u64,
    /// Canceled.
    pub canceled: u64,
}

impl JobCounts {
    /// `(state name, count)` in the state machine's order, with the names `JobState::name`
    /// uses.
    pub fn by_name(&self) -> [(&'static str, u64); 7] {
        [
            ("queued", self.queued),
            ("dispatching", self.dispatching),
            ("submitted", self.submitted),
            ("running", self.running),
            ("succeeded", self.succeeded),
            ("failed", self.failed),
            ("canceled", self.canceled),
        ]
    }
}

/// When one job waited and ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTiming {
    /// The job.
    pub job: JobId,
    /// Who asked.
    pub user: UserId,
    /// The model.
    pub model: ModelId,
    /// Its state now, as `JobState::name` spells it.
    pub state: String,
    /// When it entered the queue (kept across requeues).
    pub enqueued_at: Timestamp,
    /// Its first `claimed` event, if any: the end of its first wait.
    pub first_claimed_at: Option<Timestamp>,
    /// When it became terminal, if it has.
    pub finished_at: Option<Timestamp>,
}

/// A stretch of time a job held a slot of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInterval {
    /// The job.
    pub job: JobId,
    /// The account whose slot it held.
    pub account: AccountId,
    /// The job's model.
    pub model: ModelId,
    /// The `claimed` event's instant.
    pub claimed_at: Timestamp,
    /// The instant of the job's next event that left flight; `None` while still in flight.
    pub released_at: Option<Timestamp>,
    /// The state it left flight to (`queued`, `succeeded`, `failed`, `canceled`); `None`
    /// while still in flight.
    pub released_to: Option<String>,
}
