//! Prompt enhancement: the cache, the `/enhance` command and the fallback in a job.

use crate::support::{Answer, Harness, LLM_USAGE, one_image};
use mediagen_domain::catalog::PriceRequest;
use mediagen_domain::quota::QuotaRefusal;
use mediagen_domain::{ChatId, IdempotencyKey, JobState, Language, Money, Prompt, UserId};
use mediagen_engine::{EnhanceOutcome, EnhanceRequest};
use mediagen_ports::{EnqueueOutcome, Refusal, UserNotice};

const REWRITE: &str = "A red fox in fresh snow, golden hour, shallow depth of field";

fn ask(prompt: &str) -> EnhanceRequest {
    EnhanceRequest {
        key: IdempotencyKey::new(format!("tg:enhance:{prompt}")),
        user: UserId(1),
        chat: ChatId(1),
        language: Language::En,
        prompt: prompt.into(),
    }
}

/// What the prompt helper costs for `prompt` at the token counts it reported.
fn real_price(h: &Harness, prompt: &str) -> Money {
    let catalog = &h.config.catalog;
    let mut request = PriceRequest::for_enhancement(&Prompt::parse(prompt).unwrap(), catalog);
    request.input_tokens = LLM_USAGE.input_tokens;
    request.output_tokens = LLM_USAGE.output_tokens;
    catalog.price(&request).unwrap()
}

#[tokio::test(start_paused = true)]
async fn enhance_is_a_held_job_charged_at_its_real_price_and_a_repeat_is_free() {
    let h = Harness::new();
    {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
    }
    let engine = h.engine();
    let running = h.start(&engine);
    let EnhanceOutcome::Queued { job, price } = engine.intake.enhance(ask("A  Red FOX")).await else {
        panic!("a first rewrite is an LLM call, queued as a job");
    };
    assert_eq!(engine.intake.await_rewrite(job).await.as_deref(), Some(REWRITE));
    // Same prompt up to case and spacing: from the cache, free, no job.
    let second = engine.intake.enhance(ask("a red fox")).await;
    assert_eq!(second, EnhanceOutcome::Cached { original: "a red fox".into(), enhanced: REWRITE.into() });
    running.shutdown().await;

    let w = h.world();
    assert_eq!(w.enqueues.len(), 1, "the cache hit queued nothing");
    let held = &w.enqueues[0];
    assert_eq!(held.hold, price);
    assert_eq!(held.spec.model, h.config.catalog.llm().endpoint, "held for the prompt helper's endpoint");
    assert_eq!(held.plan.name, "free", "checked against the user's plan, like any job");
    assert_eq!(w.llm_calls, 1, "the hit cost nothing");
    let llm_request = &w.submits[0].1;
    assert_eq!(llm_request.llm.as_ref().unwrap().model, "google/gemini-2.5-flash");
    assert_eq!(llm_request.prompt, "A  Red FOX");

    let finish = w.finishes_of(job);
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0].state, JobState::Succeeded);
    let charge = real_price(&h, "A  Red FOX");
    assert!(charge < price, "the hold assumes the longest answer: {charge} vs {price}");
    assert_eq!(finish[0].settlement.user_charge, charge, "charged at the real token price");
    assert_eq!(finish[0].settlement.user_refund, price.checked_sub(charge).unwrap(), "the rest of the hold back");
    assert_eq!(finish[0].settlement.fal_cost, charge);

    let (key, (_, expires)) = w.cache.iter().next().unwrap();
    assert!(key.starts_with("enhance:google/gemini-2.5-flash:"), "{key}");
    assert_eq!(*expires, w.now + chrono::TimeDelta::seconds(86_400), "the catalog's TTL");
    // The queue message turns into the rewrite; the repeat is answered at once.
    assert!(
        matches!(w.notices[0].1, UserNotice::Queued { job: queued, price: held, .. } if queued == job && held == price)
    );
    assert_eq!(
        w.edits.last().map(|(_, n)| n.clone()),
        Some(UserNotice::EnhancedPrompt { original: "A  Red FOX".into(), enhanced: REWRITE.into() })
    );
    assert_eq!(
        w.notices.last().map(|(_, n)| n.clone()),
        Some(UserNotice::EnhancedPrompt { original: "a red fox".into(), enhanced: REWRITE.into() })
    );
    assert_eq!(engine.stats().cache_hits, 1);
}

#[tokio::test(start_paused = true)]
async fn enhance_refuses_blocked_users_and_exhausted_quotas_and_refunds_a_failed_llm() {
    let h = Harness::new();
    {
        let mut w = h.world();
        let blocked = w.user(1);
        w.users.get_mut(&blocked).unwrap().blocked = true;
        w.user(2);
        w.user(3);
        w.account("main", 2);
        w.llm_answer = Answer::Retryable;
    }
    let engine = h.engine();
    let running = h.start(&engine);
    assert_eq!(engine.intake.enhance(ask("a fox")).await, EnhanceOutcome::Refused(Refusal::Blocked));
    assert!(h.world().enqueues.is_empty(), "a blocked user holds nothing");

    let tomorrow = h.world().now + chrono::TimeDelta::days(1);
    let exhausted =
        QuotaRefusal::DailyJobs { used: 5, limit: 5, request_cost: Money::from_cents(1), resets_at: tomorrow };
    h.world().enqueue_answer = Some(EnqueueOutcome::Refused(exhausted.clone()));
    let refused = engine.intake.enhance(EnhanceRequest { user: UserId(3), ..ask("a fox") }).await;
    assert_eq!(refused, EnhanceOutcome::Refused(Refusal::Quota(exhausted)));
    assert_eq!(h.world().llm_calls, 0, "over quota, the LLM is not called");
    h.world().enqueue_answer = None;

    let EnhanceOutcome::Queued { job, price } =
        engine.intake.enhance(EnhanceRequest { user: UserId(2), ..ask("a fox") }).await
    else {
        panic!("queued");
    };
    assert_eq!(engine.intake.await_rewrite(job).await, None, "the call failed: no rewrite");
    running.shutdown().await;

    let w = h.world();
    assert!(w.llm_calls >= 1);
    let finish = w.finishes_of(job);
    assert_eq!(finish.len(), 1, "ended once");
    assert!(matches!(finish[0].state, JobState::Failed { .. }));
    assert_eq!(finish[0].settlement.user_refund, price, "the whole hold back");
    assert_eq!(finish[0].settlement.fal_cost, Money::ZERO, "fal's failed run is not billed");
    assert!(w.cache.is_empty(), "a failure is not cached");
    assert!(
        w.edits.iter().any(|(_, n)| matches!(n, UserNotice::Failed { job: failed, .. } if *failed == job)),
        "the user is told: {:?}",
        w.edits
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_runs_with_the_rewrite_and_pays_for_the_llm_call() {
    let h = Harness::new();
    let job = {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
        let job = w.queued_job(1, one_image());
        w.jobs.get_mut(&job).unwrap().spec.enhance_prompt = true;
        let hold = h.config.catalog.estimate(&w.job(job).spec).unwrap();
        w.jobs.get_mut(&job).unwrap().hold = hold;
        job
    };
    h.run_for(5).await;

    let w = h.world();
    let submits = w.job_submits();
    assert_eq!(submits.len(), 1);
    assert_eq!(submits[0].1.prompt, REWRITE, "the rewrite is what runs");
    assert_eq!(w.llm_calls, 1);
    let finish = w.finishes_of(job);
    assert_eq!(finish.len(), 1);
    let llm = real_price(&h, "a red fox in the snow");
    assert_eq!(finish[0].settlement.user_charge, one_image().checked_add(llm).unwrap(), "at the real token price");
}

#[tokio::test(start_paused = true)]
async fn a_failed_enhancement_falls_back_to_the_original_prompt() {
    let h = Harness::new();
    let job = {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
        w.llm_answer = Answer::Retryable;
        let job = w.queued_job(1, one_image());
        w.jobs.get_mut(&job).unwrap().spec.enhance_prompt = true;
        job
    };
    let engine = h.run_for(5).await;

    let w = h.world();
    assert_eq!(w.job_submits()[0].1.prompt, "a red fox in the snow");
    assert_eq!(w.job(job).state, JobState::Succeeded, "the job does not fail for it");
    assert_eq!(w.finishes_of(job)[0].settlement.user_charge, one_image(), "no LLM cost charged");
    assert_eq!(engine.stats().enhance_failures, 1);
}
