//! `/_fake/...`: the driving API over HTTP, for scripts and the demo.
//!
//! | route | does |
//! |---|---|
//! | `POST /_fake/users/{id}/text` `{"text", "first_name"?, "username"?, "language_code"?}` | a text message |
//! | `POST /_fake/users/{id}/photo?caption=..` raw bytes | a photo |
//! | `POST /_fake/users/{id}/document?file_name=..&mime_type=..` raw bytes | a document |
//! | `POST /_fake/users/{id}/press` `{"message_id", "data"}` | a button press |
//! | `POST /_fake/users/{id}/reply` `{"message_id", "text"}` | a reply |
//! | `POST /_fake/users/{id}/block` `{"blocked"}` | block or unblock the bot |
//! | `POST /_fake/updates` any object | a raw update |
//! | `GET /_fake/calls` | the call record |
//! | `GET /_fake/chats/{id}/messages`, `GET /_fake/chats/{id}/transcript` | a chat |
//! | `GET`, `POST`, `DELETE /_fake/faults` | list, add (a `FaultRule`), clear faults |
//! | `PUT /_fake/rate-limit/chat` a `RateLimit` or `null` | per-chat flood control |

use crate::config::RateLimit;
use crate::error::Error;
use crate::faults::FaultRule;
use crate::handle::FakeTelegram;
use crate::model::SimUser;
use crate::params::percent_decode;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub(crate) fn router() -> Router<FakeTelegram> {
    Router::new()
        .route("/users/{id}/text", post(text))
        .route("/users/{id}/photo", post(photo))
        .route("/users/{id}/document", post(document))
        .route("/users/{id}/press", post(press))
        .route("/users/{id}/reply", post(reply))
        .route("/users/{id}/block", post(block))
        .route("/updates", post(update))
        .route("/calls", get(calls))
        .route("/chats/{id}/messages", get(messages))
        .route("/chats/{id}/transcript", get(transcript))
        .route("/faults", get(faults).post(add_fault).delete(clear_faults))
        .route("/rate-limit/chat", put(chat_rate_limit))
}

#[derive(Deserialize)]
struct TextBody {
    text: String,
    first_name: Option<String>,
    username: Option<String>,
    language_code: Option<String>,
}

#[derive(Deserialize)]
struct PressBody {
    message_id: i64,
    data: String,
}

#[derive(Deserialize)]
struct ReplyBody {
    message_id: i64,
    text: String,
}

#[derive(Deserialize)]
struct BlockBody {
    blocked: bool,
}

/// The registered user with this id, or a new one (generated profile unless names are given).
fn user(fake: &FakeTelegram, id: i64, body: Option<&TextBody>) -> SimUser {
    let mut user = fake.user(id).unwrap_or_else(|| {
        let mut user = SimUser::generated(0);
        user.id = id;
        user
    });
    if let Some(body) = body {
        if let Some(name) = &body.first_name {
            user.first_name = name.clone();
        }
        if body.username.is_some() {
            user.username = body.username.clone();
        }
        if body.language_code.is_some() {
            user.language_code = body.language_code.clone();
        }
    }
    user
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| percent_decode(v))
}

fn error(e: &Error) -> Response {
    let status = match e {
        Error::MessageNotFound { .. } | Error::ButtonNotFound { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, Json(json!({"error": e.to_string()}))).into_response()
}

async fn text(State(fake): State<FakeTelegram>, Path(id): Path<i64>, Json(body): Json<TextBody>) -> Response {
    let user = user(&fake, id, Some(&body));
    Json(fake.send_text(&user, &body.text)).into_response()
}

async fn photo(State(fake): State<FakeTelegram>, Path(id): Path<i64>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let user = user(&fake, id, None);
    let caption = query_param(q.as_deref(), "caption");
    Json(fake.send_photo(&user, body, caption.as_deref())).into_response()
}

async fn document(
    State(fake): State<FakeTelegram>,
    Path(id): Path<i64>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let user = user(&fake, id, None);
    let name = query_param(q.as_deref(), "file_name").unwrap_or_else(|| "file.bin".to_owned());
    let mime = query_param(q.as_deref(), "mime_type").unwrap_or_else(|| "application/octet-stream".to_owned());
    Json(fake.send_document(&user, body, &name, &mime)).into_response()
}

async fn press(State(fake): State<FakeTelegram>, Path(id): Path<i64>, Json(body): Json<PressBody>) -> Response {
    let user = user(&fake, id, None);
    match fake.press_button(&user, body.message_id, &body.data) {
        Ok(pressed) => Json(pressed).into_response(),
        Err(e) => error(&e),
    }
}

async fn reply(State(fake): State<FakeTelegram>, Path(id): Path<i64>, Json(body): Json<ReplyBody>) -> Response {
    let user = user(&fake, id, None);
    match fake.reply_to(&user, body.message_id, &body.text) {
        Ok(sent) => Json(sent).into_response(),
        Err(e) => error(&e),
    }
}

async fn block(State(fake): State<FakeTelegram>, Path(id): Path<i64>, Json(body): Json<BlockBody>) -> Response {
    let user = user(&fake, id, None);
    fake.set_blocked(&user, body.blocked);
    Json(json!({"ok": true})).into_response()
}

async fn update(State(fake): State<FakeTelegram>, Json(body): Json<Map<String, Value>>) -> Response {
    Json(json!({"update_id": fake.push_update(body)})).into_response()
}

async fn calls(State(fake): State<FakeTelegram>) -> Response {
    Json(fake.calls()).into_response()
}

async fn messages(State(fake): State<FakeTelegram>, Path(id): Path<i64>) -> Response {
    Json(fake.messages_to(id)).into_response()
}

async fn transcript(State(fake): State<FakeTelegram>, Path(id): Path<i64>) -> Response {
    Json(fake.transcript(id)).into_response()
}

async fn faults(State(fake): State<FakeTelegram>) -> Response {
    Json(fake.faults()).into_response()
}

async fn add_fault(State(fake): State<FakeTelegram>, Json(rule): Json<FaultRule>) -> Response {
    match fake.add_fault(rule) {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(e) => error(&e),
    }
}

async fn clear_faults(State(fake): State<FakeTelegram>) -> Response {
    fake.clear_faults();
    Json(json!({"ok": true})).into_response()
}

async fn chat_rate_limit(State(fake): State<FakeTelegram>, Json(limit): Json<Option<RateLimit>>) -> Response {
    fake.set_chat_rate_limit(limit);
    Json(json!({"ok": true})).into_response()
}
