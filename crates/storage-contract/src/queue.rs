//! Stories of `JobQueue`: every method, the ledger that goes with each state change,
//! leases and change notifications. Each runs on a fresh database.

use crate::support::*;
use crate::{Database, LedgerKind};
use mediagen_domain::job::Settlement;
use mediagen_domain::quota::{Plan, QuotaRefusal, UserUsage};
use mediagen_domain::{AccountId, FailureReason, JobId, JobState, Lease, MediaRef, Money, RequestId, Role, UserId};
use mediagen_ports::{
    AccountCapacity, CancelResult, EnqueueOutcome, Finish, FinishOutcome, JobQueue, MediaRecord, QueuePosition,
    Rescued, StorageError, UsageStore,
};

/// Enqueue writes the job, its hold and its `enqueued` event, and reports the place in line.
pub async fn enqueue_holds_credit_and_reports_the_position(db: &impl Database) {
    let store = db.store().await;
    let user = add_user(&store, 1).await;
    let mut request = request(user, "tg:1", cents(5), t(0));
    request.spec.input_media = vec![MediaRef { file_id: "AgAD".into(), size_bytes: Some(1000) }];

    let EnqueueOutcome::Enqueued(job, place) = store.enqueue(&request).await.unwrap() else { panic!() };
    assert_eq!(place, QueuePosition { position: 1, total: 1 });
    assert_eq!(job.state, JobState::Queued);
    assert_eq!((job.user, job.chat, job.hold, job.attempts), (user, request.chat, cents(5), 0));
    assert_eq!(job.spec, request.spec);
    assert_eq!((job.created_at, job.updated_at), (t(0), t(0)));
    assert_eq!(store.get_job(job.id).await.unwrap(), Some(job.clone()));
    assert_eq!(db.ledger_amount(job.id, LedgerKind::Hold).await, Some(cents(5).micros()));
    assert_eq!(db.ledger_rows_of_job(job.id).await, 1);

    let second = enqueue(&store, user, "tg:2", t(1)).await;
    assert_eq!(store.queue_position(second.id).await.unwrap(), Some(QueuePosition { position: 2, total: 2 }));
    assert_eq!(store.queued_count().await.unwrap(), 2);
    let events = db.job_events(job.id).await;
    assert_eq!(events, vec!["enqueued"]);
}

/// A redelivered key returns the first job and takes no second hold.
pub async fn enqueue_is_idempotent_on_its_key(db: &impl Database) {
    let store = db.store().await;
    let user = add_user(&store, 1).await;
    let first = enqueue(&store, user, "tg:42", t(0)).await;
    // Redelivered later, even with a different price: the same job, no second hold.
    let again = store.enqueue(&request(user, "tg:42", cents(9), t(5))).await.unwrap();
    assert_eq!(again, EnqueueOutcome::Duplicate(first.clone()));
    let jobs = db.job_count().await;
    let holds = db.ledger_rows_of_kind(LedgerKind::Hold).await;
    assert_eq!((jobs, holds), (1, 1));
}

/// Enqueue for a user never stored is `NotFound`.
pub async fn enqueue_for_an_unknown_user_is_not_found(db: &impl Database) {
    let store = db.store().await;
    let outcome = store.enqueue(&request(UserId(404), "k", cents(5), t(0))).await;
    assert!(matches!(outcome, Err(StorageError::NotFound(_))), "{outcome:?}");
}

/// Daily and monthly quotas refuse inside the enqueue, write nothing, and spare admins.
pub async fn quotas_refuse_without_writing_anything(db: &impl Database) {
    let store = db.store().await;
    let user = add_user(&store, 1).await;
    let daily = Plan { daily_jobs: Some(2), ..plan(10) };
    for (i, expect_ok) in [(0, true), (1, true), (2, false)] {
        let outcome = store
            .enqueue(&mediagen_ports::EnqueueRequest {
                plan: daily.clone(),
                ..request(user, &format!("d{i}"), cents(5), t(i))
            })
            .await
            .unwrap();
        assert_eq!(matches!(outcome, EnqueueOutcome::Enqueued(..)), expect_ok, "{outcome:?}");
        if !expect_ok {
            assert!(matches!(outcome, EnqueueOutcome::Refused(QuotaRefusal::DailyJobs { limit: 2, used: 2, .. })));
        }
    }
    // A new UTC day resets the daily count.
    let tomorrow = t(24 * 3600);
    let outcome = store
        .enqueue(&mediagen_ports::EnqueueRequest { plan: daily.clone(), ..request(user, "d3", cents(5), tomorrow) })
        .await
        .unwrap();
    assert!(matches!(outcome, EnqueueOutcome::Enqueued(..)), "{outcome:?}");

    // Holds count toward the monthly spend: 3 held jobs x 5c = 15c, so 6c more passes a 20c cap.
    let monthly = Plan { monthly_spend: Some(cents(20)), ..plan(10) };
    let outcome = store
        .enqueue(&mediagen_ports::EnqueueRequest { plan: monthly.clone(), ..request(user, "m1", cents(6), tomorrow) })
        .await
        .unwrap();
    assert!(matches!(outcome, EnqueueOutcome::Refused(QuotaRefusal::MonthlySpend { spent, .. }) if spent == cents(15)));
    // Admins are never refused.
    let admin =
        mediagen_ports::EnqueueRequest { plan: monthly, role: Role::Admin, ..request(user, "m2", cents(6), tomorrow) };
    assert!(matches!(store.enqueue(&admin).await.unwrap(), EnqueueOutcome::Enqueued(..)));

    let jobs = db.job_count().await;
    let holds = db.ledger_rows_of_kind(LedgerKind::Hold).await;
    assert_eq!((jobs, holds), (4, 4), "refusals write nothing");
}

/// `user_usage` counts today's jobs, the month's spend with active holds, in flight and queued.
pub async fn user_usage_counts_today_month_flight_and_queue(db: &impl Database) {
    let store = db.store().await;
    let main = add_account(&store, "main").await;
    let user = add_user(&store, 1).await;
    let yesterday = t(-24 * 3600);
    let old = enqueue(&store, user, "y", yesterday).await;
    claim_exactly(&store, &claim_request("w", vec![capacity(&main, 1)], 1, yesterday), &[old.id]).await;
    complete(&store, &old, &main, yesterday).await; // charged 4c
    let first = enqueue(&store, user, "a", t(0)).await;
    enqueue(&store, user, "b", t(1)).await;
    claim_exactly(&store, &claim_request("w", vec![capacity(&main, 1)], 1, t(2)), &[first.id]).await;

    let usage = store.user_usage(user, t(3)).await.unwrap();
    // Same month: the 4c charge plus two 5c holds still active.
    assert_eq!(usage, UserUsage { jobs_today: 2, spend_this_month: cents(14), in_flight: 1, queued: 1 });
    assert_eq!(store.user_usage(UserId(99), t(3)).await.unwrap(), UserUsage::default());
}

/// Claims fill free slots under the fair policy, with overhang and `max_jobs`.
pub async fn claim_fills_free_slots_fairly(db: &impl Database) {
    let store = db.store().await;
    let (a, b) = (add_account(&store, "a").await, add_account(&store, "b").await);
    let heavy = add_user(&store, 1).await;
    let light = add_user(&store, 2).await;
    for i in 0..6 {
        enqueue(&store, heavy, &format!("h{i}"), t(i)).await;
    }
    let light_job = enqueue(&store, light, "l0", t(100)).await;

    // Two slots on `a`, one on `b`; `b` is unusable on the first claim.
    let first = store
        .claim(&claim_request(
            "w1",
            vec![capacity(&a, 2), AccountCapacity { usable: false, ..capacity(&b, 1) }],
            10,
            t(200),
        ))
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|c| c.account == a));
    // The heavy user's oldest goes first, then the light user's only job (fewer in flight).
    assert_eq!(first[0].job.spec, spec(MODEL));
    assert_eq!(first[0].job.user, heavy);
    assert_eq!(first[1].job.id, light_job.id);
    for claimed in &first {
        assert_eq!(claimed.job.state, JobState::Dispatching { account: a.clone() });
        assert_eq!(store.queue_position(claimed.job.id).await.unwrap(), None, "left the queue");
    }
    assert_eq!(store.in_flight_by_account().await.unwrap(), vec![(a.clone(), 2)]);

    // `a` is full; overhang 1 adds one per account; max_jobs bounds the call.
    let mut request = claim_request("w2", vec![capacity(&a, 2), capacity(&b, 1)], 10, t(201));
    request.overhang = 1;
    let second = store.claim(&request).await.unwrap();
    assert_eq!(second.len(), 3, "1 overhang slot on a + 2 on b");
    let third = store.claim(&request).await.unwrap();
    assert!(third.is_empty(), "every slot taken");
    assert_eq!(store.queued_count().await.unwrap(), 2);
    let mut in_flight = store.in_flight_by_account().await.unwrap();
    in_flight.sort();
    assert_eq!(in_flight, vec![(a.clone(), 3), (b.clone(), 2)]);

    let bounded = claim_request("w3", vec![capacity(&AccountId::new("a"), 100)], 1, t(202));
    assert_eq!(store.claim(&bounded).await.unwrap().len(), 1, "max_jobs");
}

/// Claims hold users to their plan's in-flight cap (not admins) and wait for `not_before`.
pub async fn claim_respects_plan_caps_and_not_before(db: &impl Database) {
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let capped = add_user_on(&store, 1, "free", Role::User).await;
    let admin = add_user_on(&store, 2, "free", Role::Admin).await;
    for i in 0..3 {
        enqueue(&store, capped, &format!("c{i}"), t(i)).await;
        enqueue(&store, admin, &format!("a{i}"), t(10 + i)).await;
    }
    let mut request = claim_request("w", vec![capacity(&a, 10)], 10, t(20));
    request.in_flight_caps = vec![("free".into(), 1)];
    let claimed = store.claim(&request).await.unwrap();
    let by_user = |u: UserId| claimed.iter().filter(|c| c.job.user == u).count();
    assert_eq!((by_user(capped), by_user(admin)), (1, 3), "the plan caps the user, not the admin");
    assert!(store.claim(&request).await.unwrap().is_empty(), "still at the cap");

    // A job requeued with not_before waits until then, but keeps its place.
    let job = claimed.iter().find(|c| c.job.user == capped).unwrap().job.clone();
    store.requeue(job.id, &lease_of(&store, job.id).await, "fal answered 503", Some(t(60)), t(21)).await.unwrap();
    assert_eq!(store.queue_position(job.id).await.unwrap(), Some(QueuePosition { position: 1, total: 3 }));
    assert!(
        store
            .claim(&claim_request("w", vec![capacity(&a, 10)], 10, t(59)))
            .await
            .unwrap()
            .iter()
            .all(|c| c.job.id != job.id)
    );
    let later = store.claim(&claim_request("w", vec![capacity(&a, 20)], 10, t(60))).await.unwrap();
    assert!(later.iter().any(|c| c.job.id == job.id));
}

/// A claim on an account never stored is `NotFound` and claims nothing.
pub async fn claim_names_unknown_accounts(db: &impl Database) {
    let store = db.store().await;
    let user = add_user(&store, 1).await;
    enqueue(&store, user, "k", t(0)).await;
    let outcome = store.claim(&claim_request("w", vec![capacity(&AccountId::new("ghost"), 1)], 1, t(1))).await;
    assert!(matches!(outcome, Err(StorageError::NotFound(_))), "{outcome:?}");
    assert_eq!(store.queued_count().await.unwrap(), 1, "nothing claimed");
}

/// `mark_submitted` and `mark_running` follow the state machine and the claim's lease
/// (owner and epoch).
pub async fn submit_and_run_follow_the_state_machine(db: &impl Database) {
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let user = add_user(&store, 1).await;
    let job = enqueue(&store, user, "k", t(0)).await;
    let h = handle(&a, job.id);
    let nobody = Lease { owner: "w".into(), epoch: 1 };

    let queued = store.mark_submitted(job.id, &nobody, &h, t(1)).await;
    assert!(matches!(queued, Err(StorageError::Conflict(_))), "queued: {queued:?}");
    assert!(matches!(store.mark_running(job.id, &nobody, t(1)).await, Err(StorageError::Conflict(_))));
    let claimed = claim_exactly(&store, &claim_request("w", vec![capacity(&a, 1)], 1, t(1)), &[job.id]).await;
    let lease = claimed[0].job.lease.clone().unwrap();
    assert_eq!(store.get_job(job.id).await.unwrap().unwrap().lease, Some(lease.clone()), "stored as returned");
    let not_submitted = store.mark_running(job.id, &lease, t(1)).await;
    assert!(matches!(not_submitted, Err(StorageError::Conflict(_))), "not submitted yet: {not_submitted:?}");
    let intruder = Lease { owner: "intruder".into(), ..lease.clone() };
    assert!(matches!(store.mark_submitted(job.id, &intruder, &h, t(2)).await, Err(StorageError::Conflict(_))));
    let stale = Lease { epoch: lease.epoch - 1, ..lease.clone() };
    let fenced = store.mark_submitted(job.id, &stale, &h, t(2)).await;
    assert!(matches!(fenced, Err(StorageError::Conflict(_))), "an older epoch of the same owner: {fenced:?}");
    let elsewhere = handle(&AccountId::new("b"), job.id);
    assert!(matches!(store.mark_submitted(job.id, &lease, &elsewhere, t(2)).await, Err(StorageError::Conflict(_))));
    assert_eq!(store.remote_handle(job.id).await.unwrap(), None);

    store.mark_submitted(job.id, &lease, &h, t(2)).await.unwrap();
    let stored = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(stored.state, JobState::Submitted { account: a.clone(), request_id: h.request_id.clone() });
    assert_eq!((stored.attempts, stored.updated_at, stored.submitted_at), (1, t(2), Some(t(2))));
    assert_eq!(store.remote_handle(job.id).await.unwrap(), Some(h.clone()));
    let twice = store.mark_submitted(job.id, &lease, &h, t(3)).await;
    assert!(matches!(twice, Err(StorageError::Conflict(_))), "twice: {twice:?}");

    assert!(matches!(store.mark_running(job.id, &stale, t(4)).await, Err(StorageError::Conflict(_))), "fenced");
    store.mark_running(job.id, &lease, t(4)).await.unwrap();
    store.mark_running(job.id, &lease, t(5)).await.unwrap(); // Repeated polls are harmless.
    let stored = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(stored.state, JobState::Running { account: a.clone(), request_id: h.request_id.clone() });
    assert_eq!(stored.updated_at, t(4));
    let events = db.job_events(job.id).await;
    assert_eq!(events, vec!["enqueued", "claimed", "submitted", "started"]);
    assert!(matches!(store.mark_running(JobId(999), &lease, t(5)).await, Err(StorageError::NotFound(_))));
}

/// Requeue takes an in-flight job back (keeping its attempts), and refuses queued or terminal ones.
pub async fn requeue_returns_in_flight_jobs_and_refuses_the_rest(db: &impl Database) {
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let user = add_user(&store, 1).await;
    let job = enqueue(&store, user, "k", t(0)).await;
    assert!(
        matches!(
            store.requeue(job.id, &lease_of(&store, job.id).await, "x", None, t(1)).await,
            Err(StorageError::Conflict(_))
        ),
        "queued"
    );

    claim_exactly(&store, &claim_request("w", vec![capacity(&a, 1)], 1, t(1)), &[job.id]).await;
    store.mark_submitted(job.id, &lease_of(&store, job.id).await, &handle(&a, job.id), t(2)).await.unwrap();
    let requeued = store.requeue(job.id, &lease_of(&store, job.id).await, "result 503", None, t(3)).await.unwrap();
    assert_eq!(requeued.state, JobState::Queued);
    assert_eq!(requeued.attempts, 1, "attempts survive the requeue");
    assert_eq!(store.remote_handle(job.id).await.unwrap(), None, "the old handle is gone");
    assert_eq!(store.in_flight_by_account().await.unwrap(), vec![]);

    claim_exactly(&store, &claim_request("w", vec![capacity(&a, 1)], 1, t(4)), &[job.id]).await;
    let h2 = mediagen_ports::RemoteHandle { request_id: RequestId::new("second"), ..handle(&a, job.id) };
    store.mark_submitted(job.id, &lease_of(&store, job.id).await, &h2, t(5)).await.unwrap();
    assert_eq!(store.get_job(job.id).await.unwrap().unwrap().attempts, 2);
    store.finish(job.id, &as_holder(&store, job.id, &success(job.hold, cents(4), t(6))).await).await.unwrap();
    assert!(
        matches!(
            store.requeue(job.id, &lease_of(&store, job.id).await, "x", None, t(7)).await,
            Err(StorageError::Conflict(_))
        ),
        "terminal"
    );
    assert!(matches!(
        store.requeue(JobId(999), &lease_of(&store, JobId(999)).await, "x", None, t(7)).await,
        Err(StorageError::NotFound(_))
    ));
}

/// Finish settles the hold once; a second finish writes nothing.
pub async fn finish_settles_once(db: &impl Database) {
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let user = add_user(&store, 1).await;
    let job = enqueue(&store, user, "k", t(0)).await;
    claim_exactly(&store, &claim_request("w", vec![capacity(&a, 1)], 1, t(1)), &[job.id]).await;
    store.mark_submitted(job.id, &lease_of(&store, job.id).await, &handle(&a, job.id), t(2)).await.unwrap();

    let media = MediaRecord {
        job: job.id,
        fal_url: "https://v3.fal.media/files/fox.png".into(),
        telegram_file_id: None,
        size_bytes: Some(1_234),
        content_type: Some("image/png".into()),
    };
    let mut finish = success(job.hold, cents(4), t(3));
    finish.media = vec![media.clone()];

    let FinishOutcome::Finished(done) = store.finish(job.id, &as_holder(&store, job.id, &finish).await).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(db.ledger_amount(job.id, LedgerKind::Charge).await, Some(cents(4).micros()));
    assert_eq!(db.ledger_amount(job.id, LedgerKind::Refund).await, Some(cents(1).micros()));
    assert_eq!(db.ledger_amount(job.id, LedgerKind::FalCost).await, Some(cents(4).micros()));
    assert_eq!(store.media_for_job(job.id).await.unwrap(), vec![media]);
    assert_eq!(store.in_flight_by_account().await.unwrap(), vec![]);

    // A second finish, even a different one, writes nothing.
    let again = Finish { state: JobState::Failed { reason: FailureReason::Timeout }, ..finish.clone() };
    assert_eq!(
        store.finish(job.id, &as_holder(&store, job.id, &again).await).await.unwrap(),
        FinishOutcome::AlreadyFinished(done.clone())
    );
    assert_eq!(
        store.finish(job.id, &as_holder(&store, job.id, &finish).await).await.unwrap(),
        FinishOutcome::AlreadyFinished(done)
    );
    assert_eq!(db.ledger_rows_of_job(job.id).await, 4, "hold, charge, refund, fal cost: once each");
    assert_eq!(store.usage_by_model(t(0), t(10)).await.unwrap()[0].user_charged, cents(4), "charged once");
    assert!(db.unbalanced_jobs().await.is_empty());
}

/// Finish refuses non-terminal states, illegal transitions and settlements that do not split the hold.
pub async fn finish_refuses_what_the_state_machine_or_the_hold_forbid(db: &impl Database) {
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let user = add_user(&store, 1).await;
    let job = enqueue(&store, user, "k", t(0)).await;

    assert!(matches!(
        store.finish(JobId(999), &as_holder(&store, JobId(999), &success(job.hold, cents(4), t(1))).await).await,
        Err(StorageError::NotFound(_))
    ));
    let not_terminal = Finish { state: JobState::Queued, ..success(job.hold, cents(4), t(1)) };
    assert!(matches!(
        store.finish(job.id, &as_holder(&store, job.id, &not_terminal).await).await,
        Err(StorageError::Conflict(_))
    ));
    assert!(
        matches!(
            store.finish(job.id, &as_holder(&store, job.id, &success(job.hold, cents(4), t(1))).await).await,
            Err(StorageError::Conflict(_))
        ),
        "a queued job cannot succeed"
    );
    claim_exactly(&store, &claim_request("w", vec![capacity(&a, 1)], 1, t(1)), &[job.id]).await;
    store.mark_submitted(job.id, &lease_of(&store, job.id).await, &handle(&a, job.id), t(2)).await.unwrap();
    let greedy = Finish {
        settlement: Settlement { user_charge: cents(5), user_refund: cents(5), fal_cost: cents(4) },
        ..success(job.hold, cents(4), t(3))
    };
    assert!(
        matches!(store.finish(job.id, &as_holder(&store, job.id, &greedy).await).await, Err(StorageError::Conflict(_))),
        "charge + refund > hold"
    );
    assert_eq!(db.ledger_rows_of_job(job.id).await, 1, "only the hold");

    // An upstream failure refunds everything and bills nothing.
    let failed = Finish {
        lease: None,
        state: JobState::Failed { reason: FailureReason::Upstream("502 at result".into()) },
        settlement: Settlement { user_charge: Money::ZERO, user_refund: job.hold, fal_cost: Money::ZERO },
        media: vec![],
        now: t(4),
    };
    let FinishOutcome::Finished(done) = store.finish(job.id, &as_holder(&store, job.id, &failed).await).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(done.state, failed.state, "the reason round-trips");
    assert_eq!(db.ledger_amount(job.id, LedgerKind::Refund).await, Some(job.hold.micros()));
}

/// Cancel refunds a queued job and points at an in-flight one's fal handle.
pub async fn cancel_refunds_queued_jobs_and_points_at_in_flight_ones(db: &impl Database) {
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let (user, other) = (add_user(&store, 1).await, add_user(&store, 2).await);
    let queued = enqueue(&store, user, "q", t(0)).await;
    let dispatching = enqueue(&store, user, "d", t(1)).await;
    let submitted = enqueue(&store, user, "s", t(2)).await;

    assert!(matches!(store.cancel(queued.id, other, t(3)).await, Err(StorageError::NotFound(_))), "not theirs");
    assert!(matches!(store.cancel(JobId(999), user, t(3)).await, Err(StorageError::NotFound(_))));

    // Claim the two later jobs only: cancel the first one's place in line first.
    let CancelResult::Canceled(canceled) = store.cancel(queued.id, user, t(3)).await.unwrap() else { panic!() };
    assert_eq!(canceled.state, JobState::Canceled);
    assert_eq!(db.ledger_amount(queued.id, LedgerKind::Charge).await, Some(0));
    assert_eq!(db.ledger_amount(queued.id, LedgerKind::Refund).await, Some(queued.hold.micros()));
    assert_eq!(db.ledger_amount(queued.id, LedgerKind::FalCost).await, Some(0));
    assert_eq!(store.cancel(queued.id, user, t(4)).await.unwrap(), CancelResult::AlreadyFinished(canceled));

    claim_exactly(&store, &claim_request("w", vec![capacity(&a, 2)], 2, t(5)), &[dispatching.id, submitted.id]).await;
    let h = handle(&a, submitted.id);
    store.mark_submitted(submitted.id, &lease_of(&store, submitted.id).await, &h, t(6)).await.unwrap();
    let CancelResult::InFlight(job, None) = store.cancel(dispatching.id, user, t(7)).await.unwrap() else { panic!() };
    assert_eq!(job.state, JobState::Dispatching { account: a.clone() });
    let CancelResult::InFlight(job, Some(found)) = store.cancel(submitted.id, user, t(7)).await.unwrap() else {
        panic!()
    };
    assert_eq!((job.id, found), (submitted.id, h));
    assert_eq!(db.ledger_rows_of_job(submitted.id).await, 1, "nothing settled yet");

    // The engine cancels at fal, then finishes it: fal may bill what already ran.
    let finish = Finish {
        lease: None,
        state: JobState::Canceled,
        settlement: Settlement { user_charge: Money::ZERO, user_refund: submitted.hold, fal_cost: cents(4) },
        media: vec![],
        now: t(8),
    };
    assert!(matches!(
        store.finish(submitted.id, &as_holder(&store, submitted.id, &finish).await).await.unwrap(),
        FinishOutcome::Finished(_)
    ));
    assert!(db.unbalanced_jobs().await.is_empty());
}

/// Only the leases listed with their current epoch are renewed; expired ones are resumed
/// (at fal) or requeued (not sent) under a new epoch, which fences off the old holder.
pub async fn leases_are_renewed_and_expired_ones_rescued(db: &impl Database) {
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let user = add_user(&store, 1).await;
    let never_sent = enqueue(&store, user, "n", t(0)).await;
    let at_fal = enqueue(&store, user, "f", t(1)).await;
    let renewed = enqueue(&store, user, "r", t(2)).await;

    // `dead` claims two and submits one; `alive` claims the third. Leases run to t(30).
    let dead =
        claim_exactly(&store, &claim_request("dead", vec![capacity(&a, 2)], 2, t(0)), &[never_sent.id, at_fal.id])
            .await;
    let dead_lease = |i: usize| dead[i].job.lease.clone().unwrap();
    let h = handle(&a, at_fal.id);
    store.mark_submitted(at_fal.id, &dead_lease(1), &h, t(3)).await.unwrap();
    store.mark_running(at_fal.id, &dead_lease(1), t(4)).await.unwrap();
    let alive = claim_exactly(&store, &claim_request("alive", vec![capacity(&a, 3)], 1, t(0)), &[renewed.id]).await;
    let alive_lease = alive[0].job.lease.clone().unwrap();
    let held = [(renewed.id, alive_lease.clone())];
    assert_eq!(store.renew_leases(&held, t(100)).await.unwrap(), 1);
    assert_eq!(store.renew_leases(&[], t(100)).await.unwrap(), 0);
    // A lease renewed under a wrong epoch, or for a job the caller does not hold, is not extended.
    let wrong_epoch = Lease { epoch: alive_lease.epoch + 1, ..alive_lease.clone() };
    assert_eq!(store.renew_leases(&[(renewed.id, wrong_epoch)], t(500)).await.unwrap(), 0);
    assert_eq!(store.renew_leases(&[(at_fal.id, alive_lease.clone())], t(500)).await.unwrap(), 0);

    assert!(store.rescue_expired("new", t(90), t(29)).await.unwrap().is_empty(), "not expired yet");
    let mut rescued = store.rescue_expired("new", t(90), t(30)).await.unwrap();
    assert_eq!(rescued.len(), 2);
    rescued.sort_by_key(rescued_id);
    let Rescued::Requeued(requeued) = &rescued[0] else { panic!("{rescued:?}") };
    assert_eq!((requeued.id, &requeued.state, &requeued.lease), (never_sent.id, &JobState::Queued, &None));
    let Rescued::Resume(resumed, resumed_handle) = &rescued[1] else { panic!("{rescued:?}") };
    assert_eq!(resumed.id, at_fal.id);
    assert_eq!(resumed.state, JobState::Running { account: a.clone(), request_id: h.request_id.clone() });
    assert_eq!(resumed_handle, &h, "resumed, never resubmitted");
    assert_eq!(resumed.attempts, 1);
    let new_lease = resumed.lease.clone().unwrap();
    assert_eq!(new_lease.owner, "new");
    assert!(new_lease.epoch > dead_lease(1).epoch, "a takeover starts a new epoch");

    // The new owner holds the lease now; the old one has lost it.
    assert_eq!(store.renew_leases(&[(at_fal.id, dead_lease(1))], t(200)).await.unwrap(), 0);
    assert_eq!(store.renew_leases(&[(at_fal.id, new_lease.clone())], t(120)).await.unwrap(), 1);
    assert!(store.rescue_expired("other", t(200), t(95)).await.unwrap().is_empty(), "both leases renewed");
    assert_eq!(store.get_job(renewed.id).await.unwrap().unwrap().state, JobState::Dispatching { account: a.clone() });
    assert_eq!(store.queue_position(never_sent.id).await.unwrap(), Some(QueuePosition { position: 1, total: 1 }));
    let late = store.mark_submitted(never_sent.id, &dead_lease(0), &handle(&a, never_sent.id), t(31)).await;
    assert!(matches!(late, Err(StorageError::Conflict(_))), "a late owner cannot submit what it lost");
    let stale_finish = Finish { lease: Some(dead_lease(1)), ..success(at_fal.hold, cents(4), t(40)) };
    let fenced = store.finish(at_fal.id, &stale_finish).await;
    assert!(matches!(fenced, Err(StorageError::Conflict(_))), "the old holder cannot finish: {fenced:?}");
    let stale_requeue = store.requeue(at_fal.id, &dead_lease(1), "503", None, t(40)).await;
    assert!(matches!(stale_requeue, Err(StorageError::Conflict(_))), "nor requeue: {stale_requeue:?}");
    assert_eq!(db.ledger_rows_of_job(at_fal.id).await, 1, "only the hold: nothing settled by the stale holder");
    let finish = Finish { lease: Some(new_lease), ..success(at_fal.hold, cents(4), t(40)) };
    let finished = store.finish(at_fal.id, &finish).await.unwrap();
    assert!(matches!(finished, FinishOutcome::Finished(_)), "the new owner finishes it");
}

/// One process can lose a job to itself: after its lease expired (its heartbeat failed,
/// say) its own rescue takes the job under a new epoch, and the first task, still holding
/// the old epoch, can no longer write it although the owner is the same.
pub async fn a_takeover_by_the_same_owner_still_fences_the_old_task(db: &impl Database) {
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let user = add_user(&store, 1).await;
    let job = enqueue(&store, user, "k", t(0)).await;
    let claimed = claim_exactly(&store, &claim_request("p", vec![capacity(&a, 1)], 1, t(0)), &[job.id]).await;
    let first = claimed[0].job.lease.clone().unwrap();
    let h = handle(&a, job.id);
    store.mark_submitted(job.id, &first, &h, t(1)).await.unwrap();

    let rescued = store.rescue_expired("p", t(90), t(30)).await.unwrap();
    let [Rescued::Resume(resumed, _)] = rescued.as_slice() else { panic!("{rescued:?}") };
    let second = resumed.lease.clone().unwrap();
    assert_eq!((second.owner.as_str(), second.epoch), ("p", first.epoch + 1));

    assert!(matches!(store.mark_running(job.id, &first, t(31)).await, Err(StorageError::Conflict(_))));
    let stale = Finish { lease: Some(first.clone()), ..success(job.hold, cents(4), t(32)) };
    assert!(matches!(store.finish(job.id, &stale).await, Err(StorageError::Conflict(_))));
    assert_eq!(store.renew_leases(&[(job.id, first)], t(99)).await.unwrap(), 0);
    store.mark_running(job.id, &second, t(31)).await.unwrap();
    let finish = Finish { lease: Some(second.clone()), ..success(job.hold, cents(4), t(33)) };
    assert!(matches!(store.finish(job.id, &finish).await.unwrap(), FinishOutcome::Finished(_)));
    store.mark_delivered(job.id, Some(second.clone()), t(34)).await.unwrap();
    assert_eq!(store.get_job(job.id).await.unwrap().unwrap().lease, None, "delivered: no lease left");
}

/// What the prompt helper cost is kept with the job, added up over attempts, so a process
/// that rescues the job charges it; only the lease holder may add to it.
pub async fn the_prompt_helpers_cost_stays_with_the_job_across_a_rescue(db: &impl Database) {
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let user = add_user(&store, 1).await;
    let job = enqueue(&store, user, "k", t(0)).await;
    assert_eq!(job.helper_cost, Money::ZERO);
    let claimed = claim_exactly(&store, &claim_request("p", vec![capacity(&a, 1)], 1, t(0)), &[job.id]).await;
    let lease = claimed[0].job.lease.clone().unwrap();
    let stranger = Lease { owner: "q".into(), epoch: lease.epoch };
    let refused = store.add_helper_cost(job.id, &stranger, cents(1), t(1)).await;
    assert!(matches!(refused, Err(StorageError::Conflict(_))), "not the lease holder: {refused:?}");
    let refused = store.add_helper_cost(job.id, &lease, Money::from_micros(-1), t(1)).await;
    assert!(matches!(refused, Err(StorageError::Conflict(_))), "negative: {refused:?}");
    store.add_helper_cost(job.id, &lease, Money::from_micros(1_234), t(1)).await.unwrap();
    store.add_helper_cost(job.id, &lease, Money::from_micros(66), t(1)).await.unwrap();
    store.mark_submitted(job.id, &lease, &handle(&a, job.id), t(2)).await.unwrap();
    assert_eq!(store.get_job(job.id).await.unwrap().unwrap().helper_cost, Money::from_micros(1_300));

    let rescued = store.rescue_expired("r", t(90), t(60)).await.unwrap();
    let [Rescued::Resume(resumed, _)] = rescued.as_slice() else { panic!("{rescued:?}") };
    assert_eq!(resumed.helper_cost, Money::from_micros(1_300), "the rescuer sees what the helper cost");
    let late = store.add_helper_cost(job.id, resumed.lease.as_ref().unwrap(), cents(1), t(61)).await;
    assert!(matches!(late, Err(StorageError::Conflict(_))), "only while dispatching: {late:?}");
}

/// A claim that follows a refused write claims the job at once: a failed write leaves no
/// lock behind (its transaction is rolled back, not left for the pool to clean up later).
pub async fn a_refused_write_leaves_nothing_locked_for_the_next_claim(db: &impl Database) {
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let user = add_user(&store, 1).await;
    for round in 0..25 {
        let job = enqueue(&store, user, &format!("k{round}"), t(round)).await;
        // Refused while the job is queued: a finish that cannot happen, a requeue of a queued job.
        let refused =
            store.finish(job.id, &as_holder(&store, job.id, &success(job.hold, cents(4), t(round))).await).await;
        assert!(matches!(refused, Err(StorageError::Conflict(_))), "{refused:?}");
        let nobody = Lease { owner: "nobody".into(), epoch: 0 };
        assert!(matches!(store.requeue(job.id, &nobody, "x", None, t(round)).await, Err(StorageError::Conflict(_))));
        let claimed = claim_exactly(&store, &claim_request("w", vec![capacity(&a, 1)], 1, t(round)), &[job.id]).await;
        let lease = claimed[0].job.lease.clone().unwrap();
        let refused = store.mark_submitted(job.id, &lease, &handle(&AccountId::new("b"), job.id), t(round)).await;
        assert!(matches!(refused, Err(StorageError::Conflict(_))), "wrong account: {refused:?}");
        store.mark_submitted(job.id, &lease, &handle(&a, job.id), t(round)).await.unwrap();
        let finish = Finish { lease: Some(lease.clone()), ..success(job.hold, cents(4), t(round)) };
        assert!(matches!(store.finish(job.id, &finish).await.unwrap(), FinishOutcome::Finished(_)));
        store.mark_delivered(job.id, Some(lease.clone()), t(round)).await.unwrap();
    }
}

/// The job a rescue names.
fn rescued_id(rescued: &Rescued) -> JobId {
    match rescued {
        Rescued::Resume(job, _) | Rescued::Requeued(job) | Rescued::SubmitUnknown(job) | Rescued::Redeliver(job, _) => {
            job.id
        }
    }
}

/// A submit that started without a stored handle is never requeued by a rescue (fal may
/// have it); a finished job keeps its lease until its delivery is recorded, and a rescue
/// hands an undelivered one over with its settlement.
pub async fn submit_and_delivery_markers_survive_a_dead_owner(db: &impl Database) {
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let user = add_user(&store, 1).await;
    let submitting = enqueue(&store, user, "s", t(0)).await;
    let undelivered = enqueue(&store, user, "u", t(1)).await;
    let delivered = enqueue(&store, user, "d", t(2)).await;
    let retried = enqueue(&store, user, "r", t(3)).await;
    let queued = enqueue(&store, user, "q", t(4)).await;
    // `dead` claims four; leases run to t(30).
    let ids = [submitting.id, undelivered.id, delivered.id, retried.id];
    let claimed = claim_exactly(&store, &claim_request("dead", vec![capacity(&a, 4)], 4, t(5)), &ids).await;
    let lease = |job: JobId| claimed.iter().find(|c| c.job.id == job).unwrap().job.lease.clone().unwrap();

    store.mark_submitting(submitting.id, &lease(submitting.id), t(6)).await.unwrap();
    let intruder = Lease { owner: "intruder".into(), ..lease(undelivered.id) };
    let refused = store.mark_submitting(undelivered.id, &intruder, t(6)).await;
    assert!(matches!(refused, Err(StorageError::Conflict(_))), "only the holder submits: {refused:?}");
    let missing = store.mark_submitting(JobId(999), &lease(submitting.id), t(6)).await;
    assert!(matches!(missing, Err(StorageError::NotFound(_))), "{missing:?}");
    let not_dispatching = store.mark_submitting(queued.id, &lease(submitting.id), t(6)).await;
    assert!(matches!(not_dispatching, Err(StorageError::Conflict(_))), "{not_dispatching:?}");

    // Submitted and finished, delivery not confirmed: the lease stays and is renewed.
    store.mark_submitting(undelivered.id, &lease(undelivered.id), t(6)).await.unwrap();
    complete(&store, &undelivered, &a, t(7)).await;
    // Submitted, finished and delivered (twice: a no-op).
    store.mark_submitting(delivered.id, &lease(delivered.id), t(6)).await.unwrap();
    complete(&store, &delivered, &a, t(7)).await;
    let wrong = store.mark_delivered(delivered.id, Some(intruder.clone()), t(8)).await;
    assert!(matches!(wrong, Err(StorageError::Conflict(_))), "only its deliverer records it: {wrong:?}");
    store.mark_delivered(delivered.id, Some(lease(delivered.id)), t(8)).await.unwrap();
    store.mark_delivered(delivered.id, Some(lease(delivered.id)), t(9)).await.unwrap();
    // fal refused its submit: requeued, which clears the marker, and claimed again.
    store.mark_submitting(retried.id, &lease(retried.id), t(6)).await.unwrap();
    store.requeue(retried.id, &lease(retried.id), "429", None, t(7)).await.unwrap();
    let again = claim_exactly(&store, &claim_request("dead", vec![capacity(&a, 4)], 1, t(8)), &[retried.id]).await;
    let retried_lease = again[0].job.lease.clone().unwrap();
    assert!(retried_lease.epoch > lease(retried.id).epoch, "every claim starts a new epoch");
    // Canceled while queued: nobody holds it, it counts as told at once.
    assert!(matches!(store.cancel(queued.id, user, t(8)).await.unwrap(), CancelResult::Canceled(_)));

    let early = store.mark_delivered(submitting.id, Some(lease(submitting.id)), t(9)).await;
    assert!(matches!(early, Err(StorageError::Conflict(_))), "not finished yet: {early:?}");
    assert!(matches!(store.mark_delivered(JobId(999), None, t(9)).await, Err(StorageError::NotFound(_))));
    // submitting, undelivered, retried: in flight or waiting for their delivery.
    let held = [
        (submitting.id, lease(submitting.id)),
        (undelivered.id, lease(undelivered.id)),
        (retried.id, retried_lease),
        (delivered.id, lease(delivered.id)),
    ];
    assert_eq!(store.renew_leases(&held, t(30)).await.unwrap(), 3, "a delivered job has no lease left");

    let mut rescued = store.rescue_expired("new", t(90), t(30)).await.unwrap();
    rescued.sort_by_key(rescued_id);
    assert_eq!(rescued.len(), 3, "{rescued:?}");
    let Rescued::SubmitUnknown(unknown) = &rescued[0] else { panic!("{rescued:?}") };
    assert_eq!((unknown.id, &unknown.state), (submitting.id, &JobState::Dispatching { account: a.clone() }));
    let Rescued::Redeliver(again, settlement) = &rescued[1] else { panic!("{rescued:?}") };
    assert_eq!((again.id, &again.state), (undelivered.id, &JobState::Succeeded));
    assert_eq!(*settlement, success(undelivered.hold, cents(4), t(7)).settlement, "as the ledger has it");
    let Rescued::Requeued(requeued) = &rescued[2] else { panic!("{rescued:?}") };
    assert_eq!(requeued.id, retried.id, "a refused submit is safe to send again");

    // The new owner holds both leases; once the delivery is recorded, only the other remains.
    let new_leases: Vec<(JobId, Lease)> =
        [unknown, again].iter().map(|job| (job.id, job.lease.clone().unwrap())).collect();
    assert_eq!(store.renew_leases(&new_leases, t(100)).await.unwrap(), 2);
    let stale = store.mark_delivered(undelivered.id, Some(lease(undelivered.id)), t(95)).await;
    assert!(matches!(stale, Err(StorageError::Conflict(_))), "the dead owner's delivery lease is gone: {stale:?}");
    store.mark_delivered(undelivered.id, Some(new_leases[1].1.clone()), t(95)).await.unwrap();
    let later = store.rescue_expired("other", t(200), t(100)).await.unwrap();
    assert_eq!(later.iter().map(rescued_id).collect::<Vec<_>>(), vec![submitting.id]);
    assert!(matches!(later[0], Rescued::SubmitUnknown(_)), "still unknown: never requeued");
    let unsettled = db.unbalanced_jobs().await;
    assert!(unsettled.is_empty(), "{unsettled:?}");
}

/// Queue positions are FIFO among queued jobs; recent jobs come newest first.
pub async fn queue_positions_and_recent_jobs(db: &impl Database) {
    let store = db.store().await;
    let (alice, bob) = (add_user(&store, 1).await, add_user(&store, 2).await);
    let a1 = enqueue(&store, alice, "a1", t(0)).await;
    let b1 = enqueue(&store, bob, "b1", t(1)).await;
    let a2 = enqueue(&store, alice, "a2", t(2)).await;
    assert_eq!(store.queue_position(a1.id).await.unwrap(), Some(QueuePosition { position: 1, total: 3 }));
    assert_eq!(store.queue_position(b1.id).await.unwrap(), Some(QueuePosition { position: 2, total: 3 }));
    assert_eq!(store.queue_position(a2.id).await.unwrap(), Some(QueuePosition { position: 3, total: 3 }));
    store.cancel(a1.id, alice, t(3)).await.unwrap();
    assert_eq!(store.queue_position(a1.id).await.unwrap(), None);
    assert_eq!(store.queue_position(a2.id).await.unwrap(), Some(QueuePosition { position: 2, total: 2 }));
    assert!(matches!(store.queue_position(JobId(999)).await, Err(StorageError::NotFound(_))));

    let recent: Vec<JobId> = store.recent_jobs(alice, 10).await.unwrap().iter().map(|j| j.id).collect();
    assert_eq!(recent, vec![a2.id, a1.id], "newest first");
    assert_eq!(store.recent_jobs(alice, 1).await.unwrap().len(), 1);
    assert!(store.recent_jobs(UserId(99), 10).await.unwrap().is_empty());
    assert_eq!(store.get_job(JobId(999)).await.unwrap(), None);
    assert_eq!(store.remote_handle(JobId(999)).await.unwrap(), None);
}

/// `wait_for_change` times out when nothing happens and wakes at once on a peer's enqueue or cancel.
pub async fn wait_for_change_wakes_on_an_enqueue_from_a_peer(db: &impl Database) {
    let dispatcher = db.store().await;
    let intake = db.peer().await;
    let user = add_user(&intake, 1).await;

    assert!(!dispatcher.wait_for_change(50).await.unwrap(), "nothing happened: timed out");
    let waiting = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move {
            let started = std::time::Instant::now();
            (dispatcher.wait_for_change(10_000).await.unwrap(), started.elapsed())
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    enqueue(&intake, user, "k", t(0)).await;
    let (woken, waited) = waiting.await.unwrap();
    assert!(woken, "woken by the notification");
    assert!(waited < std::time::Duration::from_secs(5), "woken at once, not by the timeout: {waited:?}");

    // Finishing (here: a cancel) notifies too.
    let job = intake.recent_jobs(user, 1).await.unwrap().remove(0);
    let waiting = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.wait_for_change(10_000).await.unwrap() }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    intake.cancel(job.id, user, t(1)).await.unwrap();
    assert!(waiting.await.unwrap());
}

/// Whatever way jobs end, every finished job's hold is exactly its charge plus its refund.
pub async fn every_finished_job_balances_its_hold(db: &impl Database) {
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let user = add_user(&store, 1).await;
    let mut jobs = Vec::new();
    for i in 0..12 {
        let hold = cents(3 + i % 4);
        let request = request(user, &format!("k{i}"), hold, t(i));
        let EnqueueOutcome::Enqueued(job, _) = store.enqueue(&request).await.unwrap() else { panic!() };
        jobs.push(job);
    }
    let ids: Vec<JobId> = jobs[..8].iter().map(|j| j.id).collect();
    claim_exactly(&store, &claim_request("w", vec![capacity(&a, 8)], 8, t(20)), &ids).await;
    for (i, job) in jobs.iter().enumerate() {
        let now = t(30 + i as i64);
        match i % 4 {
            0 if i < 8 => {
                complete(&store, job, &a, now).await;
            }
            1 if i < 8 => {
                let failed = Finish {
                    lease: None,
                    state: JobState::Failed { reason: FailureReason::ContentPolicy },
                    settlement: Settlement { user_charge: Money::ZERO, user_refund: job.hold, fal_cost: cents(3) },
                    media: vec![],
                    now,
                };
                store.finish(job.id, &as_holder(&store, job.id, &failed).await).await.unwrap();
            }
            _ if i >= 8 => {
                store.cancel(job.id, user, now).await.unwrap();
            }
            _ => {} // Still in flight: only the hold.
        }
    }
    assert!(db.unbalanced_jobs().await.is_empty());
    let finished = db.finished_job_count().await;
    assert_eq!(finished, 8);
}
