//! The Prometheus endpoint: `GET /metrics` over HTTP (axum), serving the engine's live
//! counters as OpenMetrics text. Started by `wiring::run` when `[metrics] listen` is set.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use mediagen_reports::prometheus::CONTENT_TYPE;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Produces the exposition text, or why it cannot (answered as 503).
pub type Render = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// The router: `GET /metrics`; everything else is 404.
pub fn router(render: Render) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let render = Arc::clone(&render);
            async move {
                match render().await {
                    Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
                    Err(error) => {
                        tracing::warn!(%error, "metrics unavailable");
                        (StatusCode::SERVICE_UNAVAILABLE, format!("metrics unavailable: {error}\n")).into_response()
                    }
                }
            }
        }),
    )
}

/// Serves [`router`] on `listener` until `shutdown` turns true.
///
/// # Errors
/// When the server fails (the listener broke).
pub async fn serve(listener: TcpListener, render: Render, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    axum::serve(listener, router(render))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

/// The engine's metrics as a [`Render`].
pub fn of_engine(engine: mediagen_engine::Engine) -> Render {
    Arc::new(move || {
        let engine = engine.clone();
        Box::pin(async move {
            engine
                .insights
                .metrics()
                .await
                .map(|metrics| mediagen_reports::prometheus::render_metrics(&metrics))
                .map_err(|error| error.to_string())
        })
    })
}
