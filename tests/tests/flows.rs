//! More user flows end to end: progress edits, languages, buttons, replies, albums, history.

use mediagen_e2e::{Database, Stack, StackOptions, on_both_databases, tiny_png, with_pool};
use mediagen_telegram_fake::{ChatMessage, Content, SimUser};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn user(stack: &Stack, id: i64, language: &str) -> SimUser {
    let user = SimUser::new(id, format!("User{id}")).with_language(language);
    stack.telegram.add_user(&user);
    user
}

fn text_of(message: &ChatMessage) -> &str {
    message.text.as_deref().unwrap_or("")
}

fn photos(messages: &[ChatMessage]) -> Vec<&ChatMessage> {
    messages.iter().filter(|m| matches!(m.content, Content::Photo { .. })).collect()
}

async fn wait_for_message(stack: &Stack, chat: i64, needle: &str) -> ChatMessage {
    let found = stack
        .telegram
        .wait_for_value(|view| view.messages_to(chat).into_iter().find(|m| text_of(m).contains(needle)), WAIT)
        .await;
    found.unwrap_or_else(|_| {
        let said: Vec<String> = stack.telegram.messages_to(chat).iter().map(|m| text_of(m).to_owned()).collect();
        panic!("the bot never said {needle:?} to {chat}; it said {said:#?}")
    })
}

async fn wait_for_photos(stack: &Stack, chat: i64, count: usize) -> Vec<ChatMessage> {
    let found = stack
        .telegram
        .wait_for_value(
            |view| {
                let messages = view.messages_to(chat);
                (photos(&messages).len() >= count).then(|| photos(&messages).into_iter().cloned().collect())
            },
            WAIT,
        )
        .await;
    found.unwrap_or_else(|_| {
        let said: Vec<String> = stack.telegram.messages_to(chat).iter().map(|m| text_of(m).to_owned()).collect();
        panic!("fewer than {count} pictures reached {chat}; the bot said {said:#?}")
    })
}

fn first_button_data(message: &ChatMessage) -> String {
    let markup = message.reply_markup.as_ref().expect("a keyboard");
    markup["inline_keyboard"][0][0]["callback_data"].as_str().expect("callback data").to_owned()
}

on_both_databases!(the_progress_message_is_edited_to_done_and_russian_users_read_russian);
async fn the_progress_message_is_edited_to_done_and_russian_users_read_russian(database: Database) {
    let stack = Stack::start(StackOptions { database, ..StackOptions::default() }).await;
    let olga = user(&stack, 2001, "ru");
    stack.telegram.send_text(&olga, "кот в космосе");
    wait_for_photos(&stack, olga.id, 1).await;
    let progress = wait_for_message(&stack, olga.id, "готово").await;
    assert!(progress.edit_count >= 1, "one message per job, edited as it moves: {progress:?}");
    assert!(text_of(&progress).contains("Задание №"), "{}", text_of(&progress));

    stack.telegram.send_text(&olga, "/help");
    wait_for_message(&stack, olga.id, "Что я умею").await;
}

on_both_databases!(img_offers_models_with_prices_and_a_button_press_generates);
async fn img_offers_models_with_prices_and_a_button_press_generates(database: Database) {
    let stack = Stack::start(StackOptions { database, ..StackOptions::default() }).await;
    let pia = user(&stack, 2002, "en");
    stack.telegram.send_text(&pia, "/img a lighthouse at dusk");
    let menu = wait_for_message(&stack, pia.id, "Choose a model").await;
    let labels: Vec<String> = menu.reply_markup.as_ref().unwrap()["inline_keyboard"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|b| b["text"].as_str().unwrap().to_owned()))
        .collect();
    assert!(labels.iter().all(|l| l.contains('$')), "every option shows its price: {labels:?}");
    assert!(labels.iter().any(|l| l.contains("$0.0400")), "FLUX Pro 1024x1024 is $0.04: {labels:?}");

    stack.telegram.press_button(&pia, menu.message_id, &first_button_data(&menu)).unwrap();
    wait_for_photos(&stack, pia.id, 1).await;
    let answered = stack.telegram.calls_of("answerCallbackQuery");
    assert_eq!(answered.len(), 1, "the button press was answered");

    // A forged button is refused politely, and changes nothing.
    let before = stack.fal.handle().requests().len();
    let result = stack.telegram.press_button(&pia, menu.message_id, "p:999999:0:0");
    assert!(result.is_err(), "the fake only presses buttons that exist");
    assert_eq!(stack.fal.handle().requests().len(), before);
}

on_both_databases!(replying_to_a_result_edits_it_and_history_resends_by_file_id);
async fn replying_to_a_result_edits_it_and_history_resends_by_file_id(database: Database) {
    let stack = Stack::start(StackOptions { database, ..StackOptions::default() }).await;
    let quinn = user(&stack, 2003, "en");
    stack.telegram.send_text(&quinn, "a small wooden boat");
    let first = wait_for_photos(&stack, quinn.id, 1).await;

    stack.telegram.reply_to(&quinn, first[0].message_id, "paint it red").unwrap();
    wait_for_photos(&stack, quinn.id, 2).await;
    let edits: Vec<_> =
        stack.fal.handle().requests().into_iter().filter(|r| r.endpoint.ends_with("nano-banana/edit")).collect();
    assert_eq!(edits.len(), 1, "the reply became an edit of the replied picture");
    // A picture's Telegram file id is stored just after it is sent, and the job is marked
    // delivered after that: only then can /history re-send both by file id.
    let sql = "SELECT count(*) FROM jobs WHERE user_id = $1 AND delivered_at IS NOT NULL";
    let deadline = tokio::time::Instant::now() + WAIT;
    while with_pool!(stack.db, |pool| sqlx::query_scalar::<_, i64>(sql).bind(quinn.id).fetch_one(pool).await).unwrap()
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline, "both jobs were never marked delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stack.telegram.send_text(&quinn, "/history");
    wait_for_message(&stack, quinn.id, "Your latest jobs").await;
    wait_for_photos(&stack, quinn.id, 4).await;
    let resent = stack.telegram.calls_of("sendPhoto").iter().filter(|c| c.resent_file_id().is_some()).count();
    assert!(resent >= 2, "history re-sends both pictures by file id, got {resent}");
}

on_both_databases!(an_album_becomes_one_edit_and_too_many_photos_are_refused);
async fn an_album_becomes_one_edit_and_too_many_photos_are_refused(database: Database) {
    let stack = Stack::start(StackOptions { database, ..StackOptions::default() }).await;
    let ray = user(&stack, 2004, "en");
    stack.telegram.send_album(&ray, vec![tiny_png().into(), tiny_png().into()], Some("put them side by side")).unwrap();
    wait_for_photos(&stack, ray.id, 1).await;
    let edit = stack
        .fal
        .handle()
        .requests()
        .into_iter()
        .find(|r| r.endpoint.ends_with("nano-banana/edit"))
        .expect("an edit reached fal");
    assert_eq!(edit.input["image_urls"].as_array().unwrap().len(), 2, "both photos in one job");

    stack.telegram.send_album(&ray, (0..4).map(|_| tiny_png().into()).collect(), Some("all four")).unwrap();
    let refusal = wait_for_message(&stack, ray.id, "at most 3").await;
    assert!(text_of(&refusal).contains("4 images"), "{}", text_of(&refusal));
}

on_both_databases!(enhance_is_a_paid_job_billed_as_fal_bills_it_and_a_repeat_is_free);
async fn enhance_is_a_paid_job_billed_as_fal_bills_it_and_a_repeat_is_free(database: Database) {
    let stack = Stack::start(StackOptions { database, ..StackOptions::default() }).await;
    let eve = user(&stack, 2010, "en");
    stack.telegram.send_text(&eve, "/enhance a fox asleep in the snow");
    let rewrite = wait_for_message(&stack, eve.id, "Improved:").await;
    assert!(text_of(&rewrite).contains("a fox asleep in the snow"), "{}", text_of(&rewrite));
    wait_for_message(&stack, eve.id, "Choose a model").await;

    // One job for the prompt helper, settled: charged what fal billed, the rest refunded.
    let sql = "SELECT j.state, j.spec->>'model',
                (SELECT amount_micros FROM ledger WHERE job_id = j.id AND kind = 'hold'),
                (SELECT amount_micros FROM ledger WHERE job_id = j.id AND kind = 'charge'),
                coalesce((SELECT amount_micros FROM ledger WHERE job_id = j.id AND kind = 'refund'), 0),
                (SELECT amount_micros FROM ledger WHERE job_id = j.id AND kind = 'fal_cost')
         FROM jobs j WHERE j.user_id = $1";
    let (state, model, hold, charge, refund, fal_cost): (String, String, i64, i64, i64, i64) =
        with_pool!(stack.db, |pool| sqlx::query_as(sql).bind(eve.id).fetch_one(pool).await)
            .expect("exactly one job for the rewrite");
    assert_eq!(state, "succeeded");
    assert_eq!(model, "openrouter/router", "a job of the prompt helper's model");
    let sim = stack.fal.handle();
    assert_eq!(sim.runs_for_prompt("a fox asleep in the snow"), 1, "fal ran the call once");
    let billed = sim.billed_for_prompt("a fox asleep in the snow").micros();
    assert!(billed > 0, "fal billed the call");
    assert_eq!(fal_cost, billed, "our record of fal's cost is fal's bill");
    assert_eq!(charge, billed, "the user pays the call's real price");
    assert_eq!(charge + refund, hold, "what was held is charged or refunded, nothing else");
    // The operator's usage report shows the call under the prompt helper's model.
    let storage = stack.db.storage();
    let now = chrono::Utc::now();
    let usage = storage
        .usage
        .usage_by_model(now - chrono::TimeDelta::hours(1), now + chrono::TimeDelta::hours(1))
        .await
        .unwrap();
    let helper =
        usage.iter().find(|row| row.model.as_str() == "openrouter/router").expect("a report row for the helper");
    assert_eq!((helper.succeeded, helper.user_charged.micros(), helper.fal_cost.micros()), (1, charge, billed));

    // The same prompt again, up to case and spacing: answered from the cache, no job, no call.
    stack.telegram.send_text(&eve, "/enhance A fox  asleep in the SNOW");
    stack
        .telegram
        .wait_for(
            |view| view.messages_to(eve.id).iter().filter(|m| text_of(m).contains("Improved:")).count() >= 2,
            WAIT,
        )
        .await
        .expect("the repeat is answered");
    assert_eq!(sim.requests_for_prompt("asleep in the").len(), 1, "the repeat sent nothing to fal");
    let sql = "SELECT count(*) FROM jobs WHERE user_id = $1";
    let jobs: i64 = with_pool!(stack.db, |pool| sqlx::query_scalar(sql).bind(eve.id).fetch_one(pool).await).unwrap();
    assert_eq!(jobs, 1, "the repeat held nothing");
}
