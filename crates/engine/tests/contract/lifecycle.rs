//! Rescue at start, lease heartbeat, status polling and shutdown.

use crate::support::{Harness, advance, one_image};
use mediagen_domain::{FailureReason, JobState, Money, RequestId, Settlement};
use mediagen_ports::{MediaRecord, RemoteStatus, Rescued, UserNotice};
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn a_rescued_job_at_fal_is_followed_and_never_resubmitted() {
    let h = Harness::new();
    let job = {
        let mut w = h.world();
        w.user(1);
        let account = w.account("main", 2);
        let job = w.queued_job(1, one_image());
        w.left_at_fal_by_a_dead_process(job, &account);
        job
    };
    h.run_for(5).await;

    let w = h.world();
    assert!(w.job_submits().is_empty(), "never resubmitted");
    assert_eq!(w.waits.len(), 1);
    assert_eq!(w.waits[0].request_id, RequestId::new("req-from-before"));
    assert_eq!(w.job(job).state, JobState::Succeeded);
    assert_eq!(w.results.len(), 1);
}

/// A job whose prompt was rewritten before a restart is charged for the rewrite by the
/// process that finishes it: the cost is kept with the job, not in the dead process.
#[tokio::test(start_paused = true)]
async fn a_rescued_job_is_charged_what_its_prompt_rewrite_cost_before_the_restart() {
    let h = Harness::new();
    let rewrite = Money::from_micros(1_300);
    let job = {
        let mut w = h.world();
        w.user(1);
        let account = w.account("main", 2);
        let job = w.queued_job(1, one_image().checked_add(Money::from_cents(1)).unwrap());
        let entry = w.jobs.get_mut(&job).unwrap();
        entry.spec.enhance_prompt = true;
        entry.helper_cost = rewrite;
        w.left_at_fal_by_a_dead_process(job, &account);
        job
    };
    h.run_for(5).await;

    let w = h.world();
    assert_eq!(w.llm_calls, 0, "the rewrite is not made again");
    let finish = w.finishes_of(job);
    assert_eq!(finish.len(), 1);
    let expected = one_image().checked_add(rewrite).unwrap();
    assert_eq!(finish[0].settlement.user_charge, expected, "the picture and the rewrite");
    assert_eq!(finish[0].settlement.fal_cost, expected, "fal billed both");
}

/// The heartbeat renews exactly the leases of live tasks, and nothing when there is none:
/// a restarted process with the same name never keeps a dead one's leases alive.
#[tokio::test(start_paused = true)]
async fn only_the_leases_of_live_tasks_are_renewed() {
    let mut h = Harness::new();
    h.config.lease = Duration::from_secs(60);
    h.config.status_poll = Some(Duration::from_secs(1));
    let job = {
        let mut w = h.world();
        w.account("main", 2);
        w.user(1);
        // fal keeps it queued for 50 s, then runs it.
        w.status_answers.extend((0..50).map(|_| RemoteStatus::InQueue { position: Some(0) }));
        w.queued_job(1, one_image())
    };
    let engine = h.engine();
    let running = h.start(&engine);
    advance(45).await;
    {
        let w = h.world();
        let lease = w.job(job).lease.clone().expect("claimed under a lease");
        assert!(!w.renewed.is_empty(), "renewed while it waits at fal");
        assert!(w.renewed.iter().all(|held| *held == [(job, lease.clone())]), "{:?}", w.renewed);
    }
    advance(100).await;
    running.shutdown().await;
    let calls = {
        let w = h.world();
        assert_eq!(w.job(job).state, JobState::Succeeded);
        assert!(w.renewed.iter().all(|held| held.iter().all(|(id, _)| *id == job)));
        w.renewals
    };
    // Idle: nothing held, nothing renewed.
    let idle = Harness::new();
    idle.world().account("main", 2);
    let engine = idle.engine();
    let running = idle.start(&engine);
    advance(61).await;
    running.shutdown().await;
    assert_eq!(idle.world().renewals, 0, "no live task, no renewal (busy run made {calls})");
}

#[tokio::test(start_paused = true)]
async fn status_polling_records_when_fal_starts_the_job() {
    let mut h = Harness::new();
    h.config.status_poll = Some(Duration::from_secs(1));
    let job = {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
        w.status_answers
            .extend([RemoteStatus::InQueue { position: Some(1) }, RemoteStatus::InQueue { position: Some(0) }]);
        w.queued_job(1, one_image())
    };
    h.run_for(10).await;
    let w = h.world();
    assert_eq!(w.marked_running, vec![job]);
    assert_eq!(w.job(job).state, JobState::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_claiming_and_run_returns() {
    let h = Harness::new();
    {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
        w.queued_job(1, one_image());
    }
    h.run_for(3).await;

    let (claims, late) = {
        let mut w = h.world();
        assert!(!w.claims.is_empty(), "it was claiming while running");
        (w.claims.len(), w.queued_job(1, one_image()))
    };
    advance(30).await;
    let w = h.world();
    assert_eq!(w.claims.len(), claims, "no claim after the shutdown signal");
    assert_eq!(w.job(late).state, JobState::Queued, "left for the next start");
}

#[tokio::test(start_paused = true)]
async fn a_raised_signal_before_start_claims_nothing() {
    let h = Harness::new();
    {
        let mut w = h.world();
        w.account("main", 2);
        w.queued_job(1, one_image());
    }
    let engine = h.engine();
    let (stop, signal) = tokio::sync::watch::channel(true);
    engine.run(signal).await;
    drop(stop);
    assert!(h.world().claims.is_empty());
}

#[tokio::test(start_paused = true)]
async fn jobs_at_fal_are_followed_through_the_grace_period_and_the_rest_left_for_rescue() {
    for (grace, finished) in [(10, true), (1, false)] {
        let mut h = Harness::new();
        // The job sits in fal's queue for 3 s after submit.
        h.config.status_poll = Some(Duration::from_secs(1));
        h.config.shutdown_grace = Duration::from_secs(grace);
        let job = {
            let mut w = h.world();
            w.user(1);
            w.account("main", 2);
            w.status_answers.extend(std::iter::repeat_n(RemoteStatus::InQueue { position: Some(0) }, 3));
            w.queued_job(1, one_image())
        };
        let engine = h.engine();
        let running = h.start(&engine);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!h.world().job_submits().is_empty(), "submitted before the signal");
        running.shutdown().await;

        let w = h.world();
        assert_eq!(w.job(job).state == JobState::Succeeded, finished, "grace {grace} s");
        if !finished {
            assert!(matches!(w.job(job).state, JobState::Submitted { .. }), "still at fal, for the rescue");
            assert!(w.finishes.is_empty());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_submit_is_recorded_before_it_goes_out_and_the_delivery_after_the_user_is_told() {
    let h = Harness::new();
    let job = {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
        w.queued_job(1, one_image())
    };
    h.run_for(10).await;

    let w = h.world();
    assert_eq!(w.submitting, vec![job], "marked as submitting once, before the submit");
    assert_eq!(w.job_submits().len(), 1);
    assert_eq!(w.job(job).state, JobState::Succeeded);
    assert_eq!(w.results.len(), 1);
    assert_eq!(w.delivered, vec![job], "recorded as delivered once the user had it");
}

#[tokio::test(start_paused = true)]
async fn a_job_rescued_in_the_middle_of_its_submit_is_failed_refunded_and_never_resubmitted() {
    let h = Harness::new();
    let (job, hold) = {
        let mut w = h.world();
        w.user(1);
        let account = w.account("main", 2);
        let job = w.queued_job(1, one_image());
        w.jobs.get_mut(&job).unwrap().state = JobState::Dispatching { account };
        let rescued = w.job(job).clone();
        w.rescue.push(Rescued::SubmitUnknown(rescued.clone()));
        (job, rescued.hold)
    };
    h.run_for(5).await;

    let w = h.world();
    assert!(w.job_submits().is_empty(), "fal may have it already: never resubmitted");
    let finishes = w.finishes_of(job);
    assert_eq!(finishes.len(), 1);
    assert!(
        matches!(&finishes[0].state, JobState::Failed { reason: FailureReason::Upstream(_) }),
        "{:?}",
        finishes[0].state
    );
    assert_eq!(finishes[0].settlement.user_refund, hold, "the user gets the hold back");
    assert_eq!(finishes[0].settlement.user_charge, Money::ZERO);
    assert_eq!(finishes[0].settlement.fal_cost, hold, "the submit had been sent: fal's bill is recorded");
    assert!(w.notices.iter().any(|(_, n)| matches!(n, UserNotice::Failed { job: j, .. } if *j == job)), "told");
    assert_eq!(w.delivered, vec![job]);
}

#[tokio::test(start_paused = true)]
async fn a_finished_job_whose_delivery_was_lost_is_delivered_again_once() {
    let h = Harness::new();
    let settlement = Settlement { user_charge: one_image(), user_refund: Money::ZERO, fal_cost: one_image() };
    let (lost, half) = {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
        // Finished, results never sent: sent again from fal's CDN, then the notice.
        let lost = w.queued_job(1, one_image());
        w.jobs.get_mut(&lost).unwrap().state = JobState::Succeeded;
        w.saved_media.push(media(lost, None));
        // Results sent (file id on record) but the notice not confirmed: only the notice.
        let half = w.queued_job(1, one_image());
        w.jobs.get_mut(&half).unwrap().state = JobState::Succeeded;
        w.saved_media.push(media(half, Some("file-1")));
        let (a, b) = (w.job(lost).clone(), w.job(half).clone());
        w.rescue.push(Rescued::Redeliver(a, settlement));
        w.rescue.push(Rescued::Redeliver(b, settlement));
        (lost, half)
    };
    h.run_for(5).await;

    let w = h.world();
    assert!(w.job_submits().is_empty() && w.finishes.is_empty(), "nothing run or settled again");
    let sent: Vec<_> = w.results.iter().map(|(_, job, count, _)| (*job, *count)).collect();
    assert_eq!(sent, vec![(lost, 1)], "only the results that never reached the user are sent");
    let done: Vec<_> = w
        .notices
        .iter()
        .filter_map(|(_, n)| match n {
            UserNotice::Done { job, charged } => Some((*job, *charged)),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 2);
    assert!(done.contains(&(lost, one_image())) && done.contains(&(half, one_image())), "{done:?}");
    let mut delivered = w.delivered.clone();
    delivered.sort();
    assert_eq!(delivered, vec![lost, half]);
    assert!(w.saved_media.iter().any(|r| r.job == lost && r.telegram_file_id.is_some()), "file id recorded");
}

fn media(job: mediagen_domain::JobId, file_id: Option<&str>) -> MediaRecord {
    MediaRecord {
        job,
        fal_url: format!("https://cdn.example/{job}.png"),
        telegram_file_id: file_id.map(str::to_owned),
        size_bytes: Some(3),
        content_type: Some("image/png".into()),
    }
}
