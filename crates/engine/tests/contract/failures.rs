//! What each failure does to the job, the user's credit and the accounts.

use crate::support::{Answer, Harness, advance, one_image};
use chrono::TimeDelta;
use mediagen_domain::{AccountId, FailureReason, JobState, Money};
use mediagen_ports::UserNotice;

fn scene(h: &Harness, accounts: &[&str]) -> mediagen_domain::JobId {
    let mut w = h.world();
    w.user(1);
    for name in accounts {
        w.account(name, 5);
    }
    w.queued_job(1, one_image())
}

#[tokio::test(start_paused = true)]
async fn a_5xx_then_success_is_retried_with_backoff_and_charged_once() {
    let h = Harness::new();
    let job = scene(&h, &["main"]);
    h.world().wait_answers.extend([Answer::Retryable, Answer::Ok]);
    let engine = h.engine();
    let running = h.start(&engine);
    advance(10).await;
    running.shutdown().await;

    let w = h.world();
    assert_eq!(w.job_submits().len(), 2, "tried twice");
    assert_eq!(w.requeues.len(), 1);
    let (_, _, not_before) = &w.requeues[0];
    assert_eq!(*not_before, Some(w.now + TimeDelta::seconds(1)), "back-off before the retry");
    let finishes = w.finishes_of(job);
    assert_eq!(finishes.len(), 1, "settled once");
    assert_eq!(finishes[0].state, JobState::Succeeded);
    assert_eq!(finishes[0].settlement.user_charge, one_image(), "charged once, at the price");
    assert_eq!(w.results.len(), 1, "delivered once");
    assert!(!w.notices.iter().any(|(_, n)| matches!(n, UserNotice::Failed { .. })));
    assert_eq!(engine.stats().retried, 1);
}

#[tokio::test(start_paused = true)]
async fn retries_run_out_and_the_job_fails_without_charging_the_user() {
    let h = Harness::new();
    let job = scene(&h, &["main"]);
    h.world().wait_answers.extend([Answer::Retryable, Answer::Retryable, Answer::Retryable, Answer::Ok]);
    let engine = h.engine();
    let running = h.start(&engine);
    advance(30).await;
    running.shutdown().await;

    let w = h.world();
    assert_eq!(w.job_submits().len(), 3, "max_attempts = 3");
    let delays: Vec<_> = w.requeues.iter().map(|(_, _, nb)| nb.map(|t| t - w.now)).collect();
    assert_eq!(delays, vec![Some(TimeDelta::seconds(1)), Some(TimeDelta::seconds(2))], "exponential back-off");
    let finish = w.finishes_of(job)[0].clone();
    assert!(matches!(finish.state, JobState::Failed { reason: FailureReason::Upstream(_) }), "{:?}", finish.state);
    assert_eq!(finish.settlement.user_charge, Money::ZERO);
    assert_eq!(finish.settlement.user_refund, one_image());
    assert_eq!(finish.settlement.fal_cost, Money::ZERO, "fal does not bill 5xx");
    assert!(w.results.is_empty());
    assert!(matches!(
        w.notices.last().map(|(_, n)| n),
        Some(UserNotice::Failed { reason: FailureReason::Upstream(_), refunded, .. }) if *refunded == one_image()
    ));
}

#[tokio::test(start_paused = true)]
async fn a_content_policy_refusal_is_never_retried_and_the_user_is_not_charged() {
    for at_submit in [false, true] {
        let h = Harness::new();
        let job = scene(&h, &["main"]);
        if at_submit {
            h.world().submit_answers.push_back(Answer::ContentPolicy);
        } else {
            h.world().wait_answers.push_back(Answer::ContentPolicy);
        }
        let engine = h.engine();
        let running = h.start(&engine);
        advance(10).await;
        running.shutdown().await;

        let w = h.world();
        assert_eq!(w.job_submits().len(), 1, "never retried (at submit: {at_submit})");
        assert!(w.requeues.is_empty());
        let finish = w.finishes_of(job)[0].clone();
        assert_eq!(finish.state, JobState::Failed { reason: FailureReason::ContentPolicy });
        assert_eq!((finish.settlement.user_charge, finish.settlement.user_refund), (Money::ZERO, one_image()));
        assert_eq!(
            w.notices.last().map(|(_, n)| n.clone()),
            Some(UserNotice::Failed { job, reason: FailureReason::ContentPolicy, refunded: one_image() })
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_locked_account_moves_work_to_another_and_alerts_once() {
    let h = Harness::new();
    let (first, second) = {
        let mut w = h.world();
        w.user(1);
        w.user(2);
        w.account("a", 5);
        w.account("b", 5);
        let first = w.queued_job(1, one_image());
        let second = w.queued_job(2, one_image());
        // Both jobs land on A, and fal says it is locked to both.
        w.submit_answers.extend([Answer::Locked, Answer::Locked]);
        (first, second)
    };
    let engine = h.engine();
    let running = h.start(&engine);
    advance(10).await;
    running.shutdown().await;

    let w = h.world();
    let a = AccountId::new("a");
    let b = AccountId::new("b");
    let accounts: Vec<&AccountId> = w.job_submits().iter().map(|(acct, _)| acct).collect();
    assert_eq!(accounts, vec![&a, &a, &b, &b], "after the lock, work goes to B");
    assert_eq!(w.set_locks.len(), 1, "the lock is stored once");
    assert_eq!(w.set_locks[0].0, a);
    let locked_alerts = w.operator_alerts.iter().filter(|al| al.title.contains("locked")).count();
    assert_eq!(locked_alerts, 1, "two locks, one alert");
    assert!(w.requeues.iter().all(|(_, _, not_before)| not_before.is_none()), "requeued at once");
    for job in [first, second] {
        assert_eq!(w.job(job).state, JobState::Succeeded);
        assert_eq!(w.finishes_of(job)[0].settlement.user_charge, one_image());
    }
    let last = w.claims.last().unwrap();
    assert!(last.accounts.iter().any(|c| c.account == a && !c.usable), "A stays out of rotation");
}

#[tokio::test(start_paused = true)]
async fn a_refused_key_disables_the_account_and_alerts() {
    let h = Harness::new();
    let job = scene(&h, &["a", "b"]);
    h.world().submit_answers.push_back(Answer::BadKey);
    let engine = h.engine();
    let running = h.start(&engine);
    advance(10).await;
    running.shutdown().await;

    let w = h.world();
    assert_eq!(w.disabled, vec![AccountId::new("a")]);
    assert_eq!(w.operator_alerts.len(), 1);
    assert_eq!(w.job_submits().last().unwrap().0, AccountId::new("b"));
    assert_eq!(w.job(job).state, JobState::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_lost_submit_answer_fails_the_job_without_resubmitting_or_charging() {
    let h = Harness::new();
    let job = scene(&h, &["main"]);
    h.world().submit_answers.push_back(Answer::OutcomeUnknown);
    let engine = h.engine();
    let running = h.start(&engine);
    advance(10).await;
    running.shutdown().await;

    let w = h.world();
    assert_eq!(w.job_submits().len(), 1, "a resubmit could run it twice");
    assert!(w.requeues.is_empty());
    let finish = w.finishes_of(job)[0].clone();
    assert!(matches!(finish.state, JobState::Failed { reason: FailureReason::Upstream(_) }));
    assert_eq!(finish.settlement.user_charge, Money::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_completion_is_not_delivered_or_charged_twice() {
    let h = Harness::new();
    scene(&h, &["main"]);
    h.world().already_finished = true;
    let engine = h.engine();
    let running = h.start(&engine);
    advance(5).await;
    running.shutdown().await;

    let w = h.world();
    assert_eq!(w.waits.len(), 1, "the result came in");
    assert!(w.finishes.is_empty(), "storage wrote nothing");
    assert!(w.results.is_empty(), "nothing delivered");
    assert!(w.saved_media.is_empty());
    assert!(w.notices.is_empty(), "no second Done");
    assert_eq!(engine.stats().succeeded, 0);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_the_breaker_pause_the_account_and_alert_once() {
    let mut h = Harness::new();
    h.config.breaker.failure_threshold = 2;
    h.config.retry.max_attempts = 10;
    let job = scene(&h, &["a", "b"]);
    h.world().submit_answers.extend([Answer::Retryable, Answer::Retryable]);
    let engine = h.engine();
    let running = h.start(&engine);
    advance(20).await;
    running.shutdown().await;

    let w = h.world();
    let accounts: Vec<&str> = w.job_submits().iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(accounts, vec!["a", "a", "b"], "paused A, tried B");
    let paused: Vec<_> = w.operator_alerts.iter().filter(|a| a.title.contains("paused")).collect();
    assert_eq!(paused.len(), 1);
    assert!(
        w.claims.iter().any(|c| c.accounts.iter().any(|a| a.account.as_str() == "a" && !a.usable)),
        "the open breaker makes A unusable"
    );
    assert_eq!(w.job(job).state, JobState::Succeeded);
    assert_eq!(engine.stats().breaker_trips, 1);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_cancels_at_fal_and_refunds() {
    let h = Harness::new();
    let job = scene(&h, &["main"]);
    h.world().wait_answers.push_back(Answer::Timeout);
    let engine = h.engine();
    let running = h.start(&engine);
    advance(5).await;
    running.shutdown().await;

    let w = h.world();
    assert_eq!(w.remote_cancels.len(), 1);
    let finish = w.finishes_of(job)[0].clone();
    assert_eq!(finish.state, JobState::Failed { reason: FailureReason::Timeout });
    assert_eq!(finish.settlement.user_refund, one_image());
}

#[tokio::test(start_paused = true)]
async fn an_input_fal_rejects_fails_at_once_refunded_and_recorded_as_billable() {
    let h = Harness::new();
    let job = scene(&h, &["main"]);
    h.world().wait_answers.push_back(Answer::InvalidInput);
    let engine = h.engine();
    let running = h.start(&engine);
    advance(5).await;
    running.shutdown().await;

    let w = h.world();
    assert_eq!(w.job_submits().len(), 1, "a 422 is not retried");
    let finish = w.finishes_of(job)[0].clone();
    assert!(matches!(finish.state, JobState::Failed { reason: FailureReason::InvalidInput(_) }));
    assert_eq!(finish.settlement.user_refund, one_image(), "we validated the input: not the user's fault");
    assert_eq!(finish.settlement.fal_cost, one_image(), "fal may bill a 422");
}

#[tokio::test(start_paused = true)]
async fn a_submission_that_cannot_be_recorded_is_withdrawn_at_fal() {
    for failure in ["conflict", "down"] {
        let h = Harness::new();
        let job = scene(&h, &["main"]);
        h.world().mark_submitted_fails = Some(failure);
        let engine = h.engine();
        let running = h.start(&engine);
        // Three tries at recording, 1 + 2 + 4 s apart, before giving up.
        advance(10).await;
        running.shutdown().await;

        let w = h.world();
        assert!(!w.job_submits().is_empty());
        assert_eq!(w.remote_cancels.len(), w.job_submits().len(), "every unrecorded submission withdrawn ({failure})");
        assert!(w.waits.is_empty(), "not followed");
        assert!(w.finishes_of(job).is_empty(), "not ended: nothing ran");
        assert!(w.results.is_empty());
        // Still ours after a storage failure: back to the queue at once, not left under a
        // lease this process keeps renewing. Canceled meanwhile: nothing to requeue.
        let requeued = w.requeues.iter().any(|(j, _, _)| *j == job);
        assert_eq!(requeued, failure == "down", "requeued after {failure}");
    }
}
