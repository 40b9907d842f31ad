//! Telegram's flood control, as the fake Bot API emulates it, against the shipped rate
//! limits: a user who sends prompts faster than Telegram lets the bot answer one chat gets
//! every notice, picture and button, and the fake never has to refuse a send.

use mediagen_e2e::{Stack, StackOptions};
use mediagen_telegram_fake::{Content, RateLimit, SimUser};
use std::time::Duration;

/// Prompts sent at once.
const PROMPTS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_one_chat_keeps_telegrams_pace_and_no_send_is_refused() {
    let stack = Stack::start(StackOptions { shipped_rate_limits: true, ..StackOptions::default() }).await;
    let telegram = &stack.telegram;
    // Telegram's one message a second per chat. The fake's window is a tenth shorter: the
    // bot counts a send when it releases it and the fake when it arrives, and the margin
    // absorbs the difference in transit; unpaced sends arrive milliseconds apart anyway.
    telegram.set_chat_rate_limit(Some(RateLimit { max_messages: 1, window: Duration::from_millis(900) }));
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

    let calls = telegram.calls();
    let refused: Vec<String> = calls
        .iter()
        .filter(|call| call.error().is_some_and(|e| e.starts_with("Too Many Requests")))
        .map(|call| format!("{} at {:?}", call.method, call.since_start))
        .collect();
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
