//! Every fault kind, by rule (burst, rate, filters), by prompt marker and from a script file.

use crate::common::{config, start};
use mediagen_fal_sim::{FaultKind, FaultRule, FaultScript, OutcomeKind, SimArgs};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Instant;

#[tokio::test]
async fn burst_of_429_at_submit_enqueues_nothing() {
    let h = start(config(2, 1.0)).await;
    let r = h.post_json("/_sim/faults", &json!({"kind": "submit_429", "count": 2})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for _ in 0..2 {
        let r = h.submit("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(h.submit("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await.status, StatusCode::OK);
    let acc = h.sim.handle().account("main").unwrap();
    assert_eq!(acc.rejected["rate_limited"], 2);
    assert_eq!(acc.submits_accepted, 1);
    assert_eq!(h.sim.handle().requests().len(), 1);
    let faults = h.get(None, &h.url("/_sim/faults")).await;
    assert_eq!(faults.body["rules"][0]["count"], 0, "burst spent");
}

#[tokio::test]
async fn marker_502_fires_n_times_then_a_retry_succeeds() {
    let h = start(config(2, 1.0)).await;
    let body = json!({"prompt": "x [[fault:submit_502:1]]"});
    let r = h.submit("k1", "fal-ai/flux/schnell", &body).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.text.contains("nginx"));
    assert!(r.headers.get("x-fal-request-id").is_none());
    assert_eq!(h.submit("k1", "fal-ai/flux/schnell", &body).await.status, StatusCode::OK);
}

#[tokio::test]
async fn submit_503_rule_with_filters() {
    let cfg = config(2, 1.0).with_faults(FaultScript {
        rules: vec![FaultRule::always(FaultKind::Submit503).for_endpoint("fal-ai/flux-pro")],
    });
    let h = start(cfg).await;
    let r = h.submit("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x"})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers["x-fal-error-type"], "runner_scheduling_failure");
    assert_eq!(r.body["error_type"], "runner_scheduling_failure");
    assert_eq!(h.submit("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await.status, StatusCode::OK);
    h.sim.handle().clear_faults();
    assert_eq!(h.submit("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x"})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn status_500_then_recovery() {
    let h = start(config(2, 1.0)).await;
    let sub = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": "x [[fault:status_500:2]]"})).await;
    for _ in 0..2 {
        let r = h.get(Some("k1"), sub["status_url"].as_str().unwrap()).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers["x-fal-error-type"], "internal_error");
    }
    let done = h.wait_completed("k1", &sub).await;
    assert_eq!(done["status"], "COMPLETED");
    let r = h.get(Some("k1"), sub["response_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "status faults do not touch the job");
}

#[tokio::test]
async fn result_5xx_after_completed() {
    let h = start(config(2, 1.0)).await;
    for (marker, code, error_type) in
        [("result_500", 500, "runner_server_error"), ("result_503", 503, "runner_disconnected")]
    {
        let sub = h.submit_ok("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": format!("x [[fault:{marker}]]")})).await;
        let done = h.wait_completed("k1", &sub).await;
        assert_eq!(done["error_type"], error_type);
        let r = h.get(Some("k1"), sub["response_url"].as_str().unwrap()).await;
        assert_eq!(r.status.as_u16(), code);
        assert_eq!(r.headers["x-fal-error-type"], error_type);
        assert_eq!(r.body["error_type"], error_type);
        assert!(r.body["detail"].is_string());
        assert!(r.headers.get("x-fal-request-id").is_some());
    }
    assert_eq!(h.sim.handle().account("main").unwrap().charged.micros(), 0);
}

#[tokio::test]
async fn content_policy_at_result_time() {
    let h = start(config(2, 1.0)).await;
    let sub = h.submit_ok("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "bad [[fault:content_policy]]"})).await;
    let done = h.wait_completed("k1", &sub).await;
    assert!(done.get("error_type").is_none(), "not an infrastructure error");
    let r = h.get(Some("k1"), sub["response_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let issue = &r.body["detail"][0];
    assert_eq!(issue["type"], "content_policy_violation");
    assert_eq!(issue["loc"], json!(["body", "prompt"]));
    assert_eq!(issue["url"], "https://docs.fal.ai/errors#content_policy_violation");
    assert!(issue["msg"].as_str().unwrap().contains("content checker"));
    let rec = h.sim.handle().request(sub["request_id"].as_str().unwrap()).unwrap();
    assert_eq!(rec.outcome, Some(OutcomeKind::ContentPolicyViolation));
}

#[tokio::test]
async fn nsfw_flags_in_a_success() {
    let h = start(config(2, 1.0)).await;
    let (_, r) = h.run("k1", "fal-ai/flux/dev", &json!({"prompt": "x [[fault:nsfw]]", "num_images": 2})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["has_nsfw_concepts"], json!([true, true]));
}

#[tokio::test]
async fn stuck_in_queue_forever_until_cancelled() {
    let h = start(config(1, 1.0)).await;
    let stuck = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": "x [[fault:stuck]]"})).await;
    // Other jobs of the account are not blocked by it.
    for _ in 0..3 {
        h.run("k1", "fal-ai/flux/schnell", &json!({"prompt": "y"})).await;
    }
    let r = h.get(Some("k1"), stuck["status_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body["status"], "IN_QUEUE");
    assert!(r.body["queue_position"].is_u64());
    let acc = h.sim.handle().account("main").unwrap();
    assert_eq!((acc.stuck, acc.queued, acc.jobs_succeeded), (1, 1, 3));
    let r = h.put("k1", stuck["cancel_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let acc = h.sim.handle().account("main").unwrap();
    assert_eq!((acc.stuck, acc.queued, acc.jobs_cancelled), (0, 0, 1));
}

#[tokio::test]
async fn slow_cdn_delivers_slowly_but_completely() {
    let mut cfg = config(2, 1.0);
    cfg.slow_cdn_secs = 50.0; // 0.5 s real at scale 100
    let h = start(cfg).await;
    let (_, r) = h.run("k1", "fal-ai/flux/schnell", &json!({"prompt": "x [[fault:slow_cdn]]"})).await;
    let url = r.body["images"][0]["url"].as_str().unwrap();
    let t0 = Instant::now();
    let (code, png) = h.bytes(url).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(&png[..8], &mediagen_fal_sim::media::PNG_SIGNATURE);
    assert!(t0.elapsed().as_millis() >= 400, "took {:?}", t0.elapsed());
}

#[tokio::test]
async fn lock_account_fault_accepts_then_locks() {
    let h = start(config(2, 1.0)).await;
    let sub = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": "x [[fault:lock_account]]"})).await;
    let r = h.submit("k1", "fal-ai/flux/schnell", &json!({"prompt": "y"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body["detail"].as_str().unwrap().starts_with("User is locked. Reason: "));
    let (_, result) =
        (h.wait_completed("k1", &sub).await, h.get(Some("k1"), sub["response_url"].as_str().unwrap()).await);
    assert_eq!(result.status, StatusCode::OK, "the triggering job still ran");
}

#[tokio::test]
async fn rate_rules_are_seeded_and_partial() {
    let cfg = config(8, 1.0)
        .with_faults(FaultScript { rules: vec![FaultRule::rate(FaultKind::Submit429, 0.5).for_account("main")] });
    let h = start(cfg).await;
    let mut limited = 0;
    for _ in 0..40 {
        if h.submit("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await.status == StatusCode::TOO_MANY_REQUESTS
        {
            limited += 1;
        }
    }
    assert!((5..=35).contains(&limited), "about half rate-limited, got {limited}");
    h.wait_idle().await;
}

#[tokio::test]
async fn fault_script_files_in_toml_and_json() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }
    let dir = std::env::temp_dir().join(format!("fal-sim-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml_path = dir.join("faults.toml");
    std::fs::write(
        &toml_path,
        "[[rule]]\nkind = \"submit_429\"\ncount = 1\n\n[[rule]]\nkind = \"nsfw\"\nendpoint = \"fal-ai/flux\"\n",
    )
    .unwrap();
    let json_path = dir.join("faults.json");
    std::fs::write(&json_path, r#"{"rules": [{"kind": "content_policy", "account": "main"}]}"#).unwrap();

    let args = |path: &std::path::Path| {
        Cli::try_parse_from([
            "fal-sim",
            "--account",
            "main=k1,limit=2",
            "--time-scale",
            "100",
            "--faults",
            path.to_str().unwrap(),
        ])
        .unwrap()
        .sim
    };
    let h = start(args(&toml_path).into_config().unwrap()).await;
    assert_eq!(
        h.submit("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let (_, r) = h.run("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await;
    assert_eq!(r.body["has_nsfw_concepts"], json!([true]));

    let h = start(args(&json_path).into_config().unwrap()).await;
    let (_, r) = h.run("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    std::fs::write(&toml_path, "[[rule]]\nkind = \"explode\"\n").unwrap();
    assert!(args(&toml_path).into_config().is_err());
    std::fs::remove_dir_all(&dir).ok();
}
