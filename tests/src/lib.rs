//! `Stack::start()`: the real bot (configuration, storage, fal adapter, engine, Telegram
//! adapter) running in-process against the fal simulator, the fake Bot API and a fresh
//! database of its own: a SQLite file (what users get by default) or a PostgreSQL database.
//! End-to-end tests drive it as users would; [`on_both_databases!`] runs one on each.

use mediagen::settings::Settings;
use mediagen_fal_sim::{AccountConfig, RunningSim, SimConfig};
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

/// A fal account of the stack: its name, concurrency limit, and whether the simulator
/// knows its key (an unknown key is refused with 401, as fal refuses a revoked key).
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
}

impl FalAccount {
    /// An account the simulator knows, with `limit` slots.
    pub fn new(name: &str, limit: u32) -> Self {
        FalAccount { name: name.to_owned(), limit, key_known: true, bad_keys: 0 }
    }

    /// The same account with `count` more keys that fal refuses, listed first.
    pub fn with_bad_keys(mut self, count: u32) -> Self {
        self.bad_keys = count;
        self
    }

    /// An account whose key the simulator refuses.
    pub fn refused(name: &str) -> Self {
        FalAccount { name: name.to_owned(), limit: 1, key_known: false, bad_keys: 0 }
    }

    /// The key the bot gets for it (the simulator accepts it when `key_known`).
    pub fn key(&self) -> String {
        if self.name == "main" { FAL_KEY.to_owned() } else { format!("sim-key-{}:secret", self.name) }
    }
}

/// The storage a stack runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Database {
    /// A SQLite file: what a user gets without a database server.
    #[default]
    Sqlite,
    /// A fresh database on the local PostgreSQL server: what several processes share.
    Postgres,
}

/// A fresh, migrated database of either kind, removed (file) or dropped (PostgreSQL) with
/// this value.
pub enum TestDb {
    /// A SQLite file of its own.
    Sqlite(mediagen_sqlite::testing::TestDb),
    /// A PostgreSQL database of its own.
    Postgres(Box<mediagen_postgres::testing::TestDb>),
}

impl TestDb {
    /// Creates and migrates a database of `kind`.
    ///
    /// # Panics
    /// When it cannot be created: the test cannot run without it.
    pub async fn fresh(kind: Database) -> TestDb {
        match kind {
            Database::Sqlite => TestDb::Sqlite(mediagen_sqlite::testing::fresh_database().await),
            Database::Postgres => TestDb::Postgres(Box::new(mediagen_postgres::testing::fresh_database().await)),
        }
    }

    /// Which kind it is.
    pub fn kind(&self) -> Database {
        match self {
            TestDb::Sqlite(_) => Database::Sqlite,
            TestDb::Postgres(_) => Database::Postgres,
        }
    }

    /// The `DATABASE_URL` the bot gets.
    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(db) => db.url(),
            TestDb::Postgres(db) => db.url(),
        }
    }

    /// The storage ports on this database, as the bot opens them.
    ///
    /// # Panics
    /// When the database cannot be opened.
    pub async fn storage(&self) -> mediagen::storage::Storage {
        mediagen::storage::open(&self.url(), 2).await.expect("open the test database")
    }
}

/// Runs `$body` with `$pool` bound to the database's own connection pool, whichever kind
/// it is: the SQL in it must read the same on SQLite and PostgreSQL.
#[macro_export]
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match &$db {
            $crate::TestDb::Sqlite(db) => {
                let $pool = db.pool();
                $body
            }
            $crate::TestDb::Postgres(db) => {
                let $pool = db.pool();
                $body
            }
        }
    };
}

/// Declares two tests named after the async function `$name(Database)`: `$name::on_sqlite`
/// and `$name::on_postgres`, so one scenario proves itself on both storage adapters.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name($crate::Database::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$name($crate::Database::Postgres).await
            }
        }
    };
}

/// What to change from the defaults.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// The storage (SQLite by default).
    pub database: Database,
    /// Extra `MEDIAGEN__…` variables.
    pub env: Vec<(String, String)>,
    /// A plans file's text replacing config/plans.toml.
    pub plans: Option<String>,
    /// Concurrency limit of the simulator's `main` account (default 4).
    pub fal_limit: Option<u32>,
    /// Several fal accounts instead of the one `main` account (written to an overlay
    /// settings file, keys as `FAL_KEY__<ACCOUNT>__K`).
    pub fal_accounts: Vec<FalAccount>,
    /// Simulated seconds per real second at the fal simulator (default 50: a 5 s job
    /// takes 0.1 s); lower keeps jobs at fal long enough to kill the bot meanwhile.
    pub fal_time_scale: Option<f64>,
    /// Keep the shipped per-chat rate limits (one send a second, 20 a minute) instead of
    /// the roomy ones of [`ROOMY_CHAT_LIMITS`].
    pub shipped_rate_limits: bool,
}

/// The per-chat rate limits most tests run with. A test user gets many answers in a few
/// seconds, which Telegram's per-chat pace would stretch to minutes; the sends still go
/// through the throttle, and the limit over all chats stays as shipped.
pub const ROOMY_CHAT_LIMITS: [(&str, &str); 2] = [
    ("MEDIAGEN__TELEGRAM__RATE_LIMITS__MESSAGES_PER_SEC_CHAT", "100"),
    ("MEDIAGEN__TELEGRAM__RATE_LIMITS__MESSAGES_PER_MIN_CHAT", "6000"),
];

/// The parts a bot runs against, without the bot: a fresh database, the fal simulator and
/// the fake Bot API, and the settings (environment and overlay file) pointing at them.
/// [`Stack`] runs the bot in-process on them; [`BotProcess`] runs the real binary.
pub struct Parts {
    /// The fake Bot API, to act as users and read what the bot said.
    pub telegram: FakeTelegram,
    /// The fal simulator, to read what fal saw and was paid.
    pub fal: RunningSim,
    /// The bot's database.
    pub db: TestDb,
    vars: HashMap<String, String>,
    overlay: Option<PathBuf>,
    scratch: ScratchDir,
}

impl Parts {
    /// Starts the database and the fakes, and writes the settings that point at them.
    ///
    /// # Panics
    /// When a part cannot start: the test cannot run without it.
    pub async fn start(options: StackOptions) -> Parts {
        let db = TestDb::fresh(options.database).await;
        let accounts = if options.fal_accounts.is_empty() {
            vec![FalAccount::new("main", options.fal_limit.unwrap_or(4))]
        } else {
            options.fal_accounts.clone()
        };
        let mut sim_config = SimConfig::default().with_time_scale(options.fal_time_scale.unwrap_or(50.0));
        for account in accounts.iter().filter(|a| a.key_known) {
            sim_config = sim_config.with_account(AccountConfig::new(&account.name, account.key(), account.limit));
        }
        let fal = mediagen_fal_sim::spawn(sim_config).await.expect("start the fal simulator");
        let telegram = mediagen_telegram_fake::spawn(FakeConfig::default()).await.expect("start the fake Bot API");

        static STACKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let stack = STACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch = std::env::temp_dir().join(format!("mediagen-e2e-{}-{stack}", std::process::id()));
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        let mut vars: HashMap<String, String> = HashMap::new();
        let mut set = |k: &str, v: String| {
            vars.insert(k.to_owned(), v);
        };
        let fal_base = fal.base_url().trim_end_matches('/').to_owned();
        set("TELOXIDE_TOKEN", telegram.token().to_owned());
        set("DATABASE_URL", db.url());
        set("MEDIAGEN__TELEGRAM__API_URL", telegram.api_url().to_string());
        set("MEDIAGEN__FAL__QUEUE_URL", fal_base.clone());
        set("MEDIAGEN__FAL__REST_URL", fal_base.clone());
        set("MEDIAGEN__FAL__CDN_URL", format!("{fal_base}/"));
        set("MEDIAGEN__ADMIN__IDS", ADMIN_ID.to_string());
        set("MEDIAGEN__TELEGRAM__ALBUM_WAIT_MS", "300".to_owned());
        set("MEDIAGEN__ENGINE__MEAN_SERVICE_SECS", "2".to_owned());
        set("MEDIAGEN__ENGINE__SHUTDOWN_GRACE_SECS", "2".to_owned());
        if !options.shipped_rate_limits {
            for (name, value) in ROOMY_CHAT_LIMITS {
                set(name, value.to_owned());
            }
        }
        let overlay = if options.fal_accounts.is_empty() {
            set("FAL_KEY", FAL_KEY.to_owned());
            None
        } else {
            // `[[fal.accounts]]` is an array of tables: an overlay file says it most simply.
            let mut text = String::from("[fal]\naccounts = [\n");
            for account in &accounts {
                let bad: Vec<String> = (1..=account.bad_keys).map(|i| format!("bad{i}")).collect();
                let names: Vec<String> =
                    bad.iter().chain(["k".to_owned()].iter()).map(|k| format!("\"{k}\"")).collect();
                text.push_str(&format!("  {{ name = \"{}\", keys = [{}] }},\n", account.name, names.join(", ")));
                set(&format!("FAL_KEY__{}__K", account.name.to_uppercase()), account.key());
                for name in &bad {
                    let key = format!("revoked-{}-{name}:secret", account.name);
                    set(&format!("FAL_KEY__{}__{}", account.name.to_uppercase(), name.to_uppercase()), key);
                }
            }
            text.push_str("]\n");
            let path = scratch.join("overlay.toml");
            std::fs::write(&path, text).expect("write the overlay");
            Some(path)
        };
        if let Some(plans) = &options.plans {
            let path = scratch.join("plans.toml");
            std::fs::write(&path, plans).expect("write plans");
            set("MEDIAGEN__PLANS_FILE", path.display().to_string());
        }
        for (k, v) in &options.env {
            set(k, v.clone());
        }
        Parts { telegram, fal, db, vars, overlay, scratch: ScratchDir(scratch) }
    }

    /// The settings' environment variables (secrets included: for the bot only).
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    /// The overlay settings file, when the options needed one.
    pub fn overlay(&self) -> Option<&Path> {
        self.overlay.as_deref()
    }

    /// The whole environment of a bot child process: [`Parts::vars`], `MEDIAGEN_HOME` (the
    /// workspace) and `MEDIAGEN_CONFIG` (the overlay, if any).
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.push(("MEDIAGEN_HOME".to_owned(), workspace().display().to_string()));
        if let Some(path) = &self.overlay {
            env.push(("MEDIAGEN_CONFIG".to_owned(), path.display().to_string()));
        }
        env.sort();
        env
    }

    /// A directory of this stack's own, removed with it.
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
}

/// A ledger total in micro-dollars for one user and kind (`hold`, `charge`, `refund`).
///
/// # Panics
/// When the query fails.
pub async fn ledger(db: &TestDb, user: i64, kind: &str) -> i64 {
    let sql = "SELECT CAST(SUM(amount_micros) AS BIGINT) FROM ledger WHERE user_id = $1 AND kind = $2";
    with_pool!(db, |pool| sqlx::query_scalar::<_, Option<i64>>(sql)
        .bind(user)
        .bind(kind)
        .fetch_one(pool)
        .await
        .expect("ledger query")
        .unwrap_or(0))
}

/// A temporary directory, removed when dropped.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `mediagen` binary `just test` builds before the tests (`cargo build -p mediagen`).
///
/// # Panics
/// When it is missing, saying how to build it.
pub fn bot_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| if dir.is_absolute() { dir } else { workspace().join(dir) })
        .unwrap_or_else(|| workspace().join("target"));
    let binary = target.join("debug").join("mediagen");
    assert!(
        binary.is_file(),
        "the bot binary {} is missing: run `cargo build -p mediagen` first (`just test` does)",
        binary.display()
    );
    binary
}

/// The real bot binary running `mediagen run` against [`Parts`], its log in the scratch
/// directory. Dropping it kills it.
pub struct BotProcess {
    child: tokio::process::Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl BotProcess {
    /// Starts `mediagen run` with the parts' environment plus `extra` variables.
    ///
    /// # Panics
    /// When the binary is missing or cannot start.
    pub fn spawn(parts: &Parts, extra: &[(&str, &str)], name: &str) -> BotProcess {
        let log = parts.scratch().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("bot log file");
        let mut command = tokio::process::Command::new(bot_binary());
        command
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,sqlx=warn")
            .envs(parts.child_env())
            .envs(extra.iter().map(|(k, v)| (*k, *v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .kill_on_drop(true);
        let child = command.spawn().expect("start the bot binary");
        BotProcess { child, log }
    }

    /// Starts `mediagen run` as a container would run it after a restart: PID 1 of a fresh
    /// PID namespace, under the host name `host`. Two such starts have the same host name
    /// and the same pid, as a restarted container does. Needs root (`unshare`).
    ///
    /// # Panics
    /// When the binary is missing or `unshare` cannot start.
    pub fn spawn_as_container(parts: &Parts, host: &str, name: &str) -> BotProcess {
        let log = parts.scratch().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("bot log file");
        let mut command = tokio::process::Command::new("unshare");
        command
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(bot_binary())
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,sqlx=warn")
            .env("HOSTNAME", host)
            .envs(parts.child_env())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .kill_on_drop(true);
        let child = command.spawn().expect("start the bot binary under unshare");
        BotProcess { child, log }
    }

    /// The process id.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// `kill -9`: no grace, no cleanup; waits until it is gone.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL the bot");
        let _ = self.child.wait().await;
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `lines` lines of its log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
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
    overlay: Option<PathBuf>,
    _scratch: ScratchDir,
}

/// Starts the bot in a task with these environment variables.
fn start_bot(
    vars: &HashMap<String, String>,
    overlay: Option<&Path>,
) -> (watch::Sender<bool>, JoinHandle<anyhow::Result<()>>) {
    let settings = Settings::load(&workspace(), overlay, vars).expect("settings load");
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
        let Parts { telegram, fal, db, vars, overlay, scratch } = Parts::start(options).await;
        let (stop, bot) = start_bot(&vars, overlay.as_deref());
        Stack { telegram, fal, db, stop, bot: Some(bot), vars, overlay, _scratch: scratch }
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
        let (stop, bot) = start_bot(&self.vars, self.overlay.as_deref());
        self.stop = stop;
        self.bot = Some(bot);
        self
    }

    /// Whether the bot's task has ended (it should run until stopped).
    pub fn is_finished(&self) -> bool {
        self.bot.as_ref().is_none_or(JoinHandle::is_finished)
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
        ledger(&self.db, user, kind).await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(bot) = self.bot.take() {
            bot.abort();
        }
    }
}
