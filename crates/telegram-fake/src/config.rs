//! How a fake server is set up: the token, the bot's profile, Telegram's limits and the faults.

use crate::faults::FaultRule;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Everything [`spawn`](crate::spawn) needs; `FakeConfig::default()` is ready to use.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Address to bind; port 0 picks a free port. Defaults to `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// The only bot token the server accepts. The bot's user id is the number before the `:`,
    /// as on the real server.
    pub token: String,
    /// The bot's first name, as `getMe` and the `from` of its messages report it.
    pub bot_first_name: String,
    /// The bot's username (without `@`).
    pub bot_username: String,
    /// The first `update_id` handed out; later updates count up from it.
    pub first_update_id: i64,
    /// How long after a button press `answerCallbackQuery` is still accepted.
    pub callback_answer_deadline: Duration,
    /// Telegram's size limits.
    pub limits: Limits,
    /// Flood control per chat (`None`, the default, never answers 429 by itself).
    pub chat_rate_limit: Option<RateLimit>,
    /// Flood control over all chats together (`None` by default).
    pub global_rate_limit: Option<RateLimit>,
    /// Fault rules active from the start (more can be added at runtime).
    pub faults: Vec<FaultRule>,
    /// Seed of the random generator behind rate-based faults and file ids.
    pub seed: u64,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            token: "1234567890:TEST-fake-telegram-token".to_owned(),
            bot_first_name: "Mediagen Test Bot".to_owned(),
            bot_username: "mediagen_test_bot".to_owned(),
            first_update_id: 100_000,
            callback_answer_deadline: Duration::from_secs(15),
            limits: Limits::default(),
            chat_rate_limit: None,
            global_rate_limit: None,
            faults: Vec::new(),
            seed: 0,
        }
    }
}

impl FakeConfig {
    /// Sets the accepted token (builder style).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = token.into();
        self
    }

    /// Adds a fault rule active from the start (builder style).
    pub fn with_fault(mut self, rule: FaultRule) -> Self {
        self.faults.push(rule);
        self
    }

    /// Turns on per-chat flood control (builder style).
    pub fn with_chat_rate_limit(mut self, limit: RateLimit) -> Self {
        self.chat_rate_limit = Some(limit);
        self
    }

    /// Sets the callback answer deadline (builder style).
    pub fn with_callback_answer_deadline(mut self, deadline: Duration) -> Self {
        self.callback_answer_deadline = deadline;
        self
    }

    /// Speeds up the server's own clocks by `scale` (2 = twice as fast): the callback answer
    /// deadline and the flood-control windows shrink by that factor. `retry_after` values stay
    /// whole seconds, as Telegram sends them. Non-positive or non-finite scales are ignored.
    /// Call it after setting the rate limits it should scale.
    pub fn with_time_scale(mut self, scale: f64) -> Self {
        if scale.is_finite() && scale > 0.0 {
            self.callback_answer_deadline = self.callback_answer_deadline.div_f64(scale);
            for limit in [&mut self.chat_rate_limit, &mut self.global_rate_limit].into_iter().flatten() {
                limit.window = limit.window.div_f64(scale);
            }
        }
        self
    }

    /// The bot's user id: the digits before the `:` of the token (0 when there are none).
    pub fn bot_id(&self) -> i64 {
        self.token.split(':').next().and_then(|id| id.parse().ok()).unwrap_or(0)
    }
}

/// Telegram's size limits, in bytes. The defaults are the real ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest file a bot may download (`getFile` answers `file is too big` above it): 20 MB.
    pub max_download: u64,
    /// Largest photo a bot may upload: 10 MB.
    pub max_photo_upload: u64,
    /// Largest other file a bot may upload (`Request Entity Too Large` above it): 50 MB.
    pub max_upload: u64,
    /// Largest photo Telegram fetches from a URL: 5 MB.
    pub max_photo_by_url: u64,
    /// Largest other file Telegram fetches from a URL: 20 MB.
    pub max_file_by_url: u64,
    /// Longest message text, in UTF-16 code units after entity parsing: 4096.
    pub max_text_len: usize,
    /// Longest media caption, in UTF-16 code units after entity parsing: 1024.
    pub max_caption_len: usize,
    /// Longest `callback_data` of an inline button, in bytes: 64.
    pub max_callback_data: usize,
}

impl Default for Limits {
    fn default() -> Self {
        const MB: u64 = 1024 * 1024;
        Limits {
            max_download: 20 * MB,
            max_photo_upload: 10 * MB,
            max_upload: 50 * MB,
            max_photo_by_url: 5 * MB,
            max_file_by_url: 20 * MB,
            max_text_len: 4096,
            max_caption_len: 1024,
            max_callback_data: 64,
        }
    }
}

/// Flood control: at most `max_messages` sends within any `window`; the next one is answered
/// `429 Too Many Requests` with `retry_after` = the seconds until a slot frees (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Sends allowed within one window.
    pub max_messages: u32,
    /// The sliding window.
    #[serde(with = "crate::faults::millis")]
    pub window: Duration,
}

impl RateLimit {
    /// Telegram's documented private-chat guideline: about one message per second.
    pub fn one_per_second() -> Self {
        RateLimit { max_messages: 1, window: Duration::from_secs(1) }
    }

    /// Telegram's documented broadcast guideline: about 30 messages per second overall.
    pub fn thirty_per_second() -> Self {
        RateLimit { max_messages: 30, window: Duration::from_secs(1) }
    }
}
