//! fal accounts as the dispatcher sees them: each one's concurrency limit from its credit
//! window (or an override), and whether it may take work now.

use crate::Operator;
use crate::alerts::{Alert, day_key};
use crate::breaker::Trip;
use crate::stats::bump;
use mediagen_domain::account::AccountView;
use mediagen_domain::scheduler::{AccountSlots, total_capacity};
use mediagen_domain::{AccountId, Timestamp};
use mediagen_ports::{AccountCapacity, AccountLock, AccountRecord, Severity, StorageError};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// The last view of every account, reused for `accounts_refresh`.
#[derive(Default)]
pub(crate) struct AccountCache {
    cached: Mutex<Option<(Instant, Arc<Vec<AccountView>>)>>,
}

impl AccountCache {
    fn fresh(&self, max_age: std::time::Duration) -> Option<Arc<Vec<AccountView>>> {
        let cached = self.cached.lock().unwrap();
        cached.as_ref().filter(|(at, _)| at.elapsed() < max_age).map(|(_, snapshot)| Arc::clone(snapshot))
    }

    fn store(&self, snapshot: Arc<Vec<AccountView>>) {
        *self.cached.lock().unwrap() = Some((Instant::now(), snapshot));
    }

    /// Forces the next read to go to storage (after a lock or a key was refused).
    pub(crate) fn invalidate(&self) {
        *self.cached.lock().unwrap() = None;
    }
}

impl Operator {
    /// Every account with its limit, from the cache when it is fresh.
    ///
    /// # Errors
    /// The storage error when the accounts cannot be listed.
    pub(crate) async fn accounts(&self) -> Result<Arc<Vec<AccountView>>, StorageError> {
        let inner = &self.inner;
        if let Some(snapshot) = inner.accounts.fresh(inner.config.accounts_refresh) {
            return Ok(snapshot);
        }
        let now = inner.ports.clock.now();
        let records = inner.ports.accounts.list_accounts().await?;
        let mut snapshot = Vec::with_capacity(records.len());
        for record in records {
            snapshot.push(self.snapshot(record, now).await);
        }
        // An operator cleared a lock: the next lock of that account is news again.
        inner.locked.lock().unwrap().retain(|id| {
            snapshot.iter().any(|s| s.record.id == *id && (s.record.locked.is_some() || s.record.disabled))
        });
        let snapshot = Arc::new(snapshot);
        inner.accounts.store(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    async fn snapshot(&self, record: AccountRecord, now: Timestamp) -> AccountView {
        let ports = &self.inner.ports;
        let purchases = ports.accounts.purchases(&record.id).await.unwrap_or_else(|error| {
            tracing::warn!(account = %record.id, %error, "purchases unreadable; base limit assumed");
            Vec::new()
        });
        let spends = ports.accounts.spends(&record.id).await.unwrap_or_else(|error| {
            tracing::warn!(account = %record.id, %error, "spend unreadable; balance overstated");
            Vec::new()
        });
        AccountView::new(record, &self.inner.config.credit, purchases, spends, now)
    }

    /// What each account may take now. Locked (by fal's 403, stored or just seen here),
    /// disabled, retired (no longer configured), breaker-paused accounts and accounts whose
    /// every key fal refused are unusable.
    pub(crate) fn capacities(&self, accounts: &[AccountView]) -> Vec<AccountCapacity> {
        let keys = self.inner.ports.generation.key_statuses();
        let locked = self.inner.locked.lock().unwrap();
        accounts
            .iter()
            .map(|a| {
                let id = a.id();
                let usable = a.usable(&keys, locked.contains(id), self.inner.breakers.is_open(id));
                AccountCapacity { account: id.clone(), limit: a.limit, usable }
            })
            .collect()
    }

    /// Jobs that can run at once over the usable accounts (for the wait estimate).
    pub(crate) async fn running_capacity(&self) -> u32 {
        let Ok(accounts) = self.accounts().await else { return 0 };
        let slots: Vec<AccountSlots> = self
            .capacities(&accounts)
            .into_iter()
            .map(|c| AccountSlots { account: c.account, limit: c.limit, in_flight: 0, usable: c.usable })
            .collect();
        total_capacity(&slots)
    }

    /// fal said the account is locked: take it out of rotation and tell the operator once.
    pub(crate) async fn lock_account(&self, account: &AccountId, reason: &str) {
        if !self.inner.locked.lock().unwrap().insert(account.clone()) {
            return; // Already handled by this process.
        }
        let now = self.inner.ports.clock.now();
        let lock = AccountLock { reason: reason.to_owned(), since: now };
        if let Err(error) = self.inner.ports.accounts.set_lock(account, Some(lock)).await {
            tracing::error!(%account, %error, "could not store the account lock");
        }
        self.inner.accounts.invalidate();
        let alert = Alert {
            key: format!("account-locked:{account}"),
            period: crate::alerts::day_key(now),
            severity: Severity::Critical,
            title: format!("fal account {account} is locked"),
            body: format!(
                "fal refused work on account {account}: {reason}. It is out of rotation; jobs go to the other \
                 accounts. Top up or resolve the lock at fal, then send /topup {account} <dollars>: recording \
                 the purchase clears the lock here."
            ),
        };
        self.alert_once(alert).await;
    }

    /// fal refused every key of the account: it takes no work until a key is accepted
    /// again (probed now and then, or put back by an operator); the operator is told once.
    pub(crate) async fn every_key_refused(&self, account: &AccountId) {
        self.inner.accounts.invalidate();
        self.inner.wake.notify_one();
        let now = self.inner.ports.clock.now();
        let alert = Alert {
            key: format!("keys-refused:{account}"),
            period: crate::alerts::day_key(now),
            severity: Severity::Critical,
            title: format!("fal refused every key of account {account}"),
            body: format!(
                "fal answered 401 to every key of account {account}, so it takes no work. Fix the keys \
                 (FAL_KEY__{upper}) and restart, or, once fixed at fal, send /enablekey {account} <key>. The \
                 keys are tried again every few minutes.",
                upper = account.as_str().to_uppercase()
            ),
        };
        self.alert_once(alert).await;
    }

    /// Tries the refused keys again, and tells the operator once about each newly refused key.
    pub(crate) async fn key_upkeep(&self) {
        let generation = &self.inner.ports.generation;
        let restored = generation.probe_refused_keys().await;
        for key in &restored {
            tracing::info!(account = %key.account, key = %key.key, "fal accepts a refused key again");
            self.inner.refused_keys.lock().unwrap().remove(&(key.account.clone(), key.key.clone()));
        }
        if !restored.is_empty() {
            self.inner.accounts.invalidate();
            self.inner.wake.notify_one();
        }
        let refused: Vec<_> = generation.key_statuses().into_iter().filter(|k| k.refused_since.is_some()).collect();
        for key in refused {
            let new = self.inner.refused_keys.lock().unwrap().insert((key.account.clone(), key.key.clone()));
            if !new {
                continue;
            }
            let now = self.inner.ports.clock.now();
            let alert = Alert {
                key: format!("key-refused:{}:{}", key.account, key.key),
                period: crate::alerts::day_key(now),
                severity: Severity::Warning,
                title: format!("fal refused key {} of account {}", key.key, key.account),
                body: format!(
                    "fal answered 401 to key {key} of account {account}. The account runs on its other keys; \
                     the key is tried again every few minutes. Once it is fixed at fal, /enablekey {account} {key} \
                     puts it back at once.",
                    key = key.key,
                    account = key.account
                ),
            };
            self.alert_once(alert).await;
        }
    }

    /// Counts an upstream failure against the account's breaker; alerts when it opens.
    pub(crate) async fn upstream_failure(&self, account: &AccountId) {
        if self.inner.breakers.record_failure(account) != Trip::Opened {
            return;
        }
        bump(&self.inner.counters.breaker_trips);
        self.inner.wake.notify_one();
        let breaker = self.inner.config.breaker;
        let now = self.inner.ports.clock.now();
        let alert = Alert {
            key: format!("breaker:{account}"),
            period: day_key(now),
            severity: Severity::Warning,
            title: format!("fal account {account} paused after {} failures in a row", breaker.failure_threshold),
            body: format!(
                "Upstream failures on account {account}: it takes no work for {} s, then gets one trial.",
                breaker.cool_down.as_secs()
            ),
        };
        self.alert_once(alert).await;
    }

    /// fal answered on `account`: a success closes its breaker.
    pub(crate) fn record_success(&self, account: &AccountId) {
        self.inner.breakers.record_success(account);
    }
}
