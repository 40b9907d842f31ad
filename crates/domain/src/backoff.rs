//! The one back-off rule every retry follows: the engine's requeues and storage writes, and
//! the fal adapter's HTTP retries.
//!
//! The delay doubles from `base` up to `max`; jitter only shortens it (by up to `jitter` of
//! it), so the cap is never exceeded and calls that failed together spread out. A server's
//! `Retry-After` is honoured up to `max`. The random draw is an argument: the rule stays pure.

use std::time::Duration;

/// Exponential back-off with jitter, capped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry.
    pub base: Duration,
    /// The delay never grows past this (nor does an honoured `Retry-After`).
    pub max: Duration,
    /// Share of the delay (0 to 1) that may be taken off at random.
    pub jitter: f64,
}

impl Backoff {
    /// The delay before retry number `retry` (1 = the first retry), with the random draw
    /// `unit` in `[0, 1)` and the server's `retry_after`, if it sent one.
    pub fn delay(&self, retry: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let exponent = retry.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.max);
        let jitter = self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        let delay = full.mul_f64(1.0 - jitter);
        match retry_after {
            Some(after) => delay.max(after.min(self.max)),
            None => delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_up_to_the_cap_and_jitter_only_shortens() {
        let backoff = Backoff { base: 2 * SECOND, max: 10 * SECOND, jitter: 0.5 };
        assert_eq!(backoff.delay(1, 0.0, None), 2 * SECOND);
        assert_eq!(backoff.delay(2, 0.0, None), 4 * SECOND);
        assert_eq!(backoff.delay(3, 0.0, None), 8 * SECOND);
        assert_eq!(backoff.delay(4, 0.0, None), 10 * SECOND, "capped");
        assert_eq!(backoff.delay(40, 0.0, None), 10 * SECOND, "no overflow");
        assert_eq!(backoff.delay(0, 0.0, None), 2 * SECOND, "0 counts as the first retry");
        assert_eq!(backoff.delay(2, 0.5, None), 3 * SECOND, "half the jitter share taken off");
        assert_eq!(backoff.delay(2, 1.0, None), 2 * SECOND, "at most the jitter share");
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let backoff = Backoff { base: SECOND, max: 30 * SECOND, jitter: 0.25 };
        assert_eq!(backoff.delay(1, 0.0, Some(7 * SECOND)), 7 * SECOND);
        assert_eq!(backoff.delay(1, 0.0, Some(700 * SECOND)), 30 * SECOND);
        assert_eq!(backoff.delay(5, 0.0, Some(SECOND)), 16 * SECOND, "a shorter Retry-After does not cut the back-off");
    }
}
