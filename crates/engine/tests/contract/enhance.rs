//! Prompt enhancement: the cache, the `/enhance` command and the fallback in a job.

use crate::support::{Answer, Harness, advance, one_image};
use mediagen_domain::catalog::PriceRequest;
use mediagen_domain::{ChatId, JobState, Language, Prompt, UserId};
use mediagen_engine::{EnhanceOutcome, EnhanceRequest};
use mediagen_ports::{Refusal, UserNotice};

const REWRITE: &str = "A red fox in fresh snow, golden hour, shallow depth of field";

fn ask(prompt: &str) -> EnhanceRequest {
    EnhanceRequest { user: UserId(1), chat: ChatId(1), language: Language::En, prompt: prompt.into() }
}

#[tokio::test(start_paused = true)]
async fn a_repeated_prompt_is_served_from_the_cache_without_an_llm_call() {
    let h = Harness::new();
    {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
    }
    let engine = h.engine();
    let first = engine.enhance(ask("A  Red FOX")).await;
    assert_eq!(
        first,
        EnhanceOutcome::Enhanced { original: "A  Red FOX".into(), enhanced: REWRITE.into(), cached: false }
    );
    // Same prompt up to case and spacing.
    let second = engine.enhance(ask("a red fox")).await;
    assert!(matches!(second, EnhanceOutcome::Enhanced { cached: true, ref enhanced, .. } if enhanced == REWRITE));

    let stats = engine.stats();
    assert_eq!((stats.cache_hits, stats.cache_misses), (1, 1));
    let w = h.world();
    assert_eq!(w.llm_calls, 1, "the hit cost nothing");
    let (key, (_, expires)) = w.cache.iter().next().unwrap();
    assert!(key.starts_with("enhance:google/gemini-2.5-flash:"), "{key}");
    assert_eq!(*expires, w.now + chrono::TimeDelta::seconds(86_400), "the catalog's TTL");
    let llm_request = &w.submits[0].1;
    assert_eq!(llm_request.llm.as_ref().unwrap().model, "google/gemini-2.5-flash");
    assert_eq!(
        w.notices.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>(),
        vec![
            UserNotice::EnhancedPrompt { original: "A  Red FOX".into(), enhanced: REWRITE.into() },
            UserNotice::EnhancedPrompt { original: "a red fox".into(), enhanced: REWRITE.into() },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn enhance_refuses_blocked_users_and_reports_a_failed_llm() {
    let h = Harness::new();
    {
        let mut w = h.world();
        let blocked = w.user(1);
        w.users.get_mut(&blocked).unwrap().blocked = true;
        w.user(2);
        w.account("main", 2);
        w.llm_answer = Answer::Retryable;
    }
    let engine = h.engine();
    assert_eq!(engine.enhance(ask("a fox")).await, EnhanceOutcome::Refused(Refusal::Blocked));
    let failed = engine.enhance(EnhanceRequest { user: UserId(2), ..ask("a fox") }).await;
    assert_eq!(failed, EnhanceOutcome::Refused(Refusal::TemporarilyUnavailable));
    assert_eq!(engine.stats().enhance_failures, 1);
    assert!(h.world().cache.is_empty(), "a failure is not cached");
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
    let engine = h.engine();
    let running = h.start(&engine);
    advance(5).await;
    running.shutdown().await;

    let w = h.world();
    let submits = w.job_submits();
    assert_eq!(submits.len(), 1);
    assert_eq!(submits[0].1.prompt, REWRITE, "the rewrite is what runs");
    assert_eq!(w.llm_calls, 1);
    let finish = w.finishes_of(job);
    assert_eq!(finish.len(), 1);
    let llm = h
        .config
        .catalog
        .price(&PriceRequest::for_enhancement(&Prompt::parse("a red fox in the snow").unwrap(), &h.config.catalog))
        .unwrap();
    assert_eq!(finish[0].settlement.user_charge, one_image().checked_add(llm).unwrap());
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
    let engine = h.engine();
    let running = h.start(&engine);
    advance(5).await;
    running.shutdown().await;

    let w = h.world();
    assert_eq!(w.job_submits()[0].1.prompt, "a red fox in the snow");
    assert_eq!(w.job(job).state, JobState::Succeeded, "the job does not fail for it");
    assert_eq!(w.finishes_of(job)[0].settlement.user_charge, one_image(), "no LLM cost charged");
    assert_eq!(engine.stats().enhance_failures, 1);
}
