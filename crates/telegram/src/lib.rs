#![doc = include_str!("../README.md")]

mod admin;
pub mod app;
pub mod command;
pub mod handlers;
pub mod inbox;
mod insights;
pub mod messaging;
pub mod texts;

pub use app::{BotApp, BotConfig, BotDeps};
pub use handlers::schema;
pub use messaging::TelegramMessaging;
pub use teloxide::adaptors::throttle::Limits;

use teloxide::adaptors::Throttle;
use teloxide::adaptors::throttle::Settings;
use teloxide::prelude::*;
use tokio::sync::watch;

/// The Bot API client every part of the front end sends through: one queue for the whole
/// process, so handlers, the messenger and broadcasts share Telegram's limits.
pub type TelegramBot = Throttle<Bot>;

/// Wraps `bot` in teloxide's `Throttle`, which holds each send (`sendMessage`, `sendPhoto`,
/// `sendDocument`, …) until it fits `limits`, per chat and over all chats. Edits, callback
/// answers and downloads pass straight through: the engine paces progress edits itself.
///
/// Throttle's own retry is off. It would re-send a refused request, unbounded, inside the
/// caller's future, hiding the `RetryAfter` that the messenger's bounded back-offs and the
/// engine act on, and spending an upload's deadline asleep. A `RetryAfter` to a send still
/// pauses the whole queue for as long as Telegram asks.
///
/// Spawns the worker that releases requests, so it needs a Tokio runtime; the worker ends
/// when the last clone of the returned bot is dropped.
///
/// # Panics
/// When `limits.messages_per_sec_overall` is 0 (the queue's capacity).
pub fn throttled(bot: Bot, limits: Limits) -> TelegramBot {
    Throttle::spawn_with_settings(bot, Settings::default().limits(limits).no_retry())
}

/// Where updates come from.
#[derive(Debug, Clone)]
pub enum UpdateSource {
    /// Long polling (`getUpdates`): works behind NAT, no public address needed.
    LongPolling,
    /// Telegram posts updates to `url`, served on `listen`. teloxide registers the webhook
    /// with a fresh secret token and refuses requests without Telegram's
    /// `X-Telegram-Bot-Api-Secret-Token` header carrying it.
    Webhook {
        /// Local address of the HTTP server.
        listen: std::net::SocketAddr,
        /// The public HTTPS URL Telegram posts to (usually a reverse proxy to `listen`).
        url: url::Url,
    },
}

/// How long Telegram may take to answer once a request was sent (a long poll waits 30 s).
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

/// The HTTP client for the Bot API.
///
/// teloxide's default gives every request 17 s in all: a large upload on a slow link is cut
/// short (and such a timeout looks like "sent, answer lost", so the picture would not be
/// sent again), and a long poll cannot wait its 30 s. Here a request takes as long as it
/// keeps moving: a connect timeout, and a read timeout for an answer that never comes. The
/// time an upload may take is bounded by the messaging adapter, by the size of the file.
///
/// # Errors
/// When the TLS stack cannot be set up.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    teloxide::net::default_reqwest_settings()
        // Replaces the 17 s total: the real bounds are the read timeout and the upload deadline.
        .timeout(std::time::Duration::from_secs(24 * 3600))
        .read_timeout(READ_TIMEOUT)
        .build()
}

/// Runs the bot's update loop until `shutdown` turns true.
///
/// # Errors
/// When the webhook cannot be registered with Telegram.
pub async fn run(
    bot: TelegramBot,
    app: BotApp,
    source: UpdateSource,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), teloxide::RequestError> {
    let inbox = app.inbox.clone();
    let mut dispatcher = Dispatcher::builder(bot.clone(), schema())
        .dependencies(dptree::deps![app])
        .default_handler(|_| async {})
        .error_handler(LoggingErrorHandler::with_custom_text("telegram handler failed"))
        .build();
    let token = dispatcher.shutdown_token();
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = {
        let finished = std::sync::Arc::clone(&finished);
        tokio::spawn(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            // `shutdown` fails while the dispatcher is still starting: try until it takes,
            // or until the dispatcher has ended by itself.
            while !finished.load(std::sync::atomic::Ordering::SeqCst) {
                match token.shutdown() {
                    Ok(done) => {
                        done.await;
                        break;
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                }
            }
        })
    };
    match source {
        UpdateSource::LongPolling => {
            let listener = inbox::confirmed_polling(bot, inbox);
            dispatcher
                .dispatch_with_listener(listener, LoggingErrorHandler::with_custom_text("update listener failed"))
                .await;
        }
        UpdateSource::Webhook { listen, url } => {
            let options = teloxide::update_listeners::webhooks::Options::new(listen, url);
            let listener = match teloxide::update_listeners::webhooks::axum(bot, options).await {
                Ok(listener) => listener,
                Err(error) => {
                    finished.store(true, std::sync::atomic::Ordering::SeqCst);
                    stopper.abort();
                    return Err(error);
                }
            };
            dispatcher
                .dispatch_with_listener(listener, LoggingErrorHandler::with_custom_text("webhook listener failed"))
                .await;
        }
    }
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    stopper.abort();
    Ok(())
}
