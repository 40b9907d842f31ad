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
use mediagen_domain::Timestamp;

pub use mediagen_domain::insights::{DayCount, JobCounts, JobTiming, SlotInterval, UsageRow};

use crate::storage::StorageError;

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
