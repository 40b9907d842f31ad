//! One HTTP call with retries, and the classification of its failures into
//! [`GenerationError`].
//!
//! Every call goes through [`Caller::call`]: it sends, reads the body under a size cap,
//! and decides per [`Op`] whether a failure is retried (with backoff and jitter), or ends
//! the call with which error. The submit rules are the special ones: a submit is retried
//! only when fal cannot have accepted it, because submits have no idempotency key and a
//! duplicate is a second paid job.
//!
//! The follow calls of a request fal holds (status and result inside `wait`) carry a
//! deadline instead of a retry budget: whatever is not fal's own answer (a transport
//! error, a cut body, a gateway 502/503/504 without `x-fal-request-id`) is tried again until
//! the deadline, because giving up would make the engine submit, run and bill it again.

use crate::config::RetryConfig;
use crate::wire::{ErrorBody, truncate};
use bytes::{Bytes, BytesMut};
use mediagen_domain::{AccountId, ModelId};
use mediagen_ports::GenerationError;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode};
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Which call this is; decides what may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Submit,
    Status,
    Result,
    Cancel,
    UploadInitiate,
    UploadPut,
    Download,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Submit => "submit",
            Op::Status => "status",
            Op::Result => "result",
            Op::Cancel => "cancel",
            Op::UploadInitiate => "upload initiate",
            Op::UploadPut => "upload",
            Op::Download => "download",
        })
    }
}

impl Op {
    /// Statuses whose body the caller interprets itself.
    fn accepts(self, status: StatusCode) -> bool {
        status.is_success() || (self == Op::Cancel && matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND))
    }

    /// Calls that carry an account's key (so 401/403 are about the account).
    fn authenticated(self) -> bool {
        matches!(self, Op::Submit | Op::Status | Op::Result | Op::Cancel | Op::UploadInitiate)
    }
}

/// A call's context, for errors and logs.
pub(crate) struct Call<'a> {
    pub op: Op,
    pub account: Option<&'a AccountId>,
    pub model: Option<&'a ModelId>,
    /// Largest body read from a successful answer.
    pub body_limit: u64,
    /// Retry transient failures until this instant, however many (then `Timeout`), instead
    /// of `max_retries` times (then `Retryable`): for following a request fal holds.
    pub until: Option<Instant>,
}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What one attempt led to.
enum Verdict {
    Done(Reply),
    Retry { reason: String, after: Option<Duration> },
    Fail(GenerationError),
}

/// Runs calls with the retry policy.
#[derive(Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub retry: &'a RetryConfig,
}

/// Largest error body read for classification.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

impl Caller<'_> {
    /// Sends the request `build` makes (once per attempt) until it succeeds, fails for
    /// good, or transient failures outlast the retries (then `Retryable`) or `call.until`
    /// (then `Timeout`).
    pub async fn call(self, call: &Call<'_>, build: impl Fn() -> RequestBuilder) -> Result<Reply, GenerationError> {
        let max_retries = if call.op == Op::Status { self.retry.status_max_retries } else { self.retry.max_retries };
        let past_deadline = |reason: &str, attempts: u32| {
            warn!(op = %call.op, attempts, %reason, "fal call failed; the deadline passed");
            GenerationError::Timeout(format!("fal {}: no answer before the deadline ({reason})", call.op))
        };
        let mut retry = 0;
        loop {
            let verdict = match call.until {
                Some(until) => match tokio::time::timeout_at(until, attempt(call, build())).await {
                    Ok(verdict) => verdict,
                    Err(_) => return Err(past_deadline("the last attempt was still running", retry + 1)),
                },
                None => attempt(call, build()).await,
            };
            match verdict {
                Verdict::Done(reply) => return Ok(reply),
                Verdict::Fail(error) => return Err(error),
                Verdict::Retry { reason, after } => {
                    let mut delay = self.retry.delay(retry, after);
                    match call.until {
                        Some(until) => {
                            let now = Instant::now();
                            if now >= until {
                                return Err(past_deadline(&reason, retry + 1));
                            }
                            // One last try at the deadline rather than none.
                            delay = delay.min(until - now);
                        }
                        None if retry >= max_retries => {
                            warn!(op = %call.op, attempts = retry + 1, %reason, "fal call failed; retries exhausted");
                            return Err(GenerationError::Retryable(format!(
                                "fal {}: {reason} (after {} attempts)",
                                call.op,
                                retry + 1
                            )));
                        }
                        None => {}
                    }
                    warn!(op = %call.op, retry = retry + 1, delay_ms = delay.as_millis() as u64, %reason, "fal call failed; retrying");
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
            }
        }
    }
}

async fn attempt(call: &Call<'_>, request: RequestBuilder) -> Verdict {
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return transport_verdict(call.op, &e, Phase::Send),
    };
    let status = response.status();
    let request_id = header(response.headers(), "x-fal-request-id").unwrap_or_default();
    debug!(op = %call.op, status = status.as_u16(), fal_request_id = %request_id, "fal answered");
    if !call.op.accepts(status) {
        return http_verdict(call, response).await;
    }
    if let Some(len) = response.content_length()
        && len > call.body_limit
    {
        return Verdict::Fail(too_large(call.op, len, call.body_limit));
    }
    let headers = response.headers().clone();
    match read_capped(response, call.body_limit).await {
        Ok(body) => Verdict::Done(Reply { status, headers, body }),
        Err(BodyError::TooLarge(seen)) => Verdict::Fail(too_large(call.op, seen, call.body_limit)),
        Err(BodyError::Transport(e)) => transport_verdict(call.op, &e, Phase::Body),
        Err(BodyError::Short { got, declared }) => cut_verdict(call.op, got, declared),
    }
}

/// A body that ended before its `Content-Length`: the answer was lost on the way, like a
/// transport error while reading it.
fn cut_verdict(op: Op, got: u64, declared: u64) -> Verdict {
    let reason = format!("the answer was cut after {got} of {declared} bytes");
    match op {
        Op::Submit => Verdict::Fail(GenerationError::SubmitOutcomeUnknown(format!(
            "fal accepted the submit but its answer was lost ({reason})"
        ))),
        _ => Verdict::Retry { reason, after: None },
    }
}

/// Where a transport error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connecting, sending, or waiting for the status line.
    Send,
    /// Reading a successful answer's body.
    Body,
}

fn transport_verdict(op: Op, error: &reqwest::Error, phase: Phase) -> Verdict {
    // URLs can hold signed upload tokens or a user's file path: keep them out of errors.
    let text = describe(error);
    if error.is_builder() {
        return Verdict::Fail(GenerationError::Other(anyhow::anyhow!("fal {op}: could not build the request: {text}")));
    }
    // A connect error means nothing reached fal: safe to retry, even a submit.
    if phase == Phase::Send && error.is_connect() {
        return Verdict::Retry { reason: format!("could not connect: {text}"), after: None };
    }
    match op {
        // The request may have been received and queued; its answer was lost. Retrying
        // could start a second paid job, so the caller must decide (e.g. look at fal's
        // request history) instead.
        Op::Submit => Verdict::Fail(GenerationError::SubmitOutcomeUnknown(format!(
            "the request was sent but its answer was lost ({})",
            if error.is_timeout() { "timed out".to_owned() } else { text }
        ))),
        Op::Download if error.is_timeout() => {
            Verdict::Fail(GenerationError::Timeout("the download took longer than allowed".into()))
        }
        _ => Verdict::Retry {
            reason: if error.is_timeout() { "timed out".to_owned() } else { format!("connection failed: {text}") },
            after: None,
        },
    }
}

/// A reqwest error as text, without its URL, with its causes.
fn describe(error: &reqwest::Error) -> String {
    let mut parts = vec![];
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    let head = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect error"
    } else if error.is_body() || error.is_decode() {
        "body error"
    } else {
        "request error"
    };
    let text = if parts.is_empty() { head.to_owned() } else { format!("{head}: {}", parts.join(": ")) };
    truncate(&text, 300)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn too_large(op: Op, actual: u64, limit: u64) -> GenerationError {
    match op {
        Op::Download => GenerationError::TooLarge { actual, limit },
        _ => GenerationError::Other(anyhow::anyhow!("fal's {op} answer is larger than {limit} bytes")),
    }
}

async fn http_verdict(call: &Call<'_>, response: Response) -> Verdict {
    let status = response.status();
    let headers = response.headers().clone();
    let (body, whole) = read_truncated(response, ERROR_BODY_LIMIT).await;
    let error = ErrorBody::parse(&body);
    let error_type = error.error_type.clone().or_else(|| header(&headers, "x-fal-error-type"));
    let mut reason = format!("HTTP {}", status.as_u16());
    if let Some(t) = &error_type {
        reason.push_str(&format!(" ({t})"));
    }
    let op = call.op;
    // fal's own answers carry its request id or an error type; a gateway that could not
    // reach the queue (nginx's HTML 502/503/504) carries neither.
    let from_fal = header(&headers, "x-fal-request-id").is_some() || error_type.is_some();
    // The rest of this answer is lost; what it said cannot be classified from a part of it
    // (a 401 needs no body, and a submit is judged by its status line alone).
    if !whole && op != Op::Submit && status != StatusCode::UNAUTHORIZED {
        return Verdict::Retry { reason: format!("{reason}, answer cut"), after: None };
    }
    let user_timeout = header(&headers, "x-fal-request-timeout-type").is_some_and(|t| t.eq_ignore_ascii_case("user"));
    let retry = |after: Option<Duration>| Verdict::Retry { reason: reason.clone(), after };
    let fail = Verdict::Fail;
    let retry_after =
        header(&headers, "retry-after").and_then(|s| s.trim().parse::<u64>().ok()).map(Duration::from_secs);
    let account = call.account.cloned().unwrap_or_else(|| AccountId::new("?"));
    let model = call.model.map_or_else(String::new, ToString::to_string);
    match status.as_u16() {
        408 | 429 => retry(retry_after),
        // fal's start deadline fired: its own verdict, never retried.
        504 if user_timeout => fail(GenerationError::Timeout(format!("fal's start deadline passed ({reason})"))),
        // A 5xx result from fal itself is the run's own outcome (runner_server_error,
        // runner_disconnected); fetching it again gives the same answer. fal does not
        // charge it, so the engine may run it again.
        500..=599 if op == Op::Result && from_fal => {
            fail(GenerationError::Retryable(format!("the run failed: {reason}")))
        }
        // The gateway did not reach the queue: fal's answer is still to be fetched.
        500..=599 if op == Op::Result => retry(retry_after),
        // For a submit, fal refused or never saw the request, so a retry cannot double it.
        502 | 503 => retry(retry_after),
        // A gateway timeout on submit: the queue may have accepted the request.
        504 if op == Op::Submit => fail(GenerationError::SubmitOutcomeUnknown(reason)),
        504 => retry(retry_after),
        // A 500 on submit may come after the queue took the request.
        500..=599 if op == Op::Submit => fail(GenerationError::SubmitOutcomeUnknown(reason)),
        500..=599 => retry(retry_after),
        401 if op.authenticated() => fail(GenerationError::BadKey(account)),
        403 if op.authenticated() && error.first_message().to_ascii_lowercase().contains("locked") => {
            let message = error.first_message();
            let reason = message
                .split_once("Reason:")
                .map_or(message.as_str(), |(_, r)| r)
                .trim()
                .trim_end_matches('.')
                .to_owned();
            fail(GenerationError::AccountLocked { account, reason })
        }
        404 if op == Op::Submit => fail(GenerationError::UnknownModel(model)),
        404 if matches!(op, Op::Status | Op::Result) && error.first_message().contains("Application") => {
            fail(GenerationError::UnknownModel(model))
        }
        422 if error.is_content_policy() => fail(GenerationError::ContentPolicy),
        400 | 422 => fail(GenerationError::InvalidInput(non_empty(error.summary(), &reason))),
        _ => fail(GenerationError::Other(anyhow::anyhow!("fal {op}: {reason}: {}", error.summary()))),
    }
}

fn non_empty(text: String, fallback: &str) -> String {
    if text.is_empty() { fallback.to_owned() } else { text }
}

enum BodyError {
    TooLarge(u64),
    Transport(reqwest::Error),
    /// The body ended before its `Content-Length`.
    Short {
        got: u64,
        declared: u64,
    },
}

/// Reads the whole body, failing as soon as it passes `limit` bytes, and when it ends
/// short of its `Content-Length` (should the HTTP stack not flag that itself).
async fn read_capped(mut response: Response, limit: u64) -> Result<Bytes, BodyError> {
    let declared = response.content_length();
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        let seen = body.len() as u64 + chunk.len() as u64;
        if seen > limit {
            return Err(BodyError::TooLarge(seen));
        }
        body.extend_from_slice(&chunk);
    }
    match declared {
        Some(declared) if (body.len() as u64) < declared => Err(BodyError::Short { got: body.len() as u64, declared }),
        _ => Ok(body.freeze()),
    }
}

/// Reads up to `limit` bytes of an error body; the flag is false when the body broke off
/// (a read error, or fewer bytes than its `Content-Length`) before `limit`.
async fn read_truncated(mut response: Response, limit: usize) -> (Bytes, bool) {
    let declared = response.content_length();
    let mut body = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]);
                if body.len() >= limit {
                    return (body.freeze(), true);
                }
            }
            Ok(None) => {
                let whole = declared.is_none_or(|d| body.len() as u64 >= d);
                return (body.freeze(), whole);
            }
            Err(_) => return (body.freeze(), false),
        }
    }
}
