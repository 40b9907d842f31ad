//! Builds the adapters from settings, hands them to the engine and the bot, and runs both
//! until shutdown. Nothing else happens here.

use crate::settings::Settings;
use anyhow::Context;
use mediagen_domain::{AccountId, ChatId, UserId};
use mediagen_engine::{Engine, EngineConfig, Ports};
use mediagen_fal::FalGeneration;
use mediagen_ports::{AccountStore, SystemClock};
use mediagen_postgres::PgStore;
use mediagen_telegram::{BotApp, BotConfig, BotDeps, TelegramMessaging};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;
use teloxide::Bot;
use tokio::sync::watch;

/// A unique owner id for this process's leases.
fn owner_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Connects to the database and applies pending migrations.
///
/// # Errors
/// When `DATABASE_URL` is unset or the database cannot be reached.
pub async fn connect(settings: &Settings) -> anyhow::Result<PgStore> {
    let url = settings.database_url.as_ref().context("DATABASE_URL is not set")?;
    // The URL may carry a password: the error says what failed, never the URL.
    PgStore::connect(url.expose_secret(), settings.database_max_connections)
        .await
        .context("cannot open the database (check DATABASE_URL)")
}

/// Runs the bot until `shutdown` turns true.
///
/// # Errors
/// When a setting is missing or an adapter cannot start.
pub async fn run(settings: Settings, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let token = settings.bot_token.clone().context("TELOXIDE_TOKEN is not set")?;
    settings.require_fal_keys()?;
    let store = Arc::new(connect(&settings).await?);
    let generation = FalGeneration::new(settings.fal.clone()).context("fal configuration")?;
    for (account, keys) in generation.accounts() {
        store.upsert_account(&account, &keys).await.with_context(|| format!("registering fal account {account}"))?;
    }
    let accounts: Vec<AccountId> = generation.accounts().into_iter().map(|(id, _)| id).collect();
    tracing::info!(accounts = ?accounts, "fal accounts registered");

    let api_url = settings.telegram.api_url.parse().context("[telegram] api_url is not a URL")?;
    let bot = Bot::new(token.expose_secret()).set_api_url(api_url);
    let admins: Vec<UserId> = settings.admins.iter().copied().map(UserId).collect();
    let messaging = Arc::new(TelegramMessaging::new(bot.clone(), admins.iter().map(|u| ChatId(u.0)).collect()));

    let mut config = EngineConfig::new(settings.catalog.clone(), settings.plans.clone(), owner_id());
    config.budget = settings.budget.clone();
    config.credit = settings.credit.clone();
    config.overhang = settings.engine.overhang;
    config.claim_batch = settings.engine.claim_batch;
    config.lease = Duration::from_secs(settings.engine.lease_secs);
    config.mean_service = Duration::from_secs(settings.engine.mean_service_secs);
    config.shutdown_grace = Duration::from_secs(settings.engine.shutdown_grace_secs);
    config.limit_drop_warning = chrono::TimeDelta::days(settings.engine.limit_drop_warning_days);

    let clock = Arc::new(SystemClock);
    let ports = Ports {
        generation: Arc::new(generation),
        messaging,
        queue: store.clone(),
        users: store.clone(),
        accounts: store.clone(),
        prompt_cache: store.clone(),
        alerts: store.clone(),
        usage: store.clone(),
        clock: clock.clone(),
    };
    let engine = Engine::new(ports, config);
    let deps = BotDeps {
        engine: engine.clone(),
        users: store.clone(),
        queue: store.clone(),
        accounts: store.clone(),
        usage: store.clone(),
        clock,
    };
    let bot_config = BotConfig {
        admins: admins.into_iter().collect(),
        album_wait: Duration::from_millis(settings.telegram.album_wait_ms),
        flood_limit: settings.telegram.flood_limit,
        flood_window: Duration::from_secs(settings.telegram.flood_window_secs),
        ..BotConfig::default()
    };
    let app = BotApp::new(deps, bot_config);
    tokio::join!(engine.run(shutdown.clone()), mediagen_telegram::run(bot, app, shutdown));
    tracing::info!("stopped");
    Ok(())
}
