//! The messenger's sends against the fake Bot API's flood control: a burst that Telegram
//! would answer with 429s goes out at the pace of the configured limits instead, every
//! message arrives and the fake never has to refuse one.
//!
//! The fake's windows are a tenth shorter than the limits' second: the throttle counts a
//! send when it releases it and the fake when it arrives, and this margin absorbs the
//! difference in transit between two requests on a busy machine. A burst sent without
//! pacing arrives within milliseconds and is refused all the same.

use mediagen_domain::{ChatId, JobId, Language};
use mediagen_ports::{MediaBytes, Messaging, MessagingError, Recipient, ResultMedia, UserNotice};
use mediagen_telegram::{Limits, TelegramMessaging, throttled};
use mediagen_telegram_fake::{FakeConfig, FakeTelegram, RateLimit, SimUser};
use std::time::Duration;
use teloxide::prelude::*;

/// Telegram's one-second windows, minus the margin for transit.
const WINDOW: Duration = Duration::from_millis(900);

/// A valid 1x1 PNG.
const TINY_PNG: [u8; 70] = [
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D,
    0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// The messenger over a throttled client pointed at `fake`, its connection already open
/// (so the first send does not pay for a connect that the later ones skip).
async fn messenger(fake: &FakeTelegram, limits: Limits) -> TelegramMessaging {
    let bot = throttled(Bot::new(fake.token()).set_api_url(fake.api_url()), limits);
    bot.get_me().await.expect("the fake answers getMe");
    TelegramMessaging::new(bot, Vec::new())
}

fn user(fake: &FakeTelegram, id: i64) -> Recipient {
    fake.add_user(&SimUser::new(id, format!("User{id}")).with_language("en"));
    Recipient { chat: ChatId(id), language: Language::En }
}

fn notice(n: usize) -> UserNotice {
    UserNotice::EnhancedPrompt { original: format!("prompt {n}"), enhanced: format!("burst message {n}") }
}

/// Every call the fake refused with 429, and how many calls it received in all.
fn refused(fake: &FakeTelegram) -> (Vec<String>, usize) {
    let calls = fake.calls();
    let refused = calls
        .iter()
        .filter(|call| call.error().is_some_and(|e| e.starts_with("Too Many Requests")))
        .map(|call| format!("{} to {:?}", call.method, call.chat_id))
        .collect();
    (refused, calls.iter().filter(|call| call.method != "getMe").count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_one_chat_goes_out_one_a_second_and_none_is_refused() {
    let limit = RateLimit { max_messages: 1, window: WINDOW };
    let fake = mediagen_telegram_fake::spawn(FakeConfig::default().with_chat_rate_limit(limit)).await.unwrap();
    let messaging = messenger(&fake, Limits::default()).await;
    let to = user(&fake, 501);
    let photo = || {
        ResultMedia::Bytes(MediaBytes {
            bytes: TINY_PNG.to_vec(),
            content_type: "image/png".to_owned(),
            file_name: "result.png".to_owned(),
        })
    };

    // Two notices and a result of two pictures (with its buttons' follow-up), all at once.
    let notices = futures::future::join_all((0..2).map(|n| {
        let notice = notice(n);
        let messaging = &messaging;
        async move { messaging.send_notice(to, &notice).await }
    }));
    let result = messaging.send_results(to, JobId(7), vec![photo(), photo()], false);
    let (notices, result) = tokio::join!(notices, result);

    let (refused, calls) = refused(&fake);
    assert!(refused.is_empty(), "the fake refused {refused:?}");
    for sent in notices {
        sent.expect("every notice is sent");
    }
    assert_eq!(result.expect("the result is sent").len(), 2, "both pictures delivered");
    assert_eq!(calls, 5, "two notices, two pictures and the buttons, each sent once");
    let texts: Vec<String> = fake.messages_to(to.chat.0).iter().map(|m| m.text().to_owned()).collect();
    for n in 0..2 {
        assert!(texts.iter().any(|t| t.contains(&format!("burst message {n}"))), "notice {n} in {texts:?}");
    }
    assert_eq!(fake.messages_to(to.chat.0).len(), 5, "{texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_many_chats_keeps_to_the_limit_over_all_chats() {
    let overall = RateLimit { max_messages: 2, window: WINDOW };
    let fake = mediagen_telegram_fake::spawn(FakeConfig { global_rate_limit: Some(overall), ..FakeConfig::default() })
        .await
        .unwrap();
    let limits = Limits { messages_per_sec_overall: 2, ..Limits::default() };
    let messaging = messenger(&fake, limits).await;
    let chats: Vec<Recipient> = (0..6).map(|i| user(&fake, 601 + i)).collect();

    // One message to each of six chats: within every chat's own limit, over the overall one.
    let sent = futures::future::join_all(chats.iter().enumerate().map(|(n, to)| {
        let notice = notice(n);
        let messaging = &messaging;
        async move { messaging.send_notice(*to, &notice).await }
    }))
    .await;

    let (refused, calls) = refused(&fake);
    assert!(refused.is_empty(), "the fake refused {refused:?}");
    let failed: Vec<&MessagingError> = sent.iter().filter_map(|s| s.as_ref().err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(calls, 6, "each sent once");
    for to in &chats {
        assert_eq!(fake.messages_to(to.chat.0).len(), 1, "chat {}", to.chat.0);
    }
}
