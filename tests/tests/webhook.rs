//! Webhook mode: the bot registers its URL with a secret token, refuses posts without the
//! token, and answers updates posted with it.

use mediagen_e2e::{Database, Listen, Stack, StackOptions, on_both_databases};
use mediagen_telegram_fake::SimUser;
use serde_json::json;
use std::time::Duration;

on_both_databases!(webhook_mode_checks_telegrams_secret_token);
async fn webhook_mode_checks_telegrams_secret_token(database: Database) {
    let stack =
        Stack::start(StackOptions { database, webhook: Some(Listen::Ephemeral), ..StackOptions::default() }).await;
    let url = stack.webhook_url().expect("webhook mode").to_owned();
    let sam = SimUser::new(5_001, "Sam").with_language("en");
    stack.telegram.add_user(&sam);

    let secret = stack
        .telegram
        .wait_for_value(
            |view| {
                view.calls_of("setWebhook")
                    .into_iter()
                    .find_map(|call| call.params["secret_token"].as_str().map(str::to_owned))
            },
            Duration::from_secs(30),
        )
        .await
        .expect("the bot registered its webhook with a secret token");
    let registered = stack.telegram.calls_of("setWebhook");
    assert_eq!(registered[0].params["url"].as_str(), Some(url.as_str()));

    let update = json!({
        "update_id": 77,
        "message": {
            "message_id": 1, "date": 1_764_000_000,
            "chat": {"id": sam.id, "type": "private", "first_name": "Sam"},
            "from": {"id": sam.id, "is_bot": false, "first_name": "Sam", "language_code": "en"},
            "text": "/help"
        }
    });
    let client = reqwest::Client::new();
    // The webhook is registered before its server binds: wait until it listens.
    let mut forged = client.post(&url).json(&update).send().await;
    for _ in 0..100 {
        if forged.as_ref().is_ok_and(|r| r.status() != 503) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        forged = client.post(&url).json(&update).send().await;
    }
    let forged = forged.expect("the webhook server listens");
    assert_eq!(forged.status(), 401, "a post without Telegram's secret token is refused");
    let wrong = client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", "not-the-secret")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let genuine =
        client.post(&url).header("X-Telegram-Bot-Api-Secret-Token", &secret).json(&update).send().await.unwrap();
    assert_eq!(genuine.status(), 200);

    let answered = stack
        .telegram
        .wait_for(
            |view| {
                view.messages_to(sam.id).iter().any(|m| m.text.as_deref().is_some_and(|t| t.contains("What I can do")))
            },
            Duration::from_secs(30),
        )
        .await;
    assert!(answered.is_ok(), "the genuine update was answered: {:?}", stack.telegram.messages_to(sam.id));
    let help_replies = stack.telegram.messages_to(sam.id).len();
    assert_eq!(help_replies, 1, "the refused posts produced nothing");
    stack.stop().await.expect("clean stop");
}
