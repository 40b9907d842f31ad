//! Builders shared by the stories: fixed instants, plans, requests, handles, settlements.

use crate::Store;
use mediagen_domain::job::{JobSpec, Settlement};
use mediagen_domain::quota::Plan;
use mediagen_domain::{
    AccountId, ChatId, IdempotencyKey, Job, JobId, JobState, Language, Lease, ModelId, ModelKind, Money, Prompt,
    RequestId, Role, Timestamp, UserId,
};
use mediagen_ports::{
    AccountCapacity, ClaimRequest, ClaimedJob, EnqueueOutcome, EnqueueRequest, Finish, FinishOutcome, NewUser,
    RemoteHandle,
};

/// A fixed instant, `secs` after 2026-11-25 12:00 UTC, so stored timestamps compare
/// exactly (both adapters keep microseconds).
///
/// # Panics
/// Never: the base instant is a constant.
pub fn t(secs: i64) -> Timestamp {
    chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().to_utc() + chrono::TimeDelta::seconds(secs)
}

/// A plan named `free` with no daily or monthly cap.
pub fn plan(max_queued: u32) -> Plan {
    Plan { name: "free".into(), daily_jobs: None, monthly_spend: None, max_in_flight: 100, max_queued }
}

/// The model every story's jobs use.
pub const MODEL: &str = "fal-ai/flux/schnell";

/// A one-image text-to-image request for `model`.
///
/// # Panics
/// Never: the prompt is a valid constant.
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

/// `n` cents.
pub fn cents(n: i64) -> Money {
    Money::from_cents(n)
}

/// Stores user `id` on the `free` plan.
pub async fn add_user(store: &impl Store, id: i64) -> UserId {
    add_user_on(store, id, "free", Role::User).await
}

/// Stores user `id` on `plan` with `role`.
///
/// # Panics
/// When the store refuses.
pub async fn add_user_on(store: &impl Store, id: i64, plan: &str, role: Role) -> UserId {
    let user = store.upsert_user(&NewUser { id: UserId(id), language: Language::En, plan: plan.into(), role }).await;
    user.unwrap().id
}

/// Stores fal account `id` with one key name.
///
/// # Panics
/// When the store refuses.
pub async fn add_account(store: &impl Store, id: &str) -> AccountId {
    store.upsert_account(&AccountId::new(id), &[format!("{id}-key")]).await.unwrap().id
}

/// An enqueue request of `user` under key `key`, holding `hold`, on a roomy plan.
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

/// Enqueues a 5-cent job and insists it was accepted.
///
/// # Panics
/// When it was not.
pub async fn enqueue(store: &impl Store, user: UserId, key: &str, now: Timestamp) -> Job {
    match store.enqueue(&request(user, key, cents(5), now)).await.unwrap() {
        EnqueueOutcome::Enqueued(job, _) => job,
        other => panic!("expected Enqueued, got {other:?}"),
    }
}

/// A usable account with `limit` slots.
pub fn capacity(account: &AccountId, limit: u32) -> AccountCapacity {
    AccountCapacity { account: account.clone(), limit, usable: true }
}

/// A claim by `owner` with a 30-second lease and no overhang or plan caps.
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

/// fal's handle for `job` on `account`.
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

/// The lease the job is under now (as its holder would have it from the claim or the
/// rescue), or a lease nobody holds when the job has none (or does not exist), so a write
/// with it is refused.
///
/// # Panics
/// When the store cannot be read.
pub async fn lease_of(store: &impl Store, job: JobId) -> Lease {
    let found = store.get_job(job).await.unwrap();
    found.and_then(|job| job.lease).unwrap_or_else(|| Lease { owner: "nobody".into(), epoch: 0 })
}

/// `finish` as the job's current lease holder would send it (a cancel goes without one).
pub async fn as_holder(store: &impl Store, job: JobId, finish: &Finish) -> Finish {
    if finish.state == JobState::Canceled {
        return finish.clone();
    }
    Finish { lease: Some(lease_of(store, job).await), ..finish.clone() }
}

/// Claims with `request` and insists on exactly `expected` (in any order: the stories that
/// care about the scheduler's order check it themselves), each `Dispatching` under a lease
/// of the claim's owner; returns what was claimed.
///
/// # Panics
/// When the claim fails or claims anything else.
pub async fn claim_exactly(store: &impl Store, request: &ClaimRequest, expected: &[JobId]) -> Vec<ClaimedJob> {
    let claimed = store.claim(request).await.unwrap();
    let mut ids: Vec<JobId> = claimed.iter().map(|c| c.job.id).collect();
    let mut expected = expected.to_vec();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected, "claimed by {}", request.owner);
    for c in &claimed {
        assert_eq!(c.job.state, JobState::Dispatching { account: c.account.clone() });
        let lease = c.job.lease.as_ref().unwrap_or_else(|| panic!("job {} claimed without a lease", c.job.id));
        assert_eq!(lease.owner, request.owner);
    }
    claimed
}

/// Charges `price` (at most the hold), refunds the rest, bills fal `price`.
///
/// # Panics
/// Never: the charge is at most the hold.
pub fn success(hold: Money, price: Money, now: Timestamp) -> Finish {
    let charge = price.min(hold);
    Finish {
        lease: None,
        state: JobState::Succeeded,
        settlement: Settlement { user_charge: charge, user_refund: hold.checked_sub(charge).unwrap(), fal_cost: price },
        media: vec![],
        now,
    }
}

/// Submits and succeeds a claimed job (charged and billed 4 cents) as its lease holder.
///
/// # Panics
/// When the store refuses.
pub async fn complete(store: &impl Store, job: &Job, account: &AccountId, now: Timestamp) -> Job {
    let lease = lease_of(store, job.id).await;
    store.mark_submitted(job.id, &lease, &handle(account, job.id), now).await.unwrap();
    let finish = Finish { lease: Some(lease), ..success(job.hold, cents(4), now) };
    match store.finish(job.id, &finish).await.unwrap() {
        FinishOutcome::Finished(job) => job,
        other => panic!("expected Finished, got {other:?}"),
    }
}
