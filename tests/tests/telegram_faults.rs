//! Bot API faults during a burst: flood control (429 with `retry_after`) on sends, photo
//! uploads answered late, and one photo whose answer comes after the client gave up (a
//! timeout for a message Telegram did deliver). Every result arrives, late but once; every
//! job's final notice arrives.
//!
//! Quick by default; `TELEGRAM_FAULT_JOBS` makes it longer (`just chaos`).

mod reliability;

use mediagen_e2e::{Stack, StackOptions, with_pool};
use mediagen_telegram_fake::{FaultRule, SimUser};
use reliability::{ROOMY_PLANS, env_number, photos_to, settle_down, tally};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_api_faults_delay_messages_but_lose_and_repeat_none() {
    let total = env_number("TELEGRAM_FAULT_JOBS", 20);
    let stack = Stack::start(StackOptions { plans: Some(ROOMY_PLANS.to_owned()), ..StackOptions::default() }).await;
    let telegram = &stack.telegram;
    for rule in [
        FaultRule::retry_after_rate("sendPhoto", 0.3, 1),
        FaultRule::retry_after_rate("sendMessage", 0.15, 1),
        FaultRule::retry_after_rate("editMessageText", 0.15, 1),
        // Late, within the client's 17 s timeout.
        FaultRule::stall("sendPhoto", 3, Duration::from_secs(4)),
    ] {
        telegram.add_fault(rule).expect("a valid fault");
    }
    let user_count = total.div_ceil(5).max(4);
    let users: Vec<SimUser> = (0..user_count)
        .map(|i| {
            let user = SimUser::new(9_000 + i as i64, format!("Flood{i}")).with_language("en");
            telegram.add_user(&user);
            user
        })
        .collect();
    let started = Instant::now();
    for n in 0..total {
        if n == total / 2 {
            // One photo is carried out at once but answered after the client's timeout.
            telegram.add_fault(FaultRule::slow_response("sendPhoto", 1, Duration::from_secs(18))).unwrap();
        }
        telegram.send_text(&users[(n % user_count) as usize], &format!("telegram fault picture number {n}"));
    }
    let settled = settle_down(&stack.db, total, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let found = tally(&stack.db, telegram, &stack.fal).await;
    let calls = telegram.calls();
    let flood_answers = calls.iter().filter(|c| format!("{:?}", c.outcome).contains("429")).count();

    // Pictures per user against the jobs that succeeded for them: nothing lost, nothing twice.
    let mut missing = Vec::new();
    let mut repeated = Vec::new();
    for user in &users {
        let sql = "SELECT count(*) FROM jobs WHERE user_id = $1 AND state = 'succeeded'";
        let expected: i64 =
            with_pool!(stack.db, |pool| sqlx::query_scalar(sql).bind(user.id).fetch_one(pool).await).unwrap();
        let got = photos_to(telegram, user.id) as i64;
        if got < expected {
            missing.push((user.id, expected, got));
        } else if got > expected {
            repeated.push((user.id, expected, got));
        }
    }
    println!(
        "telegram faults: {} in {:.1} s; flood-control answers {flood_answers}; pictures missing {:?}, \
         repeated {:?}",
        found.line(),
        started.elapsed().as_secs_f64(),
        missing,
        repeated,
    );
    assert!(settled, "not every job ended and was told");
    assert_eq!(found.jobs as u64, total, "every request was accepted");
    assert_eq!(found.succeeded, found.jobs, "Bot API faults do not fail jobs");
    assert!(missing.is_empty(), "pictures lost: {missing:?}");
    assert!(repeated.is_empty(), "pictures sent twice: {repeated:?}");
    assert!(found.lost.is_empty(), "outcomes that never reached the user: {:?}", found.lost);
    // A result whose answer timed out is not sent again, buttons included.
    assert!(found.unbuttoned.len() <= 1, "only the timed-out send lacks its buttons: {:?}", found.unbuttoned);
    assert_eq!(found.duplicates, 0, "results delivered twice");
    assert!(found.double_charges == 0 && found.unsettled.is_empty());
    assert!(flood_answers > 0, "flood control did answer 429");
    stack.stop().await.expect("the bot stops cleanly");
}
