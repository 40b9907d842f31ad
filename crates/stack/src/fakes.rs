//! The two outside services, faked: the fal simulator with the stack's accounts, and the
//! fake Telegram Bot API.

use crate::listen::Listen;
use anyhow::Context;
use mediagen_fal_sim::{AccountConfig, RunningSim, SimConfig, UnknownModelPolicy};
use mediagen_telegram_fake::{FakeConfig, FakeTelegram};

/// The fal key the simulator accepts for the `main` account.
pub const FAL_KEY: &str = "sim-key-main:secret";

/// Simulated seconds per real second at the fal simulator unless told otherwise: a 5 s
/// job takes 0.1 s.
pub const DEFAULT_TIME_SCALE: f64 = 50.0;

/// A fal account of the stack: its name, concurrency limit and key, and whether the
/// simulator knows the key (an unknown key is refused with 401, as fal refuses a revoked key).
#[derive(Debug, Clone)]
pub struct FalAccount {
    /// The account's name in the bot's configuration and in the simulator.
    pub name: String,
    /// Its concurrency limit at the simulator.
    pub limit: u32,
    /// False: the simulator does not know the key the bot is given for it.
    pub key_known: bool,
    /// Further keys configured for it that the simulator refuses (revoked keys among good ones).
    pub bad_keys: u32,
    /// The good key's name in the bot's configuration (`k` unless told).
    pub key_name: String,
    /// The good key's secret; `None`: [`FAL_KEY`] for `main`, a made-up one for the others.
    pub secret: Option<String>,
    /// The good key is an admin key at the simulator (it may read the account's billing);
    /// otherwise it is inference-only, as most keys are.
    pub admin: bool,
}

impl FalAccount {
    /// An account the simulator knows, with `limit` slots.
    pub fn new(name: &str, limit: u32) -> Self {
        FalAccount {
            name: name.to_owned(),
            limit,
            key_known: true,
            bad_keys: 0,
            key_name: "k".to_owned(),
            secret: None,
            admin: false,
        }
    }

    /// The same account with `count` more keys that fal refuses, listed first.
    pub fn with_bad_keys(mut self, count: u32) -> Self {
        self.bad_keys = count;
        self
    }

    /// The same account with its good key named `name` in the bot's configuration and
    /// holding `secret`.
    pub fn with_key(mut self, name: &str, secret: &str) -> Self {
        name.clone_into(&mut self.key_name);
        self.secret = Some(secret.to_owned());
        self
    }

    /// The same account with its good key an admin key at the simulator.
    pub fn with_admin_key(mut self) -> Self {
        self.admin = true;
        self
    }

    /// An account whose key the simulator refuses.
    pub fn refused(name: &str) -> Self {
        FalAccount { key_known: false, ..FalAccount::new(name, 1) }
    }

    /// The key the bot gets for it (the simulator accepts it when `key_known`).
    pub fn key(&self) -> String {
        match &self.secret {
            Some(secret) => secret.clone(),
            None if self.name == "main" => FAL_KEY.to_owned(),
            None => format!("sim-key-{}:secret", self.name),
        }
    }

    /// The names of its keys in the bot's configuration: the refused ones first, then the
    /// good one (whose secret is [`FalAccount::key`]).
    pub fn key_names(&self) -> Vec<String> {
        (1..=self.bad_keys).map(|i| format!("bad{i}")).chain([self.key_name.clone()]).collect()
    }

    /// The secret configured under one of [`FalAccount::key_names`].
    pub fn secret_of(&self, key_name: &str) -> String {
        if key_name == self.key_name { self.key() } else { format!("revoked-{}-{key_name}:secret", self.name) }
    }
}

/// How the fal simulator starts.
#[derive(Debug)]
pub struct FalSimOptions {
    /// Its accounts; those whose key it should not know are left out of it.
    pub accounts: Vec<FalAccount>,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    /// Seed of its draws (service times, faults); `None` keeps the simulator's default.
    pub seed: Option<u64>,
    /// What a model missing from its table gets; `None` keeps its default (404).
    pub unknown_models: Option<UnknownModelPolicy>,
    /// Where it listens.
    pub listen: Listen,
}

impl Default for FalSimOptions {
    /// One account `main` with 4 slots, at [`DEFAULT_TIME_SCALE`].
    fn default() -> Self {
        FalSimOptions {
            accounts: vec![FalAccount::new("main", 4)],
            time_scale: DEFAULT_TIME_SCALE,
            seed: None,
            unknown_models: None,
            listen: Listen::Ephemeral,
        }
    }
}

/// Starts the fal simulator (queue, storage and CDN on one listener).
///
/// # Errors
/// When the listener cannot be bound or the configuration is invalid.
pub async fn start_fal_sim(options: FalSimOptions) -> anyhow::Result<RunningSim> {
    let mut config = SimConfig::default().with_time_scale(options.time_scale);
    for account in options.accounts.iter().filter(|a| a.key_known) {
        let mut known = AccountConfig::new(&account.name, account.key(), account.limit);
        if account.admin {
            known = known.with_admin_key(account.key());
        }
        config = config.with_account(known);
    }
    if let Some(seed) = options.seed {
        config.seed = seed;
    }
    if let Some(policy) = options.unknown_models {
        config.unknown_models = policy;
    }
    let listener = options.listen.into_tokio().context("binding the fal simulator's listener")?;
    mediagen_fal_sim::spawn_on(listener, config).await.context("starting the fal simulator")
}

/// Starts the fake Telegram Bot API.
///
/// # Errors
/// When the listener cannot be bound.
pub async fn start_fake_telegram(seed: Option<u64>, listen: Listen) -> anyhow::Result<FakeTelegram> {
    let mut config = FakeConfig::default();
    if let Some(seed) = seed {
        config.seed = seed;
    }
    let listener = listen.into_tokio().context("binding the fake Bot API's listener")?;
    mediagen_telegram_fake::spawn_on(listener, config).await.context("starting the fake Bot API")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_with_the_refused_ones_first() {
        let main = FalAccount::new("main", 4);
        assert_eq!(main.key(), FAL_KEY);
        assert_eq!(main.key_names(), ["k"]);
        let other = FalAccount::new("b", 2).with_bad_keys(2);
        assert_eq!(other.key_names(), ["bad1", "bad2", "k"]);
        assert_eq!(other.secret_of("k"), "sim-key-b:secret");
        assert_eq!(other.secret_of("bad2"), "revoked-b-bad2:secret");
        let named = FalAccount::new("a", 1).with_key("primary", "s:1");
        assert_eq!((named.key(), named.key_names()), ("s:1".to_owned(), vec!["primary".to_owned()]));
        assert_eq!(named.secret_of("primary"), "s:1");
        assert!(!FalAccount::refused("x").key_known);
    }

    #[tokio::test]
    async fn the_simulator_and_the_fake_listen_where_they_are_told() {
        let Listen::Bound(socket) = Listen::bind_ephemeral().unwrap() else { unreachable!() };
        let addr = socket.local_addr().unwrap();
        let options = FalSimOptions { listen: Listen::Bound(socket), seed: Some(3), ..FalSimOptions::default() };
        let sim = start_fal_sim(options).await.unwrap();
        assert_eq!(sim.addr(), addr);
        assert_eq!(sim.handle().accounts().len(), 1);
        let telegram = start_fake_telegram(Some(3), Listen::Ephemeral).await.unwrap();
        assert!(telegram.base_url().to_string().starts_with("http://127.0.0.1:"));
        telegram.shutdown().await;
        sim.shutdown().await;
    }
}
