//! One fal account as the bot knows it: the stored record (keys, lock, operator's switches),
//! its credit history and the rules that turn them into a limit, a window, a balance and
//! whether it takes work. The dispatcher, the operator's overview and the reports all read
//! accounts through [`AccountView`], so they cannot disagree.

use crate::credit::{AccountCredit, CreditPolicy, CreditPurchase, CreditSpend};
use crate::insights::AccountState;
use crate::{AccountId, Money, Timestamp};
use serde::{Deserialize, Serialize};

/// A fal account as stored (key material stays in configuration; only key names here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The account.
    pub id: AccountId,
    /// Names of its keys.
    pub key_names: Vec<String>,
    /// Taken out of rotation by an operator.
    pub disabled: bool,
    /// Set when fal answered 403 "User is locked"; cleared by an operator.
    pub locked: Option<AccountLock>,
    /// A negotiated limit that overrides the credit tiers.
    pub limit_override: Option<u32>,
    /// Set when the account is no longer configured: it gets no new work, and its jobs
    /// already at fal are still followed to their end.
    pub retired_since: Option<Timestamp>,
}

impl AccountRecord {
    /// What the stored record says about taking new work: not disabled by an operator,
    /// not locked by fal, still configured. The dispatcher also needs a key fal accepts
    /// and a closed breaker; the reports count capacity by this alone.
    pub fn takes_work(&self) -> bool {
        !self.disabled && self.locked.is_none() && self.retired_since.is_none()
    }
}

/// Why and since when an account is locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLock {
    /// fal's reason.
    pub reason: String,
    /// When we saw it.
    pub since: Timestamp,
}

/// One key of an account, as the adapter sees it. Never carries the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatus {
    /// The account it belongs to.
    pub account: AccountId,
    /// The key's name from configuration.
    pub key: String,
    /// Since when fal refuses it (401); `None` while it is in use.
    pub refused_since: Option<Timestamp>,
}

/// An account with its credit history, as of one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountView {
    /// The stored record.
    pub record: AccountRecord,
    /// Purchases and spend under the credit policy, with the record's limit override.
    pub credit: AccountCredit,
    /// The concurrency limit at the instant the view was made.
    pub limit: u32,
}

impl AccountView {
    /// The view of `record` at `now`, from its purchases and spend under `policy`.
    pub fn new(
        record: AccountRecord,
        policy: &CreditPolicy,
        purchases: Vec<CreditPurchase>,
        spends: Vec<CreditSpend>,
        now: Timestamp,
    ) -> Self {
        let mut credit = AccountCredit::new(policy.clone());
        credit.override_limit = record.limit_override;
        credit.purchases = purchases;
        credit.spends = spends;
        let limit = credit.concurrency_limit(now);
        Self { record, credit, limit }
    }

    /// The account's id.
    pub fn id(&self) -> &AccountId {
        &self.record.id
    }

    /// Purchases in the trailing window at `now`.
    pub fn window_sum(&self, now: Timestamp) -> Money {
        self.credit.window_sum(now)
    }

    /// Unexpired credit minus spend at `now`.
    pub fn balance(&self, now: Timestamp) -> Money {
        self.credit.balance(now)
    }

    /// Whether the dispatcher may give it work: the record takes work, fal accepts one of
    /// its keys (an account with no key reported is trusted), and this process neither saw
    /// it locked (`locked_here`) nor paused it (`paused`).
    pub fn usable(&self, keys: &[KeyStatus], locked_here: bool, paused: bool) -> bool {
        let mut own = keys.iter().filter(|k| k.account == self.record.id).peekable();
        let has_key = own.peek().is_none() || own.any(|k| k.refused_since.is_none());
        self.record.takes_work() && has_key && !locked_here && !paused
    }

    /// The reports' state of the account at `now`, with `in_flight` jobs on it.
    pub fn state(&self, in_flight: u32, now: Timestamp) -> AccountState {
        AccountState {
            id: self.record.id.clone(),
            limit: self.limit,
            in_flight,
            usable: self.record.takes_work(),
            locked: self.record.locked.is_some(),
            disabled: self.record.disabled,
            window_sum: self.window_sum(now),
            balance: self.balance(now),
            credit: self.credit.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn record(name: &str) -> AccountRecord {
        AccountRecord {
            id: AccountId::new(name),
            key_names: vec!["primary".into()],
            disabled: false,
            locked: None,
            limit_override: None,
            retired_since: None,
        }
    }

    fn key(account: &str, name: &str, refused: bool) -> KeyStatus {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        KeyStatus { account: AccountId::new(account), key: name.into(), refused_since: refused.then_some(at) }
    }

    #[test]
    fn the_limit_follows_the_window_unless_overridden_and_the_balance_subtracts_spend() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        let policy = CreditPolicy::default();
        let bought =
            CreditPurchase { amount: Money::from_dollars(100), purchased_at: now - chrono::TimeDelta::days(3) };
        let spent = CreditSpend { amount: Money::from_dollars(30), spent_at: now - chrono::TimeDelta::days(1) };
        let view = AccountView::new(record("a"), &policy, vec![bought], vec![spent], now);
        let mut expected = AccountCredit::new(policy.clone());
        expected.purchases = vec![bought];
        expected.spends = vec![spent];
        assert_eq!(view.limit, expected.concurrency_limit(now));
        assert_eq!(view.limit, 20, "$100 in the window: the second paid tier");
        assert_eq!(view.window_sum(now), Money::from_dollars(100));
        assert_eq!(view.balance(now), Money::from_dollars(70));

        let overridden = AccountRecord { limit_override: Some(55), ..record("a") };
        let view = AccountView::new(overridden, &policy, vec![bought], vec![spent], now);
        assert_eq!(view.limit, 55);
        assert_eq!(view.state(3, now).limit, 55);
        assert_eq!(view.state(3, now).in_flight, 3);
    }

    #[test]
    fn usable_needs_the_record_a_key_no_local_lock_and_no_pause() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        let policy = CreditPolicy::default();
        let view = AccountView::new(record("a"), &policy, vec![], vec![], now);
        assert!(view.usable(&[], false, false), "no key reported: trusted");
        assert!(view.usable(&[key("a", "k1", true), key("a", "k2", false)], false, false));
        assert!(!view.usable(&[key("a", "k1", true), key("b", "k2", false)], false, false), "every own key refused");
        assert!(!view.usable(&[], true, false), "locked here");
        assert!(!view.usable(&[], false, true), "breaker open");
        let disabled = AccountView::new(AccountRecord { disabled: true, ..record("a") }, &policy, vec![], vec![], now);
        assert!(!disabled.usable(&[], false, false));
        assert!(!disabled.state(0, now).usable);
    }
}
