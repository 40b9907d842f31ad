//! The messaging port over teloxide.

use crate::TelegramBot;
use crate::command::ButtonAction;
use crate::texts::{Button, render_notice, strings};
use async_trait::async_trait;
use futures::StreamExt;
use mediagen_domain::insights::OperatorSummary;
use mediagen_domain::{ChatId, JobId, Language, MediaRef};
use mediagen_ports::{
    DeliveredMedia, MediaBytes, MessageRef, Messaging, MessagingError, OperatorAlert, Recipient, ResultMedia, Severity,
    UserNotice,
};
use std::time::Duration;
use teloxide::net::Download;
use teloxide::prelude::*;
use teloxide::types::{
    CallbackQueryId, FileId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MessageId, ReplyMarkup,
};
use teloxide::{ApiError, RequestError};

/// Telegram refuses photos above 10 MB; larger results go out as documents.
const PHOTO_LIMIT_BYTES: usize = 10 * 1024 * 1024;
/// Telegram's limit for a bot's uploads.
const DOCUMENT_LIMIT_BYTES: usize = 50 * 1024 * 1024;
/// Back-offs (429 with `retry_after`) waited out for one message of a result before the
/// error goes to the engine. Waiting here, per message, means an album or its follow-up
/// that hits flood control mid-way does not make the engine send the earlier items again.
/// The throttle paces sends but leaves its retry off (see [`crate::throttled`]), so a 429
/// still arrives here.
const SEND_BACKOFFS: u32 = 10;
/// How long a result's message may wait in the throttle's queue before its upload starts:
/// one minute, the window of Telegram's per-chat limit.
const QUEUE_ALLOWANCE: Duration = Duration::from_secs(60);

/// Sends the engine's messages through the Bot API.
#[derive(Clone)]
pub struct TelegramMessaging {
    bot: TelegramBot,
    operator_chats: Vec<ChatId>,
}

impl TelegramMessaging {
    /// A messenger that alerts `operator_chats`.
    pub fn new(bot: TelegramBot, operator_chats: Vec<ChatId>) -> Self {
        Self { bot, operator_chats }
    }

    /// Sends `reply` to every operator chat; an error only when none was reached.
    async fn to_operators(&self, reply: &crate::admin::AdminReply, what: &str) -> Result<(), MessagingError> {
        let mut reached = 0;
        let mut last_error = None;
        for chat in &self.operator_chats {
            match crate::admin::send(&self.bot, *chat, reply.clone()).await {
                Ok(()) => reached += 1,
                Err(error) => {
                    tracing::warn!(chat = %chat, error = %error, "{what} not delivered");
                    last_error = Some(error);
                }
            }
        }
        match (reached, last_error) {
            (0, Some(error)) => Err(classify(error)),
            (0, None) => Err(MessagingError::Other(anyhow::anyhow!("no operator chat is configured"))),
            _ => Ok(()),
        }
    }
}

/// The buttons under a delivered result.
pub(crate) fn result_keyboard(language: Language, job: JobId) -> InlineKeyboardMarkup {
    let s = strings(language);
    InlineKeyboardMarkup::new([[
        InlineKeyboardButton::callback(s.button(Button::Again), ButtonAction::Again(job).encode()),
        InlineKeyboardButton::callback(s.button(Button::Variations), ButtonAction::Variations(job).encode()),
        InlineKeyboardButton::callback(s.button(Button::Edit), ButtonAction::Edit(job).encode()),
    ]])
}

/// The button under a queued job's progress message.
fn progress_keyboard(language: Language, notice: &UserNotice) -> Option<InlineKeyboardMarkup> {
    match notice {
        UserNotice::Queued { job, .. } => Some(InlineKeyboardMarkup::new([[InlineKeyboardButton::callback(
            strings(language).button(Button::Cancel),
            ButtonAction::Cancel(*job).encode(),
        )]])),
        _ => None,
    }
}

/// The mark in front of an operator alert.
fn severity_icon(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "ℹ️",
        Severity::Warning => "⚠️",
        Severity::Critical => "🚨",
    }
}

/// The slowest upload rate still waited for (bytes per second): a 10 MB picture gets about
/// 80 s on top of the fixed allowance.
const SLOWEST_UPLOAD_BYTES_PER_SEC: usize = 128 * 1024;

/// How long sending a file of `size` bytes may take in all: the upload at the slowest rate
/// still waited for, plus Telegram's answer (the client's read timeout) and a margin. The
/// read timeout fires first when the file went out but no answer came, so a timeout here
/// means the file never fully reached Telegram.
fn upload_allowance(size: usize) -> Duration {
    let upload = Duration::from_secs((size / SLOWEST_UPLOAD_BYTES_PER_SEC) as u64);
    Duration::from_secs(60) + upload
}

/// Maps teloxide's errors onto the port's, so the engine never sees a teloxide type.
pub(crate) fn classify(error: RequestError) -> MessagingError {
    match error {
        RequestError::RetryAfter(seconds) => MessagingError::RateLimited { retry_after_secs: seconds.seconds() },
        RequestError::Api(
            ApiError::MessageNotModified | ApiError::MessageToEditNotFound | ApiError::MessageIdInvalid,
        ) => MessagingError::NotModified,
        RequestError::Api(
            api @ (ApiError::BotBlocked
            | ApiError::ChatNotFound
            | ApiError::UserDeactivated
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::CantInitiateConversation),
        ) => MessagingError::ChatUnavailable(api.to_string()),
        RequestError::Api(ApiError::RequestEntityTooLarge) => MessagingError::TooLarge(0),
        // Timed out after the request went out: Telegram may have carried it out.
        RequestError::Network(error) if error.is_timeout() && !error.is_connect() => {
            MessagingError::Unconfirmed(error.to_string())
        }
        other => MessagingError::Other(anyhow::anyhow!("{other}")),
    }
}

fn message_ref(message: &Message) -> MessageRef {
    MessageRef { chat: ChatId(message.chat.id.0), message_id: i64::from(message.id.0) }
}

/// The file id Telegram assigned to what a message carries (largest photo size).
fn file_id_of(message: &Message) -> Option<String> {
    if let Some(photos) = message.photo() {
        return photos.iter().max_by_key(|p| p.width * p.height).map(|p| p.file.id.0.clone());
    }
    if let Some(document) = message.document() {
        return Some(document.file.id.0.clone());
    }
    message.audio().map(|audio| audio.file.id.0.clone())
}

/// Sniffs the image type from magic bytes; Telegram's own metadata is not trusted.
pub(crate) fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G']) {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

impl TelegramMessaging {
    async fn send_one(
        &self,
        chat: teloxide::types::ChatId,
        media: ResultMedia,
        as_file: bool,
    ) -> Result<Message, RequestError> {
        match media {
            ResultMedia::Stored(MediaRef { file_id, .. }) => {
                let file = InputFile::file_id(FileId(file_id));
                if as_file { self.bot.send_document(chat, file).await } else { self.bot.send_photo(chat, file).await }
            }
            ResultMedia::Bytes(MediaBytes { bytes, content_type, file_name }) => {
                let too_big_for_photo = bytes.len() > PHOTO_LIMIT_BYTES;
                let file = InputFile::memory(bytes).file_name(file_name);
                if content_type.starts_with("audio/") {
                    self.bot.send_audio(chat, file).await
                } else if as_file || too_big_for_photo || !content_type.starts_with("image/") {
                    self.bot.send_document(chat, file).await
                } else {
                    self.bot.send_photo(chat, file).await
                }
            }
        }
    }
}

#[async_trait]
impl Messaging for TelegramMessaging {
    async fn send_notice(&self, to: Recipient, notice: &UserNotice) -> Result<MessageRef, MessagingError> {
        let text = render_notice(to.language, notice);
        let mut request = self.bot.send_message(teloxide::types::ChatId(to.chat.0), text);
        if let Some(keyboard) = progress_keyboard(to.language, notice) {
            request = request.reply_markup(ReplyMarkup::InlineKeyboard(keyboard));
        }
        let message = request.await.map_err(classify)?;
        Ok(message_ref(&message))
    }

    async fn edit_notice(
        &self,
        message: &MessageRef,
        language: Language,
        notice: &UserNotice,
    ) -> Result<(), MessagingError> {
        let id = i32::try_from(message.message_id).map_err(|_| MessagingError::NotModified)?;
        let mut request = self.bot.edit_message_text(
            teloxide::types::ChatId(message.chat.0),
            MessageId(id),
            render_notice(language, notice),
        );
        if let Some(keyboard) = progress_keyboard(language, notice) {
            request = request.reply_markup(keyboard);
        }
        request.await.map(|_| ()).map_err(classify)
    }

    async fn send_results(
        &self,
        to: Recipient,
        job: JobId,
        media: Vec<ResultMedia>,
        as_file: bool,
    ) -> Result<Vec<DeliveredMedia>, MessagingError> {
        let chat = teloxide::types::ChatId(to.chat.0);
        let mut delivered = Vec::with_capacity(media.len());
        for item in media {
            if let ResultMedia::Bytes(bytes) = &item
                && bytes.bytes.len() > DOCUMENT_LIMIT_BYTES
            {
                return Err(MessagingError::TooLarge(bytes.bytes.len() as u64));
            }
            let size = match &item {
                ResultMedia::Bytes(bytes) => bytes.bytes.len(),
                ResultMedia::Stored(_) => 0,
            };
            let allowed = QUEUE_ALLOWANCE + upload_allowance(size);
            let mut backoffs = 0;
            let message = loop {
                let Ok(sent) = tokio::time::timeout(allowed, self.send_one(chat, item.clone(), as_file)).await else {
                    // Still queued or uploading at the deadline: Telegram never had the whole
                    // file, so sending it again shows no duplicate (unlike a lost answer,
                    // `Unconfirmed`). A request dropped while queued is never sent.
                    return Err(MessagingError::Other(anyhow::anyhow!(
                        "the upload of {size} bytes did not finish within {} s",
                        allowed.as_secs()
                    )));
                };
                match sent {
                    Err(RequestError::RetryAfter(wait)) if backoffs < SEND_BACKOFFS => {
                        backoffs += 1;
                        tokio::time::sleep(wait.duration()).await;
                    }
                    other => break other.map_err(classify)?,
                }
            };
            if let Some(file_id) = file_id_of(&message) {
                delivered.push(DeliveredMedia { message: message_ref(&message), file_id });
            }
        }
        // Buttons go on a short follow-up so they sit under the whole album.
        // The pictures are out: a follow-up that cannot be sent is not worth sending them again.
        if !delivered.is_empty() {
            let keyboard = ReplyMarkup::InlineKeyboard(result_keyboard(to.language, job));
            for _ in 0..SEND_BACKOFFS {
                match self.bot.send_message(chat, "⬆️").reply_markup(keyboard.clone()).await {
                    Err(RequestError::RetryAfter(wait)) => tokio::time::sleep(wait.duration()).await,
                    Err(error) => {
                        tracing::warn!(%error, "the buttons under a result were not sent");
                        break;
                    }
                    Ok(_) => break,
                }
            }
        }
        Ok(delivered)
    }

    async fn answer_button(&self, callback_id: &str, text: Option<String>) -> Result<(), MessagingError> {
        let mut request = self.bot.answer_callback_query(CallbackQueryId(callback_id.to_owned()));
        if let Some(text) = text {
            request = request.text(text);
        }
        request.await.map(|_| ()).map_err(classify)
    }

    async fn notify_operators(&self, alert: &OperatorAlert) -> Result<(), MessagingError> {
        let text = format!("{} {}\n\n{}", severity_icon(alert.severity), alert.title, alert.body);
        self.to_operators(&crate::admin::AdminReply { text, file: None }, "operator alert").await
    }

    async fn notify_operators_summary(&self, summary: &OperatorSummary) -> Result<(), MessagingError> {
        let rendered = crate::insights::summary(&summary.report);
        if let Some((file, _)) = &rendered.file
            && file.bytes.len() > DOCUMENT_LIMIT_BYTES
        {
            return Err(MessagingError::TooLarge(file.bytes.len() as u64));
        }
        let text = format!("{} {}\n\n{}", severity_icon(Severity::Info), summary.title, rendered.text);
        let file = rendered.file.map(|(file, _)| (file, summary.title.clone()));
        self.to_operators(&crate::admin::AdminReply { text, file }, "operator report").await
    }

    async fn fetch_input(&self, media: &MediaRef, max_bytes: u64) -> Result<MediaBytes, MessagingError> {
        if let Some(size) = media.size_bytes
            && size > max_bytes
        {
            return Err(MessagingError::TooLarge(size));
        }
        let file = self.bot.get_file(FileId(media.file_id.clone())).await.map_err(classify)?;
        if u64::from(file.size) > max_bytes {
            return Err(MessagingError::TooLarge(u64::from(file.size)));
        }
        // Streamed with a running count, so a lying size cannot make us buffer more than the cap.
        let mut stream = self.bot.download_file_stream(&file.path);
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| MessagingError::Other(anyhow::anyhow!("download failed: {e}")))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > max_bytes {
                return Err(MessagingError::TooLarge(bytes.len() as u64));
            }
        }
        let content_type = sniff_image(&bytes)
            .ok_or_else(|| MessagingError::Other(anyhow::anyhow!("the file is not a PNG, JPEG or WebP image")))?;
        let extension = content_type.trim_start_matches("image/");
        Ok(MediaBytes { bytes, content_type: content_type.to_owned(), file_name: format!("input.{extension}") })
    }
}

#[cfg(test)]
mod upload_tests {
    use super::*;

    #[test]
    fn an_upload_gets_time_for_its_size_and_the_answer_comes_first() {
        assert!(upload_allowance(0) > crate::READ_TIMEOUT, "a lost answer is seen before the upload deadline");
        let ten_megabytes = upload_allowance(10 * 1024 * 1024);
        assert_eq!(ten_megabytes, Duration::from_secs(60 + 80));
        assert!(upload_allowance(50 * 1024 * 1024) > Duration::from_secs(400), "a 50 MB document waits its upload");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_common_images_and_refuses_the_rest() {
        assert_eq!(sniff_image(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A]), Some("image/png"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(sniff_image(b"%PDF-1.7"), None);
        assert_eq!(sniff_image(b""), None);
    }

    #[test]
    fn classifies_teloxide_errors() {
        let retry = classify(RequestError::RetryAfter(teloxide::types::Seconds::from_seconds(3)));
        assert!(matches!(retry, MessagingError::RateLimited { retry_after_secs: 3 }));
        assert!(matches!(classify(RequestError::Api(ApiError::MessageNotModified)), MessagingError::NotModified));
        assert!(matches!(classify(RequestError::Api(ApiError::BotBlocked)), MessagingError::ChatUnavailable(_)));
    }
}
