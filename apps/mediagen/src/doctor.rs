//! `mediagen doctor`: checks, before (or while) the bot runs, everything it needs from
//! outside — the bot token, the webhook state, the fal keys, the database, the admins, the
//! metrics port and the clock — and says how to fix what is wrong.
//!
//! [`diagnose`] returns a structured [`Report`] so tests and `mediagen init` use the same
//! checks as the command. Nothing here prints or returns a secret: keys and the token are
//! named by their variables, database URLs lose their passwords, and every text of the
//! report is scrubbed of the secret values as a last line of defence.

use crate::settings::{Settings, key_variable};
use crate::storage::{Backend, DEFAULT_URL};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::Value;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// How far this machine's clock may be from Telegram's or fal's before it is a failure.
pub const CLOCK_TOLERANCE_SECS: i64 = 60;

/// One check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but something is worth knowing.
    Warn,
    /// The bot will not work (or not fully) until this is fixed.
    Fail,
}

impl Status {
    /// The word printed in the first column.
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `telegram token` or `fal key main/primary`.
    pub subject: String,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (failures and warnings).
    pub fix: Option<String>,
}

impl Check {
    fn new(subject: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
        Check { subject: subject.into(), status, detail: detail.into(), fix: None }
    }

    /// A passed check.
    pub fn ok(subject: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(subject, Status::Ok, detail)
    }

    /// A warning with its advice.
    pub fn warn(subject: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { fix: Some(fix.into()), ..Check::new(subject, Status::Warn, detail) }
    }

    /// A failure with its fix.
    pub fn fail(subject: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { fix: Some(fix.into()), ..Check::new(subject, Status::Fail, detail) }
    }

    /// Whether it failed.
    pub fn failed(&self) -> bool {
        self.status == Status::Fail
    }
}

/// Every check, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether any check failed (the command then exits non-zero).
    pub fn failed(&self) -> bool {
        self.checks.iter().any(Check::failed)
    }

    /// The checks whose subject starts with `prefix`.
    pub fn about<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Check> + 'a {
        self.checks.iter().filter(move |c| c.subject.starts_with(prefix))
    }

    fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// Replaces every occurrence of the `secrets` in every text with `[REDACTED]`.
    fn scrub(&mut self, secrets: &[String]) {
        let clean = |text: &mut String| {
            for secret in secrets.iter().filter(|s| s.len() >= 4) {
                if text.contains(secret.as_str()) {
                    *text = text.replace(secret.as_str(), "[REDACTED]");
                }
            }
        };
        for check in &mut self.checks {
            clean(&mut check.subject);
            clean(&mut check.detail);
            if let Some(fix) = check.fix.as_mut() {
                clean(fix);
            }
        }
    }
}

/// One line per check (`ok`, `warn` or `FAIL`, then subject and detail), the fix indented
/// under it, and a count at the end.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            writeln!(f, "{:<4} {}: {}", check.status.word(), check.subject, check.detail)?;
            if let Some(fix) = &check.fix {
                writeln!(f, "     fix: {fix}")?;
            }
        }
        let failed = self.count(Status::Fail);
        write!(f, "{} ok, {} warn, {failed} FAIL", self.count(Status::Ok), self.count(Status::Warn))?;
        if failed > 0 { writeln!(f, ": fix the failures above, then run `mediagen doctor` again") } else { writeln!(f) }
    }
}

/// The `Date` of the first answer from Telegram or fal, with this machine's time then.
#[derive(Debug, Clone)]
struct ClockSample {
    source: &'static str,
    remote: DateTime<Utc>,
    local: DateTime<Utc>,
}

/// The HTTP client and what its answers told about the clock.
struct Probe {
    http: reqwest::Client,
    clock: Option<ClockSample>,
}

/// What an HTTP call answered: status and JSON body (`Null` when not JSON).
struct Answer {
    status: u16,
    body: Value,
}

impl Probe {
    fn new() -> Probe {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Probe { http, clock: None }
    }

    async fn send(&mut self, source: &'static str, request: reqwest::RequestBuilder) -> Result<Answer, String> {
        let response = request.send().await.map_err(|e| describe(&e))?;
        if self.clock.is_none()
            && let Some(remote) = response
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
        {
            self.clock = Some(ClockSample { source, remote: remote.with_timezone(&Utc), local: Utc::now() });
        }
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    async fn bot(&mut self, api_url: &str, token: &str, method: &str, params: Value) -> Result<Answer, String> {
        let url = format!("{}/bot{token}/{method}", api_url.trim_end_matches('/'));
        self.send("Telegram", self.http.post(url).json(&params)).await
    }

    async fn billing(&mut self, platform_url: &str, secret: &str) -> Result<Answer, String> {
        let url = format!("{}/v1/account/billing?expand=credits", platform_url.trim_end_matches('/'));
        self.send("fal", self.http.get(url).header("Authorization", format!("Key {secret}"))).await
    }
}

/// A transport error without its URL (which holds the bot token) but with its causes.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() { "timed out".to_owned() } else { "cannot connect".to_owned() };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn description(answer: &Answer) -> String {
    answer.body["description"]
        .as_str()
        .or_else(|| answer.body["detail"].as_str())
        .map_or_else(|| format!("HTTP {}", answer.status), str::to_owned)
}

/// Runs every check against the services and the database `settings` point at.
pub async fn diagnose(settings: &Settings) -> Report {
    let mut probe = Probe::new();
    let mut report = Report::default();
    let api_url = settings.telegram.api_url.as_str();

    let token = settings.bot_token.as_ref().map(|t| t.expose_secret().to_owned());
    let token_works = match &token {
        None => {
            report.checks.push(Check::fail(
                "telegram token",
                "TELOXIDE_TOKEN is not set",
                "set TELOXIDE_TOKEN to the token @BotFather gave the bot",
            ));
            false
        }
        Some(token) => {
            let check = check_token(&mut probe, api_url, token).await;
            let works = !check.failed();
            report.checks.push(check);
            works
        }
    };
    match token.as_deref().filter(|_| token_works) {
        Some(token) => {
            report.checks.push(check_webhook(&mut probe, api_url, token, &settings.telegram.webhook_url).await);
            report.checks.extend(check_admins(&mut probe, api_url, token, &settings.admins).await);
        }
        None => {
            for subject in ["telegram webhook", "admins"] {
                report.checks.push(Check::warn(subject, "not checked", "needs a working TELOXIDE_TOKEN"));
            }
        }
    }

    for variable in &settings.missing_fal_keys {
        report.checks.push(Check::fail(
            format!("fal key {variable}"),
            "configured but not set",
            format!("set {variable} (or FAL_KEY when there is one account with one key)"),
        ));
    }
    if settings.fal.accounts.iter().all(|a| a.keys.is_empty()) && settings.missing_fal_keys.is_empty() {
        report.checks.push(Check::fail(
            "fal keys",
            "no fal account is configured",
            "add [[fal.accounts]] with a name and keys, and set FAL_KEY__<ACCOUNT>__<KEY>",
        ));
    }
    for account in &settings.fal.accounts {
        for key in &account.keys {
            let check = check_fal_key(
                &mut probe,
                &settings.fal.platform_url,
                &account.name,
                &key.name,
                key.secret.expose_secret(),
            )
            .await;
            report.checks.push(check);
        }
    }

    let url = settings.database_url.as_ref().map_or(DEFAULT_URL.to_owned(), |u| u.expose_secret().to_owned());
    report.checks.push(check_database(&url).await);

    if !settings.metrics.listen.trim().is_empty() {
        report.checks.push(check_metrics(&probe.http, settings.metrics.listen.trim()).await);
    }

    report.checks.push(match &probe.clock {
        Some(sample) => judge_clock(sample.source, sample.remote, sample.local),
        None => Check::warn("clock", "not compared: neither Telegram nor fal answered", "fix the failures above"),
    });

    let mut secrets: Vec<String> = token.into_iter().collect();
    secrets.extend(settings.fal.accounts.iter().flat_map(|a| &a.keys).map(|k| k.secret.expose_secret().to_owned()));
    secrets.extend(password_of(&url));
    report.scrub(&secrets);
    report
}

/// `getMe` with `token`: whether Telegram accepts it.
pub async fn check_token_at(api_url: &str, token: &str) -> Check {
    check_token(&mut Probe::new(), api_url, token).await
}

async fn check_token(probe: &mut Probe, api_url: &str, token: &str) -> Check {
    const SUBJECT: &str = "telegram token";
    match probe.bot(api_url, token, "getMe", Value::Null).await {
        Ok(answer) if answer.status == 200 => {
            let name = answer.body["result"]["username"].as_str().unwrap_or("?");
            Check::ok(SUBJECT, format!("accepted: the bot is @{name}"))
        }
        Ok(answer) if matches!(answer.status, 401 | 404) => Check::fail(
            SUBJECT,
            format!("Telegram refused TELOXIDE_TOKEN ({})", description(&answer)),
            "set TELOXIDE_TOKEN to the bot's current token (@BotFather: /mybots, API Token)",
        ),
        Ok(answer) => Check::fail(
            SUBJECT,
            format!("getMe answered {}", description(&answer)),
            format!("check [telegram] api_url ({api_url}) and try again"),
        ),
        Err(error) => Check::fail(
            SUBJECT,
            format!("cannot reach the Bot API at {api_url}: {error}"),
            "check the network and [telegram] api_url (MEDIAGEN__TELEGRAM__API_URL)",
        ),
    }
}

async fn check_webhook(probe: &mut Probe, api_url: &str, token: &str, configured: &str) -> Check {
    const SUBJECT: &str = "telegram webhook";
    let answer = match probe.bot(api_url, token, "getWebhookInfo", Value::Null).await {
        Ok(answer) if answer.status == 200 => answer,
        Ok(answer) => {
            return Check::fail(SUBJECT, format!("getWebhookInfo answered {}", description(&answer)), "try again");
        }
        Err(error) => return Check::fail(SUBJECT, format!("getWebhookInfo failed: {error}"), "try again"),
    };
    let registered = answer.body["result"]["url"].as_str().unwrap_or_default();
    let delete = format!("curl -s \"{}/bot$TELOXIDE_TOKEN/deleteWebhook\"", api_url.trim_end_matches('/'));
    match (configured.trim(), registered) {
        ("", "") => Check::ok(SUBJECT, "none set: long polling, as configured"),
        ("", registered) => Check::fail(
            SUBJECT,
            format!("Telegram delivers updates to the webhook {registered}, but the settings poll"),
            format!(
                "if no other bot runs on this token, delete it: {delete}; or set [telegram] webhook_url = \"{registered}\""
            ),
        ),
        (configured, "") => Check::warn(
            SUBJECT,
            format!("none registered at Telegram yet; the settings want {configured}"),
            "`mediagen run` registers it when it starts",
        ),
        (configured, registered) if configured == registered => {
            Check::ok(SUBJECT, format!("{registered}, as configured"))
        }
        (configured, registered) => Check::fail(
            SUBJECT,
            format!("Telegram delivers updates to {registered}, but the settings say {configured}"),
            "stop any other bot on this token, or set [telegram] webhook_url to the URL it should be; `mediagen run` registers its own at start",
        ),
    }
}

/// `getChat` for each admin: whether each has started the bot (an empty list is a warning).
pub async fn check_admins_at(api_url: &str, token: &str, admins: &[i64]) -> Vec<Check> {
    check_admins(&mut Probe::new(), api_url, token, admins).await
}

async fn check_admins(probe: &mut Probe, api_url: &str, token: &str, admins: &[i64]) -> Vec<Check> {
    if admins.is_empty() {
        return vec![Check::warn(
            "admins",
            "none configured: alerts and /topup do nothing",
            "set [admin] ids = [<your Telegram user id>] (or MEDIAGEN__ADMIN__IDS)",
        )];
    }
    let mut checks = Vec::new();
    for &id in admins {
        let subject = format!("admin {id}");
        let check = match probe.bot(api_url, token, "getChat", serde_json::json!({ "chat_id": id })).await {
            Ok(answer) if answer.status == 200 => Check::ok(subject, "has started the bot: alerts reach them"),
            Ok(answer) if description(&answer).contains("chat not found") => Check::fail(
                subject,
                "has not started the bot: the bot cannot write to them",
                format!("have user {id} open the bot in Telegram and send /start (or fix [admin] ids)"),
            ),
            Ok(answer) => Check::fail(
                subject,
                format!("getChat answered {}", description(&answer)),
                format!("have user {id} unblock the bot and send /start"),
            ),
            Err(error) => Check::fail(subject, format!("getChat failed: {error}"), "try again"),
        };
        checks.push(check);
    }
    checks
}

/// The Platform API's billing call with one fal key: 200 is an admin key, 403 an
/// inference-only one (both run jobs), 401 a key fal does not know.
pub async fn check_fal_key_at(platform_url: &str, account: &str, key_name: &str, secret: &str) -> Check {
    check_fal_key(&mut Probe::new(), platform_url, account, key_name, secret).await
}

async fn check_fal_key(probe: &mut Probe, platform_url: &str, account: &str, key_name: &str, secret: &str) -> Check {
    let subject = format!("fal key {account}/{key_name}");
    match probe.billing(platform_url, secret).await {
        Ok(answer) if answer.status == 200 => {
            let balance = answer.body["credits"]["current_balance"].as_f64();
            let detail = match balance {
                Some(balance) => format!("accepted (admin key; balance ${balance:.2})"),
                None => "accepted (admin key; balance not shown)".to_owned(),
            };
            Check::ok(subject, detail)
        }
        Ok(answer) if answer.status == 403 => {
            Check::ok(subject, "accepted (inference only; an admin key lets the bot read its balance)")
        }
        Ok(answer) if answer.status == 401 => Check::fail(
            subject,
            format!("fal refused key {key_name:?} of account {account:?} (401: revoked or mistyped)"),
            format!(
                "put a current key of account {account} (fal.ai/dashboard/keys) in {} (or FAL_KEY for a single key)",
                key_variable(account, key_name)
            ),
        ),
        Ok(answer) => Check::fail(
            subject,
            format!("fal's Platform API answered {}", description(&answer)),
            format!("try again; check [fal] platform_url ({platform_url})"),
        ),
        Err(error) => Check::fail(
            subject,
            format!("cannot reach fal's Platform API at {platform_url}: {error}"),
            "check the network and [fal] platform_url (MEDIAGEN__FAL__PLATFORM_URL)",
        ),
    }
}

/// The database at `url` is reachable, migrated and writable. A SQLite file must exist
/// already: the check never creates one.
pub async fn check_database(url: &str) -> Check {
    const SUBJECT: &str = "database";
    let backend = match Backend::of(url) {
        Ok(backend) => backend,
        Err(error) => {
            return Check::fail(SUBJECT, format!("{error:#}"), "set DATABASE_URL to a sqlite:// or postgres:// URL");
        }
    };
    let shown = redact_url(url);
    let migrate = "run `mediagen migrate` (the bot also migrates when it starts)";
    let probe = match backend {
        Backend::Sqlite => sqlite_probe(url).await,
        Backend::Postgres => postgres_probe(url).await,
    };
    let (applied, write) = match probe {
        Ok(found) => found,
        Err(DbProblem::Missing(path)) => {
            return Check::fail(
                SUBJECT,
                format!("the SQLite file {path} does not exist"),
                format!("create it with `mediagen migrate`, or point DATABASE_URL at the bot's file ({shown})"),
            );
        }
        Err(DbProblem::Unreachable(error)) => {
            return Check::fail(
                SUBJECT,
                format!("cannot open {} database {shown}: {error}", backend.name()),
                "check DATABASE_URL, that the database runs and that this user may open it",
            );
        }
    };
    let known: Vec<i64> = match backend {
        Backend::Sqlite => mediagen_sqlite::MIGRATOR.iter().map(|m| m.version).collect(),
        Backend::Postgres => mediagen_postgres::MIGRATOR.iter().map(|m| m.version).collect(),
    };
    let Some(applied) = applied else {
        return Check::fail(SUBJECT, format!("{shown} has no migrations applied"), migrate);
    };
    let pending = known.iter().filter(|v| !applied.contains(v)).count();
    if pending > 0 {
        return Check::fail(SUBJECT, format!("{shown}: {pending} of {} migrations not applied", known.len()), migrate);
    }
    if let Err(error) = write {
        return Check::fail(
            SUBJECT,
            format!("{shown} cannot be written: {error}"),
            "give the bot's user write access to the database (and, for SQLite, to its directory)",
        );
    }
    let unknown = applied.iter().filter(|v| !known.contains(v)).count();
    if unknown > 0 {
        return Check::warn(
            SUBJECT,
            format!("{shown}: {unknown} migrations newer than this binary"),
            "run the mediagen version that migrated it",
        );
    }
    Check::ok(
        SUBJECT,
        format!("{} {shown}: reachable, migrated ({} migrations), writable", backend.name(), known.len()),
    )
}

enum DbProblem {
    Missing(String),
    Unreachable(String),
}

/// Applied migration versions (`None`: no migration table) and the outcome of a write in a
/// transaction that is rolled back.
type DbFindings = (Option<Vec<i64>>, Result<(), String>);

const PROBE_TABLE: &str = "CREATE TABLE mediagen_doctor_probe (x INTEGER)";
const PROBE_ROW: &str = "INSERT INTO mediagen_doctor_probe (x) VALUES (1)";

async fn sqlite_probe(url: &str) -> Result<DbFindings, DbProblem> {
    use sqlx::sqlite::SqlitePoolOptions;
    let options = mediagen_sqlite::connect_options(url)
        .map_err(|e| DbProblem::Unreachable(e.to_string()))?
        .create_if_missing(false);
    let path = options.get_filename().to_path_buf();
    if !path.exists() {
        return Err(DbProblem::Missing(path.display().to_string()));
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|e| DbProblem::Unreachable(e.to_string()))?;
    let has_table: bool = sqlx::query_scalar("SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = '_sqlx_migrations'")
        .fetch_one(&pool)
        .await
        .map_err(|e| DbProblem::Unreachable(e.to_string()))?;
    let applied = if has_table {
        Some(
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&pool)
                .await
                .map_err(|e| DbProblem::Unreachable(e.to_string()))?,
        )
    } else {
        None
    };
    let write = async {
        let mut tx = pool.begin().await?;
        sqlx::query(PROBE_TABLE).execute(&mut *tx).await?;
        sqlx::query(PROBE_ROW).execute(&mut *tx).await?;
        tx.rollback().await
    }
    .await
    .map_err(|e: sqlx::Error| e.to_string());
    pool.close().await;
    Ok((applied, write))
}

async fn postgres_probe(url: &str) -> Result<DbFindings, DbProblem> {
    use sqlx::{Connection, PgConnection};
    let unreachable = |e: sqlx::Error| DbProblem::Unreachable(e.to_string());
    // One connection, tried once: a pool would retry until its timeout and hide the cause.
    let mut conn = match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await {
        Ok(connected) => connected.map_err(unreachable)?,
        Err(_) => return Err(DbProblem::Unreachable("no answer within 10 s".to_owned())),
    };
    let has_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .map_err(unreachable)?;
    let applied = if has_table {
        Some(
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&mut conn)
                .await
                .map_err(unreachable)?,
        )
    } else {
        None
    };
    let write = async {
        let mut tx = conn.begin().await?;
        sqlx::query("CREATE TEMP TABLE mediagen_doctor_probe (x INTEGER)").execute(&mut *tx).await?;
        sqlx::query(PROBE_ROW).execute(&mut *tx).await?;
        // A temporary table proves little about the real ones; this lock needs write access.
        sqlx::query("LOCK TABLE _sqlx_migrations IN ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
        tx.rollback().await
    }
    .await
    .map_err(|e: sqlx::Error| e.to_string());
    let _ = conn.close().await;
    Ok((applied, write))
}

/// The metrics address is free to bind, or already served by a running bot.
pub async fn check_metrics(http: &reqwest::Client, listen: &str) -> Check {
    let subject = format!("metrics {listen}");
    let error = match std::net::TcpListener::bind(listen) {
        Ok(listener) => {
            drop(listener);
            return Check::ok(subject, "free to bind");
        }
        Err(error) => error,
    };
    let change = "stop what holds it, or set [metrics] listen (MEDIAGEN__METRICS__LISTEN) to a free address";
    if error.kind() != std::io::ErrorKind::AddrInUse {
        return Check::fail(subject, format!("cannot bind: {error}"), change);
    }
    let Some(addr) = listen.to_socket_addrs().ok().and_then(|mut addrs| addrs.next()) else {
        return Check::fail(subject, "taken by another program", change);
    };
    let addr = if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr };
    let served = match http.get(format!("http://{addr}/metrics")).timeout(Duration::from_secs(3)).send().await {
        Ok(response) if response.status().is_success() => {
            response.text().await.is_ok_and(|body| body.contains("mediagen_") && body.contains("# EOF"))
        }
        _ => false,
    };
    if served {
        Check::ok(subject, "in use by a running mediagen (its /metrics answers)")
    } else {
        Check::fail(subject, "taken by another program", change)
    }
}

/// Compares this machine's clock with a server's `Date`.
pub fn judge_clock(source: &str, remote: DateTime<Utc>, local: DateTime<Utc>) -> Check {
    let off = (local - remote).num_seconds();
    let side = if off > 0 { "ahead of" } else { "behind" };
    if off.abs() > CLOCK_TOLERANCE_SECS {
        Check::fail(
            "clock",
            format!("this machine's clock is {} s {side} {source}'s", off.abs()),
            "sync it (e.g. `timedatectl set-ntp true`): leases, schedules and reports follow it",
        )
    } else {
        Check::ok("clock", format!("within {} s of {source}'s", off.abs().max(1)))
    }
}

/// `url` with its password, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match password_span(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

fn password_of(url: &str) -> Option<String> {
    password_span(url).map(|(start, end)| url[start..end].to_owned()).filter(|p| !p.is_empty())
}

/// Where the password of `scheme://user:password@host/…` is.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let colon = rest[..at].find(':')?;
    Some((authority_start + colon + 1, authority_start + at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(redact_url("postgres://bot:s3cret@db:5432/mediagen"), "postgres://bot:***@db:5432/mediagen");
        assert_eq!(redact_url("postgres://bot@db/mediagen"), "postgres://bot@db/mediagen");
        assert_eq!(redact_url("sqlite:///var/lib/mediagen.sqlite"), "sqlite:///var/lib/mediagen.sqlite");
        assert_eq!(password_of("postgresql://u:p%40ss@h/d?x=@"), Some("p%40ss".to_owned()));
    }

    #[test]
    fn the_clock_fails_beyond_a_minute_either_way() {
        let now = Utc::now();
        assert_eq!(judge_clock("fal", now, now + chrono::Duration::seconds(30)).status, Status::Ok);
        let ahead = judge_clock("fal", now, now + chrono::Duration::seconds(90));
        assert_eq!(ahead.status, Status::Fail);
        assert!(ahead.detail.contains("90 s ahead of fal's"), "{}", ahead.detail);
        let behind = judge_clock("Telegram", now, now - chrono::Duration::seconds(3600));
        assert!(behind.failed() && behind.detail.contains("3600 s behind Telegram's"), "{}", behind.detail);
    }

    #[test]
    fn the_report_prints_a_line_per_check_and_scrubs_secrets() {
        let mut report = Report {
            checks: vec![
                Check::ok("telegram token", "accepted"),
                Check::fail("fal key main/k", "refused key-123:abc", "replace it"),
            ],
        };
        report.scrub(&["key-123:abc".to_owned()]);
        let text = report.to_string();
        assert!(report.failed());
        assert_eq!(
            text,
            "ok   telegram token: accepted\nFAIL fal key main/k: refused [REDACTED]\n     fix: replace it\n\
             1 ok, 0 warn, 1 FAIL: fix the failures above, then run `mediagen doctor` again\n"
        );
    }

    #[tokio::test]
    async fn a_missing_sqlite_file_fails_and_is_not_created() {
        let dir = std::env::temp_dir().join(format!("mediagen-doctor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("absent.sqlite");
        let check = check_database(&format!("sqlite://{}", file.display())).await;
        assert!(check.failed() && check.detail.contains("does not exist"), "{check:?}");
        assert!(!file.exists(), "the check created the file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
