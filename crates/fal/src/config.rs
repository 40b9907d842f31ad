//! Configuration: hosts, accounts with their keys, polling, retries and limits.
//!
//! Every host is configuration so tests and the demo can point the adapter at the
//! simulator. Keys are [`SecretString`]s: `Debug` of any type here never shows them.

use mediagen_domain::backoff::Backoff;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

/// Everything the fal adapter needs. Deserializes from the app's configuration; every
/// field has a default aimed at the real fal hosts except `accounts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FalConfig {
    /// Queue host, e.g. `https://queue.fal.run` (submit, status, result, cancel).
    pub queue_base: String,
    /// REST host, e.g. `https://rest.fal.ai` (storage uploads).
    pub rest_base: String,
    /// Platform API host, e.g. `https://api.fal.ai` (account billing). Named as the
    /// operator sets it (`[fal] platform_url`, `MEDIAGEN__FAL__PLATFORM_URL`): unlike the
    /// other hosts it is read straight from the settings file.
    pub platform_url: String,
    /// URL prefixes `download` may fetch from (fal's CDNs). Empty allows any http(s) URL.
    pub cdn_bases: Vec<String>,
    /// The fal accounts and their keys.
    pub accounts: Vec<FalAccountConfig>,
    /// How `wait` follows a request.
    pub poll: PollConfig,
    /// How transient failures are retried inside the adapter.
    pub retry: RetryConfig,
    /// Cap on establishing a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Cap on one API call (request and answer), in milliseconds.
    pub request_timeout_ms: u64,
    /// Cap on one CDN download, in milliseconds.
    pub download_timeout_ms: u64,
    /// Largest file `download` accepts.
    pub download_max_bytes: u64,
    /// Largest file `upload` sends.
    pub upload_max_bytes: u64,
    /// How long fal keeps generated media and uploads (sent as
    /// `X-Fal-Object-Lifecycle-Preference`); `None` leaves fal's default. Must not be 0
    /// (fal reads 0 as "never expire").
    pub media_retention_secs: Option<u64>,
    /// fal's start deadline (`X-Fal-Request-Timeout`): queue wait allowed before a run
    /// begins; `None` waits indefinitely. Must be more than 1.
    pub start_timeout_secs: Option<u64>,
    /// When false, asks fal not to keep request and response JSON (`X-Fal-Store-IO: 0`).
    pub store_io: bool,
    /// `output_format` sent to image models (`jpeg` or `png`).
    pub image_output_format: String,
}

impl Default for FalConfig {
    fn default() -> Self {
        Self {
            queue_base: "https://queue.fal.run".to_owned(),
            rest_base: "https://rest.fal.ai".to_owned(),
            platform_url: "https://api.fal.ai".to_owned(),
            cdn_bases: vec![
                "https://v3.fal.media/".to_owned(),
                "https://v3b.fal.media/".to_owned(),
                "https://fal.media/".to_owned(),
                "https://storage.googleapis.com/falserverless/".to_owned(),
            ],
            accounts: Vec::new(),
            poll: PollConfig::default(),
            retry: RetryConfig::default(),
            connect_timeout_ms: 10_000,
            request_timeout_ms: 60_000,
            download_timeout_ms: 120_000,
            download_max_bytes: 50 * 1024 * 1024,
            upload_max_bytes: 20 * 1024 * 1024,
            media_retention_secs: Some(86_400),
            start_timeout_secs: None,
            store_io: true,
            image_output_format: "jpeg".to_owned(),
        }
    }
}

/// One fal account: capacity (the concurrency limit) and billing belong to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalAccountConfig {
    /// The operator's name for it; becomes the [`mediagen_domain::AccountId`].
    pub name: String,
    /// Its API keys, used in turn.
    pub keys: Vec<FalKey>,
}

/// One API key of an account.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalKey {
    /// A name to log instead of the key.
    pub name: String,
    /// `<key_id>:<key_secret>` as fal shows it.
    pub secret: SecretString,
}

impl fmt::Debug for FalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FalKey").field("name", &self.name).field("secret", &"[REDACTED]").finish()
    }
}

/// Polling of a request's status in `wait`: the interval grows from `initial_interval_ms`
/// by `multiplier` up to `max_interval_ms`. The follow ends at the deadline the caller
/// passes to `wait`, not at `deadline_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollConfig {
    /// First pause between status checks.
    pub initial_interval_ms: u64,
    /// Growth of the pause after each check (at least 1).
    pub multiplier: f64,
    /// Longest pause.
    pub max_interval_ms: u64,
    /// Not used any more: `wait` follows a request until the deadline its caller passes
    /// (the engine's, counted from fal's acceptance). Kept so existing configurations load.
    pub deadline_ms: u64,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self { initial_interval_ms: 500, multiplier: 1.5, max_interval_ms: 5_000, deadline_ms: 15 * 60 * 1000 }
    }
}

impl PollConfig {
    /// First pause.
    pub fn initial_interval(&self) -> Duration {
        Duration::from_millis(self.initial_interval_ms)
    }

    /// Longest pause.
    pub fn max_interval(&self) -> Duration {
        Duration::from_millis(self.max_interval_ms)
    }

    /// `deadline_ms` as a duration (not used by `wait`; see the field).
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// The pause after `current`.
    pub fn next_interval(&self, current: Duration) -> Duration {
        current.mul_f64(self.multiplier).min(self.max_interval())
    }
}

/// Retries of transient failures (429, 502/503/504, network): the n-th retry waits
/// `min(base · 2ⁿ, max)`, shortened by up to `jitter` of it (the domain's `Backoff`). Inside `wait`, status and result calls are retried
/// with the same delays until the follow deadline instead of `max_retries` times.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first attempt (submit, result, cancel, uploads, downloads).
    pub max_retries: u32,
    /// Retries of a status check (cheap and safe, so more).
    pub status_max_retries: u32,
    /// Delay before the first retry, in milliseconds.
    pub base_delay_ms: u64,
    /// Longest delay, in milliseconds.
    pub max_delay_ms: u64,
    /// Share of the delay that may be taken off at random, 0.25 = up to 25 %.
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { max_retries: 3, status_max_retries: 5, base_delay_ms: 1_000, max_delay_ms: 30_000, jitter: 0.25 }
    }
}

impl RetryConfig {
    /// The back-off these settings describe (the domain's one rule).
    pub fn backoff(&self) -> Backoff {
        Backoff {
            base: Duration::from_millis(self.base_delay_ms),
            max: Duration::from_millis(self.max_delay_ms),
            jitter: self.jitter,
        }
    }

    /// The pause before retry number `retry` (0-based); a server's `Retry-After` is
    /// honoured up to the maximum delay.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        self.backoff().delay(retry.saturating_add(1), rand::random::<f64>(), retry_after)
    }
}

/// A configuration the adapter cannot run with. Never contains a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fal configuration: {0}")]
pub struct ConfigError(pub String);

impl FalConfig {
    /// Checks what deserialization cannot: URLs, non-empty unique names, usable keys, sane numbers.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first problem (never the key itself).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        for (what, url) in
            [("queue_base", &self.queue_base), ("rest_base", &self.rest_base), ("platform_url", &self.platform_url)]
        {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return err(format!("{what} {url:?} is not an http(s) URL")),
            }
        }
        for base in &self.cdn_bases {
            match reqwest::Url::parse(base) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return err(format!("cdn_bases entry {base:?} is not an http(s) URL")),
            }
        }
        if self.accounts.is_empty() {
            return err("no fal accounts configured".to_owned());
        }
        let mut names = HashSet::new();
        for account in &self.accounts {
            if account.name.trim().is_empty() {
                return err("an account has an empty name".to_owned());
            }
            if !names.insert(account.name.as_str()) {
                return err(format!("account {:?} is configured twice", account.name));
            }
            if account.keys.is_empty() {
                return err(format!("account {:?} has no keys", account.name));
            }
            let mut key_names = HashSet::new();
            for key in &account.keys {
                if !key_names.insert(key.name.as_str()) {
                    return err(format!("account {:?} has two keys named {:?}", account.name, key.name));
                }
                let secret = key.secret.expose_secret();
                if secret.trim().is_empty() {
                    return err(format!("key {:?} of account {:?} is empty", key.name, account.name));
                }
                if secret.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
                    return err(format!(
                        "key {:?} of account {:?} has spaces or characters not allowed in a header",
                        key.name, account.name
                    ));
                }
            }
        }
        if self.poll.initial_interval_ms == 0 || self.poll.max_interval_ms < self.poll.initial_interval_ms {
            return err("poll intervals must be positive with max_interval_ms >= initial_interval_ms".to_owned());
        }
        if !(self.poll.multiplier >= 1.0 && self.poll.multiplier.is_finite()) {
            return err("poll.multiplier must be a finite number >= 1".to_owned());
        }
        if self.retry.max_delay_ms < self.retry.base_delay_ms || !(0.0..1.0).contains(&self.retry.jitter) {
            return err("retry needs max_delay_ms >= base_delay_ms and 0 <= jitter < 1".to_owned());
        }
        if self.media_retention_secs == Some(0) {
            return err(
                "media_retention_secs = 0 means 'never expire' to fal; leave it unset for fal's default".to_owned()
            );
        }
        if matches!(self.start_timeout_secs, Some(s) if s <= 1) {
            return err("start_timeout_secs must be more than 1".to_owned());
        }
        if self.download_max_bytes == 0 || self.upload_max_bytes == 0 {
            return err("size limits must be positive".to_owned());
        }
        if self.request_timeout_ms == 0 || self.download_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return err("timeouts must be positive".to_owned());
        }
        if !matches!(self.image_output_format.as_str(), "jpeg" | "png") {
            return err("image_output_format must be jpeg or png".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FalConfig {
        FalConfig {
            accounts: vec![FalAccountConfig {
                name: "main".into(),
                keys: vec![FalKey { name: "k1".into(), secret: SecretString::from("id:hunter2-secret") }],
            }],
            ..FalConfig::default()
        }
    }

    #[test]
    fn defaults_validate_once_an_account_exists() {
        assert!(FalConfig::default().validate().is_err());
        config().validate().unwrap();
    }

    #[test]
    fn debug_never_shows_keys() {
        let text = format!("{:?} {:#?}", config(), config());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("k1"));
    }

    #[test]
    fn rejects_bad_values_without_echoing_keys() {
        let mut c = config();
        c.accounts[0].keys[0].secret = SecretString::from("id:bad secret");
        let e = c.validate().unwrap_err();
        assert!(!e.to_string().contains("bad secret"));
        let mut c = config();
        c.media_retention_secs = Some(0);
        assert!(c.validate().is_err());
        let mut c = config();
        c.accounts.push(c.accounts[0].clone());
        assert!(c.validate().is_err());
        let mut c = config();
        c.queue_base = "queue.fal.run".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn deserializes_with_defaults() {
        let c: FalConfig = serde_json::from_value(serde_json::json!({
            "accounts": [{"name": "main", "keys": [{"name": "a", "secret": "x:y"}]}],
            "poll": {"initial_interval_ms": 10}
        }))
        .unwrap();
        assert_eq!(c.queue_base, "https://queue.fal.run");
        assert_eq!(c.platform_url, "https://api.fal.ai");
        assert_eq!(c.poll.initial_interval_ms, 10);
        assert_eq!(c.poll.max_interval_ms, 5_000);
        c.validate().unwrap();
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let r = RetryConfig::default();
        for _ in 0..50 {
            let d0 = r.delay(0, None).as_millis();
            assert!((750..=1000).contains(&d0), "{d0}");
            let d10 = r.delay(10, None).as_millis();
            assert!((22_500..=30_000).contains(&d10), "{d10}");
        }
        let none = RetryConfig { jitter: 0.0, ..r };
        assert_eq!(none.delay(2, None), Duration::from_secs(4));
        assert_eq!(none.delay(0, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(none.delay(0, Some(Duration::from_secs(700))), Duration::from_secs(30));
    }

    #[test]
    fn poll_interval_grows_to_the_cap() {
        let p = PollConfig::default();
        let mut d = p.initial_interval();
        let mut seen = vec![];
        for _ in 0..10 {
            seen.push(d.as_millis());
            d = p.next_interval(d);
        }
        assert_eq!(&seen[..4], &[500, 750, 1125, 1687]);
        assert_eq!(*seen.last().unwrap(), 5000);
    }
}
