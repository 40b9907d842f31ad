//! Introspection types: what tests, the demo and benchmarks can read about a running simulator.
//! Served as JSON under `/_sim/...` and returned by [`crate::SimHandle`].

use crate::faults::FaultKind;
use crate::money::Usd;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Counters and state of one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountSnapshot {
    /// Account name.
    pub name: String,
    /// Its API keys.
    pub keys: Vec<String>,
    /// Concurrency limit (simultaneous IN_PROGRESS requests).
    pub limit: u32,
    /// Highest number of simultaneous IN_PROGRESS requests observed so far.
    pub max_in_progress: u32,
    /// IN_PROGRESS requests now.
    pub in_progress: u32,
    /// IN_QUEUE requests now (including stuck ones).
    pub queued: u32,
    /// IN_QUEUE requests that the `stuck` fault will never start.
    pub stuck: u32,
    /// Requests that reached IN_PROGRESS ("jobs run").
    pub jobs_started: u64,
    /// Requests that ran and succeeded.
    pub jobs_succeeded: u64,
    /// Requests that ran and ended in an error result (5xx, 422).
    pub jobs_failed: u64,
    /// Requests cancelled while queued (or aborted while running).
    pub jobs_cancelled: u64,
    /// Requests whose `X-Fal-Request-Timeout` expired while queued.
    pub jobs_timed_out: u64,
    /// Total charged so far.
    #[serde(rename = "charged_micros")]
    pub charged: Usd,
    /// Current balance; `None` = unlimited.
    #[serde(rename = "balance_micros")]
    pub balance: Option<Usd>,
    /// The account locks at or below this balance.
    #[serde(rename = "lock_threshold_micros")]
    pub lock_threshold: Usd,
    /// Whether submits are refused with 403 now.
    pub locked: bool,
    /// The reason shown in the 403, when locked.
    pub lock_reason: Option<String>,
    /// Authenticated submits seen (accepted or not).
    pub submits_seen: u64,
    /// Submits accepted (enqueued).
    pub submits_accepted: u64,
    /// Authenticated submits seen, per key.
    pub submits_by_key: BTreeMap<String, u64>,
    /// Refused submits per reason: `not_found`, `rate_limited`, `bad_gateway`, `unavailable`,
    /// `locked`, `bad_request`, `validation`, `too_large`.
    pub rejected: BTreeMap<String, u64>,
}

/// The three statuses of fal's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestStatus {
    /// Waiting for a slot.
    InQueue,
    /// Running (counts against the account's limit).
    InProgress,
    /// Finished, successfully or not.
    Completed,
}

impl RequestStatus {
    /// The wire string (`IN_QUEUE`, `IN_PROGRESS`, `COMPLETED`).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::InQueue => "IN_QUEUE",
            RequestStatus::InProgress => "IN_PROGRESS",
            RequestStatus::Completed => "COMPLETED",
        }
    }
}

/// How a completed request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// 200 with the model output.
    Success,
    /// 422 `content_policy_violation`.
    ContentPolicyViolation,
    /// 422 `file_download_error` (an input URL on the simulator's CDN did not exist).
    FileDownloadError,
    /// 500 `runner_server_error`.
    RunnerServerError,
    /// 503 `runner_disconnected`.
    RunnerDisconnected,
    /// 504 `request_timeout` (start deadline expired while queued).
    RequestTimeout,
    /// 499 `client_cancelled`.
    Cancelled,
}

/// Everything recorded about one accepted request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The request id (UUID v7).
    pub request_id: String,
    /// Full endpoint id as submitted (with path).
    pub endpoint: String,
    /// Account that owns it.
    pub account: String,
    /// Key it was submitted with.
    pub key: String,
    /// The submitted input JSON, verbatim.
    pub input: Value,
    /// Submit headers worth checking: every `x-fal-*` header, `content-type`, `user-agent`.
    pub headers: BTreeMap<String, String>,
    /// `X-Fal-Object-Lifecycle-Preference`, when sent.
    pub lifecycle_preference: Option<String>,
    /// `X-Fal-Request-Timeout`, when sent.
    pub request_timeout: Option<String>,
    /// The `fal_webhook` query parameter, when sent (recorded, not delivered).
    pub webhook: Option<String>,
    /// Current status.
    pub status: RequestStatus,
    /// How it ended, once completed.
    pub outcome: Option<OutcomeKind>,
    /// Faults assigned to it at acceptance.
    pub faults: Vec<FaultKind>,
    /// Global submit order (1-based).
    pub submit_seq: u64,
    /// Global start order (1-based), once started.
    pub start_seq: Option<u64>,
    /// Real milliseconds since the simulator started, at submit.
    pub submitted_ms: u64,
    /// Real milliseconds since start, when it went IN_PROGRESS.
    pub started_ms: Option<u64>,
    /// Real milliseconds since start, when it completed.
    pub completed_ms: Option<u64>,
    /// Drawn service time in simulated seconds (reported as `metrics.inference_time`).
    pub service_secs: Option<f64>,
    /// Amount charged for it.
    #[serde(rename = "charged_micros")]
    pub charged: Usd,
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
    /// CDN URLs of its generated files.
    pub output_urls: Vec<String>,
    /// Result GETs answered for it (before completion, spoiled by a fault, or real).
    #[serde(default)]
    pub result_fetches: u32,
}

impl RequestRecord {
    /// Whether the input's `prompt` (or `text`, for speech) contains `needle`.
    pub fn prompt_contains(&self, needle: &str) -> bool {
        ["prompt", "text"]
            .iter()
            .any(|f| self.input.get(*f).and_then(Value::as_str).is_some_and(|p| p.contains(needle)))
    }

    /// Whether the model ran for it (it reached IN_PROGRESS).
    pub fn ran(&self) -> bool {
        self.started_ms.is_some()
    }
}

/// One storage upload (initiated, maybe PUT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Account whose key initiated it.
    pub account: String,
    /// Public CDN URL.
    pub file_url: String,
    /// Declared content type.
    pub content_type: String,
    /// Declared file name.
    pub file_name: String,
    /// Bytes stored by the PUT, once done.
    pub size: Option<usize>,
    /// `X-Fal-Object-Lifecycle[-Preference]` sent on initiate.
    pub lifecycle: Option<String>,
}

/// A full picture of the simulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimSnapshot {
    /// Base URL of the simulator.
    pub base_url: String,
    /// Every account.
    pub accounts: Vec<AccountSnapshot>,
    /// Every accepted request, in submit order.
    pub requests: Vec<RequestRecord>,
    /// Every storage upload, in order.
    pub uploads: Vec<UploadRecord>,
    /// Submits refused with 401 (unknown or missing key).
    pub unauthorized_submits: u64,
    /// Every call refused with 401 (submit, status, result, cancel, upload), per key
    /// presented (`""` = no key).
    #[serde(default)]
    pub unauthorized_by_key: BTreeMap<String, u64>,
    /// IN_PROGRESS requests now, across accounts.
    pub in_progress_total: u32,
    /// Highest number of simultaneous IN_PROGRESS requests across accounts.
    pub max_in_progress_total: u32,
}

/// A partial update of an account (admin call); absent fields are left alone. Creates the account if needed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountUpdate {
    /// New concurrency limit.
    #[serde(default)]
    pub limit: Option<u32>,
    /// New balance in micro-dollars.
    #[serde(default)]
    pub balance_micros: Option<i64>,
    /// New balance in dollars (ignored when `balance_micros` is given).
    #[serde(default)]
    pub balance_usd: Option<f64>,
    /// Make the balance unlimited.
    #[serde(default)]
    pub unlimited_balance: bool,
    /// New lock threshold in micro-dollars.
    #[serde(default)]
    pub lock_threshold_micros: Option<i64>,
    /// Lock (`true`) or lift an admin lock (`false`).
    #[serde(default)]
    pub locked: Option<bool>,
    /// Reason shown in the 403 of an admin lock (default: exhausted balance).
    #[serde(default)]
    pub lock_reason: Option<String>,
    /// Keys to add.
    #[serde(default)]
    pub add_keys: Vec<String>,
    /// Keys to revoke: every later call with one gets 401, as fal answers a deleted key.
    #[serde(default)]
    pub remove_keys: Vec<String>,
}
