//! Monthly volume discounts: the more requests a customer makes in a calendar month, the
//! less each costs, and past a threshold the operator is told to offer enterprise pricing.
//!
//! Tiers are thresholds on the month's request count, configured in `config/models.toml`
//! under `[volume_discounts.tiers.NAME]` and exposed as `Catalog::volume_discounts()`.
//! Counting the month's requests (and resetting on the 1st) is storage's job.

use crate::money::Money;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One step of the discount ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscountTier {
    /// The operator's name for it (the key in the config), e.g. `volume`.
    pub name: String,
    /// Requests in the month (this one included) from which the tier applies.
    pub from_requests: u64,
    /// Whole percent taken off the price, 0 to 100.
    pub percent_off: u8,
    /// The customer is big enough that the operator should offer enterprise pricing.
    pub enterprise: bool,
}

impl DiscountTier {
    /// The name of the implicit tier below every configured one.
    pub const STANDARD: &'static str = "standard";

    /// The tier that applies when no configured tier does: no discount.
    pub fn standard() -> Self {
        Self { name: Self::STANDARD.to_owned(), from_requests: 0, percent_off: 0, enterprise: false }
    }

    /// `amount` with this tier's discount taken off.
    ///
    /// The result is `amount × (100 − percent_off) / 100` rounded to the nearest
    /// micro-dollar, half up: exact to the micro-dollar, never above `amount` and never
    /// below zero for a price. Negative amounts (refunds, corrections) are returned as they
    /// are, because a discount applies to what is charged, not to what is given back.
    pub fn apply(&self, amount: Money) -> Money {
        if amount.is_negative() || self.percent_off == 0 {
            return amount;
        }
        let keep = 100 - i64::from(self.percent_off.min(100));
        // |result| <= |amount|, so this cannot overflow; fall back to no discount all the same.
        amount.checked_mul_ratio(keep, 100).unwrap_or(amount)
    }
}

/// A tier configuration that would make discounts inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("volume discount tier `{tier}`: {reason}")]
pub struct DiscountError {
    /// The offending tier's name.
    pub tier: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The month's discount ladder: always starts with a tier at zero requests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawVolumeDiscounts")]
pub struct VolumeDiscounts {
    /// Sorted by `from_requests`, strictly increasing, first one at 0, percents non-decreasing.
    tiers: Vec<DiscountTier>,
}

impl VolumeDiscounts {
    /// Checks and sorts `tiers`; a standard tier at 0 requests is added unless one starts there.
    ///
    /// # Errors
    /// [`DiscountError`] when a percent is over 100, two tiers start at the same count, or
    /// a higher tier gives a smaller discount than a lower one (discounts must never shrink
    /// as a customer grows).
    pub fn new(mut tiers: Vec<DiscountTier>) -> Result<Self, DiscountError> {
        tiers.sort_by_key(|t| t.from_requests);
        if tiers.first().is_none_or(|t| t.from_requests > 0) {
            tiers.insert(0, DiscountTier::standard());
        }
        for tier in &tiers {
            if tier.name.trim().is_empty() {
                return Err(DiscountError { tier: tier.name.clone(), reason: "the name is empty".into() });
            }
            if tier.percent_off > 100 {
                return Err(DiscountError {
                    tier: tier.name.clone(),
                    reason: format!("percent_off is {}; it must be between 0 and 100", tier.percent_off),
                });
            }
        }
        for pair in tiers.windows(2) {
            let (lower, higher) = (&pair[0], &pair[1]);
            if lower.from_requests == higher.from_requests {
                return Err(DiscountError {
                    tier: higher.name.clone(),
                    reason: format!("from_requests {} is also the start of `{}`", higher.from_requests, lower.name),
                });
            }
            if higher.percent_off < lower.percent_off {
                return Err(DiscountError {
                    tier: higher.name.clone(),
                    reason: format!(
                        "percent_off {} is less than the {} of the lower tier `{}`",
                        higher.percent_off, lower.percent_off, lower.name
                    ),
                });
            }
        }
        Ok(Self { tiers })
    }

    /// No discounts at all.
    pub fn none() -> Self {
        Self { tiers: vec![DiscountTier::standard()] }
    }

    /// Every tier, lowest first, starting with the one at zero requests.
    pub fn tiers(&self) -> &[DiscountTier] {
        &self.tiers
    }

    /// The tier for a customer with `requests_this_month` requests in the calendar month,
    /// counting the request being priced.
    pub fn tier_for(&self, requests_this_month: u64) -> &DiscountTier {
        // `new` guarantees a first tier at 0, so the search always finds one.
        let index = self.tiers.partition_point(|t| t.from_requests <= requests_this_month);
        &self.tiers[index.saturating_sub(1)]
    }

    /// `amount` after the discount of the tier for `requests_this_month`; see
    /// [`DiscountTier::apply`] for the rounding.
    pub fn apply(&self, amount: Money, requests_this_month: u64) -> Money {
        self.tier_for(requests_this_month).apply(amount)
    }

    /// The tier just entered when the month's count went from `before` to `after`, for an
    /// operator alert; `None` when the count stayed within one tier or did not grow.
    ///
    /// A jump over several tiers reports only the highest one reached.
    pub fn crossed(&self, before: u64, after: u64) -> Option<&DiscountTier> {
        if after <= before {
            return None;
        }
        let reached = self.tier_for(after);
        (reached.from_requests > before).then_some(reached)
    }
}

impl Default for VolumeDiscounts {
    /// 1,000–5,000 requests a month: 5%; 5,001–10,000: 10%; 10,001 and up: 10% and the
    /// enterprise signal.
    fn default() -> Self {
        let tier = |name: &str, from_requests, percent_off, enterprise| DiscountTier {
            name: name.to_owned(),
            from_requests,
            percent_off,
            enterprise,
        };
        Self {
            tiers: vec![
                DiscountTier::standard(),
                tier("volume", 1_000, 5, false),
                tier("high_volume", 5_001, 10, false),
                tier("enterprise", 10_001, 10, true),
            ],
        }
    }
}

/// The config shape: tiers keyed by name, so an override file can change one tier.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolumeDiscounts {
    #[serde(default)]
    tiers: BTreeMap<String, RawTier>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    from_requests: u64,
    percent_off: u8,
    #[serde(default)]
    enterprise: bool,
}

impl TryFrom<RawVolumeDiscounts> for VolumeDiscounts {
    type Error = DiscountError;

    fn try_from(raw: RawVolumeDiscounts) -> Result<Self, Self::Error> {
        let tiers = raw
            .tiers
            .into_iter()
            .map(|(name, t)| DiscountTier {
                name,
                from_requests: t.from_requests,
                percent_off: t.percent_off,
                enterprise: t.enterprise,
            })
            .collect();
        VolumeDiscounts::new(tiers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tier(name: &str, from_requests: u64, percent_off: u8) -> DiscountTier {
        DiscountTier { name: name.to_owned(), from_requests, percent_off, enterprise: false }
    }

    #[test]
    fn boundaries_of_the_default_tiers_are_exact() {
        let d = VolumeDiscounts::default();
        let at = |n| {
            let t = d.tier_for(n);
            (t.name.as_str(), t.percent_off, t.enterprise)
        };
        assert_eq!(at(0), ("standard", 0, false));
        assert_eq!(at(999), ("standard", 0, false));
        assert_eq!(at(1_000), ("volume", 5, false));
        assert_eq!(at(5_000), ("volume", 5, false));
        assert_eq!(at(5_001), ("high_volume", 10, false));
        assert_eq!(at(10_000), ("high_volume", 10, false));
        assert_eq!(at(10_001), ("enterprise", 10, true));
        assert_eq!(at(u64::MAX), ("enterprise", 10, true));
    }

    #[test]
    fn apply_takes_the_percent_off_exactly() {
        let d = VolumeDiscounts::default();
        let price = Money::from_cents(4);
        assert_eq!(d.apply(price, 999), price);
        assert_eq!(d.apply(price, 1_000), Money::from_micros(38_000));
        assert_eq!(d.apply(price, 5_001), Money::from_micros(36_000));
        assert_eq!(d.apply(Money::from_micros(39_000), 1_000), Money::from_micros(37_050));
        // 1 µ$ × 0.95 = 0.95 → 1: half up to the nearest micro-dollar.
        assert_eq!(d.apply(Money::from_micros(1), 1_000), Money::from_micros(1));
        // 10 µ$ × 0.95 = 9.5 → 10.
        assert_eq!(d.apply(Money::from_micros(10), 1_000), Money::from_micros(10));
        assert_eq!(d.apply(Money::from_micros(11), 1_000), Money::from_micros(10));
        assert_eq!(d.apply(Money::from_micros(-500), 20_000), Money::from_micros(-500), "refunds are not discounted");
    }

    #[test]
    fn crossing_into_a_tier_is_reported_once() {
        let d = VolumeDiscounts::default();
        assert_eq!(d.crossed(998, 999), None);
        assert_eq!(d.crossed(999, 1_000).map(|t| t.name.as_str()), Some("volume"));
        assert_eq!(d.crossed(1_000, 1_001), None);
        assert_eq!(d.crossed(5_000, 5_001).map(|t| t.name.as_str()), Some("high_volume"));
        let enterprise = d.crossed(10_000, 10_001).unwrap();
        assert!(enterprise.enterprise);
        assert_eq!(d.crossed(10_001, 10_002), None);
        assert_eq!(d.crossed(500, 6_000).map(|t| t.name.as_str()), Some("high_volume"), "a jump reports the top");
        assert_eq!(d.crossed(1_000, 1_000), None);
        assert_eq!(d.crossed(2_000, 1), None, "a new month is not a crossing");
    }

    #[test]
    fn new_sorts_and_adds_the_standard_tier() {
        let d = VolumeDiscounts::new(vec![tier("b", 200, 20), tier("a", 100, 10)]).unwrap();
        let names: Vec<_> = d.tiers().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["standard", "a", "b"]);
        let everyone = VolumeDiscounts::new(vec![tier("launch", 0, 15)]).unwrap();
        assert_eq!(everyone.tier_for(0).percent_off, 15);
        assert_eq!(everyone.tiers().len(), 1);
        assert_eq!(VolumeDiscounts::none().apply(Money::from_cents(4), 1_000_000), Money::from_cents(4));
    }

    #[test]
    fn inconsistent_tiers_are_refused_by_name() {
        let err = VolumeDiscounts::new(vec![tier("silly", 10, 101)]).unwrap_err();
        assert_eq!(err.tier, "silly");
        assert!(err.to_string().contains("percent_off"), "{err}");
        let err = VolumeDiscounts::new(vec![tier("a", 10, 5), tier("b", 10, 6)]).unwrap_err();
        assert!(err.reason.contains("from_requests"), "{err}");
        let err = VolumeDiscounts::new(vec![tier("big", 10, 10), tier("bigger", 20, 5)]).unwrap_err();
        assert_eq!(err.tier, "bigger");
    }

    #[test]
    fn parses_from_toml_keyed_by_name() {
        #[derive(Debug, Deserialize)]
        struct Doc {
            volume_discounts: VolumeDiscounts,
        }
        let doc: Doc =
            toml::from_str("[volume_discounts.tiers.pro]\nfrom_requests = 50\npercent_off = 3\nenterprise = true\n")
                .unwrap();
        let pro = doc.volume_discounts.tier_for(50);
        assert_eq!((pro.name.as_str(), pro.percent_off, pro.enterprise), ("pro", 3, true));
        let bad = toml::from_str::<Doc>("[volume_discounts.tiers.pro]\nfrom_requests = 50\npercent_of = 3\n");
        assert!(bad.unwrap_err().to_string().contains("percent_of"));
    }

    fn ladder() -> impl Strategy<Value = VolumeDiscounts> {
        prop::collection::btree_map(1u64..20_000, 0u8..=100, 0..6).prop_map(|starts| {
            // Sorted starts with sorted percents: any such ladder is valid.
            let mut percents: Vec<u8> = starts.values().copied().collect();
            percents.sort_unstable();
            let tiers = starts.keys().zip(percents).map(|(&from, pct)| tier(&format!("t{from}"), from, pct)).collect();
            VolumeDiscounts::new(tiers).unwrap()
        })
    }

    proptest! {
        #[test]
        fn a_discount_never_raises_a_price_nor_makes_it_negative(
            d in ladder(),
            micros in 0i64..=i64::MAX,
            requests in any::<u64>(),
        ) {
            let price = Money::from_micros(micros);
            let discounted = d.apply(price, requests);
            prop_assert!(discounted <= price);
            prop_assert!(!discounted.is_negative());
        }

        #[test]
        fn the_percent_is_monotone_in_the_request_count(d in ladder(), a in any::<u64>(), b in any::<u64>()) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(d.tier_for(low).percent_off <= d.tier_for(high).percent_off);
            prop_assert!(d.tier_for(low).from_requests <= d.tier_for(high).from_requests);
        }

        #[test]
        fn defaults_are_monotone_too(a in 0u64..30_000, b in 0u64..30_000) {
            let d = VolumeDiscounts::default();
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(d.tier_for(low).percent_off <= d.tier_for(high).percent_off);
            prop_assert!(d.apply(Money::from_cents(4), high) <= d.apply(Money::from_cents(4), low));
        }
    }
}
