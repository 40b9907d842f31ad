//! The reporting port: the figures operator reports, alerts, the capacity planner and the
//! metrics export are made of.
//!
//! Every method is a read; none changes anything. Periods are half-open `[from, to)` and
//! days are UTC calendar days. The contract is written for any SQL store (the PostgreSQL
//! and SQLite adapters both implement it): it names the facts each figure comes from, so
//! two adapters given the same history answer the same rows in the same order.
//!
//! # Where the facts come from
//! - A job's *finish* is the instant it became terminal (`succeeded`, `failed`, `canceled`);
//!   its settlement (`charge`, `refund`, `fal_cost` ledger rows) is written at that instant.
//! - A *request* is a submission fal accepted (the job's `submitted` event): a retried job
//!   counts once per accepted submission, as `UsageStore::request_count` counts them.
//! - A *slot interval* runs from a `claimed` event (the job takes a slot of an account) to
//!   the job's next event that leaves flight: back to the queue (`requeued`, or a rescue
//!   that requeues) or a terminal event.

use async_trait::async_trait;
use chrono::NaiveDate;
use mediagen_domain::{AccountId, JobId, ModelId, Money, Timestamp, UserId};
use serde::{Deserialize, Serialize};

use crate::storage::StorageError;

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

/// What operator reports, alerts, the capacity planner and `/metrics` read.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Jobs that finished in `[from, to)`, grouped by (UTC day of the finish, user, model,
    /// the job's account), with their settlements summed per kind.
    ///
    /// Each finished job falls in exactly one row, so summing rows over any set of days
    /// gives that period's totals. Groups without jobs are absent. Ordered by day, then
    /// user id, then model id, then account id with `None` last.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn usage_rows(&self, from: Timestamp, to: Timestamp) -> Result<Vec<UsageRow>, StorageError>;

    /// Requests sent to fal (accepted submissions, retries included) in `[from, to)`, per
    /// UTC day of the submission; days without any are absent; ordered by day. The counts
    /// over a period MUST add up to `UsageStore::request_count` of that period.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn requests_by_day(&self, from: Timestamp, to: Timestamp) -> Result<Vec<DayCount>, StorageError>;

    /// Every stored job, counted by its current state.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn job_counts(&self) -> Result<JobCounts, StorageError>;

    /// Every job whose life `[enqueued_at, finished_at)` overlaps `[from, to)` (a job not
    /// yet finished lives on): `enqueued_at < to` and (`finished_at` is `None` or
    /// `finished_at > from`). Its instants are reported as stored, even those outside the
    /// period. Ordered by `enqueued_at`, then job id.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn job_timings(&self, from: Timestamp, to: Timestamp) -> Result<Vec<JobTiming>, StorageError>;

    /// Every slot interval (see the module docs) that overlaps `[from, to)`:
    /// `claimed_at < to` and (`released_at` is `None` or `released_at > from`). A claim and
    /// its release at the same instant make an empty interval, which overlaps nothing.
    /// Ordered by `claimed_at`, then job id.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn slot_intervals(&self, from: Timestamp, to: Timestamp) -> Result<Vec<SlotInterval>, StorageError>;
}
