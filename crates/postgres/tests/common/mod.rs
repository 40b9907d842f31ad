//! Builders shared by the contract tests. Each test gets its own database from
//! `mediagen_postgres::testing::fresh_database()`.
#![allow(dead_code)] // Each test binary uses a different subset.

use mediagen_domain::job::{JobSpec, Settlement};
use mediagen_domain::quota::Plan;
use mediagen_domain::{
    AccountId, ChatId, IdempotencyKey, Job, JobId, JobState, Language, ModelId, ModelKind, Money, Prompt, RequestId,
    Role, Timestamp, UserId,
};
use mediagen_ports::{
    AccountCapacity, AccountStore, ClaimRequest, EnqueueOutcome, EnqueueRequest, Finish, FinishOutcome, JobQueue,
    NewUser, RemoteHandle, UserStore,
};
use mediagen_postgres::PgStore;

/// A fixed instant, so stored timestamps compare exactly (PostgreSQL keeps microseconds).
pub fn t(secs: i64) -> Timestamp {
    chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().to_utc() + chrono::TimeDelta::seconds(secs)
}

/// A plan with no daily or monthly cap.
pub fn plan(max_queued: u32) -> Plan {
    Plan { name: "free".into(), daily_jobs: None, monthly_spend: None, max_in_flight: 100, max_queued }
}

pub fn spec(model: &str) -> JobSpec {
    JobSpec {
        model: ModelId::new(model),
        kind: ModelKind::TextToImage,
        prompt: Prompt::parse("a red fox in the snow").unwrap(),
        size: None,
        num_images: 1,
        input_media: vec![],
        seed: Some(42),
        enhance_prompt: false,
    }
}

pub const MODEL: &str = "fal-ai/flux/schnell";

pub fn cents(n: i64) -> Money {
    Money::from_cents(n)
}

pub async fn add_user(store: &PgStore, id: i64) -> UserId {
    add_user_on(store, id, "free", Role::User).await
}

pub async fn add_user_on(store: &PgStore, id: i64, plan: &str, role: Role) -> UserId {
    let user = store.upsert_user(&NewUser { id: UserId(id), language: Language::En, plan: plan.into(), role }).await;
    user.unwrap().id
}

pub async fn add_account(store: &PgStore, id: &str) -> AccountId {
    store.upsert_account(&AccountId::new(id), &[format!("{id}-key")]).await.unwrap().id
}

pub fn request(user: UserId, key: &str, hold: Money, now: Timestamp) -> EnqueueRequest {
    EnqueueRequest {
        key: IdempotencyKey::new(key),
        user,
        chat: ChatId(user.0),
        spec: spec(MODEL),
        hold,
        plan: plan(1_000),
        role: Role::User,
        now,
    }
}

/// Enqueues and insists it was accepted.
pub async fn enqueue(store: &PgStore, user: UserId, key: &str, now: Timestamp) -> Job {
    match store.enqueue(&request(user, key, cents(5), now)).await.unwrap() {
        EnqueueOutcome::Enqueued(job, _) => job,
        other => panic!("expected Enqueued, got {other:?}"),
    }
}

pub fn capacity(account: &AccountId, limit: u32) -> AccountCapacity {
    AccountCapacity { account: account.clone(), limit, usable: true }
}

pub fn claim_request(owner: &str, accounts: Vec<AccountCapacity>, max_jobs: u32, now: Timestamp) -> ClaimRequest {
    ClaimRequest {
        owner: owner.into(),
        lease_until: now + chrono::TimeDelta::seconds(30),
        accounts,
        overhang: 0,
        max_jobs,
        in_flight_caps: vec![],
        now,
    }
}

pub fn handle(account: &AccountId, job: JobId) -> RemoteHandle {
    let id = format!("req-{}", job.0);
    RemoteHandle {
        account: account.clone(),
        model: ModelId::new(MODEL),
        request_id: RequestId::new(&id),
        status_url: format!("http://fal.test/{MODEL}/requests/{id}/status"),
        response_url: format!("http://fal.test/{MODEL}/requests/{id}"),
        cancel_url: format!("http://fal.test/{MODEL}/requests/{id}/cancel"),
    }
}

/// Charges `price` (at most the hold), refunds the rest, bills fal `price`.
pub fn success(hold: Money, price: Money, now: Timestamp) -> Finish {
    let charge = price.min(hold);
    Finish {
        state: JobState::Succeeded,
        settlement: Settlement { user_charge: charge, user_refund: hold.checked_sub(charge).unwrap(), fal_cost: price },
        media: vec![],
        now,
    }
}

/// Submits and succeeds a claimed job.
pub async fn complete(store: &PgStore, job: &Job, account: &AccountId, owner: &str, now: Timestamp) -> Job {
    store.mark_submitted(job.id, owner, &handle(account, job.id), now).await.unwrap();
    match store.finish(job.id, &success(job.hold, cents(4), now)).await.unwrap() {
        FinishOutcome::Finished(job) => job,
        other => panic!("expected Finished, got {other:?}"),
    }
}

/// Ledger sum of one kind for one job, straight from the table.
pub async fn ledger(store: &PgStore, job: JobId, kind: &str) -> Option<i64> {
    sqlx::query_scalar::<_, i64>("SELECT amount_micros FROM ledger WHERE job_id = $1 AND kind = $2")
        .bind(job.0)
        .bind(kind)
        .fetch_optional(store.pool())
        .await
        .unwrap()
}

/// Number of ledger rows of one job.
pub async fn ledger_rows(store: &PgStore, job: JobId) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ledger WHERE job_id = $1")
        .bind(job.0)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Every finished job whose hold is not exactly charge + refund (must be none).
pub async fn unbalanced_jobs(store: &PgStore) -> Vec<i64> {
    sqlx::query_scalar::<_, i64>(
        "SELECT j.id FROM jobs j
         LEFT JOIN ledger h ON h.job_id = j.id AND h.kind = 'hold'
         LEFT JOIN ledger c ON c.job_id = j.id AND c.kind = 'charge'
         LEFT JOIN ledger r ON r.job_id = j.id AND r.kind = 'refund'
         WHERE j.finished_at IS NOT NULL
           AND (h.amount_micros IS NULL OR c.amount_micros IS NULL OR r.amount_micros IS NULL
                OR h.amount_micros <> j.hold_micros OR h.amount_micros <> c.amount_micros + r.amount_micros)
         ORDER BY j.id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
}

/// Jobs in flight per account, committed state, straight from the table.
pub async fn in_flight_now(store: &PgStore) -> Vec<(String, i64)> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT account_id, count(*) FROM jobs WHERE state IN ('dispatching', 'submitted', 'running')
         GROUP BY account_id ORDER BY account_id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
}
