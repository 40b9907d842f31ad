//! The whole bot against the fal simulator, the fake Bot API and a fresh database: the
//! flows a user and an operator go through.

use mediagen_e2e::{ADMIN_ID, Database, Stack, StackOptions, on_both_databases, tiny_png, with_pool};
use mediagen_telegram_fake::{ChatMessage, Content, SimUser};
use serde_json::json;
use std::time::Duration;

const COUNT_PURCHASES: &str = "SELECT COUNT(*) FROM credit_purchases";

const WAIT: Duration = Duration::from_secs(30);

fn user(stack: &Stack, id: i64) -> SimUser {
    let user = SimUser::new(id, format!("User{id}")).with_language("en");
    stack.telegram.add_user(&user);
    user
}

fn is_photo(message: &ChatMessage) -> bool {
    matches!(message.content, Content::Photo { .. } | Content::Document { .. })
}

fn text_of(message: &ChatMessage) -> &str {
    message.text.as_deref().unwrap_or("")
}

/// Waits until the bot has said something to `chat` containing `needle`; returns it.
async fn wait_for_text(stack: &Stack, chat: i64, needle: &str) -> String {
    let found = stack
        .telegram
        .wait_for_value(
            |view| view.messages_to(chat).iter().map(|m| text_of(m).to_owned()).find(|t| t.contains(needle)),
            WAIT,
        )
        .await;
    match found {
        Ok(text) => text,
        Err(_) => {
            let said: Vec<String> = stack.telegram.messages_to(chat).iter().map(|m| text_of(m).to_owned()).collect();
            panic!("the bot never said {needle:?} to {chat}; it said {said:#?}")
        }
    }
}

async fn wait_for_photo(stack: &Stack, chat: i64) {
    let ok = stack.telegram.wait_for(|view| view.messages_to(chat).iter().any(is_photo), WAIT).await;
    if ok.is_err() {
        let said: Vec<String> = stack.telegram.messages_to(chat).iter().map(|m| text_of(m).to_owned()).collect();
        panic!("no picture reached {chat}; the bot said {said:#?}");
    }
}

on_both_databases!(a_user_generates_an_image_and_is_charged_its_price);
async fn a_user_generates_an_image_and_is_charged_its_price(database: Database) {
    let stack = Stack::start(StackOptions { database, ..StackOptions::default() }).await;
    let ann = user(&stack, 1001);
    stack.telegram.send_text(&ann, "a red fox in fresh snow, watercolor");

    wait_for_photo(&stack, ann.id).await;
    let done = wait_for_text(&stack, ann.id, "is done").await;
    assert!(done.contains("$0.0390"), "charged the nano-banana list price: {done}");

    assert_eq!(stack.ledger(ann.id, "charge").await, 39_000);
    assert_eq!(stack.ledger(ann.id, "refund").await, 0);
    let main = stack.fal.handle().account("main").expect("main account");
    assert_eq!(main.jobs_succeeded, 1);
    stack.stop().await.expect("clean stop");
}

on_both_databases!(a_photo_with_a_caption_is_edited_from_uploaded_bytes_never_a_telegram_url);
async fn a_photo_with_a_caption_is_edited_from_uploaded_bytes_never_a_telegram_url(database: Database) {
    let stack = Stack::start(StackOptions { database, ..StackOptions::default() }).await;
    let bob = user(&stack, 1002);
    stack.telegram.send_photo(&bob, tiny_png(), Some("make it look like a comic"));

    wait_for_photo(&stack, bob.id).await;
    let requests = stack.fal.handle().requests();
    let edit = requests.iter().find(|r| r.endpoint.ends_with("nano-banana/edit")).expect("an edit request reached fal");
    let urls = edit.input["image_urls"].as_array().expect("image_urls");
    assert_eq!(urls.len(), 1);
    let url = urls[0].as_str().unwrap();
    assert!(url.starts_with(stack.fal.base_url().trim_end_matches('/')), "uploaded to fal storage: {url}");
    for request in &requests {
        let body = request.input.to_string();
        assert!(!body.contains("/file/bot") && !body.contains(stack.telegram.token()), "a Telegram URL leaked: {body}");
    }
    assert_eq!(stack.fal.handle().uploads().len(), 1, "the photo's bytes were uploaded once");
}

on_both_databases!(a_user_over_quota_is_told_when_it_resets);
async fn a_user_over_quota_is_told_when_it_resets(database: Database) {
    let plans = "default_plan = \"tiny\"\n[plans.tiny]\ndaily_jobs = 1\nmax_in_flight = 1\nmax_queued = 5\n";
    let stack = Stack::start(StackOptions { database, plans: Some(plans.to_owned()), ..StackOptions::default() }).await;
    let cid = user(&stack, 1003);
    stack.telegram.send_text(&cid, "first picture");
    wait_for_text(&stack, cid.id, "in the queue").await;
    stack.telegram.send_text(&cid, "second picture");

    let refusal = wait_for_text(&stack, cid.id, "Daily limit").await;
    let tomorrow = (chrono::Utc::now().date_naive() + chrono::Days::new(1)).format("%Y-%m-%d 00:00 UTC").to_string();
    assert!(refusal.contains(&tomorrow), "says when the limit resets ({tomorrow}): {refusal}");
    assert!(refusal.contains("1 of 1"), "{refusal}");
}

on_both_databases!(only_operators_may_top_up);
async fn only_operators_may_top_up(database: Database) {
    let stack = Stack::start(StackOptions { database, ..StackOptions::default() }).await;
    let eve = user(&stack, 1004);
    stack.telegram.send_text(&eve, "/topup main 100");
    wait_for_text(&stack, eve.id, "for the bot's operators").await;
    let purchases: i64 =
        with_pool!(stack.db, |pool| sqlx::query_scalar(COUNT_PURCHASES).fetch_one(pool).await).unwrap();
    assert_eq!(purchases, 0, "a refused command changes nothing");

    let admin = user(&stack, ADMIN_ID);
    stack.telegram.send_text(&admin, "/topup main 100");
    let reply = wait_for_text(&stack, ADMIN_ID, "Recorded a purchase").await;
    assert!(reply.contains("limit is now 20"), "$100 in the window means 20: {reply}");
    let purchases: i64 =
        with_pool!(stack.db, |pool| sqlx::query_scalar(COUNT_PURCHASES).fetch_one(pool).await).unwrap();
    assert_eq!(purchases, 1);
    stack.telegram.send_text(&admin, "/accounts");
    wait_for_text(&stack, ADMIN_ID, "main — active").await;
}

on_both_databases!(a_content_policy_refusal_is_explained_and_not_charged);
async fn a_content_policy_refusal_is_explained_and_not_charged(database: Database) {
    let stack = Stack::start(StackOptions { database, ..StackOptions::default() }).await;
    let dan = user(&stack, 1005);
    stack.telegram.send_text(&dan, "something forbidden [[fault:content_policy]]");
    let message = wait_for_text(&stack, dan.id, "content checker").await;
    assert!(message.contains("Refunded: $0.0390"), "{message}");
    assert_eq!(stack.ledger(dan.id, "charge").await, 0);
    assert_eq!(stack.ledger(dan.id, "refund").await, stack.ledger(dan.id, "hold").await);
    let requests = stack.fal.handle().requests();
    assert_eq!(requests.len(), 1, "a content-policy refusal is never retried");
}

on_both_databases!(a_twenty_megabyte_photo_gets_a_clear_error);
async fn a_twenty_megabyte_photo_gets_a_clear_error(database: Database) {
    let stack = Stack::start(StackOptions { database, ..StackOptions::default() }).await;
    let fay = user(&stack, 1006);
    let mut big = tiny_png();
    big.resize(20 * 1024 * 1024, 0);
    stack.telegram.send_document(&fay, big, "holiday.png", "image/png");
    let message = wait_for_text(&stack, fay.id, "MB").await;
    assert!(message.contains("20.0 MB") && message.contains("10.0 MB"), "{message}");
    assert!(stack.fal.handle().requests().is_empty(), "nothing reached fal");
    assert!(stack.fal.handle().uploads().is_empty(), "nothing was uploaded");
}

on_both_databases!(odd_updates_get_sensible_answers_and_nothing_crashes);
async fn odd_updates_get_sensible_answers_and_nothing_crashes(database: Database) {
    let stack = Stack::start(StackOptions { database, ..StackOptions::default() }).await;
    let gus = user(&stack, 1007);

    stack.telegram.send_text(&gus, "/frobnicate now");
    wait_for_text(&stack, gus.id, "don't know that command").await;

    stack.telegram.send_photo(&gus, tiny_png(), None);
    wait_for_text(&stack, gus.id, "prompt is empty").await;

    stack.telegram.push_update(
        json!({
            "message": {
                "message_id": 777,
                "date": 1_764_000_000,
                "chat": {"id": gus.id, "type": "private", "first_name": "User1007"},
                "from": {"id": gus.id, "is_bot": false, "first_name": "User1007", "language_code": "en"},
                "sticker": {
                    "file_id": "sticker-1", "file_unique_id": "s1", "type": "regular",
                    "width": 512, "height": 512, "is_animated": false, "is_video": false
                }
            }
        })
        .as_object()
        .unwrap()
        .clone(),
    );
    wait_for_text(&stack, gus.id, "only use text and images").await;

    stack.telegram.send_text(&gus, &"long ".repeat(1_000));
    wait_for_text(&stack, gus.id, "the limit is 2000").await;

    // Garbage that is not even a message: ignored, and the bot carries on.
    stack.telegram.push_update(json!({"weird_kind": {"x": 1}}).as_object().unwrap().clone());
    stack.telegram.send_text(&gus, "/help");
    wait_for_text(&stack, gus.id, "What I can do").await;
    stack.stop().await.expect("clean stop after hostile input");
}

on_both_databases!(unparsable_updates_do_not_hold_up_the_ones_behind_them);
/// Updates Telegram sends that cannot be parsed are dropped by the dispatcher without a
/// handler: the poller must not wait for them to be handled before the next batch.
async fn unparsable_updates_do_not_hold_up_the_ones_behind_them(database: Database) {
    let stack = Stack::start(StackOptions { database, ..StackOptions::default() }).await;
    let ida = user(&stack, 1008);
    // Ten batches of them: waiting out each batch's handling limit would take half a minute.
    for _ in 0..1_000 {
        stack.telegram.push_update(json!({"message": {"garbage": true}}).as_object().unwrap().clone());
    }
    stack.telegram.send_text(&ida, "/help");
    let answered = stack
        .telegram
        .wait_for(|view| view.messages_to(ida.id).iter().any(|m| text_of(m).contains("What I can do")), WAIT / 3)
        .await;
    assert!(answered.is_ok(), "the message behind the garbage was answered within {:?}", WAIT / 3);
    stack.stop().await.expect("clean stop");
}
