//! fal's concurrency model: only IN_PROGRESS counts, extra submits queue FIFO per account.

use crate::common::{PATIENCE, config, start};
use futures::future::join_all;
use mediagen_fal_sim::{AccountConfig, AccountUpdate, OutcomeKind, RequestStatus};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn limit_three_twelve_jobs() {
    let h = &start(config(3, 30.0)).await;
    let subs =
        join_all((0..12).map(|i| async move {
            h.submit("k1", "fal-ai/flux/schnell", &json!({"prompt": format!("job {i}")})).await
        }))
        .await;
    assert!(subs.iter().all(|r| r.status == StatusCode::OK), "never rejected for concurrency");
    for s in &subs {
        h.wait_completed("k1", &s.body).await;
    }
    let acc = h.sim.handle().account("main").unwrap();
    assert_eq!(acc.max_in_progress, 3);
    assert_eq!(acc.jobs_started, 12);
    assert_eq!(acc.jobs_succeeded, 12);
    assert_eq!((acc.in_progress, acc.queued), (0, 0));
    // The same counters over HTTP.
    let r = h.get(None, &h.url("/_sim/accounts/main")).await;
    assert_eq!(r.body["max_in_progress"], 3);
    assert_eq!(r.body["limit"], 3);
}

#[tokio::test]
async fn keys_of_one_account_share_its_limit() {
    let cfg = mediagen_fal_sim::SimConfig::default()
        .with_account(AccountConfig::new("main", "k1", 2).with_key("k2"))
        .with_time_scale(100.0)
        .with_service_time_all(mediagen_fal_sim::ServiceTime::Fixed(30.0));
    let h = &start(cfg).await;
    let subs = join_all((0..8).map(|i| async move {
        let key = if i % 2 == 0 { "k1" } else { "k2" };
        h.submit(key, "fal-ai/flux/schnell", &json!({"prompt": "x"})).await
    }))
    .await;
    assert!(subs.iter().all(|r| r.status == StatusCode::OK));
    h.wait_idle().await;
    let acc = h.sim.handle().account("main").unwrap();
    assert_eq!(acc.max_in_progress, 2);
    assert_eq!(acc.jobs_succeeded, 8);
    assert_eq!(acc.submits_by_key["k1"], 4);
    assert_eq!(acc.submits_by_key["k2"], 4);
    assert_eq!(acc.submits_seen, 8);
}

#[tokio::test]
async fn two_accounts_add_capacity() {
    let cfg = config(2, 30.0).with_account(AccountConfig::new("spare", "k9", 2));
    let h = &start(cfg).await;
    // Hold both accounts at limit 0 so every job queues, then open both at once.
    for name in ["main", "spare"] {
        h.sim.handle().update_account(name, &AccountUpdate { limit: Some(0), ..AccountUpdate::default() });
    }
    let subs = join_all((0..12).map(|i| async move {
        h.submit(if i < 6 { "k1" } else { "k9" }, "fal-ai/flux/schnell", &json!({"prompt": "x"})).await
    }))
    .await;
    assert!(subs.iter().all(|r| r.status == StatusCode::OK));
    for name in ["main", "spare"] {
        h.sim.handle().update_account(name, &AccountUpdate { limit: Some(2), ..AccountUpdate::default() });
    }
    h.wait_idle().await;
    let snap = h.sim.handle().snapshot();
    for acc in &snap.accounts {
        assert_eq!(acc.max_in_progress, 2, "{}", acc.name);
        assert_eq!(acc.jobs_succeeded, 6, "{}", acc.name);
    }
    assert_eq!(snap.max_in_progress_total, 4);
}

#[tokio::test]
async fn fifo_per_account_and_queue_positions() {
    let h = start(config(1, 5.0)).await;
    h.sim.handle().update_account("main", &AccountUpdate { limit: Some(0), ..AccountUpdate::default() });
    let mut subs = Vec::new();
    for i in 0..5 {
        let sub = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": format!("job {i}")})).await;
        assert_eq!(sub["queue_position"], i, "position at submit");
        subs.push(sub);
    }
    let third = h.get(Some("k1"), subs[2]["status_url"].as_str().unwrap()).await;
    assert_eq!(third.status, StatusCode::ACCEPTED);
    assert_eq!(third.body["status"], "IN_QUEUE");
    assert_eq!(third.body["queue_position"], 2);
    h.sim.handle().update_account("main", &AccountUpdate { limit: Some(1), ..AccountUpdate::default() });
    h.wait_idle().await;
    let reqs = h.sim.handle().requests();
    let starts: Vec<u64> = reqs.iter().map(|r| r.start_seq.unwrap()).collect();
    let mut sorted = starts.clone();
    sorted.sort_unstable();
    assert_eq!(starts, sorted, "started in submit order");
    assert_eq!(h.sim.handle().account("main").unwrap().max_in_progress, 1);
}

#[tokio::test]
async fn cancel_of_a_queued_job() {
    let h = &start(config(1, 5.0)).await;
    h.sim.handle().update_account("main", &AccountUpdate { limit: Some(0), ..AccountUpdate::default() });
    let subs: Vec<_> =
        join_all((0..3).map(|i| async move {
            h.submit_ok("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": format!("{i}")})).await
        }))
        .await;
    let victim = &subs[1];
    let r = h.put("k1", victim["cancel_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body, json!({"status": "CANCELLATION_REQUESTED"}));
    h.sim.handle().update_account("main", &AccountUpdate { limit: Some(1), ..AccountUpdate::default() });
    h.wait_idle().await;
    let id = victim["request_id"].as_str().unwrap();
    let rec = h.sim.handle().request(id).unwrap();
    assert_eq!(rec.status, RequestStatus::Completed);
    assert_eq!(rec.outcome, Some(OutcomeKind::Cancelled));
    assert_eq!(rec.start_seq, None, "never ran");
    assert_eq!(rec.charged.micros(), 0);
    let acc = h.sim.handle().account("main").unwrap();
    assert_eq!((acc.jobs_started, acc.jobs_succeeded, acc.jobs_cancelled), (2, 2, 1));
    assert_eq!(acc.charged.micros(), 2 * 40_000);
    let r = h.put("k1", victim["cancel_url"].as_str().unwrap()).await;
    assert_eq!(r.body, json!({"status": "ALREADY_COMPLETED"}));
    let r = h.get(Some("k1"), victim["response_url"].as_str().unwrap()).await;
    assert_eq!(r.status.as_u16(), 499);
    assert_eq!(r.headers["x-fal-error-type"], "client_cancelled");
}

#[tokio::test]
async fn cancel_of_a_running_job() {
    // By default the model ignores the signal: the job finishes and is billed.
    let h = start(config(1, 50.0)).await;
    let sub = h.submit_ok("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x"})).await;
    let id = sub["request_id"].as_str().unwrap().to_owned();
    let handle = h.sim.handle().clone();
    assert!(handle.wait_until(PATIENCE, |a| a[0].in_progress == 1).await);
    let r = h.put("k1", sub["cancel_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    h.wait_idle().await;
    let rec = handle.request(&id).unwrap();
    assert!(rec.cancel_requested);
    assert_eq!(rec.outcome, Some(OutcomeKind::Success));
    assert_eq!(rec.charged.micros(), 40_000);

    // With abort_running_on_cancel the slot frees at once and nothing is charged.
    let mut cfg = config(1, 10_000.0);
    cfg.abort_running_on_cancel = true;
    let h = start(cfg).await;
    let sub = h.submit_ok("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x"})).await;
    let next = h.submit_ok("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "y"})).await;
    assert!(h.sim.handle().wait_until(PATIENCE, |a| a[0].in_progress == 1 && a[0].queued == 1).await);
    let r = h.put("k1", sub["cancel_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let rec = h.sim.handle().request(sub["request_id"].as_str().unwrap()).unwrap();
    assert_eq!(rec.outcome, Some(OutcomeKind::Cancelled));
    let next_rec = h.sim.handle().request(next["request_id"].as_str().unwrap()).unwrap();
    assert_eq!(next_rec.status, RequestStatus::InProgress, "the freed slot went to the next job");
    assert_eq!(h.sim.handle().account("main").unwrap().charged.micros(), 0);
}
