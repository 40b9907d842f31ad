//! Dispatch and completion: capacity, the path of a job through fal, progress, delivery.

use crate::support::{Harness, advance, one_image, request};
use chrono::TimeDelta;
use mediagen_domain::credit::CreditPurchase;
use mediagen_domain::{AccountId, JobState, MediaRef, Money, RequestId};
use mediagen_engine::IntakeOutcome;
use mediagen_ports::UserNotice;

#[tokio::test(start_paused = true)]
async fn the_engine_never_asks_for_more_than_the_free_capacity() {
    let h = Harness::new();
    let (a, b, c) = {
        let mut w = h.world();
        w.user(1);
        // A: $10 bought 1 day ago → limit 10 by fal's tiers; 9 jobs already there.
        let a = w.account("a", 0);
        w.accounts[0].limit_override = None;
        let purchase = CreditPurchase { amount: Money::from_dollars(10), purchased_at: w.now - TimeDelta::days(1) };
        w.purchases.insert(a.clone(), vec![purchase]);
        // B: locked by fal; C: disabled by the operator.
        let b = w.account("b", 3);
        w.accounts[1].locked = Some(mediagen_ports::AccountLock { reason: "User is locked".into(), since: w.now });
        let c = w.account("c", 3);
        w.accounts[2].disabled = true;
        for _ in 0..9 {
            let job = w.queued_job(7, one_image());
            let entry = w.jobs.get_mut(&job).unwrap();
            entry.state = JobState::Submitted { account: a.clone(), request_id: RequestId::new(format!("old-{job}")) };
        }
        for _ in 0..5 {
            w.queued_job(1, one_image());
        }
        (a, b, c)
    };
    h.run_for(3).await;

    let w = h.world();
    let first = &w.claims[0];
    assert_eq!(first.max_jobs, 2, "limit 10 + overhang 1 - 9 in flight");
    let usable: Vec<(AccountId, u32, bool)> =
        first.accounts.iter().map(|c| (c.account.clone(), c.limit, c.usable)).collect();
    assert_eq!(usable, vec![(a.clone(), 10, true), (b, 3, false), (c, 3, false)]);
    assert_eq!(first.overhang, 1);
    assert!(first.in_flight_caps.contains(&("free".to_owned(), 1)));
    for (claim, in_flight) in w.claims.iter().zip(&w.claim_in_flight) {
        let free: u32 = claim
            .accounts
            .iter()
            .filter(|c| c.usable)
            .map(|c| (c.limit + claim.overhang).saturating_sub(in_flight[&c.account]))
            .sum();
        assert!(claim.max_jobs <= free && claim.max_jobs > 0, "asked {} with {free} free", claim.max_jobs);
    }
    assert!(w.job_submits().iter().all(|(account, _)| *account == a), "nothing on unusable accounts");
}

#[tokio::test(start_paused = true)]
async fn a_full_account_is_not_asked_at_all() {
    let h = Harness::new();
    {
        let mut w = h.world();
        let a = w.account("a", 2);
        for _ in 0..3 {
            let job = w.queued_job(7, one_image());
            w.jobs.get_mut(&job).unwrap().state =
                JobState::Running { account: a.clone(), request_id: RequestId::new("x") };
        }
        w.queued_job(1, one_image());
    }
    h.run_for(3).await;
    assert!(h.world().claims.is_empty(), "2 + overhang 1 are in flight: no claim");
}

#[tokio::test(start_paused = true)]
async fn a_job_goes_from_intake_through_fal_to_delivery_and_is_charged_its_price() {
    let mut h = Harness::new();
    // Two seconds in fal's queue, so the "generating" state is on screen before "done".
    h.config.status_poll = Some(std::time::Duration::from_secs(1));
    {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
        let waiting = mediagen_ports::RemoteStatus::InQueue { position: Some(0) };
        w.status_answers.extend([waiting.clone(), waiting]);
    }
    let engine = h.engine();
    let mut req = request(1, "make the sky purple");
    req.input_media = vec![MediaRef { file_id: "AgADtelegram".into(), size_bytes: Some(2048) }];
    let IntakeOutcome::Queued { job, price, .. } = engine.intake.submit(req).await else { panic!("not queued") };
    assert_eq!(price, one_image());

    let running = h.start(&engine);
    advance(5).await;
    running.shutdown().await;

    let w = h.world();
    // The input went platform → bytes → fal storage; fal only ever saw its own URL.
    assert_eq!(w.fetched, vec![MediaRef { file_id: "AgADtelegram".into(), size_bytes: Some(2048) }]);
    assert_eq!(w.uploads, vec![(AccountId::new("main"), 16)]);
    let submits = w.job_submits();
    assert_eq!(submits.len(), 1);
    assert_eq!(submits[0].1.input_image_urls, vec!["https://v3.fal.media/files/upload-1.png".to_owned()]);
    assert!(w.handles.contains_key(&job), "the handle was stored (mark_submitted)");

    let finishes = w.finishes_of(job);
    assert_eq!(finishes.len(), 1);
    let finish = finishes[0];
    assert_eq!(finish.state, JobState::Succeeded);
    assert_eq!(finish.settlement.user_charge, one_image());
    assert_eq!(finish.settlement.user_refund, Money::ZERO);
    assert_eq!(finish.media.len(), 1);
    assert!(finish.media[0].fal_url.starts_with("https://v3.fal.media/files/req-0"));

    assert_eq!(w.results.len(), 1);
    assert_eq!((w.results[0].1, w.results[0].2, w.results[0].3), (job, 1, false));
    assert_eq!(w.saved_media.len(), 1);
    assert_eq!(w.saved_media[0].telegram_file_id.as_deref(), Some("tg-file-1-0"));

    // Progress: the acknowledgement, then edits of that same message: generating, done.
    let ack = w.notices.iter().filter(|(_, n)| matches!(n, UserNotice::Queued { .. })).count();
    assert_eq!((ack, w.notices.len()), (1, 1), "one message, edited afterwards");
    let edits: Vec<&UserNotice> = w.edits.iter().map(|(_, n)| n).collect();
    assert_eq!(edits.len(), 2, "{edits:?}");
    assert!(matches!(edits[0], UserNotice::Generating { .. }), "{edits:?}");
    assert_eq!(edits[1], &UserNotice::Done { job, charged: one_image() });
    assert!(w.edits.iter().all(|(m, _)| m.message_id == 101));
    assert_eq!(engine.stats().succeeded, 1);
}

#[tokio::test(start_paused = true)]
async fn results_go_as_files_when_the_user_prefers_and_only_what_was_produced_is_charged() {
    let h = Harness::new();
    let job = {
        let mut w = h.world();
        let user = w.user(1);
        w.users.get_mut(&user).unwrap().settings.send_as_file = true;
        w.account("main", 2);
        w.outputs = 2;
        let job = w.queued_job(1, Money::from_micros(3 * 39_000));
        w.jobs.get_mut(&job).unwrap().spec.num_images = 3;
        job
    };
    h.run_for(5).await;

    let w = h.world();
    assert_eq!(w.results.len(), 1);
    assert_eq!((w.results[0].2, w.results[0].3), (2, true), "two files, as documents");
    let settlement = w.finishes_of(job)[0].settlement;
    assert_eq!(settlement.user_charge, Money::from_micros(2 * 39_000), "fal made two of three");
    assert_eq!(settlement.user_refund, one_image());
    assert_eq!(w.saved_media.len(), 2);
    assert_eq!(w.notices.last().map(|(_, n)| n), Some(&UserNotice::Done { job, charged: Money::from_micros(78_000) }));
    assert_eq!(w.notices.last().map(|(to, _)| to.language), Some(mediagen_domain::Language::Ru));
}
