//! fal's JSON, parsed leniently: only what we use is read, unknown fields are ignored, and
//! optional-looking fields are optional.

use mediagen_ports::{CancelOutcome, GenerationError, GenerationOutput, OutputMedia, RemoteStatus, TokenUsage};
use serde::Deserialize;
use serde_json::Value;

/// The answer to a submit. Only `request_id` is required.
#[derive(Debug, Deserialize)]
pub(crate) struct SubmitResponse {
    pub request_id: String,
    #[serde(default)]
    pub status_url: Option<String>,
    #[serde(default)]
    pub response_url: Option<String>,
    #[serde(default)]
    pub cancel_url: Option<String>,
}

/// The answer to a status check.
#[derive(Debug, Deserialize)]
pub(crate) struct StatusResponse {
    pub status: String,
    #[serde(default)]
    pub queue_position: Option<Value>,
}

impl StatusResponse {
    /// Unknown status strings read as "still running": the reference says to keep polling.
    pub fn to_status(&self) -> RemoteStatus {
        match self.status.as_str() {
            "IN_QUEUE" => RemoteStatus::InQueue {
                position: self
                    .queue_position
                    .as_ref()
                    .and_then(Value::as_u64)
                    .map(|p| u32::try_from(p).unwrap_or(u32::MAX)),
            },
            "COMPLETED" => RemoteStatus::Completed,
            _ => RemoteStatus::InProgress,
        }
    }
}

/// The answer to a storage upload initiation.
#[derive(Debug, Deserialize)]
pub(crate) struct UploadInitiateResponse {
    pub upload_url: String,
    pub file_url: String,
}

/// The body of a cancel answer, whatever its HTTP status.
#[derive(Debug, Deserialize)]
pub(crate) struct CancelResponse {
    #[serde(default)]
    pub status: Option<String>,
}

impl CancelResponse {
    pub fn outcome(&self) -> Option<CancelOutcome> {
        match self.status.as_deref()? {
            "CANCELLATION_REQUESTED" | "OK" => Some(CancelOutcome::Requested),
            "ALREADY_COMPLETED" => Some(CancelOutcome::AlreadyCompleted),
            "NOT_FOUND" => Some(CancelOutcome::NotFound),
            _ => None,
        }
    }
}

/// One entry of a FastAPI-style `detail` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Detail {
    pub loc: Vec<String>,
    pub msg: String,
    pub kind: String,
}

/// A fal error body: `{"detail": [..] | "text", "error_type": ".."}`. The `input` echo of a
/// validation error is deliberately never read, so it cannot reach a log or an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub details: Vec<Detail>,
    pub error_type: Option<String>,
}

/// Longest fal message we carry in an error.
const MAX_MESSAGE: usize = 300;

impl ErrorBody {
    pub fn parse(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Self::default();
        };
        let error_type = value.get("error_type").and_then(Value::as_str).map(str::to_owned);
        let details = match value.get("detail") {
            Some(Value::String(text)) => {
                vec![Detail { loc: vec!["body".into()], msg: text.clone(), kind: String::new() }]
            }
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| Detail {
                    loc: item
                        .get("loc")
                        .and_then(Value::as_array)
                        .map(|l| l.iter().map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned)).collect())
                        .unwrap_or_default(),
                    msg: item.get("msg").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    kind: item.get("type").and_then(Value::as_str).unwrap_or_default().to_owned(),
                })
                .collect(),
            _ => Vec::new(),
        };
        Self { details, error_type }
    }

    pub fn is_content_policy(&self) -> bool {
        self.details.iter().any(|d| d.kind == "content_policy_violation")
    }

    /// The messages joined, each with the field it is about, shortened.
    pub fn summary(&self) -> String {
        let text = self
            .details
            .iter()
            .map(|d| {
                let field: Vec<&str> = d.loc.iter().map(String::as_str).filter(|p| *p != "body").collect();
                if field.is_empty() { d.msg.clone() } else { format!("{}: {}", field.join("."), d.msg) }
            })
            .collect::<Vec<_>>()
            .join("; ");
        truncate(&text, MAX_MESSAGE)
    }

    /// The first message as it came.
    pub fn first_message(&self) -> String {
        truncate(self.details.first().map(|d| d.msg.as_str()).unwrap_or_default(), MAX_MESSAGE)
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A file object in an output (`images[]`, `image`, `audio`).
#[derive(Debug, Deserialize)]
struct RawFile {
    url: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    width: Option<Value>,
    #[serde(default)]
    height: Option<Value>,
    #[serde(default)]
    file_size: Option<Value>,
}

impl From<RawFile> for OutputMedia {
    fn from(f: RawFile) -> Self {
        let int = |v: Option<Value>| v.as_ref().and_then(Value::as_u64);
        OutputMedia {
            url: f.url,
            content_type: f.content_type,
            width: int(f.width).and_then(|w| u32::try_from(w).ok()),
            height: int(f.height).and_then(|h| u32::try_from(h).ok()),
            file_size: int(f.file_size),
        }
    }
}

/// A file given as an object or as a bare URL string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawFileOrUrl {
    File(RawFile),
    Url(String),
}

impl From<RawFileOrUrl> for OutputMedia {
    fn from(f: RawFileOrUrl) -> Self {
        match f {
            RawFileOrUrl::File(f) => f.into(),
            RawFileOrUrl::Url(url) => {
                OutputMedia { url, content_type: None, width: None, height: None, file_size: None }
            }
        }
    }
}

/// Every output shape the bot's models produce, in one lenient struct: the result of a
/// request is classified without knowing the model's kind (a handle does not carry it).
#[derive(Debug, Default, Deserialize)]
struct RawOutput {
    #[serde(default)]
    images: Option<Vec<RawFileOrUrl>>,
    #[serde(default)]
    image: Option<RawFileOrUrl>,
    #[serde(default)]
    audio: Option<RawFileOrUrl>,
    #[serde(default)]
    audio_file: Option<RawFileOrUrl>,
    #[serde(default)]
    seed: Option<Value>,
    #[serde(default)]
    has_nsfw_concepts: Option<Value>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    usage: Option<Value>,
}

/// Turns a successful result body into the port's output, or the error it really is
/// (flagged output, an LLM error).
pub(crate) fn parse_output(body: &[u8]) -> Result<GenerationOutput, GenerationError> {
    // fal answered with success, so it ran and billed the request: an unreadable answer
    // must not read as a failure that may be submitted again.
    let raw: RawOutput = serde_json::from_slice(body).map_err(|e| GenerationError::UnreadableResult(e.to_string()))?;
    if flagged(raw.has_nsfw_concepts.as_ref()) {
        return Err(GenerationError::ContentPolicy);
    }
    if let Some(error) = raw.error.as_ref().and_then(error_text) {
        return Err(GenerationError::Other(anyhow::anyhow!(
            "the model reported an error: {}",
            truncate(&error, MAX_MESSAGE)
        )));
    }
    let mut media: Vec<OutputMedia> = raw.images.unwrap_or_default().into_iter().map(Into::into).collect();
    media.extend(raw.image.into_iter().chain(raw.audio).chain(raw.audio_file).map(Into::into));
    let text = raw.output.or(raw.description.filter(|d| !d.trim().is_empty()));
    Ok(GenerationOutput {
        media,
        text,
        seed: raw.seed.as_ref().and_then(seed),
        usage: raw.usage.as_ref().and_then(usage),
    })
}

/// `has_nsfw_concepts: [false, true]` (or a lone `true`) flags the output.
fn flagged(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_bool() == Some(true)),
        _ => false,
    }
}

/// A non-empty `error`, string or object.
fn error_text(value: &Value) -> Option<String> {
    match value {
        Value::Null | Value::Bool(false) => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Object(o) if o.is_empty() => None,
        other => Some(other.to_string()),
    }
}

/// Seeds can exceed `i64`; some models send them as strings.
fn seed(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `usage.input_tokens` / `output_tokens`, or OpenAI's `prompt_tokens` / `completion_tokens`.
fn usage(value: &Value) -> Option<TokenUsage> {
    let get = |a: &str, b: &str| value.get(a).or_else(|| value.get(b)).and_then(Value::as_u64);
    let input = get("input_tokens", "prompt_tokens");
    let output = get("output_tokens", "completion_tokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(TokenUsage { input_tokens: input.unwrap_or(0), output_tokens: output.unwrap_or(0) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn out(v: Value) -> Result<GenerationOutput, GenerationError> {
        parse_output(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn flux_output_with_big_seed_and_extra_fields() {
        let o = out(json!({
            "images": [{"url": "https://v3.fal.media/a.jpg", "width": 1024, "height": 768, "content_type": "image/jpeg", "extra": 1}],
            "seed": 15860307465884635512u64, "has_nsfw_concepts": [false], "timings": {"inference": 1.2}, "prompt": "p"
        }))
        .unwrap();
        assert_eq!(o.seed, Some(15_860_307_465_884_635_512));
        assert_eq!(o.media.len(), 1);
        assert_eq!(o.media[0].width, Some(1024));
        assert_eq!(o.media[0].content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(o.text, None);
    }

    #[test]
    fn nano_banana_without_sizes_and_with_description() {
        let o = out(json!({"images": [{"url": "u"}], "description": "a cat"})).unwrap();
        assert_eq!(o.media[0].width, None);
        assert_eq!(o.text.as_deref(), Some("a cat"));
        let o = out(json!({"images": [{"url": "u"}], "description": ""})).unwrap();
        assert_eq!(o.text, None);
    }

    #[test]
    fn nsfw_flag_is_content_policy() {
        assert!(matches!(
            out(json!({"images": [{"url": "u"}, {"url": "v"}], "has_nsfw_concepts": [false, true]})),
            Err(GenerationError::ContentPolicy)
        ));
    }

    #[test]
    fn llm_output_usage_and_error() {
        let o = out(json!({"output": "better prompt", "usage": {"input_tokens": 12, "output_tokens": 30, "ttft_ms": 5}, "partial": false}))
            .unwrap();
        assert_eq!(o.text.as_deref(), Some("better prompt"));
        assert_eq!(o.usage, Some(TokenUsage { input_tokens: 12, output_tokens: 30 }));
        assert!(out(json!({"output": "", "error": ""})).is_ok());
        assert!(out(json!({"output": "x", "error": null})).is_ok());
        let e = out(json!({"output": "", "error": "provider overloaded"})).unwrap_err();
        assert!(e.to_string().contains("provider overloaded"), "{e}");
    }

    #[test]
    fn tts_audio() {
        let o = out(
            json!({"audio": {"url": "https://v3.fal.media/a.mp3", "content_type": "audio/mpeg", "file_size": 1234}}),
        )
        .unwrap();
        assert_eq!(o.media.len(), 1);
        assert_eq!(o.media[0].file_size, Some(1234));
        let o = out(json!({"audio": "https://v3.fal.media/a.mp3"})).unwrap();
        assert_eq!(o.media[0].url, "https://v3.fal.media/a.mp3");
    }

    #[test]
    fn malformed_result_is_unreadable() {
        assert!(matches!(parse_output(b"not json"), Err(GenerationError::UnreadableResult(_))));
        assert!(matches!(out(json!({"images": "nope"})), Err(GenerationError::UnreadableResult(_))));
    }

    #[test]
    fn error_bodies() {
        let b = ErrorBody::parse(
            br#"{"detail":[{"loc":["body","prompt"],"msg":"flagged","type":"content_policy_violation","input":"SECRET PROMPT"}]}"#,
        );
        assert!(b.is_content_policy());
        assert_eq!(b.summary(), "prompt: flagged");
        let b = ErrorBody::parse(
            br#"{"detail":[{"loc":["body","num_images"],"msg":"too many","type":"less_than_equal","input":99}]}"#,
        );
        assert!(!b.is_content_policy());
        assert!(!b.summary().contains("99"));
        let b = ErrorBody::parse(br#"{"detail":"User is locked. Reason: Exhausted balance.","error_type":"x"}"#);
        assert_eq!(b.first_message(), "User is locked. Reason: Exhausted balance.");
        assert_eq!(b.error_type.as_deref(), Some("x"));
        assert_eq!(ErrorBody::parse(b"<html>"), ErrorBody::default());
    }

    #[test]
    fn statuses() {
        let s: StatusResponse =
            serde_json::from_value(json!({"status": "IN_QUEUE", "queue_position": 3, "x": 1})).unwrap();
        assert_eq!(s.to_status(), RemoteStatus::InQueue { position: Some(3) });
        let s: StatusResponse = serde_json::from_value(json!({"status": "SOMETHING_NEW"})).unwrap();
        assert_eq!(s.to_status(), RemoteStatus::InProgress);
        let s: StatusResponse = serde_json::from_value(json!({"status": "COMPLETED", "metrics": {}})).unwrap();
        assert_eq!(s.to_status(), RemoteStatus::Completed);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
