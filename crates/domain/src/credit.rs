//! fal credit per account: purchases → trailing-window sum → concurrency limit, the future
//! instants that limit drops, expiry, balance and the lock.
//!
//! # Time rules
//! Every interval is half-open, `[start, end)`. A purchase made at `p` counts toward the
//! window at instants `p <= t < p + window` and can be spent at `p <= t < p + expiry`. Seen
//! from `now`, the window holds purchases made in `(now - window, now]`: a purchase exactly
//! 28 days old has just left, one made at `now` is in. Records dated after `now` have not
//! happened yet from `now`'s point of view and are ignored.
//!
//! # Consumption
//! Spend draws on the oldest unexpired purchase first (FIFO), and whatever is left of a
//! purchase when it expires is lost. That is why spend carries a timestamp: with only a
//! total, spend made after an old purchase expired would be charged to it and the balance
//! overstated. Spend with no unexpired credit to draw on becomes debt (a request may finish
//! after the balance reached zero), and the next purchase pays the debt first.
//!
//! Sums are exact in `i128` and saturate at `Money`'s range on the way out: no real account
//! holds $9.2 trillion, and a saturated sum still lands in the right tier.

use crate::Timestamp;
use crate::money::Money;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;

/// Credits bought for a fal account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditPurchase {
    /// What was bought; non-positive amounts count as nothing.
    pub amount: Money,
    /// When fal booked it: starts both its window and its expiry clock.
    pub purchased_at: Timestamp,
}

/// Usage fal billed against an account (one job, or a day's total).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditSpend {
    /// What was billed; non-positive amounts count as nothing.
    pub amount: Money,
    /// When it was billed; FIFO consumption needs it because credits expire.
    pub spent_at: Timestamp,
}

/// One step of the concurrency table: at least `min_window_sum` bought in the window earns `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyTier {
    /// Purchases in the window needed for this step.
    #[serde(with = "dollars")]
    pub min_window_sum: Money,
    /// Requests fal runs at once on this step.
    pub limit: u32,
}

/// fal's table of window sum → requests run at once; validated so the limit never falls
/// as purchases rise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TiersConfig", into = "TiersConfig")]
pub struct ConcurrencyTiers {
    base_limit: u32,
    tiers: Vec<ConcurrencyTier>,
}

/// A concurrency table that would make the limit fall as purchases rise, or never run anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TierTableError {
    /// A limit of zero would never run a request.
    #[error("the base concurrency limit must be at least 1")]
    ZeroBaseLimit,
    /// The base limit already covers a window sum of zero.
    #[error("tier {index}: the window sum must be above $0 (the base limit covers $0)")]
    ThresholdNotPositive {
        /// Position in the table, from 0.
        index: usize,
    },
    /// Tiers must be listed in increasing order of window sum.
    #[error("tier {index}: the window sum must be above the previous tier's")]
    ThresholdsNotIncreasing {
        /// Position in the table, from 0.
        index: usize,
    },
    /// Buying more must never lower the limit.
    #[error("tier {index}: the limit must not be below the previous tier's (or the base limit)")]
    LimitDecreases {
        /// Position in the table, from 0.
        index: usize,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TiersConfig {
    base_limit: u32,
    tiers: Vec<ConcurrencyTier>,
}

impl TryFrom<TiersConfig> for ConcurrencyTiers {
    type Error = TierTableError;
    fn try_from(config: TiersConfig) -> Result<Self, Self::Error> {
        ConcurrencyTiers::new(config.base_limit, config.tiers)
    }
}

impl From<ConcurrencyTiers> for TiersConfig {
    fn from(tiers: ConcurrencyTiers) -> Self {
        TiersConfig { base_limit: tiers.base_limit, tiers: tiers.tiers }
    }
}

impl Default for ConcurrencyTiers {
    /// fal's published table: 2 for a new account; 10 / 20 / 30 / 40 from $10 / $100 / $500 / $1000.
    fn default() -> Self {
        let tier = |dollars, limit| ConcurrencyTier { min_window_sum: Money::from_dollars(dollars), limit };
        ConcurrencyTiers { base_limit: 2, tiers: vec![tier(10, 10), tier(100, 20), tier(500, 30), tier(1000, 40)] }
    }
}

impl ConcurrencyTiers {
    /// A table with `base_limit` below the first tier.
    ///
    /// # Errors
    /// [`TierTableError`] when the base limit is 0, a threshold is not above $0 or not above
    /// the previous one, or a limit is below the previous one.
    pub fn new(base_limit: u32, tiers: Vec<ConcurrencyTier>) -> Result<Self, TierTableError> {
        if base_limit == 0 {
            return Err(TierTableError::ZeroBaseLimit);
        }
        let mut previous = ConcurrencyTier { min_window_sum: Money::ZERO, limit: base_limit };
        for (index, tier) in tiers.iter().enumerate() {
            if tier.min_window_sum <= Money::ZERO {
                return Err(TierTableError::ThresholdNotPositive { index });
            }
            if tier.min_window_sum <= previous.min_window_sum {
                return Err(TierTableError::ThresholdsNotIncreasing { index });
            }
            if tier.limit < previous.limit {
                return Err(TierTableError::LimitDecreases { index });
            }
            previous = *tier;
        }
        Ok(ConcurrencyTiers { base_limit, tiers })
    }

    /// The limit below the first tier.
    pub fn base_limit(&self) -> u32 {
        self.base_limit
    }

    /// The tiers, in increasing order of window sum.
    pub fn tiers(&self) -> &[ConcurrencyTier] {
        &self.tiers
    }

    /// Requests fal runs at once for `window_sum` bought in the window.
    pub fn limit_for(&self, window_sum: Money) -> u32 {
        self.tiers
            .iter()
            .rev()
            .find(|tier| window_sum >= tier.min_window_sum)
            .map_or(self.base_limit, |tier| tier.limit)
    }

    /// The smallest window sum that earns at least `limit`; `None` when no tier reaches it.
    pub fn threshold_for(&self, limit: u32) -> Option<Money> {
        if limit <= self.base_limit {
            return Some(Money::ZERO);
        }
        self.tiers.iter().find(|tier| tier.limit >= limit).map(|tier| tier.min_window_sum)
    }
}

/// The rules fal applies to every account: tiers, window, expiry and lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreditPolicy {
    /// Window sum → concurrency limit.
    pub tiers: ConcurrencyTiers,
    /// Length of the trailing purchase window, in days (fal: 28).
    pub window_days: u32,
    /// Days a purchase can be spent (fal: 365).
    pub expiry_days: u32,
    /// fal answers 403 "User is locked" when the balance is below this.
    #[serde(with = "dollars")]
    pub lock_threshold: Money,
}

impl Default for CreditPolicy {
    fn default() -> Self {
        CreditPolicy {
            tiers: ConcurrencyTiers::default(),
            window_days: 28,
            expiry_days: 365,
            lock_threshold: Money::ZERO,
        }
    }
}

impl CreditPolicy {
    /// The trailing purchase window.
    pub fn window(&self) -> TimeDelta {
        TimeDelta::days(i64::from(self.window_days))
    }

    /// How long a purchase can be spent.
    pub fn expiry(&self) -> TimeDelta {
        TimeDelta::days(i64::from(self.expiry_days))
    }
}

/// One fal account's credit history and the rules that turn it into limits and a balance.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccountCredit {
    /// Every purchase, in any order; old ones matter until they expire.
    pub purchases: Vec<CreditPurchase>,
    /// Billed usage, in any order.
    pub spends: Vec<CreditSpend>,
    /// A limit negotiated with fal's sales team; wins over the tiers.
    pub override_limit: Option<u32>,
    /// Tiers, window, expiry and lock threshold.
    pub policy: CreditPolicy,
}

/// A future instant the concurrency limit falls because purchases leave the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitDrop {
    /// When the limit falls.
    pub at: Timestamp,
    /// The limit just before `at`.
    pub from: u32,
    /// The limit from `at` on.
    pub to: u32,
    /// The purchases whose window ends at `at` (several when bought at the same instant).
    pub leaving: Vec<CreditPurchase>,
}

/// What to buy, and by when, so the current limit survives the next drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopUp {
    /// The smallest purchase that keeps the limit through the horizon.
    pub amount: Money,
    /// The first instant the limit would fall below `keep_limit`: buy before it.
    pub by: Timestamp,
    /// The limit the purchase keeps.
    pub keep_limit: u32,
    /// The limit at `by` without it.
    pub drops_to: u32,
}

impl fmt::Display for TopUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "buy {} by {} to keep limit {} (otherwise it drops to {})",
            self.amount,
            self.by.format("%Y-%m-%d %H:%M UTC"),
            self.keep_limit,
            self.drops_to
        )
    }
}

/// What is left of a purchase that expires soon, and is lost unless spent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringCredit {
    /// The purchase.
    pub purchase: CreditPurchase,
    /// When it can no longer be spent.
    pub expires_at: Timestamp,
    /// Its unspent remainder now.
    pub remaining: Money,
}

/// An unexpired purchase with its unspent remainder, in FIFO order.
#[derive(Debug, Clone, Copy)]
struct Lot {
    purchase: CreditPurchase,
    remaining: i128,
    expires_at: Timestamp,
}

/// The FIFO replay of purchases and spend up to an instant.
struct Ledger {
    lots: VecDeque<Lot>,
    debt: i128,
}

impl Ledger {
    fn balance(&self) -> i128 {
        self.lots.iter().map(|lot| lot.remaining).sum::<i128>() - self.debt
    }

    fn expire(&mut self, at: Timestamp) {
        self.lots.retain(|lot| lot.expires_at > at);
    }

    fn consume(&mut self, mut amount: i128) {
        while amount > 0 {
            let Some(front) = self.lots.front_mut() else { break };
            let take = amount.min(front.remaining);
            front.remaining -= take;
            amount -= take;
            if front.remaining <= 0 {
                self.lots.pop_front();
            }
        }
        self.debt += amount;
    }
}

const MILLIS_PER_DAY: i128 = 86_400_000;

impl AccountCredit {
    /// An account with no history under `policy`.
    pub fn new(policy: CreditPolicy) -> Self {
        AccountCredit { policy, ..AccountCredit::default() }
    }

    /// Purchases made in `(now - window, now]`.
    pub fn window_sum(&self, now: Timestamp) -> Money {
        let window = self.policy.window();
        saturate(
            self.purchases
                .iter()
                .filter(|p| p.purchased_at <= now && now < plus(p.purchased_at, window))
                .map(|p| positive(p.amount))
                .sum(),
        )
    }

    /// Requests fal runs at once on this account at `now`.
    pub fn concurrency_limit(&self, now: Timestamp) -> u32 {
        self.override_limit.unwrap_or_else(|| self.policy.tiers.limit_for(self.window_sum(now)))
    }

    /// Every future instant the limit falls, in time order, assuming no new purchases.
    ///
    /// Empty under an override limit, which does not depend on purchases.
    pub fn limit_drops(&self, now: Timestamp) -> Vec<LimitDrop> {
        if self.override_limit.is_some() {
            return Vec::new();
        }
        let window = self.policy.window();
        let mut current = self.concurrency_limit(now);
        let mut drops = Vec::new();
        for at in self.window_changes(now) {
            let limit = self.concurrency_limit(at);
            if limit < current {
                let leaving = self.purchases.iter().filter(|p| plus(p.purchased_at, window) == at).copied().collect();
                drops.push(LimitDrop { at, from: current, to: limit, leaving });
            }
            current = limit;
        }
        drops
    }

    /// The purchase that, made now, keeps the current limit through `[now, now + horizon)`;
    /// `None` when the limit holds anyway (or is an override).
    ///
    /// The horizon is capped at one window: a top-up made now leaves the window after that.
    pub fn topup_to_keep_limit(&self, now: Timestamp, horizon: TimeDelta) -> Option<TopUp> {
        if self.override_limit.is_some() {
            return None;
        }
        let end = plus(now, horizon.min(self.policy.window()));
        let keep_limit = self.concurrency_limit(now);
        let needed = self.policy.tiers.threshold_for(keep_limit)?;
        let checkpoints: Vec<Timestamp> = self.window_changes(now).into_iter().filter(|t| *t < end).collect();
        // Not simply the first drop: with purchases dated in the future the limit can rise
        // first and then fall back to where it is now, which needs nothing.
        let (by, drops_to) =
            checkpoints.iter().map(|t| (*t, self.concurrency_limit(*t))).find(|(_, limit)| *limit < keep_limit)?;
        let lowest = std::iter::once(now).chain(checkpoints).map(|t| self.window_sum(t)).min().unwrap_or(Money::ZERO);
        let amount = saturate(i128::from(needed.micros()) - i128::from(lowest.micros())).clamp_at_zero();
        Some(TopUp { amount, by, keep_limit, drops_to })
    }

    /// Unexpired purchased credit minus spend, by the FIFO rule in the module docs.
    pub fn balance(&self, now: Timestamp) -> Money {
        saturate(self.ledger(now).balance())
    }

    /// True when fal refuses work: the balance is below the lock threshold.
    pub fn is_locked(&self, now: Timestamp) -> bool {
        self.balance(now) < self.policy.lock_threshold
    }

    /// Purchases with an unspent remainder that expire in `(now, now + within]`, oldest first.
    pub fn expiring(&self, now: Timestamp, within: TimeDelta) -> Vec<ExpiringCredit> {
        let until = plus(now, within);
        self.ledger(now)
            .lots
            .into_iter()
            .filter(|lot| lot.expires_at <= until && lot.remaining > 0)
            .map(|lot| ExpiringCredit {
                purchase: lot.purchase,
                expires_at: lot.expires_at,
                remaining: saturate(lot.remaining),
            })
            .collect()
    }

    /// When the balance falls to the lock threshold at a steady `burn_per_day`, counting
    /// credit lost to expiry on the way; `None` if never. `Some(now)` when it already has.
    ///
    /// At the threshold the next billed request locks the account, so that is the instant
    /// an operator needs to know.
    pub fn runs_out_at(&self, now: Timestamp, burn_per_day: Money) -> Option<Timestamp> {
        let rate = i128::from(burn_per_day.micros()).max(0);
        let threshold = i128::from(self.policy.lock_threshold.micros());
        let mut ledger = self.ledger(now);
        let mut t = now;
        loop {
            let balance = ledger.balance();
            if balance <= threshold {
                return Some(t);
            }
            let next_expiry = ledger.lots.iter().map(|lot| lot.expires_at).min();
            if rate == 0 {
                t = next_expiry?;
                ledger.expire(t);
                continue;
            }
            // Each step ends at the nearest of: the threshold, the oldest lot spent, an expiry.
            let to_threshold = ceil_div((balance - threshold) * MILLIS_PER_DAY, rate);
            let to_front_spent = ledger.lots.front().map(|lot| ceil_div(lot.remaining * MILLIS_PER_DAY, rate));
            let to_expiry = next_expiry.map(|e| i128::from((e - t).num_milliseconds()));
            let step =
                [Some(to_threshold), to_front_spent, to_expiry].into_iter().flatten().min().unwrap_or(to_threshold);
            let later = plus(t, millis(step)?);
            if step == to_threshold {
                return Some(later);
            }
            // When the step is the oldest lot running dry, rounding up its duration makes
            // the consumption cover all of it, so `consume` always retires it: the loop ends.
            ledger.consume(rate * step / MILLIS_PER_DAY);
            t = match next_expiry {
                Some(e) if to_expiry == Some(step) => e,
                _ => later,
            };
            ledger.expire(t);
        }
    }

    /// Whole days until [`AccountCredit::runs_out_at`], rounded down; `None` if never.
    pub fn days_until_empty(&self, now: Timestamp, burn_per_day: Money) -> Option<i64> {
        self.runs_out_at(now, burn_per_day).map(|at| (at - now).num_days())
    }

    /// Instants after `now` when the window sum changes (a purchase enters or leaves), sorted.
    fn window_changes(&self, now: Timestamp) -> Vec<Timestamp> {
        let window = self.policy.window();
        let mut instants: Vec<Timestamp> = self
            .purchases
            .iter()
            .flat_map(|p| [p.purchased_at, plus(p.purchased_at, window)])
            .filter(|t| *t > now)
            .collect();
        instants.sort_unstable();
        instants.dedup();
        instants
    }

    /// Replays purchases and spend up to `now` in time order; at one instant purchases come
    /// first (credit bought can be spent at once) and expiry before either (credit that
    /// expires at `t` cannot pay for `t`).
    fn ledger(&self, now: Timestamp) -> Ledger {
        enum Entry {
            Purchase(CreditPurchase),
            Spend(i128),
        }
        let expiry = self.policy.expiry();
        let mut entries: Vec<(Timestamp, u8, Entry)> = self
            .purchases
            .iter()
            .filter(|p| p.purchased_at <= now)
            .map(|p| (p.purchased_at, 0, Entry::Purchase(*p)))
            .chain(
                self.spends
                    .iter()
                    .filter(|s| s.spent_at <= now)
                    .map(|s| (s.spent_at, 1, Entry::Spend(positive(s.amount)))),
            )
            .collect();
        entries.sort_by_key(|(at, order, _)| (*at, *order));
        let mut ledger = Ledger { lots: VecDeque::new(), debt: 0 };
        for (at, _, entry) in entries {
            ledger.expire(at);
            match entry {
                Entry::Purchase(purchase) => {
                    let amount = positive(purchase.amount);
                    let repaid = amount.min(ledger.debt);
                    ledger.debt -= repaid;
                    let remaining = amount - repaid;
                    let expires_at = plus(purchase.purchased_at, expiry);
                    if remaining > 0 {
                        ledger.lots.push_back(Lot { purchase, remaining, expires_at });
                    }
                }
                Entry::Spend(amount) => ledger.consume(amount),
            }
        }
        ledger.expire(now);
        ledger
    }
}

/// `t + d`, saturating at the end of representable time rather than panicking.
fn plus(t: Timestamp, d: TimeDelta) -> Timestamp {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn positive(amount: Money) -> i128 {
    i128::from(amount.micros().max(0))
}

fn saturate(micros: i128) -> Money {
    let clamped = micros.clamp(i128::from(i64::MIN), i128::from(i64::MAX));
    Money::from_micros(i64::try_from(clamped).unwrap_or_default())
}

fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    (numerator + denominator - 1) / denominator
}

/// `None` beyond what `TimeDelta` can hold: so far ahead it means never.
fn millis(ms: i128) -> Option<TimeDelta> {
    i64::try_from(ms).ok().and_then(TimeDelta::try_milliseconds)
}

/// Serde for operator-written amounts: `"12.50"`, `"$0.04"` or whole dollars `12`.
///
/// Not `Money`'s own integer micro-dollars: in a config file `monthly_budget = 100` must
/// mean $100, not $0.0001. Serializes to an exact decimal string. Shared by `quota` and
/// `budget`.
pub(crate) mod dollars {
    use crate::money::Money;
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
    use std::fmt;

    pub(crate) fn serialize<S: Serializer>(money: &Money, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&exact(*money))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        deserializer.deserialize_any(DollarsVisitor)
    }

    /// The amount with every significant decimal, no rounding: `12.5`, `0.000001`, `10`.
    pub(crate) fn exact(money: Money) -> String {
        money.plain_exact()
    }

    struct DollarsVisitor;

    impl de::Visitor<'_> for DollarsVisitor {
        type Value = Money;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a dollar amount: 12, 12.5 or text (\"12.50\", \"$0.04\")")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Money, E> {
            v.parse().map_err(E::custom)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Money, E> {
            Money::from_dollars(1).checked_mul(v).map_err(E::custom)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Money, E> {
            let v = i64::try_from(v).map_err(E::custom)?;
            self.visit_i64(v)
        }

        /// A bare decimal in TOML (`12.5`) or a number-like environment value arrives as a
        /// float. Its shortest round-trip text is the decimal the operator wrote (for up to
        /// 15 significant digits), so the amount is parsed from that text, never scaled
        /// as a float; more than six decimals are refused as in text.
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Money, E> {
            if !v.is_finite() {
                return Err(E::custom(format!("not a dollar amount: {v}")));
            }
            self.visit_str(&v.to_string())
        }
    }

    /// An amount in a config file, for fields that `with` cannot reach (inside `Option`).
    #[derive(Clone, Copy)]
    pub(crate) struct Dollars(pub(crate) Money);

    impl Serialize for Dollars {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serialize(&self.0, serializer)
        }
    }

    impl<'de> Deserialize<'de> for Dollars {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserialize(deserializer).map(Dollars)
        }
    }

    /// `Option<Money>` as an optional dollar amount; pair with `default` and
    /// `skip_serializing_if = "Option::is_none"`.
    pub(crate) mod option {
        use super::Dollars;
        use crate::money::Money;
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        pub(crate) fn serialize<S: Serializer>(money: &Option<Money>, serializer: S) -> Result<S::Ok, S::Error> {
            money.map(Dollars).serialize(serializer)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Money>, D::Error> {
            Ok(Option::<Dollars>::deserialize(deserializer)?.map(|d| d.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t0() -> Timestamp {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn day(n: i64) -> Timestamp {
        t0() + TimeDelta::days(n)
    }

    fn buy(dollars: i64, at: Timestamp) -> CreditPurchase {
        CreditPurchase { amount: Money::from_dollars(dollars), purchased_at: at }
    }

    fn spend(dollars: i64, at: Timestamp) -> CreditSpend {
        CreditSpend { amount: Money::from_dollars(dollars), spent_at: at }
    }

    fn account(purchases: Vec<CreditPurchase>, spends: Vec<CreditSpend>) -> AccountCredit {
        AccountCredit { purchases, spends, ..AccountCredit::default() }
    }

    #[test]
    fn default_tiers_follow_fals_table_at_each_threshold() {
        let tiers = ConcurrencyTiers::default();
        let limit = |micros| tiers.limit_for(Money::from_micros(micros));
        assert_eq!(limit(0), 2);
        assert_eq!(limit(9_999_999), 2);
        assert_eq!(limit(10_000_000), 10);
        assert_eq!(limit(99_999_999), 10);
        assert_eq!(limit(100_000_000), 20);
        assert_eq!(limit(500_000_000), 30);
        assert_eq!(limit(999_999_999), 30);
        assert_eq!(limit(1_000_000_000), 40);
        assert_eq!(limit(50_000_000_000), 40);
        assert_eq!(tiers.threshold_for(2), Some(Money::ZERO));
        assert_eq!(tiers.threshold_for(20), Some(Money::from_dollars(100)));
        assert_eq!(tiers.threshold_for(15), Some(Money::from_dollars(100)));
        assert_eq!(tiers.threshold_for(41), None);
    }

    #[test]
    fn tier_tables_that_could_lower_the_limit_are_refused() {
        let tier = |dollars, limit| ConcurrencyTier { min_window_sum: Money::from_dollars(dollars), limit };
        assert_eq!(ConcurrencyTiers::new(0, vec![]), Err(TierTableError::ZeroBaseLimit));
        assert_eq!(ConcurrencyTiers::new(2, vec![tier(0, 5)]), Err(TierTableError::ThresholdNotPositive { index: 0 }));
        assert_eq!(
            ConcurrencyTiers::new(2, vec![tier(10, 10), tier(10, 20)]),
            Err(TierTableError::ThresholdsNotIncreasing { index: 1 })
        );
        assert_eq!(
            ConcurrencyTiers::new(2, vec![tier(10, 10), tier(100, 5)]),
            Err(TierTableError::LimitDecreases { index: 1 })
        );
        assert_eq!(ConcurrencyTiers::new(5, vec![tier(10, 4)]), Err(TierTableError::LimitDecreases { index: 0 }));
        assert!(ConcurrencyTiers::new(2, vec![tier(10, 10), tier(100, 10)]).is_ok());
    }

    #[test]
    fn policy_reads_from_toml_in_dollars() {
        let policy: CreditPolicy = toml::from_str(
            r#"
            window_days = 30
            lock_threshold = "0.50"
            [tiers]
            base_limit = 3
            tiers = [{ min_window_sum = 25, limit = 12 }, { min_window_sum = "$250.5", limit = 24 }]
            "#,
        )
        .unwrap();
        assert_eq!(policy.window_days, 30);
        assert_eq!(policy.expiry_days, 365, "unset fields keep fal's defaults");
        assert_eq!(policy.lock_threshold, Money::from_cents(50));
        assert_eq!(policy.tiers.limit_for(Money::from_dollars(25)), 12);
        assert_eq!(policy.tiers.tiers()[1].min_window_sum, Money::from_micros(250_500_000));
        let again: CreditPolicy = toml::from_str(&toml::to_string(&policy).unwrap()).unwrap();
        assert_eq!(again, policy);

        let bad =
            toml::from_str::<CreditPolicy>("[tiers]\nbase_limit = 2\ntiers = [{ min_window_sum = 0, limit = 5 }]");
        assert!(bad.unwrap_err().to_string().contains("above $0"));
        let decimal = toml::from_str::<CreditPolicy>("lock_threshold = 0.1").unwrap();
        assert_eq!(decimal.lock_threshold, Money::from_cents(10), "a bare decimal reads as written");
        assert!(toml::from_str::<CreditPolicy>("lock_threshold = 0.0000001").is_err(), "seven decimals");
        assert!(toml::from_str::<CreditPolicy>("lock_threshold = nan").is_err());
        assert!(toml::from_str::<CreditPolicy>("windw_days = 3").is_err(), "typos are refused");
    }

    #[test]
    fn dollars_serialize_exactly() {
        assert_eq!(dollars::exact(Money::from_micros(12_500_000)), "12.5");
        assert_eq!(dollars::exact(Money::from_micros(1)), "0.000001");
        assert_eq!(dollars::exact(Money::from_dollars(10)), "10");
        assert_eq!(dollars::exact(Money::from_micros(-1_250_000)), "-1.25");
    }

    #[test]
    fn window_is_half_open_a_purchase_exactly_28_days_old_has_left() {
        let now = day(28);
        let a = account(vec![buy(100, day(0))], vec![]);
        assert_eq!(a.window_sum(now), Money::ZERO);
        assert_eq!(a.concurrency_limit(now), 2);
        let just_before = now - TimeDelta::seconds(1);
        assert_eq!(a.window_sum(just_before), Money::from_dollars(100));
        assert_eq!(a.concurrency_limit(just_before), 20);

        let b = account(vec![buy(10, now), buy(100, now + TimeDelta::seconds(1))], vec![]);
        assert_eq!(b.window_sum(now), Money::from_dollars(10), "bought at now counts; bought later does not yet");
    }

    #[test]
    fn window_sums_purchases_across_tiers() {
        let a = account(vec![buy(60, day(0)), buy(50, day(10)), buy(400, day(-30))], vec![]);
        assert_eq!(a.window_sum(day(15)), Money::from_dollars(110));
        assert_eq!(a.concurrency_limit(day(15)), 20);
    }

    #[test]
    fn override_limit_wins_and_never_drops() {
        let mut a = account(vec![buy(100, day(0))], vec![]);
        a.override_limit = Some(100);
        assert_eq!(a.concurrency_limit(day(1)), 100);
        assert_eq!(a.concurrency_limit(day(40)), 100);
        assert!(a.limit_drops(day(1)).is_empty());
        assert_eq!(a.topup_to_keep_limit(day(1), TimeDelta::days(28)), None);
    }

    #[test]
    fn limit_drops_at_the_exact_instants_purchases_leave() {
        let first = buy(60, day(0));
        let second = buy(50, day(10));
        let a = account(vec![second, first], vec![]);
        assert_eq!(
            a.limit_drops(day(15)),
            vec![
                LimitDrop { at: day(28), from: 20, to: 10, leaving: vec![first] },
                LimitDrop { at: day(38), from: 10, to: 2, leaving: vec![second] },
            ]
        );
        assert_eq!(a.limit_drops(day(28)).len(), 1, "a drop at now is not in the future");
    }

    #[test]
    fn purchases_leaving_together_make_one_drop_and_staying_in_tier_makes_none() {
        let a = account(vec![buy(5, day(0)), buy(5, day(0))], vec![]);
        let drops = a.limit_drops(day(1));
        assert_eq!(drops.len(), 1);
        assert_eq!((drops[0].from, drops[0].to, drops[0].leaving.len()), (10, 2, 2));

        let b = account(vec![buy(50, day(0)), buy(150, day(1))], vec![]);
        assert_eq!(
            b.limit_drops(day(2)).iter().map(|d| d.at).collect::<Vec<_>>(),
            vec![day(29)],
            "$150 alone keeps 20"
        );
    }

    #[test]
    fn topup_covers_the_lowest_window_sum_within_the_horizon() {
        let a = account(vec![buy(60, day(0)), buy(50, day(10))], vec![]);
        let now = day(15);
        let month = a.topup_to_keep_limit(now, TimeDelta::days(30)).unwrap();
        assert_eq!(month, TopUp { amount: Money::from_dollars(100), by: day(28), keep_limit: 20, drops_to: 10 });
        assert_eq!(
            month.to_string(),
            "buy $100.0000 by 2026-01-29 12:00 UTC to keep limit 20 (otherwise it drops to 10)"
        );
        let fortnight = a.topup_to_keep_limit(now, TimeDelta::days(14)).unwrap();
        assert_eq!(fortnight.amount, Money::from_dollars(50), "only the first purchase leaves before day 29");
        assert_eq!(
            a.topup_to_keep_limit(now, TimeDelta::days(13)),
            None,
            "the drop at now + 13d is outside [now, now + 13d)"
        );
        assert_eq!(a.topup_to_keep_limit(now, TimeDelta::days(10)), None);
    }

    #[test]
    fn no_topup_when_the_limit_only_rises_and_falls_back() {
        // $400 keeps 20; a $100 purchase dated later lifts it to 30 for a second, then the
        // $400 leaves and it is 20 again: never below today's limit.
        let a = account(vec![buy(400, day(0)), buy(100, day(28) - TimeDelta::seconds(1))], vec![]);
        assert_eq!(a.limit_drops(day(3)).len(), 2, "30 -> 20, then 20 -> 2 when the $100 leaves");
        assert_eq!(a.topup_to_keep_limit(day(3), TimeDelta::days(28)), None);
    }

    #[test]
    fn balance_spends_oldest_first_and_loses_what_expires() {
        // Spend covered by the old purchase before it expires: nothing is lost.
        let a = account(vec![buy(10, day(0)), buy(10, day(100))], vec![spend(15, day(200))]);
        assert_eq!(a.balance(day(370)), Money::from_dollars(5));
        // The old purchase's unspent $7 is lost at expiry.
        let b = account(vec![buy(10, day(0)), buy(10, day(100))], vec![spend(3, day(10))]);
        assert_eq!(b.balance(day(364)), Money::from_dollars(17));
        assert_eq!(b.balance(day(365)), Money::from_dollars(10));
        // Spend after an expiry draws on live credit only.
        let c = account(vec![buy(10, day(0)), buy(10, day(400))], vec![spend(5, day(401))]);
        assert_eq!(c.balance(day(401)), Money::from_dollars(5));
    }

    #[test]
    fn a_purchase_exactly_365_days_old_has_expired() {
        let a = account(vec![buy(10, day(0))], vec![]);
        assert_eq!(a.balance(day(365) - TimeDelta::seconds(1)), Money::from_dollars(10));
        assert_eq!(a.balance(day(365)), Money::ZERO);
        // Credit that expires at t cannot pay for spend at t.
        let b = account(vec![buy(10, day(0))], vec![spend(1, day(365))]);
        assert_eq!(b.balance(day(365)), Money::from_dollars(-1));
    }

    #[test]
    fn spend_beyond_credit_is_debt_that_the_next_purchase_repays() {
        let a = account(vec![buy(10, day(5))], vec![spend(4, day(1))]);
        assert_eq!(a.balance(day(2)), Money::from_dollars(-4));
        assert!(a.is_locked(day(2)));
        assert_eq!(a.balance(day(5)), Money::from_dollars(6));
        assert!(!a.is_locked(day(5)));
        // The debt was repaid from the purchase, so only $6 of it can expire.
        assert_eq!(a.expiring(day(5), TimeDelta::days(365))[0].remaining, Money::from_dollars(6));
    }

    #[test]
    fn lock_is_strictly_below_the_threshold() {
        let mut a = account(vec![buy(2, day(0))], vec![spend(1, day(1))]);
        a.policy.lock_threshold = Money::from_dollars(1);
        assert!(!a.is_locked(day(1)), "exactly at the threshold still runs");
        a.spends.push(CreditSpend { amount: Money::from_micros(1), spent_at: day(2) });
        assert!(a.is_locked(day(2)));
        let empty = AccountCredit::default();
        assert!(!empty.is_locked(day(0)), "a $0 balance is not below a $0 threshold");
    }

    #[test]
    fn expiring_lists_unspent_remainders_in_the_half_open_window() {
        let old = buy(10, day(0));
        let newer = buy(20, day(30));
        let spent = buy(5, day(-10));
        let a = account(vec![newer, old, spent], vec![spend(5, day(-5)), spend(4, day(1))]);
        let now = day(340);
        assert_eq!(
            a.expiring(now, TimeDelta::days(25)),
            vec![ExpiringCredit { purchase: old, expires_at: day(365), remaining: Money::from_dollars(6) }],
            "the spent purchase is not listed; expiry at exactly now + 25d is included"
        );
        assert_eq!(a.expiring(now, TimeDelta::days(25) - TimeDelta::seconds(1)), vec![]);
        assert_eq!(a.expiring(now, TimeDelta::days(55)).len(), 2);
        assert_eq!(a.expiring(day(365), TimeDelta::days(1)), vec![], "expiring at now has already expired");
    }

    #[test]
    fn runs_out_at_a_steady_burn() {
        let a = account(vec![buy(10, day(0))], vec![]);
        assert_eq!(a.runs_out_at(day(0), Money::from_dollars(1)), Some(day(10)));
        assert_eq!(a.days_until_empty(day(0), Money::from_dollars(1)), Some(10));
        assert_eq!(a.days_until_empty(day(0), Money::from_dollars(3)), Some(3), "3.33 days rounds down");
        let mut locked_sooner = a.clone();
        locked_sooner.policy.lock_threshold = Money::from_dollars(2);
        assert_eq!(locked_sooner.runs_out_at(day(0), Money::from_dollars(1)), Some(day(8)));
        let empty = AccountCredit::default();
        assert_eq!(empty.runs_out_at(day(0), Money::from_dollars(1)), Some(day(0)));
    }

    #[test]
    fn runs_out_early_when_credit_expires_unspent() {
        let a = account(vec![buy(10, day(0)), buy(10, day(100))], vec![]);
        // From day 360 at $1/day: $5 of the first purchase is spent, $5 expires at day 365,
        // then the second lasts 10 more days.
        assert_eq!(a.runs_out_at(day(360), Money::from_dollars(1)), Some(day(375)));
        // With no burn the balance still reaches zero when the last purchase expires.
        assert_eq!(a.runs_out_at(day(360), Money::ZERO), Some(day(465)));
        let mut below = a.clone();
        below.policy.lock_threshold = Money::from_dollars(-1);
        assert_eq!(below.runs_out_at(day(360), Money::ZERO), None, "a $0 balance is above a -$1 lock");
        assert_eq!(
            AccountCredit { policy: below.policy, ..AccountCredit::default() }.runs_out_at(day(0), Money::ZERO),
            None
        );
    }

    prop_compose! {
        fn purchase()(offset in 0i64..60 * 86_400, cents in 1i64..150_000) -> CreditPurchase {
            CreditPurchase { amount: Money::from_cents(cents), purchased_at: t0() + TimeDelta::seconds(offset) }
        }
    }

    fn instant() -> impl Strategy<Value = Timestamp> {
        (0i64..90 * 86_400).prop_map(|offset| t0() + TimeDelta::seconds(offset))
    }

    proptest! {
        #[test]
        fn adding_a_purchase_never_lowers_the_limit(
            purchases in prop::collection::vec(purchase(), 0..12), extra in purchase(), now in instant()
        ) {
            let before = account(purchases, vec![]);
            let mut after = before.clone();
            after.purchases.push(extra);
            prop_assert!(after.concurrency_limit(now) >= before.concurrency_limit(now));
        }

        #[test]
        fn limit_drops_are_ordered_and_match_the_limit(
            purchases in prop::collection::vec(purchase(), 0..12), now in instant()
        ) {
            let a = account(purchases, vec![]);
            let drops = a.limit_drops(now);
            for pair in drops.windows(2) {
                prop_assert!(pair[0].at < pair[1].at);
            }
            for drop in &drops {
                prop_assert!(drop.at > now);
                prop_assert!(drop.from > drop.to);
                prop_assert_eq!(drop.to, a.concurrency_limit(drop.at));
                prop_assert_eq!(drop.from, a.concurrency_limit(drop.at - TimeDelta::milliseconds(1)));
                prop_assert!(!drop.leaving.is_empty());
            }
        }

        #[test]
        fn topup_is_the_least_purchase_that_keeps_the_limit(
            purchases in prop::collection::vec(purchase(), 1..10), now in instant(), days in 1i64..40
        ) {
            let a = account(purchases, vec![]);
            let horizon = TimeDelta::days(days);
            let end = now + horizon.min(a.policy.window());
            let checkpoints: Vec<Timestamp> =
                std::iter::once(now).chain(a.window_changes(now).into_iter().filter(|t| *t < end)).collect();
            let keep = a.concurrency_limit(now);
            let Some(topup) = a.topup_to_keep_limit(now, horizon) else {
                prop_assert!(checkpoints.iter().all(|t| a.concurrency_limit(*t) >= keep));
                return Ok(());
            };
            prop_assert_eq!(topup.keep_limit, keep);
            prop_assert_eq!(topup.drops_to, a.concurrency_limit(topup.by));
            let with = |amount: Money| {
                let mut b = a.clone();
                b.purchases.push(CreditPurchase { amount, purchased_at: now });
                checkpoints.iter().all(|t| b.concurrency_limit(*t) >= topup.keep_limit)
            };
            prop_assert!(with(topup.amount));
            prop_assert!(!with(topup.amount.checked_sub(Money::from_micros(1)).unwrap()));
        }

        #[test]
        fn without_expiry_balance_is_purchases_minus_spend(
            purchases in prop::collection::vec(purchase(), 0..10),
            spent in prop::collection::vec((0i64..60 * 86_400, 1i64..100_000), 0..10),
        ) {
            let spends: Vec<CreditSpend> = spent
                .iter()
                .map(|(offset, cents)| CreditSpend {
                    amount: Money::from_cents(*cents),
                    spent_at: t0() + TimeDelta::seconds(*offset),
                })
                .collect();
            let now = day(60);
            let bought: i64 = purchases.iter().map(|p| p.amount.micros()).sum();
            let used: i64 = spends.iter().map(|s| s.amount.micros()).sum();
            let a = account(purchases, spends);
            prop_assert_eq!(a.balance(now), Money::from_micros(bought - used));
        }
    }
}
