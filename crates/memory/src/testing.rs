//! The stored rows for tests (feature `testing`): what a SQL test reads straight from the
//! tables, and fixture writes for scenes no port reaches in one step (a job some earlier
//! process left at fal, say), as a SQL test would `UPDATE` a row.
//!
//! Nothing here checks the ports' rules: a fixture can store what no sequence of port
//! calls would, so a test that uses one says what it builds.

use crate::rows::stamp;
use crate::store::MemoryStore;
use mediagen_domain::{JobId, Settlement, Timestamp};
use mediagen_ports::MediaRecord;

pub use crate::rows::{EntryKind, EventRecord, LedgerEntry, StoredJob};

impl MemoryStore {
    /// Every stored job, by id.
    pub fn stored_jobs(&self) -> Vec<StoredJob> {
        self.lock().jobs.values().cloned().collect()
    }

    /// The stored job, with the columns the ports do not show.
    pub fn stored_job(&self, id: JobId) -> Option<StoredJob> {
        self.lock().jobs.get(&id).cloned()
    }

    /// Every ledger row, in the order written.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.lock().ledger.clone()
    }

    /// Every job event, in the order written.
    pub fn events(&self) -> Vec<EventRecord> {
        self.lock().events.clone()
    }

    /// Every media record, in the order first saved.
    pub fn media(&self) -> Vec<MediaRecord> {
        self.lock().media.clone()
    }

    /// Every prompt cache entry, expired or not: key, value and expiry, by key.
    pub fn cache_entries(&self) -> Vec<(String, String, Timestamp)> {
        let t = self.lock();
        let mut entries: Vec<_> = t.cache.iter().map(|(k, (v, at))| (k.clone(), v.clone(), *at)).collect();
        entries.sort();
        entries
    }

    /// Every alert that fired: key and period, in that order.
    pub fn alerts(&self) -> Vec<(String, String)> {
        self.lock().alerts.keys().cloned().collect()
    }

    /// Replaces a stored job's row with `job` (same id and key), as a fixture. The job's
    /// hold row in the ledger follows its hold, so quotas and balances stay consistent.
    ///
    /// # Panics
    /// When no job has that id, or its key differs: fixtures change jobs, they do not
    /// make them (enqueue does).
    pub fn put_job(&self, job: StoredJob) {
        let mut t = self.lock();
        let id = job.id();
        let stored = t.jobs.get_mut(&id).unwrap_or_else(|| panic!("no job {id} to replace; enqueue it first"));
        assert_eq!(stored.key, job.key, "job {id} keeps its idempotency key");
        let hold = job.job.hold;
        *stored = job;
        for entry in t.ledger.iter_mut().filter(|e| e.job == id && e.kind == EntryKind::Hold) {
            entry.amount = hold;
        }
    }

    /// Records `settlement` in the ledger for job `id` at `at` (its charge, refund and fal
    /// cost, billed to the job's account), as a finish would, without touching the job.
    ///
    /// # Panics
    /// When no job has that id, or it is settled already.
    pub fn put_settlement(&self, id: JobId, settlement: Settlement, at: Timestamp) {
        let mut t = self.lock();
        let stored = t.jobs.get(&id).unwrap_or_else(|| panic!("no job {id} to settle"));
        let (user, account) = (stored.job.user, stored.account.clone());
        assert!(!t.ledger.iter().any(|e| e.job == id && e.kind != EntryKind::Hold), "job {id} is settled already");
        let at = stamp(at);
        let entries = [
            (EntryKind::Charge, None, settlement.user_charge),
            (EntryKind::Refund, None, settlement.user_refund),
            (EntryKind::FalCost, account, settlement.fal_cost),
        ];
        for (kind, account, amount) in entries {
            t.ledger.push(LedgerEntry { job: id, user, account, kind, amount, at });
        }
    }
}
