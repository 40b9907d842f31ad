//! Crashes: the real bot binary is killed with SIGKILL at random (seeded) moments during a
//! burst and restarted each time. Afterwards every accepted job has exactly one outcome,
//! told to its user; no job reached fal twice; nobody was charged twice; no hold is left open.
//!
//! Quick by default; `CRASH_JOBS` and `CRASH_KILLS` make it longer (`just chaos`).

mod reliability;

use mediagen_e2e::{BotProcess, Parts, StackOptions};
use mediagen_telegram_fake::SimUser;
use reliability::{ROOMY_PLANS, Rng, env_number, fal_audit, rescues, settle_down, tally};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_bot_at_random_moments_loses_nothing_and_runs_nothing_twice() {
    let total = env_number("CRASH_JOBS", 30);
    let kills = env_number("CRASH_KILLS", 10).max(1);
    let seed = env_number("CRASH_SEED", 0x00C0_FFEE_D00D);
    let options = StackOptions {
        plans: Some(ROOMY_PLANS.to_owned()),
        fal_limit: Some(4),
        env: vec![
            ("MEDIAGEN__ENGINE__LEASE_SECS".into(), "2".into()),
            ("MEDIAGEN__ENGINE__RESCUE_SECS".into(), "1".into()),
        ],
        ..StackOptions::default()
    };
    let parts = Parts::start(options).await;
    // Ten requests per user at most, well under the flood gate of 20 a minute.
    let user_count = total.div_ceil(10).max(10);
    let users: Vec<SimUser> = (0..user_count)
        .map(|i| {
            let user = SimUser::new(7_000 + i as i64, format!("Crash{i}")).with_language("en");
            parts.telegram.add_user(&user);
            user
        })
        .collect();

    let mut rng = Rng(seed);
    let per_cycle = total.div_ceil(kills);
    let mut sent = 0u64;
    let mut bot_lifetimes = Vec::new();
    for cycle in 0..kills {
        let bot = BotProcess::spawn(&parts, &[], &format!("bot-{cycle}"));
        for _ in 0..per_cycle {
            if sent < total {
                let user = &users[(sent % user_count) as usize];
                parts.telegram.send_text(user, &format!("crash test picture #{sent:05}#"));
                sent += 1;
            }
        }
        // Somewhere between start-up and a busy second or two: claims, submits, finishes,
        // deliveries all get hit over the cycles.
        let lifetime = Duration::from_millis(300 + rng.below(2_200));
        bot_lifetimes.push(lifetime.as_millis());
        tokio::time::sleep(lifetime).await;
        bot.kill().await;
    }

    let last = BotProcess::spawn(&parts, &[], "bot-final");
    let drained = parts.telegram.wait_for(|view| view.pending_updates() == 0, Duration::from_secs(60)).await.is_ok();
    let settled = settle_down(&parts.db, sent, Duration::from_secs(120)).await;
    // Final progress edits and notices get a moment to go out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let found = tally(&parts.db, &parts.telegram, &parts.fal).await;
    let audit = fal_audit(&parts.db, &parts.fal).await;
    println!(
        "crash: kills {kills} (after {bot_lifetimes:?} ms), requests sent {sent}, accepted {}; {}; {}; fal ran {} \
         (twice: {}), fal cost rows unlike fal's bill: {}",
        found.jobs,
        found.line(),
        rescues(parts.scratch()),
        audit.runs,
        audit.ran_twice.len(),
        audit.cost_mismatches.len(),
    );
    assert!(drained && settled, "the bot did not finish the burst; its log:\n{}", last.log_tail(40));
    assert_eq!(found.jobs as u64, sent, "every request sent was accepted, none lost with a killed process");
    assert!(found.lost.is_empty(), "jobs whose outcome never reached the user: {:?}", found.lost);
    assert!(found.unbuttoned.is_empty(), "results only half delivered: {:?}", found.unbuttoned);
    assert!(found.double_submits.is_empty(), "submitted to fal twice: {:?}", found.double_submits);
    assert!(audit.ran_twice.is_empty(), "fal ran these twice: {:?}", audit.ran_twice);
    assert!(
        audit.cost_mismatches.is_empty(),
        "fal cost unlike fal's bill (job, ours, fal's): {:?}",
        audit.cost_mismatches
    );
    assert!(found.missing_pictures.is_empty(), "told done without the picture: {:?}", found.missing_pictures);
    assert_eq!(found.double_charges, 0, "charged twice, or charged for a failure");
    assert!(found.unsettled.is_empty(), "holds left open: {:?}", found.unsettled);
    // Telegram has no idempotency key: a kill between a send and its record can repeat that
    // one send (at least once). Each kill can cost at most the sends it interrupted.
    assert!(found.duplicates as u64 <= kills, "{} duplicate deliveries for {kills} kills", found.duplicates);
    last.kill().await;
}
