//! The crate's error type, and the Bot API error answers with Telegram's exact texts.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::time::Duration;

/// What the driving API and [`spawn`](crate::spawn) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The configuration is unusable (e.g. a token without `:` or a fault rate above 1).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The driving call names a message that does not exist in that chat.
    #[error("no message {message_id} in chat {chat_id}")]
    MessageNotFound {
        /// The chat looked in.
        chat_id: i64,
        /// The message asked for.
        message_id: i64,
    },
    /// The message has no inline button with that callback data (a real user cannot press it).
    #[error("message {message_id} has no inline button with callback data {data:?}")]
    ButtonNotFound {
        /// The message looked at.
        message_id: i64,
        /// The data (or label) asked for.
        data: String,
    },
    /// A driving argument is unusable (e.g. an album of one photo, or an empty text).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// [`wait_for`](crate::FakeTelegram::wait_for) ran out of time.
    #[error("condition not met within {0:?}")]
    Timeout(Duration),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Bot API error answer: `{"ok":false,"error_code":..,"description":..}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiFailure {
    pub(crate) code: u16,
    pub(crate) description: String,
    pub(crate) retry_after: Option<u32>,
}

impl ApiFailure {
    pub(crate) fn new(code: u16, description: impl Into<String>) -> Self {
        ApiFailure { code, description: description.into(), retry_after: None }
    }

    pub(crate) fn bad_request(what: impl std::fmt::Display) -> Self {
        ApiFailure::new(400, format!("Bad Request: {what}"))
    }

    pub(crate) fn unauthorized() -> Self {
        ApiFailure::new(401, "Unauthorized")
    }

    pub(crate) fn not_found() -> Self {
        ApiFailure::new(404, "Not Found")
    }

    pub(crate) fn method_not_found() -> Self {
        ApiFailure::new(404, "Not Found: method not found")
    }

    pub(crate) fn retry_after(secs: u32) -> Self {
        ApiFailure { code: 429, description: format!("Too Many Requests: retry after {secs}"), retry_after: Some(secs) }
    }

    pub(crate) fn too_large() -> Self {
        ApiFailure::new(413, "Request Entity Too Large")
    }

    pub(crate) fn missing(param: &str) -> Self {
        ApiFailure::bad_request(format!("{param} is empty"))
    }

    pub(crate) fn chat_not_found() -> Self {
        ApiFailure::bad_request("chat not found")
    }

    pub(crate) fn blocked() -> Self {
        ApiFailure::new(403, "Forbidden: bot was blocked by the user")
    }

    pub(crate) fn not_modified() -> Self {
        ApiFailure::bad_request(
            "message is not modified: specified new message content and reply markup are exactly the same as a \
             current content and reply markup of the message",
        )
    }

    pub(crate) fn query_too_old() -> Self {
        // Telegram writes "query ID"; teloxide 0.17 matches "query id" exactly, so it reports this
        // as `ApiError::Unknown` — the fake keeps the real spelling.
        ApiFailure::bad_request("query is too old and response timeout expired or query ID is invalid")
    }

    pub(crate) fn conflict_other_poll() -> Self {
        ApiFailure::new(
            409,
            "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
        )
    }

    pub(crate) fn conflict_webhook() -> Self {
        ApiFailure::new(
            409,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
        )
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let mut body = json!({"ok": false, "error_code": self.code, "description": self.description});
        if let Some(secs) = self.retry_after {
            body["parameters"] = json!({"retry_after": secs});
        }
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::BAD_REQUEST);
        (status, Json(body)).into_response()
    }
}
