//! US dollars as integer micro-dollars, the simulator's own ledger unit.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An amount of US dollars in micro-dollars (1 USD = 1_000_000). Signed: balances may go negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Usd(i64);

/// A dollar amount that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a dollar amount: {0:?} (expected e.g. 0.04, $12.50, 10)")]
pub struct UsdParseError(String);

impl Usd {
    /// Nothing.
    pub const ZERO: Usd = Usd(0);

    /// From micro-dollars.
    pub const fn from_micros(micros: i64) -> Self {
        Usd(micros)
    }

    /// The amount in micro-dollars.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// From a float dollar amount, rounded to the nearest micro-dollar (admin input only).
    pub fn from_dollars_f64(dollars: f64) -> Self {
        Usd((dollars * 1_000_000.0).round() as i64)
    }

    /// `self * numerator / denominator`, rounded half up (for per-MP, per-char and per-token prices).
    pub fn mul_ratio(self, numerator: u64, denominator: u64) -> Usd {
        if denominator == 0 {
            return Usd::ZERO;
        }
        let product = i128::from(self.0) * i128::from(numerator);
        let den = i128::from(denominator);
        let rounded = (product + den / 2) / den;
        Usd(i64::try_from(rounded).unwrap_or(i64::MAX))
    }

    /// Saturating sum.
    pub fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }

    /// Saturating difference.
    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }
}

impl FromStr for Usd {
    type Err = UsdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UsdParseError(s.to_owned());
        let t = s.trim();
        let t = t.strip_prefix('$').unwrap_or(t);
        let (neg, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(err());
        }
        if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) || frac.len() > 6 {
            return Err(err());
        }
        let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| err())? };
        let frac_micros: i64 = format!("{frac:0<6}").parse().map_err(|_| err())?;
        let micros = whole.checked_mul(1_000_000).and_then(|w| w.checked_add(frac_micros)).ok_or_else(err)?;
        Ok(Usd(if neg { -micros } else { micros }))
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}${}.{:06}", abs / 1_000_000, abs % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        assert_eq!("0.04".parse::<Usd>().unwrap().micros(), 40_000);
        assert_eq!("$12.5".parse::<Usd>().unwrap().micros(), 12_500_000);
        assert_eq!("10".parse::<Usd>().unwrap().micros(), 10_000_000);
        assert_eq!("-1.000001".parse::<Usd>().unwrap().micros(), -1_000_001);
        assert!("1.0000001".parse::<Usd>().is_err());
        assert!("abc".parse::<Usd>().is_err());
        assert!("".parse::<Usd>().is_err());
        assert_eq!(Usd::from_micros(39_000).to_string(), "$0.039000");
        assert_eq!(Usd::from_micros(-5).to_string(), "-$0.000005");
    }

    #[test]
    fn ratio_rounds_half_up() {
        assert_eq!(Usd::from_micros(100).mul_ratio(1, 3).micros(), 33);
        assert_eq!(Usd::from_micros(100).mul_ratio(2, 3).micros(), 67);
        assert_eq!(Usd::from_micros(100_000).mul_ratio(250, 1000).micros(), 25_000);
    }
}
