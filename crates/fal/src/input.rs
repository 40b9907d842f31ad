//! From a [`GenerationRequest`] to the model's input JSON (reference §4), and the checks
//! made before anything is sent.

use mediagen_domain::{ImageSize, ModelId, ModelKind};
use mediagen_ports::{GenerationError, GenerationRequest};
use serde_json::{Map, Value, json};

/// How a model family takes its output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// FLUX and most fal image models: `image_size`, a preset name or `{width, height}`.
    ImageSize,
    /// nano-banana (Gemini): `aspect_ratio` from a fixed list.
    NanoBanana,
    /// FLUX 1.1 pro ultra: `aspect_ratio` from its own list.
    FluxUltra,
}

const NANO_BANANA_RATIOS: [&str; 10] = ["21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"];
const FLUX_ULTRA_RATIOS: [&str; 9] = ["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"];

fn family(model: &ModelId) -> Family {
    let id = model.as_str();
    if id.contains("nano-banana") {
        Family::NanoBanana
    } else if id.contains("/v1.1-ultra") {
        Family::FluxUltra
    } else {
        Family::ImageSize
    }
}

/// The allowed ratio closest to the size's (compared on a log scale, so 2:1 is as far
/// from 1:1 as 1:2 is).
fn nearest_ratio(size: ImageSize, allowed: &[&'static str]) -> &'static str {
    let exact = size.aspect_ratio();
    if let Some(r) = allowed.iter().find(|r| **r == exact) {
        return r;
    }
    let target = (f64::from(size.width.max(1)) / f64::from(size.height.max(1))).ln();
    let value = |r: &str| {
        let (w, h) = r.split_once(':').unwrap_or(("1", "1"));
        (w.parse::<f64>().unwrap_or(1.0) / h.parse::<f64>().unwrap_or(1.0)).ln()
    };
    allowed
        .iter()
        .copied()
        .min_by(|a, b| (value(a) - target).abs().total_cmp(&(value(b) - target).abs()))
        .unwrap_or("1:1")
}

/// The input JSON for `request`.
///
/// # Errors
/// `InvalidInput` for an edit without input images.
pub(crate) fn model_input(request: &GenerationRequest, output_format: &str) -> Result<Value, GenerationError> {
    let mut input = Map::new();
    match request.kind {
        ModelKind::TextToImage | ModelKind::ImageEdit => {
            input.insert("prompt".into(), json!(request.prompt));
            input.insert("num_images".into(), json!(request.num_images.max(1)));
            if let Some(seed) = request.seed {
                input.insert("seed".into(), json!(seed));
            }
            input.insert("output_format".into(), json!(output_format));
            if let Some(size) = request.size {
                let (key, value) = match family(&request.model) {
                    Family::ImageSize => (
                        "image_size",
                        size.preset_name()
                            .map_or_else(|| json!({"width": size.width, "height": size.height}), |p| json!(p)),
                    ),
                    Family::NanoBanana => ("aspect_ratio", json!(nearest_ratio(size, &NANO_BANANA_RATIOS))),
                    Family::FluxUltra => ("aspect_ratio", json!(nearest_ratio(size, &FLUX_ULTRA_RATIOS))),
                };
                input.insert(key.into(), value);
            }
            if request.kind == ModelKind::ImageEdit {
                if request.input_image_urls.is_empty() {
                    return Err(GenerationError::InvalidInput("an edit needs at least one input image".into()));
                }
                input.insert("image_urls".into(), json!(request.input_image_urls));
            }
        }
        ModelKind::Llm => {
            input.insert("prompt".into(), json!(request.prompt));
            if let Some(llm) = &request.llm {
                input.insert("model".into(), json!(llm.model));
                if !llm.system_prompt.is_empty() {
                    input.insert("system_prompt".into(), json!(llm.system_prompt));
                }
                input.insert("max_tokens".into(), json!(llm.max_tokens));
            }
        }
        ModelKind::TextToSpeech => {
            input.insert("text".into(), json!(request.prompt));
        }
        ModelKind::Audio => {
            input.insert("prompt".into(), json!(request.prompt));
        }
    }
    Ok(Value::Object(input))
}

/// True for URLs that carry a Telegram bot token: file downloads
/// (`api.telegram.org/file/bot<token>/…`, also from a self-hosted Bot API server) and any
/// other Bot API URL. Passing one to fal would leak the token into fal's request history.
pub(crate) fn carries_telegram_token(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.contains("api.telegram.org") {
        return true;
    }
    // `/bot<digits>:` or `/bot<digits>%3a` anywhere (the token is `<bot id>:<secret>`).
    lower.match_indices("/bot").any(|(i, _)| {
        let rest = &lower[i + 4..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && (rest[digits..].starts_with(':') || rest[digits..].starts_with("%3a"))
    })
}

/// The path segments of a well-formed endpoint id (`owner/app[/path…]`), or `None`.
pub(crate) fn model_segments(model: &ModelId) -> Option<Vec<&str>> {
    let segments: Vec<&str> = model.as_str().split('/').collect();
    let ok = segments.len() >= 2
        && segments.iter().all(|s| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    ok.then_some(segments)
}

/// `owner/app` (plus the namespace for `workflows/` and `comfy/` ids): the part of the id
/// that status, result and cancel URLs keep.
pub(crate) fn app_prefix(segments: &[&str]) -> String {
    let n = if matches!(segments[0], "workflows" | "comfy") { 3 } else { 2 };
    segments[..n.min(segments.len())].join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagen_ports::LlmParams;

    fn request(model: &str, kind: ModelKind) -> GenerationRequest {
        GenerationRequest {
            model: ModelId::new(model),
            kind,
            prompt: "a red fox".into(),
            size: None,
            num_images: 1,
            seed: None,
            input_image_urls: vec![],
            llm: None,
        }
    }

    #[test]
    fn flux_uses_presets_or_pixels() {
        let mut r = request("fal-ai/flux-pro/v1.1", ModelKind::TextToImage);
        r.size = Some(ImageSize::new(1024, 768));
        r.seed = Some(u64::MAX);
        r.num_images = 2;
        let v = model_input(&r, "png").unwrap();
        assert_eq!(
            v,
            json!({"prompt": "a red fox", "image_size": "landscape_4_3", "num_images": 2, "seed": u64::MAX, "output_format": "png"})
        );
        r.size = Some(ImageSize::new(1000, 700));
        let v = model_input(&r, "jpeg").unwrap();
        assert_eq!(v["image_size"], json!({"width": 1000, "height": 700}));
        r.size = None;
        assert!(model_input(&r, "jpeg").unwrap().get("image_size").is_none());
    }

    #[test]
    fn nano_banana_uses_the_nearest_ratio_and_image_urls() {
        let mut r = request("fal-ai/nano-banana/edit", ModelKind::ImageEdit);
        assert!(matches!(model_input(&r, "jpeg"), Err(GenerationError::InvalidInput(_))));
        r.input_image_urls = vec!["https://v3.fal.media/files/x.png".into()];
        r.size = Some(ImageSize::new(1024, 576));
        let v = model_input(&r, "jpeg").unwrap();
        assert_eq!(v["aspect_ratio"], "16:9");
        assert_eq!(v["image_urls"], json!(["https://v3.fal.media/files/x.png"]));
        assert!(v.get("image_size").is_none());
        r.size = Some(ImageSize::new(1000, 1010));
        assert_eq!(model_input(&r, "jpeg").unwrap()["aspect_ratio"], "1:1");
        r.size = Some(ImageSize::new(576, 1024));
        assert_eq!(model_input(&r, "jpeg").unwrap()["aspect_ratio"], "9:16");
        r.size = Some(ImageSize::new(3000, 1000));
        assert_eq!(model_input(&r, "jpeg").unwrap()["aspect_ratio"], "21:9");
        r.size = Some(ImageSize::new(1000, 3000));
        assert_eq!(model_input(&r, "jpeg").unwrap()["aspect_ratio"], "9:16");
    }

    #[test]
    fn flux_ultra_takes_a_ratio() {
        let mut r = request("fal-ai/flux-pro/v1.1-ultra", ModelKind::TextToImage);
        r.size = Some(ImageSize::new(1000, 3000));
        assert_eq!(model_input(&r, "jpeg").unwrap()["aspect_ratio"], "9:21");
    }

    #[test]
    fn llm_and_tts() {
        let mut r = request("openrouter/router", ModelKind::Llm);
        r.llm = Some(LlmParams {
            model: "google/gemini-2.5-flash".into(),
            system_prompt: "improve".into(),
            max_tokens: 200,
        });
        assert_eq!(
            model_input(&r, "jpeg").unwrap(),
            json!({"prompt": "a red fox", "model": "google/gemini-2.5-flash", "system_prompt": "improve", "max_tokens": 200})
        );
        let r = request("fal-ai/elevenlabs/tts/multilingual-v2", ModelKind::TextToSpeech);
        assert_eq!(model_input(&r, "jpeg").unwrap(), json!({"text": "a red fox"}));
    }

    #[test]
    fn spots_telegram_urls() {
        for url in [
            "https://api.telegram.org/file/bot123456:ABC-def/photos/file_1.jpg",
            "HTTPS://API.TELEGRAM.ORG/file/bot1:x/a.jpg",
            "http://my-bot-api:8081/file/bot123456:ABC/photos/a.jpg",
            "https://proxy.example/file/bot123%3AABC/a.jpg",
        ] {
            assert!(carries_telegram_token(url), "{url}");
        }
        for url in
            ["https://v3.fal.media/files/robot/x.png", "https://example.com/bot/a.jpg", "https://example.com/bots:1"]
        {
            assert!(!carries_telegram_token(url), "{url}");
        }
    }

    #[test]
    fn model_ids() {
        let id = ModelId::new("fal-ai/flux-pro/v1.1");
        assert_eq!(app_prefix(&model_segments(&id).unwrap()), "fal-ai/flux-pro");
        let id = ModelId::new("workflows/me/my-flow/run");
        assert_eq!(app_prefix(&model_segments(&id).unwrap()), "workflows/me/my-flow");
        for bad in ["flux", "fal-ai//x", "fal-ai/../x", "fal-ai/x?y=1", "a/b c"] {
            assert!(model_segments(&ModelId::new(bad)).is_none(), "{bad}");
        }
    }
}
