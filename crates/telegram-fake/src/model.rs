//! The values the driving API takes and returns: simulated users, chat messages and recorded calls.

use crate::markup::Entity;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

/// A simulated Telegram user; their private chat with the bot has the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimUser {
    /// The user id (and the id of the private chat).
    pub id: i64,
    /// First name (required by Telegram).
    pub first_name: String,
    /// Last name.
    pub last_name: Option<String>,
    /// Username without `@`.
    pub username: Option<String>,
    /// IETF language tag of the user's client, e.g. `en`, `ru`.
    pub language_code: Option<String>,
}

impl SimUser {
    /// A user with an id and a first name only.
    pub fn new(id: i64, first_name: impl Into<String>) -> Self {
        SimUser { id, first_name: first_name.into(), last_name: None, username: None, language_code: None }
    }

    /// Sets the username (builder style).
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets the language code (builder style).
    pub fn with_language(mut self, language_code: impl Into<String>) -> Self {
        self.language_code = Some(language_code.into());
        self
    }

    /// Sets the last name (builder style).
    pub fn with_last_name(mut self, last_name: impl Into<String>) -> Self {
        self.last_name = Some(last_name.into());
        self
    }

    /// The `n`-th user of a crowd: deterministic id (`10_000_000 + n`), name, username and a
    /// language cycling through en, ru, de, es, pt, uk, tr, fr (and every ninth has none).
    pub fn generated(n: u32) -> Self {
        const NAMES: [&str; 12] =
            ["Alice", "Boris", "Chen", "Dana", "Emre", "Fatima", "Giulia", "Hiro", "Ivan", "Jonas", "Kemal", "Lucia"];
        const LANGUAGES: [Option<&str>; 9] =
            [Some("en"), Some("ru"), Some("de"), Some("es"), Some("pt-br"), Some("uk"), Some("tr"), Some("fr"), None];
        let index = n as usize;
        let name = NAMES[index % NAMES.len()];
        SimUser {
            id: 10_000_000 + i64::from(n),
            first_name: name.to_owned(),
            last_name: None,
            username: (n % 5 != 4).then(|| format!("{}_{n}", name.to_lowercase())),
            language_code: LANGUAGES[index % LANGUAGES.len()].map(str::to_owned),
        }
    }

    /// The Bot API `User` object.
    pub fn to_json(&self) -> Value {
        let mut user = json!({"id": self.id, "is_bot": false, "first_name": self.first_name});
        put(&mut user, "last_name", &self.last_name);
        put(&mut user, "username", &self.username);
        put(&mut user, "language_code", &self.language_code);
        user
    }

    /// The Bot API `Chat` object of the user's private chat with the bot.
    pub fn chat_json(&self) -> Value {
        let mut chat = json!({"id": self.id, "type": "private", "first_name": self.first_name});
        put(&mut chat, "last_name", &self.last_name);
        put(&mut chat, "username", &self.username);
        chat
    }
}

fn put(object: &mut Value, key: &str, value: &Option<String>) {
    if let Some(value) = value {
        object[key] = Value::String(value.clone());
    }
}

/// What a driving call created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sent {
    /// The `update_id` the bot will receive.
    pub update_id: i64,
    /// The chat (= user id).
    pub chat_id: i64,
    /// The user's new message.
    pub message_id: i64,
}

/// A button press created by [`press_button`](crate::FakeTelegram::press_button).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pressed {
    /// The `update_id` the bot will receive.
    pub update_id: i64,
    /// The `callback_query.id` the bot must answer.
    pub query_id: String,
}

/// What a message shows besides its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    /// A text message.
    Text,
    /// A photo (the largest size's file).
    Photo {
        /// `file_id` of the largest size.
        file_id: String,
        /// Width of the largest size.
        width: u32,
        /// Height of the largest size.
        height: u32,
        /// Bytes.
        file_size: u64,
    },
    /// A file sent as a document.
    Document {
        /// `file_id`.
        file_id: String,
        /// Original file name.
        file_name: Option<String>,
        /// MIME type.
        mime_type: Option<String>,
        /// Bytes.
        file_size: u64,
    },
    /// An audio file.
    Audio {
        /// `file_id`.
        file_id: String,
        /// Original file name.
        file_name: Option<String>,
        /// MIME type.
        mime_type: Option<String>,
        /// Bytes.
        file_size: u64,
    },
}

impl Content {
    /// The `file_id` of a media message.
    pub fn file_id(&self) -> Option<&str> {
        match self {
            Content::Text => None,
            Content::Photo { file_id, .. } | Content::Document { file_id, .. } | Content::Audio { file_id, .. } => {
                Some(file_id)
            }
        }
    }
}

/// One message of a chat, as the user sees it now (edits applied).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    /// The chat (= user id for private chats).
    pub chat_id: i64,
    /// The message id, counted per chat as Telegram does.
    pub message_id: i64,
    /// Sent by the bot (`false`: sent by the simulated user).
    pub from_bot: bool,
    /// When it was sent.
    pub date: DateTime<Utc>,
    /// Text or media.
    pub content: Content,
    /// The visible text (markup parsed away) or the caption.
    pub text: Option<String>,
    /// Formatting of `text`.
    pub entities: Vec<Entity>,
    /// The `parse_mode` the text was sent with.
    pub parse_mode: Option<String>,
    /// The reply markup as sent (inline keyboards, reply keyboards, `remove_keyboard`, …).
    pub reply_markup: Option<Value>,
    /// The message this one replies to.
    pub reply_to: Option<i64>,
    /// Shared by the messages of one album.
    pub media_group_id: Option<String>,
    /// How many times it was edited.
    pub edit_count: u32,
    /// When it was last edited.
    pub edit_date: Option<DateTime<Utc>>,
}

/// One inline keyboard button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineButton {
    /// The label.
    pub text: String,
    /// `callback_data`, for callback buttons.
    pub callback_data: Option<String>,
    /// `url`, for link buttons.
    pub url: Option<String>,
}

impl ChatMessage {
    /// The inline keyboard's buttons, row by row.
    pub fn inline_buttons(&self) -> Vec<InlineButton> {
        inline_buttons(self.reply_markup.as_ref())
    }

    /// The `callback_data` of the inline button labelled `label`.
    pub fn callback_data_for(&self, label: &str) -> Option<String> {
        self.inline_buttons().into_iter().find(|b| b.text == label).and_then(|b| b.callback_data)
    }

    /// The visible text, or `""`.
    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or_default()
    }
}

pub(crate) fn inline_buttons(markup: Option<&Value>) -> Vec<InlineButton> {
    let rows = markup.and_then(|m| m.get("inline_keyboard")).and_then(Value::as_array);
    let string = |button: &Value, key: &str| button.get(key).and_then(Value::as_str).map(str::to_owned);
    rows.into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .map(|button| InlineButton {
            text: string(button, "text").unwrap_or_default(),
            callback_data: string(button, "callback_data"),
            url: string(button, "url"),
        })
        .collect()
}

/// Where a file the bot sent came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileSource {
    /// Uploaded in the request (multipart/form-data).
    Upload {
        /// Size in bytes.
        len: u64,
        /// The multipart file name (teloxide sends `""` for in-memory files without one).
        file_name: Option<String>,
        /// The part's content type.
        mime_type: Option<String>,
    },
    /// A re-send of a file Telegram already has, by `file_id`.
    FileId(String),
    /// A URL Telegram was asked to fetch.
    Url(String),
}

/// A file used by a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileUse {
    /// The parameter (`photo`, `document`, `media[0]`, …).
    pub field: String,
    /// Where it came from.
    pub source: FileSource,
    /// The `file_id` it got (or had); `None` when the call failed first.
    pub file_id: Option<String>,
}

/// How a recorded call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outcome {
    /// `{"ok":true,...}`.
    Ok,
    /// `{"ok":false,...}`.
    Failed {
        /// `error_code` (and HTTP status).
        code: u16,
        /// `description`.
        description: String,
    },
}

/// An `answerCallbackQuery` as the bot sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallbackAnswer {
    /// `callback_query_id`.
    pub query_id: String,
    /// The notification text.
    pub text: Option<String>,
    /// Shown as an alert instead of a toast.
    pub show_alert: bool,
}

/// One Bot API call the bot made (every method except `getUpdates`, which is only counted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    /// Position in the record, from 0.
    pub seq: u64,
    /// Wall-clock time of arrival.
    pub at: DateTime<Utc>,
    /// Time since the server started (tokio clock, so paused-time tests see exact values).
    #[serde(with = "crate::faults::millis")]
    pub since_start: Duration,
    /// The method in Telegram's spelling (`sendMessage`), whatever case the bot used.
    pub method: String,
    /// `chat_id`, when numeric.
    pub chat_id: Option<i64>,
    /// Messages the call created (sends) or touched (edits, deletes).
    pub message_ids: Vec<i64>,
    /// `text` or `caption` as sent (markup not parsed).
    pub text: Option<String>,
    /// `parse_mode`.
    pub parse_mode: Option<String>,
    /// `reply_markup`.
    pub reply_markup: Option<Value>,
    /// Files sent.
    pub files: Vec<FileUse>,
    /// The answer, for `answerCallbackQuery`.
    pub callback_answer: Option<CallbackAnswer>,
    /// Every parameter (uploads replaced by `{"upload_bytes": n}`).
    pub params: Value,
    /// How it ended.
    pub outcome: Outcome,
}

impl Call {
    /// The call succeeded.
    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// The `description` of a failed call.
    pub fn error(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Ok => None,
            Outcome::Failed { description, .. } => Some(description),
        }
    }

    /// The first message created or touched.
    pub fn message_id(&self) -> Option<i64> {
        self.message_ids.first().copied()
    }

    /// Bytes of the first uploaded file.
    pub fn upload_len(&self) -> Option<u64> {
        self.files.iter().find_map(|file| match file.source {
            FileSource::Upload { len, .. } => Some(len),
            _ => None,
        })
    }

    /// The `file_id` re-sent, when the first file was sent by id.
    pub fn resent_file_id(&self) -> Option<&str> {
        self.files.iter().find_map(|file| match &file.source {
            FileSource::FileId(id) => Some(id.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_users_are_deterministic_and_varied() {
        assert_eq!(SimUser::generated(3), SimUser::generated(3));
        assert_ne!(SimUser::generated(3).id, SimUser::generated(4).id);
        assert_eq!(SimUser::generated(8).language_code, None);
        assert_eq!(SimUser::generated(4).username, None);
    }

    #[test]
    fn buttons_are_read_from_inline_keyboards_only() {
        let markup =
            json!({"inline_keyboard": [[{"text": "A", "callback_data": "a"}], [{"text": "B", "url": "http://b"}]]});
        let buttons = inline_buttons(Some(&markup));
        assert_eq!(buttons.len(), 2);
        assert_eq!(buttons[0].callback_data.as_deref(), Some("a"));
        assert!(inline_buttons(Some(&json!({"keyboard": [[{"text": "x"}]]}))).is_empty());
    }
}
