#![doc = include_str!("../README.md")]

mod cli;
mod config;
mod engine;
mod faults;
mod http;
mod introspect;
pub mod media;
mod money;
mod outputs;

pub use cli::{AccountSpec, SimArgs, merge_accounts};
pub use config::{
    AccountConfig, ModelConfig, ModelKind, ModelSpec, Price, ServiceTime, SimConfig, UnknownModelPolicy, default_models,
};
pub use engine::SimHandle;
pub use faults::{FaultKind, FaultRule, FaultScript, FaultScriptError};
pub use http::router;
pub use introspect::{
    AccountSnapshot, AccountUpdate, OutcomeKind, RequestRecord, RequestStatus, SimSnapshot, UploadRecord,
};
pub use money::{Usd, UsdParseError};

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Why the simulator could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is inconsistent (bad account flags, time scale, rates...).
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// The fault script could not be loaded.
    #[error(transparent)]
    Faults(#[from] FaultScriptError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server or the terminal failed while running.
    #[error("simulator I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A simulator serving on its own listener; shuts down on drop or [`RunningSim::shutdown`].
#[derive(Debug)]
pub struct RunningSim {
    addr: SocketAddr,
    handle: SimHandle,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// Binds `config.listen` (port 0 = any free port) and serves the queue API, storage, CDN
/// and `/_sim` introspection on that one listener, on the current tokio runtime.
///
/// # Errors
/// `Config` for an invalid configuration, `Bind` when the address cannot be bound.
pub async fn spawn(config: SimConfig) -> Result<RunningSim, SimError> {
    config.validate().map_err(SimError::Config)?;
    let listen = config.listen;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| SimError::Bind { addr: listen, source })?;
    spawn_on(listener, config).await
}

/// [`spawn`] on a listener the caller bound already (`config.listen` is ignored), so the
/// address is known, and cannot be taken by anyone else, before the simulator starts.
///
/// # Errors
/// `Config` for an invalid configuration, `Io` when the listener's address cannot be read.
pub async fn spawn_on(listener: tokio::net::TcpListener, config: SimConfig) -> Result<RunningSim, SimError> {
    config.validate().map_err(SimError::Config)?;
    let addr = listener.local_addr()?;
    let base_url = config.public_url.clone().unwrap_or_else(|| {
        // A wildcard bind is reachable on loopback; never hand out http://0.0.0.0 URLs.
        let shown = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
            ip if ip.is_unspecified() => SocketAddr::new("::1".parse().expect("valid address"), addr.port()),
            _ => addr,
        };
        format!("http://{shown}")
    });
    let handle = SimHandle::new(config, base_url).map_err(SimError::Config)?;
    let app = router(handle.clone());
    let mut stop = handle.shared.shutdown.subscribe();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!(%addr, "fal simulator listening");
    Ok(RunningSim { addr, handle, server: Some(server) })
}

impl RunningSim {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL serving the queue API, storage and CDN (no trailing slash).
    pub fn base_url(&self) -> &str {
        self.handle.base_url()
    }

    /// The introspection and admin handle.
    pub fn handle(&self) -> &SimHandle {
        &self.handle
    }

    /// Stops accepting work, stops the clock tasks and waits (briefly) for the server to end.
    pub async fn shutdown(mut self) {
        self.handle.shared.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), server).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.handle.shared.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Runs the simulator as the `fal-sim` binary does: prints `listening on http://ADDR` as the
/// first line of stdout, then serves until Ctrl-C (or SIGTERM).
///
/// # Errors
/// Any [`SimError`] from building the configuration or binding.
pub async fn run_cli(args: SimArgs) -> Result<(), SimError> {
    let config = args.into_config()?;
    if config.accounts.is_empty() {
        eprintln!("fal-sim: no --account given; using account \"default\" with key sim-key, limit 2");
    }
    let sim = spawn(config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", sim.addr())?;
        out.flush()?;
    }
    wait_for_stop_signal().await?;
    sim.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_stop_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_stop_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
