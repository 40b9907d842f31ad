//! What each failure does to the job, the user's credit and the accounts.

use crate::support::{Answer, Harness, advance, one_image};
use chrono::TimeDelta;
use mediagen_domain::insights::JobOutcome;
use mediagen_domain::{AccountId, FailureReason, JobState, Money};
use mediagen_ports::{KeyStatus, UserNotice};
use std::time::Duration;

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
    let engine = h.run_for(10).await;

    let w = h.world();
    assert_eq!(w.job_submits().len(), 2, "tried twice");
    assert_eq!(w.requeues.len(), 1);
    let (_, _, backoff) = &w.requeues[0];
    assert_eq!(*backoff, Some(TimeDelta::seconds(1)), "back-off before the retry");
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
    let engine = h.run_for(30).await;

    let outcomes = engine.insights.metrics().await.unwrap().outcomes;
    let w = h.world();
    let failed: Vec<_> =
        outcomes.iter().map(|o| (o.account.as_ref().map(|a| a.as_str()), o.outcome, o.count)).collect();
    assert_eq!(failed, vec![(Some("main"), JobOutcome::Failed, 1)], "one failure, on its account");
    assert_eq!(w.job_submits().len(), 3, "max_attempts = 3");
    let delays: Vec<_> = w.requeues.iter().map(|(_, _, backoff)| *backoff).collect();
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
        h.run_for(10).await;

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
        w.account("b", 2);
        let first = w.queued_job(1, one_image());
        let second = w.queued_job(2, one_image());
        // Both jobs land on A (the one with the most free slots), and fal says it is locked to both.
        w.submit_answers.extend([Answer::Locked, Answer::Locked]);
        (first, second)
    };
    h.run_for(10).await;

    let w = h.world();
    let a = AccountId::new("a");
    let b = AccountId::new("b");
    let accounts: Vec<&AccountId> = w.job_submits().iter().map(|(acct, _)| acct).collect();
    assert_eq!(accounts, vec![&a, &a, &b, &b], "after the lock, work goes to B");
    assert_eq!(w.set_locks.len(), 1, "the lock is stored once");
    assert_eq!(w.set_locks[0].0, a);
    let locked_alerts = w.operator_alerts.iter().filter(|al| al.title.contains("locked")).count();
    assert_eq!(locked_alerts, 1, "two locks, one alert");
    assert!(w.requeues.iter().all(|(_, _, backoff)| backoff.is_none()), "requeued at once");
    for job in [first, second] {
        assert_eq!(w.job(job).state, JobState::Succeeded);
        assert_eq!(w.finishes_of(job)[0].settlement.user_charge, one_image());
    }
    let last = w.claims.last().unwrap();
    assert!(last.accounts.iter().any(|c| c.account == a && !c.usable), "A stays out of rotation");
}

#[tokio::test(start_paused = true)]
async fn an_account_whose_every_key_is_refused_leaves_rotation_without_being_disabled() {
    let h = Harness::new();
    let job = scene(&h, &["a", "b"]);
    let key =
        |account: &str, key: &str| KeyStatus { account: AccountId::new(account), key: key.into(), refused_since: None };
    {
        let mut w = h.world();
        w.keys = vec![key("a", "a-1"), key("a", "a-2"), key("b", "b-1")];
        // The adapter sets both keys of `a` aside and answers that none is left.
        w.submit_answers.push_back(Answer::BadKey);
    }
    let engine = h.engine();
    let running = h.start(&engine);
    advance(10).await;
    {
        let w = h.world();
        assert!(w.disabled.is_empty(), "nothing written: the keys may come back");
        let alerts: Vec<_> = w.operator_alerts.iter().filter(|al| al.title.contains("every key")).collect();
        assert_eq!(alerts.len(), 1, "{:?}", w.operator_alerts);
        assert!(alerts[0].body.contains("/enablekey a"), "says what to do: {}", alerts[0].body);
        assert_eq!(w.job_submits().last().unwrap().0, AccountId::new("b"));
        assert_eq!(w.job(job).state, JobState::Succeeded);
        let last = w.claims.last().unwrap();
        assert!(last.accounts.iter().any(|c| c.account.as_str() == "a" && !c.usable), "a is out of rotation");
    }

    // The operator fixed one key at fal and puts it back: `a` takes work again.
    assert!(engine.operator.enable_key(&AccountId::new("a"), "a-1"));
    assert!(!engine.operator.enable_key(&AccountId::new("a"), "nope"), "an unknown key is refused");
    h.world().queued_job(1, one_image());
    advance(10).await;
    running.shutdown().await;
    let back = h.world().claims.last().unwrap().accounts.iter().any(|c| c.account.as_str() == "a" && c.usable);
    assert!(back, "a is back");
    let overview = engine.operator.accounts_overview().await.unwrap();
    let a = overview.iter().find(|o| o.id.as_str() == "a").unwrap();
    assert_eq!(
        a.keys.iter().map(|k| (k.key.as_str(), k.refused_since.is_some())).collect::<Vec<_>>(),
        [("a-1", false), ("a-2", true)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_submit_answer_fails_the_job_without_resubmitting_or_charging() {
    let h = Harness::new();
    let job = scene(&h, &["main"]);
    h.world().submit_answers.push_back(Answer::OutcomeUnknown);
    h.run_for(10).await;

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
    let engine = h.run_for(5).await;

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
    let engine = h.run_for(20).await;

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
    h.run_for(5).await;

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
    h.run_for(5).await;

    let w = h.world();
    assert_eq!(w.job_submits().len(), 1, "a 422 is not retried");
    let finish = w.finishes_of(job)[0].clone();
    assert!(matches!(finish.state, JobState::Failed { reason: FailureReason::InvalidInput(_) }));
    assert_eq!(finish.settlement.user_refund, one_image(), "we validated the input: not the user's fault");
    assert_eq!(finish.settlement.fal_cost, one_image(), "fal may bill a 422");
}

#[tokio::test(start_paused = true)]
async fn a_submission_whose_job_was_canceled_meanwhile_is_withdrawn_at_fal() {
    let h = Harness::new();
    let job = scene(&h, &["main"]);
    h.world().mark_submitted_fails = Some("conflict");
    h.run_for(10).await;

    let w = h.world();
    assert_eq!(w.job_submits().len(), 1);
    assert_eq!(w.remote_cancels.len(), 1, "the orphaned submission is withdrawn");
    assert!(w.waits.is_empty(), "not followed");
    assert!(w.finishes_of(job).is_empty() && w.requeues.is_empty(), "the job is someone else's now");
}

/// fal accepted the job while the database was down: the outage is waited out and the job
/// followed, never canceled and resubmitted (a running model may ignore the cancel, and
/// fal would bill both runs).
#[tokio::test(start_paused = true)]
async fn a_database_outage_while_recording_the_submission_is_waited_out() {
    let h = Harness::new();
    let job = scene(&h, &["main"]);
    h.world().mark_submitted_fails = Some("down");
    let engine = h.engine();
    let running = h.start(&engine);
    advance(30).await;
    {
        let w = h.world();
        assert_eq!(w.job_submits().len(), 1);
        assert!(w.remote_cancels.is_empty(), "not withdrawn while the database is down");
        assert!(w.requeues.is_empty(), "not requeued: it would be submitted again");
    }
    h.world().mark_submitted_fails = None;
    advance(30).await;
    running.shutdown().await;

    let w = h.world();
    assert_eq!(w.job_submits().len(), 1, "submitted once");
    assert!(w.remote_cancels.is_empty());
    assert_eq!(w.waits.len(), 1, "followed once recorded");
    assert_eq!(w.job(job).state, JobState::Succeeded);
    assert_eq!(w.finishes_of(job)[0].settlement.user_charge, one_image());
}

/// An endpoint that keeps the job IN_QUEUE: one deadline from fal's acceptance bounds it,
/// then the job is canceled at fal, refunded (fal never ran it) and the user told.
#[tokio::test(start_paused = true)]
async fn a_job_stuck_in_fals_queue_ends_at_its_deadline() {
    let mut h = Harness::new();
    h.config.status_poll = Some(Duration::from_secs(2));
    h.config.follow_deadline = Duration::from_secs(120);
    let job = scene(&h, &["main"]);
    {
        let mut w = h.world();
        w.stuck_in_queue = true;
        w.wait_answers.push_back(Answer::Timeout);
    }
    let engine = h.engine();
    let running = h.start(&engine);
    advance(60).await;
    assert!(h.world().finishes_of(job).is_empty(), "still waiting before the deadline");
    advance(90).await;
    running.shutdown().await;

    let w = h.world();
    let accepted = w.job(job).submitted_at.expect("fal's acceptance is recorded");
    assert_eq!(w.wait_deadlines, vec![accepted + TimeDelta::seconds(120)], "the deadline counts from acceptance");
    assert_eq!(w.remote_cancels.len(), 1, "canceled at fal");
    let finish = w.finishes_of(job)[0].clone();
    assert_eq!(finish.state, JobState::Failed { reason: FailureReason::Timeout });
    assert_eq!(finish.settlement.user_refund, one_image());
    assert_eq!(finish.settlement.fal_cost, Money::ZERO, "it never ran: fal bills nothing");
    assert!(w.notices.iter().any(|(_, n)| matches!(n, UserNotice::Failed { reason: FailureReason::Timeout, .. })));
}

/// fal billed runs that still failed for us are recorded at fal's cost: a result that
/// could not be downloaded, an unreadable result, a timeout after the run started.
#[tokio::test(start_paused = true)]
async fn fal_cost_is_recorded_for_every_run_fal_bills() {
    for (answer, billed) in [(Answer::Unreadable, true), (Answer::Timeout, false), (Answer::Retryable, false)] {
        let mut h = Harness::new();
        h.config.retry.max_attempts = 1;
        let job = scene(&h, &["main"]);
        h.world().wait_answers.push_back(answer.clone());
        h.run_for(10).await;
        let w = h.world();
        let finish = w.finishes_of(job)[0].clone();
        let expected = if billed { one_image() } else { Money::ZERO };
        assert_eq!(finish.settlement.fal_cost, expected, "{answer:?}");
        assert_eq!(finish.settlement.user_refund, one_image(), "{answer:?}: the user pays nothing");
    }
    // The run succeeded at fal but its file never arrived.
    let h = Harness::new();
    let job = scene(&h, &["main"]);
    h.world().download_fails = true;
    h.run_for(30).await;
    let w = h.world();
    let finish = w.finishes_of(job)[0].clone();
    assert!(matches!(finish.state, JobState::Failed { .. }));
    assert_eq!((finish.settlement.fal_cost, finish.settlement.user_refund), (one_image(), one_image()));
}
