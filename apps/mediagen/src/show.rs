//! `mediagen config show`: the settings in force, each with the layer it came from, so an
//! operator sees which file or variable won without reading them all. Secrets are never
//! printed: only whether they are set, and the database URL with its password hidden.

use crate::settings::{self, Origin, Settings};
use crate::storage::{self, hide_passwords};
use config::{Source, Value, ValueKind};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

/// Keys whose values are secret whatever they hold, by a part of their last segment.
const SECRET_WORDS: [&str; 4] = ["token", "secret", "password", "passwd"];

/// The settings as `mediagen config show` prints them: every key with its value and origin
/// (a compiled-in file, the home's file, the operator's file or a variable), then the
/// secrets' state, the catalog's and plans' files, and [`Settings::warnings`].
///
/// # Errors
/// When the settings do not load: the same message as at start.
pub fn config_show(base_dir: &Path, overlay: Option<&Path>, vars: &HashMap<String, String>) -> anyhow::Result<String> {
    let loaded = Settings::load(base_dir, overlay, vars)?;

    // Which layer set each key last: each layer read alone, in order.
    let mut origins: BTreeMap<String, Origin> = BTreeMap::new();
    let layers = settings::layers(base_dir, overlay, vars);
    for layer in &layers {
        let alone = config::Config::builder().add_source(vec![layer.source.clone_into_box()]).build()?;
        let mut keys = BTreeMap::new();
        flatten(alone.collect()?, "", &mut keys);
        for key in keys.into_keys() {
            let origin = match &layer.origin {
                Some(origin) => origin.clone(),
                None => Origin::Variable(
                    settings::variable_setting(&key, vars).map_or_else(|| settings::variable_of(&key), str::to_owned),
                ),
            };
            origins.insert(key, origin);
        }
    }
    let mut values = BTreeMap::new();
    flatten(settings::merge(layers)?.collect()?, "", &mut values);

    let mut out = String::from("# The settings in force and where each comes from; secrets are never shown.\n");
    let lines: Vec<(String, String)> = values
        .iter()
        .map(|(key, value)| {
            let origin = origins.get(key).map_or_else(|| "?".to_owned(), ToString::to_string);
            (format!("{key} = {}", render(key, value)), origin)
        })
        .collect();
    let width = lines.iter().map(|(setting, _)| setting.chars().count()).max().unwrap_or(0).min(64);
    for (setting, origin) in lines {
        let _ = writeln!(out, "{setting:<width$}  # {origin}");
    }

    out.push_str("\n# Secrets, from the environment only\n");
    let set = |name: &str| vars.get(name).is_some_and(|v| !v.is_empty());
    let state = |name: &str| if set(name) { "set" } else { "not set" };
    let _ = writeln!(out, "TELOXIDE_TOKEN = {}", state("TELOXIDE_TOKEN"));
    match vars.get("DATABASE_URL").filter(|v| !v.is_empty()) {
        Some(url) => {
            let _ = writeln!(out, "DATABASE_URL = {}", hide_passwords(url));
        }
        None => {
            let _ = writeln!(out, "DATABASE_URL = not set: {}", storage::DEFAULT_URL);
        }
    }
    for account in &loaded.fal.accounts {
        for key in &account.keys {
            let variable = settings::key_variable(&account.name, &key.name);
            let from = if set(&variable) { String::new() } else { " (from FAL_KEY)".to_owned() };
            let _ = writeln!(out, "{variable} = set{from}");
        }
    }
    for variable in &loaded.missing_fal_keys {
        let _ = writeln!(out, "{variable} = missing");
    }

    let list = |origins: &[Origin]| origins.iter().map(ToString::to_string).collect::<Vec<_>>().join(", then ");
    out.push_str("\n# Files\n");
    let _ = writeln!(out, "settings: {}", list(&loaded.sources.files));
    let _ = writeln!(out, "model catalog: {}", list(&loaded.sources.catalog));
    let _ = writeln!(out, "quota plans: {}", loaded.sources.plans);

    let warnings = loaded.warnings();
    if !warnings.is_empty() {
        out.push_str("\n# Warnings\n");
        for warning in warnings {
            let _ = writeln!(out, "- {warning}");
        }
    }
    Ok(scrub(out, vars))
}

/// Every leaf of `table` by its dotted key; arrays (lists of tables included) are leaves.
fn flatten(table: config::Map<String, Value>, prefix: &str, out: &mut BTreeMap<String, Value>) {
    for (key, value) in table {
        let key = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
        match value.kind {
            ValueKind::Table(inner) if !inner.is_empty() => flatten(inner, &key, out),
            _ => {
                out.insert(key, value);
            }
        }
    }
}

/// A value as TOML writes it (text quoted, lists and tables inline), with passwords in
/// URLs hidden and the values of secret-named keys not shown at all.
fn render(key: &str, value: &Value) -> String {
    let last = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    if SECRET_WORDS.iter().any(|word| last.contains(word)) {
        return "(hidden)".to_owned();
    }
    if matches!(value.kind, ValueKind::Nil) {
        return "(none)".to_owned();
    }
    let text = match value.clone().try_deserialize::<toml::Value>() {
        Ok(toml) => toml.to_string(),
        Err(_) => value.to_string(),
    };
    hide_passwords(&text)
}

/// The last guard: the values of the secret variables, wherever they might have been
/// echoed (a token pasted into a URL setting, say), replaced.
fn scrub(mut text: String, vars: &HashMap<String, String>) -> String {
    let secret = |name: &str| name == "TELOXIDE_TOKEN" || name == "FAL_KEY" || name.starts_with("FAL_KEY__");
    let mut secrets: Vec<&str> =
        vars.iter().filter(|(name, value)| secret(name) && value.len() >= 4).map(|(_, value)| value.as_str()).collect();
    secrets.sort_by_key(|value| std::cmp::Reverse(value.len()));
    for value in secrets {
        text = text.replace(value, "[REDACTED]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// The line that shows `key`.
    fn line<'a>(shown: &'a str, key: &str) -> &'a str {
        let prefix = format!("{key} = ");
        shown.lines().find(|line| line.starts_with(&prefix)).unwrap_or_else(|| panic!("no {key}:\n{shown}"))
    }

    #[test]
    fn shows_each_value_with_its_origin_and_never_a_secret() {
        let dir = std::env::temp_dir().join(format!("mediagen-show-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let overlay = dir.join("local.toml");
        std::fs::write(&overlay, "[engine]\nclaim_batch = 8\n").unwrap();
        let env = env_of(&[
            ("TELOXIDE_TOKEN", "123456:token-abcdef"),
            ("FAL_KEY", "key-id:fal-secret-xyz"),
            ("DATABASE_URL", "postgres://bot:db-pass-789@db.internal:5432/mediagen"),
            ("MEDIAGEN__ENGINE__OVERHANG", "2"),
            ("MEDIAGEN__BUDGET__MONTHLY_BUDGET", "12.5"),
            ("MEDIAGEN__TELEGRAM__API_URL", "https://relay:relay-pass-456@tg.internal"),
            ("MEDIAGEN__ADMIN__IDS", "42"),
        ]);
        let shown = config_show(&workspace(), Some(&overlay), &env).unwrap();
        for secret in ["token-abcdef", "fal-secret-xyz", "db-pass-789", "relay-pass-456"] {
            assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
        }
        assert!(line(&shown, "engine.overhang").ends_with("# MEDIAGEN__ENGINE__OVERHANG"), "{shown}");
        assert!(line(&shown, "engine.overhang").contains("= 2 "), "{shown}");
        assert!(line(&shown, "budget.monthly_budget").contains("\"12.5\""), "money is shown as written: {shown}");
        assert!(
            line(&shown, "engine.claim_batch").contains("= 8 ")
                && line(&shown, "engine.claim_batch").contains("(operator's file)")
        );
        let home_file = workspace().join("config/default.toml");
        assert!(line(&shown, "engine.lease_secs").ends_with(&format!("# {} (home)", home_file.display())), "{shown}");
        assert!(line(&shown, "telegram.api_url").contains("https://relay:[REDACTED]@tg.internal"), "{shown}");
        assert_eq!(line(&shown, "TELOXIDE_TOKEN"), "TELOXIDE_TOKEN = set");
        assert_eq!(line(&shown, "DATABASE_URL"), "DATABASE_URL = postgres://bot:[REDACTED]@db.internal:5432/mediagen");
        assert_eq!(line(&shown, "FAL_KEY__MAIN__PRIMARY"), "FAL_KEY__MAIN__PRIMARY = set (from FAL_KEY)");
        assert!(!shown.contains("# Warnings"), "admins are set: {shown}");

        // From a home without config/, the shipped values are the compiled-in ones.
        let bare = config_show(&dir, None, &env_of(&[])).unwrap();
        assert!(line(&bare, "engine.lease_secs").ends_with("# compiled-in config/default.toml"), "{bare}");
        assert_eq!(line(&bare, "FAL_KEY__MAIN__PRIMARY"), "FAL_KEY__MAIN__PRIMARY = missing");
        assert!(bare.contains("DATABASE_URL = not set: sqlite://mediagen.sqlite"), "{bare}");
        assert!(bare.contains("quota plans: compiled-in config/plans.toml"), "{bare}");
        assert!(bare.contains("# Warnings\n- no admins are set"), "{bare}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secret_named_keys_are_hidden_whatever_they_hold() {
        let value = Value::new(None, ValueKind::String("abc".into()));
        assert_eq!(render("telegram.secret_token", &value), "(hidden)");
        assert_eq!(render("telegram.api_url", &value), "\"abc\"");
    }
}
