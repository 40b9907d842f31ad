//! [`PgStore`]: one pool, one change listener, every storage port.

use crate::error::classify;
use crate::sql;
use mediagen_ports::StorageError;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The migrations in `migrations/` at the workspace root, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Applies every pending migration.
///
/// # Errors
/// `Unavailable` when the database cannot be reached; `Other` when a migration fails or
/// an applied one was edited (its checksum no longer matches).
pub async fn migrate(pool: &PgPool) -> Result<(), StorageError> {
    MIGRATOR.run(pool).await.map_err(|error| match error {
        sqlx::migrate::MigrateError::Execute(inner) => classify(inner),
        other => StorageError::Other(anyhow::Error::new(other)),
    })
}

/// PostgreSQL storage: implements `UserStore`, `JobQueue`, `AccountStore`, `PromptCache`,
/// `AlertLog`, `UsageStore` and `ReportStore` on one pool.
///
/// Cheap to clone; clones share the pool and the change listener, which stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct PgStore {
    /// Every query runs here.
    pub(crate) pool: PgPool,
    /// Woken by the listener on every `mediagen_jobs` notification.
    pub(crate) changes: Arc<Changes>,
    /// Stops the listener task when the last clone goes.
    _listener: Arc<ListenerGuard>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("pool_size", &self.pool.size()).finish_non_exhaustive()
    }
}

/// What the listener task shares with the store.
pub(crate) struct Changes {
    /// Woken (all waiters) on each notification and after a reconnect.
    pub(crate) notify: Notify,
    /// False while the listener's connection is broken and not yet re-established.
    pub(crate) listening: AtomicBool,
}

struct ListenerGuard(AbortHandle);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Server-side limits set on every connection of the pool, so that one stalled session
/// (a paused process in the middle of a claim, a lost client) cannot hold the claim lock
/// or a job's row lock for long and freeze dispatch in every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimeouts {
    /// `statement_timeout`: the longest any one statement may run.
    pub statement: Duration,
    /// `lock_timeout`: the longest a statement waits for a lock (the claim lock included).
    pub lock: Duration,
    /// `idle_in_transaction_session_timeout`: a session idle inside a transaction this long
    /// is ended by the server, and its locks released.
    pub idle_in_transaction: Duration,
}

impl Default for SessionTimeouts {
    /// 30 s per statement, 5 s per lock wait, 30 s idle inside a transaction: far above
    /// what any statement of ours takes, far below a lease.
    fn default() -> Self {
        Self {
            statement: Duration::from_secs(30),
            lock: Duration::from_secs(5),
            idle_in_transaction: Duration::from_secs(30),
        }
    }
}

impl SessionTimeouts {
    /// The settings as connection options (`-c name=value` at session start).
    pub(crate) fn apply(self, options: PgConnectOptions) -> PgConnectOptions {
        let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
        options.options([
            ("statement_timeout", ms(self.statement)),
            ("lock_timeout", ms(self.lock)),
            ("idle_in_transaction_session_timeout", ms(self.idle_in_transaction)),
        ])
    }
}

impl PgStore {
    /// Connects to `url` with a pool of `max_connections` (plus one connection for the
    /// change listener) and the default [`SessionTimeouts`], and applies pending migrations.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be reached; `Other` when a migration fails.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StorageError> {
        Self::connect_with(url, max_connections, SessionTimeouts::default()).await
    }

    /// [`PgStore::connect`] with the given session timeouts.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be reached; `Other` when the URL is malformed
    /// or a migration fails.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        timeouts: SessionTimeouts,
    ) -> Result<Self, StorageError> {
        let options = PgConnectOptions::from_str(url).map_err(classify)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(timeouts.apply(options))
            .await
            .map_err(classify)?;
        migrate(&pool).await?;
        Self::new(pool).await
    }

    /// A store on an existing pool (migrations already applied). Starts the change
    /// listener on a connection of its own, so the pool keeps all its connections.
    ///
    /// Must be called inside a Tokio runtime: the listener is a spawned task.
    ///
    /// # Errors
    /// `Unavailable` when the listener cannot connect.
    pub async fn new(pool: PgPool) -> Result<Self, StorageError> {
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(pool.options().get_acquire_timeout())
            .connect_lazy_with((*pool.connect_options()).clone());
        let mut listener = PgListener::connect_with(&listener_pool).await.map_err(classify)?;
        // LISTEN before returning: a change made after `new` returns is never missed.
        listener.listen(sql::CHANNEL).await.map_err(classify)?;
        let changes = Arc::new(Changes { notify: Notify::new(), listening: AtomicBool::new(true) });
        let task = tokio::spawn(listen(listener, Arc::clone(&changes)));
        Ok(PgStore { pool, changes, _listener: Arc::new(ListenerGuard(task.abort_handle())) })
    }

    /// The pool, for callers that need a query of their own (reports, tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Starts a transaction.
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StorageError> {
        self.pool.begin().await.map_err(classify)
    }

    /// Ends a transaction: commits when `result` is a success (an early `Ok` that wrote
    /// nothing included), rolls back at once otherwise.
    ///
    /// A transaction that is merely dropped is rolled back only when its connection goes
    /// back to the pool, in a background task: until then its locks stay (the claim lock,
    /// the row locks `FOR UPDATE` took), and a claim that runs meanwhile skips the locked
    /// rows and claims nothing although a slot is free.
    pub(crate) async fn conclude<T>(
        tx: sqlx::Transaction<'static, sqlx::Postgres>,
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
}

/// Feeds notifications into `changes` until the store is dropped (the task is aborted)
/// or its pool closes.
///
/// `PgListener` reconnects by itself (and LISTENs again); notifications sent while it was
/// away are lost, so waiters are woken after a reconnect too and re-read the queue.
async fn listen(mut listener: PgListener, changes: Arc<Changes>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(_)) => {
                changes.listening.store(true, Ordering::Release);
                changes.notify.notify_waiters();
            }
            Ok(None) => {
                tracing::warn!("change listener reconnected; notifications may have been missed");
                changes.listening.store(true, Ordering::Release);
                changes.notify.notify_waiters();
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                if changes.listening.swap(false, Ordering::AcqRel) {
                    tracing::warn!(%error, "change listener lost its connection; retrying");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
