//! Hostile input at volume: thousands of generated updates of every bad kind from a few
//! users, one of them flooding. Nothing panics, everyone gets an answer, and the flooding user
//! never holds more than their plan's share of the fal account.

use mediagen_e2e::{Stack, StackOptions, with_pool};
use mediagen_telegram_fake::SimUser;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

/// Updates generated; `HOSTILE_UPDATES` raises it for `just chaos`.
fn update_count() -> usize {
    std::env::var("HOSTILE_UPDATES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_500)
}

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn nasty_text(rng: &mut Rng) -> String {
    match rng.below(9) {
        0 => String::new(),
        1 => "x".repeat(5_000 + rng.below(5_000) as usize),
        2 => "\u{0000}\u{0007}\u{001b}[31m\u{202e}".repeat(1 + rng.below(20) as usize),
        3 => format!(
            "/{}",
            ["frob", "", "@", "img@other_bot", "topup main 1000", "block 1", "broadcast hi"][rng.below(7) as usize]
        ),
        4 => "/img".to_owned(),
        5 => "/enhance".to_owned(),
        6 => "🦊".repeat(1 + rng.below(3_000) as usize),
        7 => "/settings size 99999x99999".to_owned(),
        _ => format!("a harmless cat number {}", rng.below(1_000_000)),
    }
}

fn raw_message(user: &SimUser, message_id: i64, body: Value) -> serde_json::Map<String, Value> {
    let mut message = json!({
        "message_id": message_id,
        "date": 1_764_000_000,
        "chat": {"id": user.id, "type": "private", "first_name": user.first_name},
        "from": {"id": user.id, "is_bot": false, "first_name": user.first_name, "language_code": "en"},
    });
    if let (Some(target), Some(extra)) = (message.as_object_mut(), body.as_object()) {
        target.extend(extra.clone());
    }
    json!({ "message": message }).as_object().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_hostile_updates_get_answers_and_the_flooder_gets_no_more_than_a_fair_share() {
    let stack = Stack::start(StackOptions { fal_limit: Some(4), ..StackOptions::default() }).await;
    let users: Vec<SimUser> = (0..8)
        .map(|i| {
            let user =
                SimUser::new(3_000 + i, format!("Hostile{i}")).with_language(if i % 2 == 0 { "en" } else { "ru" });
            stack.telegram.add_user(&user);
            user
        })
        .collect();
    let flooder = &users[0];
    let storm_started = std::time::Instant::now();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut message_id = 50_000;

    for n in 0..update_count() {
        // Half of everything comes from the flooder.
        let user = if n % 2 == 0 { flooder } else { &users[1 + rng.below(7) as usize] };
        message_id += 1;
        match rng.below(10) {
            0..=4 => {
                stack.telegram.send_text(user, &nasty_text(&mut rng));
            }
            5 => {
                // A photo that is not an image at all, with or without a caption.
                let caption = (rng.below(2) == 0).then_some("make it pretty");
                stack.telegram.send_document(user, b"%PDF-1.7 not a picture".to_vec(), "doc.pdf", "application/pdf");
                if let Some(caption) = caption {
                    stack.telegram.send_text(user, caption);
                }
            }
            6 => {
                // An album above the model's limit.
                let photos = (0..(4 + rng.below(6))).map(|_| bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\n")).collect();
                let _ = stack.telegram.send_album(user, photos, Some("combine them all"));
            }
            7 => {
                // Forged callback data on a message that may not exist.
                let data = ["a:1", "p:999:9:9", "c:-5", "s:root", "", "v:99999999999", "zzz"][rng.below(7) as usize];
                stack.telegram.push_update(
                    json!({"callback_query": {
                        "id": format!("forged-{n}"),
                        "from": {"id": user.id, "is_bot": false, "first_name": user.first_name},
                        "chat_instance": "1",
                        "data": data,
                        "message": {"message_id": message_id, "date": 1_764_000_000,
                                    "chat": {"id": user.id, "type": "private", "first_name": user.first_name},
                                    "text": "old"}
                    }})
                    .as_object()
                    .unwrap()
                    .clone(),
                );
            }
            8 => {
                // Stickers, voice notes and locations: kinds the bot does not use.
                let body = [
                    json!({"sticker": {"file_id": "s", "file_unique_id": "s", "type": "regular", "width": 1, "height": 1, "is_animated": false, "is_video": false}}),
                    json!({"voice": {"file_id": "v", "file_unique_id": "v", "duration": 1}}),
                    json!({"location": {"latitude": 1.0, "longitude": 2.0}}),
                ][rng.below(3) as usize]
                    .clone();
                stack.telegram.push_update(raw_message(user, message_id, body));
            }
            _ => {
                // Not even a well-formed update.
                stack.telegram.push_update(json!({"message": {"garbage": true}}).as_object().unwrap().clone());
            }
        }
    }

    // Everyone who wrote got answers, and the bot keeps serving: a newcomer still gets a picture.
    let newcomer = SimUser::new(3_999, "Late").with_language("en");
    stack.telegram.add_user(&newcomer);
    stack.telegram.send_text(&newcomer, "a calm lake at dawn");
    let served = stack
        .telegram
        .wait_for(
            |view| {
                view.messages_to(newcomer.id)
                    .iter()
                    .any(|m| matches!(m.content, mediagen_telegram_fake::Content::Photo { .. }))
            },
            Duration::from_secs(120),
        )
        .await;
    assert!(served.is_ok(), "after the storm the bot still serves a newcomer");
    for user in &users {
        let answers = stack.telegram.messages_to(user.id);
        assert!(!answers.is_empty(), "{} got no answer at all", user.id);
        assert!(answers.iter().all(|m| !m.text.as_deref().is_some_and(str::is_empty)), "no empty messages");
    }
    let flood_refusals = stack
        .telegram
        .messages_to(flooder.id)
        .iter()
        .filter(|m| m.text.as_deref().is_some_and(|t| t.contains("Too many requests")))
        .count();
    assert!(flood_refusals > 0, "the flooder was told to slow down");
    // Told once per flood window, not once per update: a flood costs no outgoing messages.
    let windows = storm_started.elapsed().as_secs() / 60 + 1;
    assert!(flood_refusals as u64 <= windows, "{flood_refusals} refusals in {windows} one-minute windows");

    // The flooder's share: never more jobs at fal at once than the free plan's two.
    let sql = "SELECT id FROM jobs WHERE user_id = $1";
    let flood_jobs: Vec<i64> =
        with_pool!(stack.db, |pool| sqlx::query_scalar(sql).bind(flooder.id).fetch_all(pool).await).unwrap();
    assert!(flood_jobs.len() <= 20, "the flood gate admits at most 20 requests a minute, got {}", flood_jobs.len());
    let mut events: Vec<(u64, i32)> = Vec::new();
    // Matched by fal's request id, not by prompt: other users send the same captions.
    let sql = "SELECT e.request_id FROM job_events e JOIN jobs j ON j.id = e.job_id \
               WHERE j.user_id = $1 AND e.request_id IS NOT NULL \
               UNION SELECT request_id FROM jobs WHERE user_id = $1 AND request_id IS NOT NULL";
    let flood_requests: HashSet<String> =
        with_pool!(stack.db, |pool| sqlx::query_scalar::<_, String>(sql).bind(flooder.id).fetch_all(pool).await)
            .unwrap()
            .into_iter()
            .collect();
    for request in stack.fal.handle().requests() {
        if !flood_requests.contains(&request.request_id) {
            continue;
        }
        if let (Some(start), Some(end)) = (request.started_ms, request.completed_ms) {
            events.push((start, 1));
            events.push((end, -1));
        }
    }
    assert!(!events.is_empty(), "some of the flooder's requests did reach fal (the check below is not vacuous)");
    events.sort_by_key(|(at, delta)| (*at, *delta));
    let mut running = 0;
    let mut peak = 0;
    for (_, delta) in events {
        running += delta;
        peak = peak.max(running);
    }
    assert!(peak <= 2, "the flooder had {peak} jobs running at fal at once; the free plan allows 2");
    let main = stack.fal.handle().account("main").unwrap();
    assert!(main.max_in_progress <= main.limit, "the account limit held");
    stack.stop().await.expect("the bot survives and stops cleanly");
}
