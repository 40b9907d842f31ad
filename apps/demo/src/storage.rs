//! Where the bot keeps its data during the demo: one setting, [`StorageChoice`].
//!
//! By default an embedded SQLite file under the workspace's `target/demo/`, so the demo
//! needs no database server; a PostgreSQL database when an admin URL is given. Either way
//! the store is made fresh at every start (the file deleted, or the database dropped and
//! created again), so each run begins clean, and removed at the end. The bot gets its URL
//! as `DATABASE_URL`, whose scheme picks the adapter, and the demo reads through the same
//! storage ports ([`Store::ports`]), which answer alike on both; the little the ports do
//! not say is read by dialect-free SQL (`queries`).

use anyhow::{Context, bail};
use mediagen::storage::{Backend, Storage};
use mediagen_ports::{AccountStore, AlertLog, JobQueue, PromptCache, ReportStore, UsageStore, UserStore};
use mediagen_postgres::PgStore;
use mediagen_sqlite::SqliteStore;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, PgConnection};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// The admin connection `StorageChoice::postgres(None, …)` uses.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The database (PostgreSQL) or file stem (SQLite) `just demo` uses.
pub const DEFAULT_DATABASE: &str = "mediagen_demo";

/// Connections the demo's own store keeps (set-up, the status line and the report); the
/// bot opens its own pool as configured.
const POOL_SIZE: u32 = 4;

/// The directory of the demo's SQLite files: `target/demo/` in this workspace.
pub fn demo_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.ancestors().nth(2).unwrap_or(manifest);
    workspace.join("target").join("demo")
}

/// Where the demo keeps the bot's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageChoice {
    /// An embedded SQLite database in `file`, deleted (with its `-wal` and `-shm`
    /// siblings) at start and at the end. The default: no server needed.
    Sqlite {
        /// Must end in `.sqlite`, e.g. `target/demo/mediagen_demo.sqlite`.
        file: PathBuf,
    },
    /// A PostgreSQL database called `database`, made (and dropped) through `admin_url`,
    /// a connection to an existing database of a role allowed to create databases.
    Postgres {
        /// e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
        admin_url: String,
        /// Plain name: lowercase letters, digits and `_`.
        database: String,
    },
}

impl Default for StorageChoice {
    /// `target/demo/mediagen_demo.sqlite`.
    fn default() -> Self {
        StorageChoice::sqlite(DEFAULT_DATABASE).expect("the default name is plain")
    }
}

impl StorageChoice {
    /// The SQLite file `<workspace>/target/demo/<name>.sqlite`.
    ///
    /// # Errors
    /// When `name` is not plain (see [`StorageChoice::Postgres`]'s `database`).
    pub fn sqlite(name: &str) -> anyhow::Result<Self> {
        check_name(name)?;
        Ok(StorageChoice::Sqlite { file: demo_dir().join(format!("{name}.sqlite")) })
    }

    /// PostgreSQL at `admin_url` (or the default local server) with the given database name.
    pub fn postgres(admin_url: Option<String>, database: impl Into<String>) -> Self {
        StorageChoice::Postgres {
            admin_url: admin_url.unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned()),
            database: database.into(),
        }
    }

    /// What the header line shows: never a password.
    pub fn describe(&self) -> String {
        match self {
            StorageChoice::Sqlite { file } => format!("SQLite file {}", shown(file)),
            StorageChoice::Postgres { admin_url, database } => {
                let host = PgConnectOptions::from_str(admin_url)
                    .map(|o| format!("{}:{}", o.get_host(), o.get_port()))
                    .unwrap_or_else(|_| "?".to_owned());
                format!("PostgreSQL {host}, database {database}")
            }
        }
    }
}

/// A path relative to the working directory when it lies below it.
fn shown(path: &Path) -> String {
    let relative = std::env::current_dir().ok().and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    relative.unwrap_or_else(|| path.to_path_buf()).display().to_string()
}

/// The pool under the ports, for the few reads no port offers (`queries`).
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

/// The demo's handle on the bot's data: the storage ports (the same adapter the bot
/// uses) and the pool under them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    ports: Storage,
    pool: Pool,
}

impl Store {
    fn of<S>(backend: Backend, store: S, pool: Pool) -> Store
    where
        S: UserStore + JobQueue + AccountStore + PromptCache + AlertLog + UsageStore + ReportStore + 'static,
    {
        let store = Arc::new(store);
        let ports = Storage {
            backend,
            users: store.clone(),
            queue: store.clone(),
            accounts: store.clone(),
            prompt_cache: store.clone(),
            alerts: store.clone(),
            usage: store.clone(),
            reports: store,
        };
        Store { ports, pool }
    }

    /// Every storage port, dialect-free.
    pub fn ports(&self) -> &Storage {
        &self.ports
    }

    /// The pool, for the reads in `queries`.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// The demo's database: created and migrated, removed by [`Database::close`] (or, as a
/// last resort, when dropped: on a panic or Ctrl-C).
pub struct Database {
    store: Store,
    url: String,
    guard: DropGuard,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("name", &self.name()).finish_non_exhaustive()
    }
}

/// What [`Database::close`] did, for the report.
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
    Sqlite { file: PathBuf },
    Postgres { admin_url: String, name: String },
}

/// Removes the database when it goes, unless [`Database::close`] already did.
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
            Made::Sqlite { file } => remove_sqlite_files(&file),
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
            eprintln!("could not remove the demo database {}: {error:#}", self.name());
        }
    }
}

impl DropGuard {
    fn name(&self) -> String {
        match &self.made {
            Made::Sqlite { file } => shown(file),
            Made::Postgres { name, .. } => name.clone(),
        }
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
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

/// The database file and the two SQLite keeps beside it in WAL mode.
fn sqlite_files(file: &Path) -> [PathBuf; 3] {
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
            "cannot reach PostgreSQL through the admin URL {} (leave --database-url and DEMO_DATABASE_URL \
             unset for the embedded SQLite default; `just db-up` starts a local server)",
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

impl Database {
    /// Removes the database if it exists, creates it afresh and applies the migrations.
    ///
    /// # Errors
    /// When the file cannot be made, the server cannot be reached, the name is not plain,
    /// or a migration fails.
    pub async fn create(choice: &StorageChoice) -> anyhow::Result<Database> {
        match choice {
            StorageChoice::Sqlite { file } => Self::create_sqlite(file).await,
            StorageChoice::Postgres { admin_url, database } => Self::create_postgres(admin_url, database).await,
        }
    }

    async fn create_sqlite(file: &Path) -> anyhow::Result<Database> {
        // Only a file of our own naming is ever deleted.
        if file.extension().is_none_or(|ext| ext != "sqlite") {
            bail!("the demo's SQLite file {} must end in .sqlite", file.display());
        }
        let url = sqlite_url(file)?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        remove_sqlite_files(file)?;
        // From here on the file is ours to remove, whatever happens next.
        let guard = DropGuard { made: Made::Sqlite { file: file.to_path_buf() }, armed: true };
        let store = SqliteStore::connect(&url, POOL_SIZE).await.context("creating the demo's SQLite database")?;
        let pool = Pool::Sqlite(store.pool().clone());
        Ok(Database { store: Store::of(Backend::Sqlite, store, pool), url, guard })
    }

    async fn create_postgres(admin_url: &str, database: &str) -> anyhow::Result<Database> {
        check_name(database)?;
        drop_database(admin_url, database).await?;
        let mut conn = admin(admin_url).await?;
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE \"{database}\"")))
            .await
            .with_context(|| format!("creating the {database} database"))?;
        conn.close().await.ok();
        // From here on the database is ours to drop, whatever happens next.
        let guard = DropGuard {
            made: Made::Postgres { admin_url: admin_url.to_owned(), name: database.to_owned() },
            armed: true,
        };

        let options = PgConnectOptions::from_str(admin_url).context("the admin URL is not a postgres:// URL")?;
        let url = options.database(database).to_url_lossy().to_string();
        let store = PgStore::connect(&url, POOL_SIZE).await.context("migrating the demo database")?;
        let pool = Pool::Postgres(store.pool().clone());
        Ok(Database { store: Store::of(Backend::Postgres, store, pool), url, guard })
    }

    /// The URL the bot gets as `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name: the PostgreSQL database, or the SQLite file.
    pub fn name(&self) -> String {
        self.guard.name()
    }

    /// The storage ports on this database (the same adapter the bot uses), and its pool.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Closes the pool and removes the database: deletes the SQLite file, or drops the
    /// PostgreSQL database (noting how many connections others still had open to it,
    /// which the drop ends: none when everything that used it has stopped).
    ///
    /// # Errors
    /// When the file cannot be deleted or the server cannot be reached to drop it.
    pub async fn close(self) -> anyhow::Result<Closed> {
        let Database { store, mut guard, .. } = self;
        store.pool.close().await;
        drop(store);
        guard.armed = false;
        match &guard.made {
            Made::Sqlite { file } => {
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
        assert!(StorageChoice::sqlite("../../etc/passwd").is_err());
    }

    #[test]
    fn descriptions_and_errors_never_show_a_password() {
        let choice = StorageChoice::postgres(Some("postgres://u:s3cret@db.example:6543/postgres".into()), "d");
        assert_eq!(choice.describe(), "PostgreSQL db.example:6543, database d");
        assert!(!redact("postgres://u:s3cret@db.example:6543/postgres").contains("s3cret"));
    }

    #[test]
    fn sqlite_is_the_default_in_target_demo() {
        let StorageChoice::Sqlite { file } = StorageChoice::default() else { panic!("SQLite is the default") };
        assert!(file.ends_with("target/demo/mediagen_demo.sqlite"), "{}", file.display());
        assert!(StorageChoice::default().describe().starts_with("SQLite file "));
        let url = sqlite_url(&file).unwrap();
        assert!(url.starts_with("sqlite:///") && url.ends_with("/target/demo/mediagen_demo.sqlite"), "{url}");
        let [db, wal, shm] = sqlite_files(&file);
        assert_eq!(db, file);
        assert!(wal.to_string_lossy().ends_with("mediagen_demo.sqlite-wal"));
        assert!(shm.to_string_lossy().ends_with("mediagen_demo.sqlite-shm"));
    }

    #[tokio::test]
    async fn a_sqlite_database_is_made_fresh_and_leaves_no_file() {
        let choice = StorageChoice::sqlite(&format!("mediagen_demo_unit_{}", std::process::id())).unwrap();
        let StorageChoice::Sqlite { file } = &choice else { unreachable!() };
        std::fs::create_dir_all(demo_dir()).unwrap();
        std::fs::write(file, b"left over by a crashed run").unwrap();
        let db = Database::create(&choice).await.expect("created over the leftover");
        assert!(db.url().starts_with("sqlite://"));
        assert_eq!(db.store().ports().queue.queued_count().await.unwrap(), 0);
        let closed = db.close().await.unwrap();
        assert!(closed.cleanup.contains("removed"), "{closed:?}");
        assert!(sqlite_files(file).iter().all(|f| !f.exists()));
    }
}
