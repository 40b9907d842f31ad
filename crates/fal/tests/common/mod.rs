//! Shared set-up: a simulator on port 0 and an adapter pointed at it, with fast polling
//! and retries so the suite takes seconds.

#![allow(dead_code, missing_docs)]

use mediagen_domain::{AccountId, ImageSize, ModelId, ModelKind, Timestamp};
use mediagen_fal::{FalAccountConfig, FalConfig, FalGeneration, FalKey, PollConfig, RetryConfig};
use mediagen_fal_sim::{AccountConfig, RunningSim, SimConfig, spawn};
use mediagen_ports::{GenerationRequest, LlmParams};
use secrecy::SecretString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A wall-clock deadline `secs` from now, as the engine passes to `wait`.
pub fn in_secs(secs: f64) -> Timestamp {
    let now = SystemTime::now();
    let offset = Duration::from_secs_f64(secs.abs());
    Timestamp::from(if secs < 0.0 { now - offset } else { now + offset })
}

/// A generous follow deadline: nothing in these tests should need it.
pub fn deadline() -> Timestamp {
    in_secs(20.0)
}

/// Key strings long and odd enough that finding one in output cannot be a coincidence.
pub const KEY_1: &str = "k1id:Sup3rS3cretKeyMaterial-alpha";
pub const KEY_2: &str = "k2id:Sup3rS3cretKeyMaterial-bravo";

/// Adapter settings for tests: hosts at `base`, one account `main` with `keys`, fast
/// polling and retries.
pub fn fal_config(base: &str, keys: &[&str]) -> FalConfig {
    FalConfig {
        queue_base: base.to_owned(),
        rest_base: base.to_owned(),
        cdn_bases: vec![format!("{base}/files/")],
        accounts: vec![FalAccountConfig {
            name: "main".into(),
            keys: keys
                .iter()
                .enumerate()
                .map(|(i, k)| FalKey { name: format!("key{}", i + 1), secret: SecretString::from(*k) })
                .collect(),
        }],
        poll: PollConfig { initial_interval_ms: 2, multiplier: 1.5, max_interval_ms: 20, deadline_ms: 20_000 },
        retry: RetryConfig { max_retries: 3, status_max_retries: 5, base_delay_ms: 1, max_delay_ms: 5, jitter: 0.25 },
        request_timeout_ms: 5_000,
        download_timeout_ms: 5_000,
        media_retention_secs: Some(3_600),
        ..FalConfig::default()
    }
}

/// The simulator's default models run in 30–80 ms at this scale.
pub const TIME_SCALE: f64 = 100.0;

pub struct Env {
    pub sim: RunningSim,
    pub fal: FalGeneration,
    pub account: AccountId,
}

/// A simulator with account `main` (keys `KEY_1`, `KEY_2`, limit `limit`) and an adapter.
pub async fn start_with(limit: u32, sim: impl FnOnce(SimConfig) -> SimConfig, fal: impl FnOnce(&mut FalConfig)) -> Env {
    let sim_config = SimConfig::default()
        .with_account(AccountConfig::new("main", KEY_1, limit).with_key(KEY_2))
        .with_time_scale(TIME_SCALE);
    let sim = spawn(sim(sim_config)).await.expect("simulator starts");
    let mut config = fal_config(sim.base_url(), &[KEY_1, KEY_2]);
    fal(&mut config);
    let fal = FalGeneration::new(config).expect("valid config");
    Env { sim, fal, account: AccountId::new("main") }
}

pub async fn start() -> Env {
    start_with(2, |s| s, |_| {}).await
}

pub fn image_request(model: &str, prompt: &str) -> GenerationRequest {
    GenerationRequest {
        model: ModelId::new(model),
        kind: ModelKind::TextToImage,
        prompt: prompt.to_owned(),
        size: Some(ImageSize::new(1024, 768)),
        num_images: 1,
        seed: Some(42),
        input_image_urls: vec![],
        llm: None,
    }
}

pub fn edit_request(urls: Vec<String>) -> GenerationRequest {
    GenerationRequest {
        model: ModelId::new("fal-ai/nano-banana/edit"),
        kind: ModelKind::ImageEdit,
        prompt: "make it blue".into(),
        size: Some(ImageSize::new(1024, 576)),
        num_images: 1,
        seed: None,
        input_image_urls: urls,
        llm: None,
    }
}

pub fn llm_request(prompt: &str, llm: Option<LlmParams>) -> GenerationRequest {
    GenerationRequest {
        model: ModelId::new("openrouter/router"),
        kind: ModelKind::Llm,
        prompt: prompt.to_owned(),
        size: None,
        num_images: 1,
        seed: None,
        input_image_urls: vec![],
        llm,
    }
}

pub fn tts_request(text: &str) -> GenerationRequest {
    GenerationRequest {
        model: ModelId::new("fal-ai/elevenlabs/tts/multilingual-v2"),
        kind: ModelKind::TextToSpeech,
        prompt: text.to_owned(),
        size: None,
        num_images: 1,
        seed: None,
        input_image_urls: vec![],
        llm: None,
    }
}

/// A tracing writer that keeps everything written, to search logs afterwards.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
