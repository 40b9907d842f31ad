//! Per-kind input validation, output JSON, generated files and billable units.

use crate::config::{ModelKind, Price};
use crate::media;
use crate::money::Usd;
use rand::Rng;
use serde_json::{Value, json};

/// The extra field every output carries, so clients prove they ignore unknown fields.
pub(crate) const EXTRA_FIELD: &str = "_sim_extra";

/// Checks the input the way fal's FastAPI layer does; `Err` is the 422 body.
pub(crate) fn validate(kind: ModelKind, input: &Value) -> Result<(), Value> {
    let Some(obj) = input.as_object() else {
        return Err(detail(vec![issue(
            json!(["body"]),
            "Input should be a valid dictionary",
            "dict_type",
            input.clone(),
        )]));
    };
    let mut issues = Vec::new();
    let mut require_string = |field: &str| match obj.get(field) {
        None | Some(Value::Null) => {
            issues.push(issue(json!(["body", field]), "Field required", "missing", input.clone()));
        }
        Some(Value::String(_)) => {}
        Some(other) => {
            issues.push(issue(json!(["body", field]), "Input should be a valid string", "string_type", other.clone()));
        }
    };
    match kind {
        ModelKind::Flux | ModelKind::NanoBanana | ModelKind::NanoBananaEdit | ModelKind::Llm => {
            require_string("prompt")
        }
        ModelKind::Openrouter => {
            require_string("prompt");
            require_string("model");
        }
        ModelKind::Tts => require_string("text"),
    }
    if kind == ModelKind::NanoBananaEdit {
        match obj.get("image_urls") {
            None | Some(Value::Null) => {
                issues.push(issue(json!(["body", "image_urls"]), "Field required", "missing", input.clone()))
            }
            Some(Value::Array(items)) if items.is_empty() => issues.push(issue(
                json!(["body", "image_urls"]),
                "List should have at least 1 item after validation, not 0",
                "too_short",
                json!([]),
            )),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_string() {
                        issues.push(issue(
                            json!(["body", "image_urls", i]),
                            "Input should be a valid string",
                            "string_type",
                            item.clone(),
                        ));
                    }
                }
            }
            Some(other) => issues.push(issue(
                json!(["body", "image_urls"]),
                "Input should be a valid list",
                "list_type",
                other.clone(),
            )),
        }
    }
    if matches!(kind, ModelKind::Flux | ModelKind::NanoBanana | ModelKind::NanoBananaEdit)
        && let Some(n) = obj.get("num_images")
    {
        match n.as_i64() {
            Some(v) if (1..=4).contains(&v) => {}
            Some(v) if v < 1 => issues.push(issue(
                json!(["body", "num_images"]),
                "Input should be greater than or equal to 1",
                "greater_than_equal",
                n.clone(),
            )),
            Some(_) => issues.push(issue(
                json!(["body", "num_images"]),
                "Input should be less than or equal to 4",
                "less_than_equal",
                n.clone(),
            )),
            None => issues.push(issue(
                json!(["body", "num_images"]),
                "Input should be a valid integer",
                "int_type",
                n.clone(),
            )),
        }
    }
    if issues.is_empty() { Ok(()) } else { Err(detail(issues)) }
}

/// The 422 body of an unparsable submit body.
pub(crate) fn json_invalid(error: &str) -> Value {
    detail(vec![issue(json!(["body", 0]), &format!("JSON decode error: {error}"), "json_invalid", json!({}))])
}

fn issue(loc: Value, msg: &str, kind: &str, input: Value) -> Value {
    json!({"loc": loc, "msg": msg, "type": kind, "input": input})
}

fn detail(issues: Vec<Value>) -> Value {
    json!({ "detail": issues })
}

/// The 422 content-policy body (reference §3).
pub(crate) fn content_policy_violation(input: &Value) -> Value {
    let echo = input.get("prompt").or_else(|| input.get("text")).cloned().unwrap_or(Value::Null);
    json!({"detail": [{
        "loc": ["body", "prompt"],
        "msg": "The content could not be processed because it contained material flagged by a content checker.",
        "type": "content_policy_violation",
        "url": "https://docs.fal.ai/errors#content_policy_violation",
        "input": echo,
    }]})
}

/// The 422 body of an input image the model could not download.
pub(crate) fn file_download_error(index: usize, url: &str) -> Value {
    json!({"detail": [{
        "loc": ["body", "image_urls", index],
        "msg": "Could not load image from url",
        "type": "file_download_error",
        "url": "https://docs.fal.ai/errors#file_download_error",
        "input": url,
    }]})
}

/// What a job is billed for.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Bill {
    /// Requested (width, height) of each image.
    pub images: Vec<(u32, u32)>,
    /// Characters of input text (TTS).
    pub chars: u64,
    /// Input tokens (LLM).
    pub input_tokens: u64,
    /// Output tokens (LLM).
    pub output_tokens: u64,
    /// The model an `openrouter/router` request chose.
    pub chosen_model: Option<String>,
}

/// The billable units of a job, from its input alone.
pub(crate) fn bill(kind: ModelKind, input: &Value) -> Bill {
    match kind {
        ModelKind::Flux => {
            let (w, h) = flux_size(input);
            Bill { images: vec![(w, h); num_images(input)], ..Bill::default() }
        }
        ModelKind::NanoBanana | ModelKind::NanoBananaEdit => {
            Bill { images: vec![(1024, 1024); num_images(input)], ..Bill::default() }
        }
        ModelKind::Llm | ModelKind::Openrouter => {
            let prompt = str_field(input, "prompt");
            let system = str_field(input, "system_prompt");
            Bill {
                input_tokens: tokens(prompt) + tokens(system) + 4,
                output_tokens: tokens(&enhance(prompt)),
                chosen_model: input.get("model").and_then(Value::as_str).map(str::to_owned),
                ..Bill::default()
            }
        }
        ModelKind::Tts => Bill { chars: str_field(input, "text").chars().count() as u64, ..Bill::default() },
    }
}

/// The price of a bill.
pub(crate) fn price(price: &Price, bill: &Bill) -> Usd {
    const MP: u64 = 1024 * 1024;
    let per_1000_tokens = |input: Usd, output: Usd| {
        input.mul_ratio(bill.input_tokens, 1000).saturating_add(output.mul_ratio(bill.output_tokens, 1000))
    };
    match *price {
        Price::PerTokenOfChosenModel => {
            let rate =
                crate::config::OPENROUTER_RATES.iter().find(|(model, ..)| Some(*model) == bill.chosen_model.as_deref());
            match (rate, crate::config::LLM_DEFAULT_PRICE) {
                (Some(&(_, input, output)), _) => per_1000_tokens(Usd::from_micros(input), Usd::from_micros(output)),
                (None, Price::Per1000Tokens { input, output }) => per_1000_tokens(input, output),
                (None, _) => Usd::ZERO,
            }
        }
        Price::PerImage(each) => each.mul_ratio(bill.images.len() as u64, 1),
        Price::PerMegapixel(per_mp) => {
            let mps: u64 = bill.images.iter().map(|&(w, h)| (u64::from(w) * u64::from(h)).div_ceil(MP).max(1)).sum();
            per_mp.mul_ratio(mps, 1)
        }
        Price::Per1000Chars(per_k) => per_k.mul_ratio(bill.chars, 1000),
        Price::Per1000Tokens { input, output } => per_1000_tokens(input, output),
        Price::PerRequest(each) => each,
    }
}

/// Everything generation needs besides a place to store files.
pub(crate) struct GenContext<'a> {
    pub kind: ModelKind,
    pub input: &'a Value,
    pub service_secs: f64,
    pub nsfw: bool,
    pub image_px: u32,
}

/// A file to publish on the CDN; the store callback returns its public URL.
pub(crate) type Store<'a> = dyn FnMut(&str, &'static str, Vec<u8>) -> String + 'a;

/// Generates the output JSON of a successful job, publishing its files through `store`.
pub(crate) fn generate(ctx: &GenContext<'_>, rng: &mut impl Rng, store: &mut Store<'_>) -> Value {
    let input = ctx.input;
    let mut out = match ctx.kind {
        ModelKind::Flux => {
            let (w, h) = flux_size(input);
            let seed = input.get("seed").and_then(seed_of).unwrap_or_else(|| rng.random::<u64>());
            let n = num_images(input);
            let images: Vec<Value> = (0..n)
                .map(|i| {
                    let png = media::seeded_png(seed.wrapping_add(i as u64), ctx.image_px);
                    let url = store(&format!("image_{i}.png"), "image/png", png);
                    json!({"url": url, "width": w, "height": h, "content_type": "image/png"})
                })
                .collect();
            json!({
                "images": images,
                "timings": {"inference": round3(ctx.service_secs)},
                "seed": seed,
                "has_nsfw_concepts": vec![ctx.nsfw; n],
                "prompt": str_field(input, "prompt"),
            })
        }
        ModelKind::NanoBanana | ModelKind::NanoBananaEdit => {
            let seed: u64 = rng.random();
            let images: Vec<Value> = (0..num_images(input))
                .map(|i| {
                    let png = media::seeded_png(seed.wrapping_add(i as u64), ctx.image_px);
                    let size = png.len();
                    let url = store(&format!("output_{i}.png"), "image/png", png);
                    json!({"url": url, "content_type": "image/png", "file_name": format!("output_{i}.png"), "file_size": size})
                })
                .collect();
            let description = if ctx.kind == ModelKind::NanoBananaEdit {
                "Here is the edited image."
            } else {
                "Here is the image you asked for."
            };
            json!({"images": images, "description": description})
        }
        ModelKind::Llm | ModelKind::Openrouter => {
            let b = bill(ctx.kind, input);
            json!({
                "output": enhance(str_field(input, "prompt")),
                "reasoning": null,
                "partial": false,
                "error": null,
                "usage": {
                    "input_tokens": b.input_tokens,
                    "output_tokens": b.output_tokens,
                    "ttft_ms": (ctx.service_secs * 250.0).round() as u64,
                },
            })
        }
        ModelKind::Tts => {
            let wav = media::sine_wav(0.5, 440.0);
            let size = wav.len();
            let url = store("speech.wav", "audio/wav", wav);
            json!({"audio": {"url": url, "content_type": "audio/wav", "file_name": "speech.wav", "file_size": size}})
        }
    };
    if let Some(map) = out.as_object_mut() {
        map.insert(EXTRA_FIELD.to_owned(), json!({"note": "unknown field: clients must ignore it", "v": 1}));
    }
    out
}

/// The deterministic "enhanced" prompt an LLM endpoint returns.
pub(crate) fn enhance(prompt: &str) -> String {
    format!("{prompt}, enhanced: cinematic lighting, rich detail, sharp focus, 35mm photograph")
}

fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn str_field<'a>(input: &'a Value, field: &str) -> &'a str {
    input.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn num_images(input: &Value) -> usize {
    input.get("num_images").and_then(Value::as_u64).map_or(1, |n| n.clamp(1, 4) as usize)
}

fn seed_of(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_i64().map(|s| s as u64))
}

/// Width and height of a FLUX `image_size` (preset or object; default `landscape_4_3`).
pub(crate) fn flux_size(input: &Value) -> (u32, u32) {
    match input.get("image_size") {
        Some(Value::String(preset)) => match preset.as_str() {
            "square_hd" => (1024, 1024),
            "square" => (512, 512),
            "portrait_4_3" => (768, 1024),
            "portrait_16_9" => (576, 1024),
            "landscape_16_9" => (1024, 576),
            _ => (1024, 768),
        },
        Some(Value::Object(o)) => {
            let dim = |k: &str| o.get(k).and_then(Value::as_u64).map_or(1024, |v| v.clamp(1, 14_142) as u32);
            (dim("width"), dim("height"))
        }
        _ => (1024, 768),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_shapes() {
        let err = validate(ModelKind::Flux, &json!({"image_size": "square"})).unwrap_err();
        assert_eq!(err["detail"][0]["loc"], json!(["body", "prompt"]));
        assert_eq!(err["detail"][0]["type"], "missing");
        assert!(validate(ModelKind::Flux, &json!({"prompt": "x"})).is_ok());
        let err = validate(ModelKind::NanoBananaEdit, &json!({"prompt": "x"})).unwrap_err();
        assert_eq!(err["detail"][0]["loc"], json!(["body", "image_urls"]));
        let err = validate(ModelKind::Openrouter, &json!({"prompt": "x"})).unwrap_err();
        assert_eq!(err["detail"][0]["loc"], json!(["body", "model"]));
        assert!(validate(ModelKind::Tts, &json!({"prompt": "x"})).is_err());
        assert!(validate(ModelKind::Flux, &json!({"prompt": "x", "num_images": 9})).is_err());
        assert!(validate(ModelKind::Flux, &json!([1])).is_err());
    }

    #[test]
    fn prices() {
        let flux = bill(ModelKind::Flux, &json!({"prompt": "x", "image_size": "square_hd", "num_images": 2}));
        assert_eq!(price(&Price::PerMegapixel(Usd::from_micros(40_000)), &flux).micros(), 80_000);
        let big = bill(ModelKind::Flux, &json!({"prompt": "x", "image_size": {"width": 2048, "height": 1024}}));
        assert_eq!(price(&Price::PerMegapixel(Usd::from_micros(3_000)), &big).micros(), 6_000);
        let tts = bill(ModelKind::Tts, &json!({"text": "a".repeat(250)}));
        assert_eq!(price(&Price::Per1000Chars(Usd::from_micros(100_000)), &tts).micros(), 25_000);
        let nb = bill(ModelKind::NanoBanana, &json!({"prompt": "x"}));
        assert_eq!(price(&Price::PerImage(Usd::from_micros(39_000)), &nb).micros(), 39_000);
    }

    #[test]
    fn openrouter_bills_at_the_rate_of_the_chosen_model() {
        let ask = |model: &str| {
            bill(ModelKind::Openrouter, &json!({"prompt": "a fox", "system_prompt": "rewrite it", "model": model}))
        };
        let flash = ask("google/gemini-2.5-flash");
        let (input, output) = (flash.input_tokens, flash.output_tokens);
        assert!(input > 0 && output > 0);
        // $0.30 and $2.50 per million tokens, in micro-dollars per token.
        let expected = (input * 300 + output * 2_500 + 500) / 1000;
        let priced = price(&Price::PerTokenOfChosenModel, &flash).micros();
        assert!(priced.abs_diff(expected as i64) <= 1, "{priced} vs {expected}");
        let unknown = price(&Price::PerTokenOfChosenModel, &ask("someone/unheard-of"));
        assert_eq!(unknown, price(&crate::config::LLM_DEFAULT_PRICE, &flash), "unknown models at the default rate");
        assert!(unknown < price(&Price::PerTokenOfChosenModel, &flash));
    }
}
