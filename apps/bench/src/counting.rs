//! A decorator of the storage ports that counts every call by method, so the bench can
//! report database round trips per job without `pg_stat_statements`.
//!
//! A port call is at least one round trip (a transaction such as `enqueue` or `claim` is
//! several statements on one connection); `JobQueue::wait_for_change` waits on the store's
//! own LISTEN connection and sends nothing, so it is counted apart and left out of the total.

use async_trait::async_trait;
use mediagen_domain::credit::{CreditPurchase, CreditSpend};
use mediagen_domain::quota::UserUsage;
use mediagen_domain::{AccountId, Job, JobId, Lease, Money, Timestamp, User, UserId};
use mediagen_ports::{
    AccountLock, AccountRecord, AccountStore, AlertLog, CancelResult, ClaimRequest, ClaimedJob, DayCount,
    EnqueueOutcome, EnqueueRequest, Finish, FinishOutcome, JobCounts, JobQueue, JobTiming, MediaRecord, ModelUsage,
    NewUser, PromptCache, QueuePosition, RemoteHandle, ReportStore, Rescued, SlotInterval, StorageError, UsageRow,
    UsageStore, UserSpend, UserStore,
};
use mediagen_postgres::PgStore;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The call that only waits for a notification; it sends nothing to the database.
pub const WAIT_FOR_CHANGE: &str = "JobQueue::wait_for_change";

/// Every storage port of a [`PgStore`], counting calls per method.
#[derive(Clone)]
pub struct Counting {
    inner: Arc<PgStore>,
    calls: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl Counting {
    /// Counts the calls made through it to `inner`.
    pub fn new(inner: Arc<PgStore>) -> Self {
        Self { inner, calls: Arc::default() }
    }

    /// Calls so far, per `Trait::method`.
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.calls.lock().unwrap().clone()
    }

    fn count(&self, method: &'static str) {
        *self.calls.lock().unwrap().entry(method).or_insert(0) += 1;
    }
}

/// Implements a port trait by counting, then forwarding to the `PgStore`.
macro_rules! forward {
    ($port:ident { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )* }) => {
        #[async_trait]
        impl $port for Counting {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.count(concat!(stringify!($port), "::", stringify!($name)));
                    $port::$name(&*self.inner $(, $arg)*).await
                }
            )*
        }
    };
}

forward!(UserStore {
    fn upsert_user(&self, new: &NewUser) -> Result<User, StorageError>;
    fn get_user(&self, id: UserId) -> Result<Option<User>, StorageError>;
    fn update_user(&self, user: &User) -> Result<(), StorageError>;
    fn list_users(&self) -> Result<Vec<User>, StorageError>;
});

forward!(JobQueue {
    fn enqueue(&self, request: &EnqueueRequest) -> Result<EnqueueOutcome, StorageError>;
    fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, StorageError>;
    fn mark_submitted(&self, job: JobId, lease: &Lease, handle: &RemoteHandle, now: Timestamp) -> Result<(), StorageError>;
    fn mark_submitting(&self, job: JobId, lease: &Lease, now: Timestamp) -> Result<(), StorageError>;
    fn add_helper_cost(&self, job: JobId, lease: &Lease, cost: Money, now: Timestamp) -> Result<(), StorageError>;
    fn mark_running(&self, job: JobId, lease: &Lease, now: Timestamp) -> Result<(), StorageError>;
    fn requeue(&self, job: JobId, lease: &Lease, reason: &str, not_before: Option<Timestamp>, now: Timestamp) -> Result<Job, StorageError>;
    fn finish(&self, job: JobId, finish: &Finish) -> Result<FinishOutcome, StorageError>;
    fn mark_delivered(&self, job: JobId, lease: Option<Lease>, now: Timestamp) -> Result<(), StorageError>;
    fn cancel(&self, job: JobId, user: UserId, now: Timestamp) -> Result<CancelResult, StorageError>;
    fn renew_leases(&self, held: &[(JobId, Lease)], until: Timestamp) -> Result<u64, StorageError>;
    fn rescue_expired(&self, new_owner: &str, lease_until: Timestamp, now: Timestamp) -> Result<Vec<Rescued>, StorageError>;
    fn queue_position(&self, job: JobId) -> Result<Option<QueuePosition>, StorageError>;
    fn get_job(&self, job: JobId) -> Result<Option<Job>, StorageError>;
    fn remote_handle(&self, job: JobId) -> Result<Option<RemoteHandle>, StorageError>;
    fn recent_jobs(&self, user: UserId, limit: u32) -> Result<Vec<Job>, StorageError>;
    fn user_usage(&self, user: UserId, now: Timestamp) -> Result<UserUsage, StorageError>;
    fn in_flight_by_account(&self) -> Result<Vec<(AccountId, u32)>, StorageError>;
    fn queued_count(&self) -> Result<u32, StorageError>;
    fn wait_for_change(&self, timeout_ms: u64) -> Result<bool, StorageError>;
});

forward!(AccountStore {
    fn upsert_account(&self, id: &AccountId, key_names: &[String]) -> Result<AccountRecord, StorageError>;
    fn retire_unlisted(&self, configured: &[AccountId], now: Timestamp) -> Result<Vec<AccountId>, StorageError>;
    fn list_accounts(&self) -> Result<Vec<AccountRecord>, StorageError>;
    fn add_purchase(&self, id: &AccountId, purchase: &CreditPurchase) -> Result<(), StorageError>;
    fn purchases(&self, id: &AccountId) -> Result<Vec<CreditPurchase>, StorageError>;
    fn total_spend(&self, id: &AccountId) -> Result<Money, StorageError>;
    fn spends(&self, id: &AccountId) -> Result<Vec<CreditSpend>, StorageError>;
    fn set_lock(&self, id: &AccountId, lock: Option<AccountLock>) -> Result<(), StorageError>;
    fn set_admin_state(&self, id: &AccountId, disabled: bool, limit_override: Option<u32>) -> Result<(), StorageError>;
});

forward!(PromptCache {
    fn cache_get(&self, key: &str, now: Timestamp) -> Result<Option<String>, StorageError>;
    fn cache_put(&self, key: &str, value: &str, expires_at: Timestamp) -> Result<(), StorageError>;
});

forward!(AlertLog {
    fn record_alert(&self, key: &str, period: &str, now: Timestamp) -> Result<bool, StorageError>;
});

forward!(UsageStore {
    fn save_media(&self, record: &MediaRecord) -> Result<(), StorageError>;
    fn media_for_job(&self, job: JobId) -> Result<Vec<MediaRecord>, StorageError>;
    fn usage_by_model(&self, from: Timestamp, to: Timestamp) -> Result<Vec<ModelUsage>, StorageError>;
    fn usage_by_user(&self, from: Timestamp, to: Timestamp) -> Result<Vec<UserSpend>, StorageError>;
    fn request_count(&self, from: Timestamp, to: Timestamp) -> Result<u64, StorageError>;
});

forward!(ReportStore {
    fn usage_rows(&self, from: Timestamp, to: Timestamp) -> Result<Vec<UsageRow>, StorageError>;
    fn requests_by_day(&self, from: Timestamp, to: Timestamp) -> Result<Vec<DayCount>, StorageError>;
    fn job_counts(&self) -> Result<JobCounts, StorageError>;
    fn job_timings(&self, from: Timestamp, to: Timestamp) -> Result<Vec<JobTiming>, StorageError>;
    fn slot_intervals(&self, from: Timestamp, to: Timestamp) -> Result<Vec<SlotInterval>, StorageError>;
});
