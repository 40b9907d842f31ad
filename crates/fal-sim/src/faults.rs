//! Fault injection: rules (by rate, by burst count, filtered by account and endpoint) and
//! prompt markers like `[[fault:content_policy]]`.

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// What goes wrong, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Submit answers 429 before acceptance (nothing is enqueued).
    #[serde(rename = "submit_429")]
    Submit429,
    /// Submit answers an nginx-style HTML 502 before acceptance (no `x-fal-request-id`).
    #[serde(rename = "submit_502")]
    Submit502,
    /// Submit answers 503 `runner_scheduling_failure` before acceptance.
    #[serde(rename = "submit_503")]
    Submit503,
    /// A status poll answers 500 `internal_error` (the job itself is unaffected).
    #[serde(rename = "status_500")]
    Status500,
    /// The job runs, then its result is 500 `runner_server_error` (never charged).
    #[serde(rename = "result_500")]
    Result500,
    /// The job runs, then its result is 503 `runner_disconnected` (never charged).
    #[serde(rename = "result_503")]
    Result503,
    /// The job runs and succeeds, but its first result fetch loses the connection before a
    /// whole answer arrives (the body aborts). Later fetches get the real result.
    #[serde(rename = "result_transport")]
    ResultTransport,
    /// The job runs and succeeds, but its first result fetch gets an nginx-style HTML 502
    /// without `x-fal-request-id` (the gateway never reached the queue). Later fetches get
    /// the real result.
    #[serde(rename = "result_502")]
    Result502,
    /// As `result_502`, with a gateway 503 (no `x-fal-request-id`, no `error_type`).
    #[serde(rename = "result_503_gateway")]
    Result503Gateway,
    /// As `result_502`, with a gateway 504 (no `x-fal-request-id`, no timeout type).
    #[serde(rename = "result_504")]
    Result504,
    /// The job runs, but its first result fetch declares the whole body's `Content-Length`,
    /// sends half of it and closes. Later fetches get the real result.
    #[serde(rename = "result_cut_body")]
    ResultCutBody,
    /// The job runs, then its result is a 422 `content_policy_violation` (charged if configured).
    ContentPolicy,
    /// The job succeeds with `has_nsfw_concepts: [true, ...]` (FLUX-kind models only).
    Nsfw,
    /// The job stays IN_QUEUE forever (until cancelled or its request timeout fires).
    Stuck,
    /// The job's generated files are delivered slowly by the CDN.
    SlowCdn,
    /// The job is accepted, then its account is locked (further submits get 403).
    LockAccount,
}

impl FaultKind {
    /// Every kind, in documentation order.
    pub const ALL: [FaultKind; 16] = [
        FaultKind::Submit429,
        FaultKind::Submit502,
        FaultKind::Submit503,
        FaultKind::Status500,
        FaultKind::Result500,
        FaultKind::Result503,
        FaultKind::ResultTransport,
        FaultKind::Result502,
        FaultKind::Result503Gateway,
        FaultKind::Result504,
        FaultKind::ResultCutBody,
        FaultKind::ContentPolicy,
        FaultKind::Nsfw,
        FaultKind::Stuck,
        FaultKind::SlowCdn,
        FaultKind::LockAccount,
    ];

    /// The snake_case name used in scripts and markers.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Submit429 => "submit_429",
            FaultKind::Submit502 => "submit_502",
            FaultKind::Submit503 => "submit_503",
            FaultKind::Status500 => "status_500",
            FaultKind::Result500 => "result_500",
            FaultKind::Result503 => "result_503",
            FaultKind::ResultTransport => "result_transport",
            FaultKind::Result502 => "result_502",
            FaultKind::Result503Gateway => "result_503_gateway",
            FaultKind::Result504 => "result_504",
            FaultKind::ResultCutBody => "result_cut_body",
            FaultKind::ContentPolicy => "content_policy",
            FaultKind::Nsfw => "nsfw",
            FaultKind::Stuck => "stuck",
            FaultKind::SlowCdn => "slow_cdn",
            FaultKind::LockAccount => "lock_account",
        }
    }

    /// Parses a snake_case name.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Decided when a submit arrives, before acceptance.
    pub fn is_submit(self) -> bool {
        matches!(self, FaultKind::Submit429 | FaultKind::Submit502 | FaultKind::Submit503)
    }

    /// Decided per status poll.
    pub fn is_status(self) -> bool {
        self == FaultKind::Status500
    }

    /// A job fault that spoils the delivery of a result, not the run: the first result
    /// fetch (or the first N, with a `[[fault:KIND:N]]` marker) gets no answer from fal;
    /// the job ran once and is billed once.
    pub fn is_result_glitch(self) -> bool {
        matches!(
            self,
            FaultKind::ResultTransport
                | FaultKind::Result502
                | FaultKind::Result503Gateway
                | FaultKind::Result504
                | FaultKind::ResultCutBody
        )
    }

    /// Decided once per accepted job.
    pub fn is_job(self) -> bool {
        !self.is_submit() && !self.is_status()
    }
}

/// One fault rule. With neither `rate` nor `count` it fires on every eligible event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// What happens.
    pub kind: FaultKind,
    /// Probability (0..=1) of firing on each eligible event, drawn from the seeded generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Fires at most this many times (a burst: "the next N submits get 429"); then it is spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Lets this many eligible events pass before the rule may fire.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u32,
    /// Only events of this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Only endpoints whose id starts with this (e.g. `fal-ai/flux`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl FaultRule {
    /// A rule that fires on every eligible event.
    pub fn always(kind: FaultKind) -> Self {
        FaultRule { kind, rate: None, count: None, skip: 0, account: None, endpoint: None }
    }

    /// A burst: fires on the next `count` eligible events.
    pub fn burst(kind: FaultKind, count: u32) -> Self {
        FaultRule { count: Some(count), ..FaultRule::always(kind) }
    }

    /// Fires with probability `rate`.
    pub fn rate(kind: FaultKind, rate: f64) -> Self {
        FaultRule { rate: Some(rate), ..FaultRule::always(kind) }
    }

    /// Restricts the rule to one account (builder style).
    pub fn for_account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// Restricts the rule to endpoints starting with `prefix` (builder style).
    pub fn for_endpoint(mut self, prefix: impl Into<String>) -> Self {
        self.endpoint = Some(prefix.into());
        self
    }

    fn matches(&self, account: &str, endpoint: &str) -> bool {
        self.account.as_deref().is_none_or(|a| a == account)
            && self.endpoint.as_deref().is_none_or(|e| endpoint.starts_with(e))
    }

    /// Decides whether this rule fires for one eligible event, updating its counters.
    fn roll(&mut self, rng: &mut impl Rng) -> bool {
        if self.count == Some(0) {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        let fire = match self.rate {
            Some(p) => rng.random_bool(p.clamp(0.0, 1.0)),
            None => true,
        };
        if fire && let Some(c) = self.count.as_mut() {
            *c -= 1;
        }
        fire
    }
}

/// A list of fault rules, as loaded from a TOML (`[[rule]]` tables) or JSON (`{"rules": [...]}`) file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultScript {
    /// The rules, evaluated in order.
    #[serde(default, rename = "rules", alias = "rule")]
    pub rules: Vec<FaultRule>,
}

/// A fault script that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum FaultScriptError {
    /// The file could not be read.
    #[error("cannot read fault script {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid script.
    #[error("invalid fault script {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl FaultScript {
    /// Reads a script file: `.json` files as JSON, anything else as TOML.
    ///
    /// # Errors
    /// `Read` when the file cannot be read, `Parse` when it is not a valid script.
    pub fn load(path: &Path) -> Result<Self, FaultScriptError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| FaultScriptError::Read { path: shown.clone(), source })?;
        let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let parse_error = |message: String| FaultScriptError::Parse { path: shown.clone(), message };
        let script: FaultScript = if is_json {
            serde_json::from_str(&text).map_err(|e| parse_error(e.to_string()))?
        } else {
            toml::from_str(&text).map_err(|e| parse_error(e.to_string()))?
        };
        script.validate().map_err(parse_error)?;
        Ok(script)
    }

    /// Checks rates are probabilities.
    ///
    /// # Errors
    /// A message naming the bad rule.
    pub fn validate(&self) -> Result<(), String> {
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(rate) = rule.rate
                && !(0.0..=1.0).contains(&rate)
            {
                return Err(format!("rule {i} ({}): rate must be between 0 and 1, got {rate}", rule.kind.name()));
            }
        }
        Ok(())
    }
}

/// The live rule set of a running simulator.
#[derive(Debug, Default)]
pub(crate) struct FaultEngine {
    pub rules: Vec<FaultRule>,
}

impl FaultEngine {
    /// The first rule among `kinds` that fires for this event.
    pub fn fire_first(
        &mut self,
        want: impl Fn(FaultKind) -> bool,
        account: &str,
        endpoint: &str,
        rng: &mut impl Rng,
    ) -> Option<FaultKind> {
        self.rules
            .iter_mut()
            .filter(|r| want(r.kind) && r.matches(account, endpoint))
            .find_map(|r| r.roll(rng).then_some(r.kind))
    }

    /// Every job-level kind that fires for one accepted job (each rule rolled once).
    pub fn fire_job(&mut self, account: &str, endpoint: &str, rng: &mut impl Rng) -> Vec<FaultKind> {
        let mut fired = Vec::new();
        for rule in self.rules.iter_mut().filter(|r| r.kind.is_job() && r.matches(account, endpoint)) {
            if rule.roll(rng) && !fired.contains(&rule.kind) {
                fired.push(rule.kind);
            }
        }
        fired
    }
}

/// A prompt marker: `[[fault:KIND]]` (always) or `[[fault:KIND:N]]` (the first N times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub kind: FaultKind,
    pub times: Option<u32>,
}

/// Finds every fault marker in any string of the input JSON.
pub(crate) fn markers(input: &Value) -> Vec<Marker> {
    let mut out = Vec::new();
    collect_markers(input, &mut out);
    out
}

fn collect_markers(value: &Value, out: &mut Vec<Marker>) {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("[[fault:") {
                let after = &rest[start + 8..];
                let Some(end) = after.find("]]") else { break };
                let body = &after[..end];
                let (name, times) = match body.split_once(':') {
                    Some((name, n)) => (name, n.parse().ok()),
                    None => (body, None),
                };
                if let Some(kind) = FaultKind::from_name(name)
                    && !out.iter().any(|m: &Marker| m.kind == kind)
                {
                    out.push(Marker { kind, times });
                }
                rest = &after[end + 2..];
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_markers(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_markers(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn finds_markers_anywhere() {
        let input = serde_json::json!({"prompt": "a cat [[fault:content_policy]] and [[fault:submit_429:2]]",
            "nested": ["[[fault:slow_cdn]]", "[[fault:bogus]]"]});
        let found = markers(&input);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.contains(&Marker { kind: FaultKind::ContentPolicy, times: None }));
        assert!(found.contains(&Marker { kind: FaultKind::Submit429, times: Some(2) }));
        assert!(found.contains(&Marker { kind: FaultKind::SlowCdn, times: None }));
        let found = markers(&serde_json::json!({"prompt": "x [[fault:result_503_gateway:3]] [[fault:result_503]]"}));
        assert_eq!(
            found,
            [
                Marker { kind: FaultKind::Result503Gateway, times: Some(3) },
                Marker { kind: FaultKind::Result503, times: None }
            ]
        );
        assert!(FaultKind::Result503Gateway.is_result_glitch() && FaultKind::Result503Gateway.is_job());
        assert!(!FaultKind::Result503.is_result_glitch());
    }

    #[test]
    fn names_round_trip_through_serde() {
        for kind in FaultKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
            assert_eq!(FaultKind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn burst_and_skip() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut engine =
            FaultEngine { rules: vec![FaultRule { skip: 1, ..FaultRule::burst(FaultKind::Submit429, 2) }] };
        let fired: Vec<bool> =
            (0..5).map(|_| engine.fire_first(FaultKind::is_submit, "a", "fal-ai/x", &mut rng).is_some()).collect();
        assert_eq!(fired, [false, true, true, false, false]);
    }

    #[test]
    fn filters_apply() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut engine = FaultEngine {
            rules: vec![FaultRule::always(FaultKind::Nsfw).for_account("a").for_endpoint("fal-ai/flux")],
        };
        assert_eq!(engine.fire_job("a", "fal-ai/flux/schnell", &mut rng), [FaultKind::Nsfw]);
        assert!(engine.fire_job("b", "fal-ai/flux/schnell", &mut rng).is_empty());
        assert!(engine.fire_job("a", "fal-ai/nano-banana", &mut rng).is_empty());
    }

    #[test]
    fn scripts_parse_in_toml_and_json() {
        let toml_text = r#"
            [[rule]]
            kind = "submit_429"
            count = 3

            [[rule]]
            kind = "result_503"
            rate = 0.1
            endpoint = "fal-ai/flux-pro"
        "#;
        let script: FaultScript = toml::from_str(toml_text).unwrap();
        assert_eq!(script.rules.len(), 2);
        assert_eq!(script.rules[0], FaultRule::burst(FaultKind::Submit429, 3));
        let json: FaultScript =
            serde_json::from_str(r#"{"rules":[{"kind":"stuck","account":"main"},{"kind":"nsfw","rate":0.5}]}"#)
                .unwrap();
        assert_eq!(json.rules[0], FaultRule::always(FaultKind::Stuck).for_account("main"));
        assert!(FaultScript { rules: vec![FaultRule::rate(FaultKind::Nsfw, 2.0)] }.validate().is_err());
        assert!(toml::from_str::<FaultScript>("[[rule]]\nkind = \"nope\"").is_err());
    }
}
