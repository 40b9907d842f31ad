//! The fake at the HTTP level: what any client (or a hostile one) gets, and the `/_fake`
//! control routes scripts use.

use mediagen_telegram_fake::{FakeConfig, FakeTelegram, Limits, SimUser, spawn};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

struct Harness {
    fake: FakeTelegram,
    http: reqwest::Client,
}

impl Harness {
    async fn new(config: FakeConfig) -> Harness {
        Harness { fake: spawn(config).await.unwrap(), http: reqwest::Client::new() }
    }

    fn method(&self, method: &str) -> String {
        format!("{}/bot{}/{method}", self.fake.base_url(), self.fake.token())
    }

    async fn json(&self, method: &str, body: Value) -> (StatusCode, Value) {
        let response = self.http.post(self.method(method)).json(&body).send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn raw(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
    }
}

fn description(body: &Value) -> &str {
    body["description"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn tokens_paths_and_methods() {
    let h = Harness::new(FakeConfig::default()).await;
    let base = h.fake.base_url();

    let (status, body) = h.raw(h.http.get(h.method("getMe"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ok"], true);
    assert_eq!(body["result"]["has_main_web_app"], false);

    let (status, body) = h.raw(h.http.post(format!("{base}/bot1:nope/getMe"))).await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, json!({"ok": false, "error_code": 401, "description": "Unauthorized"}))
    );

    let (status, body) = h.json("fooBar", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"}));
    assert_eq!(h.fake.calls()[1].method, "fooBar", "unknown methods are recorded too");

    for path in ["/nothing", "/x/getMe", "/bot%FF/getMe", "/file/bot1:x/a", "/a/b/c/d"] {
        let (status, body) = h.raw(h.http.get(format!("{base}{path}"))).await;
        assert!(status.is_client_error(), "{path}: {status}");
        assert_eq!(body["ok"], false, "{path}");
    }

    let (status, _) = h.json("GETME", json!({})).await;
    assert_eq!(status, StatusCode::OK, "method names match in any case");
}

#[tokio::test]
async fn parameters_arrive_as_json_form_query_or_multipart() {
    let h = Harness::new(FakeConfig::default()).await;
    let user = SimUser::new(42, "Zed");
    h.fake.add_user(&user);

    let (status, _) = h.raw(h.http.post(format!("{}?chat_id=42&text=by+query", h.method("sendMessage")))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .raw(
            h.http
                .post(h.method("sendMessage"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("chat_id=42&text=by%20form"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let form = reqwest::multipart::Form::new().text("chat_id", "42").text("text", "by multipart");
    let (status, _) = h.raw(h.http.post(h.method("sendMessage")).multipart(form)).await;
    assert_eq!(status, StatusCode::OK);
    let photo = reqwest::multipart::Part::bytes(b"GIF89a\x01\x00\x01\x00".to_vec()).file_name("dot.gif");
    let form = reqwest::multipart::Form::new().text("chat_id", "42").part("photo", photo);
    let (status, body) = h.raw(h.http.post(h.method("sendPhoto")).multipart(form)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["photo"][0]["width"], 1);

    let texts: Vec<String> = h.fake.messages_to(42).iter().map(|m| m.text().to_owned()).collect();
    assert_eq!(texts, ["by query", "by form", "by multipart", ""]);
}

#[tokio::test]
async fn hostile_requests_get_telegram_errors_not_crashes() {
    let h = Harness::new(FakeConfig {
        limits: Limits { max_upload: 64 * 1024, ..Limits::default() },
        ..FakeConfig::default()
    })
    .await;
    h.fake.add_user(&SimUser::new(42, "Zed"));

    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "Bad Request: chat_id is empty"),
        (json!({"chat_id": {"a": 1}, "text": "x"}), "Bad Request: chat not found"),
        (json!({"chat_id": "@someone", "text": "x"}), "Bad Request: chat not found"),
        (json!({"chat_id": 42}), "Bad Request: message text is empty"),
        (
            json!({"chat_id": 42, "text": "x", "reply_markup": "{not json"}),
            "Bad Request: can't parse reply keyboard markup JSON object",
        ),
        (
            json!({"chat_id": 42, "text": "x", "reply_markup": {"inline_keyboard": [[{"text": "t"}]]}}),
            "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
        ),
        (
            json!({"chat_id": 42, "text": "x", "reply_markup": {"inline_keyboard": [[{"text": "t", "callback_data": "d".repeat(65)}]]}}),
            "Bad Request: BUTTON_DATA_INVALID",
        ),
        (
            json!({"chat_id": 42, "text": "x", "reply_markup": {"inline_keyboard": 5}}),
            "Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array",
        ),
        (
            json!({"chat_id": 42, "text": "x", "reply_parameters": {"message_id": 999}}),
            "Bad Request: message to be replied not found",
        ),
        (
            json!({"chat_id": 42, "text": "<b>x", "parse_mode": "HTML"}),
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\"",
        ),
        (
            json!({"chat_id": 42, "text": "x", "parse_mode": "Klingon"}),
            "Bad Request: unsupported parse_mode \"Klingon\"",
        ),
        (json!({"chat_id": 42, "text": "x".repeat(5000)}), "Bad Request: message is too long"),
    ];
    for (body, expected) in cases {
        let (status, answer) = h.json("sendMessage", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(description(&answer), expected, "{body}");
        assert_eq!(answer["error_code"], 400);
    }

    let (status, answer) = h.json("getUpdates", json!({"offset": "abc"})).await;
    assert_eq!((status, description(&answer)), (StatusCode::BAD_REQUEST, "Bad Request: invalid offset specified"));
    let (status, _) = h.json("getUpdates", json!({"limit": -5, "timeout": -1, "offset": -99999999999i64})).await;
    assert_eq!(status, StatusCode::OK);

    let garbage = h.http.post(h.method("sendMessage")).header("content-type", "application/json").body("{{{{");
    let (status, answer) = h.raw(garbage).await;
    assert_eq!((status, description(&answer)), (StatusCode::BAD_REQUEST, "Bad Request: chat_id is empty"));

    let broken = h
        .http
        .post(h.method("sendPhoto"))
        .header("content-type", "multipart/form-data; boundary=zz")
        .body("--zz\r\nnonsense");
    let (status, _) = h.raw(broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let huge = reqwest::multipart::Part::bytes(vec![0u8; 65 * 1024]).file_name("a.bin");
    let form = reqwest::multipart::Form::new().text("chat_id", "42").part("document", huge);
    let (status, answer) = h.raw(h.http.post(h.method("sendDocument")).multipart(form)).await;
    assert_eq!((status, description(&answer)), (StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"));

    let empty = reqwest::multipart::Part::bytes(Vec::new()).file_name("a.bin");
    let form = reqwest::multipart::Form::new().text("chat_id", "42").part("document", empty);
    let (_, answer) = h.raw(h.http.post(h.method("sendDocument")).multipart(form)).await;
    assert_eq!(description(&answer), "Bad Request: file must be non-empty");

    let (_, answer) = h.json("sendPhoto", json!({"chat_id": 42, "photo": "attach://missing"})).await;
    assert_eq!(description(&answer), "Bad Request: there is no photo in the request");
    let (_, answer) = h.json("sendPhoto", json!({"chat_id": 42, "photo": "AgACnotreal"})).await;
    assert_eq!(description(&answer), "Bad Request: wrong file identifier/HTTP URL specified");
    let (_, answer) = h.json("sendPhoto", json!({"chat_id": 42, "photo": "http://127.0.0.1:1/x.png"})).await;
    assert_eq!(description(&answer), "Bad Request: failed to get HTTP URL content");
    let (_, answer) = h.json("answerCallbackQuery", json!({"callback_query_id": "123"})).await;
    assert_eq!(
        description(&answer),
        "Bad Request: query is too old and response timeout expired or query ID is invalid"
    );

    let (status, _) = h.raw(h.http.get(h.method("getMe"))).await;
    assert_eq!(status, StatusCode::OK, "still serving after all of that");
}

#[tokio::test]
async fn edits_deletes_and_keyboards_behave_like_telegram() {
    let h = Harness::new(FakeConfig::default()).await;
    let user = SimUser::new(42, "Zed");
    h.fake.add_user(&user);
    let keyboard = json!({"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]});
    let (_, sent) = h
        .json(
            "sendMessage",
            json!({"chat_id": 42, "text": "*Hi*", "parse_mode": "MarkdownV2", "reply_markup": keyboard}),
        )
        .await;
    let id = sent["result"]["message_id"].as_i64().unwrap();
    assert_eq!(sent["result"]["entities"], json!([{"type": "bold", "offset": 0, "length": 2}]));

    // Same text, same keyboard: not modified. Same text without the keyboard: the keyboard goes.
    let (_, answer) = h.json("editMessageText", json!({"chat_id": 42, "message_id": id, "text": "*Hi*", "parse_mode": "MarkdownV2", "reply_markup": keyboard})).await;
    assert!(description(&answer).starts_with("Bad Request: message is not modified"));
    let (status, edited) = h
        .json("editMessageText", json!({"chat_id": 42, "message_id": id, "text": "*Hi*", "parse_mode": "MarkdownV2"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(edited["result"].get("reply_markup").is_none());
    assert!(h.fake.messages_to(42)[0].inline_buttons().is_empty());

    let (status, _) =
        h.json("editMessageReplyMarkup", json!({"chat_id": 42, "message_id": id, "reply_markup": keyboard})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, answer) = h.json("editMessageCaption", json!({"chat_id": 42, "message_id": id, "caption": "c"})).await;
    assert_eq!(description(&answer), "Bad Request: there is no caption in the message to edit");

    let user_message = h.fake.send_text(&user, "mine");
    let (_, answer) =
        h.json("editMessageText", json!({"chat_id": 42, "message_id": user_message.message_id, "text": "x"})).await;
    assert_eq!(description(&answer), "Bad Request: message can't be edited");

    let (status, _) = h.json("sendChatAction", json!({"chat_id": 42, "action": "upload_photo"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.json("deleteMessage", json!({"chat_id": 42, "message_id": id})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, answer) = h.json("deleteMessage", json!({"chat_id": 42, "message_id": id})).await;
    assert_eq!(description(&answer), "Bad Request: message to delete not found");
    assert!(h.fake.messages_to(42).is_empty());
    assert_eq!(h.fake.transcript(42).len(), 1, "the user's own message stays");
}

#[tokio::test]
async fn polling_conflicts_webhooks_and_allowed_updates() {
    let h = Harness::new(FakeConfig::default()).await;
    let first = tokio::spawn({
        let request = h.http.post(h.method("getUpdates")).json(&json!({"timeout": 5}));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    });
    h.fake.wait_for(|view| view.polls() >= 1, Duration::from_secs(2)).await.unwrap();
    let (status, second) = h.json("getUpdates", json!({"timeout": 0})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["result"], json!([]));
    let first = first.await.unwrap();
    assert_eq!(first["error_code"], 409);
    assert!(description(&first).starts_with("Conflict: terminated by other getUpdates request"));

    let (_, _) = h.json("setWebhook", json!({"url": "https://example.invalid/hook"})).await;
    let (status, answer) = h.json("getUpdates", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(description(&answer).contains("webhook is active"));
    let (_, info) = h.json("getWebhookInfo", json!({})).await;
    assert_eq!(info["result"]["url"], "https://example.invalid/hook");
    h.json("deleteWebhook", json!({"drop_pending_updates": true})).await;

    let user = SimUser::new(7, "Ann");
    h.json("getUpdates", json!({"allowed_updates": ["callback_query"]})).await;
    h.fake.send_text(&user, "filtered out");
    let (_, answer) = h.json("getUpdates", json!({})).await;
    assert_eq!(answer["result"], json!([]));
    h.json("getUpdates", json!({"allowed_updates": []})).await;
    h.fake.send_text(&user, "back");
    let (_, answer) = h.json("getUpdates", json!({})).await;
    assert_eq!(answer["result"][0]["message"]["text"], "back");
}

#[tokio::test]
async fn control_routes_drive_users_and_faults() {
    let h = Harness::new(FakeConfig::default()).await;
    let base = format!("{}/_fake", h.fake.base_url());

    let (status, sent) = h
        .raw(
            h.http
                .post(format!("{base}/users/99/text"))
                .json(&json!({"text": "/start", "first_name": "Script", "language_code": "de"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, updates) = h.json("getUpdates", json!({})).await;
    let message = &updates["result"][0]["message"];
    assert_eq!(updates["result"][0]["update_id"], sent["update_id"]);
    assert_eq!(message["from"]["first_name"], "Script");
    assert_eq!(message["from"]["language_code"], "de");
    assert_eq!(message["entities"][0]["type"], "bot_command");

    let (status, _) = h
        .raw(h.http.post(format!("{base}/users/99/photo?caption=hi%20there")).body(b"GIF89a\x04\x00\x02\x00".to_vec()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let rule = json!({"method": "sendMessage", "trigger": {"next": 1}, "action": {"retry_after": {"secs": 2}}});
    let (status, _) = h.raw(h.http.post(format!("{base}/faults")).json(&rule)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = h.json("sendMessage", json!({"chat_id": 99, "text": "hi"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        answer,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 2", "parameters": {"retry_after": 2}})
    );
    let (_, sent) = h.json("sendMessage", json!({"chat_id": 99, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}})).await;
    let id = sent["result"]["message_id"].clone();

    let (status, pressed) =
        h.raw(h.http.post(format!("{base}/users/99/press")).json(&json!({"message_id": id, "data": "a"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(pressed["query_id"].is_string());
    let (status, _) =
        h.raw(h.http.post(format!("{base}/users/99/press")).json(&json!({"message_id": id, "data": "zzz"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, calls) = h.raw(h.http.get(format!("{base}/calls"))).await;
    assert_eq!(calls.as_array().unwrap().len(), 2);
    assert_eq!(calls[0]["outcome"]["type"], "failed");
    let (_, messages) = h.raw(h.http.get(format!("{base}/chats/99/messages"))).await;
    assert_eq!(messages[0]["text"], "hi");
    let (_, transcript) = h.raw(h.http.get(format!("{base}/chats/99/transcript"))).await;
    assert_eq!(transcript.as_array().unwrap().len(), 3);
    assert_eq!(transcript[1]["text"], "hi there");

    let (status, _) =
        h.raw(h.http.put(format!("{base}/rate-limit/chat")).json(&json!({"max_messages": 1, "window": 60000}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.json("sendMessage", json!({"chat_id": 99, "text": "again"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = h.json("sendMessage", json!({"chat_id": 99, "text": "and again"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(answer["parameters"]["retry_after"].as_u64().unwrap() >= 59);
}

#[tokio::test]
async fn a_crowd_of_users_talks_at_once() {
    let h = Harness::new(FakeConfig::default()).await;
    let crowd = h.fake.add_crowd(40);
    for user in &crowd {
        h.fake.send_text(user, "hi");
    }
    let (_, updates) = h.json("getUpdates", json!({})).await;
    let updates = updates["result"].as_array().unwrap().clone();
    assert_eq!(updates.len(), 40);
    let languages: std::collections::HashSet<&str> =
        updates.iter().filter_map(|u| u["message"]["from"]["language_code"].as_str()).collect();
    assert!(languages.len() >= 5);
    let last = updates.last().unwrap()["update_id"].as_i64().unwrap();
    h.json("getUpdates", json!({"offset": last + 1})).await;
    assert_eq!(h.fake.pending_updates(), 0);
    h.fake.shutdown().await;
    assert!(h.http.get(h.method("getMe")).send().await.is_err(), "the listener is closed after shutdown");
}

#[tokio::test]
async fn get_chat_knows_users_who_wrote_and_webhook_info_says_polling() {
    let h = Harness::new(FakeConfig::default()).await;
    let (status, info) = h.json("getWebhookInfo", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["result"]["url"], "", "no webhook: long polling");

    let (status, unknown) = h.json("getChat", json!({"chat_id": 4242})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown, json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}));
    let (status, missing) = h.json("getChat", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(description(&missing).contains("chat_id"), "{missing}");

    h.fake.send_command(&SimUser::new(4242, "Ada"), "start", "");
    let (status, chat) = h.json("getChat", json!({"chat_id": "4242"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(chat["result"], json!({"id": 4242, "type": "private", "first_name": "Ada"}));
}
