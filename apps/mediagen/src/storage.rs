//! The storage choice, in one setting: the database URL.
//!
//! `sqlite://…` (or no URL at all) opens the embedded SQLite adapter on a file, created on
//! first use by `run` and `migrate` (commands that only read refuse a missing one, see
//! [`open_existing`]): no server to run, right for one bot process on one machine.
//! `postgres://…` or `postgresql://…` opens the PostgreSQL adapter: for several bot
//! processes sharing one database (their claims respect the fal accounts' limits together).
//! Either way the rest of the app sees the same ports as `Arc<dyn …>`, and migrations are
//! applied on open.

use anyhow::{Context, bail};
use mediagen_ports::{AccountStore, AlertLog, JobQueue, PromptCache, ReportStore, StorageError, UsageStore, UserStore};
use mediagen_postgres::PgStore;
use mediagen_sqlite::SqliteStore;
use std::sync::Arc;

/// The database used when `DATABASE_URL` is not set: a SQLite file in the working
/// directory, created if missing.
pub const DEFAULT_URL: &str = "sqlite://mediagen.sqlite";

/// Which adapter a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file (`sqlite:`).
    Sqlite,
    /// A PostgreSQL server (`postgres://`, `postgresql://`).
    Postgres,
}

impl Backend {
    /// The adapter `url` selects, from its scheme alone.
    ///
    /// # Errors
    /// When the scheme is neither SQLite's nor PostgreSQL's. The message never repeats the
    /// URL, which may carry a password.
    pub fn of(url: &str) -> anyhow::Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            let scheme = url.split_once(':').map_or("(none)", |(scheme, _)| scheme);
            bail!("DATABASE_URL must start with sqlite://, postgres:// or postgresql:// (its scheme is {scheme:?})")
        }
    }

    /// A name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// Every storage port, on one adapter (the same store behind each field).
#[derive(Clone)]
pub struct Storage {
    /// Which adapter this is.
    pub backend: Backend,
    /// Users and their settings.
    pub users: Arc<dyn UserStore>,
    /// The durable job queue and its ledger.
    pub queue: Arc<dyn JobQueue>,
    /// fal accounts, purchases and spend.
    pub accounts: Arc<dyn AccountStore>,
    /// The prompt-enhancement cache.
    pub prompt_cache: Arc<dyn PromptCache>,
    /// Alerts that fired.
    pub alerts: Arc<dyn AlertLog>,
    /// Media records and usage figures.
    pub usage: Arc<dyn UsageStore>,
    /// What reports, the planner and `/metrics` read.
    pub reports: Arc<dyn ReportStore>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl Storage {
    /// Every port of one store (as [`open`] makes them), for callers that opened the store
    /// themselves, such as a harness that also keeps the store's pool.
    pub fn of<S>(backend: Backend, store: Arc<S>) -> Storage
    where
        S: UserStore + JobQueue + AccountStore + PromptCache + AlertLog + UsageStore + ReportStore + 'static,
    {
        Storage {
            backend,
            users: store.clone(),
            queue: store.clone(),
            accounts: store.clone(),
            prompt_cache: store.clone(),
            alerts: store.clone(),
            usage: store.clone(),
            reports: store,
        }
    }
}

/// Opens the database at `url` (see the module docs) with a pool of `max_connections`
/// and applies pending migrations.
///
/// # Errors
/// When the URL's scheme is unknown, the database cannot be opened or reached, or a
/// migration fails. The messages never repeat the URL.
pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Storage> {
    let backend = Backend::of(url)?;
    let storage = match backend {
        Backend::Sqlite => {
            let store = SqliteStore::connect(url, max_connections).await.context("cannot open the SQLite database")?;
            Storage::of(backend, Arc::new(store))
        }
        Backend::Postgres => {
            let store = PgStore::connect(url, max_connections).await.context("cannot open the PostgreSQL database")?;
            Storage::of(backend, Arc::new(store))
        }
    };
    tracing::info!(backend = backend.name(), "storage open");
    Ok(storage)
}

/// [`open`] for commands that only read (`report`, `plan`): a missing SQLite file is
/// refused rather than created empty (which would report zeros and leave a stray file),
/// and a PostgreSQL database that does not exist says so plainly. Migrations are still
/// applied to a database that exists, so an older one reads with the current queries.
///
/// # Errors
/// As [`open`], and when the database does not exist. Messages show the URL with any
/// password hidden.
pub async fn open_existing(url: &str, max_connections: u32) -> anyhow::Result<Storage> {
    let shown = hide_passwords(url);
    let hint = "run `mediagen run` or `mediagen migrate` first, or set DATABASE_URL";
    match Backend::of(url)? {
        Backend::Sqlite => {
            let options = mediagen_sqlite::connect_options(url).context("DATABASE_URL is not a SQLite URL")?;
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            if !in_memory && !options.get_filename().exists() {
                bail!("no database at {shown}; {hint}");
            }
            open(url, max_connections).await
        }
        Backend::Postgres => open(url, max_connections).await.map_err(|error| match missing_database(&error) {
            Some(said) => anyhow::anyhow!(
                "no database at {shown} ({said}); create it and run `mediagen migrate`, or set DATABASE_URL"
            ),
            None => error.context(format!("cannot open the database at {shown}")),
        }),
    }
}

/// PostgreSQL's own words when `error` is its "database does not exist" (SQLSTATE 3D000).
fn missing_database(error: &anyhow::Error) -> Option<String> {
    error.chain().filter_map(|cause| cause.downcast_ref::<StorageError>()).find_map(|cause| match cause {
        StorageError::Other(inner) => inner
            .downcast_ref::<sqlx::Error>()?
            .as_database_error()
            .filter(|db| db.code().as_deref() == Some("3D000"))
            .map(|db| db.message().to_owned()),
        _ => None,
    })
}

/// `text` with the password of every URL in it hidden: the `user:password@` part and
/// `password=` parameters. For messages and `config show`, which may echo DATABASE_URL.
pub fn hide_passwords(text: &str) -> String {
    const HIDDEN: &str = "[REDACTED]";
    let ends = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after.find(|c: char| matches!(c, '/' | '?' | '#') || ends(c)).unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@').and_then(|user_end| Some((user_end, authority[..user_end].find(':')?))) {
            Some((user_end, colon)) => {
                out.push_str(&authority[..=colon]);
                out.push_str(HIDDEN);
                out.push_str(&authority[user_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    // Query parameters such as `?password=…` or `&sslpassword=…`.
    let mut hidden = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.to_ascii_lowercase().find("password=") {
        let (before, after) = rest.split_at(at + "password=".len());
        hidden.push_str(before);
        let end = after.find(|c: char| c == '&' || c == '#' || ends(c)).unwrap_or(after.len());
        hidden.push_str(if end == 0 { "" } else { HIDDEN });
        rest = &after[end..];
    }
    hidden.push_str(rest);
    hidden
}

/// Copies the whole SQLite database at `from` into the empty PostgreSQL database at `to`,
/// once, keeping every id (see `mediagen_storage_migrate`). Both are migrated first.
/// The bot must be stopped: what it writes after the copy starts stays behind.
///
/// # Errors
/// When `from` is not a SQLite URL or `to` not a PostgreSQL one, either cannot be opened,
/// `to` is not empty, or the copy does not check out (then nothing was written).
pub async fn migrate_storage(from: &str, to: &str) -> anyhow::Result<mediagen_storage_migrate::Transfer> {
    if Backend::of(from)? != Backend::Sqlite {
        bail!("--from must be a sqlite:// URL");
    }
    if Backend::of(to)? != Backend::Postgres {
        bail!("--to must be a postgres:// or postgresql:// URL");
    }
    let source = SqliteStore::connect(from, 2).await.context("cannot open the SQLite database (--from)")?;
    let target = PgStore::connect(to, 2).await.context("cannot open the PostgreSQL database (--to)")?;
    let moved = mediagen_storage_migrate::copy_to_postgres(source.pool(), target.pool())
        .await
        .context("copying SQLite into PostgreSQL")?;
    source.pool().close().await;
    target.pool().close().await;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_adapter() {
        assert_eq!(Backend::of(DEFAULT_URL).unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("sqlite:data/bot.sqlite").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgres://u:pw@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of("postgresql://u:pw@h/db").unwrap(), Backend::Postgres);
        let error = Backend::of("mysql://u:secret-pw@h/db").unwrap_err().to_string();
        assert!(error.contains("\"mysql\"") && !error.contains("secret-pw"), "{error}");
    }

    #[test]
    fn passwords_in_urls_are_hidden() {
        for (text, shown) in [
            ("postgres://u:pw-1@h:5432/db", "postgres://u:[REDACTED]@h:5432/db"),
            ("postgresql://u:p@ss:w@rd@h/db?sslmode=require", "postgresql://u:[REDACTED]@h/db?sslmode=require"),
            ("postgres://u@h/db?password=pw-2&sslmode=off", "postgres://u@h/db?password=[REDACTED]&sslmode=off"),
            ("see \"https://a:pw-3@proxy\" and http://h/x", "see \"https://a:[REDACTED]@proxy\" and http://h/x"),
            ("sqlite://mediagen.sqlite", "sqlite://mediagen.sqlite"),
            ("sqlite:data/bot.sqlite?mode=rwc", "sqlite:data/bot.sqlite?mode=rwc"),
            ("no url at all", "no url at all"),
        ] {
            assert_eq!(hide_passwords(text), shown);
        }
    }
}
