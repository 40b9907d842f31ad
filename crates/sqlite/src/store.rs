//! [`SqliteStore`]: one pool on one database file, in-process change notifications, every
//! storage port.

use crate::error::classify;
use crate::sql;
use mediagen_ports::StorageError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// The migrations in `migrations-sqlite/` at the workspace root, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations-sqlite");

/// How long a statement waits for another connection's write lock before it gives up
/// with `Unavailable`. Writes are short (the longest is a claim), so a wait this long
/// means something is stuck.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Applies every pending migration.
///
/// # Errors
/// `Unavailable` when the file cannot be opened or stays locked; `Other` when a migration
/// fails or an applied one was edited (its checksum no longer matches).
pub async fn migrate(pool: &SqlitePool) -> Result<(), StorageError> {
    MIGRATOR.run(pool).await.map_err(|error| match error {
        sqlx::migrate::MigrateError::Execute(inner) => classify(inner),
        other => StorageError::Other(anyhow::Error::new(other)),
    })
}

/// The connection options for `url` (`sqlite://path/to/file.sqlite`, `sqlite:file.sqlite`,
/// relative to the working directory unless absolute): the file is created if missing,
/// in WAL mode (readers never block the writer, nor it them), `synchronous = NORMAL`
/// (durable at each checkpoint, safe against corruption), foreign keys enforced and a
/// busy timeout of [`BUSY_TIMEOUT`].
///
/// # Errors
/// `Other` when `url` is not a SQLite URL.
pub fn connect_options(url: &str) -> Result<SqliteConnectOptions, StorageError> {
    if !url.starts_with("sqlite:") {
        return Err(StorageError::Other(anyhow::anyhow!("not a SQLite database URL (expected sqlite://…)")));
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StorageError::Other(anyhow::anyhow!("not a SQLite database URL: {e}")))?;
    Ok(options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT))
}

/// SQLite storage: implements `UserStore`, `JobQueue`, `AccountStore`, `PromptCache`,
/// `AlertLog` and `UsageStore` on one pool.
///
/// Cheap to clone; clones share the pool and the change notifier. Stores opened on the
/// same file in one process share the notifier too, so `wait_for_change` wakes on any of
/// their changes. Another process writing the same file does not wake them (SQLite has
/// no LISTEN): its changes are seen on the waiter's next timeout.
#[derive(Clone)]
pub struct SqliteStore {
    /// Every query runs here.
    pub(crate) pool: SqlitePool,
    /// Woken (all waiters) after each committed enqueue, requeue, finish and cancel.
    changes: Arc<Notify>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("file", &self.pool.connect_options().get_filename())
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

/// The notifier of every database file open in this process, so that two stores on one
/// file (say, the bot's and an operator tool's) wake each other.
static NOTIFIERS: LazyLock<Mutex<HashMap<PathBuf, Weak<Notify>>>> = LazyLock::new(Default::default);

fn notifier_for(pool: &SqlitePool) -> Arc<Notify> {
    let options = pool.connect_options();
    let file = options.get_filename();
    if file.as_os_str().is_empty() || file.to_string_lossy().contains(":memory:") {
        return Arc::new(Notify::new()); // Private to this pool.
    }
    let key = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let mut notifiers = NOTIFIERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    notifiers.retain(|_, weak| weak.strong_count() > 0);
    if let Some(existing) = notifiers.get(&key).and_then(Weak::upgrade) {
        return existing;
    }
    let notify = Arc::new(Notify::new());
    notifiers.insert(key, Arc::downgrade(&notify));
    notify
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` with a pool of `max_connections`
    /// and applies pending migrations. See [`connect_options`] for the URL and settings.
    ///
    /// # Errors
    /// `Unavailable` when the file cannot be opened (a missing directory, no permission);
    /// `Other` when `url` is not a SQLite URL or a migration fails.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StorageError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect_options(url)?)
            .await
            .map_err(classify)?;
        migrate(&pool).await?;
        Ok(Self::new(pool))
    }

    /// A store on an existing pool (migrations already applied).
    pub fn new(pool: SqlitePool) -> Self {
        let changes = notifier_for(&pool);
        SqliteStore { pool, changes }
    }

    /// The pool, for callers that need a query of their own (reports, tests, the move to
    /// PostgreSQL).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`: the write lock is taken now).
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StorageError> {
        self.pool.begin_with(sql::BEGIN_WRITE).await.map_err(classify)
    }

    /// Ends a write transaction: commits when `result` is a success (an early `Ok` that
    /// wrote nothing included), rolls back at once otherwise.
    ///
    /// A transaction that is merely dropped is rolled back only when its connection next
    /// goes back to the pool, in a background task: until then it keeps the write lock,
    /// so every other writer waits out the busy timeout.
    pub(crate) async fn conclude<T>(
        tx: sqlx::Transaction<'static, sqlx::Sqlite>,
        result: Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match result {
            Ok(value) => {
                tx.commit().await.map_err(classify)?;
                Ok(value)
            }
            Err(error) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(%rollback, "rollback failed; the connection is dropped");
                }
                Err(error)
            }
        }
    }

    /// Wakes every `wait_for_change`; called after a commit that changed the queue.
    pub(crate) fn changed(&self) {
        self.changes.notify_waiters();
    }

    /// Waits for [`Self::changed`] or the timeout; true when woken.
    pub(crate) async fn wait(&self, timeout: Duration) -> Result<bool, StorageError> {
        let notified = self.changes.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.pool.is_closed() {
            return Err(StorageError::Unavailable("the database pool is closed".into()));
        }
        Ok(tokio::time::timeout(timeout, notified).await.is_ok())
    }
}
