//! `mediagen init`: a first setup. It checks each answer as it is given, with the checks of
//! `mediagen doctor` (the token with `getMe`, each fal key with the Platform API, which also
//! tells an admin key from an inference-only one, the admins with `getChat`, the database by
//! creating and migrating it), then writes a commented settings file without secrets and
//! prints the environment lines for the secrets and the commands to run next.
//!
//! Secrets never go into the settings file: the bot reads them from the environment only.
//! `--write-secrets` puts them in an environment file of their own, readable by its owner.

use crate::doctor::{self, Check, Status};
use crate::settings::{Settings, key_variable};
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// `mediagen init`'s flags; what is missing is asked for when stdin is a terminal.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// The bot token from @BotFather.
    #[arg(long)]
    pub token: Option<String>,
    /// A fal key: `KEY` (account `main`), `ACCOUNT=KEY` or `ACCOUNT/NAME=KEY`; repeatable.
    #[arg(long = "fal-key", value_name = "[ACCOUNT[/NAME]=]KEY")]
    pub fal_keys: Vec<String>,
    /// An operator's Telegram user id; repeatable.
    #[arg(long = "admin", value_name = "ID")]
    pub admins: Vec<i64>,
    /// `sqlite://FILE` (default `sqlite://mediagen.sqlite`) or `postgres://…`; created and migrated.
    #[arg(long)]
    pub database: Option<String>,
    /// Also write the secrets to an environment file next to `--out` (mode 0600), instead of
    /// printing them.
    #[arg(long)]
    pub write_secrets: bool,
    /// The settings file to write.
    #[arg(long, default_value = "mediagen.toml")]
    pub out: PathBuf,
    /// Overwrite `--out` (and the environment file) if it exists.
    #[arg(long)]
    pub force: bool,
}

/// One fal key as given: its account, its name in the settings and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenKey {
    /// The account's name.
    pub account: String,
    /// The key's name within the account.
    pub name: String,
    /// The key itself.
    pub secret: String,
}

/// Reads `--fal-key` values; a plain key goes to account `main`, named `primary`, then
/// `key2`, `key3`… when there are several.
///
/// # Errors
/// When an account or key name is empty or has characters a variable name cannot carry.
pub fn parse_fal_keys(specs: &[String]) -> anyhow::Result<Vec<GivenKey>> {
    let mut keys: Vec<GivenKey> = Vec::new();
    for spec in specs {
        let named = spec.split_once('=').filter(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'))
        });
        let (account, name, secret) = match named {
            Some((label, secret)) => match label.split_once('/') {
                Some((account, name)) => (account.to_owned(), name.to_owned(), secret),
                None => (label.to_owned(), String::new(), secret),
            },
            None => ("main".to_owned(), String::new(), spec.as_str()),
        };
        if account.is_empty() || secret.trim().is_empty() {
            bail!("--fal-key needs [ACCOUNT[/NAME]=]KEY with a non-empty account and key");
        }
        let name = if name.is_empty() {
            match keys.iter().filter(|k| k.account == account).count() {
                0 => "primary".to_owned(),
                n => format!("key{}", n + 1),
            }
        } else {
            name
        };
        if keys.iter().any(|k| k.account == account && k.name == name) {
            bail!("fal key {account}/{name} is given twice");
        }
        keys.push(GivenKey { account, name, secret: secret.trim().to_owned() });
    }
    Ok(keys)
}

/// The settings file: commented, no secret in it.
pub fn settings_file(admins: &[i64], keys: &[GivenKey], out: &Path) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# mediagen settings written by `mediagen init`, layered over config/default.toml.");
    let _ = writeln!(text, "# Use: MEDIAGEN_CONFIG={} mediagen doctor, then the same with `run`.", out.display());
    let _ = writeln!(text, "# Secrets are not here: the bot reads TELOXIDE_TOKEN, DATABASE_URL and the fal keys");
    let _ = writeln!(text, "# (one variable per key, named beside it below) from its environment only.");
    let _ = writeln!(text);
    let _ = writeln!(text, "[admin]");
    let _ = writeln!(text, "# Telegram user ids of the operators: admin commands, alerts and /topup go to them.");
    let ids: Vec<String> = admins.iter().map(i64::to_string).collect();
    let _ = writeln!(text, "ids = [{}]", ids.join(", "));
    let _ = writeln!(text);
    let _ = writeln!(text, "[fal]");
    let _ = writeln!(text, "# One entry per fal account (capacity and billing belong to the account), its keys used");
    let _ = writeln!(text, "# in turn. After buying credit, tell the bot: /topup <account> <dollars>.");
    let _ = writeln!(text, "accounts = [");
    let mut accounts: Vec<&str> = Vec::new();
    for key in keys {
        if !accounts.contains(&key.account.as_str()) {
            accounts.push(&key.account);
        }
    }
    for account in accounts {
        let names: Vec<&GivenKey> = keys.iter().filter(|k| k.account == account).collect();
        let quoted: Vec<String> = names.iter().map(|k| format!("\"{}\"", k.name)).collect();
        let variables: Vec<String> = names.iter().map(|k| key_variable(&k.account, &k.name)).collect();
        let _ =
            writeln!(text, "  {{ name = \"{account}\", keys = [{}] }},  # {}", quoted.join(", "), variables.join(", "));
    }
    let _ = writeln!(text, "]");
    text
}

/// A `export NAME='value'` line a POSIX shell reads back exactly.
fn export_line(name: &str, value: &str) -> String {
    format!("export {name}='{}'", value.replace('\'', "'\\''"))
}

fn ask(prompt: &str) -> anyhow::Result<String> {
    let mut out = std::io::stderr();
    write!(out, "{prompt}: ")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// Prints one check the way `doctor` does; returns whether it passed.
fn show(out: &mut impl Write, check: &Check) -> anyhow::Result<bool> {
    writeln!(out, "{:<4} {}: {}", check.status.word(), check.subject, check.detail)?;
    if let Some(fix) = &check.fix {
        writeln!(out, "     fix: {fix}")?;
    }
    Ok(check.status != Status::Fail)
}

/// Runs `init`: the checks, then the file and the instructions on `out`. Returns whether
/// the file was written (`false`: a check failed and nothing was written).
///
/// # Errors
/// When a required answer is missing and cannot be asked for, `--out` exists without
/// `--force`, or a file cannot be written.
pub async fn run(mut args: InitArgs, settings: &Settings, out: &mut impl Write) -> anyhow::Result<bool> {
    let interactive = std::io::stdin().is_terminal();
    let env_file = args.out.with_extension("env");
    for path in std::iter::once(&args.out).chain(args.write_secrets.then_some(&env_file)) {
        if path.exists() && !args.force {
            bail!("{} exists; pass --force to overwrite it", path.display());
        }
    }
    let api_url = settings.telegram.api_url.as_str();
    let platform_url = settings.fal.platform_url.as_str();

    // The token, asked again in a terminal until Telegram accepts it.
    let token = loop {
        let token = match args.token.take() {
            Some(token) => token,
            None if interactive => ask("Bot token from @BotFather")?,
            None => bail!("--token is missing (or run `mediagen init` in a terminal to be asked)"),
        };
        let check = doctor::check_token_at(api_url, &token).await;
        if show(out, &check)? {
            break token;
        }
        if !interactive {
            return Ok(false);
        }
    };

    if args.fal_keys.is_empty() {
        if !interactive {
            bail!("--fal-key is missing (or run `mediagen init` in a terminal to be asked)");
        }
        args.fal_keys.push(ask("fal API key (fal.ai/dashboard/keys)")?);
    }
    let keys = parse_fal_keys(&args.fal_keys)?;
    let mut keys_ok = true;
    for key in &keys {
        let check = doctor::check_fal_key_at(platform_url, &key.account, &key.name, &key.secret).await;
        keys_ok &= show(out, &check)?;
    }
    if !keys_ok {
        return Ok(false);
    }

    if args.admins.is_empty() && interactive {
        let answer = ask("Your Telegram user id (operator; empty to skip)")?;
        for id in answer.split([',', ' ']).filter(|s| !s.is_empty()) {
            args.admins.push(id.parse().with_context(|| format!("{id:?} is not a Telegram user id"))?);
        }
    }
    for check in doctor::check_admins_at(api_url, &token, &args.admins).await {
        // An admin may start the bot later: said here, checked again by doctor.
        let check = if check.failed() { Check { status: Status::Warn, ..check } } else { check };
        show(out, &check)?;
    }

    let database = match args.database.take() {
        Some(url) => url,
        None if interactive => {
            let answer = ask("Database (empty: sqlite://mediagen.sqlite, or postgres://…)")?;
            if answer.is_empty() { crate::storage::DEFAULT_URL.to_owned() } else { answer }
        }
        None => crate::storage::DEFAULT_URL.to_owned(),
    };
    let opened = crate::storage::open(&database, 1).await;
    let check = match opened {
        Ok(storage) => {
            drop(storage);
            doctor::check_database(&database).await
        }
        Err(error) => Check::fail(
            "database",
            format!("cannot create or migrate {}: {error:#}", doctor::redact_url(&database)),
            "check the URL, that the server runs and that this user may create tables",
        ),
    };
    if !show(out, &check)? {
        return Ok(false);
    }

    std::fs::write(&args.out, settings_file(&args.admins, &keys, &args.out))
        .with_context(|| format!("writing {}", args.out.display()))?;
    writeln!(out, "\nwrote {} (no secrets in it)", args.out.display())?;

    let mut lines = vec![export_line("TELOXIDE_TOKEN", &token)];
    lines.extend(keys.iter().map(|k| export_line(&key_variable(&k.account, &k.name), &k.secret)));
    lines.push(export_line("DATABASE_URL", &database));
    if args.write_secrets {
        write_private(&env_file, &(lines.join("\n") + "\n"))?;
        writeln!(out, "wrote the secrets to {} (readable by you only); load them with:", env_file.display())?;
        writeln!(out, "  set -a; . {}; set +a", env_file.display())?;
    } else {
        writeln!(out, "Set these in the bot's environment (secrets: keep them out of shared files):")?;
        for line in &lines {
            writeln!(out, "{line}")?;
        }
    }
    writeln!(out, "Then:")?;
    writeln!(out, "  MEDIAGEN_CONFIG={} mediagen doctor", args.out.display())?;
    writeln!(out, "  MEDIAGEN_CONFIG={} mediagen run", args.out.display())?;
    Ok(true)
}

/// Writes `text` to a new file only its owner may read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn fal_keys_are_named_by_account_and_order() {
        let keys = parse_fal_keys(&specs(&["id:s1", "id:s2", "backup=b:1", "backup/spare=b:2"])).unwrap();
        let names: Vec<(&str, &str, &str)> =
            keys.iter().map(|k| (k.account.as_str(), k.name.as_str(), k.secret.as_str())).collect();
        assert_eq!(
            names,
            [
                ("main", "primary", "id:s1"),
                ("main", "key2", "id:s2"),
                ("backup", "primary", "b:1"),
                ("backup", "spare", "b:2")
            ]
        );
        assert!(parse_fal_keys(&specs(&["main=x", "main/primary=y"])).is_err());
        assert!(parse_fal_keys(&specs(&["main="])).is_err());
    }

    #[test]
    fn the_settings_file_loads_and_holds_no_secret() {
        let keys = parse_fal_keys(&specs(&["main=id:top-secret", "backup/b=id:other-secret"])).unwrap();
        let text = settings_file(&[111, 222], &keys, Path::new("mediagen.toml"));
        assert!(!text.contains("top-secret") && !text.contains("other-secret"), "{text}");
        let dir = std::env::temp_dir().join(format!("mediagen-init-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mediagen.toml");
        std::fs::write(&path, &text).unwrap();
        let env = [("FAL_KEY__MAIN__PRIMARY", "a"), ("FAL_KEY__BACKUP__B", "b")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let home = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let settings = Settings::load(&home, Some(&path), &env).unwrap();
        assert_eq!(settings.admins, [111, 222]);
        let accounts: Vec<(&str, usize)> =
            settings.fal.accounts.iter().map(|a| (a.name.as_str(), a.keys.len())).collect();
        assert_eq!(accounts, [("main", 1), ("backup", 1)]);
        assert!(settings.missing_fal_keys.is_empty(), "{:?}", settings.missing_fal_keys);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn export_lines_survive_quotes() {
        assert_eq!(export_line("X", "a'b"), "export X='a'\\''b'");
    }
}
