//! Configuration of a simulator instance: accounts, the model table, time and faults.

use crate::faults::FaultScript;
use crate::money::Usd;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Everything a simulator instance needs; `SimConfig::default()` is a ready-to-use instance.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind; port 0 picks a free port. Defaults to `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Base URL written into `response_url`, `file_url` etc.; `None` = `http://{bound address}`.
    pub public_url: Option<String>,
    /// Accounts with their keys, concurrency limits and balances. Empty = one default account.
    pub accounts: Vec<AccountConfig>,
    /// Speed-up of every simulated duration (1 = real time, 100 = 100x faster).
    pub time_scale: f64,
    /// Seed of the random generator behind service times, output seeds and fault rates.
    pub seed: u64,
    /// Known endpoints; submits to any other endpoint follow `unknown_models`.
    pub models: Vec<ModelConfig>,
    /// What to do with a submit to an endpoint that is not in `models`.
    pub unknown_models: UnknownModelPolicy,
    /// Fault rules active from the start (more can be added at runtime).
    pub faults: FaultScript,
    /// Largest accepted storage upload (PUT body), in bytes.
    pub max_upload_bytes: usize,
    /// Largest accepted submit body, in bytes.
    pub max_request_bytes: usize,
    /// Charge the endpoint price when a job ends in a 422 content-policy violation.
    pub charge_content_policy: bool,
    /// Cancelling an IN_PROGRESS job stops it at once (no charge) instead of letting it finish.
    pub abort_running_on_cancel: bool,
    /// Side in pixels of the generated PNG files (the JSON still reports the requested size).
    pub image_px: u32,
    /// Total delivery time, in simulated seconds, of a file hit by the `slow_cdn` fault.
    pub slow_cdn_secs: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            public_url: None,
            accounts: Vec::new(),
            time_scale: 1.0,
            seed: 0,
            models: default_models(),
            unknown_models: UnknownModelPolicy::Reject,
            faults: FaultScript::default(),
            max_upload_bytes: 20 * 1024 * 1024,
            max_request_bytes: 32 * 1024 * 1024,
            charge_content_policy: true,
            abort_running_on_cancel: false,
            image_px: 64,
            slow_cdn_secs: 5.0,
        }
    }
}

impl SimConfig {
    /// Adds an account (builder style).
    pub fn with_account(mut self, account: AccountConfig) -> Self {
        self.accounts.push(account);
        self
    }

    /// Sets the time scale (builder style).
    pub fn with_time_scale(mut self, time_scale: f64) -> Self {
        self.time_scale = time_scale;
        self
    }

    /// Sets the same service time for every model (builder style; handy in tests).
    pub fn with_service_time_all(mut self, service: ServiceTime) -> Self {
        for model in &mut self.models {
            model.service = service;
        }
        self
    }

    /// Adds or replaces a model entry (builder style).
    pub fn with_model(mut self, model: ModelConfig) -> Self {
        self.models.retain(|m| m.endpoint != model.endpoint);
        self.models.push(model);
        self
    }

    /// Adds fault rules (builder style).
    pub fn with_faults(mut self, faults: FaultScript) -> Self {
        self.faults.rules.extend(faults.rules);
        self
    }

    /// Checks the values that would make the simulator misbehave.
    ///
    /// # Errors
    /// A readable message for a non-positive time scale, an account without keys,
    /// a key shared by two accounts, or an invalid fault rate or service time.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return Err(format!("time scale must be a positive number, got {}", self.time_scale));
        }
        let mut seen = std::collections::HashMap::new();
        for account in &self.accounts {
            if account.keys.is_empty() {
                return Err(format!("account {:?} has no key", account.name));
            }
            for key in &account.keys {
                if let Some(other) = seen.insert(key.clone(), account.name.clone())
                    && other != account.name
                {
                    return Err(format!("key is used by two accounts: {other:?} and {:?}", account.name));
                }
            }
        }
        for model in &self.models {
            model.service.validate().map_err(|e| format!("{}: {e}", model.endpoint))?;
        }
        self.faults.validate()
    }
}

/// What a submit to an endpoint missing from the model table gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum UnknownModelPolicy {
    /// Answer 404 "Application ... not found", as fal answers a typo.
    Reject,
    /// Serve it as a FLUX-style image model with default price and service time.
    Image,
}

/// One fal account: a balance and a concurrency limit shared by all of its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountConfig {
    /// Account name (used in introspection and admin URLs).
    pub name: String,
    /// API keys (the whole `Key <...>` value after `Key `), all sharing the account.
    pub keys: Vec<String>,
    /// Maximum number of simultaneous IN_PROGRESS requests.
    pub limit: u32,
    /// Starting balance; `None` = unlimited (never locks by balance).
    pub balance: Option<Usd>,
    /// The account locks when its balance is at or below this amount.
    pub lock_threshold: Usd,
    /// Keys (among `keys`) with the admin permissions of fal's Platform API: only they may
    /// read the account's billing; the others are inference-only and get 403 there.
    pub admin_keys: Vec<String>,
}

impl AccountConfig {
    /// An account with one key, the given limit and an unlimited balance.
    pub fn new(name: impl Into<String>, key: impl Into<String>, limit: u32) -> Self {
        AccountConfig {
            name: name.into(),
            keys: vec![key.into()],
            limit,
            balance: None,
            lock_threshold: Usd::ZERO,
            admin_keys: Vec::new(),
        }
    }

    /// Adds a key with admin permissions, or marks a key it has as admin (builder style).
    pub fn with_admin_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        if !self.keys.contains(&key) {
            self.keys.push(key.clone());
        }
        if !self.admin_keys.contains(&key) {
            self.admin_keys.push(key);
        }
        self
    }

    /// Adds a key (builder style).
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Sets a finite starting balance (builder style).
    pub fn with_balance(mut self, balance: Usd) -> Self {
        self.balance = Some(balance);
        self
    }
}

/// The output family of an endpoint: decides validation, output JSON and generated files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// FLUX family: `prompt`, `image_size`, `num_images`; output with width/height, seed, nsfw flags.
    Flux,
    /// Nano-banana text-to-image: `prompt`; images without width/height plus `description`.
    NanoBanana,
    /// Nano-banana edit: like `NanoBanana` but `image_urls` is required.
    NanoBananaEdit,
    /// Prompt helper LLM (`fal-ai/any-llm` shape): `prompt`; `{output, usage}`.
    Llm,
    /// `openrouter/router`: like `Llm` but `model` is required too.
    Openrouter,
    /// ElevenLabs TTS: `text`; `{audio: {url, content_type, file_size}}` with a WAV file.
    Tts,
}

impl std::str::FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "flux" | "image" => ModelKind::Flux,
            "nano-banana" => ModelKind::NanoBanana,
            "nano-banana-edit" | "edit" => ModelKind::NanoBananaEdit,
            "llm" => ModelKind::Llm,
            "openrouter" => ModelKind::Openrouter,
            "tts" => ModelKind::Tts,
            other => {
                return Err(format!(
                    "unknown model kind {other:?} (flux, nano-banana, nano-banana-edit, llm, openrouter, tts)"
                ));
            }
        })
    }
}

/// How an endpoint is billed on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Price {
    /// A fixed amount per generated image.
    PerImage(Usd),
    /// Per megapixel of each image, rounded up per image (1 MP = 1024 x 1024).
    PerMegapixel(Usd),
    /// Per 1000 characters of input text (pro rata).
    Per1000Chars(Usd),
    /// `openrouter/router`: per input and output token at the rate of the model the
    /// request chose (`model`), as fal bills it; models the table does not know are
    /// billed at the `Per1000Tokens` default of LLM endpoints.
    PerTokenOfChosenModel,
    /// Per 1000 input and per 1000 output tokens (pro rata).
    Per1000Tokens {
        /// Price of 1000 input tokens.
        input: Usd,
        /// Price of 1000 output tokens.
        output: Usd,
    },
    /// A fixed amount per request.
    PerRequest(Usd),
}

/// A simulated service time in (simulated) seconds; divided by the time scale for real time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceTime {
    /// Always this many seconds.
    Fixed(f64),
    /// Uniformly between `min` and `max` seconds.
    Uniform {
        /// Lower bound, seconds.
        min: f64,
        /// Upper bound, seconds.
        max: f64,
    },
    /// Exponentially distributed with this mean, seconds.
    Exponential(f64),
}

impl ServiceTime {
    /// Draws one service time in simulated seconds.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match *self {
            ServiceTime::Fixed(s) => s,
            ServiceTime::Uniform { min, max } if max > min => rng.random_range(min..max),
            ServiceTime::Uniform { min, .. } => min,
            ServiceTime::Exponential(mean) => {
                let u: f64 = rng.random();
                -mean * (1.0 - u).ln()
            }
        }
    }

    /// Checks that every bound is finite and non-negative.
    ///
    /// # Errors
    /// A message naming the bad value.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        let good = match *self {
            ServiceTime::Fixed(s) | ServiceTime::Exponential(s) => ok(s),
            ServiceTime::Uniform { min, max } => ok(min) && ok(max) && min <= max,
        };
        if good { Ok(()) } else { Err(format!("invalid service time {self:?}")) }
    }

    /// Converts simulated seconds to a real duration under `time_scale`.
    pub(crate) fn real(secs: f64, time_scale: f64) -> Duration {
        Duration::from_secs_f64((secs / time_scale).clamp(0.0, 1e9))
    }
}

impl std::str::FromStr for ServiceTime {
    type Err = String;

    /// `2.5` (fixed), `1..3` (uniform), `exp:2` (exponential mean).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let num = |v: &str| v.trim().parse::<f64>().map_err(|_| format!("not a number of seconds: {v:?}"));
        let st = if let Some(mean) = s.strip_prefix("exp:") {
            ServiceTime::Exponential(num(mean)?)
        } else if let Some((a, b)) = s.split_once("..") {
            ServiceTime::Uniform { min: num(a)?, max: num(b)? }
        } else {
            ServiceTime::Fixed(num(s)?)
        };
        st.validate()?;
        Ok(st)
    }
}

/// One row of the model table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Full endpoint id, e.g. `fal-ai/flux-pro/v1.1`.
    pub endpoint: String,
    /// Output family.
    pub kind: ModelKind,
    /// Price charged on success.
    pub price: Price,
    /// Service time while IN_PROGRESS.
    pub service: ServiceTime,
}

impl ModelConfig {
    /// A row with the default price and service time of its kind.
    pub fn new(endpoint: impl Into<String>, kind: ModelKind) -> Self {
        let (price, service) = kind_defaults(kind);
        ModelConfig { endpoint: endpoint.into(), kind, price, service }
    }
}

/// What an LLM endpoint bills per 1000 tokens unless told otherwise.
pub(crate) const LLM_DEFAULT_PRICE: Price =
    Price::Per1000Tokens { input: Usd::from_micros(100), output: Usd::from_micros(400) };

/// OpenRouter's list rates per 1000 tokens (input, output) of the models a prompt helper
/// is likely to choose, in micro-dollars: $0.30 / $2.50 per million for Gemini 2.5 Flash.
pub(crate) const OPENROUTER_RATES: &[(&str, i64, i64)] = &[
    ("google/gemini-2.5-flash", 300, 2_500),
    ("google/gemini-2.5-flash-lite", 100, 400),
    ("openai/gpt-4o-mini", 150, 600),
];

fn kind_defaults(kind: ModelKind) -> (Price, ServiceTime) {
    match kind {
        ModelKind::Flux => (Price::PerMegapixel(Usd::from_micros(25_000)), ServiceTime::Uniform { min: 2.0, max: 4.0 }),
        ModelKind::NanoBanana | ModelKind::NanoBananaEdit => {
            (Price::PerImage(Usd::from_micros(39_000)), ServiceTime::Uniform { min: 4.5, max: 7.5 })
        }
        ModelKind::Llm => (LLM_DEFAULT_PRICE, ServiceTime::Uniform { min: 0.5, max: 1.5 }),
        ModelKind::Openrouter => (Price::PerTokenOfChosenModel, ServiceTime::Uniform { min: 0.5, max: 1.5 }),
        ModelKind::Tts => (Price::Per1000Chars(Usd::from_micros(100_000)), ServiceTime::Uniform { min: 1.5, max: 2.5 }),
    }
}

/// The default model table: fal's list prices and plausible service times.
pub fn default_models() -> Vec<ModelConfig> {
    let row =
        |endpoint: &str, kind, price, service| ModelConfig { endpoint: endpoint.to_owned(), kind, price, service };
    let uniform = |min, max| ServiceTime::Uniform { min, max };
    vec![
        row("fal-ai/flux-pro/v1.1", ModelKind::Flux, Price::PerMegapixel(Usd::from_micros(40_000)), uniform(3.0, 5.0)),
        row(
            "fal-ai/flux-pro/v1.1-ultra",
            ModelKind::Flux,
            Price::PerImage(Usd::from_micros(60_000)),
            uniform(5.0, 8.0),
        ),
        row("fal-ai/flux/schnell", ModelKind::Flux, Price::PerMegapixel(Usd::from_micros(3_000)), uniform(1.0, 2.0)),
        row("fal-ai/flux/dev", ModelKind::Flux, Price::PerMegapixel(Usd::from_micros(25_000)), uniform(2.0, 4.0)),
        row("fal-ai/nano-banana", ModelKind::NanoBanana, Price::PerImage(Usd::from_micros(39_000)), uniform(4.5, 7.5)),
        row(
            "fal-ai/nano-banana/edit",
            ModelKind::NanoBananaEdit,
            Price::PerImage(Usd::from_micros(39_000)),
            uniform(4.5, 7.5),
        ),
        ModelConfig::new("openrouter/router", ModelKind::Openrouter),
        ModelConfig::new("fal-ai/any-llm", ModelKind::Llm),
        ModelConfig::new("fal-ai/elevenlabs/tts/multilingual-v2", ModelKind::Tts),
        ModelConfig::new("fal-ai/elevenlabs/tts/turbo-v2.5", ModelKind::Tts),
    ]
}

/// One `--model` flag: an endpoint, its kind and optional price and service-time overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Full endpoint id.
    pub endpoint: String,
    /// Output family.
    pub kind: ModelKind,
    /// Price override.
    pub price: Option<Price>,
    /// Service-time override.
    pub service: Option<ServiceTime>,
}

impl ModelSpec {
    /// The row this flag stands for: a known endpoint of the same kind keeps its defaults
    /// for whatever the flag leaves out; anything else starts from the kind's defaults.
    pub fn apply(&self, existing: Option<&ModelConfig>) -> ModelConfig {
        let mut row = match existing {
            Some(row) if row.kind == self.kind => row.clone(),
            _ => ModelConfig::new(self.endpoint.clone(), self.kind),
        };
        if let Some(price) = self.price {
            row.price = price;
        }
        if let Some(service) = self.service {
            row.service = service;
        }
        row
    }
}

impl std::str::FromStr for ModelSpec {
    type Err = String;

    /// `ENDPOINT=KIND[,price=SPEC][,service=SPEC]`. Price specs: `0.04` (per image, per 1000
    /// chars for TTS, per request for LLMs), `0.003/mp`, `0.04/image`, `0.1/1kchars`,
    /// `0.0001:0.0004/1ktokens`, `0.01/request`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut parts = spec.split(',');
        let head = parts.next().unwrap_or_default();
        let (endpoint, kind) = head
            .split_once('=')
            .ok_or_else(|| format!("expected ENDPOINT=KIND[,price=..][,service=..], got {spec:?}"))?;
        if endpoint.split('/').filter(|s| !s.is_empty()).count() < 2 {
            return Err(format!("endpoint must look like owner/app[/path], got {endpoint:?}"));
        }
        let kind: ModelKind = kind.parse()?;
        let mut out = ModelSpec { endpoint: endpoint.trim_matches('/').to_owned(), kind, price: None, service: None };
        for part in parts {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("expected key=value, got {part:?}"))?;
            match k {
                "price" => out.price = Some(parse_price(v, kind)?),
                "service" => out.service = Some(v.parse()?),
                other => return Err(format!("unknown model option {other:?} (price, service)")),
            }
        }
        Ok(out)
    }
}

fn parse_price(spec: &str, kind: ModelKind) -> Result<Price, String> {
    let usd = |v: &str| v.parse::<Usd>().map_err(|e| e.to_string());
    let (amount, unit) = spec.split_once('/').unwrap_or((spec, ""));
    Ok(match unit {
        "mp" => Price::PerMegapixel(usd(amount)?),
        "image" => Price::PerImage(usd(amount)?),
        "1kchars" => Price::Per1000Chars(usd(amount)?),
        "request" => Price::PerRequest(usd(amount)?),
        "1ktokens" => {
            let (i, o) = amount.split_once(':').unwrap_or((amount, amount));
            Price::Per1000Tokens { input: usd(i)?, output: usd(o)? }
        }
        "" => match kind {
            ModelKind::Tts => Price::Per1000Chars(usd(amount)?),
            ModelKind::Llm | ModelKind::Openrouter => Price::PerRequest(usd(amount)?),
            _ => Price::PerImage(usd(amount)?),
        },
        other => return Err(format!("unknown price unit {other:?} (mp, image, 1kchars, 1ktokens, request)")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_spec_parses() {
        let parse = |s: &str| s.parse::<ModelSpec>().map(|spec| spec.apply(None));
        let m = parse("acme/painter/v2=flux,price=0.01/mp,service=1..2").unwrap();
        assert_eq!(m.endpoint, "acme/painter/v2");
        assert_eq!(m.kind, ModelKind::Flux);
        assert_eq!(m.price, Price::PerMegapixel(Usd::from_micros(10_000)));
        assert_eq!(m.service, ServiceTime::Uniform { min: 1.0, max: 2.0 });
        let t = parse("acme/speak=tts,price=0.2,service=exp:3").unwrap();
        assert_eq!(t.price, Price::Per1000Chars(Usd::from_micros(200_000)));
        assert_eq!(t.service, ServiceTime::Exponential(3.0));
        assert!(parse("nope=flux").is_err());
        assert!(parse("a/b=flux,service=-1").is_err());
        assert!(parse("a/b=whatever").is_err());
    }

    #[test]
    fn samples_stay_in_range() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let s = ServiceTime::Uniform { min: 1.0, max: 2.0 }.sample(&mut rng);
            assert!((1.0..2.0).contains(&s));
            assert!(ServiceTime::Exponential(1.0).sample(&mut rng) >= 0.0);
        }
    }
}
