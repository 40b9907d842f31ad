//! Usage rows grouped by model, user, account and day, with each calendar month's volume
//! discount applied to fal's list cost.

use super::rows::{DayCount, UsageRow};
use crate::Money;
use crate::discount::{DiscountTier, VolumeDiscounts};
use chrono::{Datelike, NaiveDate};
use std::collections::BTreeMap;

/// A calendar month as `(year, month)`.
pub type Month = (i32, u32);

/// The month a day is in.
pub fn month_of(day: NaiveDate) -> Month {
    (day.year(), day.month())
}

/// The volume tier each calendar month reached.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonthTiers {
    months: BTreeMap<Month, (u64, DiscountTier)>,
}

impl MonthTiers {
    /// The tier of each month from its request count (`requests` per day; days of other
    /// months are counted in theirs).
    pub fn new(requests: &[DayCount], discounts: &VolumeDiscounts) -> Self {
        let mut counts: BTreeMap<Month, u64> = BTreeMap::new();
        for day in requests {
            *counts.entry(month_of(day.day)).or_default() += day.count;
        }
        let months = counts.into_iter().map(|(month, n)| (month, (n, discounts.tier_for(n).clone()))).collect();
        MonthTiers { months }
    }

    /// The month's request count and tier; no requests means the standard tier.
    pub fn get(&self, month: Month) -> (u64, DiscountTier) {
        self.months.get(&month).cloned().unwrap_or_else(|| (0, DiscountTier::standard()))
    }

    /// Every month with requests, in order.
    pub fn months(&self) -> impl Iterator<Item = (Month, u64, &DiscountTier)> {
        self.months.iter().map(|(month, (n, tier))| (*month, *n, tier))
    }
}

/// Sums of one group of finished jobs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Line {
    /// What the group is (a model id, a user id, an account, a day).
    pub key: String,
    /// Jobs finished.
    pub jobs: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// Of which failed.
    pub failed: u64,
    /// Of which canceled.
    pub canceled: u64,
    /// What users were charged.
    pub user_charged: Money,
    /// What users got back.
    pub user_refunded: Money,
    /// What fal bills at list price.
    pub fal_list: Money,
    /// What fal bills after each month's volume discount.
    pub fal_discounted: Money,
}

impl Line {
    /// What users paid beyond fal's discounted bill (negative when the bot subsidizes).
    pub fn margin(&self) -> Money {
        self.user_charged.checked_sub(self.fal_discounted).unwrap_or(Money::ZERO)
    }
}

fn add(a: Money, b: Money) -> Money {
    a.saturating_add(b)
}

/// Accumulates rows into one line, keeping list cost per month for the discount.
#[derive(Default)]
struct Acc {
    line: Line,
    list_by_month: BTreeMap<Month, Money>,
}

impl Acc {
    fn push(&mut self, row: &UsageRow) {
        let l = &mut self.line;
        l.jobs += row.jobs;
        l.succeeded += row.succeeded;
        l.failed += row.failed;
        l.canceled += row.canceled;
        l.user_charged = add(l.user_charged, row.user_charged);
        l.user_refunded = add(l.user_refunded, row.user_refunded);
        l.fal_list = add(l.fal_list, row.fal_cost);
        let month = self.list_by_month.entry(month_of(row.day)).or_default();
        *month = add(*month, row.fal_cost);
    }

    fn finish(mut self, key: String, tiers: &MonthTiers) -> Line {
        self.line.key = key;
        self.line.fal_discounted =
            self.list_by_month.iter().map(|(month, list)| tiers.get(*month).1.apply(*list)).fold(Money::ZERO, add);
        self.line
    }
}

/// Sums `rows` by `key`, in key order.
pub fn group<K: Ord>(
    rows: &[UsageRow],
    tiers: &MonthTiers,
    key: impl Fn(&UsageRow) -> K,
    name: impl Fn(&K) -> String,
) -> Vec<Line> {
    let mut groups: BTreeMap<K, Acc> = BTreeMap::new();
    for row in rows {
        groups.entry(key(row)).or_default().push(row);
    }
    groups.into_iter().map(|(k, acc)| acc.finish(name(&k), tiers)).collect()
}

/// One line for all of `rows`.
pub fn total(rows: &[UsageRow], tiers: &MonthTiers) -> Line {
    let mut acc = Acc::default();
    for row in rows {
        acc.push(row);
    }
    acc.finish("total".to_owned(), tiers)
}

/// The usage of a period, every way the operator looks at it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Breakdown {
    /// Everything.
    pub total: Line,
    /// Per model, by model id.
    pub by_model: Vec<Line>,
    /// Per user, biggest charge first.
    pub by_user: Vec<Line>,
    /// Per account (`(none)` for jobs that never left the queue), by account id.
    pub by_account: Vec<Line>,
    /// Per UTC day.
    pub by_day: Vec<Line>,
}

/// Groups `rows` every way, discounting with `tiers`.
pub fn breakdown(rows: &[UsageRow], tiers: &MonthTiers) -> Breakdown {
    let mut by_user = group(rows, tiers, |r| r.user.0, |u| u.to_string());
    by_user.sort_by(|a, b| b.user_charged.cmp(&a.user_charged).then_with(|| b.jobs.cmp(&a.jobs)));
    Breakdown {
        total: total(rows, tiers),
        by_model: group(rows, tiers, |r| r.model.as_str().to_owned(), Clone::clone),
        by_user,
        by_account: group(
            rows,
            tiers,
            |r| r.account.as_ref().map_or_else(|| "(none)".to_owned(), |a| a.as_str().to_owned()),
            Clone::clone,
        ),
        by_day: group(rows, tiers, |r| r.day, |d| d.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountId, ModelId, UserId};

    fn day(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, d).unwrap()
    }

    fn row(d: NaiveDate, user: i64, model: &str, account: Option<&str>, jobs: u64, fal_cents: i64) -> UsageRow {
        UsageRow {
            day: d,
            user: UserId(user),
            model: ModelId::new(model),
            account: account.map(AccountId::new),
            jobs,
            succeeded: jobs,
            failed: 0,
            canceled: 0,
            user_charged: Money::from_cents(fal_cents + jobs as i64),
            user_refunded: Money::ZERO,
            fal_cost: Money::from_cents(fal_cents),
        }
    }

    #[test]
    fn each_month_gets_the_tier_its_request_count_reached() {
        let requests = [
            DayCount { day: day(10, 30), count: 600 },
            DayCount { day: day(10, 31), count: 500 },
            DayCount { day: day(11, 1), count: 999 },
        ];
        let tiers = MonthTiers::new(&requests, &VolumeDiscounts::default());
        assert_eq!(tiers.get((2026, 10)).0, 1_100);
        assert_eq!(tiers.get((2026, 10)).1.percent_off, 5);
        assert_eq!(tiers.get((2026, 11)).1.name, "standard");
        assert_eq!(tiers.get((2026, 12)), (0, DiscountTier::standard()));

        // $100 list in October (5 % off) and $50 in November (none).
        let rows = [
            row(day(10, 31), 1, "m", Some("a"), 10, 6_000),
            row(day(10, 31), 2, "m", Some("a"), 5, 4_000),
            row(day(11, 1), 1, "m", None, 3, 5_000),
        ];
        let b = breakdown(&rows, &tiers);
        assert_eq!(b.total.fal_list, Money::from_dollars(150));
        assert_eq!(b.total.fal_discounted, Money::from_dollars(95 + 50));
        assert_eq!(b.total.jobs, 18);
        assert_eq!(b.total.user_charged, Money::from_cents(15_000 + 18));
        assert_eq!(b.total.margin(), Money::from_cents(500 + 18));
        let users: Vec<(&str, Money)> = b.by_user.iter().map(|l| (l.key.as_str(), l.fal_discounted)).collect();
        assert_eq!(users, vec![("1", Money::from_dollars(57 + 50)), ("2", Money::from_dollars(38))]);
        let accounts: Vec<&str> = b.by_account.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(accounts, vec!["(none)", "a"]);
        let days: Vec<(&str, u64)> = b.by_day.iter().map(|l| (l.key.as_str(), l.jobs)).collect();
        assert_eq!(days, vec![("2026-10-31", 15), ("2026-11-01", 3)]);
    }
}
