//! The axum router: fal's queue API, storage API and CDN on one listener, plus `/_sim/...`.

use crate::engine::{Reply, ReplyBody, SimHandle, SubmitRequest, root_len};
use crate::faults::{FaultRule, FaultScript};
use crate::introspect::AccountUpdate;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match self.body {
            ReplyBody::Json(v) => (status, axum::Json(v)).into_response(),
            ReplyBody::Html(s) => (status, [(header::CONTENT_TYPE, "text/html")], s).into_response(),
            ReplyBody::Empty => status.into_response(),
            // A body stream that fails makes hyper abort the connection: the client never
            // gets a whole answer.
            ReplyBody::Abort => {
                let stream = futures::stream::once(async { Err::<Bytes, std::io::Error>(dropped()) });
                (status, Body::from_stream(stream)).into_response()
            }
            ReplyBody::Cut(bytes) => {
                let declared = bytes.len();
                let half = bytes.slice(..declared / 2);
                // The pause lets hyper flush the head and the first half before the break.
                let stream = futures::stream::iter([Ok(half)]).chain(futures::stream::once(async {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    Err(dropped())
                }));
                let headers = [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (header::CONTENT_LENGTH, declared.to_string()),
                ];
                (status, headers, Body::from_stream(stream)).into_response()
            }
        };
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

fn dropped() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "fal-sim: connection dropped by a fault")
}

/// The full router of a simulator: queue API, storage, CDN and introspection.
pub fn router(handle: SimHandle) -> Router {
    Router::new()
        .route("/_sim/snapshot", get(snapshot))
        .route("/_sim/accounts", get(accounts))
        .route("/_sim/accounts/{name}", get(account).post(update_account))
        .route("/_sim/requests", get(requests))
        .route("/_sim/requests/{id}", get(request))
        .route("/_sim/uploads", get(uploads))
        .route("/_sim/faults", get(faults).post(add_faults).delete(clear_faults))
        .route("/storage/upload/initiate", post(upload_initiate))
        .route("/storage/upload/put/{token}", put(upload_put))
        .route("/files/{*path}", get(cdn))
        .route("/v1/account/billing", get(billing))
        .fallback(queue_api)
        .with_state(handle)
}

fn auth(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

fn not_found() -> Response {
    Reply::json(404, json!({"detail": "Not Found"})).into_response()
}

fn too_large(limit: usize) -> Response {
    Reply::json(413, json!({"detail": format!("Request entity too large (limit {limit} bytes)")})).into_response()
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(uri).map(|q| q.0).unwrap_or_default()
}

fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    query.get(name).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// Everything that is not storage, CDN or `/_sim`: fal's queue API.
async fn queue_api(State(sim): State<SimHandle>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let query = query_map(&uri);
    let rl = root_len(&segments);
    if segments.len() >= rl + 2 && segments[rl] == "requests" {
        let root = segments[..rl].join("/");
        let id = segments[rl + 1];
        let logs = flag(&query, "logs");
        return match (method, &segments[rl + 2..]) {
            (Method::GET, []) => sim.result(auth(&headers), &root, id).into_response(),
            (Method::GET, ["status"]) => sim.status(auth(&headers), &root, id, logs, true).0.into_response(),
            (Method::GET, ["status", "stream"]) => status_stream(sim, auth(&headers), root, id, logs),
            (Method::PUT, ["cancel"]) => sim.cancel(auth(&headers), &root, id).into_response(),
            (Method::GET, _) => not_found(),
            _ => Reply::json(405, json!({"detail": "Method Not Allowed"})).into_response(),
        };
    }
    if method != Method::POST {
        return if method == Method::GET {
            not_found()
        } else {
            Reply::json(405, json!({"detail": "Method Not Allowed"})).into_response()
        };
    }
    let limit = sim.config().max_request_bytes;
    let Ok(body) = axum::body::to_bytes(body, limit).await else { return too_large(limit) };
    sim.submit(SubmitRequest { segments: &segments, headers: &headers, query: &query, body: &body }).into_response()
}

struct StreamState {
    sim: SimHandle,
    auth: Option<String>,
    root: String,
    id: String,
    logs: bool,
    changes: tokio::sync::watch::Receiver<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    last: Option<String>,
    finished: bool,
}

/// `GET .../status/stream`: one SSE event per status change, closed after COMPLETED.
fn status_stream(sim: SimHandle, auth: Option<&str>, root: String, id: &str, logs: bool) -> Response {
    let changes = sim.subscribe();
    let (first, done) = sim.status(auth, &root, id, logs, true);
    if first.status >= 400 {
        return first.into_response();
    }
    let first_text = match &first.body {
        ReplyBody::Json(v) => v.to_string(),
        _ => String::new(),
    };
    let state = StreamState {
        shutdown: sim.shared.shutdown.subscribe(),
        sim,
        auth: auth.map(str::to_owned),
        root,
        id: id.to_owned(),
        logs,
        changes,
        last: Some(first_text.clone()),
        finished: done,
    };
    let rest = futures::stream::unfold(state, |mut s| async move {
        if s.finished {
            return None;
        }
        loop {
            tokio::select! {
                changed = s.changes.changed() => if changed.is_err() { return None },
                _ = s.shutdown.wait_for(|stop| *stop) => return None,
            }
            let (reply, done) = s.sim.status(s.auth.as_deref(), &s.root, &s.id, s.logs, false);
            let ReplyBody::Json(body) = reply.body else { return None };
            if reply.status >= 400 {
                return None;
            }
            let text = body.to_string();
            if s.last.as_deref() != Some(text.as_str()) {
                s.last = Some(text.clone());
                s.finished = done;
                return Some((Ok::<Event, Infallible>(Event::default().data(text)), s));
            }
        }
    });
    let stream =
        futures::stream::once(async move { Ok::<Event, Infallible>(Event::default().data(first_text)) }).chain(rest);
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// The Platform API's `GET /v1/account/billing[?expand=credits]`.
async fn billing(State(sim): State<SimHandle>, uri: Uri, headers: HeaderMap) -> Response {
    let expand = query_map(&uri).get("expand").is_some_and(|e| e.split(',').any(|part| part.trim() == "credits"));
    sim.billing(auth(&headers), expand).into_response()
}

async fn upload_initiate(State(sim): State<SimHandle>, headers: HeaderMap, body: Bytes) -> Response {
    sim.upload_initiate(auth(&headers), &headers, &body).into_response()
}

async fn upload_put(
    State(sim): State<SimHandle>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = sim.config().max_upload_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else { return too_large(limit) };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    sim.upload_put(&token, content_type, bytes).into_response()
}

/// `GET /files/...`: public, unauthenticated; slow when the file's job had the `slow_cdn` fault.
async fn cdn(State(sim): State<SimHandle>, Path(path): Path<String>) -> Response {
    let Some(file) = sim.file(&path) else { return not_found() };
    let len = file.bytes.len();
    let headers = [
        (header::CONTENT_TYPE, file.content_type.clone()),
        (header::CONTENT_LENGTH, len.to_string()),
        (header::CACHE_CONTROL, "public, max-age=604800".to_owned()),
    ];
    if !file.slow {
        return (headers, file.bytes).into_response();
    }
    const CHUNKS: usize = 10;
    let pause = crate::config::ServiceTime::real(sim.config().slow_cdn_secs, sim.config().time_scale) / CHUNKS as u32;
    let chunk = len.div_ceil(CHUNKS).max(1);
    let bytes = file.bytes;
    let stream = futures::stream::iter((0..len).step_by(chunk)).then(move |start| {
        let piece = bytes.slice(start..(start + chunk).min(len));
        async move {
            tokio::time::sleep(pause).await;
            Ok::<Bytes, Infallible>(piece)
        }
    });
    (headers, Body::from_stream(stream)).into_response()
}

async fn snapshot(State(sim): State<SimHandle>) -> Response {
    axum::Json(sim.snapshot()).into_response()
}

async fn accounts(State(sim): State<SimHandle>) -> Response {
    axum::Json(sim.accounts()).into_response()
}

async fn account(State(sim): State<SimHandle>, Path(name): Path<String>) -> Response {
    match sim.account(&name) {
        Some(a) => axum::Json(a).into_response(),
        None => not_found(),
    }
}

async fn update_account(State(sim): State<SimHandle>, Path(name): Path<String>, body: Bytes) -> Response {
    let update: AccountUpdate = if body.iter().all(u8::is_ascii_whitespace) {
        AccountUpdate::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(u) => u,
            Err(e) => return Reply::json(400, json!({"detail": e.to_string()})).into_response(),
        }
    };
    axum::Json(sim.update_account(&name, &update)).into_response()
}

async fn requests(State(sim): State<SimHandle>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut all = sim.requests();
    if let Some(account) = q.get("account") {
        all.retain(|r| &r.account == account);
    }
    if let Some(prompt) = q.get("prompt") {
        all.retain(|r| r.prompt_contains(prompt));
    }
    axum::Json(all).into_response()
}

async fn request(State(sim): State<SimHandle>, Path(id): Path<String>) -> Response {
    match sim.request(&id) {
        Some(r) => axum::Json(r).into_response(),
        None => not_found(),
    }
}

async fn uploads(State(sim): State<SimHandle>) -> Response {
    axum::Json(sim.uploads()).into_response()
}

async fn faults(State(sim): State<SimHandle>) -> Response {
    axum::Json(json!({ "rules": sim.faults() })).into_response()
}

/// Accepts one rule, an array of rules, or a script object `{"rules": [...]}`.
async fn add_faults(State(sim): State<SimHandle>, body: Bytes) -> Response {
    let parsed: Result<Vec<FaultRule>, String> = serde_json::from_slice::<Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| {
            if v.is_array() {
                serde_json::from_value(v).map_err(|e| e.to_string())
            } else if v.get("rules").is_some() || v.get("rule").is_some() {
                serde_json::from_value::<FaultScript>(v).map(|s| s.rules).map_err(|e| e.to_string())
            } else {
                serde_json::from_value::<FaultRule>(v).map(|r| vec![r]).map_err(|e| e.to_string())
            }
        })
        .and_then(|rules| {
            let script = FaultScript { rules };
            script.validate().map(|()| script.rules)
        });
    match parsed {
        Ok(rules) => {
            sim.add_faults(rules);
            axum::Json(json!({ "rules": sim.faults() })).into_response()
        }
        Err(e) => Reply::json(400, json!({ "detail": e })).into_response(),
    }
}

async fn clear_faults(State(sim): State<SimHandle>) -> Response {
    sim.clear_faults();
    axum::Json(json!({ "rules": [] })).into_response()
}
