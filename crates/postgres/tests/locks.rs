//! What a failed write leaves behind, and what a stalled session can block: PostgreSQL's
//! own locks, seen from the adapter's public ports.

use mediagen_domain::{JobId, Lease};
use mediagen_ports::{JobQueue, StorageError};
use mediagen_postgres::SessionTimeouts;
use mediagen_postgres::testing::fresh_database;
use mediagen_storage_contract::support::*;
use std::time::{Duration, Instant};

/// On a single-threaded runtime the pool's background clean-up of a dropped transaction
/// cannot run before the next call: if a refused write left its transaction to be rolled
/// back "later", its row lock would still be held and the claim would skip the only job.
#[tokio::test]
async fn a_claim_right_after_a_refused_write_finds_the_job() {
    let db = fresh_database().await;
    let store = db.store().await;
    let a = add_account(&store, "a").await;
    let user = add_user(&store, 1).await;
    for round in 0..20 {
        let job = enqueue(&store, user, &format!("k{round}"), t(round)).await;
        let nobody = Lease { owner: "nobody".into(), epoch: 0 };
        let refused =
            store.finish(job.id, &as_holder(&store, job.id, &success(job.hold, cents(4), t(round))).await).await;
        assert!(matches!(refused, Err(StorageError::Conflict(_))), "{refused:?}");
        assert!(matches!(store.requeue(job.id, &nobody, "x", None, t(round)).await, Err(StorageError::Conflict(_))));
        let claimed = store.claim(&claim_request("w", vec![capacity(&a, 1)], 1, t(round))).await.unwrap();
        let ids: Vec<JobId> = claimed.iter().map(|c| c.job.id).collect();
        assert_eq!(ids, vec![job.id], "round {round}: the only queued job, with a free slot");
        let lease = claimed[0].job.lease.clone().unwrap();
        store.mark_submitted(job.id, &lease, &handle(&a, job.id), t(round)).await.unwrap();
        let finish = mediagen_ports::Finish { lease: Some(lease), ..success(job.hold, cents(4), t(round)) };
        store.finish(job.id, &finish).await.unwrap();
    }
}

/// A session that took the claim lock and then stalled inside its transaction (a paused
/// process) makes other claims fail fast instead of hanging, and the server ends it soon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_claimer_cannot_freeze_dispatch() {
    let db = fresh_database().await;
    let timeouts = SessionTimeouts {
        statement: Duration::from_secs(5),
        lock: Duration::from_millis(300),
        idle_in_transaction: Duration::from_millis(1500),
    };
    let store = db.store_with_timeouts(4, timeouts).await;
    let a = add_account(&store, "a").await;
    let user = add_user(&store, 1).await;
    let job = enqueue(&store, user, "k", t(0)).await;

    // The stalled claimer: the claim lock taken (the same key the adapter uses), then nothing.
    let mut stalled = store.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(0x6d65_6469_6167_656e_i64)
        .execute(&mut *stalled)
        .await
        .unwrap();

    let started = Instant::now();
    let request = claim_request("w", vec![capacity(&a, 1)], 1, t(1));
    let claim = store.claim(&request);
    let blocked = tokio::time::timeout(Duration::from_secs(5), claim).await;
    let blocked = blocked.unwrap_or_else(|_| panic!("the claim hung behind the stalled session"));
    assert!(blocked.is_err(), "the claim waits at most lock_timeout: {blocked:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "failed after {:?}", started.elapsed());

    // The server ends the idle transaction; claims go through again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let claimed = loop {
        match store.claim(&claim_request("w", vec![capacity(&a, 1)], 1, t(2))).await {
            Ok(claimed) => break claimed,
            // Still locked: the server's timer has not fired yet.
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(error) => panic!("the stalled session was never ended: {error}"),
        }
    };
    assert_eq!(claimed.iter().map(|c| c.job.id).collect::<Vec<_>>(), vec![job.id]);
    assert!(stalled.commit().await.is_err(), "the stalled session was ended by the server");
}
