//! The stored rows: a job with the columns the ports do not show, and the ledger and event
//! rows written with its state changes (the twins of the SQL adapters' `jobs`, `ledger`
//! and `job_events` tables).

use mediagen_domain::{AccountId, IdempotencyKey, Job, JobId, Lease, Money, RequestId, Timestamp, UserId};
use mediagen_ports::RemoteHandle;

/// An instant as stored: to the microsecond, as both SQL adapters keep it, so a value read
/// back compares equal whichever adapter stored it.
pub(crate) fn stamp(at: Timestamp) -> Timestamp {
    chrono::DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJob {
    /// What the ports return: state, lease, attempts, hold, …
    pub job: Job,
    /// The enqueue's idempotency key.
    pub key: IdempotencyKey,
    /// The account it was last claimed for; kept once it is terminal (reports group by
    /// it), cleared when it goes back to the queue.
    pub account: Option<AccountId>,
    /// fal's handle once fal accepted it; kept once it is terminal, cleared on requeue.
    pub handle: Option<RemoteHandle>,
    /// The fencing token of its latest claim or takeover; kept when the lease ends, so the
    /// next one is newer. `job.lease`, when set, carries it.
    pub epoch: u64,
    /// When the lease ends unless renewed.
    pub lease_until: Option<Timestamp>,
    /// A requeued job is not claimed before this instant.
    pub not_before: Option<Timestamp>,
    /// Orders the queue; kept on requeue so a retried job keeps its place.
    pub enqueued_at: Timestamp,
    /// When it became terminal.
    pub finished_at: Option<Timestamp>,
    /// Set while its submit to fal may have gone out without a stored handle.
    pub submit_started_at: Option<Timestamp>,
    /// When the user was told its outcome.
    pub delivered_at: Option<Timestamp>,
}

impl StoredJob {
    /// Its id.
    pub fn id(&self) -> JobId {
        self.job.id
    }

    /// True while it is in flight, or finished and not yet delivered: a lease then guards it.
    pub(crate) fn leased_stage(&self) -> bool {
        self.job.state.is_in_flight() || (self.finished_at.is_some() && self.delivered_at.is_none())
    }

    /// Gives the job a lease of `owner` under a new epoch, until `until`.
    pub(crate) fn lease_to(&mut self, owner: &str, until: Timestamp) {
        self.epoch += 1;
        self.job.lease = Some(Lease { owner: owner.to_owned(), epoch: self.epoch });
        self.lease_until = Some(until);
    }

    /// Ends the lease (the epoch is kept).
    pub(crate) fn release(&mut self) {
        self.job.lease = None;
        self.lease_until = None;
    }
}

/// What a ledger row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// The user's credit held at enqueue.
    Hold,
    /// Taken from the hold for good.
    Charge,
    /// Given back from the hold.
    Refund,
    /// What fal bills the account.
    FalCost,
}

impl EntryKind {
    /// The SQL adapters' spelling (`ledger.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Hold => "hold",
            EntryKind::Charge => "charge",
            EntryKind::Refund => "refund",
            EntryKind::FalCost => "fal_cost",
        }
    }
}

/// Money that moved because of a job; one row per job and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The job.
    pub job: JobId,
    /// Its user.
    pub user: UserId,
    /// The account billed (fal costs only).
    pub account: Option<AccountId>,
    /// What it records.
    pub kind: EntryKind,
    /// How much; never negative.
    pub amount: Money,
    /// When.
    pub at: Timestamp,
}

/// One state change of one job, in the order they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// The job.
    pub job: JobId,
    /// `enqueued`, `claimed`, `submitted`, `started`, `requeued`, `rescued`, `succeeded`,
    /// `failed` or `canceled`.
    pub event: &'static str,
    /// The state it left (`None` for the enqueue).
    pub from: Option<&'static str>,
    /// The state it entered.
    pub to: &'static str,
    /// The account involved.
    pub account: Option<AccountId>,
    /// fal's request id, when it had one.
    pub request_id: Option<RequestId>,
    /// The lease owner who made the change.
    pub owner: Option<String>,
    /// Why (a requeue's reason, a failure, a rescue).
    pub detail: Option<String>,
    /// When.
    pub at: Timestamp,
}

impl EventRecord {
    /// An event with no account, request id, owner or detail yet.
    pub(crate) fn new(
        job: JobId,
        event: &'static str,
        from: Option<&'static str>,
        to: &'static str,
        at: Timestamp,
    ) -> Self {
        EventRecord { job, event, from, to, account: None, request_id: None, owner: None, detail: None, at }
    }
}
