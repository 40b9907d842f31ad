//! The messaging port: everything the engine says to users and operators.
//!
//! The engine speaks in [`UserNotice`]s (data, not text); the adapter renders them in the
//! user's language, so every user-facing string lives in the adapter, one place per language.

use crate::generation::MediaBytes;
use async_trait::async_trait;
use mediagen_domain::insights::OperatorSummary;
use mediagen_domain::quota::QuotaRefusal;
use mediagen_domain::{ChatId, FailureReason, JobId, Language, MediaRef, ModelId, Money};
use serde::{Deserialize, Serialize};

/// Who receives a message and in which language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The chat.
    pub chat: ChatId,
    /// The language to render in.
    pub language: Language,
}

/// A message the bot sent, so it can be edited later (the progress message).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageRef {
    /// The chat it is in.
    pub chat: ChatId,
    /// The message id within the chat.
    pub message_id: i64,
}

/// Why a request was not accepted, with what the user needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// A plan limit; carries which one and when it resets.
    Quota(QuotaRefusal),
    /// The user is blocked.
    Blocked,
    /// The model does not exist or is disabled.
    UnknownModel(ModelId),
    /// The prompt is empty or too long (the message says which).
    BadPrompt(String),
    /// The size is not offered by the model.
    SizeNotAllowed {
        /// Requested size, as text.
        requested: String,
        /// Sizes the model allows.
        allowed: Vec<String>,
    },
    /// More input images than the model takes.
    TooManyImages {
        /// Images sent.
        given: u32,
        /// Images allowed.
        max: u32,
    },
    /// An input file over the limit.
    FileTooLarge {
        /// Bytes sent.
        size: u64,
        /// Bytes allowed.
        max: u64,
    },
    /// The file is not an image the model can read.
    NotAnImage,
    /// Too many requests in a short time.
    RateLimited {
        /// Seconds until the next request is accepted.
        retry_after_secs: u32,
    },
    /// Storage is unreachable: the request could not be accepted now.
    TemporarilyUnavailable,
}

/// Something the engine tells a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserNotice {
    /// Accepted and waiting.
    Queued {
        /// The job.
        job: JobId,
        /// 1-based place in the queue.
        position: u32,
        /// Jobs waiting in total.
        total: u32,
        /// Estimated wait in seconds.
        eta_secs: u32,
        /// Credit held for it.
        price: Money,
    },
    /// Running at fal.
    Generating {
        /// The job.
        job: JobId,
        /// The model.
        model: ModelId,
    },
    /// Finished and delivered.
    Done {
        /// The job.
        job: JobId,
        /// What the user was charged.
        charged: Money,
    },
    /// Ended without a result.
    Failed {
        /// The job.
        job: JobId,
        /// Why.
        reason: FailureReason,
        /// Credit given back.
        refunded: Money,
    },
    /// Canceled on request.
    Canceled {
        /// The job.
        job: JobId,
        /// Credit given back.
        refunded: Money,
    },
    /// Not accepted.
    Refused(Refusal),
    /// The LLM's rewrite of a prompt.
    EnhancedPrompt {
        /// What the user wrote.
        original: String,
        /// The rewrite.
        enhanced: String,
    },
}

/// A produced file to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultMedia {
    /// Fresh bytes from fal.
    Bytes(MediaBytes),
    /// A file Telegram already has (re-sent by id, which never expires).
    Stored(MediaRef),
}

/// How a delivered file can be sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredMedia {
    /// The message that carries it.
    pub message: MessageRef,
    /// The front end's id for the file (Telegram file id).
    pub file_id: String,
}

/// Severity of an operator alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Severity {
    /// For the record.
    Info,
    /// Act soon.
    Warning,
    /// Act now: users are affected.
    Critical,
}

/// A message for the operators' chat(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorAlert {
    /// How urgent.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// Details and what to do.
    pub body: String,
}

/// Failures of the messaging port.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    /// The platform asked us to slow down.
    #[error("rate limited; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds to wait.
        retry_after_secs: u32,
    },
    /// The chat is gone or blocked the bot: retrying will not help.
    #[error("chat unavailable: {0}")]
    ChatUnavailable(String),
    /// The edit changed nothing or the message is gone; safe to ignore.
    #[error("message not modified or missing")]
    NotModified,
    /// The file is too large for the platform.
    #[error("file too large for the platform: {0} bytes")]
    TooLarge(u64),
    /// The request was sent but its answer never came (a timeout after sending): it may
    /// well have taken effect, so sending it again may show it twice. Not retried for
    /// sends; safe to retry for edits.
    #[error("sent, but unconfirmed: {0}")]
    Unconfirmed(String),
    /// Anything else (network before sending, malformed reply).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Talks to users and operators.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Messaging: Send + Sync {
    /// Sends a notice and returns the message, so it can be edited as the job moves.
    ///
    /// # Errors
    /// `RateLimited` with the platform's delay, `ChatUnavailable` when the user blocked the bot.
    async fn send_notice(&self, to: Recipient, notice: &UserNotice) -> Result<MessageRef, MessagingError>;

    /// Replaces the text of an earlier notice (the progress message).
    ///
    /// # Errors
    /// `NotModified` when the text is unchanged or the message is gone (callers ignore it),
    /// `RateLimited` as for sending.
    async fn edit_notice(
        &self,
        message: &MessageRef,
        language: Language,
        notice: &UserNotice,
    ) -> Result<(), MessagingError>;

    /// Delivers a job's results, as photos or as documents (full quality).
    ///
    /// # Errors
    /// `TooLarge` when a file exceeds the platform's limit for the chosen form,
    /// `RateLimited` and `ChatUnavailable` as for sending.
    async fn send_results(
        &self,
        to: Recipient,
        job: JobId,
        media: Vec<ResultMedia>,
        as_file: bool,
    ) -> Result<Vec<DeliveredMedia>, MessagingError>;

    /// Answers a button press at once (a late answer fails as "query is too old").
    ///
    /// # Errors
    /// `Other` when the platform refuses; callers log and continue.
    async fn answer_button(&self, callback_id: &str, text: Option<String>) -> Result<(), MessagingError>;

    /// Sends an alert to every operator chat.
    ///
    /// # Errors
    /// `Other` when no operator chat could be reached.
    async fn notify_operators(&self, alert: &OperatorAlert) -> Result<(), MessagingError>;

    /// Sends a scheduled summary to every operator chat. The summary is data: the front
    /// end renders it (its text in full, and its chart where it can show pictures).
    ///
    /// # Errors
    /// `TooLarge` when the chart exceeds the platform's limit; `Other` when no operator
    /// chat could be reached.
    async fn notify_operators_summary(&self, summary: &OperatorSummary) -> Result<(), MessagingError>;

    /// Fetches the bytes of a user's input file, so that no platform URL (which would
    /// carry the bot token) ever leaves the adapter.
    ///
    /// # Errors
    /// `TooLarge` past `max_bytes` (checked before downloading when the size is known),
    /// `Other` when the file cannot be fetched.
    async fn fetch_input(&self, media: &MediaRef, max_bytes: u64) -> Result<MediaBytes, MessagingError>;
}
