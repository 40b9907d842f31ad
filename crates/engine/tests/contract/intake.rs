//! Intake: validation, pricing, the quota answer from storage, the acknowledgement.

use crate::support::{Harness, one_image, request};
use chrono::{TimeZone, Utc};
use mediagen_domain::quota::QuotaRefusal;
use mediagen_domain::{ImageSize, JobId, MediaRef, ModelId, Money, UserId};
use mediagen_engine::IntakeOutcome;
use mediagen_ports::{EnqueueOutcome, Refusal, UserNotice};
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn an_accepted_request_is_held_at_its_price_and_acknowledged_with_place_and_wait() {
    let mut h = Harness::new();
    h.config.mean_service = Duration::from_secs(20);
    {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
        // Two jobs ahead of ours.
        w.queued_job(2, one_image());
        w.queued_job(3, one_image());
    }
    let engine = h.engine();
    let mut req = request(1, "a red fox");
    req.num_images = 2;
    let outcome = engine.intake.submit(req).await;

    let price = Money::from_micros(2 * 39_000);
    // Place 3 with 2 slots: the job starts in the second round of 20 s.
    assert_eq!(
        outcome,
        IntakeOutcome::Queued { job: JobId(3), position: 3, total: 3, eta: Some(Duration::from_secs(40)), price }
    );
    let w = h.world();
    let enqueued = &w.enqueues[0];
    assert_eq!(enqueued.hold, price, "the hold is the catalog's estimate");
    assert_eq!(enqueued.plan.name, "free");
    assert_eq!(enqueued.spec.model, ModelId::new("fal-ai/nano-banana"), "the catalog's default model");
    assert_eq!(enqueued.spec.size, Some(ImageSize::new(1024, 1024)), "the model's default size");
    let (to, notice) = &w.notices[0];
    assert_eq!(to.language, mediagen_domain::Language::Ru, "the stored user's language wins");
    assert_eq!(notice, &UserNotice::Queued { job: JobId(3), position: 3, total: 3, eta_secs: 40, price });
    assert_eq!(engine.stats().accepted, 1);
}

#[tokio::test(start_paused = true)]
async fn a_user_over_quota_is_refused_with_the_reset_time_and_the_cost() {
    let h = Harness::new();
    let resets_at = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
    let refusal = QuotaRefusal::DailyJobs { limit: 10, used: 10, request_cost: one_image(), resets_at };
    {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
        w.enqueue_answer = Some(EnqueueOutcome::Refused(refusal.clone()));
    }
    let engine = h.engine();
    let outcome = engine.intake.submit(request(1, "a red fox")).await;

    assert_eq!(outcome, IntakeOutcome::Refused(Refusal::Quota(refusal.clone())));
    let IntakeOutcome::Refused(Refusal::Quota(q)) = &outcome else { unreachable!() };
    assert_eq!(q.resets_at(), Some(resets_at));
    assert_eq!(q.request_cost(), one_image());
    let w = h.world();
    assert_eq!(w.notices.len(), 1);
    assert_eq!(w.notices[0].1, UserNotice::Refused(Refusal::Quota(refusal)));
    assert_eq!(engine.stats().refused, 1);
}

#[tokio::test(start_paused = true)]
async fn invalid_requests_are_refused_with_the_reason_and_nothing_is_enqueued() {
    let h = Harness::new();
    {
        let mut w = h.world();
        w.user(1);
        let blocked = w.user(2);
        w.users.get_mut(&blocked).unwrap().blocked = true;
        w.account("main", 2);
    }
    let engine = h.engine();
    let photo = |size| MediaRef { file_id: "AgAD".into(), size_bytes: Some(size) };

    let blank = engine.intake.submit(request(1, "  \t ")).await;
    assert!(matches!(blank, IntakeOutcome::Refused(Refusal::BadPrompt(_))), "{blank:?}");

    let mut unknown = request(1, "a fox");
    unknown.model = Some(ModelId::new("fal-ai/nope"));
    assert_eq!(
        engine.intake.submit(unknown).await,
        IntakeOutcome::Refused(Refusal::UnknownModel(ModelId::new("fal-ai/nope")))
    );

    let mut disabled = request(1, "a fox");
    disabled.model = Some(ModelId::new("fal-ai/flux-realism"));
    assert_eq!(
        engine.intake.submit(disabled).await,
        IntakeOutcome::Refused(Refusal::UnknownModel(ModelId::new("fal-ai/flux-realism")))
    );

    let mut big = request(1, "make it blue");
    big.input_media = vec![photo(11 * 1024 * 1024)];
    assert_eq!(
        engine.intake.submit(big).await,
        IntakeOutcome::Refused(Refusal::FileTooLarge { size: 11 * 1024 * 1024, max: 10_485_760 })
    );

    let mut many = request(1, "make it blue");
    many.input_media = vec![photo(10); 4];
    assert_eq!(engine.intake.submit(many).await, IntakeOutcome::Refused(Refusal::TooManyImages { given: 4, max: 3 }));

    let mut size = request(1, "a fox");
    size.size = Some(ImageSize::new(333, 333));
    let refused = engine.intake.submit(size).await;
    assert!(
        matches!(&refused, IntakeOutcome::Refused(Refusal::SizeNotAllowed { requested, allowed })
            if requested == "333x333" && allowed.contains(&"1024x1024".to_owned())),
        "{refused:?}"
    );

    assert_eq!(engine.intake.submit(request(2, "a fox")).await, IntakeOutcome::Refused(Refusal::Blocked));

    let w = h.world();
    assert!(w.enqueues.is_empty(), "nothing reaches the queue");
    assert_eq!(w.notices.len(), 7, "every refusal is told");
    assert!(w.notices.iter().all(|(_, n)| matches!(n, UserNotice::Refused(_))));
}

#[tokio::test(start_paused = true)]
async fn a_photo_goes_to_the_edit_model_and_the_image_count_is_clamped() {
    let h = Harness::new();
    {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
    }
    let engine = h.engine();
    let mut req = request(1, "make it blue");
    req.input_media = vec![MediaRef { file_id: "AgAD".into(), size_bytes: Some(1000) }];
    req.num_images = 9;
    let outcome = engine.intake.submit(req).await;
    assert!(matches!(outcome, IntakeOutcome::Queued { price, .. } if price == Money::from_micros(4 * 39_000)));
    let w = h.world();
    assert_eq!(w.enqueues[0].spec.model, ModelId::new("fal-ai/nano-banana/edit"));
    assert_eq!(w.enqueues[0].spec.num_images, 4, "the model makes at most 4");
}

#[tokio::test(start_paused = true)]
async fn a_storage_outage_is_told_to_the_user_as_temporarily_unavailable() {
    let h = Harness::new();
    h.world().storage_down = true;
    let engine = h.engine();
    let outcome = engine.intake.submit(request(1, "a fox")).await;
    assert_eq!(outcome, IntakeOutcome::Refused(Refusal::TemporarilyUnavailable));
    let w = h.world();
    assert_eq!(w.notices.len(), 1);
    assert_eq!(w.notices[0].1, UserNotice::Refused(Refusal::TemporarilyUnavailable));
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_request_is_a_duplicate_and_sends_nothing() {
    let h = Harness::new();
    {
        let mut w = h.world();
        w.user(1);
        let existing = w.queued_job(1, one_image());
        let job = w.job(existing).clone();
        w.enqueue_answer = Some(EnqueueOutcome::Duplicate(job));
    }
    let engine = h.engine();
    assert_eq!(engine.intake.submit(request(1, "a fox")).await, IntakeOutcome::Duplicate { job: JobId(1) });
    assert!(h.world().notices.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_first_time_user_is_created_on_the_default_plan() {
    let h = Harness::new();
    h.world().account("main", 2);
    let engine = h.engine();
    let outcome = engine.intake.submit(request(42, "a fox")).await;
    assert!(matches!(outcome, IntakeOutcome::Queued { .. }), "{outcome:?}");
    let w = h.world();
    assert_eq!(w.upserted, vec![UserId(42)]);
    assert_eq!(w.users[&UserId(42)].plan, "free");
}

#[tokio::test(start_paused = true)]
async fn with_no_usable_account_the_wait_is_unknown() {
    let h = Harness::new();
    h.world().user(1);
    let engine = h.engine();
    let outcome = engine.intake.submit(request(1, "a fox")).await;
    assert!(matches!(outcome, IntakeOutcome::Queued { eta: None, .. }), "{outcome:?}");
}

#[tokio::test(start_paused = true)]
async fn the_users_default_model_is_used_and_a_disabled_one_falls_back_to_the_catalogs() {
    let h = Harness::new();
    {
        let mut w = h.world();
        let fast = w.user(1);
        w.users.get_mut(&fast).unwrap().settings.default_model = Some(ModelId::new("fal-ai/flux/schnell"));
        let stale = w.user(2);
        w.users.get_mut(&stale).unwrap().settings.default_model = Some(ModelId::new("fal-ai/flux-realism"));
        w.account("main", 2);
    }
    let engine = h.engine();
    let fast = engine.intake.submit(request(1, "a fox")).await;
    // schnell at its default 1024x768: one megapixel at $0.003.
    assert!(matches!(fast, IntakeOutcome::Queued { price, .. } if price == Money::from_micros(3_000)), "{fast:?}");
    let stale = engine.intake.submit(request(2, "a fox")).await;
    assert!(matches!(stale, IntakeOutcome::Queued { .. }), "{stale:?}");
    let w = h.world();
    assert_eq!(w.enqueues[0].spec.model, ModelId::new("fal-ai/flux/schnell"));
    assert_eq!(w.enqueues[1].spec.model, ModelId::new("fal-ai/nano-banana"), "disabled since: the catalog default");
}
