//! Layered configuration: `config/default.toml`, then the operator's file
//! (`MEDIAGEN_CONFIG`), then `MEDIAGEN__SECTION__KEY` variables, then secrets from the
//! environment. Secrets are `SecretString`s and
//! the settings' `Debug` never shows them.

use anyhow::{Context, bail};
use chrono::{NaiveTime, Weekday};
use mediagen_domain::budget::BudgetPolicy;
use mediagen_domain::catalog::{BUILTIN_TOML, Catalog};
use mediagen_domain::credit::CreditPolicy;
use mediagen_domain::planner::PlannerSettings;
use mediagen_domain::quota::Plans;
use mediagen_fal::{FalAccountConfig, FalConfig, FalKey};
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Everything the app reads before it starts.
pub struct Settings {
    /// Operators' Telegram user ids.
    pub admins: Vec<i64>,
    /// Telegram front end.
    pub telegram: TelegramSettings,
    /// Log output.
    pub log: LogSettings,
    /// The bot token (`TELOXIDE_TOKEN`).
    pub bot_token: Option<SecretString>,
    /// The database URL (`DATABASE_URL`); may carry a password.
    pub database_url: Option<SecretString>,
    /// Pool size.
    pub database_max_connections: u32,
    /// fal adapter configuration, keys included.
    pub fal: FalConfig,
    /// Engine tuning.
    pub engine: EngineSettings,
    /// The operator's budget alerts.
    pub budget: BudgetPolicy,
    /// Credit-window tiers and lock threshold.
    pub credit: CreditPolicy,
    /// Model catalog and price table.
    pub catalog: Catalog,
    /// Quota plans.
    pub plans: Plans,
    /// Environment variables of fal keys that are configured but not set.
    pub missing_fal_keys: Vec<String>,
    /// When the daily and weekly summaries go out.
    pub reports: ReportSchedule,
    /// Thresholds of the credit and capacity alerts.
    pub alerts: AlertSettings,
    /// The capacity planner's target and history.
    pub planner: PlannerSettings,
    /// The Prometheus endpoint.
    pub metrics: MetricsSettings,
}

/// `[reports]`, parsed: UTC times of the scheduled summaries (`None` = off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSchedule {
    /// The daily summary of the previous UTC day.
    pub daily_at: Option<NaiveTime>,
    /// The weekly summary of the seven days before.
    pub weekly_at: Option<(Weekday, NaiveTime)>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ReportFile {
    daily_at: String,
    weekly_at: String,
}

impl Default for ReportFile {
    fn default() -> Self {
        ReportFile { daily_at: "08:00".into(), weekly_at: "mon 08:00".into() }
    }
}

fn time_of_day(text: &str) -> anyhow::Result<NaiveTime> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M")
        .with_context(|| format!("{text:?} is not a time of day (HH:MM, UTC)"))
}

impl ReportFile {
    fn parse(self) -> anyhow::Result<ReportSchedule> {
        let daily_at = match self.daily_at.trim() {
            "" => None,
            text => Some(time_of_day(text).context("[reports] daily_at")?),
        };
        let weekly_at = match self.weekly_at.trim() {
            "" => None,
            text => {
                let (day, time) = text
                    .split_once(char::is_whitespace)
                    .context("[reports] weekly_at must be a weekday and a time, e.g. \"mon 08:00\"")?;
                let day: Weekday =
                    day.parse().map_err(|_| anyhow::anyhow!("[reports] weekly_at: {day:?} is not a weekday"))?;
                Some((day, time_of_day(time).context("[reports] weekly_at")?))
            }
        };
        Ok(ReportSchedule { daily_at, weekly_at })
    }
}

/// `[alerts]`: when credit and capacity alerts fire.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// Warn when an account's credit runs out within this many days at the current burn.
    pub balance_warning_days: i64,
    /// The burn rate is the average daily spend over this many days.
    pub burn_window_days: i64,
    /// Warn when unspent credit expires within this many days.
    pub expiry_warning_days: i64,
    /// Alert when today's busy time at full capacity with jobs waiting reaches this percent.
    pub saturation_percent: f64,
    /// ...once the day has had at least this many busy minutes.
    pub saturation_min_busy_minutes: i64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            balance_warning_days: 7,
            burn_window_days: 7,
            expiry_warning_days: 30,
            saturation_percent: 20.0,
            saturation_min_busy_minutes: 30,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// `host:port` to serve `GET /metrics` on; empty turns it off.
    pub listen: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("admins", &self.admins)
            .field("telegram", &self.telegram)
            .field("bot_token", &self.bot_token.as_ref().map(|_| "[REDACTED]"))
            .field("database_url", &self.database_url.as_ref().map(|_| "[REDACTED]"))
            .field("fal", &self.fal)
            .field("engine", &self.engine)
            .field("reports", &self.reports)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

/// `[telegram]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    /// Bot API base URL (a local fake in tests and the demo).
    pub api_url: String,
    /// Requests per user per window.
    pub flood_limit: u32,
    /// The flood window in seconds.
    pub flood_window_secs: u64,
    /// Wait for the rest of an album, in milliseconds.
    pub album_wait_ms: u64,
    /// Public HTTPS URL for webhook mode; empty means long polling.
    #[serde(default)]
    pub webhook_url: String,
    /// Local address the webhook server listens on.
    #[serde(default = "default_webhook_listen")]
    pub webhook_listen: String,
    /// The pace the Bot API client keeps its sends to.
    #[serde(default)]
    pub rate_limits: RateLimits,
}

/// `[telegram.rate_limits]`: Telegram's limits on the bot's sends, which the Bot API client
/// keeps to by holding each send until it fits. Telegram's documented figures by default
/// (teloxide's `Limits::default()`); an operator whose limits @BotSupport raised says so here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Sends to one chat per second.
    pub messages_per_sec_chat: u32,
    /// Sends to one private chat or basic group per minute.
    pub messages_per_min_chat: u32,
    /// Sends to one channel or supergroup per minute.
    pub messages_per_min_channel_or_supergroup: u32,
    /// Sends to all chats together per second.
    pub messages_per_sec_overall: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        let limits = mediagen_telegram::Limits::default();
        RateLimits {
            messages_per_sec_chat: limits.messages_per_sec_chat,
            messages_per_min_chat: limits.messages_per_min_chat,
            messages_per_min_channel_or_supergroup: limits.messages_per_min_channel_or_supergroup,
            messages_per_sec_overall: limits.messages_per_sec_overall,
        }
    }
}

impl RateLimits {
    /// A zero would hold every send forever (and the client's queue cannot be empty-sized).
    fn check(&self) -> anyhow::Result<()> {
        for (name, value) in [
            ("messages_per_sec_chat", self.messages_per_sec_chat),
            ("messages_per_min_chat", self.messages_per_min_chat),
            ("messages_per_min_channel_or_supergroup", self.messages_per_min_channel_or_supergroup),
            ("messages_per_sec_overall", self.messages_per_sec_overall),
        ] {
            if value == 0 {
                bail!("[telegram.rate_limits] {name} must be at least 1");
            }
        }
        Ok(())
    }
}

impl From<RateLimits> for mediagen_telegram::Limits {
    fn from(limits: RateLimits) -> Self {
        mediagen_telegram::Limits {
            messages_per_sec_chat: limits.messages_per_sec_chat,
            messages_per_min_chat: limits.messages_per_min_chat,
            messages_per_min_channel_or_supergroup: limits.messages_per_min_channel_or_supergroup,
            messages_per_sec_overall: limits.messages_per_sec_overall,
        }
    }
}

fn default_webhook_listen() -> String {
    "0.0.0.0:8443".to_owned()
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `pretty` or `json`.
    pub format: String,
}

/// `[engine]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Extra jobs per account in fal's own queue.
    pub overhang: u32,
    /// Most jobs claimed at once.
    pub claim_batch: u32,
    /// Lease length.
    pub lease_secs: u64,
    /// Mean job time for wait estimates.
    pub mean_service_secs: u64,
    /// Following after a shutdown signal.
    pub shutdown_grace_secs: u64,
    /// How often expired leases are looked for (jobs of a process that died).
    #[serde(default = "default_rescue_secs")]
    pub rescue_secs: u64,
    /// Tries of a job after upstream failures before it fails refunded.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The longest a job may spend at fal, queued and running, from fal's acceptance.
    #[serde(default = "default_follow_deadline_secs")]
    pub follow_deadline_secs: u64,
    /// Warn before a credit-window drop.
    pub limit_drop_warning_days: i64,
}

fn default_rescue_secs() -> u64 {
    60
}

fn default_max_attempts() -> u32 {
    3
}

fn default_follow_deadline_secs() -> u64 {
    15 * 60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    catalog_overrides: Vec<PathBuf>,
    plans_file: PathBuf,
    admin: AdminSettings,
    telegram: TelegramSettings,
    log: LogSettings,
    database: DatabaseSettings,
    engine: EngineSettings,
    #[serde(default)]
    budget: BudgetPolicy,
    #[serde(default)]
    credit: CreditPolicy,
    fal: toml::Table,
    #[serde(default)]
    reports: ReportFile,
    #[serde(default)]
    alerts: AlertSettings,
    #[serde(default)]
    planner: PlannerSettings,
    #[serde(default)]
    metrics: MetricsSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminSettings {
    ids: IdList,
}

/// Operator ids as a TOML array, one integer, or the comma-separated text of
/// `MEDIAGEN__ADMIN__IDS=111,222`.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdList {
    List(Vec<i64>),
    One(i64),
    Text(String),
}

impl IdList {
    fn ids(self) -> anyhow::Result<Vec<i64>> {
        match self {
            IdList::List(ids) => Ok(ids),
            IdList::One(id) => Ok(vec![id]),
            IdList::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<i64>().with_context(|| format!("admin id {s:?} is not a Telegram user id")))
                .collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseSettings {
    max_connections: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountSettings {
    name: String,
    keys: Vec<String>,
}

/// The three layers through the `config` crate: the shipped file, the operator's file,
/// then `MEDIAGEN__SECTION__KEY` variables (numbers and booleans read as such, the rest as
/// text). Secrets are not read here: they come from their own variables only.
fn layers(base_dir: &Path, overlay: Option<&Path>, vars: &HashMap<String, String>) -> anyhow::Result<FileSettings> {
    let file = |path: &Path| config::File::new(&path.to_string_lossy(), config::FileFormat::Toml);
    let mut builder = config::Config::builder().add_source(file(&base_dir.join("config/default.toml")));
    if let Some(path) = overlay {
        builder = builder.add_source(file(path));
    }
    let environment = config::Environment::with_prefix("MEDIAGEN")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .source(Some(vars.iter().map(|(name, value)| (name.clone(), value.clone())).collect()));
    builder
        .add_source(environment)
        .build()
        .context("cannot read the configuration")?
        .try_deserialize()
        .context("configuration has a wrong or unknown setting")
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The environment variable that holds one fal key.
pub fn key_variable(account: &str, key: &str) -> String {
    let clean = |s: &str| {
        s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect::<String>()
    };
    format!("FAL_KEY__{}__{}", clean(account), clean(key))
}

fn take_string(table: &mut toml::Table, key: &str) -> anyhow::Result<Option<String>> {
    match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(other) => bail!("[fal] {key} must be text, not {other}"),
    }
}

impl Settings {
    /// Loads the settings from `base_dir` (where `config/` lives), an optional overlay
    /// file and the environment `vars` (passed in, so tests need not touch the process's).
    ///
    /// # Errors
    /// A readable message naming the file, setting or variable at fault.
    pub fn load(base_dir: &Path, overlay: Option<&Path>, vars: &HashMap<String, String>) -> anyhow::Result<Settings> {
        let env = |name: &str| vars.get(name).filter(|v| !v.is_empty()).cloned();
        let file = layers(base_dir, overlay, vars)?;
        file.telegram.rate_limits.check()?;

        let mut layers = vec![BUILTIN_TOML.to_owned()];
        for path in &file.catalog_overrides {
            layers.push(read(&base_dir.join(path))?);
        }
        let layer_refs: Vec<&str> = layers.iter().map(String::as_str).collect();
        let catalog = Catalog::from_toml_layers(&layer_refs).context("model catalog")?;
        let plans = Plans::from_toml(&read(&base_dir.join(&file.plans_file))?).context("quota plans")?;

        let mut fal_table = file.fal;
        let accounts_value = fal_table.remove("accounts").unwrap_or(toml::Value::Array(Vec::new()));
        let accounts: Vec<AccountSettings> = accounts_value.try_into().context("[[fal.accounts]]")?;
        let queue_url = take_string(&mut fal_table, "queue_url")?;
        let rest_url = take_string(&mut fal_table, "rest_url")?;
        let cdn_url = take_string(&mut fal_table, "cdn_url")?;
        let mut fal: FalConfig = toml::Value::Table(fal_table).try_into().context("[fal]")?;
        if let Some(url) = queue_url {
            fal.queue_base = url;
        }
        if let Some(url) = rest_url {
            fal.rest_base = url;
        }
        if let Some(url) = cdn_url.filter(|u| !u.is_empty()) {
            fal.cdn_bases = vec![url];
        }
        let single_key = env("FAL_KEY");
        let total_keys: usize = accounts.iter().map(|a| a.keys.len()).sum();
        let mut missing_fal_keys = Vec::new();
        for account in accounts {
            let mut keys = Vec::new();
            for name in account.keys {
                let variable = key_variable(&account.name, &name);
                let secret = match (env(&variable), &single_key) {
                    (Some(secret), _) => secret,
                    (None, Some(secret)) if total_keys == 1 => secret.clone(),
                    _ => {
                        missing_fal_keys.push(variable);
                        continue;
                    }
                };
                keys.push(FalKey { name, secret: SecretString::from(secret) });
            }
            fal.accounts.push(FalAccountConfig { name: account.name, keys });
        }

        Ok(Settings {
            admins: file.admin.ids.ids()?,
            telegram: file.telegram,
            log: file.log,
            bot_token: env("TELOXIDE_TOKEN").map(SecretString::from),
            database_url: env("DATABASE_URL").map(SecretString::from),
            database_max_connections: file.database.max_connections,
            fal,
            engine: file.engine,
            budget: file.budget,
            credit: file.credit,
            catalog,
            plans,
            missing_fal_keys,
            reports: file.reports.parse()?,
            alerts: file.alerts,
            planner: file.planner,
            metrics: file.metrics,
        })
    }

    /// Fails, naming the variables, when a configured fal key is not in the environment.
    ///
    /// # Errors
    /// The list of missing variables.
    pub fn require_fal_keys(&self) -> anyhow::Result<()> {
        if self.missing_fal_keys.is_empty() {
            return Ok(());
        }
        bail!(
            "fal keys are missing: set {} (or FAL_KEY when there is one account with one key)",
            self.missing_fal_keys.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mediagen-settings-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("local.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn shipped_files_load_with_a_single_fal_key_and_hide_secrets() {
        let env = env_of(&[
            ("FAL_KEY", "id:secret-xyz"),
            ("TELOXIDE_TOKEN", "123:ABC"),
            ("DATABASE_URL", "postgres://u:pw-789@h/db"),
        ]);
        let settings = Settings::load(&workspace(), None, &env).unwrap();
        assert_eq!(settings.fal.accounts.len(), 1);
        assert_eq!(settings.fal.accounts[0].name, "main");
        assert_eq!(settings.fal.queue_base, "https://queue.fal.run");
        assert_eq!(settings.plans.default_plan().name, "free");
        assert!(settings.budget.monthly_budget.is_some());
        let shown = format!("{settings:?}");
        for secret in ["secret-xyz", "123:ABC", "pw-789"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
    }

    #[test]
    fn fixed_environment_names_override_the_files() {
        let env = env_of(&[
            ("FAL_KEY", "k"),
            ("MEDIAGEN__TELEGRAM__API_URL", "http://127.0.0.1:8081"),
            ("MEDIAGEN__FAL__QUEUE_URL", "http://127.0.0.1:9000"),
            ("MEDIAGEN__FAL__REST_URL", "http://127.0.0.1:9001"),
            ("MEDIAGEN__FAL__CDN_URL", "http://127.0.0.1:9002/"),
            ("MEDIAGEN__ADMIN__IDS", "111, 222"),
            ("MEDIAGEN__ENGINE__OVERHANG", "2"),
            ("MEDIAGEN__FAL__POLL__INITIAL_INTERVAL_MS", "20"),
            ("MEDIAGEN__FAL__POLL__MULTIPLIER", "2.5"),
        ]);
        let settings = Settings::load(&workspace(), None, &env).unwrap();
        assert_eq!(settings.telegram.api_url, "http://127.0.0.1:8081");
        assert_eq!(settings.fal.queue_base, "http://127.0.0.1:9000");
        assert_eq!(settings.fal.rest_base, "http://127.0.0.1:9001");
        assert_eq!(settings.fal.cdn_bases, ["http://127.0.0.1:9002/"]);
        assert_eq!(settings.admins, [111, 222]);
        assert_eq!(settings.engine.overhang, 2);
        assert_eq!((settings.fal.poll.initial_interval_ms, settings.fal.poll.multiplier), (20, 2.5));
        assert_eq!(settings.fal.poll.max_interval_ms, 5_000, "a sibling the variables leave alone");
        let one =
            Settings::load(&workspace(), None, &env_of(&[("FAL_KEY", "k"), ("MEDIAGEN__ADMIN__IDS", "42")])).unwrap();
        assert_eq!(one.admins, [42]);
        let bad = Settings::load(&workspace(), None, &env_of(&[("FAL_KEY", "k"), ("MEDIAGEN__ADMIN__IDS", "42,bob")]));
        assert!(format!("{:#}", bad.unwrap_err()).contains("bob"));
    }

    #[test]
    fn missing_key_names_the_variable() {
        let settings = Settings::load(&workspace(), None, &env_of(&[])).unwrap();
        let error = settings.require_fal_keys().unwrap_err();
        assert!(format!("{error:#}").contains("FAL_KEY__MAIN__PRIMARY"), "{error:#}");
        let with_key = Settings::load(&workspace(), None, &env_of(&[("FAL_KEY", "k")])).unwrap();
        assert!(with_key.require_fal_keys().is_ok());
    }

    #[test]
    fn overlay_adds_accounts_and_changes_one_value() {
        let overlay = temp_file(
            "overlay",
            "[engine]\noverhang = 3\n\n[fal]\naccounts = [{ name = \"a\", keys = [\"k1\", \"k2\"] }, { name = \"b\", keys = [\"k\"] }]\n",
        );
        let env = env_of(&[("FAL_KEY__A__K1", "a1"), ("FAL_KEY__A__K2", "a2"), ("FAL_KEY__B__K", "b1")]);
        let settings = Settings::load(&workspace(), Some(&overlay), &env).unwrap();
        assert_eq!(settings.engine.overhang, 3);
        assert_eq!(settings.engine.claim_batch, 16, "untouched values keep the base file's");
        let names: Vec<(&str, usize)> = settings.fal.accounts.iter().map(|a| (a.name.as_str(), a.keys.len())).collect();
        assert_eq!(names, [("a", 2), ("b", 1)]);
    }

    #[test]
    fn report_schedule_alerts_planner_and_metrics_load_and_layer() {
        let shipped = Settings::load(&workspace(), None, &env_of(&[("FAL_KEY", "k")])).unwrap();
        let eight = NaiveTime::from_hms_opt(8, 0, 0).unwrap();
        assert_eq!(shipped.reports, ReportSchedule { daily_at: Some(eight), weekly_at: Some((Weekday::Mon, eight)) });
        assert_eq!(shipped.alerts, AlertSettings::default());
        assert_eq!(shipped.planner, PlannerSettings::default());
        assert_eq!(shipped.metrics.listen, "", "the endpoint is off unless an operator turns it on");

        let overlay = temp_file(
            "insights",
            "[reports]\ndaily_at = \"\"\nweekly_at = \"fri 17:30\"\n\n[planner]\ntarget_wait_secs = 10\n\n[alerts]\nsaturation_percent = 35.5\n",
        );
        let env = env_of(&[
            ("FAL_KEY", "k"),
            ("MEDIAGEN__METRICS__LISTEN", "127.0.0.1:9464"),
            ("MEDIAGEN__ALERTS__EXPIRY_WARNING_DAYS", "14"),
        ]);
        let s = Settings::load(&workspace(), Some(&overlay), &env).unwrap();
        assert_eq!(s.reports.daily_at, None, "an empty time turns the daily summary off");
        assert_eq!(s.reports.weekly_at, Some((Weekday::Fri, NaiveTime::from_hms_opt(17, 30, 0).unwrap())));
        assert_eq!(s.planner.target_wait_secs, 10);
        assert_eq!(s.planner.history_days, 28, "untouched planner values keep their defaults");
        assert_eq!(s.alerts.saturation_percent, 35.5);
        assert_eq!(s.alerts.expiry_warning_days, 14);
        assert_eq!(s.metrics.listen, "127.0.0.1:9464");

        for (bad, named) in [
            ("[reports]\ndaily_at = \"8 o'clock\"\n", "daily_at"),
            ("[reports]\nweekly_at = \"someday 08:00\"\n", "someday"),
            ("[planner]\ntarget_wait = 3\n", "target_wait"),
        ] {
            let overlay = temp_file("insights-bad", bad);
            let error = Settings::load(&workspace(), Some(&overlay), &env_of(&[("FAL_KEY", "k")])).unwrap_err();
            assert!(format!("{error:#}").contains(named), "{bad}: {error:#}");
        }
    }

    #[test]
    fn rate_limits_ship_telegrams_figures_and_can_be_changed() {
        let shipped = Settings::load(&workspace(), None, &env_of(&[("FAL_KEY", "k")])).unwrap();
        let limits = mediagen_telegram::Limits::from(shipped.telegram.rate_limits);
        assert_eq!(limits, mediagen_telegram::Limits::default(), "config/default.toml has teloxide's defaults");
        assert_eq!(shipped.telegram.rate_limits, RateLimits::default());

        let overlay = temp_file("rate-limits", "[telegram.rate_limits]\nmessages_per_min_chat = 60\n");
        let env = env_of(&[("FAL_KEY", "k"), ("MEDIAGEN__TELEGRAM__RATE_LIMITS__MESSAGES_PER_SEC_OVERALL", "25")]);
        let changed = Settings::load(&workspace(), Some(&overlay), &env).unwrap().telegram.rate_limits;
        assert_eq!((changed.messages_per_min_chat, changed.messages_per_sec_overall), (60, 25));
        assert_eq!(changed.messages_per_sec_chat, 1, "untouched limits keep Telegram's figures");

        let zero = env_of(&[("FAL_KEY", "k"), ("MEDIAGEN__TELEGRAM__RATE_LIMITS__MESSAGES_PER_SEC_CHAT", "0")]);
        let error = Settings::load(&workspace(), None, &zero).unwrap_err();
        assert!(format!("{error:#}").contains("messages_per_sec_chat must be at least 1"), "{error:#}");
    }

    #[test]
    fn unknown_settings_are_refused_by_name() {
        let overlay = temp_file("bad", "[engine]\noverhung = 3\n");
        let error = Settings::load(&workspace(), Some(&overlay), &env_of(&[("FAL_KEY", "k")])).unwrap_err();
        assert!(format!("{error:#}").contains("overhung"), "{error:#}");
    }
}
