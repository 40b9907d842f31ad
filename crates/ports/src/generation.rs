//! The generation port: running models on fal accounts.

use async_trait::async_trait;
pub use mediagen_domain::account::KeyStatus;
use mediagen_domain::{AccountId, ImageSize, ModelId, ModelKind, RequestId, Timestamp};
use serde::{Deserialize, Serialize};

/// Bytes of an image or sound with their type, in either direction.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaBytes {
    /// The content.
    pub bytes: Vec<u8>,
    /// MIME type, e.g. `image/png`.
    pub content_type: String,
    /// A file name to show or to upload under.
    pub file_name: String,
}

impl std::fmt::Debug for MediaBytes {
    // Byte dumps in logs help nobody.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaBytes")
            .field("len", &self.bytes.len())
            .field("content_type", &self.content_type)
            .field("file_name", &self.file_name)
            .finish()
    }
}

/// Settings for an LLM call (prompt enhancement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmParams {
    /// The router's model name, e.g. `google/gemini-2.5-flash`.
    pub model: String,
    /// The system prompt.
    pub system_prompt: String,
    /// Cap on output tokens.
    pub max_tokens: u32,
}

/// One model call, already translated from the user's job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRequest {
    /// fal endpoint id.
    pub model: ModelId,
    /// Decides how the adapter shapes the input JSON.
    pub kind: ModelKind,
    /// Prompt, or the text to speak.
    pub prompt: String,
    /// Output size for image models.
    pub size: Option<ImageSize>,
    /// Number of outputs.
    pub num_images: u8,
    /// A fixed seed.
    pub seed: Option<u64>,
    /// URLs of input images already uploaded to fal storage (never Telegram URLs).
    pub input_image_urls: Vec<String>,
    /// Only for [`ModelKind::Llm`].
    pub llm: Option<LlmParams>,
}

/// Where an accepted request lives at fal: stored with the job so that a restarted
/// process resumes polling instead of submitting again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteHandle {
    /// The account that runs it (and pays).
    pub account: AccountId,
    /// The endpoint it was submitted to.
    pub model: ModelId,
    /// fal's request id.
    pub request_id: RequestId,
    /// As returned by submit.
    pub status_url: String,
    /// As returned by submit.
    pub response_url: String,
    /// As returned by submit.
    pub cancel_url: String,
}

/// fal's view of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteStatus {
    /// Waiting in fal's queue for a slot of the account.
    InQueue {
        /// 0 = next.
        position: Option<u32>,
    },
    /// Running.
    InProgress,
    /// Finished; the result (success or failure) must be fetched.
    Completed,
}

/// One produced file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputMedia {
    /// Public CDN URL (kept about 7 days by fal).
    pub url: String,
    /// MIME type when fal says it.
    pub content_type: Option<String>,
    /// Pixels across, when known.
    pub width: Option<u32>,
    /// Pixels down, when known.
    pub height: Option<u32>,
    /// Size in bytes, when known.
    pub file_size: Option<u64>,
}

/// Tokens used by an LLM call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

/// A successful result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GenerationOutput {
    /// Images or audio produced.
    pub media: Vec<OutputMedia>,
    /// LLM output, or a model's description of its image.
    pub text: Option<String>,
    /// The seed used (can exceed `i64`).
    pub seed: Option<u64>,
    /// LLM token counts.
    pub usage: Option<TokenUsage>,
}

/// What a cancel achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelOutcome {
    /// Queued requests never run; running ones get a signal (and may still be billed).
    Requested,
    /// Too late: it finished.
    AlreadyCompleted,
    /// fal does not know the request.
    NotFound,
}

/// Failures of the generation port, classified so the engine can decide without
/// knowing HTTP.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// fal's content checker refused the prompt or flagged the output. Never retry.
    #[error("refused by the content policy")]
    ContentPolicy,
    /// fal rejected the input (422 other than content policy). Not retryable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Every key of the account was refused (401): an operator must fix the configuration.
    /// A refused key among usable ones never surfaces: the adapter sets it aside (see
    /// [`Generation::key_statuses`]) and repeats the call with another key of the account.
    #[error("every fal key of account {0} was refused")]
    BadKey(AccountId),
    /// The account is locked (403 "User is locked"): stop using it and alert.
    #[error("fal account {account} is locked: {reason}")]
    AccountLocked {
        /// Which account.
        account: AccountId,
        /// fal's reason text.
        reason: String,
    },
    /// fal does not know the endpoint (404).
    #[error("unknown model endpoint: {0}")]
    UnknownModel(String),
    /// A transient failure (429, 502/503/504, network) that outlived the adapter's own
    /// retries. For a submit it means fal did not accept the request; from `wait` it means
    /// fal itself says the run failed (a 5xx result that carries fal's request id), which
    /// fal does not bill and which may be submitted again.
    #[error("temporary upstream failure: {0}")]
    Retryable(String),
    /// A submit whose answer was lost after sending: fal may or may not have accepted
    /// it, and submits have no idempotency key.
    #[error("submit outcome unknown: {0}")]
    SubmitOutcomeUnknown(String),
    /// The start deadline fired (504 with `X-Fal-Request-Timeout-Type: user`) or
    /// following the request took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// fal answered the result with success, but the answer could not be read (malformed,
    /// no usable output). fal ran and billed the request: it must not be submitted again.
    #[error("fal's result could not be read: {0}")]
    UnreadableResult(String),
    /// Media over the configured size limit.
    #[error("file is {actual} bytes; the limit is {limit}")]
    TooLarge {
        /// Bytes found.
        actual: u64,
        /// Bytes allowed.
        limit: u64,
    },
    /// Anything else (a malformed response, say).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl GenerationError {
    /// True when the same request may succeed later, on this or another account.
    pub fn is_retryable(&self) -> bool {
        matches!(self, GenerationError::Retryable(_))
    }
}

/// Runs models on fal accounts.
///
/// Capacity belongs to an account, not a key; the adapter picks among the account's keys.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Generation: Send + Sync {
    /// Uploads input bytes to fal storage and returns the URL to pass as input.
    ///
    /// # Errors
    /// MUST return [`GenerationError::TooLarge`] before any network call when the bytes
    /// exceed the limit, [`GenerationError::BadKey`] / [`GenerationError::AccountLocked`]
    /// for 401 / 403, [`GenerationError::Retryable`] after exhausting retries on
    /// transient failures.
    async fn upload(&self, account: &AccountId, media: MediaBytes) -> Result<String, GenerationError>;

    /// Submits a request to fal's queue on `account`.
    ///
    /// # Errors
    /// MUST return [`GenerationError::Retryable`] only when fal cannot have accepted the
    /// request (connect error, 429, 502/503 before acceptance), and
    /// [`GenerationError::SubmitOutcomeUnknown`] when it may have; `AccountLocked` for 403,
    /// `BadKey` for 401, `UnknownModel` for 404, `InvalidInput` / `ContentPolicy` for 422.
    async fn submit(&self, account: &AccountId, request: &GenerationRequest) -> Result<RemoteHandle, GenerationError>;

    /// One status check.
    ///
    /// # Errors
    /// `Retryable` for transient failures, `BadKey` for 401, `Other` for a malformed body.
    async fn status(&self, handle: &RemoteHandle) -> Result<RemoteStatus, GenerationError>;

    /// Follows the request until fal reports it COMPLETED, then fetches and classifies
    /// the result (a failed run still ends COMPLETED; the failure comes from the result).
    ///
    /// Once fal holds a request, only fal's own word ends it: a transport error, a cut
    /// body or a gateway 502/503/504 while checking or fetching is tried again until
    /// `deadline` (wall clock), because a resubmit would run and bill the request twice.
    ///
    /// # Errors
    /// `ContentPolicy` for a 422 `content_policy_violation` or a flagged output
    /// (`has_nsfw_concepts`), `InvalidInput` for other 422s, `Retryable` only when fal
    /// says the run failed (a 5xx result carrying fal's request id; never charged),
    /// `Timeout` when `deadline` passes first, `BadKey` when no key of the account is left.
    async fn wait(&self, handle: &RemoteHandle, deadline: Timestamp) -> Result<GenerationOutput, GenerationError>;

    /// Asks fal to cancel.
    ///
    /// # Errors
    /// `Retryable` for transient failures.
    async fn cancel(&self, handle: &RemoteHandle) -> Result<CancelOutcome, GenerationError>;

    /// Downloads a produced file from the CDN, within the size limit and a timeout.
    ///
    /// # Errors
    /// MUST return `TooLarge` as soon as the size passes the limit, `Timeout` on a slow
    /// download, `Retryable` for transient failures.
    async fn download(&self, media: &OutputMedia) -> Result<MediaBytes, GenerationError>;

    /// Every configured key with its state, in configuration order.
    fn key_statuses(&self) -> Vec<KeyStatus>;

    /// Tries each refused key once with a cheap authenticated call and puts back in use
    /// those fal accepts again; returns the keys put back.
    async fn probe_refused_keys(&self) -> Vec<KeyStatus>;

    /// Puts a refused key back in use (an operator fixed it at fal); false when the
    /// account has no key of that name.
    fn enable_key(&self, account: &AccountId, key: &str) -> bool;
}
