//! Injected faults: flood-control answers, slow answers and arbitrary API errors.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One fault: which calls it hits, when it fires and what happens then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The Bot API method it applies to, any case (`"sendPhoto"`, `"SendPhoto"`); `None` means
    /// every method except `getUpdates` (name `getUpdates` explicitly to fault the polling).
    #[serde(default)]
    pub method: Option<String>,
    /// When it fires.
    pub trigger: Trigger,
    /// What it does.
    pub action: FaultAction,
}

/// When a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// On each of the next N matching calls, then the rule is spent.
    Next(u32),
    /// On each matching call with this probability (0.0 to 1.0), drawn from the seeded generator.
    Rate(f64),
    /// On every matching call until the rules are cleared.
    Always,
}

/// What a fired fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// `429 Too Many Requests: retry after N` with `parameters.retry_after = N`; the call has no effect.
    RetryAfter {
        /// The `retry_after` seconds.
        secs: u32,
    },
    /// The call takes effect at once (the message is sent) but the answer is held back this long,
    /// as when Telegram is slow or the answer is lost: past the client's timeout the bot sees a
    /// network error for a message the user did get.
    SlowResponse {
        /// How long the answer is held back.
        #[serde(with = "millis")]
        delay: Duration,
    },
    /// The call is carried out only after this long, then answered: the message arrives late,
    /// and a client that gave up before then saw a timeout although the message is delivered.
    Stall {
        /// How long the server waits before looking at the call.
        #[serde(with = "millis")]
        delay: Duration,
    },
    /// Any API error, e.g. `403` `Forbidden: bot was blocked by the user`; the call has no effect.
    Error {
        /// The `error_code` and HTTP status (4xx; a 5xx makes teloxide sleep 10 s before reading it).
        code: u16,
        /// The `description`, which teloxide maps to its `ApiError` variants.
        description: String,
    },
}

impl FaultRule {
    /// `429` with `retry_after = secs` on the next `count` calls of `method`.
    pub fn retry_after(method: &str, count: u32, secs: u32) -> Self {
        FaultRule {
            method: Some(method.to_owned()),
            trigger: Trigger::Next(count),
            action: FaultAction::RetryAfter { secs },
        }
    }

    /// `429` with `retry_after = secs` on a `rate` share of the calls of `method`.
    pub fn retry_after_rate(method: &str, rate: f64, secs: u32) -> Self {
        FaultRule {
            method: Some(method.to_owned()),
            trigger: Trigger::Rate(rate),
            action: FaultAction::RetryAfter { secs },
        }
    }

    /// The next `count` calls of `method` take effect but are answered `delay` late.
    pub fn slow_response(method: &str, count: u32, delay: Duration) -> Self {
        FaultRule {
            method: Some(method.to_owned()),
            trigger: Trigger::Next(count),
            action: FaultAction::SlowResponse { delay },
        }
    }

    /// The next `count` calls of `method` are carried out (and answered) only after `delay`.
    pub fn stall(method: &str, count: u32, delay: Duration) -> Self {
        FaultRule {
            method: Some(method.to_owned()),
            trigger: Trigger::Next(count),
            action: FaultAction::Stall { delay },
        }
    }

    /// The next `count` calls of `method` fail with this API error.
    pub fn error(method: &str, count: u32, code: u16, description: &str) -> Self {
        FaultRule {
            method: Some(method.to_owned()),
            trigger: Trigger::Next(count),
            action: FaultAction::Error { code, description: description.to_owned() },
        }
    }

    /// Applies to every method instead of one (builder style; `getUpdates` stays exempt).
    pub fn any_method(mut self) -> Self {
        self.method = None;
        self
    }

    /// Checks values that make no sense.
    ///
    /// # Errors
    /// A readable message for a rate outside 0..=1 or an error code outside 400..=599.
    pub fn validate(&self) -> Result<(), String> {
        if let Trigger::Rate(rate) = self.trigger
            && !(0.0..=1.0).contains(&rate)
        {
            return Err(format!("fault rate must be within 0..=1, got {rate}"));
        }
        if let FaultAction::Error { code, .. } = self.action
            && !(400..=599).contains(&code)
        {
            return Err(format!("fault error code must be 4xx or 5xx, got {code}"));
        }
        Ok(())
    }

    fn matches(&self, method: &str) -> bool {
        match &self.method {
            Some(wanted) => wanted.eq_ignore_ascii_case(method),
            None => !method.eq_ignore_ascii_case("getUpdates"),
        }
    }
}

/// The live rules with their remaining counts.
#[derive(Debug, Default)]
pub(crate) struct FaultSet {
    rules: Vec<FaultRule>,
}

impl FaultSet {
    pub(crate) fn add(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    pub(crate) fn rules(&self) -> Vec<FaultRule> {
        self.rules.clone()
    }

    /// The action of the first rule that fires for this call, spending one use of it.
    pub(crate) fn pick(&mut self, method: &str, rng: &mut impl Rng) -> Option<FaultAction> {
        let mut fired = None;
        for (index, rule) in self.rules.iter_mut().enumerate() {
            if !rule.matches(method) {
                continue;
            }
            let fires = match &mut rule.trigger {
                Trigger::Next(0) => false,
                Trigger::Next(left) => {
                    *left -= 1;
                    true
                }
                Trigger::Rate(rate) => rng.random_bool(rate.clamp(0.0, 1.0)),
                Trigger::Always => true,
            };
            if fires {
                fired = Some((index, rule.action.clone()));
                break;
            }
        }
        self.rules.retain(|rule| rule.trigger != Trigger::Next(0));
        fired.map(|(_, action)| action)
    }
}

/// Serde of a `Duration` as whole milliseconds, for the JSON control endpoints.
pub(crate) mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn next_n_fires_n_times_then_is_spent() {
        let mut set = FaultSet::default();
        set.add(FaultRule::retry_after("sendMessage", 2, 3));
        let mut rng = StdRng::seed_from_u64(1);
        assert!(set.pick("SendMessage", &mut rng).is_some());
        assert!(set.pick("getMe", &mut rng).is_none());
        assert!(set.pick("sendmessage", &mut rng).is_some());
        assert!(set.pick("sendMessage", &mut rng).is_none());
        assert!(set.rules().is_empty());
    }

    #[test]
    fn any_method_spares_get_updates() {
        let mut set = FaultSet::default();
        set.add(FaultRule::retry_after("x", 5, 1).any_method());
        let mut rng = StdRng::seed_from_u64(1);
        assert!(set.pick("GetUpdates", &mut rng).is_none());
        assert!(set.pick("sendPhoto", &mut rng).is_some());
    }

    #[test]
    fn rates_outside_unit_interval_are_rejected() {
        assert!(FaultRule::retry_after_rate("sendMessage", 1.5, 1).validate().is_err());
        assert!(FaultRule::retry_after_rate("sendMessage", 0.5, 1).validate().is_ok());
        assert!(FaultRule::error("sendMessage", 1, 200, "x").validate().is_err());
    }
}
