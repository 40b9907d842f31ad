//! Telegram's flood control, as the fake Bot API emulates it: a user who sends prompts
//! faster than Telegram lets the bot answer one chat (on the shipped rate limits) gets every
//! notice, picture and button, and a broadcast keeps to the limit over all chats; the fake
//! never has to refuse a send.
//!
//! The fake's windows are a tenth shorter than the limits' second: the bot counts a send
//! when it releases it and the fake when it arrives, and the margin absorbs the difference
//! in transit. Unpaced sends arrive milliseconds apart and are refused all the same.

use mediagen_e2e::{ADMIN_ID, Stack, StackOptions};
use mediagen_telegram_fake::{Call, Content, FakeTelegram, RateLimit, SimUser};
use std::time::Duration;

/// Telegram's one-second windows, minus the margin for transit.
const WINDOW: Duration = Duration::from_millis(900);

/// The calls the fake refused with 429, with when they came.
fn refused(telegram: &FakeTelegram) -> Vec<String> {
    let calls: Vec<Call> = telegram.calls();
    calls
        .iter()
        .filter(|call| call.error().is_some_and(|e| e.starts_with("Too Many Requests")))
        .map(|call| format!("{} to {:?} at {:?}", call.method, call.chat_id, call.since_start))
        .collect()
}

/// Prompts sent at once.
const PROMPTS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_one_chat_keeps_telegrams_pace_and_no_send_is_refused() {
    let stack = Stack::start(StackOptions { shipped_rate_limits: true, ..StackOptions::default() }).await;
    let telegram = &stack.telegram;
    // Telegram's one message a second per chat.
    telegram.set_chat_rate_limit(Some(RateLimit { max_messages: 1, window: WINDOW }));
    let user = SimUser::new(7_001, "Burst").with_language("en");
    telegram.add_user(&user);

    for n in 0..PROMPTS {
        telegram.send_text(&user, &format!("a lighthouse in a storm, take {n}"));
    }
    let finished = telegram
        .wait_for(
            |view| {
                let messages = view.messages_to(user.id);
                let pictures = messages.iter().filter(|m| matches!(m.content, Content::Photo { .. })).count();
                let done = messages.iter().filter(|m| m.text.as_deref().is_some_and(|t| t.contains("is done"))).count();
                pictures == PROMPTS && done == PROMPTS
            },
            Duration::from_secs(60),
        )
        .await;

    let refused = refused(telegram);
    let calls = telegram.calls();
    let sends: Vec<&str> = calls
        .iter()
        .filter(|call| call.chat_id == Some(user.id) && call.method.starts_with("send"))
        .map(|call| call.method.as_str())
        .collect();
    let said: Vec<String> = telegram.messages_to(user.id).iter().map(|m| m.text().to_owned()).collect();
    println!("flood control: {} sends to one chat, {} refused: {sends:?}", sends.len(), refused.len());
    assert!(finished.is_ok(), "every picture and its final notice arrive; the bot said {said:#?}");
    assert!(refused.is_empty(), "the fake refused {refused:?}");
    // Each prompt: its queued notice, its picture and the buttons' follow-up, each sent once.
    assert_eq!(sends.iter().filter(|m| **m == "sendPhoto").count(), PROMPTS, "{sends:?}");
    assert_eq!(sends.len(), 3 * PROMPTS, "{sends:?}");
    stack.stop().await.expect("the bot stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_keeps_to_the_limit_over_all_chats_and_reaches_everyone() {
    const USERS: i64 = 8;
    // Four sends a second over all chats: a broadcast to eight users needs two seconds.
    let overall = ("MEDIAGEN__TELEGRAM__RATE_LIMITS__MESSAGES_PER_SEC_OVERALL".to_owned(), "4".to_owned());
    let stack = Stack::start(StackOptions { env: vec![overall], ..StackOptions::default() }).await;
    let telegram = &stack.telegram;
    let users: Vec<SimUser> = (0..USERS)
        .map(|i| {
            let user = SimUser::new(7_100 + i, format!("Listener{i}")).with_language("en");
            telegram.add_user(&user);
            telegram.send_command(&user, "start", "");
            user
        })
        .collect();
    let welcomed = telegram
        .wait_for(|view| users.iter().all(|u| !view.messages_to(u.id).is_empty()), Duration::from_secs(30))
        .await;
    assert!(welcomed.is_ok(), "every user is welcomed, and so known to the bot");

    telegram.set_global_rate_limit(Some(RateLimit { max_messages: 4, window: WINDOW }));
    let admin = SimUser::new(ADMIN_ID, "Operator").with_language("en");
    telegram.add_user(&admin);
    telegram.send_command(&admin, "broadcast", "the lighthouse reopens tonight");
    let summary = telegram
        .wait_for_value(
            |view| {
                view.messages_to(ADMIN_ID).iter().map(|m| m.text().to_owned()).find(|t| t.starts_with("Broadcast sent"))
            },
            Duration::from_secs(30),
        )
        .await;

    let refused = refused(telegram);
    let missed: Vec<i64> = users
        .iter()
        .filter(|u| !telegram.messages_to(u.id).iter().any(|m| m.text() == "the lighthouse reopens tonight"))
        .map(|u| u.id)
        .collect();
    assert_eq!(summary.ok().as_deref(), Some("Broadcast sent to 8 users (0 could not be reached)."));
    assert!(missed.is_empty(), "the broadcast missed {missed:?}");
    assert!(refused.is_empty(), "the fake refused {refused:?}");
    stack.stop().await.expect("the bot stops cleanly");
}
