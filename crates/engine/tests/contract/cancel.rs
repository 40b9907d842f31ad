//! Cancellation before and after submission.

use crate::support::{Harness, one_image};
use mediagen_domain::insights::JobOutcome;
use mediagen_domain::{AccountId, JobState, Money, RequestId, UserId};
use mediagen_engine::CancelOutcome;
use mediagen_ports::{CancelOutcome as RemoteCancel, RemoteHandle, UserNotice};

fn at_fal(h: &Harness, state: fn(AccountId, RequestId) -> JobState) -> mediagen_domain::JobId {
    let mut w = h.world();
    w.user(1);
    let account = w.account("main", 2);
    let job = w.queued_job(1, one_image());
    let request_id = RequestId::new("req-9");
    w.jobs.get_mut(&job).unwrap().state = state(account.clone(), request_id.clone());
    w.handles.insert(
        job,
        RemoteHandle {
            account,
            model: mediagen_domain::ModelId::new("fal-ai/nano-banana"),
            request_id,
            status_url: "s".into(),
            response_url: "r".into(),
            cancel_url: "c".into(),
        },
    );
    job
}

#[tokio::test(start_paused = true)]
async fn a_queued_job_is_canceled_at_no_cost_without_calling_fal() {
    let h = Harness::new();
    let job = {
        let mut w = h.world();
        w.user(1);
        w.queued_job(1, one_image())
    };
    let engine = h.engine();
    assert_eq!(engine.intake.cancel(UserId(1), job).await, CancelOutcome::Canceled { job, refunded: one_image() });
    let w = h.world();
    assert!(w.remote_cancels.is_empty());
    assert_eq!(w.job(job).state, JobState::Canceled);
    assert_eq!(w.notices.last().map(|(_, n)| n.clone()), Some(UserNotice::Canceled { job, refunded: one_image() }));
    assert_eq!(engine.stats().canceled, 1);
    drop(w);
    let outcomes = engine.insights.metrics().await.unwrap().outcomes;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!((outcomes[0].account.clone(), outcomes[0].outcome, outcomes[0].count), (None, JobOutcome::Canceled, 1));
}

#[tokio::test(start_paused = true)]
async fn a_running_job_is_canceled_at_fal_then_finished_with_a_refund() {
    let h = Harness::new();
    let job = at_fal(&h, |account, request_id| JobState::Running { account, request_id });
    let engine = h.engine();
    assert_eq!(engine.intake.cancel(UserId(1), job).await, CancelOutcome::Canceled { job, refunded: one_image() });
    let w = h.world();
    assert_eq!(w.remote_cancels.len(), 1);
    let finish = w.finishes_of(job)[0].clone();
    assert_eq!(finish.state, JobState::Canceled);
    assert_eq!((finish.settlement.user_charge, finish.settlement.user_refund), (Money::ZERO, one_image()));
    assert_eq!(finish.settlement.fal_cost, one_image(), "it had started: fal may bill it");
}

#[tokio::test(start_paused = true)]
async fn a_job_still_in_fals_queue_costs_nothing_to_cancel() {
    let h = Harness::new();
    let job = at_fal(&h, |account, request_id| JobState::Submitted { account, request_id });
    let engine = h.engine();
    assert!(matches!(engine.intake.cancel(UserId(1), job).await, CancelOutcome::Canceled { .. }));
    let w = h.world();
    assert_eq!(w.remote_cancels.len(), 1);
    assert_eq!(w.finishes_of(job)[0].settlement.fal_cost, Money::ZERO);
}

#[tokio::test(start_paused = true)]
async fn too_late_when_fal_already_finished_it_and_not_found_for_someone_else() {
    let h = Harness::new();
    let job = at_fal(&h, |account, request_id| JobState::Running { account, request_id });
    h.world().remote_cancel_answer = RemoteCancel::AlreadyCompleted;
    let engine = h.engine();
    assert_eq!(engine.intake.cancel(UserId(2), job).await, CancelOutcome::NotFound, "not their job");
    assert_eq!(engine.intake.cancel(UserId(1), job).await, CancelOutcome::TooLate { job });
    let w = h.world();
    assert!(w.finishes.is_empty(), "the follower delivers and charges it");
    assert!(w.notices.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_finished_job_cannot_be_canceled() {
    let h = Harness::new();
    let job = {
        let mut w = h.world();
        w.user(1);
        let job = w.queued_job(1, one_image());
        w.jobs.get_mut(&job).unwrap().state = JobState::Succeeded;
        job
    };
    let engine = h.engine();
    assert_eq!(engine.intake.cancel(UserId(1), job).await, CancelOutcome::TooLate { job });
    assert!(h.world().remote_cancels.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_job_being_dispatched_is_finished_at_once_and_its_submission_is_withdrawn() {
    let h = Harness::new();
    let job = {
        let mut w = h.world();
        w.user(1);
        let account = w.account("main", 2);
        let job = w.queued_job(1, one_image());
        w.jobs.get_mut(&job).unwrap().state = JobState::Dispatching { account };
        job
    };
    let engine = h.engine();
    assert_eq!(engine.intake.cancel(UserId(1), job).await, CancelOutcome::Canceled { job, refunded: one_image() });
    let w = h.world();
    assert!(w.remote_cancels.is_empty(), "nothing at fal yet");
    assert_eq!(w.finishes_of(job)[0].state, JobState::Canceled);
}
