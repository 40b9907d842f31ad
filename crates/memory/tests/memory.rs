//! What only the in-memory adapter does: clones share one store, calls finish without
//! waiting, and the fixtures of the `testing` feature keep the ledger in step.

use mediagen_domain::{JobState, Money, Settlement, UserId};
use mediagen_memory::MemoryStore;
use mediagen_memory::testing::EntryKind;
use mediagen_ports::{JobQueue, StorageError, UserStore};
use mediagen_storage_contract::support::{add_account, add_user, capacity, cents, claim_request, enqueue, t};
use std::future::Future;
use std::task::{Context, Poll, Waker};

#[tokio::test]
async fn clones_share_the_tables_and_the_closed_state() {
    let store = MemoryStore::new();
    let clone = store.clone();
    add_user(&store, 1).await;
    assert_eq!(clone.list_users().await.unwrap().len(), 1, "one set of tables");
    clone.close();
    assert!(store.is_closed());
    assert!(matches!(store.get_user(UserId(1)).await, Err(StorageError::Unavailable(_))));
    assert!(matches!(store.wait_for_change(10).await, Err(StorageError::Unavailable(_))));
}

/// The engine's tests set scenes in plain blocks by polling calls once.
#[test]
fn every_call_but_wait_for_change_is_done_on_its_first_poll() {
    fn once<T>(call: impl Future<Output = T>) -> Poll<T> {
        std::pin::pin!(call).poll(&mut Context::from_waker(Waker::noop()))
    }
    let store = MemoryStore::new();
    let Poll::Ready(user) = once(add_user(&store, 1)) else { panic!("add_user waited") };
    let Poll::Ready(account) = once(add_account(&store, "a")) else { panic!("add_account waited") };
    let Poll::Ready(job) = once(enqueue(&store, user, "k", t(0))) else { panic!("enqueue waited") };
    let claim = claim_request("w", vec![capacity(&account, 1)], 1, t(1));
    let Poll::Ready(claimed) = once(store.claim(&claim)) else { panic!("claim waited") };
    assert_eq!(claimed.unwrap()[0].job.id, job.id);
}

#[tokio::test]
async fn fixtures_keep_the_hold_row_in_step_and_settle_on_the_jobs_account() {
    let store = MemoryStore::new();
    let user = add_user(&store, 1).await;
    let account = add_account(&store, "a").await;
    let job = enqueue(&store, user, "k", t(0)).await;
    let hold = |store: &MemoryStore| {
        let ledger = store.ledger();
        ledger.iter().find(|e| e.job == job.id && e.kind == EntryKind::Hold).map(|e| e.amount)
    };
    assert_eq!(hold(&store), Some(cents(5)));

    let mut stored = store.stored_job(job.id).unwrap();
    stored.job.hold = cents(7);
    stored.job.state = JobState::Dispatching { account: account.clone() };
    stored.account = Some(account.clone());
    store.put_job(stored);
    assert_eq!(hold(&store), Some(cents(7)), "the hold row follows the job's hold");
    assert_eq!(store.in_flight_by_account().await.unwrap(), vec![(account.clone(), 1)]);

    let settlement = Settlement { user_charge: cents(4), user_refund: cents(3), fal_cost: Money::from_micros(1) };
    store.put_settlement(job.id, settlement, t(5));
    let ledger = store.ledger();
    let billed: Vec<_> = ledger.iter().filter(|e| e.kind == EntryKind::FalCost).map(|e| e.account.clone()).collect();
    assert_eq!(billed, vec![Some(account)], "billed to the job's account");
    assert_eq!(ledger.len(), 4, "hold, charge, refund, fal cost");
}

#[tokio::test]
#[should_panic(expected = "settled already")]
async fn a_fixture_cannot_settle_a_job_twice() {
    let store = MemoryStore::new();
    let user = add_user(&store, 1).await;
    let job = enqueue(&store, user, "k", t(0)).await;
    let settlement = Settlement { user_charge: Money::ZERO, user_refund: cents(5), fal_cost: Money::ZERO };
    store.put_settlement(job.id, settlement, t(1));
    store.put_settlement(job.id, settlement, t(2));
}
