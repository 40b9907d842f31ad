#![doc = include_str!("../README.md")]

mod api;
mod config;
mod control;
mod error;
mod faults;
mod handle;
pub mod markup;
mod media;
mod model;
mod params;
mod state;

pub use config::{FakeConfig, Limits, RateLimit};
pub use error::{Error, Result};
pub use faults::{FaultAction, FaultRule, Trigger};
pub use handle::{FakeTelegram, View};
pub use model::{
    Call, CallbackAnswer, ChatMessage, Content, FileSource, FileUse, InlineButton, Outcome, Pressed, Sent, SimUser,
};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use state::Core;
use std::sync::Arc;

/// Starts a fake Bot API server on `config.listen` (by default a free port on 127.0.0.1).
///
/// # Errors
/// [`Error::InvalidConfig`] for a token without `:` or an unusable fault rule;
/// [`Error::Bind`] when the address cannot be bound.
pub async fn spawn(config: FakeConfig) -> Result<FakeTelegram> {
    validate(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind { addr: config.listen, source })?;
    spawn_on(listener, config).await
}

/// [`spawn`] on a listener the caller bound already (`config.listen` is ignored), so the
/// address is known, and cannot be taken by anyone else, before the server starts.
///
/// # Errors
/// [`Error::InvalidConfig`] as for [`spawn`]; [`Error::Bind`] when the listener's address
/// cannot be read.
pub async fn spawn_on(listener: tokio::net::TcpListener, config: FakeConfig) -> Result<FakeTelegram> {
    validate(&config)?;
    let addr = listener.local_addr().map_err(|source| Error::Bind { addr: config.listen, source })?;
    let core = Arc::new(Core::new(config));
    let handle = FakeTelegram::detached(Arc::clone(&core), addr);
    let app = Router::new()
        .route("/{bot}/{method}", any(api::handle))
        .route("/file/{bot}/{*path}", get(api::download))
        .with_state(core)
        .nest("/_fake", control::router().with_state(handle.clone()))
        .fallback(|| async { error::ApiFailure::not_found().into_response() })
        // Uploads are bounded by the Bot API limits in `Params::read`, with Telegram's answers.
        .layer(DefaultBodyLimit::disable());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            _ = stopped.await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "fake Telegram server stopped with an error");
        }
    });
    tracing::info!(%addr, "fake Telegram Bot API listening");
    Ok(handle.owning(stop, task))
}

fn validate(config: &FakeConfig) -> Result<()> {
    if !config.token.contains(':') || config.token.contains('/') {
        return Err(Error::InvalidConfig("a bot token looks like `123456:secret`, without `/`".to_owned()));
    }
    for rule in &config.faults {
        rule.validate().map_err(Error::InvalidConfig)?;
    }
    Ok(())
}
