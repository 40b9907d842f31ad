//! HTTP edge cases the simulator does not script, against tiny local fakes: lost submits,
//! gateway answers at submit, odd submit answers, download caps, upload headers.

mod common;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use common::*;
use mediagen_domain::AccountId;
use mediagen_fal::FalGeneration;
use mediagen_ports::{Generation, GenerationError, MediaBytes, OutputMedia};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Serves `app` on a free port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn adapter(base: &str, tweak: impl FnOnce(&mut mediagen_fal::FalConfig)) -> FalGeneration {
    let mut config = fal_config(base, &[KEY_1]);
    tweak(&mut config);
    FalGeneration::new(config).unwrap()
}

fn main_account() -> AccountId {
    AccountId::new("main")
}

/// A submit endpoint that counts calls and answers with `reply`.
async fn submit_fake(
    reply: impl Fn() -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = Router::new().route(
        "/fal-ai/flux/dev",
        post(move |_body: Bytes| {
            seen.fetch_add(1, Ordering::SeqCst);
            let reply = reply.clone();
            async move { reply() }
        }),
    );
    (serve(app).await, count)
}

#[tokio::test]
async fn submit_whose_connection_drops_after_sending_is_outcome_unknown() {
    // Raw TCP: read the whole request, then close without answering.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = attempts.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            seen.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let fal = adapter(&base, |_| {});
    let error = fal.submit(&main_account(), &image_request("fal-ai/flux/dev", "a fox")).await.unwrap_err();
    assert!(matches!(error, GenerationError::SubmitOutcomeUnknown(_)), "{error:?}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "a submit that may have been accepted is never retried");
}

#[tokio::test]
async fn submit_that_never_answers_is_outcome_unknown() {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = Router::new().route(
        "/fal-ai/flux/dev",
        post(move |_body: Bytes| {
            seen.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                StatusCode::OK
            }
        }),
    );
    let base = serve(app).await;
    let fal = adapter(&base, |c| c.request_timeout_ms = 300);
    let error = fal.submit(&main_account(), &image_request("fal-ai/flux/dev", "a fox")).await.unwrap_err();
    assert!(matches!(error, GenerationError::SubmitOutcomeUnknown(_)), "{error:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn gateway_timeout_and_500_at_submit_are_outcome_unknown() {
    for status in [StatusCode::GATEWAY_TIMEOUT, StatusCode::INTERNAL_SERVER_ERROR] {
        let (base, count) =
            submit_fake(move || (status, r#"{"detail":"upstream","error_type":"internal_error"}"#).into_response())
                .await;
        let fal = adapter(&base, |_| {});
        let error = fal.submit(&main_account(), &image_request("fal-ai/flux/dev", "a fox")).await.unwrap_err();
        assert!(matches!(error, GenerationError::SubmitOutcomeUnknown(_)), "{status}: {error:?}");
        assert_eq!(count.load(Ordering::SeqCst), 1, "{status}");
    }
}

#[tokio::test]
async fn submit_to_a_dead_host_is_retryable() {
    let fal = adapter("http://127.0.0.1:1", |_| {});
    let error = fal.submit(&main_account(), &image_request("fal-ai/flux/dev", "a fox")).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn unreadable_submit_answer_is_outcome_unknown() {
    let (base, count) = submit_fake(|| (StatusCode::OK, "<html>ok</html>").into_response()).await;
    let fal = adapter(&base, |_| {});
    let error = fal.submit(&main_account(), &image_request("fal-ai/flux/dev", "a fox")).await.unwrap_err();
    assert!(matches!(error, GenerationError::SubmitOutcomeUnknown(_)), "{error:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn submit_answers_are_read_leniently_and_urls_checked() {
    // Only request_id: URLs are built from owner/app.
    let (base, _) = submit_fake(|| (StatusCode::OK, r#"{"request_id":"r-1","extra":{"x":1}}"#).into_response()).await;
    let handle = adapter(&base, |_| {}).submit(&main_account(), &image_request("fal-ai/flux/dev", "x")).await.unwrap();
    assert_eq!(handle.request_id.as_str(), "r-1");
    assert_eq!(handle.response_url, format!("{base}/fal-ai/flux/requests/r-1"));
    assert_eq!(handle.status_url, format!("{base}/fal-ai/flux/requests/r-1/status"));
    assert_eq!(handle.cancel_url, format!("{base}/fal-ai/flux/requests/r-1/cancel"));

    // URLs on another host would receive the key: the standard ones are used instead.
    let (base, _) = submit_fake(|| {
        (
            StatusCode::OK,
            r#"{"request_id":"r-2","status_url":"https://evil.example/s","response_url":"https://evil.example/r","cancel_url":"https://evil.example/c"}"#,
        )
            .into_response()
    })
    .await;
    let handle = adapter(&base, |_| {}).submit(&main_account(), &image_request("fal-ai/flux/dev", "x")).await.unwrap();
    assert!(handle.status_url.starts_with(&base) && handle.response_url.starts_with(&base), "{handle:?}");
}

#[tokio::test]
async fn error_bodies_of_other_shapes() {
    let (base, _) =
        submit_fake(|| (StatusCode::UNPROCESSABLE_ENTITY, r#"{"detail":"prompt is too long"}"#).into_response()).await;
    let error =
        adapter(&base, |_| {}).submit(&main_account(), &image_request("fal-ai/flux/dev", "x")).await.unwrap_err();
    assert!(matches!(&error, GenerationError::InvalidInput(m) if m == "prompt is too long"), "{error:?}");

    let (base, _) = submit_fake(|| (StatusCode::FORBIDDEN, r#"{"detail":"Not allowed"}"#).into_response()).await;
    let error =
        adapter(&base, |_| {}).submit(&main_account(), &image_request("fal-ai/flux/dev", "x")).await.unwrap_err();
    assert!(matches!(error, GenerationError::Other(_)), "{error:?}");
}

#[tokio::test]
async fn user_timeout_at_result_is_timeout_and_not_retried() {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = Router::new()
        .route("/fal-ai/flux/requests/r/status", get(|| async { (StatusCode::OK, r#"{"status":"COMPLETED"}"#) }))
        .route(
            "/fal-ai/flux/requests/r",
            get(move || {
                seen.fetch_add(1, Ordering::SeqCst);
                async {
                    let mut headers = HeaderMap::new();
                    headers.insert("x-fal-request-timeout-type", "user".parse().unwrap());
                    (StatusCode::GATEWAY_TIMEOUT, headers, r#"{"detail":"timed out","error_type":"request_timeout"}"#)
                }
            }),
        );
    let base = serve(app).await;
    let fal = adapter(&base, |_| {});
    let handle = mediagen_ports::RemoteHandle {
        account: main_account(),
        model: mediagen_domain::ModelId::new("fal-ai/flux/dev"),
        request_id: mediagen_domain::RequestId::new("r"),
        status_url: format!("{base}/fal-ai/flux/requests/r/status"),
        response_url: format!("{base}/fal-ai/flux/requests/r"),
        cancel_url: format!("{base}/fal-ai/flux/requests/r/cancel"),
    };
    let error = fal.wait(&handle, deadline()).await.unwrap_err();
    assert!(matches!(error, GenerationError::Timeout(_)), "{error:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

fn media(url: String) -> OutputMedia {
    OutputMedia { url, content_type: Some("image/png".into()), width: None, height: None, file_size: None }
}

#[tokio::test]
async fn download_cap_counts_streamed_bytes() {
    let chunks_sent = Arc::new(AtomicUsize::new(0));
    let sent = chunks_sent.clone();
    let app = Router::new()
        .route(
            "/files/endless.png",
            get(move || {
                let sent = sent.clone();
                async move {
                    // No Content-Length: an endless chunked stream.
                    let stream = futures::stream::repeat_with(move || {
                        sent.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 1024]))
                    });
                    Body::from_stream(stream)
                }
            }),
        )
        .route("/files/big.png", get(|| async { vec![1u8; 10_000] }));
    let base = serve(app).await;
    let fal = adapter(&base, |c| c.download_max_bytes = 4_000);
    let error = fal.download(&media(format!("{base}/files/endless.png"))).await.unwrap_err();
    assert!(matches!(error, GenerationError::TooLarge { limit: 4_000, .. }), "{error:?}");
    let error = fal.download(&media(format!("{base}/files/big.png"))).await.unwrap_err();
    assert!(matches!(error, GenerationError::TooLarge { actual: 10_000, limit: 4_000 }), "{error:?}");
    // fal's own file_size is believed before any request.
    let mut known = media(format!("{base}/files/big.png"));
    known.file_size = Some(1_000_000);
    assert!(matches!(fal.download(&known).await, Err(GenerationError::TooLarge { actual: 1_000_000, .. })));
    assert!(fal.download(&media(format!("{base}/files/small.png"))).await.is_err());
}

#[tokio::test]
async fn data_uri_outputs_are_decoded_locally() {
    let fal = adapter("http://127.0.0.1:1", |_| {});
    let file = fal.download(&media("data:image/png;base64,iVBORw0KGgo=".into())).await.unwrap();
    assert_eq!(file.bytes, b"\x89PNG\r\n\x1a\n");
    assert_eq!(file.content_type, "image/png");
}

#[tokio::test]
async fn upload_sends_the_key_only_to_fal_and_the_bytes_to_the_signed_url() {
    let put_auth = Arc::new(std::sync::Mutex::new(None::<Option<String>>));
    let initiate_headers = Arc::new(std::sync::Mutex::new(None::<HeaderMap>));
    let (pa, ih) = (put_auth.clone(), initiate_headers.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let b = base.clone();
    let app = Router::new()
        .route(
            "/storage/upload/initiate",
            post(move |headers: HeaderMap, body: String| {
                *ih.lock().unwrap() = Some(headers);
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&body).unwrap(),
                    serde_json::json!({"content_type": "image/jpeg", "file_name": "p.jpg"})
                );
                let b = b.clone();
                async move {
                    axum::Json(serde_json::json!({"upload_url": format!("{b}/signed/abc"), "file_url": format!("{b}/files/p.jpg")}))
                }
            }),
        )
        .route(
            "/signed/abc",
            put(move |headers: HeaderMap, body: Bytes| {
                *pa.lock().unwrap() =
                    Some(headers.get("authorization").map(|v| v.to_str().unwrap().to_owned()));
                assert_eq!(&body[..], b"jpeg bytes");
                assert_eq!(headers["content-type"], "image/jpeg");
                async { StatusCode::OK }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let fal = adapter(&base, |_| {});
    let url = fal
        .upload(
            &main_account(),
            MediaBytes { bytes: b"jpeg bytes".to_vec(), content_type: "image/jpeg".into(), file_name: "p.jpg".into() },
        )
        .await
        .unwrap();
    assert_eq!(url, format!("{base}/files/p.jpg"));
    assert_eq!(*put_auth.lock().unwrap(), Some(None), "no Authorization on the signed PUT");
    let headers = initiate_headers.lock().unwrap().clone().unwrap();
    assert_eq!(headers["authorization"], format!("Key {KEY_1}").as_str());
    assert_eq!(headers["x-fal-object-lifecycle-preference"], r#"{"expiration_duration_seconds": 3600}"#);
}

#[tokio::test]
async fn upload_with_a_refused_key_is_bad_key() {
    let app = Router::new().route(
        "/storage/upload/initiate",
        post(|| async { (StatusCode::UNAUTHORIZED, r#"{"detail":"No user found for Key ID and Secret"}"#) }),
    );
    let base = serve(app).await;
    let media = MediaBytes { bytes: vec![1], content_type: "image/png".into(), file_name: "a.png".into() };
    let error = adapter(&base, |_| {}).upload(&main_account(), media).await.unwrap_err();
    assert!(matches!(&error, GenerationError::BadKey(a) if a.as_str() == "main"), "{error:?}");
}
