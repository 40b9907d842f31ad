//! [`MemoryStore`]: the tables behind one mutex, the change notifier and closing.

use crate::rows::{EventRecord, LedgerEntry, StoredJob};
use mediagen_domain::credit::CreditPurchase;
use mediagen_domain::{AccountId, IdempotencyKey, JobId, Timestamp, User, UserId};
use mediagen_ports::{AccountRecord, MediaRecord, StorageError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// Every stored row; the twin of the SQL schema, one collection per table.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    pub(crate) users: BTreeMap<UserId, User>,
    pub(crate) accounts: BTreeMap<AccountId, AccountRecord>,
    /// In the order recorded (the SQL id order).
    pub(crate) purchases: Vec<(AccountId, CreditPurchase)>,
    pub(crate) jobs: BTreeMap<JobId, StoredJob>,
    /// The enqueue keys taken, and by which job.
    pub(crate) keys: HashMap<IdempotencyKey, JobId>,
    /// The last job id handed out; ids are never reused.
    pub(crate) last_job: i64,
    /// In the order written.
    pub(crate) events: Vec<EventRecord>,
    /// In the order written.
    pub(crate) ledger: Vec<LedgerEntry>,
    /// In the order first saved; one per job and URL.
    pub(crate) media: Vec<MediaRecord>,
    /// Key to value and expiry.
    pub(crate) cache: HashMap<String, (String, Timestamp)>,
    /// (key, period) to when it fired.
    pub(crate) alerts: BTreeMap<(String, String), Timestamp>,
}

impl Tables {
    /// The job, or `NotFound`.
    pub(crate) fn job(&self, id: JobId) -> Result<&StoredJob, StorageError> {
        self.jobs.get(&id).ok_or_else(|| StorageError::NotFound(format!("job {id}")))
    }

    /// The job to change, or `NotFound`.
    pub(crate) fn job_mut(&mut self, id: JobId) -> Result<&mut StoredJob, StorageError> {
        self.jobs.get_mut(&id).ok_or_else(|| StorageError::NotFound(format!("job {id}")))
    }
}

/// What every port answers once the store is closed.
fn closed() -> StorageError {
    StorageError::Unavailable("the in-memory store is closed".into())
}

struct Shared {
    tables: Mutex<Tables>,
    /// Woken (all waiters) after each enqueue, requeue, finish and cancel.
    changes: Notify,
    closed: AtomicBool,
}

/// In-memory storage: implements `UserStore`, `JobQueue`, `AccountStore`, `PromptCache`,
/// `AlertLog`, `UsageStore` and `ReportStore` on one set of tables.
///
/// Cheap to clone; clones share the tables, the change notifier and the closed state, as
/// stores on one database do. Each method reads and decides under the one mutex before it
/// writes, and writes only once nothing can fail, so every change is atomic and a refused
/// one leaves nothing behind, as a rolled-back transaction would.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tables = self.lock();
        f.debug_struct("MemoryStore")
            .field("users", &tables.users.len())
            .field("jobs", &tables.jobs.len())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let shared = Shared { tables: Mutex::default(), changes: Notify::new(), closed: AtomicBool::new(false) };
        MemoryStore { shared: Arc::new(shared) }
    }

    /// Closes the store and every clone of it: from now on every port answers
    /// `Unavailable`, as the SQL adapters do once their pool is closed.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
    }

    /// True once [`MemoryStore::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// The tables, whatever a panicking holder left: every write decides before it changes
    /// anything, so a panic cannot leave half a change.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Tables> {
        self.shared.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tables, or `Unavailable` once closed.
    pub(crate) fn open(&self) -> Result<MutexGuard<'_, Tables>, StorageError> {
        if self.is_closed() {
            return Err(closed());
        }
        Ok(self.lock())
    }

    /// Wakes every `wait_for_change`; called after a change of the queue.
    pub(crate) fn changed(&self) {
        self.shared.changes.notify_waiters();
    }

    /// Waits for [`Self::changed`] or the timeout; true when woken.
    pub(crate) async fn wait(&self, timeout: Duration) -> Result<bool, StorageError> {
        let notified = self.shared.changes.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_closed() {
            return Err(closed());
        }
        Ok(tokio::time::timeout(timeout, notified).await.is_ok())
    }
}
