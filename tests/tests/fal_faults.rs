//! fal faults during a burst over three accounts: 10% of jobs fail with a 5xx at result
//! time, 2% are refused by the content checker, submits get bursts of 429, account `b` is
//! locked mid-run and account `c`'s key is refused outright. Every retryable job still
//! succeeds on some account; content-policy refusals are reported (not charged); the
//! operator gets one alert per incident; nobody pays for a 5xx.
//!
//! Quick by default; `FAL_FAULT_JOBS` makes it longer (`just chaos`).

mod reliability;

use mediagen_e2e::{ADMIN_ID, FalAccount, Stack, StackOptions, with_pool};
use mediagen_fal_sim::{FaultKind, FaultRule, OutcomeKind};
use mediagen_telegram_fake::SimUser;
use reliability::{ROOMY_PLANS, env_number, settle_down, tally};
use std::collections::HashMap;
use std::time::Duration;

/// nano-banana's list price, in micro-dollars.
const PRICE: i64 = 39_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fal_faults_are_retried_reported_alerted_once_and_never_charged() {
    let total = env_number("FAL_FAULT_JOBS", 40);
    let options = StackOptions {
        plans: Some(ROOMY_PLANS.to_owned()),
        fal_accounts: vec![FalAccount::new("main", 3), FalAccount::new("b", 3), FalAccount::refused("c")],
        // Enough tries that a 1-in-10 fault does not use them all up by chance.
        env: vec![("MEDIAGEN__ENGINE__MAX_ATTEMPTS".into(), "6".into())],
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await;
    let sim = stack.fal.handle();
    sim.add_faults([
        FaultRule::rate(FaultKind::Result500, 0.10),
        FaultRule::rate(FaultKind::ContentPolicy, 0.02),
        FaultRule::burst(FaultKind::Submit429, 4),
        // Account b takes five jobs, then its sixth locks it (it still runs).
        FaultRule { skip: 5, ..FaultRule::burst(FaultKind::LockAccount, 1).for_account("b") },
    ]);
    // The operator, so alerts have a chat to land in.
    stack.telegram.add_user(&SimUser::new(ADMIN_ID, "Operator").with_language("en"));
    let user_count = total.div_ceil(10).max(4);
    let users: Vec<SimUser> = (0..user_count)
        .map(|i| {
            let user = SimUser::new(8_000 + i as i64, format!("Faulty{i}")).with_language("en");
            stack.telegram.add_user(&user);
            user
        })
        .collect();
    for n in 0..total {
        // One request is always refused by the content checker (a simulator prompt marker).
        let marker = if n == 1 { " [[fault:content_policy]]" } else { "" };
        let prompt = format!("fal fault picture number {n}{marker}");
        stack.telegram.send_text(&users[(n % user_count) as usize], &prompt);
        if n == total / 2 {
            // A second burst of 429s in the middle of the run.
            sim.add_faults([FaultRule::burst(FaultKind::Submit429, 4)]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled = settle_down(&stack.db, total, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let found = tally(&stack.db, &stack.telegram, &stack.fal).await;

    // What fal saw, per job prompt: every attempt but the last failed with a 5xx.
    let mut attempts: HashMap<String, Vec<OutcomeKind>> = HashMap::new();
    for request in sim.requests() {
        let prompt = request.input["prompt"].as_str().unwrap_or_default().to_owned();
        attempts.entry(prompt).or_default().push(request.outcome.unwrap_or(OutcomeKind::Cancelled));
    }
    let server_errors: usize = attempts
        .values()
        .flatten()
        .filter(|o| matches!(o, OutcomeKind::RunnerServerError | OutcomeKind::RunnerDisconnected))
        .count();
    let refused: Vec<&String> =
        attempts.iter().filter(|(_, o)| o.contains(&OutcomeKind::ContentPolicyViolation)).map(|(p, _)| p).collect();
    // A job went to fal again only after fal failed it with a 5xx: never a double run.
    let resubmitted_without_cause: Vec<&String> = attempts
        .iter()
        .filter(|(_, outcomes)| {
            outcomes[..outcomes.len() - 1]
                .iter()
                .any(|o| !matches!(o, OutcomeKind::RunnerServerError | OutcomeKind::RunnerDisconnected))
        })
        .map(|(prompt, _)| prompt)
        .collect();
    let rejected_429: u64 = sim.accounts().iter().map(|a| a.rejected.get("rate_limited").copied().unwrap_or(0)).sum();
    let b_locked = sim.account("b").is_some_and(|b| b.locked);

    let alerts: Vec<String> = stack.telegram.messages_to(ADMIN_ID).iter().filter_map(|m| m.text.clone()).collect();
    let count = |needle: &str| alerts.iter().filter(|t| t.contains(needle)).count();
    let (lock_alerts, key_alerts, breaker_alerts) =
        (count("fal account b is locked"), count("fal refused every key of account c"), count("paused after"));

    // Money: a success is charged its price once, whatever 5xx came before; a failure nothing.
    let sql = "SELECT j.spec->>'prompt', CAST(coalesce(sum(l.amount_micros), 0) AS BIGINT) FROM jobs j
               LEFT JOIN ledger l ON l.job_id = j.id AND l.kind = 'charge' GROUP BY j.id ORDER BY j.id";
    let charged: Vec<(String, i64)> = with_pool!(stack.db, |pool| sqlx::query_as(sql).fetch_all(pool).await).unwrap();
    let retried_then_charged_once = charged
        .iter()
        .filter(|(prompt, amount)| {
            let runs = attempts.get(prompt).map_or(0, Vec::len);
            runs > 1 && *amount == PRICE
        })
        .count();
    let wrongly_charged: Vec<&(String, i64)> = charged
        .iter()
        .filter(|(prompt, amount)| {
            let succeeded = attempts.get(prompt).is_some_and(|o| o.last() == Some(&OutcomeKind::Success));
            if succeeded { *amount != PRICE } else { *amount != 0 }
        })
        .collect();

    println!(
        "fal faults: {} (every second submit followed a 5xx); fal 5xx {server_errors}, content-policy refusals {}, 429s {rejected_429}, \
         retried then charged once {retried_then_charged_once}, account b locked {b_locked}; \
         operator alerts: lock {lock_alerts}, bad key {key_alerts}, breaker {breaker_alerts}",
        found.line(),
        refused.len(),
    );
    assert!(settled, "not every job ended and was told");
    assert!(found.lost.is_empty(), "outcomes that never reached the user: {:?}", found.lost);
    assert!(found.unsettled.is_empty() && found.double_charges == 0, "holds open or charged twice");
    assert_eq!(found.jobs as u64, total, "every request was accepted");
    // Retryable faults never end a job: only the content checker's refusals fail.
    let content_policy = found.failures.get("content_policy").copied().unwrap_or(0);
    assert_eq!(found.failed, content_policy, "only content-policy refusals fail: {:?}", found.failures);
    assert_eq!(content_policy, refused.len(), "each refusal at fal is reported to its user");
    assert!(resubmitted_without_cause.is_empty(), "sent to fal again without a 5xx: {resubmitted_without_cause:?}");
    assert!(wrongly_charged.is_empty(), "charged for a failure or more than once: {wrongly_charged:?}");
    assert!(server_errors == 0 || retried_then_charged_once > 0, "5xx jobs were retried and charged once");
    assert!(rejected_429 > 0, "the 429 bursts happened (the fal client retries them)");
    assert!(b_locked, "account b got locked mid-run");
    assert_eq!(lock_alerts, 1, "one alert for the lock: {alerts:#?}");
    assert_eq!(key_alerts, 1, "one alert for the refused key: {alerts:#?}");
    assert!(breaker_alerts <= 1, "at most one breaker alert per account and day: {alerts:#?}");
    stack.stop().await.expect("the bot stops cleanly");
}
