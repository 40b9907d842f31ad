//! Storage upload (initiate + PUT) and the CDN.

use crate::common::{config, start};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn upload_round_trip() {
    let h = start(config(2, 1.0)).await;
    let init = h.post_upload_initiate("k1", "image/jpeg", "my photo.jpg").await;
    let upload_url = init["upload_url"].as_str().unwrap();
    let file_url = init["file_url"].as_str().unwrap();
    let base = h.sim.base_url();
    assert!(upload_url.starts_with(&format!("{base}/storage/upload/put/")));
    assert!(file_url.starts_with(&format!("{base}/files/")));
    assert!(file_url.ends_with("/my_photo.jpg"));
    // Not there before the PUT.
    assert_eq!(h.bytes(file_url).await.0, StatusCode::NOT_FOUND);
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let put = h.http.put(upload_url).header("Content-Type", "image/jpeg").body(data.clone()).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let got = h.http.get(file_url).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()["content-type"], "image/jpeg");
    assert_eq!(got.bytes().await.unwrap().to_vec(), data);
    let uploads = h.sim.handle().uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].size, Some(10_000));
    assert_eq!(uploads[0].account, "main");
}

#[tokio::test]
async fn upload_errors() {
    let mut cfg = config(2, 1.0);
    cfg.max_upload_bytes = 1024;
    let h = start(cfg).await;
    let r = h
        .http
        .post(h.url("/storage/upload/initiate?storage_type=fal-cdn-v3"))
        .json(&json!({"content_type": "image/png", "file_name": "a.png"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let init = h.post_upload_initiate("k1", "image/png", "a.png").await;
    let r = h.http.put(init["upload_url"].as_str().unwrap()).body(vec![0u8; 2048]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = h.http.put(h.url("/storage/upload/put/nope")).body(vec![0u8; 8]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(h.bytes(&h.url("/files/nothing/here.png")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn lifecycle_preference_expires_generated_files() {
    let h = start(config(2, 1.0)).await;
    let sub = h
        .submit_with(
            "k1",
            "fal-ai/flux/schnell",
            &json!({"prompt": "x"}),
            &[("X-Fal-Object-Lifecycle-Preference", r#"{"expiration_duration_seconds": 5}"#)],
        )
        .await;
    assert_eq!(sub.status, StatusCode::OK);
    h.wait_completed("k1", &sub.body).await;
    let r = h.get(Some("k1"), sub.body["response_url"].as_str().unwrap()).await;
    let url = r.body["images"][0]["url"].as_str().unwrap().to_owned();
    // 5 simulated seconds = 50 ms at scale 100; wait well past it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(h.bytes(&url).await.0, StatusCode::NOT_FOUND);
    // Without the header files stay.
    let (_, r) = h.run("k1", "fal-ai/flux/schnell", &json!({"prompt": "x"})).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(h.bytes(r.body["images"][0]["url"].as_str().unwrap()).await.0, StatusCode::OK);
}
