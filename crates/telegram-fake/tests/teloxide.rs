//! The real teloxide 0.17 client against the fake: every answer must be what teloxide parses,
//! and every error must map to the `RequestError`/`ApiError` a bot would see from Telegram.

use mediagen_telegram_fake::{FakeConfig, FakeTelegram, FaultRule, FileSource, RateLimit, SimUser, spawn};
use std::time::Duration;
use teloxide::net::Download;
use teloxide::prelude::*;
use teloxide::types::{
    ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, InputMedia, InputMediaPhoto, MessageId, ParseMode,
    UpdateKind,
};
use teloxide::{ApiError, RequestError};

const WAIT: Duration = Duration::from_secs(5);

async fn start() -> (FakeTelegram, Bot) {
    start_with(FakeConfig::default()).await
}

async fn start_with(config: FakeConfig) -> (FakeTelegram, Bot) {
    let fake = spawn(config).await.expect("the fake starts");
    let bot = Bot::new(fake.token()).set_api_url(fake.api_url());
    (fake, bot)
}

fn alice() -> SimUser {
    SimUser::new(501, "Alice").with_username("alice").with_language("en")
}

/// A 2x3 PNG header: enough for the fake to read dimensions.
fn png() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend_from_slice(&2u32.to_be_bytes());
    bytes.extend_from_slice(&3u32.to_be_bytes());
    bytes.extend_from_slice(b"\x08\x02\0\0\0 pretend pixels");
    bytes
}

/// The next update, by long polling, confirming everything before it.
async fn next_update(bot: &Bot, offset: &mut i32) -> Update {
    let updates = bot.get_updates().offset(*offset).timeout(5).await.expect("getUpdates works");
    let update = updates.into_iter().next().expect("an update arrives within the poll timeout");
    *offset = update.id.as_offset();
    update
}

fn message(update: Update) -> Message {
    match update.kind {
        UpdateKind::Message(message) => message,
        other => panic!("expected a message update, got {other:?}"),
    }
}

#[tokio::test]
async fn get_me_and_send_message_are_recorded() {
    let (fake, bot) = start().await;
    let me = bot.get_me().await.unwrap();
    assert!(me.user.is_bot);
    assert_eq!(me.user.id.0 as i64, fake.bot_id());
    assert_eq!(me.username(), fake.bot_username());

    let user = alice();
    fake.add_user(&user);
    let keyboard = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Again", "again:1")]]);
    let sent = bot
        .send_message(ChatId(user.id), "<b>Done</b> &lt;3")
        .parse_mode(ParseMode::Html)
        .reply_markup(keyboard)
        .await
        .unwrap();
    assert_eq!(sent.text(), Some("Done <3"));
    assert_eq!(sent.chat.id, ChatId(user.id));
    assert!(sent.from.as_ref().is_some_and(|from| from.is_bot));

    let calls = fake.calls_of("sendMessage");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "sendMessage", "teloxide calls /SendMessage; the record uses Telegram's spelling");
    assert_eq!(call.chat_id, Some(user.id));
    assert_eq!(call.text.as_deref(), Some("<b>Done</b> &lt;3"));
    assert_eq!(call.parse_mode.as_deref(), Some("HTML"));
    assert_eq!(call.reply_markup.as_ref().unwrap()["inline_keyboard"][0][0]["callback_data"], "again:1");
    assert_eq!(call.message_id(), Some(sent.id.0 as i64));

    let visible = fake.messages_to(user.id);
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0].text(), "Done <3");
    assert_eq!(visible[0].callback_data_for("Again").as_deref(), Some("again:1"));
}

#[tokio::test]
async fn long_poll_returns_early_with_a_users_text() {
    let (fake, bot) = start().await;
    let user = alice();
    let poll = tokio::spawn({
        let bot = bot.clone();
        async move { bot.get_updates().timeout(10).await }
    });
    fake.wait_for(|view| view.polls() >= 1, WAIT).await.unwrap();
    let started = tokio::time::Instant::now();
    let sent = fake.send_command(&user, "start", "ref42");

    let updates = poll.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "the poll returns as soon as the update exists");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].id.0 as i64, sent.update_id);
    let msg = message(updates[0].clone());
    assert_eq!(msg.id, MessageId(sent.message_id as i32));
    assert_eq!(msg.text(), Some("/start ref42"));
    assert_eq!(msg.chat.id, ChatId(user.id));
    assert!(msg.chat.is_private());
    let from = msg.from.expect("a private message has a sender");
    assert_eq!(from.id.0 as i64, user.id);
    assert!(!from.is_bot);
    assert_eq!(from.first_name, "Alice");
    assert_eq!(from.username.as_deref(), Some("alice"));
    assert_eq!(from.language_code.as_deref(), Some("en"));
    assert!((chrono::Utc::now() - msg.date).num_seconds().abs() < 5);

    // Without an offset the update is delivered again; with it, it is confirmed and gone.
    assert_eq!(bot.get_updates().await.unwrap().len(), 1);
    let after = bot.get_updates().offset(updates[0].id.as_offset()).await.unwrap();
    assert!(after.is_empty());
    assert_eq!(fake.pending_updates(), 0);

    // limit caps a batch.
    for n in 0..3 {
        fake.send_text(&user, &format!("m{n}"));
    }
    assert_eq!(bot.get_updates().limit(2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn photo_update_then_get_file_and_download_returns_the_exact_bytes() {
    let (fake, bot) = start().await;
    let user = alice();
    let bytes = png();
    fake.send_photo(&user, bytes.clone(), Some("make it blue"));
    let mut offset = 0;
    let msg = message(next_update(&bot, &mut offset).await);
    assert_eq!(msg.caption(), Some("make it blue"));
    let sizes = msg.photo().expect("a photo message");
    let largest = sizes.last().unwrap();
    assert_eq!((largest.width, largest.height), (2, 3));
    assert_eq!(largest.file.size as usize, bytes.len());

    let file = bot.get_file(largest.file.id.clone()).await.unwrap();
    assert_eq!(file.meta.size as usize, bytes.len());
    assert!(file.path.starts_with("photos/"));
    let mut downloaded = Vec::new();
    bot.download_file(&file.path, &mut downloaded).await.unwrap();
    assert_eq!(downloaded, bytes);

    let unknown = bot.get_file(teloxide::types::FileId("nope".into())).await.unwrap_err();
    assert!(matches!(unknown, RequestError::Api(ApiError::WrongFileIdOrUrl)), "{unknown:?}");
}

#[tokio::test]
async fn edit_message_text_and_the_real_not_modified_error() {
    let (fake, bot) = start().await;
    let user = alice();
    fake.add_user(&user);
    let chat = ChatId(user.id);
    let sent = bot.send_message(chat, "Queued…").await.unwrap();

    let edited = bot.edit_message_text(chat, sent.id, "Generating…").await.unwrap();
    assert_eq!(edited.text(), Some("Generating…"));
    assert!(edited.edit_date().is_some());

    let same = bot.edit_message_text(chat, sent.id, "Generating…").await.unwrap_err();
    assert!(matches!(same, RequestError::Api(ApiError::MessageNotModified)), "{same:?}");

    let missing = bot.edit_message_text(chat, MessageId(9999), "x").await.unwrap_err();
    assert!(matches!(missing, RequestError::Api(ApiError::MessageToEditNotFound)), "{missing:?}");

    let visible = fake.messages_to(user.id);
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0].text(), "Generating…");
    assert_eq!(visible[0].edit_count, 1);
    assert_eq!(fake.calls_of("editMessageText").iter().filter(|c| c.is_ok()).count(), 1);
}

#[tokio::test]
async fn send_photo_uploads_bytes_then_resends_by_file_id() {
    let (fake, bot) = start().await;
    let user = alice();
    fake.add_user(&user);
    let chat = ChatId(user.id);
    let bytes = png();

    let first =
        bot.send_photo(chat, InputFile::memory(bytes.clone()).file_name("result.png")).caption("Here").await.unwrap();
    let file_id = first.photo().unwrap().last().unwrap().file.id.clone();
    let upload = &fake.calls_of("sendPhoto")[0];
    assert_eq!(upload.upload_len(), Some(bytes.len() as u64));
    assert!(
        matches!(&upload.files[0].source, FileSource::Upload { file_name: Some(name), .. } if name == "result.png")
    );
    assert_eq!(upload.files[0].file_id.as_deref(), Some(file_id.0.as_str()));
    assert_eq!(fake.file_bytes(&file_id.0).unwrap(), bytes);

    let again = bot.send_photo(chat, InputFile::file_id(file_id.clone())).await.unwrap();
    assert_eq!(again.photo().unwrap().last().unwrap().file.id, file_id);
    let resend = &fake.calls_of("sendPhoto")[1];
    assert_eq!(resend.resent_file_id(), Some(file_id.0.as_str()));
    assert_eq!(resend.upload_len(), None);
    assert_eq!(fake.messages_to(user.id).len(), 2);

    // A document's id is no photo.
    let doc = bot.send_document(chat, InputFile::memory(&b"%PDF-1.4"[..]).file_name("a.pdf")).await.unwrap();
    let doc_id = doc.document().unwrap().file.id.clone();
    assert_eq!(doc.document().unwrap().file_name.as_deref(), Some("a.pdf"));
    let mismatch = bot.send_photo(chat, InputFile::file_id(doc_id)).await.unwrap_err();
    assert!(matches!(&mismatch, RequestError::Api(ApiError::Unknown(d)) if d == "Bad Request: type of file mismatch"));
}

#[tokio::test]
async fn album_from_a_user_and_media_group_from_the_bot() {
    let (fake, bot) = start().await;
    let user = alice();
    let sent = fake.send_album(&user, vec![png().into(), png().into()], Some("both")).unwrap();
    assert_eq!(sent.len(), 2);
    let updates = bot.get_updates().await.unwrap();
    let messages: Vec<Message> = updates.into_iter().map(message).collect();
    assert_eq!(messages.len(), 2);
    assert!(messages[0].media_group_id().is_some());
    assert_eq!(messages[0].media_group_id(), messages[1].media_group_id());
    assert_eq!(messages[0].caption(), Some("both"));
    assert_eq!(messages[1].caption(), None);

    let group = bot
        .send_media_group(
            ChatId(user.id),
            [
                InputMedia::Photo(InputMediaPhoto::new(InputFile::memory(png())).caption("1")),
                InputMedia::Photo(InputMediaPhoto::new(InputFile::memory(png()))),
            ],
        )
        .await
        .unwrap();
    assert_eq!(group.len(), 2);
    assert_eq!(group[0].media_group_id(), group[1].media_group_id());
    let call = &fake.calls_of("sendMediaGroup")[0];
    assert_eq!(call.files.len(), 2);
    assert_eq!(call.message_ids.len(), 2);
}

#[tokio::test]
async fn answer_callback_query_once_after_a_button_press() {
    let (fake, bot) = start_with(FakeConfig::default().with_callback_answer_deadline(Duration::from_millis(300))).await;
    let user = alice();
    fake.add_user(&user);
    let keyboard = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Cancel", "cancel:7")]]);
    let sent = bot.send_message(ChatId(user.id), "Job 7").reply_markup(keyboard).await.unwrap();

    assert!(fake.press_button(&user, sent.id.0 as i64, "not-there").is_err());
    let pressed = fake.press_button_labelled(&user, sent.id.0 as i64, "Cancel").unwrap();
    let mut offset = 0;
    let query = match next_update(&bot, &mut offset).await.kind {
        UpdateKind::CallbackQuery(query) => query,
        other => panic!("expected a callback query, got {other:?}"),
    };
    assert_eq!(query.id.0, pressed.query_id);
    assert_eq!(query.data.as_deref(), Some("cancel:7"));
    assert_eq!(query.from.id.0 as i64, user.id);
    assert_eq!(query.regular_message().map(|m| m.id), Some(sent.id));

    bot.answer_callback_query(query.id.clone()).text("Cancelled").await.unwrap();
    let answer = fake.calls_of("answerCallbackQuery")[0].callback_answer.clone().unwrap();
    assert_eq!(answer.text.as_deref(), Some("Cancelled"));

    // Telegram spells it "query ID"; teloxide 0.17 only matches "query id", so a bot sees Unknown.
    let twice = bot.answer_callback_query(query.id).await.unwrap_err();
    assert!(matches!(&twice, RequestError::Api(ApiError::Unknown(d)) if d.contains("query is too old")), "{twice:?}");

    let late = fake.press_button(&user, sent.id.0 as i64, "cancel:7").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let too_late = bot.answer_callback_query(teloxide::types::CallbackQueryId(late.query_id)).await.unwrap_err();
    assert!(matches!(too_late, RequestError::Api(ApiError::Unknown(_))), "{too_late:?}");
}

#[tokio::test]
async fn injected_429_surfaces_as_retry_after() {
    let (fake, bot) = start().await;
    let user = alice();
    fake.add_user(&user);
    fake.add_fault(FaultRule::retry_after("sendMessage", 1, 3)).unwrap();
    let error = bot.send_message(ChatId(user.id), "hi").await.unwrap_err();
    assert!(matches!(error, RequestError::RetryAfter(secs) if secs.seconds() == 3), "{error:?}");
    assert!(fake.messages_to(user.id).is_empty(), "a 429 has no effect");
    bot.send_message(ChatId(user.id), "hi").await.expect("the rule is spent");

    // Per-chat flood control: a second message within the window is refused.
    fake.set_chat_rate_limit(Some(RateLimit::one_per_second()));
    bot.send_message(ChatId(user.id), "one").await.unwrap();
    let flood = bot.send_message(ChatId(user.id), "two").await.unwrap_err();
    assert!(matches!(flood, RequestError::RetryAfter(secs) if secs.seconds() == 1), "{flood:?}");
    let other = SimUser::new(777, "Bob");
    fake.add_user(&other);
    bot.send_message(ChatId(other.id), "other chats are not affected").await.unwrap();
}

#[tokio::test]
async fn slow_send_photo_times_the_client_out_but_the_photo_is_delivered() {
    let fake = spawn(FakeConfig::default()).await.unwrap();
    let client = teloxide::net::default_reqwest_settings().timeout(Duration::from_millis(300)).build().unwrap();
    let bot = Bot::with_client(fake.token(), client).set_api_url(fake.api_url());
    let user = alice();
    fake.add_user(&user);
    fake.add_fault(FaultRule::slow_response("sendPhoto", 1, Duration::from_millis(800))).unwrap();
    let error = bot.send_photo(ChatId(user.id), InputFile::memory(png())).await.unwrap_err();
    assert!(matches!(error, RequestError::Network(_)), "{error:?}");
    assert_eq!(fake.messages_to(user.id).len(), 1, "the user got the photo although the bot saw a timeout");
}

#[tokio::test]
async fn a_stalled_send_is_delivered_late_even_to_a_client_that_gave_up() {
    let fake = spawn(FakeConfig::default()).await.unwrap();
    let client = teloxide::net::default_reqwest_settings().timeout(Duration::from_millis(200)).build().unwrap();
    let bot = Bot::with_client(fake.token(), client).set_api_url(fake.api_url());
    let user = alice();
    fake.add_user(&user);
    fake.add_fault(FaultRule::stall("sendMessage", 1, Duration::from_millis(400))).unwrap();
    let error = bot.send_message(ChatId(user.id), "late").await.unwrap_err();
    assert!(matches!(error, RequestError::Network(_)), "{error:?}");
    assert!(fake.messages_to(user.id).is_empty(), "not yet carried out");
    let late = fake.wait_for_messages_to(user.id, 1, WAIT).await.unwrap();
    assert_eq!(late[0].text(), "late");
}

#[tokio::test]
async fn a_second_poller_terminates_the_first() {
    let (fake, bot) = start().await;
    let first = tokio::spawn({
        let bot = bot.clone();
        async move { bot.get_updates().timeout(5).await }
    });
    fake.wait_for(|view| view.polls() >= 1, WAIT).await.unwrap();
    assert!(bot.get_updates().await.unwrap().is_empty());
    let error = first.await.unwrap().unwrap_err();
    assert!(matches!(error, RequestError::Api(ApiError::TerminatedByOtherGetUpdates)), "{error:?}");

    // teloxide only knows the short form of the webhook conflict, so this one is Unknown.
    bot.set_webhook("https://example.invalid/hook".parse().unwrap()).await.unwrap();
    let conflict = bot.get_updates().await.unwrap_err();
    assert!(
        matches!(&conflict, RequestError::Api(ApiError::Unknown(d)) if d.starts_with("Conflict: can't use getUpdates"))
    );
    bot.delete_webhook().await.unwrap();
    assert!(bot.get_updates().await.is_ok());
}

#[tokio::test]
async fn telegram_errors_map_to_teloxide_variants() {
    let (fake, bot) = start().await;
    let user = alice();
    let unknown_chat = bot.send_message(ChatId(42), "hi").await.unwrap_err();
    assert!(matches!(unknown_chat, RequestError::Api(ApiError::ChatNotFound)), "{unknown_chat:?}");

    fake.add_user(&user);
    let markdown = bot.send_message(ChatId(user.id), "Done.").parse_mode(ParseMode::MarkdownV2).await.unwrap_err();
    assert!(matches!(markdown, RequestError::Api(ApiError::CantParseEntities(_))), "{markdown:?}");
    let empty = bot.send_message(ChatId(user.id), " ").await.unwrap_err();
    assert!(matches!(empty, RequestError::Api(ApiError::MessageTextIsEmpty)), "{empty:?}");
    let long = bot.send_message(ChatId(user.id), "x".repeat(4097)).await.unwrap_err();
    assert!(matches!(long, RequestError::Api(ApiError::MessageIsTooLong)), "{long:?}");

    fake.set_blocked(&user, true);
    let blocked = bot.send_message(ChatId(user.id), "hi").await.unwrap_err();
    assert!(matches!(blocked, RequestError::Api(ApiError::BotBlocked)), "{blocked:?}");

    let wrong_token = Bot::new("1:wrong").set_api_url(fake.api_url());
    let unauthorized = wrong_token.get_me().await.unwrap_err();
    assert!(matches!(unauthorized, RequestError::Api(ApiError::InvalidToken)), "{unauthorized:?}");
}

#[tokio::test]
async fn size_limits_use_the_real_errors() {
    let (fake, bot) = start().await;
    let user = alice();
    fake.add_user(&user);
    let mut big_photo = png();
    big_photo.resize(10 * 1024 * 1024 + 1, 0);
    let refused = bot.send_photo(ChatId(user.id), InputFile::memory(big_photo)).await.unwrap_err();
    assert!(
        matches!(&refused, RequestError::Api(ApiError::Unknown(d)) if d == "Bad Request: PHOTO_SAVE_FILE_INVALID"),
        "{refused:?}"
    );

    fake.send_document(&user, vec![7u8; 20 * 1024 * 1024 + 1], "big.bin", "application/octet-stream");
    let mut offset = 0;
    let msg = message(next_update(&bot, &mut offset).await);
    let document = msg.document().unwrap();
    assert_eq!(document.file_name.as_deref(), Some("big.bin"));
    let too_big = bot.get_file(document.file.id.clone()).await.unwrap_err();
    assert!(matches!(&too_big, RequestError::Api(ApiError::Unknown(d)) if d == "Bad Request: file is too big"));
}

#[tokio::test]
async fn reply_to_a_bot_message_arrives_with_reply_to_message() {
    let (fake, bot) = start().await;
    let user = alice();
    fake.add_user(&user);
    let prompt = bot.send_message(ChatId(user.id), "Describe the picture").await.unwrap();
    fake.reply_to(&user, prompt.id.0 as i64, "a red fox").unwrap();
    let mut offset = 0;
    let msg = message(next_update(&bot, &mut offset).await);
    let original = msg.reply_to_message().expect("reply_to_message is filled in");
    assert_eq!(original.id, prompt.id);
    assert_eq!(original.text(), Some("Describe the picture"));
    let transcript = fake.transcript(user.id);
    assert_eq!(transcript.len(), 2);
    assert!(transcript[0].from_bot && !transcript[1].from_bot);
}

#[tokio::test]
async fn a_hostile_update_does_not_break_polling() {
    let (fake, bot) = start().await;
    let mut odd = serde_json::Map::new();
    odd.insert("message".into(), serde_json::json!({"message_id": "not a number", "chat": 5}));
    fake.push_update(odd);
    let sent = fake.send_text(&alice(), "still here");
    let updates = bot.get_updates().await.unwrap();
    assert_eq!(updates.len(), 2);
    assert!(matches!(updates[0].kind, UpdateKind::Error(_)), "teloxide keeps the id of an update it cannot parse");
    assert_eq!(updates[1].id.0 as i64, sent.update_id);
}

#[tokio::test]
async fn a_dispatcher_echo_bot_answers_and_shuts_down_cleanly() {
    let (fake, bot) = start().await;
    bot.set_my_commands([teloxide::types::BotCommand::new("start", "Start")]).await.unwrap();
    let handler = Update::filter_message().endpoint(|bot: Bot, msg: Message| async move {
        bot.send_message(msg.chat.id, format!("echo: {}", msg.text().unwrap_or_default())).await?;
        respond(())
    });
    let mut dispatcher = Dispatcher::builder(bot, handler).build();
    let shutdown = dispatcher.shutdown_token();
    let running = tokio::spawn(async move { dispatcher.dispatch().await });

    let users: Vec<SimUser> = (0..3).map(SimUser::generated).collect();
    for user in &users {
        fake.send_text(user, "hello");
    }
    for user in &users {
        let replies = fake.wait_for_messages_to(user.id, 1, WAIT).await.unwrap();
        assert_eq!(replies[0].text(), "echo: hello");
    }
    assert_eq!(fake.commands()[0]["command"], "start");
    assert!(fake.calls_of("getMe").len() == 1, "the dispatcher asks who it is once");

    // `shutdown()` refuses until the dispatcher has finished starting; that is quick.
    let stopped = loop {
        match shutdown.shutdown() {
            Ok(stopped) => break stopped,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    tokio::time::timeout(WAIT, stopped).await.expect("the dispatcher stops");
    tokio::time::timeout(WAIT, running).await.expect("dispatch returns").unwrap();
    assert_eq!(fake.pending_updates(), 0, "the final getUpdates confirmed every handled update");
    fake.shutdown().await;
}
