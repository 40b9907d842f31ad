//! The queue API per model kind, URL shapes and the client errors.

use crate::common::{Harness, config, start};
use mediagen_fal_sim::media::PNG_SIGNATURE;
use mediagen_fal_sim::{OutcomeKind, RequestStatus};
use reqwest::StatusCode;
use serde_json::json;

fn is_uuid_v7(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7)
}

#[tokio::test]
async fn flux_pro_submit_status_result() {
    let h = start(config(2, 200.0)).await;
    let sub = h.submit_ok("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "a red fox"})).await;
    assert_eq!(sub["status"], "IN_QUEUE");
    assert_eq!(sub["queue_position"], 0);
    assert_eq!(sub["logs"], serde_json::Value::Null);
    assert_eq!(sub["metrics"], json!({}));
    let id = sub["request_id"].as_str().unwrap();
    assert!(is_uuid_v7(id), "{id}");
    let base = h.sim.base_url();
    assert_eq!(sub["response_url"], format!("{base}/fal-ai/flux-pro/requests/{id}"));
    assert_eq!(sub["status_url"], format!("{base}/fal-ai/flux-pro/requests/{id}/status"));
    assert_eq!(sub["cancel_url"], format!("{base}/fal-ai/flux-pro/requests/{id}/cancel"));

    // 2 s of real service time: the first poll sees it queued or running.
    let first = h.get(Some("k1"), sub["status_url"].as_str().unwrap()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert!(["IN_QUEUE", "IN_PROGRESS"].contains(&first.body["status"].as_str().unwrap()));
    let early = h.get(Some("k1"), sub["response_url"].as_str().unwrap()).await;
    assert_eq!(early.status, StatusCode::BAD_REQUEST);
    assert!(early.body["detail"].as_str().unwrap().contains("in progress"));

    let done = h.wait_completed("k1", &sub).await;
    assert_eq!(done["metrics"]["inference_time"], 200.0);
    assert_eq!(done["request_id"], id);
    let result = h.get(Some("k1"), sub["response_url"].as_str().unwrap()).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.headers["x-fal-request-id"], id);
    let out = &result.body;
    assert_eq!(out["images"][0]["width"], 1024);
    assert_eq!(out["images"][0]["height"], 768);
    assert_eq!(out["images"][0]["content_type"], "image/png");
    assert!(out["seed"].is_u64());
    assert_eq!(out["has_nsfw_concepts"], json!([false]));
    assert_eq!(out["prompt"], "a red fox");
    assert!(out["timings"].is_object());
    assert!(out["_sim_extra"].is_object(), "unknown extra field present");
    let (code, png) = h.bytes(out["images"][0]["url"].as_str().unwrap()).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(&png[..8], &PNG_SIGNATURE);
    let record = h.sim.handle().request(id).unwrap();
    assert_eq!(record.status, RequestStatus::Completed);
    assert_eq!(record.outcome, Some(OutcomeKind::Success));
}

#[tokio::test]
async fn flux_image_size_and_count_and_big_seeds() {
    let h = start(config(4, 1.0)).await;
    let (_, r) = h
        .run(
            "k1",
            "fal-ai/flux/schnell",
            &json!({"prompt": "x", "image_size": {"width": 640, "height": 480}, "num_images": 2}),
        )
        .await;
    assert_eq!(r.body["images"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["images"][1]["width"], 640);
    assert_eq!(r.body["has_nsfw_concepts"], json!([false, false]));
    let (_, r) = h.run("k1", "fal-ai/flux/dev", &json!({"prompt": "x", "seed": 42, "image_size": "square"})).await;
    assert_eq!(r.body["seed"], 42);
    assert_eq!(r.body["images"][0]["width"], 512);
    // Generated seeds use the whole u64 range, so clients must not parse them as i64.
    let mut big = false;
    for _ in 0..16 {
        let (_, r) = h.run("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await;
        big |= r.body["seed"].as_u64().unwrap() > i64::MAX as u64;
    }
    assert!(big, "at least one seed above i64::MAX in 16 draws");
}

#[tokio::test]
async fn nano_banana_text_and_edit() {
    let h = start(config(2, 1.0)).await;
    let (_, r) = h.run("k1", "fal-ai/nano-banana", &json!({"prompt": "a cat"})).await;
    assert_eq!(r.status, StatusCode::OK);
    let img = &r.body["images"][0];
    assert!(img.get("width").is_none() && img.get("height").is_none(), "nano-banana omits width/height");
    assert!(img["file_size"].as_u64().unwrap() > 0);
    assert!(r.body["description"].is_string());

    // Edit with an input image uploaded to the simulator's storage.
    let init = h.post_upload_initiate("k1", "image/png", "in.png").await;
    let put = h.http.put(init["upload_url"].as_str().unwrap()).body(vec![1u8, 2, 3]).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let (sub, r) = h
        .run("k1", "fal-ai/nano-banana/edit", &json!({"prompt": "make it blue", "image_urls": [init["file_url"]]}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (code, png) = h.bytes(r.body["images"][0]["url"].as_str().unwrap()).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(&png[..8], &PNG_SIGNATURE);
    let base = h.sim.base_url();
    let id = sub["request_id"].as_str().unwrap();
    assert_eq!(sub["status_url"], format!("{base}/fal-ai/nano-banana/requests/{id}/status"), "edit path dropped");

    // A simulator CDN URL that does not exist: the job fails with a 422 file_download_error.
    let missing = format!("{base}/files/nope/none.png");
    let (_, r) = h.run("k1", "fal-ai/nano-banana/edit", &json!({"prompt": "x", "image_urls": [missing]})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["detail"][0]["type"], "file_download_error");
}

#[tokio::test]
async fn llm_endpoints() {
    let h = start(config(2, 1.0)).await;
    let (_, r) = h
        .run(
            "k1",
            "openrouter/router",
            &json!({"prompt": "a fox", "model": "google/gemini-2.5-flash", "system_prompt": "enhance"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["output"].as_str().unwrap().contains("enhanced"));
    assert!(r.body["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(r.body["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let (_, r) = h.run("k1", "fal-ai/any-llm", &json!({"prompt": "a fox"})).await;
    assert!(r.body["output"].as_str().unwrap().starts_with("a fox"));
    // openrouter/router requires `model`.
    let r = h.submit("k1", "openrouter/router", &json!({"prompt": "x"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["detail"][0]["loc"], json!(["body", "model"]));
}

#[tokio::test]
async fn tts_returns_a_wav() {
    let h = start(config(2, 1.0)).await;
    let (_, r) = h.run("k1", "fal-ai/elevenlabs/tts/multilingual-v2", &json!({"text": "hello there"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["audio"]["content_type"], "audio/wav");
    let (code, wav) = h.bytes(r.body["audio"]["url"].as_str().unwrap()).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(r.body["audio"]["file_size"], wav.len());
    let r = h.submit("k1", "fal-ai/elevenlabs/tts/multilingual-v2", &json!({"prompt": "hello"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["detail"][0]["loc"], json!(["body", "text"]));
}

#[tokio::test]
async fn auth_unknown_app_and_validation_errors() {
    let h = start(config(2, 1.0)).await;
    let r = h.submit("nope", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body, json!({"detail": "No user found for Key ID and Secret"}));
    let r = h.http.post(h.url("/fal-ai/flux/schnell")).json(&json!({"prompt": "x"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = h.submit("k1", "fal-ai/no-such-model", &json!({"prompt": "x"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"detail": "Application \"no-such-model\" not found"}));

    let r = h.submit("k1", "fal-ai/flux-pro/v1.1", &json!({"image_size": "square"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let issue = &r.body["detail"][0];
    assert_eq!(issue["loc"], json!(["body", "prompt"]));
    assert_eq!(issue["type"], "missing");
    assert!(issue["msg"].is_string());

    let r = h.submit("k1", "fal-ai/nano-banana/edit", &json!({"prompt": "x"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["detail"][0]["loc"], json!(["body", "image_urls"]));

    let r = h
        .http
        .post(h.url("/fal-ai/flux/schnell"))
        .header("Authorization", "Key k1")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let acc = h.sim.handle().account("main").unwrap();
    assert_eq!(acc.submits_accepted, 0);
    assert_eq!(acc.rejected["not_found"], 1);
    assert_eq!(acc.rejected["validation"], 3);
    assert_eq!(h.sim.handle().snapshot().unauthorized_submits, 2);
    assert!(h.sim.handle().requests().is_empty(), "nothing was enqueued");
}

#[tokio::test]
async fn url_shapes_are_enforced() {
    let h = start(config(2, 1.0)).await;
    let sub = h.submit_ok("k1", "fal-ai/flux-pro/v1.1", &json!({"prompt": "x"})).await;
    let id = sub["request_id"].as_str().unwrap();
    h.wait_completed("k1", &sub).await;
    // Status under the full model path does not exist: fal wants owner/app only.
    let r = h.get(Some("k1"), &h.url(&format!("/fal-ai/flux-pro/v1.1/requests/{id}/status"))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Another app's root, or another account's key, does not find it either.
    let r = h.get(Some("k1"), &h.url(&format!("/fal-ai/flux/requests/{id}/status"))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h.get(Some("bad"), sub["status_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Cancel of an unknown id, and of a completed one.
    let r = h.put("k1", &h.url("/fal-ai/flux-pro/requests/00000000-0000-7000-8000-000000000000/cancel")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"status": "NOT_FOUND"}));
    let r = h.put("k1", sub["cancel_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body, json!({"status": "ALREADY_COMPLETED"}));
}

#[tokio::test]
async fn logs_parameter_accepts_all_spellings() {
    let h = start(config(2, 1.0)).await;
    let sub = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await;
    h.wait_completed("k1", &sub).await;
    let url = sub["status_url"].as_str().unwrap();
    for (q, want_logs) in [("1", true), ("true", true), ("0", false), ("false", false)] {
        let r = h.get(Some("k1"), &format!("{url}?logs={q}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["logs"].is_array(), want_logs, "logs={q}");
    }
    let r = h.get(Some("k1"), &format!("{url}?logs=1")).await;
    let entry = &r.body["logs"][0];
    assert!(entry["message"].is_string() && entry["level"].is_string() && entry["timestamp"].is_string());
}

#[tokio::test]
async fn status_stream_ends_with_completed() {
    let h = start(config(1, 100.0)).await;
    let sub = h.submit_ok("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await;
    let url = format!("{}/stream", sub["status_url"].as_str().unwrap());
    let r = h.http.get(url).header("Authorization", "Key k1").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = tokio::time::timeout(crate::common::PATIENCE, r.text()).await.expect("stream closes").unwrap();
    let events: Vec<serde_json::Value> =
        text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| serde_json::from_str(d.trim()).unwrap()).collect();
    assert_eq!(events.last().unwrap()["status"], "COMPLETED");
    assert!(events.len() >= 2, "saw at least one earlier status: {events:?}");
}

#[tokio::test]
async fn headers_and_inputs_are_recorded() {
    let h = start(config(2, 1.0)).await;
    let lifecycle = r#"{"expiration_duration_seconds": 3600}"#;
    let r = h
        .http
        .post(h.url("/fal-ai/flux/schnell?fal_webhook=https%3A%2F%2Fexample.invalid%2Fhook"))
        .header("Authorization", "Key k1")
        .header("X-Fal-Object-Lifecycle-Preference", lifecycle)
        .header("X-Fal-Request-Timeout", "30")
        .header("X-Fal-Queue-Priority", "normal")
        .json(&json!({"prompt": "x", "image_size": "square"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    h.wait_idle().await;
    let reqs = h.sim.handle().requests();
    assert_eq!(reqs.len(), 1);
    let rec = &reqs[0];
    assert_eq!(rec.lifecycle_preference.as_deref(), Some(lifecycle));
    assert_eq!(rec.request_timeout.as_deref(), Some("30"));
    assert_eq!(rec.webhook.as_deref(), Some("https://example.invalid/hook"));
    assert_eq!(rec.headers["x-fal-queue-priority"], "normal");
    assert!(!rec.headers.contains_key("authorization"), "keys are not recorded as headers");
    assert_eq!(rec.input["image_size"], "square");
    // What app tests check: no Telegram file URL ever reaches fal.
    assert!(reqs.iter().all(|r| !r.input.to_string().contains("api.telegram.org/file/bot")));
    // The same over HTTP.
    let all = h.get(None, &h.url("/_sim/requests?account=main")).await;
    assert_eq!(all.body[0]["lifecycle_preference"], lifecycle);
}

#[tokio::test]
async fn request_timeout_expires_queued_jobs() {
    let h = start(config(1, 1.0)).await;
    let bad =
        h.submit_with("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"}), &[("X-Fal-Request-Timeout", "soon")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.headers["x-fal-error-type"], "bad_request");
    let sub = h
        .submit_with(
            "k1",
            "fal-ai/flux/schnell",
            &json!({"prompt": "x [[fault:stuck]]"}),
            &[("X-Fal-Request-Timeout", "2")],
        )
        .await;
    assert_eq!(sub.status, StatusCode::OK);
    let done = h.wait_completed("k1", &sub.body).await;
    assert_eq!(done["error_type"], "request_timeout");
    assert_eq!(done["metrics"]["inference_time"], serde_json::Value::Null);
    let r = h.get(Some("k1"), sub.body["response_url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.headers["x-fal-request-timeout-type"], "user");
    assert_eq!(r.body["error_type"], "request_timeout");
    let acc = h.sim.handle().account("main").unwrap();
    assert_eq!((acc.jobs_timed_out, acc.jobs_started, acc.charged.micros()), (1, 0, 0));
}

impl Harness {
    pub async fn post_upload_initiate(&self, key: &str, content_type: &str, file_name: &str) -> serde_json::Value {
        let r = self
            .http
            .post(self.url("/storage/upload/initiate?storage_type=fal-cdn-v3"))
            .header("Authorization", format!("Key {key}"))
            .json(&json!({"content_type": content_type, "file_name": file_name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }
}
