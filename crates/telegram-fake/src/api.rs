//! The Bot API endpoints: `/bot{token}/{method}` and `/file/bot{token}/{file_path}`.

use crate::error::ApiFailure;
use crate::faults::FaultAction;
use crate::markup::{self, Formatted};
use crate::media;
use crate::model::{Call, CallbackAnswer, Content, FileSource, FileUse, Outcome};
use crate::params::{FileRef, Params};
use crate::state::{Core, FileKind, State, StoredFile, StoredMessage, new_message, photo_content};
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State as AxumState};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use rand::Rng;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The methods the fake implements, in Telegram's spelling; requests match them in any case.
const METHODS: &[&str] = &[
    "getMe",
    "getUpdates",
    "getWebhookInfo",
    "getChat",
    "setWebhook",
    "deleteWebhook",
    "logOut",
    "close",
    "sendMessage",
    "sendPhoto",
    "sendDocument",
    "sendAudio",
    "sendMediaGroup",
    "sendChatAction",
    "editMessageText",
    "editMessageCaption",
    "editMessageReplyMarkup",
    "deleteMessage",
    "answerCallbackQuery",
    "getFile",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "setMyDescription",
    "setMyShortDescription",
    "setMyName",
    "setChatMenuButton",
];

/// Every `/bot{token}/{method}` request, any HTTP verb.
pub(crate) async fn handle(
    AxumState(core): AxumState<Arc<Core>>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    // A path that does not even decode (invalid UTF-8) is no method of this server.
    let Ok(Path((bot, method))) = path else {
        return ApiFailure::not_found().into_response();
    };
    let Some(token) = bot.strip_prefix("bot") else {
        return ApiFailure::not_found().into_response();
    };
    if token != core.config.token {
        return ApiFailure::unauthorized().into_response();
    }
    let Some(method) = METHODS.iter().copied().find(|known| known.eq_ignore_ascii_case(&method)) else {
        tracing::warn!(%method, "the bot called a method the fake does not implement");
        let mut call = new_call(&core, &method, &Params::default());
        call.outcome = failed(&ApiFailure::method_not_found());
        core.lock().record(call);
        core.notify();
        return ApiFailure::method_not_found().into_response();
    };
    let params = match Params::read(request, core.config.limits.max_upload).await {
        Ok(params) => params,
        Err(failure) => return finish(&core, new_call(&core, method, &Params::default()), Err(failure)),
    };
    let call = new_call(&core, method, &params);
    let fault = {
        let mut state = core.lock();
        let State { faults, rng, .. } = &mut *state;
        faults.pick(method, rng)
    };
    if method == "getUpdates" {
        // A long poll belongs to its connection: when the client goes away it may end with it.
        return process(core, method, params, call, fault).await;
    }
    // Once Telegram has a request it carries it out, whether or not the client still waits;
    // a task of its own keeps a client's disconnect from cancelling it halfway.
    match tokio::spawn(process(core, method, params, call, fault)).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, method, "the fake failed while handling a call");
            ApiFailure::bad_request(format!("the fake failed while handling {method}")).into_response()
        }
    }
}

/// Applies the fault, carries the call out and answers.
async fn process(
    core: Arc<Core>,
    method: &'static str,
    params: Params,
    mut call: Call,
    fault: Option<FaultAction>,
) -> Response {
    let mut slow = None;
    match fault {
        Some(FaultAction::RetryAfter { secs }) => return finish(&core, call, Err(ApiFailure::retry_after(secs))),
        Some(FaultAction::Error { code, description }) => {
            return finish(&core, call, Err(ApiFailure::new(code, description)));
        }
        Some(FaultAction::Stall { delay }) => tokio::time::sleep(delay).await,
        Some(FaultAction::SlowResponse { delay }) => slow = Some(delay),
        None => {}
    }
    let result = dispatch(&core, method, &params, &mut call).await;
    let response = finish(&core, call, result);
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    response
}

/// Records the call (except `getUpdates`), wakes waiters and builds the answer.
fn finish(core: &Core, mut call: Call, result: Result<Value, ApiFailure>) -> Response {
    if let Err(failure) = &result {
        call.outcome = failed(failure);
    }
    if call.method != "getUpdates" {
        tracing::debug!(method = %call.method, outcome = ?call.outcome, "bot call");
        core.lock().record(call);
        core.notify();
    }
    match result {
        Ok(value) => Json(json!({"ok": true, "result": value})).into_response(),
        Err(failure) => failure.into_response(),
    }
}

fn failed(failure: &ApiFailure) -> Outcome {
    Outcome::Failed { code: failure.code, description: failure.description.clone() }
}

fn new_call(core: &Core, method: &str, params: &Params) -> Call {
    let callback_answer = (method == "answerCallbackQuery").then(|| CallbackAnswer {
        query_id: params.str("callback_query_id").unwrap_or_default(),
        text: params.str("text"),
        show_alert: params.bool("show_alert"),
    });
    Call {
        seq: 0,
        at: Utc::now(),
        since_start: core.started.elapsed(),
        method: method.to_owned(),
        chat_id: params.i64("chat_id").ok().flatten(),
        message_ids: params.i64("message_id").ok().flatten().into_iter().collect(),
        text: params.str("text").or_else(|| params.str("caption")),
        parse_mode: params.str("parse_mode"),
        reply_markup: params.json("reply_markup").ok().flatten(),
        files: Vec::new(),
        callback_answer,
        params: params.summary(),
        outcome: Outcome::Ok,
    }
}

async fn dispatch(core: &Core, method: &str, params: &Params, call: &mut Call) -> Result<Value, ApiFailure> {
    match method {
        "getMe" => {
            let mut me = core.lock().bot_user.clone();
            me["can_join_groups"] = json!(true);
            me["can_read_all_group_messages"] = json!(false);
            me["supports_inline_queries"] = json!(false);
            me["can_connect_to_business"] = json!(false);
            me["has_main_web_app"] = json!(false);
            Ok(me)
        }
        "getUpdates" => get_updates(core, params).await,
        "getWebhookInfo" => {
            let state = core.lock();
            Ok(json!({
                "url": state.webhook_url.clone().unwrap_or_default(),
                "has_custom_certificate": false,
                "pending_update_count": state.queue.len(),
            }))
        }
        "getChat" => {
            // A private chat is known once its user has written to the bot (or the driver
            // registered them); anyone else is "chat not found", as Telegram answers.
            let state = core.lock();
            let raw =
                params.str("chat_id").filter(|c| !c.trim().is_empty()).ok_or_else(|| ApiFailure::missing("chat_id"))?;
            let chat_id: i64 = raw.trim().parse().map_err(|_| ApiFailure::chat_not_found())?;
            let chat = state.chats.get(&chat_id).ok_or_else(ApiFailure::chat_not_found)?;
            Ok(chat.user.chat_json())
        }
        "setWebhook" => {
            // The fake never delivers to webhooks; it only remembers one is set, so that
            // getUpdates answers the real conflict.
            let url = params.str("url").filter(|u| !u.is_empty());
            core.lock().webhook_url = url;
            Ok(json!(true))
        }
        "deleteWebhook" => {
            let mut state = core.lock();
            state.webhook_url = None;
            if params.bool("drop_pending_updates") {
                state.queue.clear();
            }
            Ok(json!(true))
        }
        "sendMessage" => send_message(core, params, call),
        "sendPhoto" => send_media(core, FileKind::Photo, params, call).await,
        "sendDocument" => send_media(core, FileKind::Document, params, call).await,
        "sendAudio" => send_media(core, FileKind::Audio, params, call).await,
        "sendMediaGroup" => send_media_group(core, params, call).await,
        "sendChatAction" => {
            let state = core.lock();
            target_chat(&state, params)?;
            params.str("action").filter(|a| !a.is_empty()).ok_or_else(|| ApiFailure::missing("action"))?;
            Ok(json!(true))
        }
        "editMessageText" => edit(core, params, call, Edit::Text),
        "editMessageCaption" => edit(core, params, call, Edit::Caption),
        "editMessageReplyMarkup" => edit(core, params, call, Edit::Markup),
        "deleteMessage" => {
            let mut state = core.lock();
            let chat_id = target_chat(&state, params)?;
            let message_id = params.i64("message_id")?.ok_or_else(|| ApiFailure::missing("message_id"))?;
            match state.messages.get_mut(&(chat_id, message_id)).filter(|m| !m.deleted) {
                Some(stored) => stored.deleted = true,
                None => return Err(ApiFailure::bad_request("message to delete not found")),
            }
            Ok(json!(true))
        }
        "answerCallbackQuery" => answer_callback(core, params),
        "getFile" => {
            let state = core.lock();
            let id = params.str("file_id").filter(|id| !id.is_empty()).ok_or_else(|| ApiFailure::missing("file_id"))?;
            let file = state
                .files
                .get(&id)
                .ok_or_else(|| ApiFailure::bad_request("wrong file identifier/HTTP URL specified"))?;
            if file.size() > core.config.limits.max_download {
                return Err(ApiFailure::bad_request("file is too big"));
            }
            Ok(json!({
                "file_id": file.file_id,
                "file_unique_id": file.unique_id,
                "file_size": file.size(),
                "file_path": file.file_path,
            }))
        }
        "setMyCommands" => {
            let commands =
                params.json("commands")?.filter(Value::is_array).ok_or_else(|| ApiFailure::missing("commands"))?;
            core.lock().commands = commands;
            Ok(json!(true))
        }
        "getMyCommands" => Ok(core.lock().commands.clone()),
        "deleteMyCommands" => {
            core.lock().commands = json!([]);
            Ok(json!(true))
        }
        _ => Ok(json!(true)),
    }
}

async fn get_updates(core: &Core, params: &Params) -> Result<Value, ApiFailure> {
    let offset = params.i64("offset")?.unwrap_or(0);
    let limit = params.i64("limit")?.unwrap_or(100).clamp(1, 100) as usize;
    let timeout = params.i64("timeout")?.unwrap_or(0).clamp(0, 50) as u64;
    let allowed = params.json("allowed_updates")?;
    let generation = {
        let mut state = core.lock();
        if state.webhook_url.is_some() {
            return Err(ApiFailure::conflict_webhook());
        }
        if let Some(Value::Array(list)) = allowed {
            state.allowed_updates = Some(list.iter().filter_map(Value::as_str).map(str::to_owned).collect());
        }
        state.confirm(offset);
        state.poll_generation += 1;
        state.polls += 1;
        state.poll_generation
    };
    // Wakes an older poll still waiting, which then answers the real 409 conflict.
    core.notify();
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut changes = core.subscribe();
    loop {
        changes.borrow_and_update();
        {
            let state = core.lock();
            if state.poll_generation != generation {
                return Err(ApiFailure::conflict_other_poll());
            }
            let batch = state.pending(limit);
            if !batch.is_empty() || state.closing {
                return Ok(Value::Array(batch));
            }
        }
        if !matches!(tokio::time::timeout_at(deadline, changes.changed()).await, Ok(Ok(()))) {
            return Ok(json!([]));
        }
    }
}

/// The numeric `chat_id` of a known, reachable chat.
fn target_chat(state: &State, params: &Params) -> Result<i64, ApiFailure> {
    let raw = params.str("chat_id").filter(|c| !c.trim().is_empty()).ok_or_else(|| ApiFailure::missing("chat_id"))?;
    // `@username` only addresses channels and public groups, which the fake has none of.
    let chat_id: i64 = raw.trim().parse().map_err(|_| ApiFailure::chat_not_found())?;
    let chat = state.chats.get(&chat_id).ok_or_else(ApiFailure::chat_not_found)?;
    if chat.blocked {
        return Err(ApiFailure::blocked());
    }
    Ok(chat_id)
}

/// `reply_markup`, checked the way Telegram checks inline keyboards.
fn reply_markup(core: &Core, params: &Params) -> Result<Option<Value>, ApiFailure> {
    let unreadable = || ApiFailure::bad_request("can't parse reply keyboard markup JSON object");
    let Some(markup) = params.json("reply_markup").map_err(|_| unreadable())? else {
        return Ok(None);
    };
    if !markup.is_object() {
        return Err(unreadable());
    }
    if let Some(rows) = markup.get("inline_keyboard") {
        let rows = rows.as_array().ok_or_else(|| {
            ApiFailure::bad_request("field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array")
        })?;
        for row in rows {
            let buttons = row.as_array().ok_or_else(|| {
                ApiFailure::bad_request(
                    "field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array of Arrays",
                )
            })?;
            for button in buttons {
                check_inline_button(core, button)?;
            }
        }
    }
    Ok(Some(markup))
}

fn check_inline_button(core: &Core, button: &Value) -> Result<(), ApiFailure> {
    const ACTIONS: [&str; 10] = [
        "callback_data",
        "url",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    ];
    if button.get("text").and_then(Value::as_str).is_none() {
        return Err(ApiFailure::bad_request(
            "can't parse inline keyboard button: Field \"text\" must be of type String",
        ));
    }
    if !ACTIONS.iter().any(|action| button.get(*action).is_some()) {
        return Err(ApiFailure::bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
        ));
    }
    if let Some(data) = button.get("callback_data") {
        let len = data.as_str().map_or(0, str::len);
        if len == 0 || len > core.config.limits.max_callback_data {
            return Err(ApiFailure::bad_request("BUTTON_DATA_INVALID"));
        }
    }
    if let Some(url) = button.get("url") {
        let url = url.as_str().unwrap_or_default();
        if !["http://", "https://", "tg://"].iter().any(|scheme| url.starts_with(scheme)) {
            return Err(ApiFailure::bad_request("BUTTON_URL_INVALID"));
        }
    }
    Ok(())
}

/// The message a send replies to (`reply_parameters` or the older `reply_to_message_id`).
fn reply_target(state: &State, chat_id: i64, params: &Params) -> Result<Option<i64>, ApiFailure> {
    let parameters = params.json("reply_parameters")?;
    let (message_id, lenient) = match &parameters {
        Some(p) => (
            p.get("message_id").and_then(Value::as_i64),
            p.get("allow_sending_without_reply").and_then(Value::as_bool).unwrap_or(false),
        ),
        None => (params.i64("reply_to_message_id")?, params.bool("allow_sending_without_reply")),
    };
    let Some(message_id) = message_id else {
        return Ok(None);
    };
    let target = parameters.as_ref().and_then(|p| p.get("chat_id")).and_then(Value::as_i64).unwrap_or(chat_id);
    match state.live_message(target, message_id) {
        Some(_) => Ok(Some(message_id)),
        None if lenient => Ok(None),
        None => Err(ApiFailure::bad_request("message to be replied not found")),
    }
}

fn parse_text(text: &str, parse_mode: Option<&str>) -> Result<Formatted, ApiFailure> {
    markup::parse(text, parse_mode).map_err(ApiFailure::bad_request)
}

fn send_message(core: &Core, params: &Params, call: &mut Call) -> Result<Value, ApiFailure> {
    let limits = core.config.limits;
    let now = Instant::now();
    let mut state = core.lock();
    let chat_id = target_chat(&state, params)?;
    let text = params.str("text").unwrap_or_default();
    let parse_mode = params.str("parse_mode");
    let formatted = parse_text(&text, parse_mode.as_deref())?;
    if formatted.text.trim().is_empty() {
        return Err(ApiFailure::bad_request("message text is empty"));
    }
    if markup::utf16_len(&formatted.text) > limits.max_text_len {
        return Err(ApiFailure::bad_request("message is too long"));
    }
    let reply_markup = reply_markup(core, params)?;
    let reply_to = reply_target(&state, chat_id, params)?;
    state.take_send_slots(chat_id, 1, now).map_err(ApiFailure::retry_after)?;
    let message_id = state.next_message_id(chat_id);
    let mut message = new_message(chat_id, message_id, true, Utc::now());
    message.text = Some(formatted.text);
    message.entities = formatted.entities;
    message.parse_mode = parse_mode;
    message.reply_markup = reply_markup;
    message.reply_to = reply_to;
    let stored = bot_message(&state, message);
    let json = state.message_json(&stored, true);
    state.store_message(stored);
    call.message_ids = vec![message_id];
    Ok(json)
}

fn bot_message(state: &State, message: crate::model::ChatMessage) -> StoredMessage {
    StoredMessage {
        message,
        sender: state.bot_user["id"].as_i64().unwrap_or_default(),
        deleted: false,
        photo_sizes: Vec::new(),
        file: None,
        audio_duration: 0,
    }
}

/// A file the bot sent, once its bytes are known.
enum Resolved {
    /// New content (an upload or a fetched URL) to store.
    New { bytes: Bytes, file_name: Option<String>, mime_type: Option<String> },
    /// A file Telegram already has.
    Existing(String),
}

fn kind_field(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Photo => "photo",
        FileKind::Document => "document",
        FileKind::Audio => "audio",
    }
}

/// Turns a file parameter into bytes or a known file, recording where it came from.
async fn resolve_file(
    core: &Core,
    kind: FileKind,
    field: String,
    file: FileRef,
    uses: &mut Vec<FileUse>,
) -> Result<Resolved, ApiFailure> {
    let limits = core.config.limits;
    match file {
        FileRef::Upload(upload) => {
            let len = upload.bytes.len() as u64;
            let file_name = upload.file_name.clone().filter(|n| !n.is_empty());
            uses.push(FileUse {
                field,
                source: FileSource::Upload {
                    len,
                    file_name: file_name.clone(),
                    mime_type: upload.content_type.clone(),
                },
                file_id: None,
            });
            if len == 0 {
                return Err(ApiFailure::bad_request("file must be non-empty"));
            }
            if kind == FileKind::Photo && len > limits.max_photo_upload {
                return Err(ApiFailure::bad_request("PHOTO_SAVE_FILE_INVALID"));
            }
            Ok(Resolved::New { bytes: upload.bytes, file_name, mime_type: upload.content_type })
        }
        FileRef::Text(url) if url.starts_with("http://") || url.starts_with("https://") => {
            uses.push(FileUse { field, source: FileSource::Url(url.clone()), file_id: None });
            let max = if kind == FileKind::Photo { limits.max_photo_by_url } else { limits.max_file_by_url };
            let (bytes, mime_type) = fetch(core, &url, max).await?;
            let file_name =
                url.rsplit('/').next().filter(|n| !n.is_empty()).map(|n| n.split('?').next().unwrap_or(n).to_owned());
            Ok(Resolved::New { bytes, file_name, mime_type })
        }
        FileRef::Text(file_id) => {
            uses.push(FileUse { field, source: FileSource::FileId(file_id.clone()), file_id: Some(file_id.clone()) });
            let state = core.lock();
            let known = state
                .files
                .get(&file_id)
                .ok_or_else(|| ApiFailure::bad_request("wrong file identifier/HTTP URL specified"))?;
            if known.kind != kind {
                return Err(ApiFailure::bad_request("type of file mismatch"));
            }
            Ok(Resolved::Existing(file_id))
        }
    }
}

/// Downloads a URL the bot asked Telegram to fetch, up to `max` bytes.
async fn fetch(core: &Core, url: &str, max: u64) -> Result<(Bytes, Option<String>), ApiFailure> {
    let failure = || ApiFailure::bad_request("failed to get HTTP URL content");
    let mut response = core.http.get(url).send().await.map_err(|_| failure())?;
    if !response.status().is_success() {
        return Err(failure());
    }
    if response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > max)
    {
        return Err(failure());
    }
    let mime = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| failure())? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > max {
            return Err(failure());
        }
    }
    Ok((body.freeze(), mime))
}

/// Stores new content or looks up an existing file, returning the message's media parts.
fn materialise(state: &mut State, kind: FileKind, resolved: Resolved) -> (Vec<StoredFile>, Option<StoredFile>) {
    match (kind, resolved) {
        (FileKind::Photo, Resolved::New { bytes, .. }) => (state.store_photo(bytes), None),
        (FileKind::Photo, Resolved::Existing(id)) => (state.photo_sizes_of(&id).unwrap_or_default(), None),
        (_, Resolved::New { bytes, file_name, mime_type }) => {
            let mime = media::guess_mime(file_name.as_deref(), mime_type.as_deref(), &bytes);
            (Vec::new(), Some(state.store_file(kind, bytes, file_name, Some(mime), (0, 0))))
        }
        (_, Resolved::Existing(id)) => (Vec::new(), state.files.get(&id).cloned()),
    }
}

fn media_content(kind: FileKind, sizes: &[StoredFile], file: Option<&StoredFile>) -> Content {
    let id = file.map(|f| f.file_id.clone()).unwrap_or_default();
    let file_name = file.and_then(|f| f.file_name.clone());
    let mime_type = file.and_then(|f| f.mime_type.clone());
    let file_size = file.map_or(0, StoredFile::size);
    match kind {
        FileKind::Photo => photo_content(sizes),
        FileKind::Document => Content::Document { file_id: id, file_name, mime_type, file_size },
        FileKind::Audio => Content::Audio { file_id: id, file_name, mime_type, file_size },
    }
}

/// The caption of a media message, parsed and checked.
fn caption(core: &Core, caption: Option<String>, parse_mode: Option<&str>) -> Result<Option<Formatted>, ApiFailure> {
    let Some(caption) = caption.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let formatted = parse_text(&caption, parse_mode)?;
    if markup::utf16_len(&formatted.text) > core.config.limits.max_caption_len {
        return Err(ApiFailure::bad_request("message caption is too long"));
    }
    Ok(Some(formatted))
}

async fn send_media(core: &Core, kind: FileKind, params: &Params, call: &mut Call) -> Result<Value, ApiFailure> {
    let field = kind_field(kind);
    target_chat(&core.lock(), params)?;
    let file =
        params.file(field).ok_or_else(|| ApiFailure::bad_request(format!("there is no {field} in the request")))?;
    let parse_mode = params.str("parse_mode");
    let caption = caption(core, params.str("caption"), parse_mode.as_deref())?;
    let reply_markup = reply_markup(core, params)?;
    let resolved = resolve_file(core, kind, field.to_owned(), file, &mut call.files).await?;

    let now = Instant::now();
    let mut state = core.lock();
    let chat_id = target_chat(&state, params)?;
    let reply_to = reply_target(&state, chat_id, params)?;
    state.take_send_slots(chat_id, 1, now).map_err(ApiFailure::retry_after)?;
    let (sizes, file) = materialise(&mut state, kind, resolved);
    let message_id = state.next_message_id(chat_id);
    let mut message = new_message(chat_id, message_id, true, Utc::now());
    message.content = media_content(kind, &sizes, file.as_ref());
    if let Some(use_) = call.files.last_mut() {
        use_.file_id = message.content.file_id().map(str::to_owned);
    }
    if let Some(caption) = caption {
        message.text = Some(caption.text);
        message.entities = caption.entities;
    }
    message.parse_mode = parse_mode;
    message.reply_markup = reply_markup;
    message.reply_to = reply_to;
    let mut stored = bot_message(&state, message);
    stored.photo_sizes = sizes;
    stored.file = file;
    stored.audio_duration = params.i64("duration").ok().flatten().and_then(|d| u32::try_from(d).ok()).unwrap_or(0);
    let json = state.message_json(&stored, true);
    state.store_message(stored);
    call.message_ids = vec![message_id];
    Ok(json)
}

async fn send_media_group(core: &Core, params: &Params, call: &mut Call) -> Result<Value, ApiFailure> {
    target_chat(&core.lock(), params)?;
    let media = params.json("media")?.ok_or_else(|| ApiFailure::missing("media"))?;
    let items = media.as_array().ok_or_else(|| ApiFailure::bad_request("can't parse media JSON object"))?;
    if items.is_empty() {
        return Err(ApiFailure::missing("media"));
    }
    if items.len() > 10 {
        return Err(ApiFailure::bad_request("Too much messages to send as an album"));
    }
    let mut prepared = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let kind = match item.get("type").and_then(Value::as_str) {
            Some("photo") => FileKind::Photo,
            Some("document") => FileKind::Document,
            Some("audio") => FileKind::Audio,
            other => {
                return Err(ApiFailure::bad_request(format!(
                    "unsupported media type \"{}\" in the fake",
                    other.unwrap_or_default()
                )));
            }
        };
        let reference = item.get("media").and_then(Value::as_str).and_then(|m| params.resolve(m));
        let reference = reference.ok_or_else(|| ApiFailure::bad_request("wrong file identifier/HTTP URL specified"))?;
        let parse_mode = item.get("parse_mode").and_then(Value::as_str).map(str::to_owned);
        let caption_text = item.get("caption").and_then(Value::as_str).map(str::to_owned);
        let caption = caption(core, caption_text, parse_mode.as_deref())?;
        let resolved = resolve_file(core, kind, format!("media[{index}]"), reference, &mut call.files).await?;
        prepared.push((kind, resolved, caption, parse_mode));
    }

    let now = Instant::now();
    let mut state = core.lock();
    let chat_id = target_chat(&state, params)?;
    let reply_to = reply_target(&state, chat_id, params)?;
    state.take_send_slots(chat_id, prepared.len(), now).map_err(ApiFailure::retry_after)?;
    let group_id = state.rng.random_range(10_000_000_000_000_000u64..100_000_000_000_000_000).to_string();
    let date = Utc::now();
    let mut messages = Vec::with_capacity(prepared.len());
    for (index, (kind, resolved, caption, parse_mode)) in prepared.into_iter().enumerate() {
        let (sizes, file) = materialise(&mut state, kind, resolved);
        let message_id = state.next_message_id(chat_id);
        let mut message = new_message(chat_id, message_id, true, date);
        message.content = media_content(kind, &sizes, file.as_ref());
        if let Some(use_) = call.files.get_mut(index) {
            use_.file_id = message.content.file_id().map(str::to_owned);
        }
        if let Some(caption) = caption {
            message.text = Some(caption.text);
            message.entities = caption.entities;
        }
        message.parse_mode = parse_mode;
        message.reply_to = reply_to;
        message.media_group_id = Some(group_id.clone());
        let mut stored = bot_message(&state, message);
        stored.photo_sizes = sizes;
        stored.file = file;
        messages.push(state.message_json(&stored, true));
        state.store_message(stored);
        call.message_ids.push(message_id);
    }
    Ok(Value::Array(messages))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Edit {
    Text,
    Caption,
    Markup,
}

fn edit(core: &Core, params: &Params, call: &mut Call, what: Edit) -> Result<Value, ApiFailure> {
    let not_found = || ApiFailure::bad_request("message to edit not found");
    if params.str("inline_message_id").is_some_and(|id| !id.is_empty()) {
        // The fake has no inline mode, so no inline message can exist.
        return Err(not_found());
    }
    let limits = core.config.limits;
    let mut state = core.lock();
    let chat_id = target_chat(&state, params)?;
    let message_id =
        params.i64("message_id")?.ok_or_else(|| ApiFailure::bad_request("message identifier is not specified"))?;
    let reply_markup = reply_markup(core, params)?;
    let current = state.live_message(chat_id, message_id).ok_or_else(not_found)?;
    if !current.message.from_bot {
        return Err(ApiFailure::bad_request("message can't be edited"));
    }
    let mut next = current.clone();
    let parse_mode = params.str("parse_mode");
    match what {
        Edit::Text => {
            if next.message.content != Content::Text {
                return Err(ApiFailure::bad_request("there is no text in the message to edit"));
            }
            let formatted = parse_text(&params.str("text").unwrap_or_default(), parse_mode.as_deref())?;
            if formatted.text.trim().is_empty() {
                return Err(ApiFailure::bad_request("message text is empty"));
            }
            if markup::utf16_len(&formatted.text) > limits.max_text_len {
                return Err(ApiFailure::bad_request("MESSAGE_TOO_LONG"));
            }
            next.message.text = Some(formatted.text);
            next.message.entities = formatted.entities;
            next.message.parse_mode = parse_mode;
        }
        Edit::Caption => {
            if next.message.content == Content::Text {
                return Err(ApiFailure::bad_request("there is no caption in the message to edit"));
            }
            let formatted = caption(core, params.str("caption"), parse_mode.as_deref())?;
            next.message.text = formatted.as_ref().map(|f| f.text.clone());
            next.message.entities = formatted.map(|f| f.entities).unwrap_or_default();
            next.message.parse_mode = parse_mode;
        }
        Edit::Markup => {}
    }
    // An edit without reply_markup removes the inline keyboard, as on the real server.
    next.message.reply_markup = reply_markup;
    let inline = |m: &StoredMessage| m.message.reply_markup.clone().filter(|m| m.get("inline_keyboard").is_some());
    if next.message.text == current.message.text
        && next.message.entities == current.message.entities
        && inline(&next) == inline(current)
    {
        return Err(ApiFailure::not_modified());
    }
    next.message.edit_count += 1;
    next.message.edit_date = Some(Utc::now());
    let json = state.message_json(&next, true);
    state.store_message(next);
    call.message_ids = vec![message_id];
    Ok(json)
}

fn answer_callback(core: &Core, params: &Params) -> Result<Value, ApiFailure> {
    let id = params.str("callback_query_id").filter(|id| !id.is_empty()).ok_or_else(ApiFailure::query_too_old)?;
    let now = Instant::now();
    let mut state = core.lock();
    let query = state.callbacks.get_mut(&id).ok_or_else(ApiFailure::query_too_old)?;
    if query.answered || now.duration_since(query.created) > core.config.callback_answer_deadline {
        return Err(ApiFailure::query_too_old());
    }
    query.answered = true;
    Ok(json!(true))
}

/// `GET /file/bot{token}/{file_path}`: the bytes of a stored file.
pub(crate) async fn download(
    AxumState(core): AxumState<Arc<Core>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Ok(Path((bot, path))) = path else {
        return ApiFailure::not_found().into_response();
    };
    if bot.strip_prefix("bot") != Some(core.config.token.as_str()) {
        return ApiFailure::unauthorized().into_response();
    }
    let state = core.lock();
    let file = state.paths.get(&path).and_then(|id| state.files.get(id));
    match file {
        Some(file) => {
            let mime =
                file.mime_type.clone().unwrap_or_else(|| media::guess_mime(Some(&file.file_path), None, &file.bytes));
            ([(CONTENT_TYPE, mime)], file.bytes.clone()).into_response()
        }
        None => ApiFailure::not_found().into_response(),
    }
}
