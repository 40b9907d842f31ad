//! Money as integer micro-dollars: exact sums, no float drift in the ledger.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An amount of US dollars in micro-dollars (1 USD = 1_000_000).
///
/// Signed so that refunds and balances can go below zero without a second type;
/// prices themselves are never negative (the pricing rules check it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

/// Arithmetic left the range of `Money`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("money arithmetic overflowed")]
pub struct MoneyOverflow;

/// A dollar amount that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a dollar amount: {0:?} (expected e.g. 0.04, $12.50)")]
pub struct MoneyParseError(String);

impl Money {
    /// Nothing.
    pub const ZERO: Money = Money(0);
    /// Micro-dollars in one dollar.
    pub const MICROS_PER_DOLLAR: i64 = 1_000_000;

    /// From micro-dollars.
    pub const fn from_micros(micros: i64) -> Self {
        Money(micros)
    }

    /// From whole cents (convenient for price tables).
    pub const fn from_cents(cents: i64) -> Self {
        Money(cents * 10_000)
    }

    /// From whole dollars.
    pub const fn from_dollars(dollars: i64) -> Self {
        Money(dollars * Self::MICROS_PER_DOLLAR)
    }

    /// The amount in micro-dollars.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// True for amounts below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// `self + other`, or an error on overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyOverflow> {
        self.0.checked_add(other.0).map(Money).ok_or(MoneyOverflow)
    }

    /// `self - other`, or an error on overflow.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyOverflow> {
        self.0.checked_sub(other.0).map(Money).ok_or(MoneyOverflow)
    }

    /// `self * factor`, or an error on overflow.
    pub fn checked_mul(self, factor: i64) -> Result<Money, MoneyOverflow> {
        self.0.checked_mul(factor).map(Money).ok_or(MoneyOverflow)
    }

    /// `self * numerator / denominator`, rounded half away from zero.
    ///
    /// Used for per-token and per-character prices and for discounts, where the
    /// exact result has a fraction of a micro-dollar.
    pub fn checked_mul_ratio(self, numerator: i64, denominator: i64) -> Result<Money, MoneyOverflow> {
        if denominator == 0 {
            return Err(MoneyOverflow);
        }
        let product = i128::from(self.0) * i128::from(numerator);
        let denominator = i128::from(denominator);
        let half = denominator.abs() / 2;
        let rounded = if (product < 0) == (denominator < 0) {
            (product.abs() + half) / denominator.abs()
        } else {
            -((product.abs() + half) / denominator.abs())
        };
        i64::try_from(rounded).map(Money).map_err(|_| MoneyOverflow)
    }

    /// Sum of many amounts, or an error on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Money>>(items: I) -> Result<Money, MoneyOverflow> {
        items.into_iter().try_fold(Money::ZERO, Money::checked_add)
    }

    /// `self + other`, held at the largest or smallest amount instead of overflowing: the
    /// one fallback for totals shown to people, where an impossible sum must neither wrap
    /// nor lose an addend. Money that is charged uses `checked_add` and handles the error.
    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    /// The sum of many amounts, saturating like [`Money::saturating_add`].
    pub fn saturating_sum<I: IntoIterator<Item = Money>>(items: I) -> Money {
        items.into_iter().fold(Money::ZERO, Money::saturating_add)
    }

    /// The larger of zero and `self`.
    pub fn clamp_at_zero(self) -> Money {
        Money(self.0.max(0))
    }
}

impl Money {
    /// Plain dollars with every significant decimal and no symbol: `12.5`, `0.000001`,
    /// `10`, `-1.25` (for files and numbers other programs read).
    pub fn plain_exact(self) -> String {
        let (sign, whole, frac) = self.parts();
        if frac == 0 {
            format!("{sign}{whole}")
        } else {
            format!("{sign}{whole}.{}", format!("{frac:06}").trim_end_matches('0'))
        }
    }

    /// Plain dollars with all six decimals and no symbol, as spreadsheets read them:
    /// `12.340000`, `-0.000001`.
    pub fn plain_six_decimals(self) -> String {
        let (sign, whole, frac) = self.parts();
        format!("{sign}{whole}.{frac:06}")
    }

    /// Dollars to the micro-dollar with the symbol, where four decimals would hide a
    /// difference: `$8.256106`, `-$0.000005`.
    pub fn exact_text(self) -> String {
        let (sign, whole, frac) = self.parts();
        format!("{sign}${whole}.{frac:06}")
    }

    /// Whole dollars without decimals when there are no cents (`$500`), else the usual
    /// four decimals (`$10.5000`): for amounts people choose, like credit tiers.
    pub fn whole_or_display(self) -> String {
        if self.0 % Self::MICROS_PER_DOLLAR == 0 {
            let (sign, whole, _) = self.parts();
            format!("{sign}${whole}")
        } else {
            self.to_string()
        }
    }

    /// Dollars as a float, for drawing and metrics (never for arithmetic).
    pub fn dollars_f64(self) -> f64 {
        self.0 as f64 / Self::MICROS_PER_DOLLAR as f64
    }

    /// The sign, whole dollars and micro-dollars of the absolute amount.
    fn parts(self) -> (&'static str, u64, u64) {
        let abs = self.0.unsigned_abs();
        (if self.0 < 0 { "-" } else { "" }, abs / 1_000_000, abs % 1_000_000)
    }
}

impl fmt::Display for Money {
    /// `$0.0400`: four decimals, because per-image prices live in tenths of a cent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let dollars = abs / 1_000_000;
        // Round the six decimals to four, half up.
        let frac = ((abs % 1_000_000) + 50) / 100;
        let (dollars, frac) = if frac == 10_000 { (dollars + 1, 0) } else { (dollars, frac) };
        write!(f, "{sign}${dollars}.{frac:04}")
    }
}

impl FromStr for Money {
    type Err = MoneyParseError;

    /// Parses `12`, `12.5`, `$0.0400`, `-1.25`; up to six decimals.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MoneyParseError(s.to_owned());
        let trimmed = s.trim();
        let (negative, rest) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let rest = rest.strip_prefix('$').unwrap_or(rest);
        let (whole, frac) = rest.split_once('.').unwrap_or((rest, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(err());
        }
        if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) || frac.len() > 6 {
            return Err(err());
        }
        let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| err())? };
        let frac_micros: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().map_err(|_| err())? };
        let micros =
            whole.checked_mul(Money::MICROS_PER_DOLLAR).and_then(|m| m.checked_add(frac_micros)).ok_or_else(err)?;
        Ok(Money(if negative { -micros } else { micros }))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn whole_amounts_drop_the_decimals_and_others_keep_four() {
        assert_eq!(Money::from_dollars(500).whole_or_display(), "$500");
        assert_eq!(Money::from_dollars(-3).whole_or_display(), "-$3");
        assert_eq!(Money::from_cents(1_050).whole_or_display(), "$10.5000");
    }
    use super::*;

    #[test]
    fn displays_four_decimals() {
        assert_eq!(Money::from_cents(4).to_string(), "$0.0400");
        assert_eq!(Money::from_dollars(12).to_string(), "$12.0000");
        assert_eq!(Money::from_micros(-1_250_000).to_string(), "-$1.2500");
        assert_eq!(Money::from_micros(39_000).to_string(), "$0.0390");
        assert_eq!(Money::from_micros(99_999_999).to_string(), "$100.0000");
    }

    #[test]
    fn the_plain_and_exact_texts_keep_every_micro_dollar() {
        let cases = [(12_500_000, "12.5", "12.500000", "$12.500000"), (1, "0.000001", "0.000001", "$0.000001")];
        for (micros, plain, six, exact) in cases {
            let money = Money::from_micros(micros);
            assert_eq!((money.plain_exact().as_str(), money.plain_six_decimals().as_str()), (plain, six));
            assert_eq!(money.exact_text(), exact);
        }
        let negative = Money::from_micros(-5);
        assert_eq!((negative.plain_exact(), negative.exact_text()), ("-0.000005".into(), "-$0.000005".into()));
        assert_eq!(Money::from_dollars(10).plain_exact(), "10");
        assert!((Money::from_micros(1_500_000).dollars_f64() - 1.5).abs() < f64::EPSILON);
    }

    #[test]
    fn totals_saturate_instead_of_wrapping_or_dropping_an_addend() {
        let max = Money::from_micros(i64::MAX);
        assert_eq!(max.saturating_add(Money::from_cents(1)), max);
        assert_eq!(Money::from_micros(i64::MIN).saturating_add(Money::from_micros(-1)), Money::from_micros(i64::MIN));
        assert_eq!(Money::saturating_sum([Money::from_cents(1), Money::from_cents(2)]), Money::from_cents(3));
        assert_eq!(Money::saturating_sum([max, max]), max);
    }

    #[test]
    fn parses_what_it_displays_and_operator_input() {
        for s in ["$0.0400", "0.04", "12", "$12.50", "-1.25", ".5"] {
            let m: Money = s.parse().unwrap();
            let again: Money = m.to_string().parse().unwrap();
            assert_eq!(m, again, "{s}");
        }
        assert_eq!("0.04".parse::<Money>().unwrap(), Money::from_cents(4));
        assert_eq!("$12.50".parse::<Money>().unwrap(), Money::from_micros(12_500_000));
        for bad in ["", "$", "abc", "1.2.3", "0.0000001", "1e3", "--1"] {
            assert!(bad.parse::<Money>().is_err(), "{bad}");
        }
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert_eq!(Money::from_micros(i64::MAX).checked_add(Money::from_micros(1)), Err(MoneyOverflow));
        assert_eq!(Money::from_micros(i64::MIN).checked_sub(Money::from_micros(1)), Err(MoneyOverflow));
        assert_eq!(Money::from_micros(i64::MAX).checked_mul(2), Err(MoneyOverflow));
        assert_eq!(Money::from_cents(3).checked_add(Money::from_cents(4)), Ok(Money::from_cents(7)));
    }

    #[test]
    fn ratio_rounds_half_away_from_zero() {
        // $0.15 per 1M tokens, 1234 tokens -> 185.1 micro-dollars -> 185.
        assert_eq!(Money::from_cents(15).checked_mul_ratio(1234, 1_000_000), Ok(Money::from_micros(185)));
        assert_eq!(Money::from_micros(150_000).checked_mul_ratio(1234, 1000), Ok(Money::from_micros(185_100)));
        assert_eq!(Money::from_micros(5).checked_mul_ratio(1, 2), Ok(Money::from_micros(3)));
        assert_eq!(Money::from_micros(-5).checked_mul_ratio(1, 2), Ok(Money::from_micros(-3)));
        assert_eq!(Money::from_micros(1).checked_mul_ratio(1, 0), Err(MoneyOverflow));
    }
}
