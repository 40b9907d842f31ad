//! What a user's text or button press means, parsed before anything else sees it.
//!
//! Pure functions over strings, so hostile input (huge, empty, control characters, forged
//! callback data) is handled in one tested place.

use mediagen_domain::{ImageSize, JobId, ModelId, Money, UserId};
use mediagen_engine::ReportKind;

/// A command from a user's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// `/start`.
    Start,
    /// `/help`.
    Help,
    /// Plain text: generate with the default model.
    Generate(String),
    /// `/img <prompt>`: choose model and size on a keyboard.
    Img(String),
    /// `/enhance <prompt>`.
    Enhance(String),
    /// `/models`.
    Models,
    /// `/settings`, optionally with a change.
    Settings(Option<SettingsChange>),
    /// `/balance`.
    Balance,
    /// `/history`.
    History,
    /// `/cancel`.
    Cancel,
    /// An operator command (checked against the admin list before anything happens).
    Admin(AdminCommand),
    /// A command we do not know, or an operator command with bad arguments (the text says why).
    Unknown(String),
}

/// A change made through `/settings <what> <value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsChange {
    /// Default model.
    Model(ModelId),
    /// Default size.
    Size(ImageSize),
}

/// Operator commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// `/stats`.
    Stats,
    /// `/accounts`.
    Accounts,
    /// `/topup <account> <amount>`.
    TopUp {
        /// Account name.
        account: String,
        /// Dollars bought.
        amount: Money,
    },
    /// `/enablekey <account> <key>`: puts back a key fal refused, once fixed at fal.
    EnableKey {
        /// Account name.
        account: String,
        /// The key's name from configuration.
        key: String,
    },
    /// `/budget <amount>`.
    Budget(Money),
    /// `/quota <user> <plan>`.
    Quota {
        /// Telegram user id.
        user: UserId,
        /// Plan name.
        plan: String,
    },
    /// `/block <user>`.
    Block(UserId),
    /// `/unblock <user>`.
    Unblock(UserId),
    /// `/broadcast <text>`.
    Broadcast(String),
    /// `/report [day|week|month]`: the summary so far, with its chart.
    Report(ReportKind),
    /// `/costs [day|week|month]` or `/report csv`: the cost allocation per user as CSV.
    Costs(ReportKind),
    /// `/plan [target]`: the capacity plan, for a p95 wait target in seconds (`30`, `45s`,
    /// `2m`) or the configured one.
    Plan(Option<u32>),
}

/// Parses a message's text. `bot_username` strips `/cmd@bot` suffixes meant for us.
pub fn parse_text(text: &str, bot_username: &str) -> UserCommand {
    let text = text.trim();
    let Some(rest) = text.strip_prefix('/') else {
        return UserCommand::Generate(text.to_owned());
    };
    let (head, args) = match rest.split_once(char::is_whitespace) {
        Some((head, args)) => (head, args.trim()),
        None => (rest, ""),
    };
    let command = match head.split_once('@') {
        Some((command, target)) if target.eq_ignore_ascii_case(bot_username) || bot_username.is_empty() => command,
        Some(_) => return UserCommand::Unknown(head.to_owned()),
        None => head,
    };
    let bad = |usage: &str| UserCommand::Unknown(format!("usage: {usage}"));
    match command.to_ascii_lowercase().as_str() {
        "start" => UserCommand::Start,
        "help" => UserCommand::Help,
        "img" | "image" => UserCommand::Img(args.to_owned()),
        "enhance" => UserCommand::Enhance(args.to_owned()),
        "models" => UserCommand::Models,
        "settings" => match parse_settings(args) {
            Ok(change) => UserCommand::Settings(change),
            Err(()) => bad("/settings model <id> | /settings size <WxH>"),
        },
        "balance" => UserCommand::Balance,
        "history" => UserCommand::History,
        "cancel" => UserCommand::Cancel,
        "stats" => UserCommand::Admin(AdminCommand::Stats),
        "accounts" => UserCommand::Admin(AdminCommand::Accounts),
        "topup" => match args.split_whitespace().collect::<Vec<_>>().as_slice() {
            [account, amount] => match amount.parse::<Money>() {
                Ok(amount) if amount > Money::ZERO => {
                    UserCommand::Admin(AdminCommand::TopUp { account: (*account).to_owned(), amount })
                }
                _ => bad("/topup <account> <dollars>"),
            },
            _ => bad("/topup <account> <dollars>"),
        },
        "enablekey" => match args.split_whitespace().collect::<Vec<_>>().as_slice() {
            [account, key] => {
                UserCommand::Admin(AdminCommand::EnableKey { account: (*account).to_owned(), key: (*key).to_owned() })
            }
            _ => bad("/enablekey <account> <key>"),
        },
        "budget" => match args.parse::<Money>() {
            Ok(amount) if !amount.is_negative() => UserCommand::Admin(AdminCommand::Budget(amount)),
            _ => bad("/budget <dollars>"),
        },
        "quota" => match args.split_whitespace().collect::<Vec<_>>().as_slice() {
            [user, plan] => match user.parse::<i64>() {
                Ok(id) => UserCommand::Admin(AdminCommand::Quota { user: UserId(id), plan: (*plan).to_owned() }),
                Err(_) => bad("/quota <user id> <plan>"),
            },
            _ => bad("/quota <user id> <plan>"),
        },
        "block" | "unblock" => match args.parse::<i64>() {
            Ok(id) if command.eq_ignore_ascii_case("block") => UserCommand::Admin(AdminCommand::Block(UserId(id))),
            Ok(id) => UserCommand::Admin(AdminCommand::Unblock(UserId(id))),
            Err(_) => bad("/block <user id>"),
        },
        "report" => match args.split_whitespace().collect::<Vec<_>>().as_slice() {
            [] => UserCommand::Admin(AdminCommand::Report(ReportKind::Day)),
            ["csv"] => UserCommand::Admin(AdminCommand::Costs(ReportKind::Month)),
            ["csv", kind] | [kind, "csv"] => match ReportKind::parse(kind) {
                Some(kind) => UserCommand::Admin(AdminCommand::Costs(kind)),
                None => bad("/report day|week|month|csv"),
            },
            [kind] => match ReportKind::parse(kind) {
                Some(kind) => UserCommand::Admin(AdminCommand::Report(kind)),
                None => bad("/report day|week|month|csv"),
            },
            _ => bad("/report day|week|month|csv"),
        },
        "costs" => match args {
            "" => UserCommand::Admin(AdminCommand::Costs(ReportKind::Month)),
            kind => match ReportKind::parse(kind) {
                Some(kind) => UserCommand::Admin(AdminCommand::Costs(kind)),
                None => bad("/costs [day|week|month]"),
            },
        },
        "plan" => match args {
            "" => UserCommand::Admin(AdminCommand::Plan(None)),
            target => match parse_seconds(target) {
                Some(secs) => UserCommand::Admin(AdminCommand::Plan(Some(secs))),
                None => bad("/plan [p95 wait target, e.g. 30s or 2m]"),
            },
        },
        "broadcast" if !args.is_empty() => UserCommand::Admin(AdminCommand::Broadcast(args.to_owned())),
        "broadcast" => bad("/broadcast <text>"),
        _ => UserCommand::Unknown(command.chars().take(64).collect()),
    }
}

/// `30`, `30s`, `2m`, `1h` as seconds (at most a day).
fn parse_seconds(text: &str) -> Option<u32> {
    let text = text.trim().to_ascii_lowercase();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text.as_str(), ""),
    };
    let n: u32 = number.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "m" | "min" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    (secs <= 86_400).then_some(secs)
}

fn parse_settings(args: &str) -> Result<Option<SettingsChange>, ()> {
    let mut words = args.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (None, _, _) => Ok(None),
        (Some("model"), Some(id), None) => Ok(Some(SettingsChange::Model(ModelId::new(id)))),
        (Some("size"), Some(size), None) => size.parse().map(|s| Some(SettingsChange::Size(s))).map_err(|_| ()),
        _ => Err(()),
    }
}

/// What a button press asks for. Encoded in Telegram's 64-byte callback data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ButtonAction {
    /// Run the job's request again with a new seed.
    Again(JobId),
    /// Several images of the job's request.
    Variations(JobId),
    /// Explain how to edit the job's image.
    Edit(JobId),
    /// Cancel a job.
    Cancel(JobId),
    /// Generate a pending prompt (from `/enhance` or `/img`) with a catalog model and size.
    Pick {
        /// Id of the pending prompt.
        pending: u64,
        /// Index into the enabled image models.
        model: u8,
        /// Index into that model's sizes.
        size: u8,
    },
    /// Settings toggles.
    ToggleFile,
    /// Settings toggles.
    ToggleEnhance,
    /// Settings toggles.
    SwitchLanguage,
}

impl ButtonAction {
    /// Compact text for callback data (always well under 64 bytes).
    pub fn encode(&self) -> String {
        match self {
            ButtonAction::Again(job) => format!("a:{}", job.0),
            ButtonAction::Variations(job) => format!("v:{}", job.0),
            ButtonAction::Edit(job) => format!("e:{}", job.0),
            ButtonAction::Cancel(job) => format!("c:{}", job.0),
            ButtonAction::Pick { pending, model, size } => format!("p:{pending}:{model}:{size}"),
            ButtonAction::ToggleFile => "s:file".to_owned(),
            ButtonAction::ToggleEnhance => "s:enh".to_owned(),
            ButtonAction::SwitchLanguage => "s:lang".to_owned(),
        }
    }

    /// Parses callback data; `None` for anything we did not make (forged or from an old version).
    pub fn decode(data: &str) -> Option<ButtonAction> {
        if data.len() > 64 {
            return None;
        }
        let mut parts = data.split(':');
        let kind = parts.next()?;
        let first = parts.next();
        let job = || first.and_then(|n| n.parse::<i64>().ok()).filter(|n| *n > 0).map(JobId);
        let action = match kind {
            "a" => ButtonAction::Again(job()?),
            "v" => ButtonAction::Variations(job()?),
            "e" => ButtonAction::Edit(job()?),
            "c" => ButtonAction::Cancel(job()?),
            "p" => ButtonAction::Pick {
                pending: first?.parse().ok()?,
                model: parts.next()?.parse().ok()?,
                size: parts.next()?.parse().ok()?,
            },
            "s" => match first? {
                "file" => ButtonAction::ToggleFile,
                "enh" => ButtonAction::ToggleEnhance,
                "lang" => ButtonAction::SwitchLanguage,
                _ => return None,
            },
            _ => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_generates() {
        assert_eq!(parse_text("  a cat  ", "bot"), UserCommand::Generate("a cat".into()));
    }

    #[test]
    fn commands_with_and_without_bot_suffix() {
        assert_eq!(parse_text("/img a cat", "mediagen_bot"), UserCommand::Img("a cat".into()));
        assert_eq!(parse_text("/img@mediagen_bot a cat", "mediagen_bot"), UserCommand::Img("a cat".into()));
        assert_eq!(parse_text("/HELP", "b"), UserCommand::Help);
        assert!(matches!(parse_text("/img@other_bot a cat", "mediagen_bot"), UserCommand::Unknown(_)));
        assert!(matches!(parse_text("/frobnicate", "b"), UserCommand::Unknown(_)));
    }

    #[test]
    fn admin_commands_parse_and_bad_arguments_are_explained() {
        assert_eq!(
            parse_text("/topup main 100", "b"),
            UserCommand::Admin(AdminCommand::TopUp { account: "main".into(), amount: Money::from_dollars(100) })
        );
        assert_eq!(
            parse_text("/budget 250.50", "b"),
            UserCommand::Admin(AdminCommand::Budget(Money::from_micros(250_500_000)))
        );
        assert_eq!(
            parse_text("/quota 42 pro", "b"),
            UserCommand::Admin(AdminCommand::Quota { user: UserId(42), plan: "pro".into() })
        );
        assert_eq!(parse_text("/block 42", "b"), UserCommand::Admin(AdminCommand::Block(UserId(42))));
        assert_eq!(parse_text("/unblock 42", "b"), UserCommand::Admin(AdminCommand::Unblock(UserId(42))));
        assert_eq!(
            parse_text("/enablekey main k2", "b"),
            UserCommand::Admin(AdminCommand::EnableKey { account: "main".into(), key: "k2".into() })
        );
        for bad in [
            "/topup main",
            "/topup main -5",
            "/topup main abc",
            "/budget x",
            "/quota x pro",
            "/block",
            "/broadcast",
            "/enablekey main",
        ] {
            match parse_text(bad, "b") {
                UserCommand::Unknown(why) => assert!(why.starts_with("usage:"), "{bad}: {why}"),
                other => panic!("{bad} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn report_costs_and_plan_commands() {
        let admin = |text: &str| match parse_text(text, "b") {
            UserCommand::Admin(command) => command,
            other => panic!("{text} parsed as {other:?}"),
        };
        assert_eq!(admin("/report"), AdminCommand::Report(ReportKind::Day));
        assert_eq!(admin("/report week"), AdminCommand::Report(ReportKind::Week));
        assert_eq!(admin("/report Month"), AdminCommand::Report(ReportKind::Month));
        assert_eq!(admin("/report csv"), AdminCommand::Costs(ReportKind::Month));
        assert_eq!(admin("/report csv week"), AdminCommand::Costs(ReportKind::Week));
        assert_eq!(admin("/costs"), AdminCommand::Costs(ReportKind::Month));
        assert_eq!(admin("/costs day"), AdminCommand::Costs(ReportKind::Day));
        assert_eq!(admin("/plan"), AdminCommand::Plan(None));
        assert_eq!(admin("/plan 45"), AdminCommand::Plan(Some(45)));
        assert_eq!(admin("/plan 45s"), AdminCommand::Plan(Some(45)));
        assert_eq!(admin("/plan 2m"), AdminCommand::Plan(Some(120)));
        for bad in ["/report year", "/report day week", "/costs forever", "/plan soon", "/plan 2d", "/plan 99999999h"] {
            match parse_text(bad, "b") {
                UserCommand::Unknown(why) => assert!(why.starts_with("usage:"), "{bad}: {why}"),
                other => panic!("{bad} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn settings_changes() {
        assert_eq!(parse_text("/settings", "b"), UserCommand::Settings(None));
        assert_eq!(
            parse_text("/settings size 1024x768", "b"),
            UserCommand::Settings(Some(SettingsChange::Size(ImageSize::new(1024, 768))))
        );
        assert!(matches!(parse_text("/settings size huge", "b"), UserCommand::Unknown(_)));
    }

    #[test]
    fn button_data_round_trips_and_forgeries_are_refused() {
        let actions = [
            ButtonAction::Again(JobId(9_000_000_000)),
            ButtonAction::Variations(JobId(1)),
            ButtonAction::Edit(JobId(2)),
            ButtonAction::Cancel(JobId(3)),
            ButtonAction::Pick { pending: u64::MAX, model: 255, size: 3 },
            ButtonAction::ToggleFile,
            ButtonAction::ToggleEnhance,
            ButtonAction::SwitchLanguage,
        ];
        for action in actions {
            let data = action.encode();
            assert!(data.len() <= 64, "{data}");
            assert_eq!(ButtonAction::decode(&data), Some(action));
        }
        for forged in ["", "a", "a:", "a:-1", "a:0", "a:1:2", "p:1:2", "p:x:1:1", "s:root", "z:1", &"a".repeat(65)] {
            assert_eq!(ButtonAction::decode(forged), None, "{forged}");
        }
    }

    #[test]
    fn hostile_text_never_panics() {
        for text in ["", "/", "//", "/@", "/ @", "\u{0}\u{7}", "/img\u{0}", &"/".repeat(10_000), "/цвет", "/img@"] {
            let _ = parse_text(text, "bot");
        }
    }
}
