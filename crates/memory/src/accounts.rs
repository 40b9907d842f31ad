//! `AccountStore`: fal accounts, their credit purchases and what fal billed them.

use crate::rows::{EntryKind, stamp};
use crate::store::{MemoryStore, Tables};
use async_trait::async_trait;
use mediagen_domain::credit::{CreditPurchase, CreditSpend};
use mediagen_domain::{AccountId, Money, Timestamp};
use mediagen_ports::{AccountLock, AccountRecord, AccountStore, StorageError};
use std::collections::BTreeMap;

fn unknown(id: &AccountId) -> StorageError {
    StorageError::NotFound(format!("account {id}"))
}

/// The account to change, or `NotFound`.
fn account_mut<'a>(t: &'a mut Tables, id: &AccountId) -> Result<&'a mut AccountRecord, StorageError> {
    t.accounts.get_mut(id).ok_or_else(|| unknown(id))
}

/// `NotFound` unless the account exists.
fn require(t: &Tables, id: &AccountId) -> Result<(), StorageError> {
    if t.accounts.contains_key(id) { Ok(()) } else { Err(unknown(id)) }
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn upsert_account(&self, id: &AccountId, key_names: &[String]) -> Result<AccountRecord, StorageError> {
        let mut t = self.open()?;
        if id.as_str().is_empty() {
            return Err(StorageError::Conflict("an account id cannot be empty (accounts_id_check)".into()));
        }
        let record = t.accounts.entry(id.clone()).or_insert_with(|| AccountRecord {
            id: id.clone(),
            key_names: Vec::new(),
            disabled: false,
            locked: None,
            limit_override: None,
            retired_since: None,
        });
        // A configured account is not retired.
        record.key_names = key_names.to_vec();
        record.retired_since = None;
        Ok(record.clone())
    }

    async fn retire_unlisted(&self, configured: &[AccountId], now: Timestamp) -> Result<Vec<AccountId>, StorageError> {
        let now = stamp(now);
        let mut t = self.open()?;
        let mut retired = Vec::new();
        for record in t.accounts.values_mut() {
            if record.retired_since.is_none() && !configured.contains(&record.id) {
                record.retired_since = Some(now);
                retired.push(record.id.clone());
            }
        }
        Ok(retired)
    }

    async fn list_accounts(&self) -> Result<Vec<AccountRecord>, StorageError> {
        Ok(self.open()?.accounts.values().cloned().collect())
    }

    async fn add_purchase(&self, id: &AccountId, purchase: &CreditPurchase) -> Result<(), StorageError> {
        let mut t = self.open()?;
        require(&t, id)?;
        let purchase = CreditPurchase { amount: purchase.amount, purchased_at: stamp(purchase.purchased_at) };
        t.purchases.push((id.clone(), purchase));
        Ok(())
    }

    async fn purchases(&self, id: &AccountId) -> Result<Vec<CreditPurchase>, StorageError> {
        let t = self.open()?;
        require(&t, id)?;
        let mut purchases: Vec<CreditPurchase> =
            t.purchases.iter().filter(|(account, _)| account == id).map(|(_, p)| *p).collect();
        // Stable: purchases at the same instant stay in the order recorded.
        purchases.sort_by_key(|p| p.purchased_at);
        Ok(purchases)
    }

    async fn total_spend(&self, id: &AccountId) -> Result<Money, StorageError> {
        let t = self.open()?;
        require(&t, id)?;
        let bills = t.ledger.iter().filter(|e| e.kind == EntryKind::FalCost && e.account.as_ref() == Some(id));
        Ok(Money::saturating_sum(bills.map(|e| e.amount)))
    }

    async fn spends(&self, id: &AccountId) -> Result<Vec<CreditSpend>, StorageError> {
        let t = self.open()?;
        require(&t, id)?;
        // One entry per UTC day with spend, stamped at the day's last spend.
        let mut days: BTreeMap<chrono::NaiveDate, CreditSpend> = BTreeMap::new();
        let bills = t
            .ledger
            .iter()
            .filter(|e| e.kind == EntryKind::FalCost && e.account.as_ref() == Some(id) && e.amount > Money::ZERO);
        for bill in bills {
            let day =
                days.entry(bill.at.date_naive()).or_insert(CreditSpend { amount: Money::ZERO, spent_at: bill.at });
            day.amount = day.amount.saturating_add(bill.amount);
            day.spent_at = day.spent_at.max(bill.at);
        }
        let mut spends: Vec<CreditSpend> = days.into_values().collect();
        spends.sort_by_key(|s| s.spent_at);
        Ok(spends)
    }

    async fn set_lock(&self, id: &AccountId, lock: Option<AccountLock>) -> Result<(), StorageError> {
        let mut t = self.open()?;
        let lock = lock.map(|l| AccountLock { since: stamp(l.since), ..l });
        account_mut(&mut t, id)?.locked = lock;
        Ok(())
    }

    async fn set_admin_state(
        &self,
        id: &AccountId,
        disabled: bool,
        limit_override: Option<u32>,
    ) -> Result<(), StorageError> {
        // The same range as the SQL adapters' INTEGER column, so all refuse the same limits.
        if limit_override.is_some_and(|limit| i32::try_from(limit).is_err()) {
            return Err(StorageError::Conflict(format!("limit {limit_override:?} is out of range")));
        }
        let mut t = self.open()?;
        let record = account_mut(&mut t, id)?;
        record.disabled = disabled;
        record.limit_override = limit_override;
        Ok(())
    }
}
