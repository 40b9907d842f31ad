//! A fresh database of either kind: made empty and migrated at start, removed at the end
//! (by [`FreshDb::close`], or when dropped: after a panic or Ctrl-C too).
//!
//! A throwaway one has a name nobody else uses (a temporary directory, or a random
//! database on `TEST_DATABASE_URL`'s server), so tests run side by side; a named one
//! ([`Database::SqliteFile`], [`Database::PostgresNamed`]) is where a person looks, so a
//! leftover of a crashed earlier run is removed before it is made again.

use anyhow::{Context, bail};
use mediagen_postgres::PgStore;
use mediagen_sqlite::SqliteStore;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, PgConnection};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The admin connection used when `TEST_DATABASE_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Connections of a fresh SQLite database's own pool.
const SQLITE_POOL: u32 = 8;
/// Connections of a fresh PostgreSQL database's own pool: enough for the engine the bench
/// runs on it and for concurrency checks.
const POSTGRES_POOL: u32 = 12;

/// The admin connection of throwaway PostgreSQL databases: `TEST_DATABASE_URL`, else the
/// local server.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// Which database a stack runs on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Database {
    /// A SQLite file in a temporary directory of its own: what a user gets without a
    /// database server.
    #[default]
    Sqlite,
    /// A database with a random name on the server of [`admin_url`]: what several
    /// processes share.
    Postgres,
    /// This SQLite file (its name ends in `.sqlite`), deleted with its `-wal` and `-shm`
    /// siblings before it is made and at the end.
    SqliteFile(PathBuf),
    /// This PostgreSQL database, made (and dropped, before and at the end) through
    /// `admin_url`, a connection of a role allowed to create databases.
    PostgresNamed {
        /// e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
        admin_url: String,
        /// A plain name (see [`check_name`]).
        name: String,
    },
}

impl Database {
    /// What a header line shows: never a password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite => "SQLite file in a temporary directory".to_owned(),
            Database::Postgres => format!("PostgreSQL {}, a database of its own", server(&admin_url())),
            Database::SqliteFile(file) => format!("SQLite file {}", shown(file)),
            Database::PostgresNamed { admin_url, name } => format!("PostgreSQL {}, database {name}", server(admin_url)),
        }
    }

    /// True for the PostgreSQL kinds.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Database::Postgres | Database::PostgresNamed { .. })
    }
}

/// `host:port` of a PostgreSQL URL.
fn server(url: &str) -> String {
    PgConnectOptions::from_str(url).map_or_else(|_| "?".to_owned(), |o| format!("{}:{}", o.get_host(), o.get_port()))
}

/// Refuses a database name that is not plain (lowercase letters, digits and `_`, at most
/// 63, not starting with a digit) or names a system database: it goes into SQL and file
/// names, and what is made is dropped again.
///
/// # Errors
/// Saying which rule the name breaks.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !plain {
        bail!("database name {name:?} must be lowercase letters, digits and _ (at most 63)");
    }
    if name == "postgres" || name.starts_with("template") {
        bail!("refusing to drop and re-create the system database {name:?}");
    }
    Ok(())
}

/// A path relative to the working directory when it lies below it.
fn shown(path: &Path) -> String {
    let relative = std::env::current_dir().ok().and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    relative.unwrap_or_else(|| path.to_path_buf()).display().to_string()
}

/// The pool of a fresh database, for the reads no port offers (`with_pool!`).
#[derive(Debug, Clone)]
pub enum Pool {
    /// The SQLite file's pool.
    Sqlite(SqlitePool),
    /// The PostgreSQL database's pool.
    Postgres(PgPool),
}

impl Pool {
    async fn close(&self) {
        match self {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// Runs `$body` with `$pool` bound to the pool of `$db` (a [`FreshDb`] or a [`Store`]),
/// whichever kind it is: the SQL in it must read the same on SQLite and PostgreSQL.
#[macro_export]
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match ($db).pool() {
            $crate::Pool::Sqlite($pool) => $body,
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}

/// The storage ports of a fresh database and its pool, cheap to clone into tasks.
#[cfg(feature = "bot")]
#[derive(Debug, Clone)]
pub struct Store {
    ports: mediagen::storage::Storage,
    pool: Pool,
}

#[cfg(feature = "bot")]
impl Store {
    /// Every storage port, on the adapter the bot uses, dialect-free.
    pub fn ports(&self) -> &mediagen::storage::Storage {
        &self.ports
    }

    /// The pool under the ports.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// A fresh, migrated database of its own, removed with this value.
pub struct FreshDb {
    pool: Pool,
    url: String,
    #[cfg(feature = "bot")]
    ports: mediagen::storage::Storage,
    // Last: the pools above are let go before the database is removed.
    guard: DropGuard,
}

impl std::fmt::Debug for FreshDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshDb").field("name", &self.name()).finish_non_exhaustive()
    }
}

/// What [`FreshDb::close`] did, for a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// e.g. `database mediagen_demo dropped`.
    pub cleanup: String,
    /// Worth a note: connections others still had open (PostgreSQL; the drop ended them).
    pub note: Option<String>,
}

/// What to remove.
#[derive(Debug, Clone)]
enum Made {
    /// A temporary directory holding the file.
    SqliteDir {
        dir: PathBuf,
        file: PathBuf,
    },
    /// A file the caller named.
    SqliteFile {
        file: PathBuf,
    },
    Postgres {
        admin_url: String,
        name: String,
    },
}

/// Removes the database when it goes, unless [`FreshDb::close`] already did.
struct DropGuard {
    made: Made,
    armed: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let removed = match self.made.clone() {
            Made::SqliteDir { dir, .. } => {
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
            }
            Made::SqliteFile { file } => remove_sqlite_files(&file),
            Made::Postgres { admin_url, name } => {
                // Drop is synchronous and may run inside a runtime: the DROP runs on a
                // thread with a runtime of its own.
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    runtime.block_on(drop_database(&admin_url, &name))
                })
                .join();
                dropped.unwrap_or_else(|_| Err(anyhow::anyhow!("the dropping thread panicked")))
            }
        };
        if let Err(error) = removed {
            eprintln!("could not remove the database {}: {error:#}", self.name());
        }
    }
}

impl DropGuard {
    fn name(&self) -> String {
        match &self.made {
            Made::SqliteDir { file, .. } | Made::SqliteFile { file } => shown(file),
            Made::Postgres { name, .. } => name.clone(),
        }
    }
}

/// The database file and the two files SQLite keeps beside it in WAL mode.
pub fn sqlite_files(file: &Path) -> [PathBuf; 3] {
    let sibling = |suffix: &str| {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [file.to_path_buf(), sibling("-wal"), sibling("-shm")]
}

fn remove_sqlite_files(file: &Path) -> anyhow::Result<()> {
    for path in sqlite_files(file) {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(())
}

/// `sqlite://<absolute path>`: what the bot gets as `DATABASE_URL`.
fn sqlite_url(file: &Path) -> anyhow::Result<String> {
    let absolute = std::path::absolute(file).with_context(|| format!("locating {}", file.display()))?;
    let text = absolute.to_str().context("the SQLite file's path is not UTF-8")?;
    if text.contains(['?', '#', '%']) {
        bail!("the SQLite file's path {text:?} has characters a database URL cannot carry (?, #, %)");
    }
    Ok(format!("sqlite://{text}"))
}

async fn admin(admin_url: &str) -> anyhow::Result<PgConnection> {
    PgConnection::connect(admin_url).await.with_context(|| {
        format!(
            "cannot reach PostgreSQL through the admin URL {} (`just db-up` starts a local server)",
            redact(admin_url)
        )
    })
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = admin(admin_url).await?;
    // FORCE ends connections still open, such as a crashed earlier run's.
    conn.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
        .await
        .with_context(|| format!("dropping the {name} database"))?;
    conn.close().await.ok();
    Ok(())
}

/// The URL with any password left out.
fn redact(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(options) => format!("postgres://{}@{}:{}", options.get_username(), options.get_host(), options.get_port()),
        Err(_) => "(not a postgres:// URL)".to_owned(),
    }
}

impl FreshDb {
    /// Makes `database` afresh (removing what a crashed earlier run left under a named one)
    /// and applies the migrations with the adapter the bot uses.
    ///
    /// # Errors
    /// When the file cannot be made, the server cannot be reached, a name is not plain, or
    /// a migration fails.
    pub async fn create(database: &Database) -> anyhow::Result<FreshDb> {
        match database {
            Database::Sqlite => {
                let dir = std::env::temp_dir().join(format!("mediagen-db-{}", uuid::Uuid::new_v4().simple()));
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                let file = dir.join("mediagen.sqlite");
                Self::create_sqlite(Made::SqliteDir { dir, file: file.clone() }, &file).await
            }
            Database::SqliteFile(file) => {
                // Only a file of our own naming is ever deleted.
                if file.extension().is_none_or(|ext| ext != "sqlite") {
                    bail!("the SQLite file {} must end in .sqlite", file.display());
                }
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                }
                remove_sqlite_files(file)?;
                Self::create_sqlite(Made::SqliteFile { file: file.clone() }, file).await
            }
            Database::Postgres => {
                let name = format!("mediagen_test_{}", uuid::Uuid::new_v4().simple());
                Self::create_postgres(&admin_url(), &name).await
            }
            Database::PostgresNamed { admin_url, name } => {
                check_name(name)?;
                drop_database(admin_url, name).await?;
                Self::create_postgres(admin_url, name).await
            }
        }
    }

    async fn create_sqlite(made: Made, file: &Path) -> anyhow::Result<FreshDb> {
        // From here on the file is ours to remove, whatever happens next.
        let guard = DropGuard { made, armed: true };
        let url = sqlite_url(file)?;
        let store = SqliteStore::connect(&url, SQLITE_POOL).await.context("creating the SQLite database")?;
        let pool = Pool::Sqlite(store.pool().clone());
        #[cfg(feature = "bot")]
        let ports = mediagen::storage::Storage::of(mediagen::storage::Backend::Sqlite, std::sync::Arc::new(store));
        Ok(FreshDb {
            pool,
            url,
            #[cfg(feature = "bot")]
            ports,
            guard,
        })
    }

    async fn create_postgres(admin_url: &str, name: &str) -> anyhow::Result<FreshDb> {
        let mut conn = admin(admin_url).await?;
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .with_context(|| format!("creating the {name} database"))?;
        conn.close().await.ok();
        // From here on the database is ours to drop, whatever happens next.
        let guard =
            DropGuard { made: Made::Postgres { admin_url: admin_url.to_owned(), name: name.to_owned() }, armed: true };
        let options = PgConnectOptions::from_str(admin_url).context("the admin URL is not a postgres:// URL")?;
        let url = options.database(name).to_url_lossy().to_string();
        let store =
            PgStore::connect(&url, POSTGRES_POOL).await.with_context(|| format!("migrating the {name} database"))?;
        let pool = Pool::Postgres(store.pool().clone());
        #[cfg(feature = "bot")]
        let ports = mediagen::storage::Storage::of(mediagen::storage::Backend::Postgres, std::sync::Arc::new(store));
        Ok(FreshDb {
            pool,
            url,
            #[cfg(feature = "bot")]
            ports,
            guard,
        })
    }

    /// The URL the bot gets as `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name: the PostgreSQL database, or the SQLite file.
    pub fn name(&self) -> String {
        self.guard.name()
    }

    /// The database's own pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Every storage port on this database, on the adapter the bot uses, sharing the pool.
    #[cfg(feature = "bot")]
    pub fn storage(&self) -> mediagen::storage::Storage {
        self.ports.clone()
    }

    /// The ports and the pool, to hand to tasks.
    #[cfg(feature = "bot")]
    pub fn store(&self) -> Store {
        Store { ports: self.ports.clone(), pool: self.pool.clone() }
    }

    /// Closes the pool and removes the database: deletes the SQLite file, or drops the
    /// PostgreSQL database (noting how many connections others still had open to it, which
    /// the drop ends: none when everything that used it has stopped).
    ///
    /// # Errors
    /// When the file cannot be deleted or the server cannot be reached to drop it.
    pub async fn close(self) -> anyhow::Result<Closed> {
        let FreshDb {
            pool,
            mut guard,
            url: _,
            #[cfg(feature = "bot")]
            ports,
        } = self;
        // The ports' store holds a listening connection of its own (PostgreSQL): let it go.
        #[cfg(feature = "bot")]
        drop(ports);
        pool.close().await;
        drop(pool);
        guard.armed = false;
        match &guard.made {
            Made::SqliteDir { dir, file } => {
                std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
                Ok(Closed { cleanup: format!("SQLite file {} removed (with its directory)", shown(file)), note: None })
            }
            Made::SqliteFile { file } => {
                remove_sqlite_files(file)?;
                Ok(Closed {
                    cleanup: format!("SQLite file {} removed (with its -wal and -shm)", shown(file)),
                    note: None,
                })
            }
            Made::Postgres { admin_url, name } => {
                let left = {
                    let mut conn = admin(admin_url).await?;
                    let left: i64 =
                        sqlx::query_scalar("SELECT count(*)::int8 FROM pg_stat_activity WHERE datname = $1")
                            .bind(name)
                            .fetch_one(&mut conn)
                            .await
                            .unwrap_or(-1);
                    conn.close().await.ok();
                    left
                };
                drop_database(admin_url, name).await?;
                let note =
                    (left != 0).then(|| format!("{left} connections to {name} were still open after the bot stopped"));
                Ok(Closed { cleanup: format!("database {name} dropped"), note })
            }
        }
    }
}

/// A ledger total in micro-dollars for one user and kind (`hold`, `charge`, `refund`).
///
/// # Panics
/// When the query fails.
pub async fn ledger(db: &FreshDb, user: i64, kind: &str) -> i64 {
    let sql = "SELECT CAST(SUM(amount_micros) AS BIGINT) FROM ledger WHERE user_id = $1 AND kind = $2";
    with_pool!(db, |pool| sqlx::query_scalar::<_, Option<i64>>(sql)
        .bind(user)
        .bind(kind)
        .fetch_one(pool)
        .await
        .expect("ledger query")
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_that_are_not_system_databases() {
        for good in ["mediagen_demo", "mediagen_demo_test_42", "x"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Mediagen", "demo; DROP", "a\"b", "1demo", "postgres", "template1", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn descriptions_and_errors_never_show_a_password() {
        let named = Database::PostgresNamed {
            admin_url: "postgres://u:s3cret@db.example:6543/postgres".into(),
            name: "d".into(),
        };
        assert_eq!(named.describe(), "PostgreSQL db.example:6543, database d");
        assert!(!redact("postgres://u:s3cret@db.example:6543/postgres").contains("s3cret"));
        assert!(named.is_postgres() && Database::Postgres.is_postgres() && !Database::Sqlite.is_postgres());
    }

    #[test]
    fn a_sqlite_file_has_two_siblings_and_an_absolute_url() {
        let file = PathBuf::from("target/demo/mediagen_demo.sqlite");
        let url = sqlite_url(&file).unwrap();
        assert!(url.starts_with("sqlite:///") && url.ends_with("/target/demo/mediagen_demo.sqlite"), "{url}");
        let [db, wal, shm] = sqlite_files(&file);
        assert_eq!(db, file);
        assert!(wal.to_string_lossy().ends_with("mediagen_demo.sqlite-wal"));
        assert!(shm.to_string_lossy().ends_with("mediagen_demo.sqlite-shm"));
        assert!(sqlite_url(Path::new("/tmp/a?b.sqlite")).is_err());
    }

    #[tokio::test]
    async fn a_named_sqlite_file_is_made_fresh_over_a_leftover_and_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("mediagen-stack-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("named.sqlite");
        std::fs::write(&file, b"left over by a crashed run").unwrap();
        let db = FreshDb::create(&Database::SqliteFile(file.clone())).await.expect("created over the leftover");
        assert!(db.url().starts_with("sqlite://"));
        assert_eq!(ledger(&db, 1, "charge").await, 0, "migrated and empty");
        #[cfg(feature = "bot")]
        assert_eq!(db.storage().queue.queued_count().await.unwrap(), 0);
        let closed = db.close().await.unwrap();
        assert!(closed.cleanup.contains("removed"), "{closed:?}");
        assert!(sqlite_files(&file).iter().all(|f| !f.exists()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_throwaway_sqlite_database_is_gone_when_dropped() {
        let db = FreshDb::create(&Database::Sqlite).await.unwrap();
        let file = PathBuf::from(db.url().trim_start_matches("sqlite://"));
        assert!(file.exists());
        assert!(!db.name().is_empty());
        drop(db);
        assert!(!file.exists() && !file.parent().unwrap().exists());
    }

    async fn exists(name: &str) -> bool {
        let mut conn = admin(&admin_url()).await.unwrap();
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        found.is_some()
    }

    #[tokio::test]
    async fn postgres_databases_are_made_fresh_and_dropped() {
        let throwaway = FreshDb::create(&Database::Postgres).await.expect("PostgreSQL on TEST_DATABASE_URL");
        let random = throwaway.name();
        assert!(exists(&random).await);
        drop(throwaway);
        assert!(!exists(&random).await, "dropped with the value");

        let name = format!("mediagen_stack_unit_{}", std::process::id());
        let named = Database::PostgresNamed { admin_url: admin_url(), name: name.clone() };
        let leftover = FreshDb::create(&named).await.unwrap();
        let db = FreshDb::create(&named).await.expect("made again over a leftover");
        assert_eq!(ledger(&db, 1, "charge").await, 0, "migrated and empty");
        let closed = db.close().await.unwrap();
        assert_eq!(closed.cleanup, format!("database {name} dropped"));
        assert!(!exists(&name).await);
        drop(leftover);
    }

    #[test]
    fn a_sqlite_file_must_be_named_as_one() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let made = runtime.block_on(FreshDb::create(&Database::SqliteFile(PathBuf::from("/etc/passwd"))));
        assert!(made.unwrap_err().to_string().contains("must end in .sqlite"));
    }
}
