//! Stories of `ReportStore` on a database filled with a known two-day history, written
//! through the real queue API (so events and ledger rows are the ones production writes).
//! Every figure is asserted exactly, so both adapters answer the same rows in the same
//! order. (First written for PostgreSQL in `crates/postgres/tests/reports.rs`.)

use crate::support::{add_account, add_user, as_holder, cents, lease_of};
use crate::{Database, Store};
use chrono::{NaiveDate, TimeDelta, TimeZone, Utc};
use mediagen_domain::job::{JobSpec, Settlement};
use mediagen_domain::quota::Plan;
use mediagen_domain::{
    AccountId, ChatId, FailureReason, IdempotencyKey, Job, JobId, JobState, ModelId, ModelKind, Money, Prompt,
    RequestId, Role, Timestamp, UserId,
};
use mediagen_ports::{
    AccountCapacity, CancelResult, ClaimRequest, DayCount, EnqueueOutcome, EnqueueRequest, Finish, JobCounts, JobQueue,
    RemoteHandle, ReportStore, SlotInterval, UsageRow, UsageStore,
};

const FLUX: &str = "fal-ai/flux/schnell";
const BANANA: &str = "fal-ai/nano-banana";

/// `2026-11-{day} hh:mm:ss` UTC.
fn at(day: u32, h: u32, m: u32, s: u32) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, day, h, m, s).unwrap()
}

fn date(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
}

async fn enqueue_model(store: &impl Store, user: UserId, key: &str, model: &str, now: Timestamp) -> Job {
    let request = EnqueueRequest {
        key: IdempotencyKey::new(key),
        user,
        chat: ChatId(user.0),
        spec: JobSpec {
            model: ModelId::new(model),
            kind: ModelKind::TextToImage,
            prompt: Prompt::parse("a red fox in the snow").unwrap(),
            size: None,
            num_images: 1,
            input_media: vec![],
            seed: Some(42),
            enhance_prompt: false,
        },
        hold: cents(5),
        plan: Plan { name: "free".into(), daily_jobs: None, monthly_spend: None, max_in_flight: 100, max_queued: 100 },
        role: Role::User,
        now,
    };
    match store.enqueue(&request).await.unwrap() {
        EnqueueOutcome::Enqueued(job, _) => job,
        other => panic!("expected Enqueued, got {other:?}"),
    }
}

/// Claims the only queued job onto `account`.
async fn claim_on(store: &impl Store, job: &Job, account: &AccountId, now: Timestamp) {
    let request = ClaimRequest {
        owner: "owner".into(),
        lease_until: now + TimeDelta::seconds(30),
        accounts: vec![AccountCapacity { account: account.clone(), limit: 5, usable: true }],
        overhang: 0,
        max_jobs: 1,
        in_flight_caps: vec![],
        now,
    };
    let claimed = store.claim(&request).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.job.id).collect::<Vec<_>>(), vec![job.id], "claim at {now}");
}

async fn submit(store: &impl Store, job: &Job, account: &AccountId, now: Timestamp) {
    let id = format!("req-{}-{}", job.id.0, now.timestamp());
    let handle = RemoteHandle {
        account: account.clone(),
        model: job.spec.model.clone(),
        request_id: RequestId::new(&id),
        status_url: format!("http://fal.test/requests/{id}/status"),
        response_url: format!("http://fal.test/requests/{id}"),
        cancel_url: format!("http://fal.test/requests/{id}/cancel"),
    };
    store.mark_submitted(job.id, &lease_of(store, job.id).await, &handle, now).await.unwrap();
}

/// Charges 4¢ of the 5¢ hold, refunds 1¢, bills fal 4¢.
async fn succeed(store: &impl Store, job: &Job, now: Timestamp) {
    let finish = Finish {
        lease: None,
        state: JobState::Succeeded,
        settlement: Settlement { user_charge: cents(4), user_refund: cents(1), fal_cost: cents(4) },
        media: vec![],
        now,
    };
    store.finish(job.id, &as_holder(store, job.id, &finish).await).await.unwrap();
}

struct History<S> {
    store: S,
    jobs: Vec<JobId>,
}

/// Two days on two accounts (`a`, `b`) for three users:
///
/// | job | user | model | life |
/// |---|---|---|---|
/// | 1 | 1 | flux | 24th: enqueued 10:00:00, claimed on a 10:00:05, submitted 10:00:06, succeeded 10:00:25 |
/// | 2 | 2 | banana | 24th: enqueued 10:00:10, claimed on a 10:00:12, submitted 10:00:13, requeued 10:00:20, claimed on b 10:00:30, submitted 10:00:31, succeeded 10:01:00 |
/// | 3 | 1 | flux | enqueued 24th 23:59:50, claimed on a 23:59:55, submitted 23:59:56, failed (upstream) 25th 00:00:10 |
/// | 4 | 3 | flux | 25th: enqueued 09:00:00, canceled in the queue 09:00:30 |
/// | 5 | 1 | flux | 25th: enqueued 09:30:00, canceled in the queue 09:31:00 |
/// | 6 | 2 | banana | 25th: enqueued 11:00:00, claimed on b 11:00:01, submitted 11:00:02, running 11:00:05 |
/// | 7 | 1 | flux | 25th: enqueued 11:00:03, queued |
///
/// Holds are 5¢; a success charges 4¢ (refunds 1¢) and fal bills 4¢; a failure or a
/// cancel refunds 5¢ and fal bills nothing.
async fn history<D: Database>(db: &D) -> History<D::Store> {
    let store = db.store().await;
    let (a, b) = (add_account(&store, "a").await, add_account(&store, "b").await);
    let (u1, u2, u3) = (add_user(&store, 1).await, add_user(&store, 2).await, add_user(&store, 3).await);

    let j1 = enqueue_model(&store, u1, "k1", FLUX, at(24, 10, 0, 0)).await;
    claim_on(&store, &j1, &a, at(24, 10, 0, 5)).await;
    submit(&store, &j1, &a, at(24, 10, 0, 6)).await;
    let j2 = enqueue_model(&store, u2, "k2", BANANA, at(24, 10, 0, 10)).await;
    claim_on(&store, &j2, &a, at(24, 10, 0, 12)).await;
    submit(&store, &j2, &a, at(24, 10, 0, 13)).await;
    store.requeue(j2.id, &lease_of(&store, j2.id).await, "503 from fal", None, at(24, 10, 0, 20)).await.unwrap();
    succeed(&store, &j1, at(24, 10, 0, 25)).await;
    claim_on(&store, &j2, &b, at(24, 10, 0, 30)).await;
    submit(&store, &j2, &b, at(24, 10, 0, 31)).await;
    succeed(&store, &j2, at(24, 10, 1, 0)).await;

    let j3 = enqueue_model(&store, u1, "k3", FLUX, at(24, 23, 59, 50)).await;
    claim_on(&store, &j3, &a, at(24, 23, 59, 55)).await;
    submit(&store, &j3, &a, at(24, 23, 59, 56)).await;
    let failed = Finish {
        lease: None,
        state: JobState::Failed { reason: FailureReason::Upstream("503".into()) },
        settlement: Settlement { user_charge: Money::ZERO, user_refund: cents(5), fal_cost: Money::ZERO },
        media: vec![],
        now: at(25, 0, 0, 10),
    };
    store.finish(j3.id, &as_holder(&store, j3.id, &failed).await).await.unwrap();

    let j4 = enqueue_model(&store, u3, "k4", FLUX, at(25, 9, 0, 0)).await;
    assert!(matches!(store.cancel(j4.id, u3, at(25, 9, 0, 30)).await.unwrap(), CancelResult::Canceled(_)));
    let j5 = enqueue_model(&store, u1, "k5", FLUX, at(25, 9, 30, 0)).await;
    assert!(matches!(store.cancel(j5.id, u1, at(25, 9, 31, 0)).await.unwrap(), CancelResult::Canceled(_)));

    let j6 = enqueue_model(&store, u2, "k6", BANANA, at(25, 11, 0, 0)).await;
    claim_on(&store, &j6, &b, at(25, 11, 0, 1)).await;
    submit(&store, &j6, &b, at(25, 11, 0, 2)).await;
    store.mark_running(j6.id, &lease_of(&store, j6.id).await, at(25, 11, 0, 5)).await.unwrap();
    let j7 = enqueue_model(&store, u1, "k7", FLUX, at(25, 11, 0, 3)).await;

    let jobs = [&j1, &j2, &j3, &j4, &j5, &j6, &j7].iter().map(|j| j.id).collect();
    History { store, jobs }
}

fn row(day: u32, user: i64, model: &str, account: Option<&str>) -> UsageRow {
    UsageRow {
        day: date(day),
        user: UserId(user),
        model: ModelId::new(model),
        account: account.map(AccountId::new),
        jobs: 1,
        succeeded: 0,
        failed: 0,
        canceled: 0,
        user_charged: Money::ZERO,
        user_refunded: Money::ZERO,
        fal_cost: Money::ZERO,
    }
}

fn succeeded_row(day: u32, user: i64, model: &str, account: &str) -> UsageRow {
    UsageRow {
        succeeded: 1,
        user_charged: cents(4),
        user_refunded: cents(1),
        fal_cost: cents(4),
        ..row(day, user, model, Some(account))
    }
}

/// `usage_rows` groups finished jobs by UTC day of the finish, user, model and account (none last), half-open, and adds up to `UsageStore`.
pub async fn usage_rows_group_finished_jobs_by_utc_day_user_model_and_account(db: &impl Database) {
    let h = history(db).await;
    let rows = h.store.usage_rows(at(24, 0, 0, 0), at(26, 0, 0, 0)).await.unwrap();
    assert_eq!(
        rows,
        vec![
            succeeded_row(24, 1, FLUX, "a"),
            // Job 2 finished on b, its last account.
            succeeded_row(24, 2, BANANA, "b"),
            // Job 3 started on the 24th and finished after midnight: it counts for the 25th.
            UsageRow { failed: 1, user_refunded: cents(5), ..row(25, 1, FLUX, Some("a")) },
            // Job 5 never had an account: after the accounts of the same day, user and model.
            UsageRow { canceled: 1, user_refunded: cents(5), ..row(25, 1, FLUX, None) },
            UsageRow { canceled: 1, user_refunded: cents(5), ..row(25, 3, FLUX, None) },
        ]
    );

    // Half-open: a period ending at job 3's finish leaves it out; one starting there takes it.
    let before = h.store.usage_rows(at(24, 0, 0, 0), at(25, 0, 0, 10)).await.unwrap();
    assert_eq!(before.len(), 2);
    let from_it = h.store.usage_rows(at(25, 0, 0, 10), at(25, 0, 0, 11)).await.unwrap();
    assert_eq!(from_it, vec![UsageRow { failed: 1, user_refunded: cents(5), ..row(25, 1, FLUX, Some("a")) }]);
    assert_eq!(h.store.usage_rows(at(23, 0, 0, 0), at(24, 0, 0, 0)).await.unwrap(), vec![]);

    // The rows add up to what `UsageStore` reports for the same period.
    let by_model = h.store.usage_by_model(at(24, 0, 0, 0), at(26, 0, 0, 0)).await.unwrap();
    let charged: i64 = rows.iter().map(|r| r.user_charged.micros()).sum();
    let fal: i64 = rows.iter().map(|r| r.fal_cost.micros()).sum();
    assert_eq!(charged, by_model.iter().map(|m| m.user_charged.micros()).sum::<i64>());
    assert_eq!(fal, by_model.iter().map(|m| m.fal_cost.micros()).sum::<i64>());
    assert_eq!((charged, fal), (cents(8).micros(), cents(8).micros()));
}

/// `requests_by_day` counts every accepted submission (retries too) per UTC day and adds up to `request_count`.
pub async fn requests_by_day_count_every_accepted_submission_and_match_the_request_count(db: &impl Database) {
    let h = history(db).await;
    let (from, to) = (at(24, 0, 0, 0), at(26, 0, 0, 0));
    let days = h.store.requests_by_day(from, to).await.unwrap();
    // The 24th: job 1, job 2 twice (a retry is a second request), job 3. The 25th: job 6.
    assert_eq!(days, vec![DayCount { day: date(24), count: 4 }, DayCount { day: date(25), count: 1 }]);
    assert_eq!(h.store.request_count(from, to).await.unwrap(), 5);
    // Job 2's second submission at 10:00:31 is the boundary.
    let morning = h.store.requests_by_day(at(24, 10, 0, 13), at(24, 10, 0, 31)).await.unwrap();
    assert_eq!(morning, vec![DayCount { day: date(24), count: 1 }]);
}

/// `job_counts` counts every job by its current state; an empty database counts nothing.
pub async fn job_counts_are_by_current_state<D: Database>(db: &D) {
    let h = history(db).await;
    assert_eq!(
        h.store.job_counts().await.unwrap(),
        JobCounts { queued: 1, dispatching: 0, submitted: 0, running: 1, succeeded: 2, failed: 1, canceled: 2 }
    );
    let empty = D::fresh().await;
    assert_eq!(empty.store().await.job_counts().await.unwrap(), JobCounts::default());
}

/// `job_timings` lists every job alive in the period with its first claim, instants as stored.
pub async fn job_timings_cover_every_job_alive_in_the_period(db: &impl Database) {
    let h = history(db).await;
    let j = &h.jobs;
    let timings = h.store.job_timings(at(25, 0, 0, 0), at(25, 12, 0, 0)).await.unwrap();
    let seen: Vec<(JobId, &str, Option<Timestamp>, Option<Timestamp>)> =
        timings.iter().map(|t| (t.job, t.state.as_str(), t.first_claimed_at, t.finished_at)).collect();
    assert_eq!(
        seen,
        vec![
            (j[2], "failed", Some(at(24, 23, 59, 55)), Some(at(25, 0, 0, 10))),
            (j[3], "canceled", None, Some(at(25, 9, 0, 30))),
            (j[4], "canceled", None, Some(at(25, 9, 31, 0))),
            (j[5], "running", Some(at(25, 11, 0, 1)), None),
            (j[6], "queued", None, None),
        ]
    );
    assert_eq!(timings[0].enqueued_at, at(24, 23, 59, 50), "instants are reported as stored");
    assert_eq!((timings[0].user, timings[0].model.as_str()), (UserId(1), FLUX));

    // Job 2 was claimed twice: its first claim ends its first wait.
    let day_one = h.store.job_timings(at(24, 0, 0, 0), at(24, 12, 0, 0)).await.unwrap();
    let firsts: Vec<(JobId, Option<Timestamp>)> = day_one.iter().map(|t| (t.job, t.first_claimed_at)).collect();
    assert_eq!(firsts, vec![(j[0], Some(at(24, 10, 0, 5))), (j[1], Some(at(24, 10, 0, 12)))]);

    // A job that finished exactly at `from` has no life left in the period; one enqueued
    // exactly at `to` has not started it.
    let edge = h.store.job_timings(at(25, 0, 0, 10), at(25, 9, 0, 0)).await.unwrap();
    assert_eq!(edge.iter().map(|t| t.job).collect::<Vec<_>>(), Vec::<JobId>::new());
}

/// `slot_intervals` pairs each claim with the event that takes the job out of flight, half-open.
pub async fn slot_intervals_pair_each_claim_with_the_event_that_leaves_flight(db: &impl Database) {
    let h = history(db).await;
    let j = &h.jobs;
    let slot = |job: JobId, account: &str, model: &str, claimed, released: Option<(Timestamp, &str)>| SlotInterval {
        job,
        account: AccountId::new(account),
        model: ModelId::new(model),
        claimed_at: claimed,
        released_at: released.map(|(t, _)| t),
        released_to: released.map(|(_, s)| s.to_owned()),
    };
    let all = h.store.slot_intervals(at(24, 0, 0, 0), at(26, 0, 0, 0)).await.unwrap();
    assert_eq!(
        all,
        vec![
            slot(j[0], "a", FLUX, at(24, 10, 0, 5), Some((at(24, 10, 0, 25), "succeeded"))),
            slot(j[1], "a", BANANA, at(24, 10, 0, 12), Some((at(24, 10, 0, 20), "queued"))),
            slot(j[1], "b", BANANA, at(24, 10, 0, 30), Some((at(24, 10, 1, 0), "succeeded"))),
            slot(j[2], "a", FLUX, at(24, 23, 59, 55), Some((at(25, 0, 0, 10), "failed"))),
            slot(j[5], "b", BANANA, at(25, 11, 0, 1), None),
        ]
    );
    // Half-open overlap: job 2's first slot ends at 10:00:20, so it is not in [10:00:20, …);
    // job 1's slot is; nothing claimed at or after the end is.
    let narrow = h.store.slot_intervals(at(24, 10, 0, 20), at(24, 10, 0, 30)).await.unwrap();
    assert_eq!(narrow.iter().map(|s| (s.job, s.claimed_at)).collect::<Vec<_>>(), vec![(j[0], at(24, 10, 0, 5))]);
    // A slot still in flight overlaps every later period.
    let later = h.store.slot_intervals(at(25, 12, 0, 0), at(25, 12, 0, 0) + TimeDelta::days(3)).await.unwrap();
    assert_eq!(later.iter().map(|s| s.job).collect::<Vec<_>>(), vec![j[5]]);
}
