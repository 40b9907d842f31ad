//! [`FakeTelegram`]: the handle a test or the demo drives the fake with.

use crate::config::RateLimit;
use crate::error::{Error, Result};
use crate::faults::FaultRule;
use crate::markup;
use crate::model::{Call, ChatMessage, Pressed, Sent, SimUser, inline_buttons};
use crate::state::{Core, FileKind, State, StoredMessage, new_message, photo_content};
use bytes::Bytes;
use chrono::Utc;
use rand::Rng;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A running fake Bot API server. Cheap to clone; the server stops when the last clone is
/// dropped (or at [`shutdown`](FakeTelegram::shutdown)).
#[derive(Clone)]
pub struct FakeTelegram {
    core: Arc<Core>,
    addr: SocketAddr,
    /// `None` in the copy the `/_fake` routes hold, so the server does not keep itself alive.
    server: Option<Arc<Server>>,
}

struct Server {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTelegram").field("addr", &self.addr).field("token", &"[redacted]").finish()
    }
}

/// A read-only look at the server's record, handed to [`FakeTelegram::wait_for`] predicates.
pub struct View<'a> {
    state: &'a State,
}

impl View<'_> {
    /// Every recorded call, oldest first.
    pub fn calls(&self) -> &[Call] {
        &self.state.calls
    }

    /// The recorded calls of one method (any case).
    pub fn calls_of(&self, method: &str) -> Vec<&Call> {
        self.state.calls.iter().filter(|c| c.method.eq_ignore_ascii_case(method)).collect()
    }

    /// The bot's visible messages in a chat, edits applied, deleted ones gone.
    pub fn messages_to(&self, chat_id: i64) -> Vec<ChatMessage> {
        self.state.chat_messages(chat_id, true)
    }

    /// Both sides of a chat, in order.
    pub fn transcript(&self, chat_id: i64) -> Vec<ChatMessage> {
        self.state.chat_messages(chat_id, false)
    }

    /// Updates not yet confirmed by the bot.
    pub fn pending_updates(&self) -> usize {
        self.state.queue.len()
    }

    /// `getUpdates` calls so far.
    pub fn polls(&self) -> u64 {
        self.state.polls
    }
}

impl FakeTelegram {
    /// A handle without the server's lifetime attached (for the server's own routes).
    pub(crate) fn detached(core: Arc<Core>, addr: SocketAddr) -> Self {
        FakeTelegram { core, addr, server: None }
    }

    /// The handle that owns the running server.
    pub(crate) fn owning(self, stop: oneshot::Sender<()>, task: JoinHandle<()>) -> Self {
        let server = Server { stop: Mutex::new(Some(stop)), task: Mutex::new(Some(task)) };
        FakeTelegram { server: Some(Arc::new(server)), ..self }
    }

    fn core(&self) -> &Core {
        &self.core
    }

    /// Runs `f` on the state, then wakes long polls and waiters.
    fn mutate<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let result = f(&mut self.core().lock());
        self.core().notify();
        result
    }

    // ---- identity ----

    /// The base URL to give teloxide: `Bot::new(fake.token()).set_api_url(fake.api_url())`.
    pub fn api_url(&self) -> reqwest::Url {
        reqwest::Url::parse(&self.base_url()).expect("an http URL of a socket address always parses")
    }

    /// The base URL as text, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The one token the server accepts.
    pub fn token(&self) -> &str {
        &self.core().config.token
    }

    /// The bot's user id (the number before the token's `:`).
    pub fn bot_id(&self) -> i64 {
        self.core().config.bot_id()
    }

    /// The bot's username.
    pub fn bot_username(&self) -> &str {
        &self.core().config.bot_username
    }

    // ---- users ----

    /// Registers a user (so the bot may write to them before they write) or updates their profile.
    pub fn add_user(&self, user: &SimUser) {
        self.mutate(|state| state.register(user));
    }

    /// A registered user.
    pub fn user(&self, id: i64) -> Option<SimUser> {
        self.core().lock().chats.get(&id).map(|chat| chat.user.clone())
    }

    /// Registers `count` generated users ([`SimUser::generated`] 0..count) and returns them.
    pub fn add_crowd(&self, count: u32) -> Vec<SimUser> {
        let users: Vec<SimUser> = (0..count).map(SimUser::generated).collect();
        self.mutate(|state| users.iter().for_each(|user| _ = state.register(user)));
        users
    }

    /// Makes the user block (or unblock) the bot: sends to them then fail with
    /// `403 Forbidden: bot was blocked by the user`.
    pub fn set_blocked(&self, user: &SimUser, blocked: bool) {
        self.mutate(|state| {
            state.register(user);
            if let Some(chat) = state.chats.get_mut(&user.id) {
                chat.blocked = blocked;
            }
        });
    }

    // ---- what users do ----

    /// The user sends a text message.
    pub fn send_text(&self, user: &SimUser, text: &str) -> Sent {
        self.mutate(|state| {
            user_message(state, user, |_, stored| {
                stored.message.text = Some(text.to_owned());
                stored.message.entities = markup::auto_entities(text);
            })
        })
    }

    /// The user sends `/command args` (`command` without the slash; `args` may be empty).
    pub fn send_command(&self, user: &SimUser, command: &str, args: &str) -> Sent {
        let command = command.trim_start_matches('/');
        let text = if args.is_empty() { format!("/{command}") } else { format!("/{command} {args}") };
        self.send_text(user, &text)
    }

    /// The user replies to a message of their chat with a text.
    ///
    /// # Errors
    /// [`Error::MessageNotFound`] when the chat has no such (live) message.
    pub fn reply_to(&self, user: &SimUser, message_id: i64, text: &str) -> Result<Sent> {
        self.mutate(|state| {
            if state.live_message(user.id, message_id).is_none() {
                return Err(Error::MessageNotFound { chat_id: user.id, message_id });
            }
            Ok(user_message(state, user, |_, stored| {
                stored.message.text = Some(text.to_owned());
                stored.message.entities = markup::auto_entities(text);
                stored.message.reply_to = Some(message_id);
            }))
        })
    }

    /// The user sends a picture; it arrives as a `photo` array of sizes (smallest first), and
    /// `getFile` plus the file URL serve the exact bytes.
    pub fn send_photo(&self, user: &SimUser, bytes: impl Into<Bytes>, caption: Option<&str>) -> Sent {
        let bytes = bytes.into();
        self.mutate(|state| {
            user_message(state, user, |state, stored| {
                let sizes = state.store_photo(bytes);
                stored.message.content = photo_content(&sizes);
                stored.photo_sizes = sizes;
                stored.message.text = caption.map(str::to_owned);
            })
        })
    }

    /// The user sends 2 to 10 pictures as one album: one message each, sharing a
    /// `media_group_id`, the caption on the first, as Telegram delivers albums.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for fewer than 2 or more than 10 pictures.
    pub fn send_album(&self, user: &SimUser, photos: Vec<Bytes>, caption: Option<&str>) -> Result<Vec<Sent>> {
        if !(2..=10).contains(&photos.len()) {
            return Err(Error::InvalidInput(format!("an album has 2 to 10 items, got {}", photos.len())));
        }
        Ok(self.mutate(|state| {
            let group = state.rng.random_range(10_000_000_000_000_000u64..100_000_000_000_000_000).to_string();
            photos
                .into_iter()
                .enumerate()
                .map(|(index, bytes)| {
                    user_message(state, user, |state, stored| {
                        let sizes = state.store_photo(bytes);
                        stored.message.content = photo_content(&sizes);
                        stored.photo_sizes = sizes;
                        stored.message.media_group_id = Some(group.clone());
                        if index == 0 {
                            stored.message.text = caption.map(str::to_owned);
                        }
                    })
                })
                .collect()
        }))
    }

    /// The user sends a file as a document.
    pub fn send_document(&self, user: &SimUser, bytes: impl Into<Bytes>, file_name: &str, mime_type: &str) -> Sent {
        let bytes = bytes.into();
        self.mutate(|state| {
            user_message(state, user, |state, stored| {
                let file = state.store_file(
                    FileKind::Document,
                    bytes,
                    Some(file_name.to_owned()),
                    Some(mime_type.to_owned()),
                    (0, 0),
                );
                stored.message.content = crate::model::Content::Document {
                    file_id: file.file_id.clone(),
                    file_name: file.file_name.clone(),
                    mime_type: file.mime_type.clone(),
                    file_size: file.size(),
                };
                stored.file = Some(file);
            })
        })
    }

    /// The user presses the inline button with this `callback_data` under a bot message.
    ///
    /// # Errors
    /// [`Error::MessageNotFound`] without such a message in the user's chat;
    /// [`Error::ButtonNotFound`] when its inline keyboard has no button with that data.
    pub fn press_button(&self, user: &SimUser, message_id: i64, callback_data: &str) -> Result<Pressed> {
        self.mutate(|state| {
            let stored = state
                .live_message(user.id, message_id)
                .ok_or(Error::MessageNotFound { chat_id: user.id, message_id })?;
            let has_button = inline_buttons(stored.message.reply_markup.as_ref())
                .iter()
                .any(|b| b.callback_data.as_deref() == Some(callback_data));
            if !has_button {
                return Err(Error::ButtonNotFound { message_id, data: callback_data.to_owned() });
            }
            let message = state.message_json(stored, true);
            state.register(user);
            let query_id = state.new_callback_query(Instant::now());
            let update_id = state.push_update(
                "callback_query",
                json!({
                    "id": query_id,
                    "from": user.to_json(),
                    "message": message,
                    "chat_instance": format!("{}", 5_000_000_000_000_000_000u64.wrapping_add(user.id.unsigned_abs())),
                    "data": callback_data,
                }),
            );
            Ok(Pressed { update_id, query_id })
        })
    }

    /// The user presses the inline button labelled `label` (its `callback_data` is looked up).
    ///
    /// # Errors
    /// As [`press_button`](Self::press_button); [`Error::ButtonNotFound`] names the label.
    pub fn press_button_labelled(&self, user: &SimUser, message_id: i64, label: &str) -> Result<Pressed> {
        let data = {
            let state = self.core().lock();
            let stored = state
                .live_message(user.id, message_id)
                .ok_or(Error::MessageNotFound { chat_id: user.id, message_id })?;
            stored.message.callback_data_for(label)
        };
        let data = data.ok_or_else(|| Error::ButtonNotFound { message_id, data: label.to_owned() })?;
        self.press_button(user, message_id, &data)
    }

    /// Queues any update object as is (for malformed or hostile input); its `update_id` is
    /// set to the next id, which is returned.
    pub fn push_update(&self, mut update: Map<String, Value>) -> i64 {
        self.mutate(|state| {
            let id = state.next_update_id;
            state.next_update_id += 1;
            update.insert("update_id".to_owned(), json!(id));
            let kind = update.keys().find(|k| *k != "update_id").cloned().unwrap_or_default();
            state.push_raw(id, &kind, Value::Object(update));
            id
        })
    }

    // ---- faults ----

    /// Adds a fault rule.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the rule is unusable (see [`FaultRule::validate`]).
    pub fn add_fault(&self, rule: FaultRule) -> Result<()> {
        rule.validate().map_err(Error::InvalidConfig)?;
        self.mutate(|state| state.faults.add(rule));
        Ok(())
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.mutate(|state| state.faults.clear());
    }

    /// The live fault rules (spent `Next(n)` rules are gone).
    pub fn faults(&self) -> Vec<FaultRule> {
        self.core().lock().faults.rules()
    }

    /// Turns per-chat flood control on or off.
    pub fn set_chat_rate_limit(&self, limit: Option<RateLimit>) {
        self.mutate(|state| state.chat_rate_limit = limit);
    }

    /// Turns flood control over all chats on or off.
    pub fn set_global_rate_limit(&self, limit: Option<RateLimit>) {
        self.mutate(|state| state.global_rate_limit = limit);
    }

    // ---- what the bot did ----

    /// Every recorded call, oldest first (`getUpdates` is counted in [`View::polls`], not recorded).
    pub fn calls(&self) -> Vec<Call> {
        self.core().lock().calls.clone()
    }

    /// The recorded calls of one method (any case).
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.core().lock().calls.iter().filter(|c| c.method.eq_ignore_ascii_case(method)).cloned().collect()
    }

    /// The bot's visible messages in a chat: edits applied, deleted ones gone.
    pub fn messages_to(&self, chat_id: i64) -> Vec<ChatMessage> {
        self.core().lock().chat_messages(chat_id, true)
    }

    /// Both sides of a chat, in order.
    pub fn transcript(&self, chat_id: i64) -> Vec<ChatMessage> {
        self.core().lock().chat_messages(chat_id, false)
    }

    /// The bytes of a stored file.
    pub fn file_bytes(&self, file_id: &str) -> Option<Bytes> {
        self.core().lock().files.get(file_id).map(|f| f.bytes.clone())
    }

    /// The commands set with `setMyCommands`.
    pub fn commands(&self) -> Value {
        self.core().lock().commands.clone()
    }

    /// Updates not yet confirmed by the bot.
    pub fn pending_updates(&self) -> usize {
        self.core().lock().queue.len()
    }

    /// Waits until `predicate` holds, re-checking on every change of the server's state
    /// (no polling loop).
    ///
    /// The predicate runs with the state locked: it must not call back into this handle.
    ///
    /// # Errors
    /// [`Error::Timeout`] when it does not hold within `timeout`.
    pub async fn wait_for(&self, mut predicate: impl FnMut(&View<'_>) -> bool, timeout: Duration) -> Result<()> {
        self.wait_for_value(|view| predicate(view).then_some(()), timeout).await
    }

    /// Waits until `probe` returns a value, re-checking on every change of the server's state.
    ///
    /// # Errors
    /// [`Error::Timeout`] when it returns `None` until `timeout`.
    pub async fn wait_for_value<T>(
        &self,
        mut probe: impl FnMut(&View<'_>) -> Option<T>,
        timeout: Duration,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let mut changes = self.core().subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(value) = probe(&View { state: &self.core().lock() }) {
                return Ok(value);
            }
            if !matches!(tokio::time::timeout_at(deadline, changes.changed()).await, Ok(Ok(()))) {
                return probe(&View { state: &self.core().lock() }).ok_or(Error::Timeout(timeout));
            }
        }
    }

    /// Waits until the bot has at least `count` visible messages in the chat, and returns them.
    ///
    /// # Errors
    /// [`Error::Timeout`] when fewer arrive within `timeout`.
    pub async fn wait_for_messages_to(
        &self,
        chat_id: i64,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<ChatMessage>> {
        self.wait_for_value(
            |view| {
                let messages = view.messages_to(chat_id);
                (messages.len() >= count).then_some(messages)
            },
            timeout,
        )
        .await
    }

    /// Stops the server: open long polls answer at once with no updates, then the listener
    /// closes. Other clones of the handle keep the record readable.
    pub async fn shutdown(&self) {
        self.mutate(|state| state.closing = true);
        let Some(server) = &self.server else {
            return;
        };
        if let Some(stop) = server.stop.lock().unwrap_or_else(PoisonError::into_inner).take() {
            _ = stop.send(());
        }
        let task = server.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut task) = task
            && tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

/// Stores a message from the user, queues its `message` update and returns what was created.
fn user_message(state: &mut State, user: &SimUser, fill: impl FnOnce(&mut State, &mut StoredMessage)) -> Sent {
    let chat_id = state.register(user);
    let message_id = state.next_message_id(chat_id);
    let mut stored = StoredMessage {
        message: new_message(chat_id, message_id, false, Utc::now()),
        sender: user.id,
        deleted: false,
        photo_sizes: Vec::new(),
        file: None,
        audio_duration: 0,
    };
    fill(state, &mut stored);
    let json = state.message_json(&stored, true);
    state.store_message(stored);
    let update_id = state.push_update("message", json);
    Sent { update_id, chat_id, message_id }
}
