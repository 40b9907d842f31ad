//! [`PgStore`]: one pool, one change listener, every storage port.

use crate::error::classify;
use crate::sql;
use mediagen_ports::StorageError;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
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

impl PgStore {
    /// Connects to `url` with a pool of `max_connections` (plus one connection for the
    /// change listener) and applies pending migrations.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be reached; `Other` when a migration fails.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StorageError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
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
