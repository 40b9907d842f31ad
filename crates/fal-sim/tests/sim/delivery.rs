//! Result-delivery faults (the run is fine, one answer is lost), per-prompt run and billing
//! counts, refused keys, and stuck requests that are cancelled or time out.

use crate::common::{config, start};
use mediagen_fal_sim::{AccountConfig, AccountUpdate, FaultKind, FaultRule, RequestStatus};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One raw result GET: the status and headers, and the body or the error that cut it.
async fn raw_get(
    http: &reqwest::Client,
    key: &str,
    url: &str,
) -> Result<(StatusCode, reqwest::header::HeaderMap, Result<Vec<u8>, String>), String> {
    let response =
        http.get(url).header("Authorization", format!("Key {key}")).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map(|b| b.to_vec()).map_err(|e| e.to_string());
    Ok((status, headers, body))
}

#[tokio::test]
async fn gateway_errors_at_result_leave_the_result_in_place() {
    let h = start(config(2, 1.0)).await;
    for (fault, code) in [("result_502", 502), ("result_503_gateway", 503), ("result_504", 504)] {
        let prompt = format!("fox {fault} [[fault:{fault}]]");
        let sub = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({ "prompt": prompt })).await;
        h.wait_completed("k1", &sub).await;
        let url = sub["response_url"].as_str().unwrap();
        let spoiled = h.get(Some("k1"), url).await;
        assert_eq!(spoiled.status.as_u16(), code, "{fault}");
        assert!(spoiled.text.contains("nginx"), "{fault}: {}", spoiled.text);
        assert!(spoiled.headers.get("x-fal-request-id").is_none(), "{fault}: the queue was never reached");
        assert!(spoiled.headers.get("x-fal-error-type").is_none(), "{fault}");
        let real = h.get(Some("k1"), url).await;
        assert_eq!(real.status, StatusCode::OK, "{fault}");
        assert!(real.headers.get("x-fal-request-id").is_some());
        assert!(real.body["images"].is_array());

        let record = h.sim.handle().request(sub["request_id"].as_str().unwrap()).unwrap();
        assert_eq!(record.result_fetches, 2);
        assert_eq!(record.faults, vec![FaultKind::from_name(fault).unwrap()]);
        assert_eq!(h.sim.handle().runs_for_prompt(&format!("fox {fault}")), 1);
        assert!(h.sim.handle().billed_for_prompt(&format!("fox {fault}")).micros() > 0);
        assert_eq!(h.sim.handle().billed_for_prompt(&format!("fox {fault}")), record.charged, "billed once");
    }
}

#[tokio::test]
async fn a_dropped_connection_at_result_then_the_result() {
    let h = start(config(2, 1.0)).await;
    let sub = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": "x [[fault:result_transport]]"})).await;
    h.wait_completed("k1", &sub).await;
    let url = sub["response_url"].as_str().unwrap();
    match raw_get(&h.http, "k1", url).await {
        Err(_) | Ok((_, _, Err(_))) => {}
        Ok((status, _, Ok(body))) => panic!("a whole answer arrived: {status} {}", String::from_utf8_lossy(&body)),
    }
    let (status, _, body) = raw_get(&h.http, "k1", url).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let out: Value = serde_json::from_slice(&body.unwrap()).unwrap();
    assert!(out["images"].is_array());
    assert_eq!(h.sim.handle().request(sub["request_id"].as_str().unwrap()).unwrap().result_fetches, 2);
}

#[tokio::test]
async fn a_cut_body_declares_more_than_it_sends() {
    let h = start(config(2, 1.0)).await;
    let sub = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": "x [[fault:result_cut_body:2]]"})).await;
    h.wait_completed("k1", &sub).await;
    let url = sub["response_url"].as_str().unwrap();
    for _ in 0..2 {
        let (status, headers, body) = raw_get(&h.http, "k1", url).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let declared: usize = headers["content-length"].to_str().unwrap().parse().unwrap();
        assert!(declared > 10);
        assert!(body.is_err(), "the body must fail to read whole");
    }
    let (status, headers, body) = raw_get(&h.http, "k1", url).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let body = body.unwrap();
    assert_eq!(headers["content-length"].to_str().unwrap(), body.len().to_string());
    let record = h.sim.handle().request(sub["request_id"].as_str().unwrap()).unwrap();
    assert_eq!(record.result_fetches, 3);
    assert_eq!(h.sim.handle().runs_for_prompt("x [[fault:result_cut_body"), 1);
}

#[tokio::test]
async fn result_glitches_as_rules_spoil_one_fetch_per_job() {
    let h = start(config(2, 1.0)).await;
    h.sim.handle().add_faults([FaultRule::burst(FaultKind::Result502, 1)]);
    let (_, first) = h.run("k1", "fal-ai/flux/schnell", &json!({"prompt": "one"})).await;
    assert_eq!(first.status, StatusCode::BAD_GATEWAY);
    let (_, second) = h.run("k1", "fal-ai/flux/schnell", &json!({"prompt": "two"})).await;
    assert_eq!(second.status, StatusCode::OK, "the burst is spent");
    let all = h.get(None, &h.url("/_sim/requests?prompt=one")).await;
    assert_eq!(all.body.as_array().unwrap().len(), 1);
    assert_eq!(all.body[0]["result_fetches"], 1);
}

#[tokio::test]
async fn unknown_keys_get_401_everywhere_and_are_counted() {
    let h = start(config(2, 1.0)).await;
    let sub = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await;
    h.wait_completed("k1", &sub).await;
    assert_eq!(h.submit("bad", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await.status, StatusCode::UNAUTHORIZED);
    for url in [&sub["status_url"], &sub["response_url"]] {
        assert_eq!(h.get(Some("bad"), url.as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(h.put("bad", sub["cancel_url"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.sim.handle().unauthorized_for_key("bad"), 4);
    assert_eq!(h.sim.handle().unauthorized_for_key("k1"), 0);
    let snapshot = h.sim.handle().snapshot();
    assert_eq!(snapshot.unauthorized_submits, 1);
    assert_eq!(snapshot.unauthorized_by_key["bad"], 4);

    // A probe: a status GET of a request that does not exist tells a good key (404) from a
    // refused one (401), and runs nothing.
    let probe = h.url("/fal-ai/flux/requests/00000000-0000-4000-8000-000000000000/status");
    assert_eq!(h.get(Some("k1"), &probe).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.get(Some("bad"), &probe).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.sim.handle().requests().len(), 1);
}

#[tokio::test]
async fn keys_can_be_revoked_and_added_back() {
    let h = start(config(2, 1.0).with_account(AccountConfig::new("other", "o1", 1))).await;
    let sub = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await;
    h.sim.handle().update_account("main", &AccountUpdate { add_keys: vec!["k2".into()], ..AccountUpdate::default() });
    // Another key of the same account follows the request.
    h.wait_completed("k2", &sub).await;
    let snapshot = h.sim.handle().update_account(
        "main",
        &AccountUpdate { remove_keys: vec!["k1".into(), "o1".into()], ..AccountUpdate::default() },
    );
    assert_eq!(snapshot.keys, vec!["k2".to_owned()]);
    assert_eq!(h.get(Some("k1"), sub["response_url"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.get(Some("k2"), sub["response_url"].as_str().unwrap()).await.status, StatusCode::OK);
    assert_eq!(
        h.submit("o1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await.status,
        StatusCode::OK,
        "not main's key"
    );
}

#[tokio::test]
async fn a_cancelled_stuck_request_is_recorded_and_never_billed() {
    let h = start(config(1, 1.0)).await;
    let sub = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": "stuck one [[fault:stuck]]"})).await;
    let r = h.put("k1", sub["cancel_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body["status"], "CANCELLATION_REQUESTED");
    let record = h.sim.handle().request(sub["request_id"].as_str().unwrap()).unwrap();
    assert!(record.cancel_requested);
    assert_eq!(record.status, RequestStatus::Completed);
    assert!(!record.ran());
    assert_eq!(record.charged.micros(), 0);
    assert_eq!(h.sim.handle().runs_for_prompt("stuck one"), 0);
    assert_eq!(h.sim.handle().billed_for_prompt("stuck one").micros(), 0);
}

#[tokio::test]
async fn a_stuck_request_with_a_start_timeout_ends_in_the_user_timeout() {
    let h = start(config(1, 1.0)).await;
    let sub = h
        .submit_with(
            "k1",
            "fal-ai/flux/schnell",
            &json!({"prompt": "stuck two [[fault:stuck]]"}),
            &[("X-Fal-Request-Timeout", "5")],
        )
        .await;
    assert_eq!(sub.status, StatusCode::OK);
    h.wait_completed("k1", &sub.body).await;
    let r = h.get(Some("k1"), sub.body["response_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.headers["x-fal-request-timeout-type"], "user");
    let record = h.sim.handle().request(sub.body["request_id"].as_str().unwrap()).unwrap();
    assert_eq!(record.request_timeout.as_deref(), Some("5"));
    assert!(!record.ran());
    assert_eq!(h.sim.handle().billed_for_prompt("stuck two").micros(), 0);
}
