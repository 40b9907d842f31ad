//! The simulated fal backend: accounts, per-account FIFO queues, the clock-driven job
//! lifecycle, billing, storage and fault decisions. HTTP-agnostic apart from header maps;
//! `http.rs` turns its [`Reply`] values into responses.

use crate::config::{ModelConfig, ModelKind, ServiceTime, SimConfig, UnknownModelPolicy};
use crate::faults::{FaultEngine, FaultKind, FaultRule, markers};
use crate::introspect::{
    AccountSnapshot, AccountUpdate, OutcomeKind, RequestRecord, RequestStatus, SimSnapshot, UploadRecord,
};
use crate::money::Usd;
use crate::outputs;
use axum::http::HeaderMap;
use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The 403 reason of an account whose balance ran out.
pub(crate) const EXHAUSTED: &str = "Exhausted balance. Top up your balance at fal.ai/dashboard/billing.";

/// An HTTP answer in fal's shapes, before it becomes an axum response.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: ReplyBody,
    pub headers: Vec<(&'static str, String)>,
}

/// The body of a [`Reply`].
#[derive(Debug, Clone)]
pub(crate) enum ReplyBody {
    Json(Value),
    Html(String),
    Empty,
    /// The connection is dropped before a whole answer is sent (the body aborts at once).
    Abort,
    /// `Content-Length` declares these bytes, but only the first half is sent before the
    /// connection is closed.
    Cut(Bytes),
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Reply { status, body: ReplyBody::Json(body), headers: Vec::new() }
    }

    fn detail(status: u16, detail: impl Into<String>) -> Self {
        Reply::json(status, json!({ "detail": detail.into() }))
    }

    /// `{"detail", "error_type"}` plus the `X-Fal-Error-Type` header.
    fn infra(status: u16, detail: &str, error_type: &str) -> Self {
        Reply::json(status, json!({"detail": detail, "error_type": error_type})).header("x-fal-error-type", error_type)
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn unauthorized() -> Self {
        Reply::detail(401, "No user found for Key ID and Secret")
    }

    /// What nginx in front of the queue answers when it cannot reach it: HTML, no
    /// `x-fal-request-id`, no `error_type`.
    fn gateway(status: u16) -> Self {
        let title = match status {
            502 => "502 Bad Gateway",
            503 => "503 Service Temporarily Unavailable",
            _ => "504 Gateway Time-out",
        };
        let html = format!(
            "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        );
        Reply { status, body: ReplyBody::Html(html), headers: Vec::new() }
    }
}

/// A file on the simulated CDN.
#[derive(Debug, Clone)]
pub(crate) struct StoredFile {
    pub bytes: Bytes,
    pub content_type: String,
    pub slow: bool,
    pub expires_at: Option<Instant>,
}

struct PendingUpload {
    key: String,
    content_type: String,
    record: usize,
}

struct Account {
    name: String,
    keys: Vec<String>,
    limit: u32,
    balance: Option<Usd>,
    lock_threshold: Usd,
    admin_lock: Option<String>,
    queue: VecDeque<String>,
    stuck: u32,
    in_progress: u32,
    max_in_progress: u32,
    jobs_started: u64,
    jobs_succeeded: u64,
    jobs_failed: u64,
    jobs_cancelled: u64,
    jobs_timed_out: u64,
    charged: Usd,
    submits_seen: u64,
    submits_accepted: u64,
    submits_by_key: BTreeMap<String, u64>,
    rejected: BTreeMap<String, u64>,
}

impl Account {
    fn lock_reason(&self) -> Option<String> {
        if let Some(reason) = &self.admin_lock {
            return Some(reason.clone());
        }
        match self.balance {
            Some(balance) if balance <= self.lock_threshold => Some(EXHAUSTED.to_owned()),
            _ => None,
        }
    }

    fn reject(&mut self, reason: &str) {
        *self.rejected.entry(reason.to_owned()).or_default() += 1;
    }

    fn snapshot(&self) -> AccountSnapshot {
        let lock_reason = self.lock_reason();
        AccountSnapshot {
            name: self.name.clone(),
            keys: self.keys.clone(),
            limit: self.limit,
            max_in_progress: self.max_in_progress,
            in_progress: self.in_progress,
            queued: self.queue.len() as u32 + self.stuck,
            stuck: self.stuck,
            jobs_started: self.jobs_started,
            jobs_succeeded: self.jobs_succeeded,
            jobs_failed: self.jobs_failed,
            jobs_cancelled: self.jobs_cancelled,
            jobs_timed_out: self.jobs_timed_out,
            charged: self.charged,
            balance: self.balance,
            lock_threshold: self.lock_threshold,
            locked: lock_reason.is_some(),
            lock_reason,
            submits_seen: self.submits_seen,
            submits_accepted: self.submits_accepted,
            submits_by_key: self.submits_by_key.clone(),
            rejected: self.rejected.clone(),
        }
    }
}

struct Outcome {
    kind: OutcomeKind,
    status: u16,
    body: Value,
}

impl Outcome {
    fn error_type(&self) -> Option<&'static str> {
        match self.kind {
            OutcomeKind::RunnerServerError => Some("runner_server_error"),
            OutcomeKind::RunnerDisconnected => Some("runner_disconnected"),
            OutcomeKind::RequestTimeout => Some("request_timeout"),
            OutcomeKind::Cancelled => Some("client_cancelled"),
            _ => None,
        }
    }

    fn infra(kind: OutcomeKind) -> Outcome {
        let (status, detail, error_type) = match kind {
            OutcomeKind::RunnerServerError => (500, "Internal server error in the model runner", "runner_server_error"),
            OutcomeKind::RunnerDisconnected => (503, "Runner disconnected during the request", "runner_disconnected"),
            OutcomeKind::RequestTimeout => (504, "Request timed out before it could start", "request_timeout"),
            _ => (499, "Request was cancelled by the client", "client_cancelled"),
        };
        Outcome { kind, status, body: json!({"detail": detail, "error_type": error_type}) }
    }
}

struct Job {
    id: String,
    endpoint: String,
    root: String,
    account: String,
    key: String,
    model: ModelConfig,
    input: Value,
    headers: BTreeMap<String, String>,
    lifecycle_preference: Option<String>,
    request_timeout: Option<String>,
    webhook: Option<String>,
    status: RequestStatus,
    outcome: Option<Outcome>,
    faults: Vec<FaultKind>,
    status_500_left: u32,
    /// Result-delivery faults still to fire, in order, with how many fetches each spoils.
    result_glitches: Vec<(FaultKind, u32)>,
    result_fetches: u32,
    submit_seq: u64,
    start_seq: Option<u64>,
    submitted_at: Instant,
    started_at: Option<Instant>,
    completed_at: Option<Instant>,
    service_secs: Option<f64>,
    charged: Usd,
    cancel_requested: bool,
    queue_position_at_submit: u32,
    logs: Vec<Value>,
    output_urls: Vec<String>,
}

impl Job {
    fn has(&self, kind: FaultKind) -> bool {
        self.faults.contains(&kind)
    }

    fn log(&mut self, level: &str, message: &str) {
        self.logs.push(json!({
            "message": message,
            "level": level,
            "source": "USER",
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }));
    }
}

pub(crate) struct State {
    accounts: BTreeMap<String, Account>,
    key_index: HashMap<String, String>,
    jobs: HashMap<String, Job>,
    order: Vec<String>,
    files: HashMap<String, StoredFile>,
    uploads: HashMap<String, PendingUpload>,
    upload_log: Vec<UploadRecord>,
    faults: FaultEngine,
    marker_hits: HashMap<(FaultKind, String), u32>,
    rng: StdRng,
    submit_seq: u64,
    start_seq: u64,
    in_progress_total: u32,
    max_in_progress_total: u32,
    unauthorized: u64,
    unauthorized_by_key: BTreeMap<String, u64>,
    /// Keys allowed on the Platform API's billing (admin keys).
    admin_keys: std::collections::HashSet<String>,
}

impl State {
    fn new(seed: u64) -> State {
        State {
            accounts: BTreeMap::new(),
            key_index: HashMap::new(),
            jobs: HashMap::new(),
            order: Vec::new(),
            files: HashMap::new(),
            uploads: HashMap::new(),
            upload_log: Vec::new(),
            faults: FaultEngine::default(),
            marker_hits: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
            submit_seq: 0,
            start_seq: 0,
            in_progress_total: 0,
            max_in_progress_total: 0,
            unauthorized: 0,
            unauthorized_by_key: BTreeMap::new(),
            admin_keys: std::collections::HashSet::new(),
        }
    }

    fn add_account(&mut self, name: &str, limit: u32) -> &mut Account {
        self.accounts.entry(name.to_owned()).or_insert_with(|| Account {
            name: name.to_owned(),
            keys: Vec::new(),
            limit,
            balance: None,
            lock_threshold: Usd::ZERO,
            admin_lock: None,
            queue: VecDeque::new(),
            stuck: 0,
            in_progress: 0,
            max_in_progress: 0,
            jobs_started: 0,
            jobs_succeeded: 0,
            jobs_failed: 0,
            jobs_cancelled: 0,
            jobs_timed_out: 0,
            charged: Usd::ZERO,
            submits_seen: 0,
            submits_accepted: 0,
            submits_by_key: BTreeMap::new(),
            rejected: BTreeMap::new(),
        })
    }

    fn add_key(&mut self, account: &str, key: &str) {
        if self.key_index.contains_key(key) {
            return;
        }
        self.key_index.insert(key.to_owned(), account.to_owned());
        if let Some(acc) = self.accounts.get_mut(account) {
            acc.keys.push(key.to_owned());
        }
    }

    fn account_of(&self, auth: Option<&str>) -> Option<(String, String)> {
        let key = auth?.trim().strip_prefix("Key ")?.trim();
        self.key_index.get(key).map(|acc| (acc.clone(), key.to_owned()))
    }

    /// The account and key of `auth`; a refusal (the 401 the caller sends) is counted
    /// against the key presented (`""` when there was none).
    fn authorize(&mut self, auth: Option<&str>) -> Option<(String, String)> {
        let found = self.account_of(auth);
        if found.is_none() {
            let presented = auth.map(|a| a.trim().strip_prefix("Key ").unwrap_or(a).trim()).unwrap_or_default();
            *self.unauthorized_by_key.entry(presented.to_owned()).or_default() += 1;
        }
        found
    }

    fn remove_key(&mut self, account: &str, key: &str) {
        if self.key_index.get(key).is_some_and(|a| a == account) {
            self.key_index.remove(key);
        }
        if let Some(acc) = self.accounts.get_mut(account) {
            acc.keys.retain(|k| k != key);
        }
    }

    fn record(&self, job: &Job, started: Instant) -> RequestRecord {
        let ms = |t: Instant| t.saturating_duration_since(started).as_millis() as u64;
        RequestRecord {
            request_id: job.id.clone(),
            endpoint: job.endpoint.clone(),
            account: job.account.clone(),
            key: job.key.clone(),
            input: job.input.clone(),
            headers: job.headers.clone(),
            lifecycle_preference: job.lifecycle_preference.clone(),
            request_timeout: job.request_timeout.clone(),
            webhook: job.webhook.clone(),
            status: job.status,
            outcome: job.outcome.as_ref().map(|o| o.kind),
            faults: job.faults.clone(),
            submit_seq: job.submit_seq,
            start_seq: job.start_seq,
            submitted_ms: ms(job.submitted_at),
            started_ms: job.started_at.map(ms),
            completed_ms: job.completed_at.map(ms),
            service_secs: job.service_secs,
            charged: job.charged,
            cancel_requested: job.cancel_requested,
            output_urls: job.output_urls.clone(),
            result_fetches: job.result_fetches,
        }
    }
}

/// State shared by the HTTP layer, timer tasks and handles.
pub(crate) struct Shared {
    pub cfg: SimConfig,
    pub base_url: String,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    pub shutdown: watch::Sender<bool>,
    started: Instant,
}

/// A cheap, cloneable handle on a simulator: introspection, admin and waiting helpers.
#[derive(Clone)]
pub struct SimHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle").field("base_url", &self.shared.base_url).finish_non_exhaustive()
    }
}

/// What the HTTP layer extracted from a submit.
pub(crate) struct SubmitRequest<'a> {
    pub segments: &'a [&'a str],
    pub headers: &'a HeaderMap,
    pub query: &'a HashMap<String, String>,
    pub body: &'a [u8],
}

/// How many leading path segments name the app: `owner/app`, or three for `workflows/` and `comfy/`.
pub(crate) fn root_len(segments: &[&str]) -> usize {
    match segments.first() {
        Some(&"workflows") | Some(&"comfy") => 3,
        _ => 2,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn lifecycle_secs(raw: Option<&str>) -> Option<f64> {
    let v: Value = serde_json::from_str(raw?).ok()?;
    v.get("expiration_duration_seconds")?.as_f64()
}

impl SimHandle {
    /// Creates the simulator state for a server reachable at `base_url` (no listener is started).
    ///
    /// # Errors
    /// The message of [`SimConfig::validate`].
    pub fn new(cfg: SimConfig, base_url: impl Into<String>) -> Result<SimHandle, String> {
        cfg.validate()?;
        let mut state = State::new(cfg.seed);
        let accounts = if cfg.accounts.is_empty() {
            vec![crate::config::AccountConfig::new("default", "sim-key", 2)]
        } else {
            cfg.accounts.clone()
        };
        for a in &accounts {
            let acc = state.add_account(&a.name, a.limit);
            acc.limit = a.limit;
            acc.balance = a.balance;
            acc.lock_threshold = a.lock_threshold;
            for key in &a.keys {
                state.add_key(&a.name, key);
            }
            state.admin_keys.extend(a.admin_keys.iter().cloned());
        }
        state.faults.rules = cfg.faults.rules.clone();
        let shared = Shared {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            cfg,
            state: Mutex::new(state),
            changed: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            started: Instant::now(),
        };
        Ok(SimHandle { shared: Arc::new(shared) })
    }

    /// The base URL every generated URL starts with.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The configuration this simulator runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.cfg
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.shared.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn real(&self, sim_secs: f64) -> Duration {
        ServiceTime::real(sim_secs, self.shared.cfg.time_scale)
    }

    fn urls(&self, root: &str, id: &str) -> (String, String, String) {
        let response = format!("{}/{root}/requests/{id}", self.shared.base_url);
        (response.clone(), format!("{response}/status"), format!("{response}/cancel"))
    }

    fn model_for(&self, endpoint: &str) -> Option<ModelConfig> {
        let cfg = &self.shared.cfg;
        if let Some(m) = cfg.models.iter().find(|m| m.endpoint == endpoint) {
            return Some(m.clone());
        }
        match cfg.unknown_models {
            UnknownModelPolicy::Image => Some(ModelConfig::new(endpoint, ModelKind::Flux)),
            UnknownModelPolicy::Reject => None,
        }
    }

    // ----- queue API -------------------------------------------------------------------

    /// `POST /{owner}/{app}[/{path}]`.
    pub(crate) fn submit(&self, req: SubmitRequest<'_>) -> Reply {
        let reply = self.submit_locked(req);
        self.notify();
        reply
    }

    fn submit_locked(&self, req: SubmitRequest<'_>) -> Reply {
        let segments = req.segments;
        let rl = root_len(segments);
        if segments.len() < rl {
            return Reply::detail(404, "Not Found");
        }
        let endpoint = segments.join("/");
        let root = segments[..rl].join("/");
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some((account, key)) = st.authorize(header_str(req.headers, "authorization")) else {
            st.unauthorized += 1;
            return Reply::unauthorized();
        };
        {
            let acc = st.accounts.get_mut(&account).expect("indexed account exists");
            acc.submits_seen += 1;
            *acc.submits_by_key.entry(key.clone()).or_default() += 1;
        }
        let Some(model) = self.model_for(&endpoint) else {
            st.accounts.get_mut(&account).expect("account").reject("not_found");
            let app = segments[rl - 1..].join("/");
            return Reply::detail(404, format!("Application \"{app}\" not found"));
        };
        let parsed: Result<Value, serde_json::Error> =
            if req.body.iter().all(u8::is_ascii_whitespace) { Ok(json!({})) } else { serde_json::from_slice(req.body) };
        let found = parsed.as_ref().map(markers).unwrap_or_default();

        // Submit-time faults: before acceptance, nothing is enqueued.
        let mut submit_fault = {
            let State { faults, rng, .. } = &mut *st;
            faults.fire_first(FaultKind::is_submit, &account, &endpoint, rng)
        };
        if submit_fault.is_none()
            && let Ok(input) = &parsed
        {
            for m in found.iter().filter(|m| m.kind.is_submit()) {
                let hits = st.marker_hits.entry((m.kind, input.to_string())).or_default();
                if m.times.is_none_or(|n| *hits < n) {
                    *hits += 1;
                    submit_fault = Some(m.kind);
                    break;
                }
            }
        }
        let acc = st.accounts.get_mut(&account).expect("account");
        match submit_fault {
            Some(FaultKind::Submit429) => {
                acc.reject("rate_limited");
                return Reply::detail(429, "Too many requests, please slow down");
            }
            Some(FaultKind::Submit502) => {
                acc.reject("bad_gateway");
                return Reply::gateway(502);
            }
            Some(_) => {
                acc.reject("unavailable");
                return Reply::infra(503, "No runner could be scheduled for the request", "runner_scheduling_failure");
            }
            None => {}
        }
        if let Some(reason) = acc.lock_reason() {
            acc.reject("locked");
            return Reply::detail(403, format!("User is locked. Reason: {reason}"));
        }
        let request_timeout = header_str(req.headers, "x-fal-request-timeout").map(str::to_owned);
        let timeout_secs = match &request_timeout {
            None => None,
            Some(raw) => match raw.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Some(v),
                _ => {
                    acc.reject("bad_request");
                    return Reply::infra(400, &format!("Invalid X-Fal-Request-Timeout header: {raw:?}"), "bad_request");
                }
            },
        };
        let input = match parsed {
            Ok(v) => v,
            Err(e) => {
                acc.reject("validation");
                return Reply::json(422, outputs::json_invalid(&e.to_string()));
            }
        };
        if let Err(body) = outputs::validate(model.kind, &input) {
            acc.reject("validation");
            return Reply::json(422, body);
        }

        // Accepted.
        let mut faults = {
            let State { faults, rng, .. } = &mut *st;
            faults.fire_job(&account, &endpoint, rng)
        };
        let mut status_500_left = 0;
        for m in &found {
            if m.kind.is_job() && !faults.contains(&m.kind) {
                faults.push(m.kind);
            }
            if m.kind.is_status() {
                status_500_left = m.times.unwrap_or(u32::MAX);
            }
        }
        // A rule spoils one fetch; a marker `[[fault:KIND:N]]` the first N.
        let result_glitches: Vec<(FaultKind, u32)> = faults
            .iter()
            .filter(|k| k.is_result_glitch())
            .map(|&k| (k, found.iter().find(|m| m.kind == k).and_then(|m| m.times).unwrap_or(1)))
            .collect();
        let id = uuid::Uuid::now_v7().to_string();
        st.submit_seq += 1;
        let submit_seq = st.submit_seq;
        let stuck = faults.contains(&FaultKind::Stuck);
        let acc = st.accounts.get_mut(&account).expect("account");
        acc.submits_accepted += 1;
        let position = acc.queue.len() as u32;
        if stuck {
            acc.stuck += 1;
        } else {
            acc.queue.push_back(id.clone());
        }
        if faults.contains(&FaultKind::LockAccount) {
            acc.admin_lock = Some(EXHAUSTED.to_owned());
        }
        let mut recorded = BTreeMap::new();
        for (name, value) in req.headers {
            let n = name.as_str();
            if (n.starts_with("x-fal-") || n == "content-type" || n == "user-agent")
                && let Ok(v) = value.to_str()
            {
                recorded.insert(n.to_owned(), v.to_owned());
            }
        }
        let mut job = Job {
            id: id.clone(),
            endpoint: endpoint.clone(),
            root: root.clone(),
            account: account.clone(),
            key,
            model,
            input,
            headers: recorded,
            lifecycle_preference: header_str(req.headers, "x-fal-object-lifecycle-preference").map(str::to_owned),
            request_timeout,
            webhook: req.query.get("fal_webhook").cloned(),
            status: RequestStatus::InQueue,
            outcome: None,
            faults,
            status_500_left,
            result_glitches,
            result_fetches: 0,
            submit_seq,
            start_seq: None,
            submitted_at: Instant::now(),
            started_at: None,
            completed_at: None,
            service_secs: None,
            charged: Usd::ZERO,
            cancel_requested: false,
            queue_position_at_submit: position,
            logs: Vec::new(),
            output_urls: Vec::new(),
        };
        job.log("INFO", "Request received and queued");
        tracing::debug!(request_id = %id, %endpoint, %account, "submit accepted");
        st.jobs.insert(id.clone(), job);
        st.order.push(id.clone());
        if let Some(secs) = timeout_secs {
            self.spawn_start_deadline(id.clone(), secs);
        }
        self.dispatch(st, &account);
        let (response_url, status_url, cancel_url) = self.urls(&root, &id);
        Reply::json(
            200,
            json!({
                "status": "IN_QUEUE",
                "request_id": id,
                "response_url": response_url,
                "status_url": status_url,
                "cancel_url": cancel_url,
                "logs": null,
                "metrics": {},
                "queue_position": position,
            }),
        )
    }

    /// Starts queued jobs of `account` while it has free slots.
    fn dispatch(&self, st: &mut State, account: &str) {
        loop {
            let Some(acc) = st.accounts.get_mut(account) else { return };
            if acc.in_progress >= acc.limit {
                return;
            }
            let Some(id) = acc.queue.pop_front() else { return };
            acc.in_progress += 1;
            acc.max_in_progress = acc.max_in_progress.max(acc.in_progress);
            acc.jobs_started += 1;
            st.in_progress_total += 1;
            st.max_in_progress_total = st.max_in_progress_total.max(st.in_progress_total);
            st.start_seq += 1;
            let start_seq = st.start_seq;
            let rng = &mut st.rng;
            let Some(job) = st.jobs.get_mut(&id) else { continue };
            // Whole milliseconds keep `metrics.inference_time` readable.
            let secs = (job.model.service.sample(rng) * 1000.0).round() / 1000.0;
            job.status = RequestStatus::InProgress;
            job.start_seq = Some(start_seq);
            job.started_at = Some(Instant::now());
            job.service_secs = Some(secs);
            job.log("INFO", "Starting inference");
            self.spawn_finish(id, secs);
        }
    }

    fn spawn_finish(&self, id: String, secs: f64) {
        let handle = self.clone();
        let delay = self.real(secs);
        let mut shutdown = self.shared.shutdown.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => handle.finish(&id),
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        });
    }

    fn spawn_start_deadline(&self, id: String, secs: f64) {
        let handle = self.clone();
        let delay = self.real(secs);
        let mut shutdown = self.shared.shutdown.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => handle.expire_start_deadline(&id),
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        });
    }

    fn expire_start_deadline(&self, id: &str) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(job) = st.jobs.get(id) else { return };
        if job.status != RequestStatus::InQueue {
            return;
        }
        let account = job.account.clone();
        let stuck = job.has(FaultKind::Stuck);
        if let Some(acc) = st.accounts.get_mut(&account) {
            remove_queued(acc, id, stuck);
            acc.jobs_timed_out += 1;
        }
        complete(st, id, Outcome::infra(OutcomeKind::RequestTimeout), Usd::ZERO);
        drop(guard);
        self.notify();
    }

    /// The end of a job's service time.
    fn finish(&self, id: &str) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(job) = st.jobs.get(id) else { return };
        if job.status != RequestStatus::InProgress {
            return;
        }
        let account = job.account.clone();
        let model = job.model.clone();
        let input = job.input.clone();
        let service_secs = job.service_secs.unwrap_or_default();
        let nsfw = job.has(FaultKind::Nsfw);
        let slow = job.has(FaultKind::SlowCdn);
        let lifecycle = lifecycle_secs(job.lifecycle_preference.as_deref());
        let cfg = &self.shared.cfg;
        let full_price = || outputs::price(&model.price, &outputs::bill(model.kind, &input));

        let (outcome, charge, urls) = if job.has(FaultKind::Result500) {
            (Outcome::infra(OutcomeKind::RunnerServerError), Usd::ZERO, Vec::new())
        } else if job.has(FaultKind::Result503) {
            (Outcome::infra(OutcomeKind::RunnerDisconnected), Usd::ZERO, Vec::new())
        } else if job.has(FaultKind::ContentPolicy) {
            let charge = if cfg.charge_content_policy { full_price() } else { Usd::ZERO };
            let body = outputs::content_policy_violation(&input);
            (Outcome { kind: OutcomeKind::ContentPolicyViolation, status: 422, body }, charge, Vec::new())
        } else if let Some((i, url)) = self.missing_local_input(st, &model, &input) {
            let body = outputs::file_download_error(i, &url);
            (Outcome { kind: OutcomeKind::FileDownloadError, status: 422, body }, Usd::ZERO, Vec::new())
        } else {
            let expires_at = lifecycle.map(|s| Instant::now() + self.real(s));
            let base = self.shared.base_url.clone();
            let mut urls = Vec::new();
            let State { files, rng, .. } = &mut *st;
            let mut store = |name: &str, content_type: &'static str, bytes: Vec<u8>| {
                let path = format!("{}/{name}", uuid::Uuid::new_v4().simple());
                files.insert(
                    path.clone(),
                    StoredFile { bytes: Bytes::from(bytes), content_type: content_type.to_owned(), slow, expires_at },
                );
                let url = format!("{base}/files/{path}");
                urls.push(url.clone());
                url
            };
            let ctx =
                outputs::GenContext { kind: model.kind, input: &input, service_secs, nsfw, image_px: cfg.image_px };
            let output = outputs::generate(&ctx, rng, &mut store);
            (Outcome { kind: OutcomeKind::Success, status: 200, body: output }, full_price(), urls)
        };
        let success = outcome.kind == OutcomeKind::Success;
        if let Some(acc) = st.accounts.get_mut(&account) {
            acc.in_progress = acc.in_progress.saturating_sub(1);
            if success {
                acc.jobs_succeeded += 1;
            } else {
                acc.jobs_failed += 1;
            }
        }
        st.in_progress_total = st.in_progress_total.saturating_sub(1);
        if let Some(job) = st.jobs.get_mut(id) {
            job.output_urls = urls;
        }
        complete(st, id, outcome, charge);
        self.dispatch(st, &account);
        drop(guard);
        self.notify();
    }

    /// The first `image_urls` entry that points at this simulator's CDN but names no live file.
    fn missing_local_input(&self, st: &State, model: &ModelConfig, input: &Value) -> Option<(usize, String)> {
        if model.kind != ModelKind::NanoBananaEdit {
            return None;
        }
        let prefix = format!("{}/files/", self.shared.base_url);
        let urls = input.get("image_urls")?.as_array()?;
        urls.iter().enumerate().find_map(|(i, u)| {
            let u = u.as_str()?;
            let path = u.strip_prefix(&prefix)?;
            let live = st.files.get(path).is_some_and(|f| f.expires_at.is_none_or(|t| t > Instant::now()));
            (!live).then(|| (i, u.to_owned()))
        })
    }

    fn find_job<'s>(
        st: &'s mut State,
        auth: Option<&str>,
        root: &str,
        id: &str,
    ) -> Result<(&'s mut Job, String), Reply> {
        let Some((account, _)) = st.authorize(auth) else { return Err(Reply::unauthorized()) };
        match st.jobs.get_mut(id) {
            Some(job) if job.root == root && job.account == account => Ok((job, account)),
            _ => Err(Reply::detail(404, format!("Request {id} not found"))),
        }
    }

    /// `GET /{owner}/{app}/requests/{id}/status`; the bool says the request is COMPLETED.
    pub(crate) fn status(&self, auth: Option<&str>, root: &str, id: &str, logs: bool, faults: bool) -> (Reply, bool) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let account_endpoint = st.jobs.get(id).map(|j| (j.account.clone(), j.endpoint.clone()));
        let (job, _) = match Self::find_job(st, auth, root, id) {
            Ok(found) => found,
            Err(reply) => return (reply, false),
        };
        let mut fail = false;
        if faults && job.status_500_left > 0 {
            job.status_500_left -= 1;
            fail = true;
        }
        if faults
            && !fail
            && let Some((account, endpoint)) = account_endpoint
        {
            let State { faults, rng, .. } = &mut *st;
            fail = faults.fire_first(FaultKind::is_status, &account, &endpoint, rng).is_some();
        }
        if fail {
            return (Reply::infra(500, "Internal Server Error", "internal_error"), false);
        }
        let job = st.jobs.get(id).expect("found above");
        let body = self.status_body(st, job, logs);
        let done = job.status == RequestStatus::Completed;
        let reply = Reply::json(if done { 200 } else { 202 }, body).header("x-fal-request-id", id);
        (reply, done)
    }

    fn status_body(&self, st: &State, job: &Job, logs: bool) -> Value {
        let (response_url, status_url, cancel_url) = self.urls(&job.root, &job.id);
        let mut body = json!({
            "status": job.status.as_str(),
            "request_id": job.id,
            "response_url": response_url,
            "status_url": status_url,
            "cancel_url": cancel_url,
            "logs": if logs { Value::from(job.logs.clone()) } else { Value::Null },
            "metrics": {},
        });
        match job.status {
            RequestStatus::InQueue => {
                let position = st
                    .accounts
                    .get(&job.account)
                    .and_then(|a| a.queue.iter().position(|q| *q == job.id))
                    .map_or(job.queue_position_at_submit, |p| p as u32);
                body["queue_position"] = json!(position);
            }
            RequestStatus::InProgress => {}
            RequestStatus::Completed => {
                let inference = job.started_at.and(job.service_secs);
                body["metrics"] = json!({ "inference_time": inference });
                if let Some(outcome) = &job.outcome
                    && let Some(error_type) = outcome.error_type()
                {
                    body["error"] = outcome.body["detail"].clone();
                    body["error_type"] = json!(error_type);
                }
            }
        }
        body
    }

    /// `GET /{owner}/{app}/requests/{id}`. A completed job with a result-delivery fault
    /// left answers its first fetch(es) with that fault instead; the result stays.
    pub(crate) fn result(&self, auth: Option<&str>, root: &str, id: &str) -> Reply {
        let mut guard = self.lock();
        let (job, _) = match Self::find_job(&mut guard, auth, root, id) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        job.result_fetches += 1;
        let Some(outcome) = &job.outcome else {
            return Reply::detail(400, format!("Request {id} is still in progress"));
        };
        let mut reply = Reply::json(outcome.status, outcome.body.clone()).header("x-fal-request-id", id);
        if let Some(error_type) = outcome.error_type() {
            reply = reply.header("x-fal-error-type", error_type);
        }
        if outcome.kind == OutcomeKind::RequestTimeout {
            reply = reply.header("x-fal-request-timeout-type", "user");
        }
        let glitch = job.result_glitches.iter_mut().find(|(_, left)| *left > 0).map(|(kind, left)| {
            *left -= 1;
            *kind
        });
        match glitch {
            None => reply,
            Some(FaultKind::Result502) => Reply::gateway(502),
            Some(FaultKind::Result503Gateway) => Reply::gateway(503),
            Some(FaultKind::Result504) => Reply::gateway(504),
            Some(FaultKind::ResultCutBody) => {
                let bytes = match &reply.body {
                    ReplyBody::Json(v) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
                    _ => Bytes::new(),
                };
                Reply { body: ReplyBody::Cut(bytes), ..reply }
            }
            Some(_) => Reply { status: 200, body: ReplyBody::Abort, headers: Vec::new() },
        }
    }

    /// `PUT /{owner}/{app}/requests/{id}/cancel`.
    pub(crate) fn cancel(&self, auth: Option<&str>, root: &str, id: &str) -> Reply {
        let mut guard = self.lock();
        let st = &mut *guard;
        let (job, account) = match Self::find_job(st, auth, root, id) {
            Ok(found) => found,
            Err(reply) if reply.status == 404 => return Reply::json(404, json!({"status": "NOT_FOUND"})),
            Err(reply) => return reply,
        };
        let requested = Reply::json(202, json!({"status": "CANCELLATION_REQUESTED"}));
        let status = job.status;
        let stuck = job.has(FaultKind::Stuck);
        if status == RequestStatus::Completed {
            return Reply::json(400, json!({"status": "ALREADY_COMPLETED"}));
        }
        job.cancel_requested = true;
        if status == RequestStatus::InProgress {
            job.log("WARN", "Cancellation requested");
            if !self.shared.cfg.abort_running_on_cancel {
                drop(guard);
                self.notify();
                return requested;
            }
        }
        if let Some(acc) = st.accounts.get_mut(&account) {
            if status == RequestStatus::InQueue {
                remove_queued(acc, id, stuck);
            } else {
                acc.in_progress = acc.in_progress.saturating_sub(1);
                st.in_progress_total = st.in_progress_total.saturating_sub(1);
            }
            acc.jobs_cancelled += 1;
        }
        complete(st, id, Outcome::infra(OutcomeKind::Cancelled), Usd::ZERO);
        self.dispatch(st, &account);
        drop(guard);
        self.notify();
        requested
    }

    // ----- storage and CDN -------------------------------------------------------------

    /// `POST /storage/upload/initiate`.
    pub(crate) fn upload_initiate(&self, auth: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Reply {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some((account, _)) = st.authorize(auth) else { return Reply::unauthorized() };
        let input: Value = serde_json::from_slice(body).unwrap_or_else(|_| json!({}));
        let content_type =
            input.get("content_type").and_then(Value::as_str).unwrap_or("application/octet-stream").to_owned();
        let file_name = sanitize(input.get("file_name").and_then(Value::as_str).unwrap_or("upload.bin"));
        let lifecycle = header_str(headers, "x-fal-object-lifecycle-preference")
            .or_else(|| header_str(headers, "x-fal-object-lifecycle"))
            .map(str::to_owned);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let path = format!("{}/{file_name}", uuid::Uuid::new_v4().simple());
        let file_url = format!("{}/files/{path}", self.shared.base_url);
        st.upload_log.push(UploadRecord {
            account,
            file_url: file_url.clone(),
            content_type: content_type.clone(),
            file_name,
            size: None,
            lifecycle,
        });
        let record = st.upload_log.len() - 1;
        st.uploads.insert(token.clone(), PendingUpload { key: path, content_type, record });
        drop(guard);
        self.notify();
        let upload_url = format!("{}/storage/upload/put/{token}", self.shared.base_url);
        Reply::json(200, json!({ "upload_url": upload_url, "file_url": file_url }))
    }

    /// `PUT /storage/upload/put/{token}` (no auth: the token is the signature).
    pub(crate) fn upload_put(&self, token: &str, content_type: Option<&str>, bytes: Bytes) -> Reply {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(pending) = st.uploads.get(token) else {
            return Reply::detail(404, "Upload URL not found or expired");
        };
        let lifecycle = st.upload_log.get(pending.record).and_then(|r| lifecycle_secs(r.lifecycle.as_deref()));
        let content_type = content_type.map_or_else(|| pending.content_type.clone(), str::to_owned);
        if let Some(record) = st.upload_log.get_mut(pending.record) {
            record.size = Some(bytes.len());
        }
        let expires_at = lifecycle.map(|s| Instant::now() + self.real(s));
        st.files.insert(pending.key.clone(), StoredFile { bytes, content_type, slow: false, expires_at });
        drop(guard);
        self.notify();
        Reply { status: 200, body: ReplyBody::Empty, headers: Vec::new() }
    }

    /// The CDN file at `path` (after `/files/`), when it exists and has not expired.
    pub(crate) fn file(&self, path: &str) -> Option<StoredFile> {
        let st = self.lock();
        st.files.get(path).filter(|f| f.expires_at.is_none_or(|t| t > Instant::now())).cloned()
    }

    // ----- introspection and admin (public) -----------------------------------------------

    /// Every account.
    pub fn accounts(&self) -> Vec<AccountSnapshot> {
        self.lock().accounts.values().map(Account::snapshot).collect()
    }

    /// One account by name.
    pub fn account(&self, name: &str) -> Option<AccountSnapshot> {
        self.lock().accounts.get(name).map(Account::snapshot)
    }

    /// Every accepted request, in submit order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        let st = self.lock();
        st.order.iter().filter_map(|id| st.jobs.get(id)).map(|j| st.record(j, self.shared.started)).collect()
    }

    /// One request by id.
    pub fn request(&self, id: &str) -> Option<RequestRecord> {
        let st = self.lock();
        st.jobs.get(id).map(|j| st.record(j, self.shared.started))
    }

    /// Accepted requests whose input `prompt` (or `text`, for speech) contains `needle`, in
    /// submit order: what fal holds for one job of the bot, however often it was submitted.
    pub fn requests_for_prompt(&self, needle: &str) -> Vec<RequestRecord> {
        self.requests().into_iter().filter(|r| r.prompt_contains(needle)).collect()
    }

    /// How many times the model ran (reached IN_PROGRESS) for requests whose prompt contains
    /// `needle`: compare with the bot's ledger to prove nothing ran twice.
    pub fn runs_for_prompt(&self, needle: &str) -> usize {
        self.requests_for_prompt(needle).iter().filter(|r| r.ran()).count()
    }

    /// What fal charged for requests whose prompt contains `needle`.
    pub fn billed_for_prompt(&self, needle: &str) -> Usd {
        self.requests_for_prompt(needle).iter().fold(Usd::ZERO, |sum, r| sum.saturating_add(r.charged))
    }

    /// How many calls presenting `key` were refused with 401 (any call: submit, status,
    /// result, cancel, upload). `""` counts calls without a key.
    pub fn unauthorized_for_key(&self, key: &str) -> u64 {
        self.lock().unauthorized_by_key.get(key).copied().unwrap_or(0)
    }

    /// `GET /v1/account/billing`: the Platform API's account view, for an admin key only
    /// (401 for an unknown key, 403 for an inference-only one). With `expand=credits` it
    /// carries the current balance; an account of unlimited balance has no `credits` block,
    /// as fal may answer without one.
    pub(crate) fn billing(&self, auth: Option<&str>, expand_credits: bool) -> Reply {
        let mut st = self.lock();
        let Some((account, key)) = st.authorize(auth) else { return Reply::unauthorized() };
        if !st.admin_keys.contains(&key) {
            return Reply::detail(403, "This key lacks the permission billing:usage:read (use an ADMIN key)");
        }
        let mut body = json!({ "username": account });
        if expand_credits && let Some(balance) = st.accounts.get(&account).and_then(|a| a.balance) {
            body["credits"] = json!({ "current_balance": balance.micros() as f64 / 1e6, "currency": "USD" });
        }
        Reply::json(200, body)
    }

    /// Every storage upload.
    pub fn uploads(&self) -> Vec<UploadRecord> {
        self.lock().upload_log.clone()
    }

    /// Accounts, requests, uploads and global counters at once.
    pub fn snapshot(&self) -> SimSnapshot {
        let st = self.lock();
        SimSnapshot {
            base_url: self.shared.base_url.clone(),
            accounts: st.accounts.values().map(Account::snapshot).collect(),
            requests: st
                .order
                .iter()
                .filter_map(|id| st.jobs.get(id))
                .map(|j| st.record(j, self.shared.started))
                .collect(),
            uploads: st.upload_log.clone(),
            unauthorized_submits: st.unauthorized,
            unauthorized_by_key: st.unauthorized_by_key.clone(),
            in_progress_total: st.in_progress_total,
            max_in_progress_total: st.max_in_progress_total,
        }
    }

    /// Applies an admin update to an account (creating it with limit 2 if unknown) and returns it.
    pub fn update_account(&self, name: &str, update: &AccountUpdate) -> AccountSnapshot {
        let mut guard = self.lock();
        let st = &mut *guard;
        let acc = st.add_account(name, 2);
        if let Some(limit) = update.limit {
            acc.limit = limit;
        }
        if update.unlimited_balance {
            acc.balance = None;
        }
        if let Some(micros) = update.balance_micros {
            acc.balance = Some(Usd::from_micros(micros));
        } else if let Some(usd) = update.balance_usd {
            acc.balance = Some(Usd::from_dollars_f64(usd));
        }
        if let Some(micros) = update.lock_threshold_micros {
            acc.lock_threshold = Usd::from_micros(micros);
        }
        match update.locked {
            Some(true) => acc.admin_lock = Some(update.lock_reason.clone().unwrap_or_else(|| EXHAUSTED.to_owned())),
            Some(false) => acc.admin_lock = None,
            None => {}
        }
        for key in &update.add_keys {
            st.add_key(name, key);
        }
        for key in &update.remove_keys {
            st.remove_key(name, key);
        }
        self.dispatch(st, name);
        let snapshot = st.accounts.get(name).map(Account::snapshot).expect("account was just added");
        drop(guard);
        self.notify();
        snapshot
    }

    /// Appends fault rules at runtime.
    pub fn add_faults(&self, rules: impl IntoIterator<Item = FaultRule>) {
        self.lock().faults.rules.extend(rules);
        self.notify();
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.lock().faults.rules.clear();
        self.notify();
    }

    /// The live fault rules, with their remaining counts.
    pub fn faults(&self) -> Vec<FaultRule> {
        self.lock().faults.rules.clone()
    }

    /// Waits until `pred` holds for the accounts, or `timeout` passes; returns whether it held.
    pub async fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&[AccountSnapshot]) -> bool) -> bool {
        let mut rx = self.shared.changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.accounts()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return pred(&self.accounts()),
            }
        }
    }

    /// Waits until no account has a runnable queued job or a running one (stuck jobs are ignored).
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |accounts| accounts.iter().all(|a| a.in_progress == 0 && a.queued == a.stuck)).await
    }

    /// A receiver that changes on every state change (for streaming status).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changed.subscribe()
    }
}

fn remove_queued(acc: &mut Account, id: &str, stuck: bool) {
    if stuck {
        acc.stuck = acc.stuck.saturating_sub(1);
    } else {
        acc.queue.retain(|q| q != id);
    }
}

/// Marks a job COMPLETED with `outcome` and books `charge` against its account.
fn complete(st: &mut State, id: &str, outcome: Outcome, charge: Usd) {
    let Some(job) = st.jobs.get_mut(id) else { return };
    let message = match outcome.kind {
        OutcomeKind::Success => "Inference finished".to_owned(),
        other => format!("Request ended: {other:?}"),
    };
    job.log(if outcome.kind == OutcomeKind::Success { "INFO" } else { "ERROR" }, &message);
    job.status = RequestStatus::Completed;
    job.completed_at = Some(Instant::now());
    job.charged = charge;
    job.outcome = Some(outcome);
    if let Some(acc) = st.accounts.get_mut(&job.account) {
        acc.charged = acc.charged.saturating_add(charge);
        if let Some(balance) = acc.balance.as_mut() {
            *balance = balance.saturating_sub(charge);
        }
    }
}

/// Keeps a file name URL-safe.
fn sanitize(name: &str) -> String {
    let cleaned: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') { "upload.bin".to_owned() } else { cleaned }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots() {
        assert_eq!(root_len(&["fal-ai", "flux-pro", "v1.1"]), 2);
        assert_eq!(root_len(&["workflows", "me", "flow"]), 3);
    }

    #[test]
    fn sanitizes_names() {
        assert_eq!(sanitize("my photo (1).jpg"), "my_photo__1_.jpg");
        assert_eq!(sanitize(".."), "upload.bin");
        assert_eq!(sanitize("../../etc"), ".._.._etc");
    }
}
