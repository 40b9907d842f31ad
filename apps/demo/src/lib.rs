#![doc = include_str!("../README.md")]

pub mod options;
pub mod queries;
pub mod report;
pub mod scenario;
pub mod stack;
pub mod status;
pub mod storage;

pub use options::{Options, StatusMode};
pub use report::Report;

use crate::scenario::{Incident, OperatorLog, Pictures, Played, Script};
use crate::stack::{AccountLimit, OPERATOR_ID};
use anyhow::Context;
use mediagen_stack::{Parts, Stack, Store};
use mediagen_telegram_fake::{FakeTelegram, SimUser};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long the bot may take to start polling the fake Bot API.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The fake Bot API must be quiet this long before the outcomes are read: the bot's
/// progress edits go out at most about once a second per chat.
const QUIET: Duration = Duration::from_millis(1_500);

/// Prints the demo's own lines unless the status is off (tests), over the status line
/// when it refreshes in place (it is drawn again at its next refresh).
struct Say(StatusMode);

impl Say {
    fn line(&self, text: impl AsRef<str>) {
        match self.0 {
            StatusMode::Off => {}
            StatusMode::InPlace => println!("\r\x1b[2K{}", text.as_ref()),
            _ => println!("{}", text.as_ref()),
        }
    }
}

/// Runs the whole demo: a fresh database, the fakes, the real bot, the crowd and the
/// operator; waits for every job to finish; reads the report; stops everything and removes
/// the database.
///
/// # Errors
/// When something cannot start (the database cannot be made, configuration unreadable,
/// the bot failing at start). Problems found while running are in [`Report::problems`].
pub async fn run(options: Options) -> anyhow::Result<Report> {
    let say = Say(options.status.resolve());
    let parts = match Parts::try_start(stack::stack_options(&options)).await {
        Ok(parts) => parts,
        Err(error) if options.storage.is_postgres() => {
            return Err(error.context(
                "PostgreSQL was chosen by --database-url or DEMO_DATABASE_URL; leave both unset for the embedded \
                 SQLite default",
            ));
        }
        Err(error) => return Err(error),
    };
    let settings = parts.settings()?;
    settings.require_fal_keys()?;
    let overhang = settings.engine.overhang;
    let limits = stack::record_purchases(&parts.db, &settings, chrono::Utc::now()).await?;
    stack::set_limits(&parts.fal, &limits);
    let scripts = scenario::plan(&options);

    header(&say, &options, &limits, &parts, &scripts);

    // The operator is known to the fake Bot API first, so alerts reach them before they write.
    parts.telegram.add_user(&SimUser::new(OPERATOR_ID, "Operator").with_username("operator").with_language("en"));
    let mut stack = Stack::launch(parts)?;
    let polling = stack.telegram.wait_for(|view| view.polls() > 0, START_TIMEOUT).await;
    if stack.is_finished() {
        return Err(stack.failure().await);
    }
    if polling.is_err() {
        anyhow::bail!("the bot did not start polling the fake Bot API within {} s", START_TIMEOUT.as_secs());
    }

    let store = stack.db.store();
    let (users_done, users_done_rx) = watch::channel(false);
    let (stop_status, stop_status_rx) = watch::channel(false);
    let started = Instant::now();
    let monitor = tokio::spawn(status::monitor(
        store.clone(),
        stack.fal.handle().clone(),
        limits.clone(),
        options.status,
        started,
        stop_status_rx,
    ));
    let incident = tokio::spawn(scenario::run_incident(
        Incident::new(options.incident_after),
        stack.telegram.clone(),
        stack.fal.handle().clone(),
        store.clone(),
        users_done_rx,
    ));
    // Every user exists on Telegram before they write (the sticker arrives as a raw update).
    for script in &scripts {
        stack.telegram.add_user(&script.user);
    }
    let pictures = Pictures::new();
    let players: Vec<_> = scripts
        .iter()
        .cloned()
        .map(|script| tokio::spawn(scenario::play(stack.telegram.clone(), script, pictures.clone())))
        .collect();
    let mut played = Vec::with_capacity(players.len());
    for player in players {
        played.push(player.await.context("a simulated user panicked")?);
    }
    let _ = users_done.send(true);
    say.line(format!("{:>5.1}s   the users are done; waiting for the last jobs", started.elapsed().as_secs_f64()));
    let mut operator: OperatorLog = incident.await.context("the operator panicked")?;

    let drained = drain(&store, &stack.telegram, options.drain_timeout).await;
    let _ = stop_status.send(true);
    let peaks = monitor.await.context("the status line panicked")?;
    let elapsed = started.elapsed();

    // The bot's own view of its accounts, for the report.
    scenario::operator_command(&stack.telegram, "/accounts", &mut operator).await;

    let mut report = report::collect(report::Inputs {
        store: &store,
        telegram: &stack.telegram,
        fal: stack.fal.handle(),
        scripts: &scripts,
        limits: &limits,
        peaks: &peaks,
        overhang,
        operator: &operator,
    })
    .await?;
    report.elapsed = elapsed;
    report.problems.splice(0..0, played.into_iter().flat_map(|p: Played| p.problems));
    if let Err(left) = drained {
        report.problems.insert(0, left);
    }

    drop(store);
    match stack.stop_bot().await {
        Ok(()) => report.cleanup.push("the bot stopped cleanly".to_owned()),
        Err(error) => report.problems.push(format!("stopping the bot: {error:#}")),
    }
    let parts = stack.into_parts();
    let name = parts.db.name();
    let closed = parts.shutdown().await;
    report.cleanup.push("the fal simulator and the fake Bot API are shut down".to_owned());
    match closed {
        Ok(closed) => {
            report.cleanup.push(closed.cleanup);
            report.notes.extend(closed.note);
        }
        Err(error) => report.problems.push(format!("removing the demo database {name}: {error:#}")),
    }
    Ok(report)
}

/// What was started, before the status line takes over.
fn header(say: &Say, options: &Options, limits: &[AccountLimit], parts: &Parts, scripts: &[Script]) {
    say.line(format!(
        "mediagen demo: {} users, {} fal accounts, simulator time scale {}×",
        scripts.len(),
        limits.len(),
        options.time_scale
    ));
    say.line(format!("  storage    {} (created fresh)", options.storage.describe()));
    for limit in limits {
        let drop = limit
            .next_drop
            .map_or(String::new(), |(to, at)| format!(", drops to {to} on {}", at.format("%Y-%m-%d %H:%M UTC")));
        let bought = match limit.account.days_ago {
            0 => "today".to_owned(),
            days => format!("{days} days ago"),
        };
        say.line(format!(
            "  fal        {:<6} {} bought {bought} → limit {}{drop}",
            limit.account.name, limit.account.bought, limit.limit
        ));
    }
    say.line(format!("  fal sim    {}", parts.fal.base_url()));
    say.line(format!("  Telegram   {} (fake Bot API), operator {OPERATOR_ID}", parts.telegram.base_url()));
    let russian = scripts.iter().filter(|s| s.user.language_code.as_deref() == Some("ru")).count();
    say.line(format!(
        "  users      {} ({} en, {russian} ru) with {} scripted requests; alpha runs dry mid-run",
        scripts.len(),
        scripts.len() - russian,
        scripts.iter().map(Script::requests).sum::<u32>()
    ));
}

/// Waits until no job is left in the queue or in flight and the fake Bot API has been
/// quiet for a moment (final progress edits are throttled); `Err` says what was left.
async fn drain(store: &Store, telegram: &FakeTelegram, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut calls = call_count(telegram).await;
    let mut quiet_since = Instant::now();
    loop {
        let open = queries::job_counts(store)
            .await
            .map_or(-1, |counts| i64::try_from(queries::open_jobs(&counts)).unwrap_or(i64::MAX));
        let now_calls = call_count(telegram).await;
        if now_calls != calls {
            calls = now_calls;
            quiet_since = Instant::now();
        }
        if open == 0 && quiet_since.elapsed() >= QUIET {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{open} jobs were still open {} s after the last user finished", timeout.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Bot API calls recorded so far, read without copying the record.
async fn call_count(telegram: &FakeTelegram) -> usize {
    telegram.wait_for_value(|view| Some(view.calls().len()), Duration::ZERO).await.unwrap_or_default()
}
