#![doc = include_str!("../README.md")]

mod admin;
pub mod app;
pub mod command;
pub mod handlers;
pub mod messaging;
pub mod texts;

pub use app::{BotApp, BotConfig, BotDeps};
pub use handlers::schema;
pub use messaging::TelegramMessaging;

use teloxide::prelude::*;
use tokio::sync::watch;

/// Runs the bot's update loop until `shutdown` turns true; long polling, so it works
/// behind NAT with no public address.
pub async fn run(bot: Bot, app: BotApp, mut shutdown: watch::Receiver<bool>) {
    let mut dispatcher = Dispatcher::builder(bot, schema())
        .dependencies(dptree::deps![app])
        .default_handler(|_| async {})
        .error_handler(LoggingErrorHandler::with_custom_text("telegram handler failed"))
        .build();
    let token = dispatcher.shutdown_token();
    tokio::spawn(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
        // Errors only when the dispatcher is not running yet or already stopped.
        if let Ok(done) = token.shutdown() {
            done.await;
        }
    });
    dispatcher.dispatch().await;
}
