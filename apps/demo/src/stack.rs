//! The demo's stack, started by `mediagen-stack`: two fal accounts and the credit bought
//! for them, the simulator and the bot at the demo's pace, and the accounts' purchases
//! recorded so the bot's own credit-window rules give their limits.

use crate::options::Options;
use mediagen::settings::Settings;
use mediagen_domain::account::AccountView;
use mediagen_domain::credit::CreditPurchase;
use mediagen_domain::{AccountId, Money, Timestamp};
use mediagen_fal_sim::{AccountUpdate, RunningSim, UnknownModelPolicy};
use mediagen_stack::{FalAccount, FreshDb, StackOptions};

/// The operator: receives the alerts and answers one of them.
pub const OPERATOR_ID: i64 = mediagen_stack::ADMIN_ID;

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

impl DemoAccount {
    /// The account as the stack configures it; limit 1 at the simulator until
    /// [`set_limits`] gives it the bot's.
    pub fn fal(&self) -> FalAccount {
        FalAccount::new(self.name, 1).with_key("primary", self.key)
    }
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

/// What the demo's stack is: its database, its accounts, the simulator at the demo's
/// pace and seed, and the bot's waits shortened to that pace.
pub fn stack_options(options: &Options) -> StackOptions {
    // fal is polled as often relative to a job's length as with real fal (500 ms growing
    // to 5 s for jobs of several seconds); unscaled, a 0.6 s job would sit done at fal for
    // most of a poll interval and the demo would show idle slots that real use does not have.
    let scaled = |ms: f64, floor: f64| format!("{}", (ms / options.time_scale).max(floor).round());
    let faster = |per: f64| format!("{}", (per * options.time_scale).ceil());
    let env = [
        ("MEDIAGEN__FAL__POLL__INITIAL_INTERVAL_MS", scaled(500.0, 20.0)),
        ("MEDIAGEN__FAL__POLL__MAX_INTERVAL_MS", scaled(5_000.0, 100.0)),
        ("MEDIAGEN__ENGINE__MEAN_SERVICE_SECS", "1".to_owned()),
        ("MEDIAGEN__ENGINE__SHUTDOWN_GRACE_SECS", "5".to_owned()),
        // Telegram's per-chat pace (one send a second, 20 a minute), sped up like the rest
        // of the demo: the throttle still paces each chat, at the demo's clock.
        ("MEDIAGEN__TELEGRAM__RATE_LIMITS__MESSAGES_PER_SEC_CHAT", faster(1.0)),
        ("MEDIAGEN__TELEGRAM__RATE_LIMITS__MESSAGES_PER_MIN_CHAT", faster(20.0)),
    ];
    StackOptions {
        database: options.storage.clone(),
        env: env.into_iter().map(|(name, value)| (name.to_owned(), value)).collect(),
        fal_accounts: ACCOUNTS.iter().map(DemoAccount::fal).collect(),
        fal_time_scale: Some(options.time_scale),
        seed: Some(options.seed),
        // The catalog offers models the simulator's table does not list (flux-realism,
        // recraft, …): serve them as FLUX-style image models, as fal would run them.
        unknown_models: Some(UnknownModelPolicy::Image),
        home: Some(options.home.clone()),
        shipped_rate_limits: true,
        ..StackOptions::default()
    }
}

/// Registers the accounts and records their purchases through the storage port the bot
/// uses, then computes each limit with the bot's credit rules (`settings.credit`).
///
/// # Errors
/// When storage fails.
pub async fn record_purchases(db: &FreshDb, settings: &Settings, now: Timestamp) -> anyhow::Result<Vec<AccountLimit>> {
    let store = db.storage().accounts;
    let mut limits = Vec::new();
    for account in ACCOUNTS {
        let id = AccountId::new(account.name);
        let record = store.upsert_account(&id, &account.fal().key_names()).await?;
        let purchased_at = now - chrono::TimeDelta::days(account.days_ago);
        store.add_purchase(&id, &CreditPurchase { amount: account.bought, purchased_at }).await?;
        let view = AccountView::new(record, &settings.credit, store.purchases(&id).await?, Vec::new(), now);
        let limit = view.limit;
        let next_drop = view.credit.limit_drops(now).into_iter().next().map(|drop| (drop.to, drop.at));
        limits.push(AccountLimit { account, limit, next_drop });
    }
    Ok(limits)
}

/// Gives each simulator account the bot's limit for it.
pub fn set_limits(fal: &RunningSim, limits: &[AccountLimit]) {
    for limit in limits {
        let update = AccountUpdate { limit: Some(limit.limit), ..AccountUpdate::default() };
        fal.handle().update_account(limit.account.name, &update);
    }
}
