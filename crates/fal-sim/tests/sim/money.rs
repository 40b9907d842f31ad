//! Balances, charges and account locks.

use crate::common::{config, start};
use mediagen_fal_sim::{AccountConfig, AccountUpdate, Usd};
use reqwest::StatusCode;
use serde_json::json;

const LOCKED: &str = "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing.";

#[tokio::test]
async fn success_is_charged_at_list_prices() {
    let mut cfg = config(4, 1.0);
    cfg.accounts[0] = AccountConfig::new("main", "k1", 4).with_balance("10".parse().unwrap());
    let h = start(cfg).await;
    h.run("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x"})).await; // 1024x768 = 1 MP: $0.04
    h.run("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x", "image_size": "square_hd", "num_images": 2})).await; // $0.08
    h.run("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await; // $0.003
    h.run("k1", "fal-ai/nano-banana", &json!({"prompt": "x"})).await; // $0.039
    h.run("k1", "fal-ai/elevenlabs/tts/multilingual-v2", &json!({"text": "a".repeat(500)})).await; // $0.05
    let acc = h.sim.handle().account("main").unwrap();
    let expected = 40_000 + 80_000 + 3_000 + 39_000 + 50_000;
    assert_eq!(acc.charged.micros(), expected);
    assert_eq!(acc.balance, Some(Usd::from_micros(10_000_000 - expected)));
    assert!(!acc.locked);
    let per_request: i64 = h.sim.handle().requests().iter().map(|r| r.charged.micros()).sum();
    assert_eq!(per_request, expected);
}

#[tokio::test]
async fn server_errors_are_never_charged_content_policy_is() {
    let h = start(config(2, 1.0)).await;
    let (_, r) = h.run("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x [[fault:result_503]]"})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let (_, r) = h.run("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x [[fault:result_500]]"})).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(h.sim.handle().account("main").unwrap().charged.micros(), 0);
    let (_, r) = h.run("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x [[fault:content_policy]]"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let acc = h.sim.handle().account("main").unwrap();
    assert_eq!(acc.charged.micros(), 40_000, "content policy billed by default");
    assert_eq!((acc.jobs_failed, acc.jobs_succeeded), (3, 0));

    let mut cfg = config(2, 1.0);
    cfg.charge_content_policy = false;
    let h = start(cfg).await;
    h.run("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x [[fault:content_policy]]"})).await;
    assert_eq!(h.sim.handle().account("main").unwrap().charged.micros(), 0);
}

#[tokio::test]
async fn exhausted_balance_locks_submits() {
    let mut cfg = config(1, 1.0);
    cfg.accounts[0] = AccountConfig::new("main", "k1", 1).with_balance("0.08".parse().unwrap());
    let h = start(cfg).await;
    let (first, _) = h.run("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x"})).await;
    h.run("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x"})).await;
    let r = h.submit("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, json!({"detail": LOCKED}));
    let acc = h.sim.handle().account("main").unwrap();
    assert!(acc.locked);
    assert_eq!(acc.balance, Some(Usd::ZERO));
    assert_eq!(acc.rejected["locked"], 1);
    assert_eq!(acc.submits_accepted, 2);
    // Status and result calls still work while locked.
    let r = h.get(Some("k1"), first["status_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    // A top-up through the admin endpoint unlocks.
    let r = h.post_json("/_sim/accounts/main", &json!({"balance_usd": 1.0})).await;
    assert_eq!(r.body["locked"], false);
    assert_eq!(r.body["balance_micros"], 1_000_000);
    assert_eq!(h.submit("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x"})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn admin_lock_mid_run() {
    let h = start(config(1, 50.0)).await;
    let running = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await;
    let queued = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": "y"})).await;
    let r = h.post_json("/_sim/accounts/main", &json!({"locked": true, "lock_reason": "Admin lock"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["locked"], true);
    let r = h.submit("k1", "fal-ai/flux/schnell", &json!({"prompt": "z"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["detail"], "User is locked. Reason: Admin lock");
    // Already accepted jobs still run to completion.
    h.wait_completed("k1", &running).await;
    h.wait_completed("k1", &queued).await;
    h.sim.handle().update_account("main", &AccountUpdate { locked: Some(false), ..AccountUpdate::default() });
    assert_eq!(h.submit("k1", "fal-ai/flux/schnell", &json!({"prompt": "z"})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn lock_threshold_above_zero() {
    let mut cfg = config(1, 1.0);
    let mut acc = AccountConfig::new("main", "k1", 1).with_balance("0.05".parse().unwrap());
    acc.lock_threshold = "0.02".parse().unwrap();
    cfg.accounts[0] = acc;
    let h = start(cfg).await;
    h.run("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x"})).await; // balance 0.01 <= 0.02
    let r = h.submit("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_platform_billing_answers_admin_keys_only() {
    let mut cfg = config(2, 1.0);
    cfg.accounts[0] =
        AccountConfig::new("main", "k1", 2).with_admin_key("admin1").with_balance("12.5".parse().unwrap());
    let h = start(cfg).await;
    let billing = |query: &str| h.url(&format!("/v1/account/billing{query}"));

    let admin = h.get(Some("admin1"), &billing("?expand=credits")).await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.text);
    assert_eq!(admin.body, json!({"username": "main", "credits": {"current_balance": 12.5, "currency": "USD"}}));
    let plain = h.get(Some("admin1"), &billing("")).await;
    assert_eq!(plain.body, json!({"username": "main"}), "credits only when expanded");

    let inference = h.get(Some("k1"), &billing("?expand=credits")).await;
    assert_eq!(inference.status, StatusCode::FORBIDDEN, "{}", inference.text);
    let unknown = h.get(Some("nope"), &billing("?expand=credits")).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.body["detail"], "No user found for Key ID and Secret");
    assert_eq!(h.sim.handle().unauthorized_for_key("nope"), 1);

    // The admin key also runs jobs: it is one of the account's keys.
    h.run("admin1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await;
    assert_eq!(h.sim.handle().account("main").unwrap().keys, ["k1", "admin1"]);
}
