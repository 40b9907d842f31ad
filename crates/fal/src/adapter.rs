//! [`FalGeneration`]: the `Generation` port over fal's queue API.

use crate::config::{ConfigError, FalConfig};
use crate::http::{Call, Caller, Op, Reply};
use crate::input::{app_prefix, carries_telegram_token, model_input, model_segments};
use crate::media::decode_data_uri;
use crate::wire::{CancelResponse, ErrorBody, StatusResponse, SubmitResponse, UploadInitiateResponse, parse_output};
use async_trait::async_trait;
use mediagen_domain::{AccountId, RequestId, Timestamp};
use mediagen_ports::{
    CancelOutcome, Generation, GenerationError, GenerationOutput, GenerationRequest, KeyStatus, MediaBytes,
    OutputMedia, RemoteHandle, RemoteStatus,
};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, RequestBuilder, Url};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tracing::{Span, debug, info, instrument, warn};

/// Largest JSON answer read from fal (results can carry data URIs).
const JSON_LIMIT: u64 = 32 * 1024 * 1024;

/// The app whose queue a key probe asks about (any app works: the request never exists).
const PROBE_APP: &str = "fal-ai/flux";

/// The fal adapter: implements [`Generation`] over fal's HTTP queue API.
///
/// Cheap to share behind an `Arc`; holds one connection pool.
pub struct FalGeneration {
    http: reqwest::Client,
    config: FalConfig,
    queue_base: Url,
    accounts: HashMap<AccountId, Account>,
}

/// An account's keys, used in turn.
struct Account {
    keys: Vec<Key>,
    next: AtomicUsize,
}

struct Key {
    name: String,
    /// `Key <secret>`, marked sensitive so no `Debug` of a request or header map shows it.
    auth: HeaderValue,
    /// Since when fal refuses it (401); such a key is not used until a probe or an
    /// operator puts it back.
    refused_since: Mutex<Option<Timestamp>>,
}

impl Account {
    /// The next usable key, round robin over the keys fal has not refused.
    fn next_key(&self) -> Option<&Key> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.keys.len()).map(|i| &self.keys[(start + i) % self.keys.len()]).find(|k| k.refused_since().is_none())
    }

    fn key(&self, name: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.name == name)
    }
}

impl Key {
    fn new(name: &str, secret: &SecretString) -> Result<Self, ConfigError> {
        let mut auth = HeaderValue::from_str(&format!("Key {}", secret.expose_secret()))
            .map_err(|_| ConfigError(format!("key {name:?} cannot be sent as a header")))?;
        auth.set_sensitive(true);
        Ok(Self { name: name.to_owned(), auth, refused_since: Mutex::new(None) })
    }

    fn refused_since(&self) -> Option<Timestamp> {
        *self.refused_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the key aside; keeps the first refusal's time.
    fn refuse(&self) {
        self.refused_since.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(now);
    }

    fn enable(&self) {
        *self.refused_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Wall-clock now (the adapter has no clock port; key refusals are only reported).
fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// What a probe of a refused key found.
enum Probe {
    /// fal answered something other than 401: the key identifies a user again.
    Accepted(u16),
    /// 401 again.
    Refused,
    /// No answer that says either (transport error, 408, 429, 5xx).
    Unknown(String),
}

/// A request id fal cannot know: 122 random bits in the UUID v4 layout.
fn random_request_id() -> String {
    let bits = (rand::random::<u128>() & !(0xf_u128 << 76) & !(0x3_u128 << 62)) | (0x4_u128 << 76) | (0x2_u128 << 62);
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

impl fmt::Debug for FalGeneration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut accounts: Vec<_> = self.accounts.keys().map(AccountId::as_str).collect();
        accounts.sort_unstable();
        f.debug_struct("FalGeneration")
            .field("queue_base", &self.config.queue_base)
            .field("rest_base", &self.config.rest_base)
            .field("accounts", &accounts)
            .finish_non_exhaustive()
    }
}

impl FalGeneration {
    /// Validates `config` and builds the adapter with its own HTTP client (rustls).
    ///
    /// # Errors
    /// [`ConfigError`] when the configuration is invalid or the client cannot be built.
    pub fn new(config: FalConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .user_agent(concat!("mediagen-fal/", env!("CARGO_PKG_VERSION")))
            // Redirects could carry the Authorization header elsewhere; fal's API does not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError(format!("cannot build the HTTP client: {e}")))?;
        let queue_base = Url::parse(&config.queue_base).map_err(|e| ConfigError(format!("queue_base: {e}")))?;
        let mut accounts = HashMap::new();
        for a in &config.accounts {
            let keys = a.keys.iter().map(|k| Key::new(&k.name, &k.secret)).collect::<Result<_, _>>()?;
            accounts.insert(AccountId::new(a.name.clone()), Account { keys, next: AtomicUsize::new(0) });
        }
        Ok(Self { http, config, queue_base, accounts })
    }

    /// The configured accounts with their key names (never the keys), in configuration order.
    pub fn accounts(&self) -> Vec<(AccountId, Vec<String>)> {
        self.config
            .accounts
            .iter()
            .map(|a| (AccountId::new(a.name.clone()), a.keys.iter().map(|k| k.name.clone()).collect()))
            .collect()
    }

    fn account(&self, id: &AccountId) -> Result<&Account, GenerationError> {
        self.accounts
            .get(id)
            .ok_or_else(|| GenerationError::Other(anyhow::anyhow!("fal account {id} is not configured")))
    }

    fn caller(&self) -> Caller<'_> {
        Caller { retry: &self.config.retry }
    }

    /// Runs `call` with a usable key of `account`. A key fal refuses (401, which surfaces
    /// as `BadKey`) is set aside and the same call repeated with the next usable key: a 401
    /// means fal accepted nothing, so this is safe for every call, a submit included. Only
    /// when no usable key is left does the call end with `BadKey(account)`.
    async fn with_key<'s, T, F, Fut>(&'s self, account: &AccountId, mut call: F) -> Result<T, GenerationError>
    where
        F: FnMut(&'s Key) -> Fut,
        Fut: Future<Output = Result<T, GenerationError>>,
    {
        let acc = self.account(account)?;
        // Each round refuses a key, so this ends; the bound guards against keys an
        // operator or a probe keeps putting back meanwhile.
        for _ in 0..acc.keys.len() * 2 {
            let Some(key) = acc.next_key() else { break };
            match call(key).await {
                Err(GenerationError::BadKey(_)) => {
                    key.refuse();
                    warn!(account = %account, key = %key.name, "fal refused the key (401); using the account's other keys");
                }
                other => return other,
            }
        }
        warn!(account = %account, "fal refuses every key of the account");
        Err(GenerationError::BadKey(account.clone()))
    }

    /// Asks fal about a request that cannot exist with `key`: an authenticated call that
    /// runs nothing and costs nothing. 401 means the key is still refused; any other answer
    /// from fal (404 above all) means fal knows the key.
    async fn probe(&self, key: &Key) -> Probe {
        let url = self.queue_url(PROBE_APP, &format!("{}/status", random_request_id()));
        match self.authed(Method::GET, &url, key).send().await {
            Err(e) => Probe::Unknown(if e.is_timeout() { "timed out".into() } else { "no answer".into() }),
            Ok(response) => match response.status().as_u16() {
                401 => Probe::Refused,
                code @ (408 | 429 | 500..=599) => Probe::Unknown(format!("HTTP {code}")),
                code => Probe::Accepted(code),
            },
        }
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    /// An authenticated request to fal's API with `key`.
    fn authed(&self, method: Method, url: &str, key: &Key) -> RequestBuilder {
        self.http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, key.auth.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.request_timeout())
    }

    fn lifecycle_header(&self) -> Option<String> {
        self.config.media_retention_secs.map(|s| format!(r#"{{"expiration_duration_seconds": {s}}}"#))
    }

    /// Builds status/result/cancel URLs from the endpoint id, for answers that lack them.
    fn queue_url(&self, app: &str, tail: &str) -> String {
        format!("{}/{app}/requests/{tail}", self.config.queue_base.trim_end_matches('/'))
    }

    /// Uses a URL returned by fal only when it points at the configured queue host: the
    /// key is sent to it.
    fn trusted_queue_url(&self, returned: Option<String>, fallback: String) -> String {
        match returned {
            Some(url) if same_origin(&url, &self.queue_base) => url,
            Some(url) => {
                warn!(url = %url, "fal returned a URL on another host; using the standard one");
                fallback
            }
            None => fallback,
        }
    }

    /// One status check; with `until`, transient failures are retried until then.
    async fn status_until(
        &self,
        handle: &RemoteHandle,
        until: Option<Instant>,
    ) -> Result<RemoteStatus, GenerationError> {
        let call = Call {
            op: Op::Status,
            account: Some(&handle.account),
            model: Some(&handle.model),
            body_limit: JSON_LIMIT,
            until,
        };
        let reply = self
            .with_key(&handle.account, |key| {
                debug!(key = %key.name, "status check");
                self.caller()
                    .call(&call, move || self.authed(Method::GET, &handle.status_url, key).query(&[("logs", "0")]))
            })
            .await?;
        let status: StatusResponse = serde_json::from_slice(&reply.body)
            .map_err(|e| GenerationError::Other(anyhow::anyhow!("fal's status answer could not be read: {e}")))?;
        Ok(status.to_status())
    }

    /// Fetches and classifies the result of a completed request, trying again until
    /// `until` whatever is not fal's own answer.
    async fn fetch_result(&self, handle: &RemoteHandle, until: Instant) -> Result<GenerationOutput, GenerationError> {
        let call = Call {
            op: Op::Result,
            account: Some(&handle.account),
            model: Some(&handle.model),
            body_limit: JSON_LIMIT,
            until: Some(until),
        };
        let reply = self
            .with_key(&handle.account, |key| {
                debug!(key = %key.name, "fetching the result");
                self.caller().call(&call, move || self.authed(Method::GET, &handle.response_url, key))
            })
            .await?;
        let output = parse_output(&reply.body);
        match &output {
            Ok(o) => info!(media = o.media.len(), has_text = o.text.is_some(), "fal result fetched"),
            Err(e) => info!(error = %e, "fal result is a failure"),
        }
        output
    }

    fn download_allowed(&self, url: &str) -> bool {
        let Ok(parsed) = Url::parse(url) else { return false };
        if !matches!(parsed.scheme(), "http" | "https") {
            return false;
        }
        // Origins compared parsed, so `https://v3.fal.media.evil.example` never passes for
        // `https://v3.fal.media`.
        self.config.cdn_bases.is_empty()
            || self
                .config
                .cdn_bases
                .iter()
                .filter_map(|b| Url::parse(b).ok())
                .any(|base| base.origin() == parsed.origin() && parsed.path().starts_with(base.path()))
    }
}

/// Same scheme, host and port.
fn same_origin(url: &str, base: &Url) -> bool {
    Url::parse(url).is_ok_and(|u| u.origin() == base.origin())
}

fn file_name_of(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|u| u.path_segments().and_then(|mut s| s.next_back().map(str::to_owned)))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "output".to_owned())
}

#[async_trait]
impl Generation for FalGeneration {
    #[instrument(skip_all, fields(account = %account, bytes = media.bytes.len()))]
    async fn upload(&self, account: &AccountId, media: MediaBytes) -> Result<String, GenerationError> {
        let size = media.bytes.len() as u64;
        if size > self.config.upload_max_bytes {
            return Err(GenerationError::TooLarge { actual: size, limit: self.config.upload_max_bytes });
        }
        let url = format!("{}/storage/upload/initiate", self.config.rest_base.trim_end_matches('/'));
        let body = serde_json::json!({"content_type": media.content_type, "file_name": media.file_name});
        let lifecycle = self.lifecycle_header();
        let call =
            Call { op: Op::UploadInitiate, account: Some(account), model: None, body_limit: JSON_LIMIT, until: None };
        let reply = self
            .with_key(account, |key| {
                debug!(key = %key.name, "initiating upload");
                let (url, body, lifecycle) = (&url, &body, &lifecycle);
                self.caller().call(&call, move || {
                    let mut r = self.authed(Method::POST, url, key).query(&[("storage_type", "fal-cdn-v3")]).json(body);
                    if let Some(l) = lifecycle {
                        r = r.header("X-Fal-Object-Lifecycle", l).header("X-Fal-Object-Lifecycle-Preference", l);
                    }
                    r
                })
            })
            .await?;
        let initiated: UploadInitiateResponse = serde_json::from_slice(&reply.body)
            .map_err(|e| GenerationError::Other(anyhow::anyhow!("fal's upload answer could not be read: {e}")))?;
        // The signed upload URL needs no key, and gets none.
        let bytes = bytes::Bytes::from(media.bytes);
        let call = Call { op: Op::UploadPut, account: Some(account), model: None, body_limit: JSON_LIMIT, until: None };
        self.caller()
            .call(&call, || {
                self.http
                    .put(&initiated.upload_url)
                    .header(CONTENT_TYPE, &media.content_type)
                    .timeout(self.request_timeout())
                    .body(bytes.clone())
            })
            .await?;
        info!("uploaded input to fal storage");
        Ok(initiated.file_url)
    }

    #[instrument(skip_all, fields(account = %account, model = %request.model, request_id = tracing::field::Empty))]
    async fn submit(&self, account: &AccountId, request: &GenerationRequest) -> Result<RemoteHandle, GenerationError> {
        if request.input_image_urls.iter().any(|u| carries_telegram_token(u)) {
            // The URL is not repeated: it holds the bot token.
            return Err(GenerationError::InvalidInput(
                "an input image URL is a Telegram file URL (it would leak the bot token); upload the bytes instead"
                    .into(),
            ));
        }
        let segments =
            model_segments(&request.model).ok_or_else(|| GenerationError::UnknownModel(request.model.to_string()))?;
        let app = app_prefix(&segments);
        let input = model_input(request, &self.config.image_output_format)?;
        let body = bytes::Bytes::from(
            serde_json::to_vec(&input).map_err(|e| GenerationError::Other(anyhow::anyhow!("input JSON: {e}")))?,
        );
        let url = format!("{}/{}", self.config.queue_base.trim_end_matches('/'), request.model);
        let lifecycle = self.lifecycle_header();
        let start_timeout = self.config.start_timeout_secs.map(|s| s.to_string());
        let call = Call {
            op: Op::Submit,
            account: Some(account),
            model: Some(&request.model),
            body_limit: JSON_LIMIT,
            until: None,
        };
        let reply: Reply = self
            .with_key(account, |key| {
                debug!(key = %key.name, kind = ?request.kind, "submitting");
                let (url, body, lifecycle, start_timeout) = (&url, &body, &lifecycle, &start_timeout);
                self.caller().call(&call, move || {
                    let mut r =
                        self.authed(Method::POST, url, key).header(CONTENT_TYPE, "application/json").body(body.clone());
                    if let Some(l) = lifecycle {
                        r = r.header("X-Fal-Object-Lifecycle-Preference", l);
                    }
                    if let Some(t) = start_timeout {
                        r = r.header("X-Fal-Request-Timeout", t);
                    }
                    if !self.config.store_io {
                        r = r.header("X-Fal-Store-IO", "0");
                    }
                    r
                })
            })
            .await?;
        // fal answered 2xx, so it holds the request: an unreadable answer leaves us without
        // its id, which is the same as not knowing the outcome.
        let accepted: SubmitResponse = serde_json::from_slice(&reply.body).map_err(|e| {
            GenerationError::SubmitOutcomeUnknown(format!(
                "fal accepted the submit (HTTP {}) but its answer could not be read: {e}",
                reply.status.as_u16()
            ))
        })?;
        Span::current().record("request_id", accepted.request_id.as_str());
        let id = &accepted.request_id;
        let response_url = self.trusted_queue_url(accepted.response_url, self.queue_url(&app, id));
        let status_url = self.trusted_queue_url(accepted.status_url, self.queue_url(&app, &format!("{id}/status")));
        let cancel_url = self.trusted_queue_url(accepted.cancel_url, self.queue_url(&app, &format!("{id}/cancel")));
        info!("fal accepted the request");
        Ok(RemoteHandle {
            account: account.clone(),
            model: request.model.clone(),
            request_id: RequestId::new(accepted.request_id),
            status_url,
            response_url,
            cancel_url,
        })
    }

    #[instrument(skip_all, fields(account = %handle.account, request_id = %handle.request_id))]
    async fn status(&self, handle: &RemoteHandle) -> Result<RemoteStatus, GenerationError> {
        self.status_until(handle, None).await
    }

    /// Follows until `deadline` only: `poll.deadline_ms` no longer bounds it (the engine's
    /// deadline, counted from fal's acceptance, is the one that rules).
    #[instrument(skip_all, fields(account = %handle.account, request_id = %handle.request_id))]
    async fn wait(&self, handle: &RemoteHandle, deadline: Timestamp) -> Result<GenerationOutput, GenerationError> {
        // Counted on the monotonic clock from here: a wall-clock jump neither cuts the
        // follow short nor stretches it.
        let left = deadline.signed_duration_since(now()).to_std().unwrap_or_default();
        let until = Instant::now() + left;
        let poll = &self.config.poll;
        let mut interval = poll.initial_interval();
        let mut checks = 0u32;
        let timeout = || {
            GenerationError::Timeout(format!("not completed by the deadline {}", deadline.format("%Y-%m-%dT%H:%M:%SZ")))
        };
        loop {
            if Instant::now() >= until {
                return Err(timeout());
            }
            checks += 1;
            // The run goes on at fal whatever our checks see: transient failures are tried
            // again until the deadline inside the call, and only fal's word (or the
            // deadline) ends the follow. IN_QUEUE forever ends at the deadline too.
            match self.status_until(handle, Some(until)).await {
                Ok(RemoteStatus::Completed) => break,
                Ok(status) => debug!(?status, checks, "not completed yet"),
                Err(GenerationError::Timeout(detail)) if Instant::now() >= until => {
                    warn!(%detail, "no status answer before the deadline");
                    return Err(timeout());
                }
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if now >= until {
                return Err(timeout());
            }
            tokio::time::sleep(interval.min(until - now)).await;
            interval = poll.next_interval(interval);
        }
        debug!(checks, "completed; fetching the result");
        self.fetch_result(handle, until).await
    }

    #[instrument(skip_all, fields(account = %handle.account, request_id = %handle.request_id))]
    async fn cancel(&self, handle: &RemoteHandle) -> Result<CancelOutcome, GenerationError> {
        let call = Call {
            op: Op::Cancel,
            account: Some(&handle.account),
            model: Some(&handle.model),
            body_limit: JSON_LIMIT,
            until: None,
        };
        let reply = self
            .with_key(&handle.account, |key| {
                debug!(key = %key.name, "cancelling");
                self.caller().call(&call, move || self.authed(Method::PUT, &handle.cancel_url, key))
            })
            .await?;
        let parsed: Option<CancelResponse> = serde_json::from_slice(&reply.body).ok();
        let outcome = match (parsed.as_ref().and_then(CancelResponse::outcome), reply.status.as_u16()) {
            (Some(outcome), _) => outcome,
            (None, 404) => CancelOutcome::NotFound,
            (None, 400) => {
                return Err(GenerationError::InvalidInput(ErrorBody::parse(&reply.body).summary()));
            }
            (None, _) => CancelOutcome::Requested,
        };
        info!(?outcome, "cancel answered");
        Ok(outcome)
    }

    #[instrument(skip_all)]
    async fn download(&self, media: &OutputMedia) -> Result<MediaBytes, GenerationError> {
        let limit = self.config.download_max_bytes;
        if let Some(size) = media.file_size
            && size > limit
        {
            return Err(GenerationError::TooLarge { actual: size, limit });
        }
        if media.url.starts_with("data:") {
            return decode_data_uri(&media.url, limit);
        }
        if !self.download_allowed(&media.url) {
            // The host is named (never the whole URL, which may carry a signature) so the
            // operator can tell a misconfigured CDN list from a hostile answer.
            let host = Url::parse(&media.url).ok().and_then(|u| u.host_str().map(str::to_owned));
            return Err(GenerationError::Other(anyhow::anyhow!(
                "refusing to download from {}: not a configured fal CDN",
                host.as_deref().unwrap_or("an unreadable URL")
            )));
        }
        let call = Call { op: Op::Download, account: None, model: None, body_limit: limit, until: None };
        let timeout = Duration::from_millis(self.config.download_timeout_ms);
        // The CDN is public: no key.
        let reply = self.caller().call(&call, || self.http.get(&media.url).timeout(timeout)).await?;
        let content_type = reply
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| media.content_type.clone())
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        debug!(bytes = reply.body.len(), "downloaded");
        Ok(MediaBytes { bytes: reply.body.to_vec(), content_type, file_name: file_name_of(&media.url) })
    }

    fn key_statuses(&self) -> Vec<KeyStatus> {
        self.config
            .accounts
            .iter()
            .filter_map(|a| {
                let id = AccountId::new(a.name.clone());
                let account = self.accounts.get(&id)?;
                Some(
                    account
                        .keys
                        .iter()
                        .map(|k| KeyStatus {
                            account: id.clone(),
                            key: k.name.clone(),
                            refused_since: k.refused_since(),
                        })
                        .collect::<Vec<_>>(),
                )
            })
            .flatten()
            .collect()
    }

    /// Probes with a status GET of a random request id on the queue host: 401 keeps the
    /// key refused; another answer from fal (404, 200, 403...) puts it back; no answer
    /// (transport error, 408, 429, 5xx) proves nothing and keeps it refused.
    #[instrument(skip_all)]
    async fn probe_refused_keys(&self) -> Vec<KeyStatus> {
        let mut restored = Vec::new();
        for status in self.key_statuses().into_iter().filter(|k| k.refused_since.is_some()) {
            let Some(key) = self.accounts.get(&status.account).and_then(|a| a.key(&status.key)) else { continue };
            match self.probe(key).await {
                Probe::Accepted(code) => {
                    key.enable();
                    info!(account = %status.account, key = %key.name, code, "fal accepts a refused key again");
                    restored.push(KeyStatus { refused_since: None, ..status });
                }
                Probe::Refused => debug!(account = %status.account, key = %key.name, "fal still refuses the key"),
                Probe::Unknown(reason) => {
                    debug!(account = %status.account, key = %key.name, %reason, "key probe got no answer")
                }
            }
        }
        restored
    }

    fn enable_key(&self, account: &AccountId, key: &str) -> bool {
        let Some(found) = self.accounts.get(account).and_then(|a| a.key(key)) else { return false };
        if found.refused_since().is_some() {
            info!(%account, key = %found.name, "key put back in use by the operator");
        }
        found.enable();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_accounts_and_key_names_in_order() {
        use crate::config::{FalAccountConfig, FalKey};
        let account = |name: &str, keys: &[&str]| FalAccountConfig {
            name: name.into(),
            keys: keys
                .iter()
                .map(|k| FalKey { name: (*k).into(), secret: SecretString::from(format!("id:{k}")) })
                .collect(),
        };
        let config = FalConfig {
            accounts: vec![account("zeta", &["a", "b"]), account("alpha", &["c"])],
            ..FalConfig::default()
        };
        let fal = FalGeneration::new(config).unwrap();
        assert_eq!(
            fal.accounts(),
            vec![
                (AccountId::new("zeta"), vec!["a".to_owned(), "b".to_owned()]),
                (AccountId::new("alpha"), vec!["c".to_owned()])
            ]
        );
        let zeta = &fal.accounts[&AccountId::new("zeta")];
        let picked: Vec<&str> = (0..4).map(|_| zeta.next_key().unwrap().name.as_str()).collect();
        assert_eq!(picked, ["a", "b", "a", "b"]);
        assert!(format!("{fal:?}").contains("alpha"));
    }

    #[test]
    fn refused_keys_are_skipped_listed_and_enabled() {
        use crate::config::{FalAccountConfig, FalKey};
        let config = FalConfig {
            accounts: vec![FalAccountConfig {
                name: "main".into(),
                keys: ["a", "b", "c"]
                    .iter()
                    .map(|k| FalKey { name: (*k).into(), secret: SecretString::from(format!("id:{k}")) })
                    .collect(),
            }],
            ..FalConfig::default()
        };
        let fal = FalGeneration::new(config).unwrap();
        let main = AccountId::new("main");
        let account = &fal.accounts[&main];
        account.key("b").unwrap().refuse();
        let picked: Vec<&str> = (0..4).map(|_| account.next_key().unwrap().name.as_str()).collect();
        assert!(!picked.contains(&"b"), "{picked:?}");
        let statuses = fal.key_statuses();
        assert_eq!(statuses.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(statuses[1].refused_since.is_some());
        assert!(statuses[0].refused_since.is_none() && statuses[2].refused_since.is_none());
        account.key("a").unwrap().refuse();
        account.key("c").unwrap().refuse();
        assert!(account.next_key().is_none());
        assert!(fal.enable_key(&main, "b"));
        assert_eq!(account.next_key().unwrap().name, "b");
        assert!(!fal.enable_key(&main, "nope"));
        assert!(!fal.enable_key(&AccountId::new("other"), "b"));
    }

    #[test]
    fn probe_ids_look_like_uuid_v4() {
        let id = random_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert!(matches!(id.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{id}");
        assert_ne!(id, random_request_id());
    }

    #[test]
    fn downloads_only_from_configured_cdns() {
        let config = FalConfig {
            cdn_bases: vec!["https://v3.fal.media".into(), "https://storage.googleapis.com/falserverless/".into()],
            accounts: vec![crate::config::FalAccountConfig {
                name: "main".into(),
                keys: vec![crate::config::FalKey { name: "k".into(), secret: SecretString::from("a:b") }],
            }],
            ..FalConfig::default()
        };
        let fal = FalGeneration::new(config).unwrap();
        assert!(fal.download_allowed("https://v3.fal.media/files/x.png"));
        assert!(fal.download_allowed("https://storage.googleapis.com/falserverless/a/b.png"));
        assert!(!fal.download_allowed("https://v3.fal.media.evil.example/files/x.png"));
        assert!(!fal.download_allowed("https://storage.googleapis.com/other/b.png"));
        assert!(!fal.download_allowed("http://v3.fal.media/files/x.png"));
        assert!(!fal.download_allowed("file:///etc/passwd"));
    }

    #[test]
    fn file_names_and_origins() {
        assert_eq!(file_name_of("https://v3.fal.media/files/a/b.png?x=1"), "b.png");
        assert_eq!(file_name_of("https://v3.fal.media/"), "output");
        let base = Url::parse("https://queue.fal.run").unwrap();
        assert!(same_origin("https://queue.fal.run/fal-ai/x/requests/1", &base));
        assert!(!same_origin("https://evil.example/fal-ai/x/requests/1", &base));
        assert!(!same_origin("http://queue.fal.run/x", &base));
    }
}
