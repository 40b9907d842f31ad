//! The queue under concurrency: one user's simultaneous requests against a cap of one,
//! and several processes claiming against shared account limits.

use crate::support::*;
use crate::{Database, LedgerKind};
use mediagen_domain::quota::{Plan, QuotaRefusal};
use mediagen_domain::{AccountId, FailureReason, Job, JobState, Money, UserId};
use mediagen_ports::{EnqueueOutcome, EnqueueRequest, Finish, JobQueue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Ten simultaneous requests of one user under `plan`; returns the outcomes.
async fn race(db: &impl Database, plan: Plan, same_key: bool) -> Vec<EnqueueOutcome> {
    let store = db.store().await;
    let user = add_user(&store, 1).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        let plan = plan.clone();
        let key = if same_key { "tg:1".to_owned() } else { format!("tg:{i}") };
        tasks.push(tokio::spawn(async move {
            store.enqueue(&EnqueueRequest { plan, ..request(user, &key, cents(5), t(0)) }).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let jobs = db.job_count().await;
    let holds = db.ledger_rows_of_kind(LedgerKind::Hold).await;
    assert_eq!((jobs, holds), (1, 1), "one job, one hold");
    outcomes
}

fn accepted(outcomes: &[EnqueueOutcome]) -> usize {
    outcomes.iter().filter(|o| matches!(o, EnqueueOutcome::Enqueued(..))).count()
}

/// A queue cap of one lets exactly one of ten simultaneous requests through.
pub async fn a_queue_cap_of_one_admits_one_of_ten_simultaneous_requests(db: &impl Database) {
    let outcomes = race(db, plan(1), false).await;
    assert_eq!(accepted(&outcomes), 1, "{outcomes:?}");
    let full = outcomes.iter().filter(|o| matches!(o, EnqueueOutcome::Refused(QuotaRefusal::QueueFull { .. }))).count();
    assert_eq!(full, 9);
}

/// A daily cap of one lets exactly one of ten simultaneous requests through.
pub async fn a_daily_cap_of_one_admits_one_of_ten_simultaneous_requests(db: &impl Database) {
    let outcomes = race(db, Plan { daily_jobs: Some(1), ..plan(100) }, false).await;
    assert_eq!(accepted(&outcomes), 1, "{outcomes:?}");
    let daily =
        outcomes.iter().filter(|o| matches!(o, EnqueueOutcome::Refused(QuotaRefusal::DailyJobs { .. }))).count();
    assert_eq!(daily, 9);
}

/// Ten simultaneous deliveries of one update make one job and nine duplicates.
pub async fn ten_deliveries_of_one_update_make_one_job(db: &impl Database) {
    let outcomes = race(db, plan(100), true).await;
    assert_eq!(accepted(&outcomes), 1, "{outcomes:?}");
    let duplicates = outcomes.iter().filter(|o| matches!(o, EnqueueOutcome::Duplicate(_))).count();
    assert_eq!(duplicates, 9);
}

const JOBS: usize = 2_000;
const LIMIT: u32 = 5;
const USERS: i64 = 20;

/// What one claimer did.
#[derive(Debug, Default)]
struct Tally {
    claims: u64,
    claimed: u64,
    finished: u64,
    requeued: u64,
}

/// One dispatcher process: claim, check the limits, then finish (or requeue) a random
/// part of what it holds, until the queue is empty and it holds nothing.
async fn claimer<D: Database>(
    db: Arc<D>,
    owner: &'static str,
    seed: u64,
    accounts: Vec<AccountId>,
    clock: Arc<AtomicU64>,
) -> Tally {
    let store = db.peer().await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut held: Vec<(Job, AccountId)> = Vec::new();
    let mut tally = Tally::default();
    loop {
        let now = t(i64::try_from(clock.fetch_add(1, Ordering::Relaxed)).unwrap());
        let capacities = accounts.iter().map(|a| capacity(a, LIMIT)).collect();
        let claimed = store.claim(&claim_request(owner, capacities, rng.random_range(1..=4), now)).await.unwrap();
        tally.claims += 1;
        tally.claimed += claimed.len() as u64;
        // The committed state, read by a third connection, never exceeds a limit.
        for in_flight in db.in_flight_per_account().await {
            assert!(in_flight <= i64::from(LIMIT), "an account has {in_flight} in flight after a claim by {owner}");
        }
        held.extend(claimed.into_iter().map(|c| (c.job, c.account)));

        let mut kept = Vec::new();
        for (job, account) in held.drain(..) {
            let roll: f64 = rng.random();
            if roll < 0.4 {
                complete(&store, &job, &account, now).await;
                tally.finished += 1;
            } else if roll < 0.5 {
                let failed = Finish {
                    lease: None,
                    state: JobState::Failed { reason: FailureReason::Upstream("503".into()) },
                    settlement: mediagen_domain::Settlement {
                        user_charge: Money::ZERO,
                        user_refund: job.hold,
                        fal_cost: Money::ZERO,
                    },
                    media: vec![],
                    now,
                };
                store.finish(job.id, &as_holder(&store, job.id, &failed).await).await.unwrap();
                tally.finished += 1;
            } else if roll < 0.55 {
                store.requeue(job.id, &lease_of(&store, job.id).await, "retry", None, now).await.unwrap();
                tally.requeued += 1;
            } else {
                kept.push((job, account));
            }
        }
        held = kept;
        if held.is_empty() && store.queued_count().await.unwrap() == 0 {
            return tally;
        }
    }
}

/// Two dispatcher processes, each with a pool of its own ([`Database::peer`]), claim and
/// finish 2,000 jobs of 20 users on two accounts at once: no account ever goes over its
/// limit, every job finishes exactly once and every hold balances.
///
/// Not in [`contract_tests!`](crate::contract_tests): it is the deployment of several bot
/// processes on one database, which is what PostgreSQL is for (its claims serialize on an
/// advisory lock), and PostgreSQL runs it. The SQLite adapter serves one process; its
/// claims serialize on the database's single write lock. The in-memory adapter runs it
/// with two clones of one store on two threads (its claims serialize on its mutex).
pub async fn two_claimers_never_exceed_an_account_limit<D: Database>(db: D) {
    let db = Arc::new(db);
    let store = db.store().await;
    let accounts = vec![add_account(&store, "a").await, add_account(&store, "b").await];
    for u in 1..=USERS {
        add_user(&store, u).await;
    }
    // Enqueue through the port, four requests at a time.
    let mut intake = Vec::new();
    for lane in 0..4 {
        let store = store.clone();
        intake.push(tokio::spawn(async move {
            for i in (lane..JOBS).step_by(4) {
                let user = UserId(1 + (i as i64 % USERS));
                enqueue(&store, user, &format!("job-{i}"), t(i as i64)).await;
            }
        }));
    }
    for lane in intake {
        lane.await.unwrap();
    }
    assert_eq!(store.queued_count().await.unwrap() as usize, JOBS);

    let clock = Arc::new(AtomicU64::new(10_000));
    let one = tokio::spawn(claimer(Arc::clone(&db), "p1", 1, accounts.clone(), Arc::clone(&clock)));
    let two = tokio::spawn(claimer(Arc::clone(&db), "p2", 2, accounts.clone(), Arc::clone(&clock)));
    let (one, two) = (one.await.unwrap(), two.await.unwrap());
    eprintln!("p1: {one:?}\np2: {two:?}");

    assert_eq!(one.finished + two.finished, JOBS as u64, "every job finished exactly once");
    assert_eq!(one.claimed + two.claimed, JOBS as u64 + one.requeued + two.requeued);
    assert!(one.claimed > 0 && two.claimed > 0, "both processes took part");
    let finished = db.finished_job_count().await;
    assert_eq!(finished as usize, JOBS);
    let claims = db.event_count("claimed").await;
    assert_eq!(claims as u64, one.claimed + two.claimed);
    assert!(db.unbalanced_jobs().await.is_empty(), "hold = charge + refund for every job");
    let charged_twice = db.jobs_with_repeated_entries(LedgerKind::Charge).await;
    assert_eq!(charged_twice, 0);
    drop(store);
}
