//! Layered configuration: the shipped `config/default.toml` (compiled in), the home's
//! `config/default.toml` when there is one, the operator's file (`MEDIAGEN_CONFIG`), then
//! `MEDIAGEN__SECTION__KEY` variables, then secrets from the environment. Secrets are
//! `SecretString`s and the settings' `Debug` never shows them.

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
use std::fmt;
use std::path::{Path, PathBuf};

/// The shipped `config/default.toml`: the first layer, so the binary runs from any
/// directory and a home's older copy still gets the settings added since.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The shipped `config/plans.toml`, used when `plans_file` keeps its shipped value and the
/// home has no such file.
pub const PLANS_TOML: &str = include_str!("../../../config/plans.toml");

/// `plans_file`'s shipped value.
const SHIPPED_PLANS_FILE: &str = "config/plans.toml";

/// Money settings a variable may set. They are read as written: a number-like variable
/// would otherwise arrive as a float, and past 15 digits a float drops micro-dollars.
const MONEY_KEYS: [&str; 2] = ["budget.monthly_budget", "credit.lock_threshold"];

/// Where a setting, or a file of settings, came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built into the binary: the shipped file of this name.
    CompiledIn(&'static str),
    /// A file under the home directory (`--home`, `MEDIAGEN_HOME`).
    Home(PathBuf),
    /// The operator's file (`--config`, `MEDIAGEN_CONFIG`).
    Operator(PathBuf),
    /// A file a setting names (`catalog_overrides`, `plans_file`).
    Named(PathBuf),
    /// An environment variable.
    Variable(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CompiledIn(name) => write!(f, "compiled-in {name}"),
            Origin::Home(path) => write!(f, "{} (home)", path.display()),
            Origin::Operator(path) => write!(f, "{} (operator's file)", path.display()),
            Origin::Named(path) => write!(f, "{}", path.display()),
            Origin::Variable(name) => f.write_str(name),
        }
    }
}

/// The files the settings were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The home directory (`--home`, `MEDIAGEN_HOME`).
    pub home: PathBuf,
    /// Whether it exists: a home that does not is most likely a typo.
    pub home_exists: bool,
    /// The settings files, first to last; the variables come after them.
    pub files: Vec<Origin>,
    /// The model catalog's layers, first to last.
    pub catalog: Vec<Origin>,
    /// The quota plans.
    pub plans: Origin,
}

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
    /// The files all this was read from.
    pub sources: Sources,
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

/// The environment variable that sets `key` (`engine.overhang` → `MEDIAGEN__ENGINE__OVERHANG`).
pub(crate) fn variable_of(key: &str) -> String {
    format!("MEDIAGEN__{}", key.replace('.', "__").to_ascii_uppercase())
}

/// The setting a `MEDIAGEN__…` variable sets, as the `config` crate reads its name.
fn key_of(variable: &str) -> Option<String> {
    let lower = variable.to_lowercase();
    lower.strip_prefix("mediagen__").map(|rest| rest.replace("__", "."))
}

/// The variable among `vars` that sets `key`, if one does.
pub(crate) fn variable_setting<'a>(key: &str, vars: &'a HashMap<String, String>) -> Option<&'a str> {
    vars.keys().find(|name| key_of(name).as_deref() == Some(key)).map(String::as_str)
}

/// One layer of settings; `origin` is `None` for the variables (each its own origin).
pub(crate) struct Layer {
    pub(crate) origin: Option<Origin>,
    pub(crate) source: Box<dyn config::Source + Send + Sync>,
}

/// The layers through the `config` crate, first to last: the compiled-in file, the home's
/// file when present, the operator's file, then `MEDIAGEN__SECTION__KEY` variables
/// (numbers and booleans read as such, money and the rest as text). Secrets are not read
/// here: they come from their own variables only.
pub(crate) fn layers(base_dir: &Path, overlay: Option<&Path>, vars: &HashMap<String, String>) -> Vec<Layer> {
    use config::{File, FileFormat};
    let file = |path: &Path| File::new(&path.to_string_lossy(), FileFormat::Toml);
    let mut layers = vec![Layer {
        origin: Some(Origin::CompiledIn("config/default.toml")),
        source: Box::new(File::from_str(DEFAULT_TOML, FileFormat::Toml)),
    }];
    let home_file = base_dir.join("config/default.toml");
    if home_file.is_file() {
        layers.push(Layer { source: Box::new(file(&home_file)), origin: Some(Origin::Home(home_file)) });
    }
    if let Some(path) = overlay {
        layers.push(Layer { source: Box::new(file(path)), origin: Some(Origin::Operator(path.to_owned())) });
    }
    let (money, rest): (HashMap<String, String>, HashMap<String, String>) = vars
        .iter()
        .filter(|(name, _)| key_of(name).is_some())
        .map(|(name, value)| (name.clone(), value.clone()))
        .partition(|(name, _)| key_of(name).is_some_and(|key| MONEY_KEYS.contains(&key.as_str())));
    let environment = |source: HashMap<String, String>, parse: bool| Layer {
        origin: None,
        source: Box::new(
            config::Environment::with_prefix("MEDIAGEN")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(parse)
                .source(Some(source)),
        ),
    };
    layers.push(environment(rest, true));
    layers.push(environment(money, false));
    layers
}

/// The layers merged, key by key.
pub(crate) fn merge(layers: Vec<Layer>) -> anyhow::Result<config::Config> {
    let sources: Vec<_> = layers.into_iter().map(|layer| layer.source).collect();
    config::Config::builder().add_source(sources).build().context("cannot read the configuration")
}

fn file_settings(merged: config::Config, vars: &HashMap<String, String>) -> anyhow::Result<FileSettings> {
    merged.try_deserialize().map_err(|error| explain(&error.to_string(), "", vars))
}

/// A deserialization error as the operator should read it: an unknown key with the nearest
/// valid one, and the variable behind a key when a variable set it. `section` is where the
/// value deserialized sits (`""` for the whole file).
fn explain(message: &str, section: &str, vars: &HashMap<String, String>) -> anyhow::Error {
    let join = |a: &str, b: &str| match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}.{b}"),
    };
    let (text, key) = match message.split_once(" for key `") {
        Some((text, rest)) => (text, rest.split('`').next().unwrap_or_default()),
        None => (message, ""),
    };
    let Some((field, expected)) = unknown_field(text) else {
        let key = join(section, key);
        let context = match variable_setting(&key, vars) {
            Some(variable) => format!("the setting {key} ({variable}) is wrong"),
            None if key.is_empty() => "configuration has a wrong setting".to_owned(),
            None => format!("the setting {key} is wrong"),
        };
        return anyhow::anyhow!("{text}").context(context);
    };
    let parent = join(section, key);
    let unknown = join(&parent, &field);
    let name = |key: &str, variable: bool| if variable { variable_of(key) } else { key.to_owned() };
    let variable = variable_setting(&unknown, vars).map(str::to_owned);
    let said = match &variable {
        Some(variable) => format!("unknown setting `{variable}` (`{unknown}`)"),
        None => format!("unknown setting `{unknown}`"),
    };
    match nearest(&field, &expected) {
        Some(near) => {
            anyhow::anyhow!("{said} — did you mean `{}`?", name(&join(&parent, near), variable.is_some()))
        }
        None => {
            let valid: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
            let place = if parent.is_empty() { "at the top level".to_owned() } else { format!("in [{parent}]") };
            anyhow::anyhow!("{said}; the settings {place} are {}", valid.join(", "))
        }
    }
}

/// The field and the expected ones of serde's "unknown field `x`, expected one of `a`, `b`".
fn unknown_field(text: &str) -> Option<(String, Vec<String>)> {
    let rest = text.split_once("unknown field `")?.1;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    Some((field.to_owned(), expected))
}

/// The valid name `name` was most likely meant to be: within a few edits, or one that
/// starts with it (a dropped suffix such as `_secs`).
fn nearest<'a>(name: &str, valid: &'a [String]) -> Option<&'a str> {
    let close = valid
        .iter()
        .map(|v| (edit_distance(name, v), v))
        .filter(|(distance, _)| *distance <= (name.chars().count() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, v)| v.as_str());
    close.or_else(|| {
        valid.iter().map(String::as_str).find(|v| name.len() >= 3 && (v.starts_with(name) || name.starts_with(v)))
    })
}

/// Edits (insert, delete, replace, swap of neighbours) between two names.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows: Vec<Vec<usize>> = (0..=a.len()).map(|i| vec![i; b.len() + 1]).collect();
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1).min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// The dotted path of the table in `table` that holds a key named `name` (`""` for
/// `table` itself): where an unknown field of a nested section sits.
fn parent_of(table: &toml::Table, name: &str) -> Option<String> {
    if table.contains_key(name) {
        return Some(String::new());
    }
    table.iter().find_map(|(key, value)| {
        let inner = value.as_table()?;
        parent_of(inner, name).map(|path| if path.is_empty() { key.clone() } else { format!("{key}.{path}") })
    })
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
        let layers = layers(base_dir, overlay, vars);
        let files: Vec<Origin> = layers.iter().filter_map(|layer| layer.origin.clone()).collect();
        let file = file_settings(merge(layers)?, vars)?;
        file.telegram.rate_limits.check()?;

        let mut catalog_layers = vec![(Origin::CompiledIn("config/models.toml"), BUILTIN_TOML.to_owned())];
        let home_models = base_dir.join("config/models.toml");
        if home_models.is_file() {
            catalog_layers.push((Origin::Home(home_models.clone()), read(&home_models)?));
        }
        for path in &file.catalog_overrides {
            let path = base_dir.join(path);
            catalog_layers.push((Origin::Named(path.clone()), read(&path)?));
        }
        let texts: Vec<&str> = catalog_layers.iter().map(|(_, text)| text.as_str()).collect();
        let catalog = Catalog::from_toml_layers(&texts).context("model catalog")?;

        let plans_path = base_dir.join(&file.plans_file);
        let shipped_plans = file.plans_file == Path::new(SHIPPED_PLANS_FILE);
        let (plans_origin, plans_text) = match (plans_path.exists(), shipped_plans) {
            (false, true) => (Origin::CompiledIn(SHIPPED_PLANS_FILE), PLANS_TOML.to_owned()),
            (_, true) => (Origin::Home(plans_path.clone()), read(&plans_path)?),
            (_, false) => (Origin::Named(plans_path.clone()), read(&plans_path)?),
        };
        let plans = Plans::from_toml(&plans_text).with_context(|| format!("quota plans ({plans_origin})"))?;

        let mut fal_table = file.fal;
        let accounts_value = fal_table.remove("accounts").unwrap_or(toml::Value::Array(Vec::new()));
        let accounts: Vec<AccountSettings> =
            accounts_value.try_into().map_err(|e| explain(&e.to_string(), "fal.accounts", vars))?;
        let queue_url = take_string(&mut fal_table, "queue_url")?;
        let rest_url = take_string(&mut fal_table, "rest_url")?;
        let cdn_url = take_string(&mut fal_table, "cdn_url")?;
        let fal_value = toml::Value::Table(fal_table);
        let mut fal: FalConfig = fal_value.clone().try_into().map_err(|e: toml::de::Error| {
            let message = e.to_string();
            let parent = unknown_field(&message)
                .and_then(|(field, _)| fal_value.as_table().and_then(|table| parent_of(table, &field)))
                .unwrap_or_default();
            let section = if parent.is_empty() { "fal".to_owned() } else { format!("fal.{parent}") };
            explain(&message, &section, vars)
        })?;
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
            sources: Sources {
                home: base_dir.to_owned(),
                home_exists: base_dir.is_dir(),
                files,
                catalog: catalog_layers.into_iter().map(|(origin, _)| origin).collect(),
                plans: plans_origin,
            },
        })
    }

    /// What loads but is probably not meant, one sentence each: logged at start and
    /// listed by `mediagen config show`.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.admins.is_empty() {
            warnings.push(
                "no admins are set: alerts and /topup do nothing until `[admin] ids` (or MEDIAGEN__ADMIN__IDS) \
                 lists the operators' Telegram user ids"
                    .to_owned(),
            );
        }
        if !self.sources.home_exists {
            warnings.push(format!(
                "the home directory {} does not exist (--home, MEDIAGEN_HOME): the compiled-in config files are used",
                self.sources.home.display()
            ));
        }
        warnings
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
    use mediagen_domain::Money;

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

    /// An empty directory of its own, as a home without `config/`.
    fn empty_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mediagen-settings-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_home_without_config_runs_on_the_compiled_in_files() {
        let env = env_of(&[("FAL_KEY", "k")]);
        let bare = Settings::load(&empty_dir("bare-home"), None, &env).unwrap();
        let shipped = Settings::load(&workspace(), None, &env).unwrap();
        assert_eq!(bare.telegram.api_url, "https://api.telegram.org");
        assert_eq!(bare.engine.claim_batch, 16);
        assert_eq!(bare.budget, shipped.budget);
        assert_eq!(bare.plans.default_plan().name, "free");
        assert_eq!(bare.plans, shipped.plans);
        assert_eq!(bare.catalog.models().count(), shipped.catalog.models().count());
        assert_eq!(bare.fal.accounts.len(), 1);
        assert!(bare.require_fal_keys().is_ok());
        assert_eq!(bare.sources.files, [Origin::CompiledIn("config/default.toml")]);
        assert_eq!(bare.sources.catalog, [Origin::CompiledIn("config/models.toml")]);
        assert_eq!(bare.sources.plans, Origin::CompiledIn("config/plans.toml"));

        // A home's own files still win, each over its compiled-in twin.
        let home = empty_dir("own-home");
        std::fs::create_dir_all(home.join("config")).unwrap();
        std::fs::write(home.join("config/default.toml"), "[engine]\nclaim_batch = 4\n").unwrap();
        std::fs::write(
            home.join("config/plans.toml"),
            "default_plan = \"solo\"\n[plans.solo]\nmax_in_flight = 1\nmax_queued = 1\n",
        )
        .unwrap();
        let own = Settings::load(&home, None, &env).unwrap();
        assert_eq!(own.engine.claim_batch, 4);
        assert_eq!(own.engine.lease_secs, 120, "what the home's file leaves out is compiled in");
        assert_eq!(own.plans.default_plan().name, "solo");
        assert_eq!(own.sources.plans, Origin::Home(home.join("config/plans.toml")));
        let missing = temp_file("plans-elsewhere", "plans_file = \"nowhere/plans.toml\"\n");
        let error = Settings::load(&home, Some(&missing), &env).unwrap_err();
        assert!(format!("{error:#}").contains("nowhere/plans.toml"), "a plans file the operator named must exist");
    }

    #[test]
    fn decimal_money_from_the_environment_and_files_is_exact() {
        let budget = |env: &[(&str, &str)], overlay: Option<&Path>| {
            let mut vars = env_of(env);
            vars.insert("FAL_KEY".into(), "k".into());
            Settings::load(&workspace(), overlay, &vars).map(|s| s.budget.monthly_budget)
        };
        for (text, micros) in [
            ("12.5", 12_500_000),
            ("12", 12_000_000),
            ("$12.50", 12_500_000),
            ("0.000001", 1),
            // As a float this would come back as …123455: the text must be read as text.
            ("12345678901.123456", 12_345_678_901_123_456),
        ] {
            let loaded = budget(&[("MEDIAGEN__BUDGET__MONTHLY_BUDGET", text)], None);
            assert_eq!(loaded.unwrap(), Some(Money::from_micros(micros)), "MEDIAGEN__BUDGET__MONTHLY_BUDGET={text}");
        }
        let lock = env_of(&[("FAL_KEY", "k"), ("MEDIAGEN__CREDIT__LOCK_THRESHOLD", "0.5")]);
        assert_eq!(Settings::load(&workspace(), None, &lock).unwrap().credit.lock_threshold, Money::from_cents(50));
        for line in ["monthly_budget = 12.5", "monthly_budget = \"12.5\"", "monthly_budget = \"$12.50\""] {
            let overlay = temp_file("money", &format!("[budget]\n{line}\n"));
            assert_eq!(budget(&[], Some(&overlay)).unwrap(), Some(Money::from_micros(12_500_000)), "{line}");
        }
        let overlay = temp_file("money-whole", "[budget]\nmonthly_budget = 12\n");
        assert_eq!(budget(&[], Some(&overlay)).unwrap(), Some(Money::from_dollars(12)));
        let error = budget(&[("MEDIAGEN__BUDGET__MONTHLY_BUDGET", "twelve")], None).unwrap_err();
        assert!(format!("{error:#}").contains("twelve"), "{error:#}");
    }

    #[test]
    fn an_unknown_setting_names_the_nearest_valid_one() {
        let overlay = temp_file("typo", "[engine]\nshutdown_grace = 3\n");
        let error = Settings::load(&workspace(), Some(&overlay), &env_of(&[("FAL_KEY", "k")])).unwrap_err();
        let said = format!("{error:#}");
        assert!(
            said.contains("unknown setting `engine.shutdown_grace` — did you mean `engine.shutdown_grace_secs`?"),
            "{said}"
        );

        let env = env_of(&[("FAL_KEY", "k"), ("MEDIAGEN__ENGINE__SHUTDOWN_GRACE", "3")]);
        let said = format!("{:#}", Settings::load(&workspace(), None, &env).unwrap_err());
        assert!(said.contains("MEDIAGEN__ENGINE__SHUTDOWN_GRACE"), "the variable is named: {said}");
        assert!(said.contains("did you mean `MEDIAGEN__ENGINE__SHUTDOWN_GRACE_SECS`?"), "{said}");

        let top = temp_file("typo-top", "[enigne]\noverhang = 3\n");
        let said = format!("{:#}", Settings::load(&workspace(), Some(&top), &env_of(&[("FAL_KEY", "k")])).unwrap_err());
        assert!(said.contains("unknown setting `enigne` — did you mean `engine`?"), "{said}");

        // [fal] is read by the fal adapter's own types, nested tables included.
        let env = env_of(&[("FAL_KEY", "k"), ("MEDIAGEN__FAL__POLL__INITIAL_INTERVAL", "20")]);
        let said = format!("{:#}", Settings::load(&workspace(), None, &env).unwrap_err());
        assert!(said.contains("did you mean `MEDIAGEN__FAL__POLL__INITIAL_INTERVAL_MS`?"), "{said}");
        let nothing_near = temp_file("typo-far", "[engine]\nzzz = 1\n");
        let said = format!(
            "{:#}",
            Settings::load(&workspace(), Some(&nothing_near), &env_of(&[("FAL_KEY", "k")])).unwrap_err()
        );
        assert!(said.contains("unknown setting `engine.zzz`; the settings in [engine] are `overhang`"), "{said}");
    }

    #[test]
    fn nearest_names_survive_typos_and_dropped_suffixes() {
        let valid: Vec<String> = ["overhang", "claim_batch", "lease_secs"].map(String::from).into();
        assert_eq!(nearest("overhung", &valid), Some("overhang"));
        assert_eq!(nearest("claimbatch", &valid), Some("claim_batch"));
        assert_eq!(nearest("lease", &valid), Some("lease_secs"));
        assert_eq!(nearest("colour", &valid), None);
        assert_eq!(edit_distance("enigne", "engine"), 1, "a swap is one edit");
    }

    #[test]
    fn an_empty_admin_list_is_warned_about() {
        let none = Settings::load(&workspace(), None, &env_of(&[("FAL_KEY", "k")])).unwrap();
        let warnings = none.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("alerts and /topup do nothing"), "{warnings:?}");
        assert!(warnings[0].contains("[admin] ids") && warnings[0].contains("MEDIAGEN__ADMIN__IDS"), "{warnings:?}");

        let set = env_of(&[("FAL_KEY", "k"), ("MEDIAGEN__ADMIN__IDS", "42")]);
        assert!(Settings::load(&workspace(), None, &set).unwrap().warnings().is_empty());

        let nowhere = workspace().join("no-such-home");
        let lost = Settings::load(&nowhere, None, &set).unwrap().warnings();
        assert!(lost.len() == 1 && lost[0].contains("no-such-home"), "{lost:?}");
    }

    #[test]
    fn unknown_settings_are_refused_by_name() {
        let overlay = temp_file("bad", "[engine]\noverhung = 3\n");
        let error = Settings::load(&workspace(), Some(&overlay), &env_of(&[("FAL_KEY", "k")])).unwrap_err();
        assert!(format!("{error:#}").contains("overhung"), "{error:#}");
    }
}
