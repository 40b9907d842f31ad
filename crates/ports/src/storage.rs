//! The storage ports: users, the durable job queue with its ledger, fal accounts,
//! the prompt cache, sent alerts, media records and usage figures.
//!
//! Split by concern so a test mocks only what it touches; one adapter (Postgres) implements
//! them all on one pool.

use crate::generation::RemoteHandle;
use async_trait::async_trait;
pub use mediagen_domain::account::{AccountLock, AccountRecord};
use mediagen_domain::credit::{CreditPurchase, CreditSpend};
use mediagen_domain::quota::{Plan, QuotaRefusal, UserUsage};
use mediagen_domain::{
    AccountId, ChatId, IdempotencyKey, Job, JobId, JobState, Language, Lease, ModelId, Money, Role, Settlement,
    Timestamp, User, UserId,
};
use serde::{Deserialize, Serialize};

/// Failures of every storage port.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be reached; the caller may tell the user to try later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The change conflicts with the row's current state (e.g. a lease taken over,
    /// an illegal state transition); the caller must re-read, not retry blindly.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A user seen for the first time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    /// Telegram user id.
    pub id: UserId,
    /// From the Telegram profile.
    pub language: Language,
    /// The plan new users start on.
    pub plan: String,
    /// Admin when listed in configuration.
    pub role: Role,
}

/// Users and their settings.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Returns the user, creating them from `new` on first contact. An existing user's
    /// settings are kept; only the role is updated (configuration decides who is admin).
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn upsert_user(&self, new: &NewUser) -> Result<User, StorageError>;

    /// The user, or `None`.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn get_user(&self, id: UserId) -> Result<Option<User>, StorageError>;

    /// Saves language, plan, role, blocked flag and settings.
    ///
    /// # Errors
    /// MUST return `NotFound` for an unknown user.
    async fn update_user(&self, user: &User) -> Result<(), StorageError>;

    /// Every user (for broadcasts and reports).
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn list_users(&self) -> Result<Vec<User>, StorageError>;
}

/// A request to put a job in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueRequest {
    /// Makes a redelivered update harmless.
    pub key: IdempotencyKey,
    /// Who asks.
    pub user: UserId,
    /// Where to answer.
    pub chat: ChatId,
    /// What is asked.
    pub spec: mediagen_domain::JobSpec,
    /// Credit to hold: the job's list price.
    pub hold: Money,
    /// The user's plan, checked inside the enqueue transaction.
    pub plan: Plan,
    /// Admins skip quotas.
    pub role: Role,
    /// When.
    pub now: Timestamp,
}

/// A job's place in our queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePosition {
    /// 1-based place among queued jobs (1 = next).
    pub position: u32,
    /// Jobs queued in total.
    pub total: u32,
}

/// What enqueue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// A new job with its hold, and where it stands.
    Enqueued(Job, QueuePosition),
    /// The key was seen before: the existing job, and no new hold.
    Duplicate(Job),
    /// Over quota: nothing was written.
    Refused(QuotaRefusal),
}

/// An account's capacity as the dispatcher sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCapacity {
    /// The account.
    pub account: AccountId,
    /// Its concurrency limit now (from the credit window or an override).
    pub limit: u32,
    /// False when locked, disabled or paused by the circuit breaker.
    pub usable: bool,
}

/// A request to claim queued jobs for dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The claiming process (owner of the leases).
    pub owner: String,
    /// The lease runs until this instant unless renewed.
    pub lease_until: Timestamp,
    /// Accounts and their limits; in-flight counts come from storage itself.
    pub accounts: Vec<AccountCapacity>,
    /// Extra jobs each account may hold in fal's own queue.
    pub overhang: u32,
    /// Upper bound on jobs claimed in one call.
    pub max_jobs: u32,
    /// In-flight cap per plan name; users on plans not listed (and admins) are uncapped.
    pub in_flight_caps: Vec<(String, u32)>,
    /// When.
    pub now: Timestamp,
}

/// A job handed to a dispatcher, now `Dispatching` on `account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    /// The job, in its new state, with the claim's lease (`job.lease`, a new epoch).
    pub job: Job,
    /// The account it must be submitted on.
    pub account: AccountId,
}

/// How a job ends, written in one transaction with its ledger entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// The lease of the task that ends the job; `None` only for a user's cancel, which
    /// may end a job whoever follows it.
    pub lease: Option<Lease>,
    /// The terminal state.
    pub state: JobState,
    /// Who pays what.
    pub settlement: Settlement,
    /// Files produced (recorded with the job).
    pub media: Vec<MediaRecord>,
    /// When.
    pub now: Timestamp,
}

/// What a finish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishOutcome {
    /// The job is now terminal and the ledger settled.
    Finished(Job),
    /// It was already terminal: nothing written, nothing charged twice.
    AlreadyFinished(Job),
}

/// What a cancel request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelResult {
    /// It was queued: now canceled and the hold refunded.
    Canceled(Job),
    /// It is at fal already; the caller cancels there and then finishes the job.
    InFlight(Job, Option<RemoteHandle>),
    /// Already finished.
    AlreadyFinished(Job),
}

/// A job whose owner's lease expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rescued {
    /// fal had accepted it: the new owner resumes polling; never resubmit.
    Resume(Job, RemoteHandle),
    /// fal had not accepted it: it is back in the queue.
    Requeued(Job),
    /// Its submit had started (`mark_submitting`) but no handle was stored: fal may have
    /// accepted it, and a resubmit could run (and bill) it twice. The new owner holds its
    /// lease and ends it (refunded) instead of resubmitting.
    SubmitUnknown(Job),
    /// It is terminal and settled, but its outcome was never confirmed delivered
    /// (`mark_delivered`): the new owner holds its lease and tells the user again, with the
    /// settlement the ledger recorded.
    Redeliver(Job, Settlement),
}

/// A produced file and where it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    /// The job.
    pub job: JobId,
    /// fal's CDN URL (expires after about a week).
    pub fal_url: String,
    /// Telegram's file id once delivered (never expires).
    pub telegram_file_id: Option<String>,
    /// Size in bytes.
    pub size_bytes: Option<u64>,
    /// MIME type.
    pub content_type: Option<String>,
}

/// The durable queue, and the ledger entries that go with its state changes.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Checks the quota, holds the credit and enqueues, in one transaction, so that two
    /// simultaneous requests of one user cannot both pass a cap of one.
    ///
    /// # Errors
    /// `Unavailable` when the database is down (nothing was written). A quota refusal
    /// is an `Ok(Refused)`, not an error. MUST return `NotFound` when the user was never
    /// stored (`upsert_user` comes first).
    async fn enqueue(&self, request: &EnqueueRequest) -> Result<EnqueueOutcome, StorageError>;

    /// Claims queued jobs under the domain's scheduling policy; never exceeds any
    /// account's limit (plus overhang), even with several processes claiming at once.
    ///
    /// # Errors
    /// `Unavailable` when the database is down; `NotFound` when a listed account was never
    /// stored (`upsert_account` comes first), and then nothing is claimed.
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, StorageError>;

    /// Records that fal accepted the job, and when (`now` starts its follow deadline).
    ///
    /// # Errors
    /// MUST return `Conflict` when the job is not `Dispatching` under `lease` (owner and
    /// epoch: e.g. its lease expired and it was taken over or requeued) or
    /// `handle.account` is not the account it was claimed for; `NotFound` for an unknown job.
    async fn mark_submitted(
        &self,
        job: JobId,
        lease: &Lease,
        handle: &RemoteHandle,
        now: Timestamp,
    ) -> Result<(), StorageError>;

    /// Records that the submit to fal is about to start: from here until `mark_submitted`
    /// (or a `requeue`) fal may hold the job without us knowing its handle, so a rescue of
    /// this job answers `SubmitUnknown` instead of requeuing it.
    ///
    /// # Errors
    /// MUST return `Conflict` when the job is not `Dispatching` under `lease` (canceled or
    /// taken over: the caller must not submit); `NotFound` for an unknown job.
    async fn mark_submitting(&self, job: JobId, lease: &Lease, now: Timestamp) -> Result<(), StorageError>;

    /// Adds what the prompt helper cost for this attempt to the job's `helper_cost`, so
    /// whichever process finishes it charges it and records fal's bill for it.
    ///
    /// # Errors
    /// MUST return `Conflict` when the job is not `Dispatching` under `lease`, and
    /// `Conflict` for a negative cost; `NotFound` for an unknown job.
    async fn add_helper_cost(&self, job: JobId, lease: &Lease, cost: Money, now: Timestamp)
    -> Result<(), StorageError>;

    /// Records that fal started running it.
    ///
    /// Repeating it for a running job is a no-op.
    ///
    /// # Errors
    /// `Conflict` when the job is not submitted (or running) under `lease`; `NotFound` for
    /// an unknown job.
    async fn mark_running(&self, job: JobId, lease: &Lease, now: Timestamp) -> Result<(), StorageError>;

    /// Puts an in-flight job back in the queue (submit refused before acceptance, a
    /// retry after an upstream failure, an account lock), not before `not_before`.
    ///
    /// The job keeps its place in the queue (its enqueue time) and its attempt count;
    /// its account, fal handle and lease are cleared.
    ///
    /// # Errors
    /// `Conflict` when the job is terminal or queued, or not under `lease`; `NotFound` for
    /// an unknown job.
    async fn requeue(
        &self,
        job: JobId,
        lease: &Lease,
        reason: &str,
        not_before: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Job, StorageError>;

    /// Ends the job and settles its hold in the same transaction. Idempotent: a second
    /// finish of a terminal job writes nothing and returns `AlreadyFinished`.
    ///
    /// A job that had a lease keeps it (renewed by `renew_leases`) until `mark_delivered`:
    /// if its owner dies before telling the user, `rescue_expired` hands it over as
    /// `Redeliver`. A job without a lease (canceled while queued) counts as delivered.
    ///
    /// # Errors
    /// `NotFound` for an unknown job; `Conflict` when `finish.lease` is not the job's lease
    /// (checked before the terminal test: a stale task learns it lost the job), when a
    /// finish without a lease is not a cancel, when `finish.state` is not terminal, when
    /// the job's state cannot reach it (a queued or dispatching job cannot succeed), or when
    /// the settlement does not split the hold exactly (`user_charge + user_refund == hold`,
    /// nothing negative). Nothing is written on error.
    async fn finish(&self, job: JobId, finish: &Finish) -> Result<FinishOutcome, StorageError>;

    /// Records that the user was told the outcome of a finished job (results sent, or the
    /// failure or cancel notice): its lease ends and no rescue delivers it again.
    /// Repeating it is a no-op. `lease` is the deliverer's; `None` for the user's cancel.
    ///
    /// # Errors
    /// `Conflict` when the job is not terminal, or when it is undelivered under another
    /// lease than `lease`; `NotFound` for an unknown job.
    async fn mark_delivered(&self, job: JobId, lease: Option<Lease>, now: Timestamp) -> Result<(), StorageError>;

    /// Cancels a queued job (refunding its hold), or reports where an in-flight one is.
    ///
    /// # Errors
    /// `NotFound` when the job does not exist or belongs to another user.
    async fn cancel(&self, job: JobId, user: UserId, now: Timestamp) -> Result<CancelResult, StorageError>;

    /// Extends the leases in `held` (the jobs this process has a live task for) that are
    /// still exactly as given (owner and epoch; in flight, or finished and not yet
    /// delivered); returns how many were extended. A lease not listed is left to expire,
    /// so a job whose task ended without finishing it is rescued like a dead process's.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn renew_leases(&self, held: &[(JobId, Lease)], until: Timestamp) -> Result<u64, StorageError>;

    /// Takes over jobs whose lease expired (`lease_until <= now`), each under a new lease
    /// epoch (in the returned job's `lease`): those fal accepted are handed to `new_owner`
    /// to resume; those whose submit started without a stored handle
    /// are handed over as `SubmitUnknown`; finished jobs not yet delivered as `Redeliver`;
    /// the rest go back to the queue.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn rescue_expired(
        &self,
        new_owner: &str,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<Rescued>, StorageError>;

    /// The job's place in the queue, `None` once it left the queue.
    ///
    /// # Errors
    /// `NotFound` for an unknown job.
    async fn queue_position(&self, job: JobId) -> Result<Option<QueuePosition>, StorageError>;

    /// The job, or `None`.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn get_job(&self, job: JobId) -> Result<Option<Job>, StorageError>;

    /// The fal handle of a submitted job.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn remote_handle(&self, job: JobId) -> Result<Option<RemoteHandle>, StorageError>;

    /// The user's latest jobs, newest first.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn recent_jobs(&self, user: UserId, limit: u32) -> Result<Vec<Job>, StorageError>;

    /// The user's current usage for quota checks and `/balance`.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn user_usage(&self, user: UserId, now: Timestamp) -> Result<UserUsage, StorageError>;

    /// Jobs in flight per account (dispatching, submitted, running).
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn in_flight_by_account(&self) -> Result<Vec<(AccountId, u32)>, StorageError>;

    /// Jobs waiting in the queue.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn queued_count(&self) -> Result<u32, StorageError>;

    /// Waits until a job is enqueued or finished anywhere (LISTEN/NOTIFY or an
    /// equivalent), or `timeout_ms` passes; true when woken by a change.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn wait_for_change(&self, timeout_ms: u64) -> Result<bool, StorageError>;
}

/// fal accounts, their purchases and spend.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates the account or updates its key names (from configuration at start-up);
    /// an account configured again is no longer retired.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn upsert_account(&self, id: &AccountId, key_names: &[String]) -> Result<AccountRecord, StorageError>;

    /// Retires every stored account not in `configured` (and not retired already);
    /// returns those it retired.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn retire_unlisted(&self, configured: &[AccountId], now: Timestamp) -> Result<Vec<AccountId>, StorageError>;

    /// Every account.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn list_accounts(&self) -> Result<Vec<AccountRecord>, StorageError>;

    /// Records a credit purchase (operator `/topup`).
    ///
    /// # Errors
    /// MUST return `NotFound` for an unknown account.
    async fn add_purchase(&self, id: &AccountId, purchase: &CreditPurchase) -> Result<(), StorageError>;

    /// All purchases of the account, oldest first.
    ///
    /// # Errors
    /// `NotFound` for an unknown account.
    async fn purchases(&self, id: &AccountId) -> Result<Vec<CreditPurchase>, StorageError>;

    /// What fal billed the account in total (sum of the ledger's fal costs).
    ///
    /// # Errors
    /// `NotFound` for an unknown account.
    async fn total_spend(&self, id: &AccountId) -> Result<Money, StorageError>;

    /// What fal billed the account, one entry per UTC day with spend, oldest first, each
    /// stamped at that day's last billed job (a late stamp can only understate the
    /// balance when credit expires, never overstate it). Feeds
    /// `mediagen_domain::credit::AccountCredit::spends`, whose FIFO expiry needs the
    /// timestamps a total lacks.
    ///
    /// # Errors
    /// `NotFound` for an unknown account.
    async fn spends(&self, id: &AccountId) -> Result<Vec<CreditSpend>, StorageError>;

    /// Locks (`Some`) or unlocks (`None`) the account.
    ///
    /// # Errors
    /// `NotFound` for an unknown account.
    async fn set_lock(&self, id: &AccountId, lock: Option<AccountLock>) -> Result<(), StorageError>;

    /// Takes the account out of rotation or back in, and sets a negotiated limit.
    ///
    /// # Errors
    /// `NotFound` for an unknown account.
    async fn set_admin_state(
        &self,
        id: &AccountId,
        disabled: bool,
        limit_override: Option<u32>,
    ) -> Result<(), StorageError>;
}

/// The LLM prompt-enhancement cache.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PromptCache: Send + Sync {
    /// The cached value for `key` if it has not expired at `now`.
    ///
    /// # Errors
    /// `Unavailable` when the database is down (callers treat it as a miss).
    async fn cache_get(&self, key: &str, now: Timestamp) -> Result<Option<String>, StorageError>;

    /// Stores `value` under `key` until `expires_at`, replacing an older value.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn cache_put(&self, key: &str, value: &str, expires_at: Timestamp) -> Result<(), StorageError>;
}

/// Remembers which alerts fired, so each fires once per period across restarts.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AlertLog: Send + Sync {
    /// Records that alert `key` fired in `period` (e.g. `budget-80` in `2026-11`); true the
    /// first time, false when it had already fired (then the caller stays silent).
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn record_alert(&self, key: &str, period: &str, now: Timestamp) -> Result<bool, StorageError>;
}

/// Usage of one model over a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelUsage {
    /// The model.
    pub model: ModelId,
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Jobs that failed or were canceled.
    pub failed: u64,
    /// What users were charged.
    pub user_charged: Money,
    /// What fal billed (list price, before volume discounts).
    pub fal_cost: Money,
}

/// Usage of one user over a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpend {
    /// The user.
    pub user: UserId,
    /// Jobs finished.
    pub jobs: u64,
    /// What they were charged.
    pub charged: Money,
    /// What fal billed for their jobs.
    pub fal_cost: Money,
}

/// Media records and the figures reports are made of.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Records where a produced file went (Telegram file id after delivery).
    ///
    /// # Errors
    /// `NotFound` for an unknown job.
    async fn save_media(&self, record: &MediaRecord) -> Result<(), StorageError>;

    /// The files of a job.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn media_for_job(&self, job: JobId) -> Result<Vec<MediaRecord>, StorageError>;

    /// Per-model usage for jobs finished in `[from, to)`.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn usage_by_model(&self, from: Timestamp, to: Timestamp) -> Result<Vec<ModelUsage>, StorageError>;

    /// Per-user spend for jobs finished in `[from, to)`.
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn usage_by_user(&self, from: Timestamp, to: Timestamp) -> Result<Vec<UserSpend>, StorageError>;

    /// Requests sent to fal in `[from, to)` (for volume-discount tiers).
    ///
    /// # Errors
    /// `Unavailable` when the database is down.
    async fn request_count(&self, from: Timestamp, to: Timestamp) -> Result<u64, StorageError>;
}
