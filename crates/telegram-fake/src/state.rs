//! The server's memory: users and chats, messages, files, the update queue, callback queries
//! and the call record, behind one mutex, with a watch channel that ticks on every change.

use crate::config::{FakeConfig, RateLimit};
use crate::faults::FaultSet;
use crate::markup::Entity;
use crate::media;
use crate::model::{Call, ChatMessage, Content, SimUser};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;
use tokio::time::Instant;

/// Shared by the HTTP handlers and the driving handle.
pub(crate) struct Core {
    pub(crate) config: FakeConfig,
    pub(crate) started: Instant,
    pub(crate) http: reqwest::Client,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Core {
    pub(crate) fn new(config: FakeConfig) -> Core {
        let state = State::new(&config);
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Core { started: Instant::now(), http, state: Mutex::new(state), changed: watch::Sender::new(0), config }
    }

    /// The state; a panic elsewhere while it was held does not make it unusable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes long polls and `wait_for` callers.
    pub(crate) fn notify(&self) {
        self.changed.send_modify(|version| *version += 1);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// A stored file.
#[derive(Debug, Clone)]
pub(crate) struct StoredFile {
    pub(crate) file_id: String,
    pub(crate) unique_id: String,
    pub(crate) kind: FileKind,
    pub(crate) bytes: Bytes,
    pub(crate) file_path: String,
    pub(crate) file_name: Option<String>,
    pub(crate) mime_type: Option<String>,
    pub(crate) width: u32,
    pub(crate) height: u32,
}

impl StoredFile {
    pub(crate) fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// The kinds of file the fake stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Photo,
    Document,
    Audio,
}

impl FileKind {
    fn id_prefix(self) -> &'static str {
        match self {
            FileKind::Photo => "AgACAgIAAxkBAAI",
            FileKind::Document => "BQACAgIAAxkBAAI",
            FileKind::Audio => "CQACAgIAAxkBAAI",
        }
    }
}

/// A message with what only the server knows about it.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    pub(crate) message: ChatMessage,
    pub(crate) sender: i64,
    pub(crate) deleted: bool,
    /// For photos: every size, smallest first, the original last.
    pub(crate) photo_sizes: Vec<StoredFile>,
    /// For documents and audio: the file.
    pub(crate) file: Option<StoredFile>,
    pub(crate) audio_duration: u32,
}

#[derive(Debug)]
pub(crate) struct Chat {
    pub(crate) user: SimUser,
    pub(crate) blocked: bool,
    next_message_id: i64,
}

#[derive(Debug)]
pub(crate) struct QueuedUpdate {
    pub(crate) id: i64,
    pub(crate) json: Value,
}

#[derive(Debug)]
pub(crate) struct CallbackQuery {
    pub(crate) created: Instant,
    pub(crate) answered: bool,
}

/// Everything mutable.
pub(crate) struct State {
    pub(crate) bot_user: Value,
    pub(crate) next_update_id: i64,
    pub(crate) queue: VecDeque<QueuedUpdate>,
    pub(crate) allowed_updates: Option<Vec<String>>,
    pub(crate) poll_generation: u64,
    pub(crate) polls: u64,
    pub(crate) webhook_url: Option<String>,
    pub(crate) closing: bool,
    pub(crate) chats: HashMap<i64, Chat>,
    pub(crate) messages: BTreeMap<(i64, i64), StoredMessage>,
    pub(crate) files: HashMap<String, StoredFile>,
    pub(crate) paths: HashMap<String, String>,
    /// Every size of a photo, by the `file_id` of any size.
    photo_sets: HashMap<String, Vec<String>>,
    next_file_seq: u64,
    pub(crate) callbacks: HashMap<String, CallbackQuery>,
    next_callback: u64,
    pub(crate) calls: Vec<Call>,
    pub(crate) faults: FaultSet,
    pub(crate) chat_rate_limit: Option<RateLimit>,
    pub(crate) global_rate_limit: Option<RateLimit>,
    sends_by_chat: HashMap<i64, VecDeque<Instant>>,
    sends_all: VecDeque<Instant>,
    pub(crate) commands: Value,
    pub(crate) rng: StdRng,
}

impl State {
    fn new(config: &FakeConfig) -> State {
        let mut faults = FaultSet::default();
        for rule in &config.faults {
            faults.add(rule.clone());
        }
        State {
            bot_user: json!({
                "id": config.bot_id(),
                "is_bot": true,
                "first_name": config.bot_first_name,
                "username": config.bot_username,
            }),
            next_update_id: config.first_update_id,
            queue: VecDeque::new(),
            allowed_updates: None,
            poll_generation: 0,
            polls: 0,
            webhook_url: None,
            closing: false,
            chats: HashMap::new(),
            messages: BTreeMap::new(),
            files: HashMap::new(),
            paths: HashMap::new(),
            photo_sets: HashMap::new(),
            next_file_seq: 1,
            callbacks: HashMap::new(),
            next_callback: 1,
            calls: Vec::new(),
            faults,
            chat_rate_limit: config.chat_rate_limit,
            global_rate_limit: config.global_rate_limit,
            sends_by_chat: HashMap::new(),
            sends_all: VecDeque::new(),
            commands: json!([]),
            rng: StdRng::seed_from_u64(config.seed),
        }
    }

    // ---- users and chats ----

    /// Registers the user (or refreshes their profile) and returns the chat id.
    pub(crate) fn register(&mut self, user: &SimUser) -> i64 {
        let chat = self.chats.entry(user.id).or_insert_with(|| Chat {
            user: user.clone(),
            blocked: false,
            next_message_id: 1,
        });
        chat.user = user.clone();
        user.id
    }

    pub(crate) fn next_message_id(&mut self, chat_id: i64) -> i64 {
        match self.chats.get_mut(&chat_id) {
            Some(chat) => {
                let id = chat.next_message_id;
                chat.next_message_id += 1;
                id
            }
            None => 0,
        }
    }

    // ---- updates ----

    /// Queues an update (unless `allowed_updates` excludes its kind) and returns its id.
    pub(crate) fn push_update(&mut self, kind: &str, payload: Value) -> i64 {
        let id = self.next_update_id;
        self.next_update_id += 1;
        let mut json = json!({"update_id": id});
        json[kind] = payload;
        self.push_raw(id, kind, json);
        id
    }

    pub(crate) fn push_raw(&mut self, id: i64, kind: &str, json: Value) {
        if !self.update_allowed(kind) {
            return;
        }
        self.queue.push_back(QueuedUpdate { id, json });
    }

    fn update_allowed(&self, kind: &str) -> bool {
        // Without a list (or with an empty one) Telegram sends everything except these three.
        const OPT_IN: [&str; 3] = ["chat_member", "message_reaction", "message_reaction_count"];
        match &self.allowed_updates {
            Some(list) if !list.is_empty() => list.iter().any(|allowed| allowed == kind),
            _ => !OPT_IN.contains(&kind),
        }
    }

    /// Applies a `getUpdates` offset: confirms earlier updates (or keeps only the last `-offset`).
    pub(crate) fn confirm(&mut self, offset: i64) {
        if offset > 0 {
            self.queue.retain(|update| update.id >= offset);
        } else if offset < 0 {
            let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
            while self.queue.len() > keep {
                self.queue.pop_front();
            }
        }
    }

    pub(crate) fn pending(&self, limit: usize) -> Vec<Value> {
        self.queue.iter().take(limit).map(|update| update.json.clone()).collect()
    }

    // ---- messages ----

    pub(crate) fn store_message(&mut self, stored: StoredMessage) {
        let key = (stored.message.chat_id, stored.message.message_id);
        self.messages.insert(key, stored);
    }

    pub(crate) fn live_message(&self, chat_id: i64, message_id: i64) -> Option<&StoredMessage> {
        self.messages.get(&(chat_id, message_id)).filter(|m| !m.deleted)
    }

    /// The Bot API `Message` object (with one level of `reply_to_message`, as Telegram sends).
    pub(crate) fn message_json(&self, stored: &StoredMessage, with_reply: bool) -> Value {
        let message = &stored.message;
        let chat = self.chats.get(&message.chat_id);
        let from = if message.from_bot {
            self.bot_user.clone()
        } else {
            chat.map(|c| c.user.to_json())
                .unwrap_or_else(|| json!({"id": stored.sender, "is_bot": false, "first_name": "?"}))
        };
        let chat_json =
            chat.map(|c| c.user.chat_json()).unwrap_or_else(|| json!({"id": message.chat_id, "type": "private"}));
        let mut json = json!({
            "message_id": message.message_id,
            "from": from,
            "chat": chat_json,
            "date": message.date.timestamp(),
        });
        let entities = serde_json::to_value(&message.entities).unwrap_or_else(|_| json!([]));
        match &message.content {
            Content::Text => {
                json["text"] = json!(message.text());
                if !message.entities.is_empty() {
                    json["entities"] = entities;
                }
            }
            media => {
                match media {
                    Content::Photo { .. } => {
                        json["photo"] = Value::Array(stored.photo_sizes.iter().map(photo_size_json).collect());
                    }
                    Content::Document { .. } => {
                        if let Some(file) = &stored.file {
                            json["document"] = document_json(file);
                        }
                    }
                    Content::Audio { .. } => {
                        if let Some(file) = &stored.file {
                            let mut audio = document_json(file);
                            audio["duration"] = json!(stored.audio_duration);
                            json["audio"] = audio;
                        }
                    }
                    Content::Text => {}
                }
                if let Some(caption) = &message.text {
                    json["caption"] = json!(caption);
                    if !message.entities.is_empty() {
                        json["caption_entities"] = entities;
                    }
                }
            }
        }
        if let Some(group) = &message.media_group_id {
            json["media_group_id"] = json!(group);
        }
        if let Some(edited) = message.edit_date {
            json["edit_date"] = json!(edited.timestamp());
        }
        // Messages only ever carry inline keyboards; reply keyboards belong to the chat.
        if let Some(markup) = message.reply_markup.as_ref().filter(|m| m.get("inline_keyboard").is_some()) {
            json["reply_markup"] = markup.clone();
        }
        if with_reply
            && let Some(reply_to) = message.reply_to
            && let Some(original) = self.live_message(message.chat_id, reply_to)
        {
            json["reply_to_message"] = self.message_json(original, false);
        }
        json
    }

    /// The chat's live messages in order, optionally only the bot's.
    pub(crate) fn chat_messages(&self, chat_id: i64, bot_only: bool) -> Vec<ChatMessage> {
        self.messages
            .range((chat_id, i64::MIN)..=(chat_id, i64::MAX))
            .map(|(_, stored)| stored)
            .filter(|stored| !stored.deleted && (!bot_only || stored.message.from_bot))
            .map(|stored| stored.message.clone())
            .collect()
    }

    // ---- files ----

    /// Stores bytes as a new file with a fresh `file_id` and `file_path`.
    pub(crate) fn store_file(
        &mut self,
        kind: FileKind,
        bytes: Bytes,
        file_name: Option<String>,
        mime_type: Option<String>,
        dimensions: (u32, u32),
    ) -> StoredFile {
        let seq = self.next_file_seq;
        self.next_file_seq += 1;
        let file_path = match kind {
            FileKind::Photo => format!("photos/file_{seq}.{}", media::photo_extension(&bytes)),
            FileKind::Document => {
                let ext = file_name.as_deref().and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_owned());
                format!("documents/file_{seq}{}", ext.map(|e| format!(".{e}")).unwrap_or_default())
            }
            FileKind::Audio => format!("music/file_{seq}.mp3"),
        };
        let file = StoredFile {
            file_id: media::new_file_id(kind.id_prefix(), &mut self.rng),
            unique_id: media::unique_id(&bytes),
            kind,
            bytes,
            file_path: file_path.clone(),
            file_name,
            mime_type,
            width: dimensions.0,
            height: dimensions.1,
        };
        self.paths.insert(file_path, file.file_id.clone());
        self.files.insert(file.file_id.clone(), file.clone());
        file
    }

    /// Stores a photo with Telegram-style smaller sizes first; returns every size.
    pub(crate) fn store_photo(&mut self, bytes: Bytes) -> Vec<StoredFile> {
        let (width, height) = media::image_dimensions(&bytes).unwrap_or((512, 512));
        let mut sizes: Vec<StoredFile> = media::thumbnail_sizes(width, height)
            .into_iter()
            .map(|dims| self.store_file(FileKind::Photo, bytes.clone(), None, None, dims))
            .collect();
        let original = self.store_file(FileKind::Photo, bytes.clone(), None, None, (width, height));
        // Every size of one upload shares the content, so they share file_unique_id in the fake.
        sizes.push(original);
        let ids: Vec<String> = sizes.iter().map(|f| f.file_id.clone()).collect();
        for id in &ids {
            self.photo_sets.insert(id.clone(), ids.clone());
        }
        sizes
    }

    /// The sizes of an already stored photo, given the `file_id` of any of them.
    pub(crate) fn photo_sizes_of(&self, file_id: &str) -> Option<Vec<StoredFile>> {
        let ids = self.photo_sets.get(file_id)?;
        Some(ids.iter().filter_map(|id| self.files.get(id).cloned()).collect())
    }

    // ---- callback queries ----

    pub(crate) fn new_callback_query(&mut self, now: Instant) -> String {
        // Telegram's query ids are long decimal strings.
        let id = (4_611_686_018_427_387_904u64 + self.next_callback * 7_919).to_string();
        self.next_callback += 1;
        self.callbacks.insert(id.clone(), CallbackQuery { created: now, answered: false });
        id
    }

    // ---- flood control ----

    /// Checks flood control for `count` messages to `chat_id`; on success counts them as sent.
    /// Returns the `retry_after` seconds when over a limit.
    pub(crate) fn take_send_slots(&mut self, chat_id: i64, count: usize, now: Instant) -> Result<(), u32> {
        let per_chat = self.chat_rate_limit;
        let global = self.global_rate_limit;
        let chat_sends = self.sends_by_chat.entry(chat_id).or_default();
        if let Some(limit) = per_chat {
            check_window(chat_sends, limit, count, now)?;
        }
        if let Some(limit) = global {
            check_window(&mut self.sends_all, limit, count, now)?;
        }
        for _ in 0..count {
            if per_chat.is_some() {
                chat_sends.push_back(now);
            }
            if global.is_some() {
                self.sends_all.push_back(now);
            }
        }
        Ok(())
    }

    pub(crate) fn record(&mut self, mut call: Call) {
        call.seq = self.calls.len() as u64;
        self.calls.push(call);
    }
}

fn check_window(sends: &mut VecDeque<Instant>, limit: RateLimit, count: usize, now: Instant) -> Result<(), u32> {
    while sends.front().is_some_and(|&at| now.duration_since(at) >= limit.window) {
        sends.pop_front();
    }
    let max = limit.max_messages as usize;
    if sends.len() + count <= max {
        return Ok(());
    }
    // The wait until enough old sends leave the window, in whole seconds, at least 1.
    let index = (sends.len() + count).saturating_sub(max + 1).min(sends.len().saturating_sub(1));
    let wait = sends.get(index).map(|&at| limit.window.saturating_sub(now.duration_since(at))).unwrap_or(limit.window);
    Err(u32::try_from(wait.as_secs_f64().ceil() as u64).unwrap_or(u32::MAX).max(1))
}

pub(crate) fn photo_size_json(file: &StoredFile) -> Value {
    json!({
        "file_id": file.file_id,
        "file_unique_id": file.unique_id,
        "file_size": file.size(),
        "width": file.width,
        "height": file.height,
    })
}

fn document_json(file: &StoredFile) -> Value {
    let mut json = json!({"file_id": file.file_id, "file_unique_id": file.unique_id, "file_size": file.size()});
    if let Some(name) = &file.file_name {
        json["file_name"] = json!(name);
    }
    if let Some(mime) = &file.mime_type {
        json["mime_type"] = json!(mime);
    }
    json
}

/// A new message as the user sees it, before it is stored.
pub(crate) fn new_message(chat_id: i64, message_id: i64, from_bot: bool, date: DateTime<Utc>) -> ChatMessage {
    ChatMessage {
        chat_id,
        message_id,
        from_bot,
        date,
        content: Content::Text,
        text: None,
        entities: Vec::<Entity>::new(),
        parse_mode: None,
        reply_markup: None,
        reply_to: None,
        media_group_id: None,
        edit_count: 0,
        edit_date: None,
    }
}

/// The `Content` a set of photo sizes shows (the original, last).
pub(crate) fn photo_content(sizes: &[StoredFile]) -> Content {
    let original = sizes.last();
    Content::Photo {
        file_id: original.map(|f| f.file_id.clone()).unwrap_or_default(),
        width: original.map_or(0, |f| f.width),
        height: original.map_or(0, |f| f.height),
        file_size: original.map_or(0, StoredFile::size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn window_answers_retry_after_until_a_slot_frees() {
        let limit = RateLimit { max_messages: 1, window: Duration::from_secs(3) };
        let mut sends = VecDeque::new();
        let start = Instant::now();
        assert_eq!(check_window(&mut sends, limit, 1, start), Ok(()));
        sends.push_back(start);
        assert_eq!(check_window(&mut sends, limit, 1, start + Duration::from_millis(500)), Err(3));
        assert_eq!(check_window(&mut sends, limit, 1, start + Duration::from_millis(2500)), Err(1));
        assert_eq!(check_window(&mut sends, limit, 1, start + Duration::from_secs(3)), Ok(()));
    }

    #[test]
    fn negative_offsets_keep_the_tail() {
        let mut state = State::new(&FakeConfig::default());
        for _ in 0..5 {
            state.push_update("message", json!({}));
        }
        state.confirm(-2);
        assert_eq!(state.queue.len(), 2);
        let last = state.queue.back().unwrap().id;
        state.confirm(last + 1);
        assert!(state.queue.is_empty());
    }

    #[test]
    fn allowed_updates_filter_new_updates() {
        let mut state = State::new(&FakeConfig::default());
        state.push_update("message_reaction", json!({}));
        assert!(state.queue.is_empty(), "opt-in kinds are not sent by default");
        state.allowed_updates = Some(vec!["callback_query".into()]);
        state.push_update("message", json!({}));
        state.push_update("callback_query", json!({}));
        assert_eq!(state.queue.len(), 1);
    }
}
