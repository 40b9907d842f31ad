//! The pieces the demo runs: the fal simulator, the fake Bot API and the real bot between
//! them, started in-process the way `tests/src/lib.rs` starts them, and the fal accounts'
//! credit purchases recorded so the bot's own credit-window rules give their limits.

use crate::options::Options;
use crate::storage::Database;
use anyhow::{Context, bail};
use mediagen::settings::{Settings, key_variable};
use mediagen_domain::account::AccountView;
use mediagen_domain::credit::CreditPurchase;
use mediagen_domain::{AccountId, Money, Timestamp};
use mediagen_fal_sim::{AccountConfig, AccountUpdate, RunningSim, SimConfig, UnknownModelPolicy};
use mediagen_telegram_fake::{FakeConfig, FakeTelegram, SimUser};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The operator: receives the alerts and answers one of them.
pub const OPERATOR_ID: i64 = 900_001;

/// One fal account of the demo and the credit bought for it.
#[derive(Debug, Clone, Copy)]
pub struct DemoAccount {
    /// Its name in the bot's configuration and at the simulator.
    pub name: &'static str,
    /// The key the simulator accepts (a stand-in, not a secret).
    pub key: &'static str,
    /// Credit bought.
    pub bought: Money,
    /// How long ago it was bought: 26 days puts the purchase 2 days from leaving fal's
    /// 28-day window, so the bot warns the operator that the limit is about to drop.
    pub days_ago: i64,
}

/// The two accounts: $10 earns 10 requests at once, $100 earns 20.
pub const ACCOUNTS: [DemoAccount; 2] = [
    DemoAccount { name: "alpha", key: "sim-alpha:demo-secret", bought: Money::from_dollars(10), days_ago: 0 },
    DemoAccount { name: "beta", key: "sim-beta:demo-secret", bought: Money::from_dollars(100), days_ago: 26 },
];

/// An account with the limit the bot's credit-window rules give it.
#[derive(Debug, Clone)]
pub struct AccountLimit {
    /// The account.
    pub account: DemoAccount,
    /// Requests at once, from the purchases in the database.
    pub limit: u32,
    /// The limit after the next drop and when it happens, if one is ahead.
    pub next_drop: Option<(u32, Timestamp)>,
}

/// The two fakes, on free ports of 127.0.0.1.
pub struct Fakes {
    /// The fal simulator (queue, storage and CDN on one listener).
    pub fal: RunningSim,
    /// The fake Telegram Bot API.
    pub telegram: FakeTelegram,
}

impl Fakes {
    /// Starts both. The simulator's accounts start at limit 1; [`Fakes::set_limits`]
    /// gives them the limits the bot computes.
    ///
    /// # Errors
    /// When a listener cannot be bound.
    pub async fn start(options: &Options) -> anyhow::Result<Fakes> {
        let mut config = SimConfig::default().with_time_scale(options.time_scale);
        for account in ACCOUNTS {
            config = config.with_account(AccountConfig::new(account.name, account.key, 1));
        }
        config.seed = options.seed;
        // The catalog offers models the simulator's table does not list (flux-realism,
        // recraft, …): serve them as FLUX-style image models, as fal would run them.
        config.unknown_models = UnknownModelPolicy::Image;
        let fal = mediagen_fal_sim::spawn(config).await.context("starting the fal simulator")?;
        let telegram = mediagen_telegram_fake::spawn(FakeConfig { seed: options.seed, ..FakeConfig::default() })
            .await
            .context("starting the fake Bot API")?;
        Ok(Fakes { fal, telegram })
    }

    /// Gives each simulator account the bot's limit for it.
    pub fn set_limits(&self, limits: &[AccountLimit]) {
        for limit in limits {
            let update = AccountUpdate { limit: Some(limit.limit), ..AccountUpdate::default() };
            self.fal.handle().update_account(limit.account.name, &update);
        }
    }

    /// Stops both servers.
    pub async fn shutdown(self) {
        self.telegram.shutdown().await;
        self.fal.shutdown().await;
    }
}

/// The bot's settings: the shipped files with the environment pointing at the fakes and
/// the database, exactly as an operator would set it for real services.
///
/// # Errors
/// When the shipped configuration does not load.
pub fn bot_settings(options: &Options, fakes: &Fakes, db: &Database) -> anyhow::Result<Settings> {
    let fal_base = fakes.fal.base_url().trim_end_matches('/').to_owned();
    let accounts: Vec<String> =
        ACCOUNTS.iter().map(|a| format!("{{ name = \"{}\", keys = [\"primary\"] }}", a.name)).collect();
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut set = |name: &str, value: String| {
        vars.insert(name.to_owned(), value);
    };
    set("TELOXIDE_TOKEN", fakes.telegram.token().to_owned());
    set("DATABASE_URL", db.url().to_owned());
    set("MEDIAGEN__TELEGRAM__API_URL", fakes.telegram.api_url().to_string());
    set("MEDIAGEN__FAL__QUEUE_URL", fal_base.clone());
    set("MEDIAGEN__FAL__REST_URL", fal_base.clone());
    set("MEDIAGEN__FAL__CDN_URL", format!("{fal_base}/"));
    for account in ACCOUNTS {
        set(&key_variable(account.name, "primary"), account.key.to_owned());
    }
    set("MEDIAGEN__ADMIN__IDS", OPERATOR_ID.to_string());
    // The bot's own waits, shortened to the simulator's pace as the end-to-end tests do.
    // fal is polled as often relative to a job's length as with real fal (500 ms growing
    // to 5 s for jobs of several seconds); unscaled, a 0.6 s job would sit done at fal for
    // most of a poll interval and the demo would show idle slots that real use does not have.
    let scaled = |ms: f64, floor: f64| format!("{}", (ms / options.time_scale).max(floor).round());
    set("MEDIAGEN__FAL__POLL__INITIAL_INTERVAL_MS", scaled(500.0, 20.0));
    set("MEDIAGEN__FAL__POLL__MAX_INTERVAL_MS", scaled(5_000.0, 100.0));
    set("MEDIAGEN__TELEGRAM__ALBUM_WAIT_MS", "300".to_owned());
    set("MEDIAGEN__ENGINE__MEAN_SERVICE_SECS", "1".to_owned());
    set("MEDIAGEN__ENGINE__SHUTDOWN_GRACE_SECS", "5".to_owned());
    // The accounts are an array of tables: an operator's file says that, read once and removed.
    let overlay = std::env::temp_dir().join(format!("mediagen-demo-accounts-{}.toml", std::process::id()));
    std::fs::write(&overlay, format!("[fal]\naccounts = [{}]\n", accounts.join(", ")))
        .with_context(|| format!("cannot write {}", overlay.display()))?;
    let loaded = Settings::load(&options.home, Some(&overlay), &vars);
    let _ = std::fs::remove_file(&overlay);
    let settings =
        loaded.with_context(|| format!("loading the bot's configuration from {}/config", options.home.display()))?;
    settings.require_fal_keys()?;
    Ok(settings)
}

/// Registers the accounts and records their purchases through the storage port the bot
/// uses, then computes each limit with the bot's credit rules (`settings.credit`).
///
/// # Errors
/// When storage fails.
pub async fn record_purchases(db: &Database, settings: &Settings, now: Timestamp) -> anyhow::Result<Vec<AccountLimit>> {
    let store = &db.store().ports().accounts;
    let mut limits = Vec::new();
    for account in ACCOUNTS {
        let id = AccountId::new(account.name);
        let record = store.upsert_account(&id, &["primary".to_owned()]).await?;
        let purchased_at = now - chrono::TimeDelta::days(account.days_ago);
        store.add_purchase(&id, &CreditPurchase { amount: account.bought, purchased_at }).await?;
        let view = AccountView::new(record, &settings.credit, store.purchases(&id).await?, Vec::new(), now);
        let limit = view.limit;
        let next_drop = view.credit.limit_drops(now).into_iter().next().map(|drop| (drop.to, drop.at));
        limits.push(AccountLimit { account, limit, next_drop });
    }
    Ok(limits)
}

/// The real bot, running in a task of this process.
pub struct Bot {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Bot {
    /// Starts `mediagen::wiring::run` with these settings; the operator is known to the
    /// fake Bot API first so alerts can reach them before they write.
    pub fn start(settings: Settings, telegram: &FakeTelegram) -> Bot {
        telegram.add_user(&SimUser::new(OPERATOR_ID, "Operator").with_username("operator").with_language("en"));
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(mediagen::wiring::run(settings, shutdown));
        Bot { stop, task: Some(task) }
    }

    /// True while the bot task runs (it ends early only on a start-up error).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|task| !task.is_finished())
    }

    /// Signals shutdown and waits for the bot; the fake Bot API's long polls are answered
    /// at once when `telegram` shuts down, so the wait is short.
    ///
    /// # Errors
    /// What the bot returned, or a panic or a hang at shutdown.
    pub async fn stop(mut self, telegram: &FakeTelegram) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let Some(mut task) = self.task.take() else { return Ok(()) };
        // The engine ends its loops first; the Telegram loop ends with the long poll,
        // which the fake answers at once when it shuts down.
        let joined = match tokio::time::timeout(Duration::from_secs(3), &mut task).await {
            Ok(joined) => Ok(joined),
            Err(_) => {
                telegram.shutdown().await;
                tokio::time::timeout(Duration::from_secs(15), &mut task).await
            }
        };
        match joined {
            Ok(Ok(result)) => result.context("the bot stopped with an error"),
            Ok(Err(join)) => bail!("the bot task panicked: {join}"),
            Err(_) => {
                task.abort();
                bail!("the bot did not stop within 18 s of the shutdown signal")
            }
        }
    }

    /// Waits for an early end of the bot task (a start-up error) and returns why.
    pub async fn failure(&mut self) -> anyhow::Error {
        let Some(task) = self.task.take() else { return anyhow::anyhow!("the bot is not running") };
        match task.await {
            Ok(Ok(())) => anyhow::anyhow!("the bot stopped by itself"),
            Ok(Err(error)) => error.context("the bot could not start"),
            Err(join) => anyhow::anyhow!("the bot task panicked: {join}"),
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
