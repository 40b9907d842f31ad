//! PostgreSQL alone: how fast `JobQueue::claim` on `PgStore` drains a full queue with one
//! or several claimers (each its own "process" with its own pool), no engine, no fal.

use crate::rig::{fresh_postgres, on_counted_runtime};
use anyhow::Context;
use mediagen_domain::quota::Plan;
use mediagen_domain::{
    AccountId, ChatId, IdempotencyKey, ImageSize, JobId, JobSpec, Language, ModelId, ModelKind, Money, Prompt, Role,
    UserId,
};
use mediagen_ports::{
    AccountCapacity, AccountStore, ClaimRequest, EnqueueOutcome, EnqueueRequest, JobQueue, NewUser, UserStore,
};
use mediagen_postgres::PgStore;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

/// Jobs per claim call: the engine's default `claim_batch`.
pub const DEFAULT_BATCH: u32 = 16;
/// Users the queued jobs belong to.
const USERS: i64 = 100;
/// Concurrent enqueuers while filling the queue.
const FILLERS: usize = 8;

/// Claim throughput with a given number of claimers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimFigures {
    /// Concurrent claimers.
    pub claimers: usize,
    /// Jobs queued at the start (all claimed by the end).
    pub queued: usize,
    /// Jobs claimed per call at most.
    pub batch: u32,
    /// Claim calls made (the last, empty one of each claimer included).
    pub calls: u64,
    /// Seconds from the first claim to the empty queue.
    pub seconds: f64,
    /// `queued / seconds`.
    pub jobs_per_sec: f64,
    /// Jobs enqueued per second while filling the queue (8 concurrent `enqueue` calls).
    pub enqueue_per_sec: f64,
}

/// Fills a fresh database's queue with `jobs` jobs, then drains it with `claimers`
/// concurrent claimers taking up to `batch` jobs a call, and times it.
///
/// # Errors
/// When the database fails, or a job is claimed twice or not at all.
pub fn measure(jobs: usize, claimers: usize, batch: u32) -> anyhow::Result<ClaimFigures> {
    on_counted_runtime("bench-claims", move |_| async move {
        let (db, store) = fresh_postgres().await?;
        let store = Arc::new(store);
        let account = AccountId::new("claims");
        store.upsert_account(&account, &["k".to_owned()]).await?;
        for user in 1..=USERS {
            let new = NewUser { id: UserId(user), language: Language::En, plan: "bench".to_owned(), role: Role::User };
            store.upsert_user(&new).await?;
        }

        let fill_start = Instant::now();
        let mut fillers = tokio::task::JoinSet::new();
        for filler in 0..FILLERS {
            let store = Arc::clone(&store);
            fillers.spawn(async move {
                for n in (filler..jobs).step_by(FILLERS) {
                    let outcome = store.enqueue(&enqueue_request(n)?).await?;
                    anyhow::ensure!(
                        matches!(outcome, EnqueueOutcome::Enqueued(..)),
                        "job {n} not enqueued: {outcome:?}"
                    );
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = fillers.join_next().await {
            done.context("an enqueuer panicked")??;
        }
        let enqueue_per_sec = jobs as f64 / fill_start.elapsed().as_secs_f64();

        // Each claimer has a pool of its own, as a separate process would.
        let mut stores = Vec::new();
        for _ in 0..claimers {
            stores.push(Arc::new(PgStore::connect(db.url(), 2).await.context("a claimer's own store")?));
        }
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (n, store) in stores.into_iter().enumerate() {
            let account = account.clone();
            tasks.spawn(async move {
                let mut claimed: Vec<JobId> = Vec::new();
                let mut calls = 0u64;
                loop {
                    let now = chrono::Utc::now();
                    let request = ClaimRequest {
                        owner: format!("claimer-{n}"),
                        lease_until: now + chrono::TimeDelta::minutes(10),
                        accounts: vec![AccountCapacity { account: account.clone(), limit: 1_000_000, usable: true }],
                        overhang: 0,
                        max_jobs: batch,
                        in_flight_caps: Vec::new(),
                        now,
                    };
                    calls += 1;
                    let batch = store.claim(&request).await?;
                    if batch.is_empty() {
                        return anyhow::Ok((claimed, calls));
                    }
                    claimed.extend(batch.into_iter().map(|c| c.job.id));
                }
            });
        }
        let mut all = HashSet::new();
        let mut calls = 0;
        let mut total = 0;
        while let Some(done) = tasks.join_next().await {
            let (claimed, n) = done.context("a claimer panicked")??;
            calls += n;
            total += claimed.len();
            all.extend(claimed);
        }
        let seconds = start.elapsed().as_secs_f64();
        anyhow::ensure!(total == all.len(), "a job was claimed twice");
        anyhow::ensure!(all.len() == jobs, "{} of {jobs} jobs claimed", all.len());
        drop(store);
        drop(db);
        Ok(ClaimFigures {
            claimers,
            queued: jobs,
            batch,
            calls,
            seconds,
            jobs_per_sec: jobs as f64 / seconds,
            enqueue_per_sec,
        })
    })
}

fn enqueue_request(n: usize) -> anyhow::Result<EnqueueRequest> {
    let user = UserId(1 + (n as i64 % USERS));
    Ok(EnqueueRequest {
        key: IdempotencyKey::new(format!("claims-{n}")),
        user,
        chat: ChatId(user.0),
        spec: JobSpec {
            model: ModelId::new("fal-ai/nano-banana"),
            kind: ModelKind::TextToImage,
            prompt: Prompt::parse(&format!("a lighthouse at dusk #{n}"))?,
            size: Some(ImageSize::new(1024, 1024)),
            num_images: 1,
            input_media: Vec::new(),
            seed: None,
            enhance_prompt: false,
        },
        hold: Money::from_micros(39_000),
        plan: Plan {
            name: "bench".to_owned(),
            daily_jobs: None,
            monthly_spend: None,
            max_in_flight: 1_000,
            max_queued: 1_000_000,
        },
        role: Role::User,
        now: chrono::Utc::now(),
    })
}
