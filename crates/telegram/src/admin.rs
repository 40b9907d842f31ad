//! Operator commands. Only reached after the admin check; replies are for operators (English).

use crate::TelegramBot;
use crate::app::BotApp;
use crate::command::AdminCommand;
use futures::StreamExt;
use mediagen_domain::{AccountId, ChatId, Money, Role};
use mediagen_ports::{MediaBytes, ModelUsage, StorageError};
use std::fmt::Write;
use teloxide::prelude::*;
use teloxide::types::InputFile;

/// Telegram's limit on a message's text, with room to spare.
const TEXT_LIMIT: usize = 4000;
/// Telegram's limit on a caption.
const CAPTION_LIMIT: usize = 1000;

/// What an operator command answers: text, and a file for reports (a chart or a CSV).
#[derive(Debug, Clone)]
pub(crate) struct AdminReply {
    pub(crate) text: String,
    pub(crate) file: Option<(MediaBytes, String)>,
}

impl From<String> for AdminReply {
    fn from(text: String) -> Self {
        AdminReply { text, file: None }
    }
}

/// Splits `text` into messages under Telegram's limit, at line ends where it can.
pub(crate) fn chunks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if current.chars().count() + line.chars().count() > TEXT_LIMIT && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        if line.chars().count() > TEXT_LIMIT {
            let mut chars = line.chars().peekable();
            while chars.peek().is_some() {
                out.push(chars.by_ref().take(TEXT_LIMIT).collect());
            }
            continue;
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

/// A caption cut to Telegram's limit.
pub(crate) fn caption(text: &str) -> String {
    if text.chars().count() > CAPTION_LIMIT {
        text.chars().take(CAPTION_LIMIT).collect::<String>() + "…"
    } else {
        text.to_owned()
    }
}

/// Sends a reply: its text (in as many messages as it needs), then its file: a PNG as a
/// picture, anything else as a document.
pub(crate) async fn send(bot: &TelegramBot, chat: ChatId, reply: AdminReply) -> Result<(), teloxide::RequestError> {
    let to = teloxide::types::ChatId(chat.0);
    for part in chunks(&reply.text) {
        bot.send_message(to, part).await?;
    }
    if let Some((file, text)) = reply.file {
        let input = InputFile::memory(file.bytes).file_name(file.file_name);
        if file.content_type == "image/png" {
            bot.send_photo(to, input).caption(caption(&text)).await?;
        } else {
            bot.send_document(to, input).caption(caption(&text)).await?;
        }
    }
    Ok(())
}

/// Runs an operator command and returns the reply.
pub(crate) async fn run(bot: &TelegramBot, app: &BotApp, command: AdminCommand) -> AdminReply {
    let engine = &app.deps.engine;
    let result = match command {
        AdminCommand::Report(kind) => {
            return match engine.insights.report(kind).await {
                Ok(report) => crate::insights::summary(&report),
                Err(error) => format!("Could not build the report: {error}").into(),
            };
        }
        AdminCommand::Costs(kind) => {
            return match engine.insights.cost_allocation(kind).await {
                Ok(costs) => crate::insights::cost_allocation(&costs),
                Err(error) => format!("Could not build the cost allocation: {error}").into(),
            };
        }
        AdminCommand::Plan(target) => engine
            .insights
            .capacity_plan(target.map(|secs| chrono::TimeDelta::seconds(i64::from(secs))))
            .await
            .map(|plan| mediagen_reports::text::plan(&plan))
            .map_err(anyhow::Error::from),
        AdminCommand::Stats => stats(app).await,
        AdminCommand::Accounts => accounts(app).await,
        AdminCommand::TopUp { account, amount } => top_up(app, account, amount).await,
        AdminCommand::EnableKey { account, key } => {
            let id = mediagen_domain::AccountId::new(account.clone());
            Ok(if engine.operator.enable_key(&id, &key) {
                format!(
                    "Key {key} of account {account} is back in use. If fal refuses it again, it is set aside again."
                )
            } else {
                format!("Account {account} has no key named {key}. /accounts lists the keys.")
            })
        }
        AdminCommand::Budget(amount) => Ok(format!(
            "The monthly budget is set in configuration ([budget] monthly_budget, or MEDIAGEN__BUDGET__MONTHLY_BUDGET); it is {} now. Asked for {amount}: change the setting and restart.",
            app.deps.engine.config().budget.monthly_budget.map_or("not set".to_owned(), |b| b.to_string())
        )),
        AdminCommand::Quota { user, plan } => {
            if app.plans().get(&plan).is_none() {
                let known: Vec<&str> = app.plans().iter().map(|p| p.name.as_str()).collect();
                return format!("Unknown plan {plan:?}. Plans: {}", known.join(", ")).into();
            }
            update_user(app, user, |u| u.plan = plan.clone())
                .await
                .map(|()| format!("User {user} is now on plan {plan}."))
        }
        AdminCommand::Block(user) => {
            if app.is_admin(user) {
                return "Operators cannot be blocked.".to_owned().into();
            }
            update_user(app, user, |u| u.blocked = true).await.map(|()| format!("User {user} is blocked."))
        }
        AdminCommand::Unblock(user) => {
            update_user(app, user, |u| u.blocked = false).await.map(|()| format!("User {user} is unblocked."))
        }
        AdminCommand::Broadcast(text) => broadcast(bot, app, text).await,
    };
    result.unwrap_or_else(|error| format!("Could not do that: {error}")).into()
}

async fn update_user(
    app: &BotApp,
    user: mediagen_domain::UserId,
    change: impl FnOnce(&mut mediagen_domain::User) + Send,
) -> anyhow::Result<()> {
    app.deps.engine.people.change_user(user, change).await.map_err(|error| match error {
        StorageError::NotFound(what) => anyhow::anyhow!(what),
        other => other.into(),
    })
}

fn model_lines(out: &mut String, usage: &[ModelUsage]) {
    if usage.is_empty() {
        out.push_str("  (no jobs)\n");
    }
    for row in usage {
        let _ = writeln!(
            out,
            "  {}: {} ok, {} failed, users charged {}, fal {}",
            row.model, row.succeeded, row.failed, row.user_charged, row.fal_cost
        );
    }
}

async fn stats(app: &BotApp) -> anyhow::Result<String> {
    let figures = app.deps.engine.operator.operator_stats().await?;
    let tier = &figures.tier;
    let mut out = String::new();
    let _ = writeln!(out, "Today:");
    model_lines(&mut out, &figures.today);
    let _ = writeln!(
        out,
        "This month ({} requests, volume tier {}: {}% off):",
        figures.month_requests, tier.name, tier.percent_off
    );
    model_lines(&mut out, &figures.month);
    let _ = writeln!(out, "  fal cost after volume discount: {}", figures.fal_month_discounted);
    if tier.enterprise {
        let _ = writeln!(out, "  Above the enterprise threshold: talk to fal sales about enterprise pricing.");
    }
    let _ = writeln!(out, "Users active this month: {}", figures.active_users);
    let _ = writeln!(out, "Queue now: {}", figures.queued);
    for account in &figures.accounts {
        let _ = writeln!(out, "  {}: {}/{} in flight", account.id, account.in_flight, account.limit);
    }
    let _ = write!(out, "Prompt cache: {} hits, {} misses", figures.cache_hits, figures.cache_misses);
    Ok(out)
}

async fn accounts(app: &BotApp) -> anyhow::Result<String> {
    let accounts = app.deps.engine.operator.accounts_overview().await?;
    if accounts.is_empty() {
        return Ok("No fal accounts are configured.".to_owned());
    }
    let mut out = String::new();
    for a in accounts {
        let usable_keys = a.keys.iter().filter(|k| k.refused_since.is_none()).count();
        let state = match (&a.locked, a.disabled, a.paused) {
            _ if a.retired => "retired (no longer configured; takes no work)".to_owned(),
            (Some(lock), _, _) => format!("LOCKED since {} ({})", lock.since.format("%Y-%m-%d %H:%M UTC"), lock.reason),
            (None, true, _) => "disabled".to_owned(),
            _ if !a.keys.is_empty() && usable_keys == 0 => "every key refused by fal".to_owned(),
            (None, false, true) => "paused by the circuit breaker".to_owned(),
            (None, false, false) => "active".to_owned(),
        };
        let _ = writeln!(out, "{} — {state}", a.id);
        let _ = writeln!(
            out,
            "  limit {} ({} in flight){}; bought over 28 days: {}; balance {}",
            a.limit,
            a.in_flight,
            a.limit_override.map_or(String::new(), |o| format!(", negotiated {o}")),
            a.window_sum,
            a.balance
        );
        match &a.next_drop {
            Some(drop) => {
                let _ = writeln!(
                    out,
                    "  limit drops {} → {} at {}",
                    drop.from,
                    drop.to,
                    drop.at.format("%Y-%m-%d %H:%M UTC")
                );
            }
            None => out.push_str("  no limit drop ahead\n"),
        }
        if let Some(top_up) = &a.top_up {
            let _ = writeln!(out, "  {top_up}");
        }
        let keys: Vec<String> = a
            .keys
            .iter()
            .map(|k| match k.refused_since {
                Some(since) => format!(
                    "{} REFUSED since {} (/enablekey {} {})",
                    k.key,
                    since.format("%Y-%m-%d %H:%M UTC"),
                    a.id,
                    k.key
                ),
                None => format!("{} ok", k.key),
            })
            .collect();
        if !keys.is_empty() {
            let _ = writeln!(out, "  keys: {}", keys.join("; "));
        }
    }
    Ok(out)
}

async fn top_up(app: &BotApp, account: String, amount: Money) -> anyhow::Result<String> {
    let id = AccountId::new(account);
    let limit = app.deps.engine.operator.record_purchase(&id, amount, app.now()).await?;
    Ok(format!("Recorded a purchase of {amount} for {id}. Its limit is now {limit}."))
}

async fn broadcast(bot: &TelegramBot, app: &BotApp, text: String) -> anyhow::Result<String> {
    let users = app.deps.engine.people.users().await?;
    let chats: Vec<_> =
        users.iter().filter(|u| !u.blocked && u.role != Role::Admin).map(|u| teloxide::types::ChatId(u.id.0)).collect();
    // The throttle keeps the pace within Telegram's limits; a few in flight at once use part
    // of the global limit and leave the rest to replies and results meanwhile. Each send
    // owns its bot and text, so the handler's future stays `Send`.
    let reached: Vec<bool> = futures::stream::iter(chats)
        .map(|chat| broadcast_to(bot.clone(), chat, text.clone()))
        .buffer_unordered(app.config.broadcast_in_flight.max(1))
        .collect()
        .await;
    let sent = reached.iter().filter(|ok| **ok).count();
    let failed = reached.len() - sent;
    Ok(format!("Broadcast sent to {sent} users ({failed} could not be reached)."))
}

/// One broadcast message, sent again once after a 429; whether it arrived.
async fn broadcast_to(bot: TelegramBot, chat: teloxide::types::ChatId, text: String) -> bool {
    match bot.send_message(chat, text.clone()).await {
        Ok(_) => true,
        Err(teloxide::RequestError::RetryAfter(wait)) => {
            tokio::time::sleep(wait.duration()).await;
            bot.send_message(chat, text).await.is_ok()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_replies_split_at_line_ends_under_the_limit() {
        let line = format!("{}\n", "x".repeat(999));
        let text = line.repeat(9);
        let parts = chunks(&text);
        assert_eq!(parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(), vec![4000, 4000, 1000]);
        assert_eq!(parts.concat(), text);
        let one_long_line = "y".repeat(9_000);
        let parts = chunks(&one_long_line);
        assert_eq!(parts.iter().map(String::len).collect::<Vec<_>>(), vec![4000, 4000, 1000]);
        assert_eq!(chunks("short"), vec!["short".to_owned()]);
        assert_eq!(caption(&"z".repeat(1500)).chars().count(), 1001);
        assert_eq!(caption("chart"), "chart");
    }
}
