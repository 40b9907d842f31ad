//! What the operator asks about accounts: limits from the credit window, when they drop,
//! the top-up that keeps them, balances and locks; and recording a purchase.

use crate::Engine;
use mediagen_domain::credit::{CreditPurchase, LimitDrop, TopUp};
use mediagen_domain::{AccountId, Money, Timestamp};
use mediagen_ports::{AccountLock, KeyStatus, StorageError};

/// One fal account as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOverview {
    /// The account.
    pub id: AccountId,
    /// Its concurrency limit now.
    pub limit: u32,
    /// Jobs in flight on it now.
    pub in_flight: u32,
    /// Credits bought over the trailing window (what the limit is computed from).
    pub window_sum: Money,
    /// Unexpired credits minus spend.
    pub balance: Money,
    /// The next time the limit drops if nothing is bought.
    pub next_drop: Option<LimitDrop>,
    /// The top-up that keeps the current limit over the warning horizon.
    pub top_up: Option<TopUp>,
    /// Set when fal locked it.
    pub locked: Option<AccountLock>,
    /// Taken out of rotation by an operator.
    pub disabled: bool,
    /// A negotiated limit that overrides the tiers.
    pub limit_override: Option<u32>,
    /// Paused by the circuit breaker after repeated upstream failures.
    pub paused: bool,
    /// No longer configured: it takes no new work.
    pub retired: bool,
    /// Its keys, and since when fal refuses each refused one.
    pub keys: Vec<KeyStatus>,
}

impl Engine {
    /// Every account with its limit, window, balance and what happens next.
    ///
    /// # Errors
    /// The storage error when the accounts cannot be read.
    pub async fn accounts_overview(&self) -> Result<Vec<AccountOverview>, StorageError> {
        self.inner.accounts.invalidate();
        let accounts = self.accounts().await?;
        let in_flight = self.inner.ports.queue.in_flight_by_account().await?;
        let now = self.inner.ports.clock.now();
        let horizon = self.inner.config.limit_drop_warning;
        let keys = self.inner.ports.generation.key_statuses();
        Ok(accounts
            .iter()
            .map(|a| AccountOverview {
                id: a.record.id.clone(),
                limit: a.limit,
                in_flight: in_flight.iter().find(|(id, _)| *id == a.record.id).map_or(0, |(_, n)| *n),
                window_sum: a.credit.window_sum(now),
                balance: a.credit.balance(now),
                next_drop: a.credit.limit_drops(now).into_iter().next(),
                top_up: a.credit.topup_to_keep_limit(now, horizon),
                locked: a.record.locked.clone(),
                disabled: a.record.disabled,
                limit_override: a.record.limit_override,
                paused: self.inner.breakers.is_open(&a.record.id),
                retired: a.record.retired_since.is_some(),
                keys: keys.iter().filter(|k| k.account == a.record.id).cloned().collect(),
            })
            .collect())
    }

    /// Puts a key fal refused back in use (the operator fixed it at fal); false when the
    /// account has no key of that name.
    pub fn enable_key(&self, account: &AccountId, key: &str) -> bool {
        if !self.inner.ports.generation.enable_key(account, key) {
            return false;
        }
        self.inner.refused_keys.lock().unwrap().remove(&(account.clone(), key.to_owned()));
        self.inner.accounts.invalidate();
        self.inner.wake.notify_one();
        true
    }

    /// Records a credit purchase (the operator bought credits at fal) and returns the
    /// account's limit afterwards. Buying credit also clears a lock: fal unlocks on top-up.
    ///
    /// # Errors
    /// `NotFound` for an unknown account; other storage errors as they come.
    pub async fn record_purchase(
        &self,
        account: &AccountId,
        amount: Money,
        at: Timestamp,
    ) -> Result<u32, StorageError> {
        let ports = &self.inner.ports;
        ports.accounts.add_purchase(account, &CreditPurchase { amount, purchased_at: at }).await?;
        ports.accounts.set_lock(account, None).await?;
        self.inner.locked.lock().unwrap().remove(account);
        self.inner.accounts.invalidate();
        self.inner.wake.notify_one();
        let accounts = self.accounts().await?;
        Ok(accounts.iter().find(|a| a.record.id == *account).map_or(0, |a| a.limit))
    }
}
