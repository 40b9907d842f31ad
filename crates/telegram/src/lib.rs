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
    dispatcher.dispatch().await;
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    stopper.abort();
}
