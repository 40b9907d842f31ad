//! Builds the adapters from settings, hands them to the engine and the bot, and runs both
//! until shutdown. Nothing else happens here.

use crate::settings::Settings;
use crate::storage::{self, Storage};
use anyhow::Context;
use mediagen_domain::{AccountId, ChatId, UserId};
use mediagen_engine::{Engine, EngineConfig, InsightsConfig, Ports};
use mediagen_fal::FalGeneration;
use mediagen_ports::SystemClock;
use mediagen_telegram::{BotApp, BotConfig, BotDeps, TelegramMessaging, UpdateSource};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;
use teloxide::Bot;
use tokio::sync::watch;

/// The owner id of this process's leases: unique per process start.
///
/// Host name and pid alone repeat: a container restarts as PID 1 under the same host
/// name, and without `HOSTNAME` (systemd sets none) two machines can both be `local-7`.
/// A new process must never renew, or write under, a dead one's leases, so a random
/// suffix drawn at each start makes the id unique; host and pid stay for the logs.
pub fn owner_id() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.trim().is_empty()).unwrap_or_else(|| "local".to_owned());
    let start = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &start[..12])
}

/// Opens the database of `DATABASE_URL` (SQLite or PostgreSQL, by its scheme; the SQLite
/// file `storage::DEFAULT_URL` when unset) and applies pending migrations.
///
/// # Errors
/// When the URL's scheme is unknown or the database cannot be opened.
pub async fn connect(settings: &Settings) -> anyhow::Result<Storage> {
    let url = settings.database_url.as_ref().map_or(storage::DEFAULT_URL, |url| url.expose_secret());
    // The URL may carry a password: the error says what failed, never the URL.
    storage::open(url, settings.database_max_connections).await.context("cannot open the database (check DATABASE_URL)")
}

/// [`connect`] for commands that only read: a database that does not exist is an error
/// (see [`storage::open_existing`]), never created.
///
/// # Errors
/// When the URL's scheme is unknown or the database does not exist or cannot be opened.
pub async fn connect_existing(settings: &Settings) -> anyhow::Result<Storage> {
    let url = settings.database_url.as_ref().map_or(storage::DEFAULT_URL, |url| url.expose_secret());
    storage::open_existing(url, settings.database_max_connections).await
}

/// Sockets the caller bound for the bot's own HTTP endpoints. An endpoint without one is
/// bound from its setting, as the binary does; a harness binds first so the address is
/// known, and held, before the bot starts.
#[derive(Debug, Default)]
pub struct Listeners {
    /// Where `/metrics` is served, whatever `[metrics] listen` says.
    pub metrics: Option<tokio::net::TcpListener>,
}

/// Runs the bot until `shutdown` turns true.
///
/// # Errors
/// When a setting is missing or an adapter cannot start.
pub async fn run(settings: Settings, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    run_on(settings, Listeners::default(), shutdown).await
}

/// [`run`] with some of its listeners bound by the caller.
///
/// # Errors
/// When a setting is missing or an adapter cannot start.
pub async fn run_on(settings: Settings, listeners: Listeners, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let token = settings.bot_token.clone().context("TELOXIDE_TOKEN is not set")?;
    settings.require_fal_keys()?;
    let store = connect(&settings).await?;
    let follow_deadline = Duration::from_secs(settings.engine.follow_deadline_secs.max(10));
    let mut fal = settings.fal.clone();
    // fal gives up on its own if the job has not started by the time we would.
    fal.start_timeout_secs.get_or_insert(follow_deadline.as_secs());
    let generation = FalGeneration::new(fal).context("fal configuration")?;
    for (account, keys) in generation.accounts() {
        store
            .accounts
            .upsert_account(&account, &keys)
            .await
            .with_context(|| format!("registering fal account {account}"))?;
    }
    let accounts: Vec<AccountId> = generation.accounts().into_iter().map(|(id, _)| id).collect();
    tracing::info!(accounts = ?accounts, "fal accounts registered");
    let retired = store
        .accounts
        .retire_unlisted(&accounts, chrono::Utc::now())
        .await
        .context("retiring fal accounts no longer configured")?;
    if !retired.is_empty() {
        tracing::warn!(
            retired = ?retired,
            "fal accounts no longer configured are retired: no new work; their jobs at fal are ended"
        );
    }

    let api_url = settings.telegram.api_url.parse().context("[telegram] api_url is not a URL")?;
    let client = mediagen_telegram::http_client().context("cannot set up the HTTP client for Telegram")?;
    let bot = Bot::with_client(token.expose_secret(), client).set_api_url(api_url);
    // One throttle for the handlers and the messenger alike: they share Telegram's limits.
    let bot = mediagen_telegram::throttled(bot, settings.telegram.rate_limits.into());
    let admins: Vec<UserId> = settings.admins.iter().copied().map(UserId).collect();
    let messaging = Arc::new(TelegramMessaging::new(bot.clone(), admins.iter().map(|u| ChatId(u.0)).collect()));

    let mut config = EngineConfig::new(settings.catalog.clone(), settings.plans.clone(), owner_id());
    config.budget = settings.budget.clone();
    config.credit = settings.credit.clone();
    config.overhang = settings.engine.overhang;
    config.claim_batch = settings.engine.claim_batch;
    config.lease = Duration::from_secs(settings.engine.lease_secs);
    config.follow_deadline = follow_deadline;
    config.mean_service = Duration::from_secs(settings.engine.mean_service_secs);
    config.shutdown_grace = Duration::from_secs(settings.engine.shutdown_grace_secs);
    config.rescue_interval = Duration::from_secs(settings.engine.rescue_secs.max(1));
    config.retry.max_attempts = settings.engine.max_attempts.max(1);
    config.limit_drop_warning = chrono::TimeDelta::days(settings.engine.limit_drop_warning_days);
    config.insights = insights_config(&settings);

    let clock = Arc::new(SystemClock);
    let ports = Ports {
        generation: Arc::new(generation),
        messaging,
        queue: store.queue.clone(),
        users: store.users.clone(),
        accounts: store.accounts.clone(),
        prompt_cache: store.prompt_cache.clone(),
        alerts: store.alerts.clone(),
        usage: store.usage.clone(),
        reports: store.reports.clone(),
        clock: clock.clone(),
    };
    let engine = Engine::new(ports, config);
    let deps = BotDeps { engine: engine.clone(), clock };
    let bot_config = BotConfig {
        admins: admins.into_iter().collect(),
        album_wait: Duration::from_millis(settings.telegram.album_wait_ms),
        flood_limit: settings.telegram.flood_limit,
        flood_window: Duration::from_secs(settings.telegram.flood_window_secs),
        ..BotConfig::default()
    };
    let app = BotApp::new(deps, bot_config);
    let metrics_listener = match (listeners.metrics, settings.metrics.listen.trim()) {
        (Some(listener), _) => Some(listener),
        (None, "") => None,
        (None, address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("[metrics] cannot listen on {address}"))?,
        ),
    };
    let metrics = match metrics_listener {
        None => None,
        Some(listener) => {
            tracing::info!(address = %listener.local_addr()?, "serving Prometheus metrics on /metrics");
            let render = crate::metrics::of_engine(engine.clone());
            Some(tokio::spawn(crate::metrics::serve(listener, render, shutdown.clone())))
        }
    };
    let source = match settings.telegram.webhook_url.trim() {
        "" => UpdateSource::LongPolling,
        url => UpdateSource::Webhook {
            listen: settings.telegram.webhook_listen.parse().context("[telegram] webhook_listen is not an address")?,
            url: url.parse().context("[telegram] webhook_url is not a URL")?,
        },
    };
    // The engine stops on the shutdown signal, or when the front end cannot start.
    let (stop_engine, engine_shutdown) = watch::channel(false);
    let stop_engine = Arc::new(stop_engine);
    let forward = {
        let (stop_engine, mut shutdown) = (Arc::clone(&stop_engine), shutdown.clone());
        tokio::spawn(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            let _ = stop_engine.send(true);
        })
    };
    let front_end = async {
        let result = mediagen_telegram::run(bot, app, source, shutdown.clone()).await;
        if result.is_err() {
            let _ = stop_engine.send(true);
        }
        result
    };
    let ((), front_end) = tokio::join!(engine.run(engine_shutdown), front_end);
    forward.abort();
    if let Some(server) = metrics {
        match server.await {
            Ok(Err(error)) => tracing::warn!(%error, "metrics server failed"),
            Err(error) => tracing::warn!(%error, "metrics server task failed"),
            Ok(Ok(())) => {}
        }
    }
    front_end.context("the Telegram webhook could not be set up")?;
    tracing::info!("stopped");
    Ok(())
}

/// The engine's report schedule, alert thresholds and planner settings from `settings`.
pub fn insights_config(settings: &Settings) -> InsightsConfig {
    let days = chrono::TimeDelta::days;
    let alerts = &settings.alerts;
    InsightsConfig {
        daily_report_at: settings.reports.daily_at,
        weekly_report_at: settings.reports.weekly_at,
        balance_warning: days(alerts.balance_warning_days),
        burn_window: days(alerts.burn_window_days.max(1)),
        expiry_warning: days(alerts.expiry_warning_days),
        saturation_percent: alerts.saturation_percent,
        saturation_min_busy: chrono::TimeDelta::minutes(alerts.saturation_min_busy_minutes),
        planner: settings.planner.clone(),
    }
}
