//! The operator's monthly budget: which alert thresholds the month's spend has crossed.
//!
//! Each threshold fires once per UTC month. Storage remembers what fired under the
//! period key; this module only decides.

use crate::Timestamp;
use crate::credit::dollars;
use crate::money::Money;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The operator's monthly budget and the percentages of it that raise an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetPolicy {
    /// The month's budget; `None` or $0 turns alerts off.
    #[serde(with = "dollars::option", skip_serializing_if = "Option::is_none")]
    pub monthly_budget: Option<Money>,
    /// Percentages of the budget that alert, in any order; 0 is ignored because it would
    /// fire on the first day with nothing spent.
    pub thresholds_percent: Vec<u8>,
}

impl Default for BudgetPolicy {
    /// No budget (alerts off), thresholds at 50, 80 and 100 %.
    fn default() -> Self {
        BudgetPolicy { monthly_budget: None, thresholds_percent: vec![50, 80, 100] }
    }
}

/// A threshold the month's spend has crossed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetAlert {
    /// The threshold, in percent of the budget.
    pub percent: u8,
    /// The month's spend when it was noticed.
    pub spend: Money,
    /// The month's budget.
    pub budget: Money,
    /// The month, as [`period_key`] spells it.
    pub period: String,
}

impl fmt::Display for BudgetAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}% of the {} budget: spent {} of {}", self.percent, self.period, self.spend, self.budget)
    }
}

impl BudgetPolicy {
    /// Thresholds `spend_this_month` has reached that are not in `already_fired`, lowest first.
    ///
    /// A threshold is reached when spend is at least that share of the budget, exactly:
    /// $50 of $100 reaches 50 %.
    pub fn thresholds_crossed(
        &self,
        spend_this_month: Money,
        already_fired: &[u8],
        now: Timestamp,
    ) -> Vec<BudgetAlert> {
        let Some(budget) = self.monthly_budget.filter(|budget| *budget > Money::ZERO) else {
            return Vec::new();
        };
        let mut percents: Vec<u8> = self.thresholds_percent.iter().copied().filter(|p| *p > 0).collect();
        percents.sort_unstable();
        percents.dedup();
        let spent = i128::from(spend_this_month.micros()) * 100;
        let period = period_key(now);
        percents
            .into_iter()
            .filter(|percent| !already_fired.contains(percent))
            .filter(|percent| spent >= i128::from(budget.micros()) * i128::from(*percent))
            .map(|percent| BudgetAlert { percent, spend: spend_this_month, budget, period: period.clone() })
            .collect()
    }
}

/// The UTC month of `now` as `YYYY-MM` (e.g. `2026-11`): the key under which fired alerts are kept.
pub fn period_key(now: Timestamp) -> String {
    now.format("%Y-%m").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone, Utc};

    fn now() -> Timestamp {
        Utc.with_ymd_and_hms(2026, 11, 15, 9, 30, 0).unwrap()
    }

    fn policy() -> BudgetPolicy {
        BudgetPolicy { monthly_budget: Some(Money::from_dollars(100)), ..BudgetPolicy::default() }
    }

    fn percents(alerts: &[BudgetAlert]) -> Vec<u8> {
        alerts.iter().map(|alert| alert.percent).collect()
    }

    #[test]
    fn crossing_two_thresholds_at_once_fires_both() {
        let alerts = policy().thresholds_crossed(Money::from_dollars(85), &[], now());
        assert_eq!(percents(&alerts), vec![50, 80]);
        assert_eq!(
            alerts[0],
            BudgetAlert {
                percent: 50,
                spend: Money::from_dollars(85),
                budget: Money::from_dollars(100),
                period: "2026-11".into()
            }
        );
        assert_eq!(alerts[1].to_string(), "80% of the 2026-11 budget: spent $85.0000 of $100.0000");
    }

    #[test]
    fn thresholds_fire_exactly_at_their_share() {
        let p = policy();
        assert_eq!(percents(&p.thresholds_crossed(Money::from_micros(49_999_999), &[], now())), Vec::<u8>::new());
        assert_eq!(percents(&p.thresholds_crossed(Money::from_dollars(50), &[], now())), vec![50]);
        assert_eq!(percents(&p.thresholds_crossed(Money::from_dollars(100), &[], now())), vec![50, 80, 100]);
    }

    #[test]
    fn fired_thresholds_never_repeat() {
        let p = policy();
        assert_eq!(percents(&p.thresholds_crossed(Money::from_dollars(90), &[50], now())), vec![80]);
        assert!(p.thresholds_crossed(Money::from_dollars(90), &[50, 80], now()).is_empty());
        assert_eq!(percents(&p.thresholds_crossed(Money::from_dollars(250), &[50, 80], now())), vec![100]);
    }

    #[test]
    fn no_budget_fires_nothing() {
        let spend = Money::from_dollars(1_000);
        assert!(BudgetPolicy::default().thresholds_crossed(spend, &[], now()).is_empty());
        let zero = BudgetPolicy { monthly_budget: Some(Money::ZERO), ..policy() };
        assert!(zero.thresholds_crossed(spend, &[], now()).is_empty());
    }

    #[test]
    fn odd_threshold_lists_are_tidied() {
        let p = BudgetPolicy { thresholds_percent: vec![150, 0, 80, 80], ..policy() };
        assert_eq!(percents(&p.thresholds_crossed(Money::ZERO, &[], now())), Vec::<u8>::new(), "0% never fires");
        assert_eq!(percents(&p.thresholds_crossed(Money::from_dollars(200), &[], now())), vec![80, 150]);
    }

    #[test]
    fn period_key_changes_at_the_utc_month_boundary() {
        let first = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        assert_eq!(period_key(first - TimeDelta::nanoseconds(1)), "2026-11");
        assert_eq!(period_key(first), "2026-12");
        assert_eq!(period_key(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()), "2027-01");
        assert_eq!(period_key(now()), "2026-11");
    }

    #[test]
    fn policy_reads_from_toml_in_dollars() {
        let p: BudgetPolicy = toml::from_str("monthly_budget = \"250.50\"").unwrap();
        assert_eq!(p.monthly_budget, Some(Money::from_micros(250_500_000)));
        assert_eq!(p.thresholds_percent, vec![50, 80, 100]);
        let p: BudgetPolicy = toml::from_str("monthly_budget = 300\nthresholds_percent = [90]").unwrap();
        assert_eq!((p.monthly_budget, p.thresholds_percent.as_slice()), (Some(Money::from_dollars(300)), &[90][..]));
        assert_eq!(toml::from_str::<BudgetPolicy>("").unwrap(), BudgetPolicy::default());
        assert_eq!(toml::from_str::<BudgetPolicy>(&toml::to_string(&policy()).unwrap()).unwrap(), policy());
    }
}
