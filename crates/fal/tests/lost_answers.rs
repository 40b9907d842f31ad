//! Answers lost on the way, against a raw HTTP/1.1 fake that can break HTTP's rules: bodies
//! cut short of their `Content-Length`, gateway errors, fal's own 5xx. Calls that change
//! nothing at fal (status, result, cancel, download) try again; a submit never does; only
//! fal's own word ends the follow of a request.

mod common;

use common::*;
use mediagen_domain::{AccountId, ModelId, RequestId};
use mediagen_fal::FalGeneration;
use mediagen_ports::{CancelOutcome, Generation, GenerationError, OutputMedia, RemoteHandle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Calls = Arc<Mutex<HashMap<String, usize>>>;

/// Serves one answer per connection, `respond(path, n)` for the n-th call (1-based) of a
/// path, written as raw bytes, then closes. Returns the base URL and the calls per path.
async fn raw_fake(respond: impl Fn(&str, usize) -> Vec<u8> + Send + Sync + 'static) -> (String, Calls) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (seen, respond) = (seen.clone(), respond.clone());
            tokio::spawn(async move {
                let Some(path) = read_request(&mut socket).await else { return };
                let n = {
                    let mut calls = seen.lock().unwrap();
                    let n = calls.entry(path.clone()).or_default();
                    *n += 1;
                    *n
                };
                let _ = socket.write_all(&respond(&path, n)).await;
                let _ = socket.flush().await;
                // Closing mid-body is the point: the client sees a cut answer.
            });
        }
    });
    (base, calls)
}

/// Reads one request (head and body); returns its path without the query.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<String> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= len {
                let target = head.split_whitespace().nth(1)?;
                return Some(target.split('?').next().unwrap_or(target).to_owned());
            }
        }
    }
}

/// A whole answer.
fn answer(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

/// An answer whose `Content-Length` promises the whole body but which sends only half.
fn cut(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut whole = answer(status, headers, body);
    whole.truncate(whole.len() - body.len() / 2);
    whole
}

fn calls(calls: &Calls, path: &str) -> usize {
    calls.lock().unwrap().get(path).copied().unwrap_or(0)
}

fn adapter(base: &str) -> FalGeneration {
    FalGeneration::new(fal_config(base, &[KEY_1])).unwrap()
}

fn handle(base: &str) -> RemoteHandle {
    RemoteHandle {
        account: AccountId::new("main"),
        model: ModelId::new("fal-ai/flux/dev"),
        request_id: RequestId::new("r"),
        status_url: format!("{base}/fal-ai/flux/requests/r/status"),
        response_url: format!("{base}/fal-ai/flux/requests/r"),
        cancel_url: format!("{base}/fal-ai/flux/requests/r/cancel"),
    }
}

const STATUS: &str = "/fal-ai/flux/requests/r/status";
const RESULT: &str = "/fal-ai/flux/requests/r";
const CANCEL: &str = "/fal-ai/flux/requests/r/cancel";
const COMPLETED: &str = r#"{"status":"COMPLETED","request_id":"r"}"#;
const ID: (&str, &str) = ("x-fal-request-id", "r");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn output(base: &str) -> String {
    format!(r#"{{"images":[{{"url":"{base}/files/a.png","width":8,"height":8}}],"seed":1}}"#)
}

#[tokio::test]
async fn cut_bodies_are_lost_answers_that_idempotent_calls_fetch_again() {
    let (base, seen) = raw_fake(|path, n| match path {
        STATUS if n <= 2 => cut("200 OK", &[JSON, ID], COMPLETED),
        STATUS => answer("200 OK", &[JSON, ID], COMPLETED),
        // More cut answers in a row than the retry budget (1 + 3).
        RESULT if n <= 5 => cut("200 OK", &[JSON, ID], &output("http://cdn")),
        RESULT => answer("200 OK", &[JSON, ID], &output("http://cdn")),
        CANCEL if n == 1 => cut("400 Bad Request", &[JSON], r#"{"status":"ALREADY_COMPLETED"}"#),
        CANCEL => answer("400 Bad Request", &[JSON], r#"{"status":"ALREADY_COMPLETED"}"#),
        "/files/a.png" if n == 1 => cut("200 OK", &[("Content-Type", "image/png")], "0123456789"),
        _ => answer("200 OK", &[("Content-Type", "image/png")], "0123456789"),
    })
    .await;
    let fal = adapter(&base);
    let out = fal.wait(&handle(&base), deadline()).await.unwrap();
    assert_eq!(out.media.len(), 1);
    assert_eq!((calls(&seen, STATUS), calls(&seen, RESULT)), (3, 6));
    assert_eq!(fal.cancel(&handle(&base)).await.unwrap(), CancelOutcome::AlreadyCompleted);
    assert_eq!(calls(&seen, CANCEL), 2);
    let media = OutputMedia {
        url: format!("{base}/files/a.png"),
        content_type: None,
        width: None,
        height: None,
        file_size: None,
    };
    let file = fal.download(&media).await.unwrap();
    assert_eq!(file.bytes, b"0123456789");
    assert_eq!(calls(&seen, "/files/a.png"), 2);
}

#[tokio::test]
async fn a_cut_submit_answer_is_outcome_unknown_after_one_attempt() {
    let (base, seen) = raw_fake(|_, _| cut("200 OK", &[JSON], r#"{"request_id":"r","status":"IN_QUEUE"}"#)).await;
    let error =
        adapter(&base).submit(&AccountId::new("main"), &image_request("fal-ai/flux/dev", "x")).await.unwrap_err();
    assert!(matches!(error, GenerationError::SubmitOutcomeUnknown(_)), "{error:?}");
    assert_eq!(calls(&seen, "/fal-ai/flux/dev"), 1, "a submit fal may hold is never sent twice");
}

#[tokio::test]
async fn a_cut_error_answer_is_fetched_again_before_it_is_judged() {
    let refusal = r#"{"detail":[{"loc":["body","prompt"],"msg":"flagged by a content checker","type":"content_policy_violation"}]}"#;
    let (base, seen) = raw_fake(move |path, n| match path {
        STATUS => answer("200 OK", &[JSON, ID], COMPLETED),
        _ if n == 1 => cut("422 Unprocessable Entity", &[JSON, ID], refusal),
        _ => answer("422 Unprocessable Entity", &[JSON, ID], refusal),
    })
    .await;
    let error = adapter(&base).wait(&handle(&base), deadline()).await.unwrap_err();
    assert!(matches!(error, GenerationError::ContentPolicy), "{error:?}");
    assert_eq!(calls(&seen, RESULT), 2);
}

const NGINX_502: &str = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>";

#[tokio::test]
async fn only_fal_s_own_5xx_ends_the_follow_as_a_failed_run() {
    let disconnected = r#"{"detail":"Runner disconnected","error_type":"runner_disconnected"}"#;
    let (base, seen) = raw_fake(move |path, n| match (path, n) {
        (STATUS, _) => answer("200 OK", &[JSON, ID], COMPLETED),
        // Gateways that never reached the queue: no request id, no error type.
        (_, 1) => answer("502 Bad Gateway", &[("Content-Type", "text/html")], NGINX_502),
        (_, 2) => answer("500 Internal Server Error", &[("Content-Type", "text/plain")], "Internal Server Error"),
        (_, 3) => answer("504 Gateway Time-out", &[("Content-Type", "text/html")], "<html>nginx</html>"),
        // fal's own: the run failed, never billed, may be submitted again.
        _ => answer("503 Service Unavailable", &[JSON, ID, ("X-Fal-Error-Type", "runner_disconnected")], disconnected),
    })
    .await;
    let error = adapter(&base).wait(&handle(&base), deadline()).await.unwrap_err();
    assert!(matches!(error, GenerationError::Retryable(_)), "{error:?}");
    assert_eq!(calls(&seen, RESULT), 4);
}

#[tokio::test]
async fn a_start_timeout_at_result_is_timeout_at_once() {
    let (base, seen) = raw_fake(|path, _| match path {
        STATUS => answer("200 OK", &[JSON, ID], COMPLETED),
        _ => answer(
            "504 Gateway Timeout",
            &[JSON, ID, ("X-Fal-Request-Timeout-Type", "user")],
            r#"{"detail":"Request timed out","error_type":"request_timeout"}"#,
        ),
    })
    .await;
    let error = adapter(&base).wait(&handle(&base), deadline()).await.unwrap_err();
    assert!(matches!(error, GenerationError::Timeout(_)), "{error:?}");
    assert_eq!(calls(&seen, RESULT), 1);
}

#[tokio::test]
async fn a_success_that_cannot_be_read_is_unreadable_and_fetched_once() {
    let (base, seen) = raw_fake(|path, _| match path {
        STATUS => answer("200 OK", &[JSON, ID], COMPLETED),
        _ => answer("200 OK", &[JSON, ID], "{this is not json"),
    })
    .await;
    let error = adapter(&base).wait(&handle(&base), deadline()).await.unwrap_err();
    assert!(matches!(error, GenerationError::UnreadableResult(_)), "{error:?}");
    assert_eq!(calls(&seen, RESULT), 1);
}

#[tokio::test]
async fn a_follow_without_answers_ends_at_the_deadline_not_before() {
    // Status answers never get through; the adapter's own poll deadline (20 s) plays no part.
    let (base, seen) = raw_fake(|_, _| answer("502 Bad Gateway", &[("Content-Type", "text/html")], NGINX_502)).await;
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), adapter(&base).wait(&handle(&base), in_secs(0.8))).await;
    let took = started.elapsed();
    let error = result.expect("wait ends at its deadline").unwrap_err();
    assert!(matches!(error, GenerationError::Timeout(_)), "{error:?}");
    assert!(took >= Duration::from_millis(700), "gave up early, after {took:?}");
    assert!(calls(&seen, STATUS) > 6, "kept asking: {}", calls(&seen, STATUS));
}
