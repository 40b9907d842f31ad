//! The shared storage contract (`mediagen-storage-contract`), run against the in-memory
//! store: every story on a store of its own, its probes read from the stored rows.

use async_trait::async_trait;
use mediagen_domain::{JobId, JobState};
use mediagen_memory::MemoryStore;
use mediagen_memory::testing::EntryKind;
use mediagen_storage_contract::{Database, LedgerKind};
use std::collections::BTreeMap;

/// A fresh store for one story.
struct Memory(MemoryStore);

fn kind(kind: LedgerKind) -> EntryKind {
    match kind {
        LedgerKind::Hold => EntryKind::Hold,
        LedgerKind::Charge => EntryKind::Charge,
        LedgerKind::Refund => EntryKind::Refund,
        LedgerKind::FalCost => EntryKind::FalCost,
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).expect("a count fits")
}

#[async_trait]
impl Database for Memory {
    type Store = MemoryStore;

    async fn fresh() -> Self {
        Memory(MemoryStore::new())
    }

    async fn store(&self) -> MemoryStore {
        self.0.clone()
    }

    async fn peer(&self) -> MemoryStore {
        self.0.clone()
    }

    async fn connect(&self) -> MemoryStore {
        self.0.clone()
    }

    async fn close(&self, store: &MemoryStore) {
        store.close();
    }

    async fn job_count(&self) -> i64 {
        count(self.0.stored_jobs().len())
    }

    async fn finished_job_count(&self) -> i64 {
        count(self.0.stored_jobs().iter().filter(|job| job.finished_at.is_some()).count())
    }

    async fn ledger_amount(&self, job: JobId, of: LedgerKind) -> Option<i64> {
        let ledger = self.0.ledger();
        ledger.iter().find(|e| e.job == job && e.kind == kind(of)).map(|e| e.amount.micros())
    }

    async fn ledger_rows_of_job(&self, job: JobId) -> i64 {
        count(self.0.ledger().iter().filter(|e| e.job == job).count())
    }

    async fn ledger_rows_of_kind(&self, of: LedgerKind) -> i64 {
        count(self.0.ledger().iter().filter(|e| e.kind == kind(of)).count())
    }

    async fn jobs_with_repeated_entries(&self, of: LedgerKind) -> i64 {
        let mut per_job: BTreeMap<JobId, usize> = BTreeMap::new();
        for entry in self.0.ledger().iter().filter(|e| e.kind == kind(of)) {
            *per_job.entry(entry.job).or_default() += 1;
        }
        count(per_job.values().filter(|n| **n > 1).count())
    }

    async fn event_count(&self, event: &str) -> i64 {
        count(self.0.events().iter().filter(|e| e.event == event).count())
    }

    async fn job_events(&self, job: JobId) -> Vec<String> {
        self.0.events().iter().filter(|e| e.job == job).map(|e| e.event.to_owned()).collect()
    }

    async fn unbalanced_jobs(&self) -> Vec<JobId> {
        let ledger = self.0.ledger();
        let amount = |job: JobId, of: EntryKind| ledger.iter().find(|e| e.job == job && e.kind == of).map(|e| e.amount);
        self.0
            .stored_jobs()
            .iter()
            .filter(|stored| stored.finished_at.is_some())
            .filter(|stored| {
                let id = stored.id();
                match (amount(id, EntryKind::Hold), amount(id, EntryKind::Charge), amount(id, EntryKind::Refund)) {
                    (Some(hold), Some(charge), Some(refund)) => {
                        hold != stored.job.hold || charge.checked_add(refund) != Ok(hold)
                    }
                    _ => true,
                }
            })
            .map(|stored| stored.id())
            .collect()
    }

    async fn in_flight_per_account(&self) -> Vec<i64> {
        let mut per_account: BTreeMap<_, i64> = BTreeMap::new();
        for stored in self.0.stored_jobs() {
            if let JobState::Dispatching { account }
            | JobState::Submitted { account, .. }
            | JobState::Running { account, .. } = stored.job.state
            {
                *per_account.entry(account).or_default() += 1;
            }
        }
        per_account.into_values().collect()
    }
}

mediagen_storage_contract::contract_tests!(Memory);

/// Two claimers on clones of one store, at once on two threads, never exceed an account
/// limit: the mutex makes each claim atomic, as the database's locks do for the SQL adapters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_claimers_never_exceed_an_account_limit() {
    let db = Memory::fresh().await;
    mediagen_storage_contract::concurrency::two_claimers_never_exceed_an_account_limit(db).await;
}
