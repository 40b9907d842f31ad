//! A circuit breaker per fal account: after `failure_threshold` consecutive upstream
//! failures the account is paused for `cool_down`, so its share of the queue goes to the
//! other accounts instead of burning retries.
//!
//! Process-local on purpose: a breaker protects this process from hammering a sick account,
//! and an outage seen by one process is usually seen by all. It runs on tokio's clock so
//! tests can step through a cool-down with paused time.

use mediagen_domain::AccountId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Settings of the per-account circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive upstream failures (5xx, lost submits) that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker keeps the account out of rotation.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: 5, cool_down: Duration::from_secs(60) }
    }
}

/// What a failure did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trip {
    /// Still closed (or already open).
    Counted,
    /// This failure opened a closed breaker: the operator hears about it.
    Opened,
    /// A trial call after the cool-down failed: paused again, without a new alert.
    Reopened,
}

#[derive(Debug, Default)]
struct State {
    consecutive: u32,
    open_until: Option<Instant>,
    /// Opened since the last success: a reopening is not news.
    tripped: bool,
}

/// The breakers of every account this process has used.
#[derive(Debug)]
pub(crate) struct Breakers {
    config: BreakerConfig,
    states: Mutex<HashMap<AccountId, State>>,
}

impl Breakers {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self { config, states: Mutex::new(HashMap::new()) }
    }

    /// True while the account is paused.
    pub(crate) fn is_open(&self, account: &AccountId) -> bool {
        let states = self.states.lock().unwrap();
        states.get(account).and_then(|s| s.open_until).is_some_and(|until| Instant::now() < until)
    }

    /// A call on the account worked: the breaker closes and the count starts again.
    pub(crate) fn record_success(&self, account: &AccountId) {
        let mut states = self.states.lock().unwrap();
        if let Some(state) = states.get_mut(account) {
            *state = State::default();
        }
    }

    /// An upstream failure on the account.
    pub(crate) fn record_failure(&self, account: &AccountId) -> Trip {
        let threshold = self.config.failure_threshold.max(1);
        let now = Instant::now();
        let mut states = self.states.lock().unwrap();
        let state = states.entry(account.clone()).or_default();
        if state.open_until.is_some_and(|until| now < until) {
            // Calls already in flight when it opened: no news.
            return Trip::Counted;
        }
        state.consecutive = state.consecutive.saturating_add(1);
        if state.consecutive < threshold {
            return Trip::Counted;
        }
        state.open_until = Some(now + self.config.cool_down);
        // After the cool-down the next failure reopens at once (half-open): keep the count.
        state.consecutive = threshold - 1;
        if std::mem::replace(&mut state.tripped, true) { Trip::Reopened } else { Trip::Opened }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(name: &str) -> AccountId {
        AccountId::new(name)
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_and_closes_after_the_cool_down() {
        let breakers = Breakers::new(BreakerConfig { failure_threshold: 3, cool_down: Duration::from_secs(30) });
        let a = acct("a");
        assert_eq!(breakers.record_failure(&a), Trip::Counted);
        assert_eq!(breakers.record_failure(&a), Trip::Counted);
        assert!(!breakers.is_open(&a));
        assert_eq!(breakers.record_failure(&a), Trip::Opened);
        assert!(breakers.is_open(&a));
        assert!(!breakers.is_open(&acct("b")), "breakers are per account");
        assert_eq!(breakers.record_failure(&a), Trip::Counted, "failures while open are no news");

        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(!breakers.is_open(&a), "half-open after the cool-down");
        assert_eq!(breakers.record_failure(&a), Trip::Reopened, "one more failure pauses it again, silently");
        assert!(breakers.is_open(&a));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let breakers = Breakers::new(BreakerConfig { failure_threshold: 2, cool_down: Duration::from_secs(30) });
        let a = acct("a");
        breakers.record_failure(&a);
        breakers.record_success(&a);
        assert_eq!(breakers.record_failure(&a), Trip::Counted, "not consecutive any more");
        assert_eq!(breakers.record_failure(&a), Trip::Opened);
        tokio::time::advance(Duration::from_secs(31)).await;
        breakers.record_success(&a);
        breakers.record_failure(&a);
        assert_eq!(breakers.record_failure(&a), Trip::Opened, "closed by a success, so opening again is news");
    }
}
