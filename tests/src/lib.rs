//! `Stack::start()`: the real bot (configuration, Postgres storage, fal adapter, engine,
//! Telegram adapter) running in-process against the fal simulator, the fake Bot API and a
//! fresh database of its own. End-to-end tests drive it as users would.

use mediagen::settings::Settings;
use mediagen_fal_sim::{AccountConfig, RunningSim, SimConfig};
use mediagen_postgres::testing::{TestDb, fresh_database};
use mediagen_telegram_fake::{FakeConfig, FakeTelegram};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The operator in every stack.
pub const ADMIN_ID: i64 = 900_001;
/// The fal key the simulator accepts for the `main` account.
pub const FAL_KEY: &str = "sim-key-main:secret";

/// A valid 1x1 PNG: the smallest picture any decoder accepts.
pub fn tiny_png() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00,
        0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF,
        0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ]
}

/// What to change from the defaults.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// Extra `MEDIAGEN__…` variables.
    pub env: Vec<(String, String)>,
    /// A plans file's text replacing config/plans.toml.
    pub plans: Option<String>,
    /// Concurrency limit of the simulator's `main` account (default 4).
    pub fal_limit: Option<u32>,
}

/// A running stack. Dropping it stops the bot, the fakes, and drops the database.
pub struct Stack {
    /// The fake Bot API, to act as users and read what the bot said.
    pub telegram: FakeTelegram,
    /// The fal simulator, to read what fal saw and was paid.
    pub fal: RunningSim,
    /// The bot's database.
    pub db: TestDb,
    stop: watch::Sender<bool>,
    bot: Option<JoinHandle<anyhow::Result<()>>>,
    vars: HashMap<String, String>,
    _scratch: Option<PathBuf>,
}

/// Starts the bot in a task with these environment variables.
fn start_bot(vars: &HashMap<String, String>) -> (watch::Sender<bool>, JoinHandle<anyhow::Result<()>>) {
    let settings = Settings::load(&workspace(), None, vars).expect("settings load");
    let (stop, shutdown) = watch::channel(false);
    (stop, tokio::spawn(mediagen::wiring::run(settings, shutdown)))
}

/// The workspace root (where `config/` lives).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Stack {
    /// Starts everything with the shipped configuration pointed at the local fakes.
    ///
    /// # Panics
    /// When a part cannot start: the test cannot run without it.
    pub async fn start(options: StackOptions) -> Stack {
        let db = fresh_database().await;
        let limit = options.fal_limit.unwrap_or(4);
        let sim_config =
            SimConfig::default().with_account(AccountConfig::new("main", FAL_KEY, limit)).with_time_scale(50.0);
        let fal = mediagen_fal_sim::spawn(sim_config).await.expect("start the fal simulator");
        let telegram = mediagen_telegram_fake::spawn(FakeConfig::default()).await.expect("start the fake Bot API");

        let mut vars: HashMap<String, String> = HashMap::new();
        let mut set = |k: &str, v: String| {
            vars.insert(k.to_owned(), v);
        };
        let fal_base = fal.base_url().trim_end_matches('/').to_owned();
        set("TELOXIDE_TOKEN", telegram.token().to_owned());
        set("FAL_KEY", FAL_KEY.to_owned());
        set("DATABASE_URL", db.url());
        set("MEDIAGEN__TELEGRAM__API_URL", telegram.api_url().to_string());
        set("MEDIAGEN__FAL__QUEUE_URL", fal_base.clone());
        set("MEDIAGEN__FAL__REST_URL", fal_base.clone());
        set("MEDIAGEN__FAL__CDN_URL", format!("{fal_base}/"));
        set("MEDIAGEN__ADMIN__IDS", ADMIN_ID.to_string());
        set("MEDIAGEN__TELEGRAM__ALBUM_WAIT_MS", "300".to_owned());
        set("MEDIAGEN__ENGINE__MEAN_SERVICE_SECS", "2".to_owned());
        set("MEDIAGEN__ENGINE__SHUTDOWN_GRACE_SECS", "2".to_owned());
        let scratch = options.plans.as_ref().map(|plans| {
            let dir = std::env::temp_dir().join(format!("mediagen-e2e-{}", db.name()));
            std::fs::create_dir_all(&dir).expect("scratch dir");
            let path = dir.join("plans.toml");
            std::fs::write(&path, plans).expect("write plans");
            path
        });
        if let Some(path) = &scratch {
            set("MEDIAGEN__PLANS_FILE", format!("\"{}\"", path.display()));
        }
        for (k, v) in &options.env {
            set(k, v.clone());
        }
        let (stop, bot) = start_bot(&vars);
        let scratch = scratch.map(|p| p.parent().map(Path::to_path_buf).unwrap_or(p));
        Stack { telegram, fal, db, stop, bot: Some(bot), vars, _scratch: scratch }
    }

    /// Stops the bot (gracefully) and starts it again with another `DATABASE_URL`; the
    /// fakes and the database stay as they are.
    ///
    /// # Panics
    /// When the bot fails to stop cleanly.
    pub async fn restart_with_database_url(mut self, url: String) -> Stack {
        let _ = self.stop.send(true);
        let bot = self.bot.take().expect("running");
        bot.await.expect("the bot task panicked").expect("the bot stopped cleanly");
        self.vars.insert("DATABASE_URL".to_owned(), url);
        let (stop, bot) = start_bot(&self.vars);
        self.stop = stop;
        self.bot = Some(bot);
        self
    }

    /// Stops the bot and waits for it, returning what it returned.
    ///
    /// # Panics
    /// When the bot task panicked.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let bot = self.bot.take().expect("stopped once");
        bot.await.expect("the bot task panicked")
    }

    /// A ledger total in micro-dollars for one user and kind (`hold`, `charge`, `refund`).
    ///
    /// # Panics
    /// When the query fails.
    pub async fn ledger(&self, user: i64, kind: &str) -> i64 {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT SUM(amount_micros)::BIGINT FROM ledger WHERE user_id = $1 AND kind = $2",
        )
        .bind(user)
        .bind(kind)
        .fetch_one(self.db.pool())
        .await
        .expect("ledger query")
        .unwrap_or(0)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(bot) = self.bot.take() {
            bot.abort();
        }
        if let Some(dir) = &self._scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
