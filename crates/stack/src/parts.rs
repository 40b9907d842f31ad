//! [`Parts`]: what a bot runs against, without the bot, and the settings pointing at it.

use crate::db::{Closed, Database, FreshDb, ledger};
use crate::fakes::{DEFAULT_TIME_SCALE, FAL_KEY, FalAccount, FalSimOptions, start_fake_telegram, start_fal_sim};
use crate::listen::Listen;
use crate::workspace;
use anyhow::Context;
use mediagen::settings::{Settings, key_variable};
use mediagen_fal_sim::{RunningSim, UnknownModelPolicy};
use mediagen_telegram_fake::FakeTelegram;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The operator in every stack.
pub const ADMIN_ID: i64 = 900_001;

/// What to change from the defaults.
#[derive(Debug, Default)]
pub struct StackOptions {
    /// The storage (a throwaway SQLite file by default).
    pub database: Database,
    /// Extra variables of the bot's environment (`MEDIAGEN__…`), set last: they win.
    pub env: Vec<(String, String)>,
    /// A plans file's text replacing config/plans.toml.
    pub plans: Option<String>,
    /// Concurrency limit of the simulator's `main` account (default 4).
    pub fal_limit: Option<u32>,
    /// Several fal accounts instead of the one `main` account (written to an overlay
    /// settings file, keys as `FAL_KEY__<ACCOUNT>__<KEY>`).
    pub fal_accounts: Vec<FalAccount>,
    /// Simulated seconds per real second at the fal simulator (default 50: a 5 s job
    /// takes 0.1 s); lower keeps jobs at fal long enough to kill the bot meanwhile.
    pub fal_time_scale: Option<f64>,
    /// Seed of the simulator's and the fake Bot API's draws (their defaults otherwise).
    pub seed: Option<u64>,
    /// What the simulator does with a model missing from its table (404 by default).
    pub unknown_models: Option<UnknownModelPolicy>,
    /// Where `config/` lives (default: this workspace).
    pub home: Option<PathBuf>,
    /// Where the fal simulator listens.
    pub fal_listen: Listen,
    /// Where the fake Bot API listens.
    pub telegram_listen: Listen,
    /// Serve the bot's `/metrics` here (off by default, as shipped).
    pub metrics: Option<Listen>,
    /// Webhook mode, its server here at `/telegram` (long polling by default).
    pub webhook: Option<Listen>,
    /// Keep the shipped per-chat rate limits (one send a second, 20 a minute) instead of
    /// the roomy ones of [`ROOMY_CHAT_LIMITS`].
    pub shipped_rate_limits: bool,
}

/// The per-chat rate limits most stacks run with. A test user gets many answers in a few
/// seconds, which Telegram's per-chat pace would stretch to minutes; the sends still go
/// through the throttle, and the limit over all chats stays as shipped.
pub const ROOMY_CHAT_LIMITS: [(&str, &str); 2] = [
    ("MEDIAGEN__TELEGRAM__RATE_LIMITS__MESSAGES_PER_SEC_CHAT", "100"),
    ("MEDIAGEN__TELEGRAM__RATE_LIMITS__MESSAGES_PER_MIN_CHAT", "6000"),
];

/// The parts a bot runs against, without the bot: a fresh database, the fal simulator and
/// the fake Bot API, and the settings (environment and overlay file) pointing at them.
/// [`crate::Stack`] runs the bot in-process on them; [`crate::BotProcess`] runs the real binary.
pub struct Parts {
    /// The fake Bot API, to act as users and read what the bot said.
    pub telegram: FakeTelegram,
    /// The fal simulator, to read what fal saw and was paid.
    pub fal: RunningSim,
    /// The bot's database.
    pub db: FreshDb,
    home: PathBuf,
    vars: HashMap<String, String>,
    overlay: Option<PathBuf>,
    /// Held from the start so the address stays ours; the first bot to start takes it.
    metrics: Mutex<Option<std::net::TcpListener>>,
    metrics_addr: Option<SocketAddr>,
    webhook_url: Option<String>,
    scratch: ScratchDir,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The variables hold secrets: only their names.
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Parts")
            .field("fal", &self.fal.base_url())
            .field("telegram", &self.telegram.base_url())
            .field("db", &self.db)
            .field("vars", &names)
            .finish_non_exhaustive()
    }
}

impl Parts {
    /// Starts the database and the fakes, and writes the settings that point at them.
    ///
    /// # Panics
    /// When a part cannot start: a test cannot run without it.
    pub async fn start(options: StackOptions) -> Parts {
        Parts::try_start(options).await.expect("start the stack's parts")
    }

    /// [`Parts::start`] that says what failed instead of panicking.
    ///
    /// # Errors
    /// When the database cannot be made or a listener cannot be bound.
    pub async fn try_start(options: StackOptions) -> anyhow::Result<Parts> {
        let StackOptions {
            database,
            env,
            plans,
            fal_limit,
            fal_accounts,
            fal_time_scale,
            seed,
            unknown_models,
            home,
            fal_listen,
            telegram_listen,
            metrics,
            webhook,
            shipped_rate_limits,
        } = options;
        let db = FreshDb::create(&database).await?;
        let one_account = fal_accounts.is_empty();
        let accounts = if one_account { vec![FalAccount::new("main", fal_limit.unwrap_or(4))] } else { fal_accounts };
        let fal = start_fal_sim(FalSimOptions {
            accounts: accounts.clone(),
            time_scale: fal_time_scale.unwrap_or(DEFAULT_TIME_SCALE),
            seed,
            unknown_models,
            listen: fal_listen,
        })
        .await?;
        let telegram = start_fake_telegram(seed, telegram_listen).await?;

        static STACKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let stack = STACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch = ScratchDir(std::env::temp_dir().join(format!("mediagen-stack-{}-{stack}", std::process::id())));
        std::fs::create_dir_all(&scratch.0).with_context(|| format!("creating {}", scratch.0.display()))?;
        let mut vars: HashMap<String, String> = HashMap::new();
        let mut set = |k: &str, v: String| {
            vars.insert(k.to_owned(), v);
        };
        let fal_base = fal.base_url().trim_end_matches('/').to_owned();
        set("TELOXIDE_TOKEN", telegram.token().to_owned());
        set("DATABASE_URL", db.url().to_owned());
        set("MEDIAGEN__TELEGRAM__API_URL", telegram.api_url().to_string());
        set("MEDIAGEN__FAL__QUEUE_URL", fal_base.clone());
        set("MEDIAGEN__FAL__REST_URL", fal_base.clone());
        set("MEDIAGEN__FAL__CDN_URL", format!("{fal_base}/"));
        set("MEDIAGEN__FAL__PLATFORM_URL", fal_base.clone());
        set("MEDIAGEN__ADMIN__IDS", ADMIN_ID.to_string());
        // The bot's own waits, shortened to the simulator's pace.
        set("MEDIAGEN__TELEGRAM__ALBUM_WAIT_MS", "300".to_owned());
        set("MEDIAGEN__ENGINE__MEAN_SERVICE_SECS", "2".to_owned());
        set("MEDIAGEN__ENGINE__SHUTDOWN_GRACE_SECS", "2".to_owned());
        if !shipped_rate_limits {
            for (name, value) in ROOMY_CHAT_LIMITS {
                set(name, value.to_owned());
            }
        }
        let overlay = if one_account {
            set("FAL_KEY", FAL_KEY.to_owned());
            None
        } else {
            // `[[fal.accounts]]` is an array of tables: an overlay file says it most simply.
            let mut text = String::from("[fal]\naccounts = [\n");
            for account in &accounts {
                let names = account.key_names();
                let quoted: Vec<String> = names.iter().map(|k| format!("\"{k}\"")).collect();
                text.push_str(&format!("  {{ name = \"{}\", keys = [{}] }},\n", account.name, quoted.join(", ")));
                for name in &names {
                    set(&key_variable(&account.name, name), account.secret_of(name));
                }
            }
            text.push_str("]\n");
            let path = scratch.0.join("overlay.toml");
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Some(path)
        };
        if let Some(plans) = &plans {
            let path = scratch.0.join("plans.toml");
            std::fs::write(&path, plans).with_context(|| format!("writing {}", path.display()))?;
            set("MEDIAGEN__PLANS_FILE", path.display().to_string());
        }
        let (metrics, metrics_addr) = match metrics {
            None => (None, None),
            Some(listen) => {
                let socket = listen.into_std().context("binding the bot's metrics listener")?;
                let addr = socket.local_addr()?;
                set("MEDIAGEN__METRICS__LISTEN", addr.to_string());
                (Some(socket), Some(addr))
            }
        };
        let webhook_url = match webhook {
            None => None,
            Some(listen) => {
                let addr = listen.into_address().context("choosing the bot's webhook address")?;
                let url = format!("http://{addr}/telegram");
                set("MEDIAGEN__TELEGRAM__WEBHOOK_URL", url.clone());
                set("MEDIAGEN__TELEGRAM__WEBHOOK_LISTEN", addr.to_string());
                Some(url)
            }
        };
        for (k, v) in env {
            set(&k, v);
        }
        Ok(Parts {
            telegram,
            fal,
            db,
            home: home.unwrap_or_else(workspace),
            vars,
            overlay,
            metrics: Mutex::new(metrics),
            metrics_addr,
            webhook_url,
            scratch,
        })
    }

    /// The settings' environment variables (secrets included: for the bot only).
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    /// Sets one of the bot's environment variables for the next bot started on these parts.
    pub fn set_var(&mut self, name: &str, value: String) {
        self.vars.insert(name.to_owned(), value);
    }

    /// The overlay settings file, when the options needed one.
    pub fn overlay(&self) -> Option<&Path> {
        self.overlay.as_deref()
    }

    /// Where `config/` lives.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The bot's settings as it will load them: the shipped files under [`Parts::home`],
    /// the overlay and [`Parts::vars`].
    ///
    /// # Errors
    /// When the configuration does not load.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        Settings::load(&self.home, self.overlay(), &self.vars)
            .with_context(|| format!("loading the bot's configuration from {}/config", self.home.display()))
    }

    /// Where the bot serves `/metrics`, when asked for.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The URL the bot registers as its webhook, in webhook mode.
    pub fn webhook_url(&self) -> Option<&str> {
        self.webhook_url.as_deref()
    }

    /// The metrics socket held for the bot, once: whoever starts the bot first takes it.
    pub(crate) fn take_metrics_listener(&self) -> Option<std::net::TcpListener> {
        self.metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    /// The whole environment of a bot child process: [`Parts::vars`], `MEDIAGEN_HOME` (where
    /// `config/` lives) and `MEDIAGEN_CONFIG` (the overlay, if any).
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.push(("MEDIAGEN_HOME".to_owned(), self.home.display().to_string()));
        if let Some(path) = &self.overlay {
            env.push(("MEDIAGEN_CONFIG".to_owned(), path.display().to_string()));
        }
        env.sort();
        env
    }

    /// A directory of these parts' own, removed with them.
    pub fn scratch(&self) -> &Path {
        &self.scratch.0
    }

    /// A ledger total in micro-dollars for one user and kind (`hold`, `charge`, `refund`).
    ///
    /// # Panics
    /// When the query fails.
    pub async fn ledger(&self, user: i64, kind: &str) -> i64 {
        ledger(&self.db, user, kind).await
    }

    /// Shuts the fakes down and removes the database, saying what was removed.
    ///
    /// # Errors
    /// When the database cannot be removed.
    pub async fn shutdown(self) -> anyhow::Result<Closed> {
        let Parts { telegram, fal, db, .. } = self;
        telegram.shutdown().await;
        fal.shutdown().await;
        db.close().await
    }
}

/// A temporary directory, removed when dropped.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
