//! A throwaway database per test (feature `testing`).
//!
//! [`fresh_database`] creates a directory of its own under the system's temporary
//! directory, opens a new database file in it, applies the migrations and hands back a
//! [`TestDb`]; dropping the `TestDb` closes nothing (pools close with their last handle)
//! but removes the directory, also when the test panics.

use crate::store::{SqliteStore, connect_options, migrate};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Connections in [`TestDb::pool`]: enough for the concurrency tests.
const POOL_SIZE: u32 = 8;

/// A migrated database file of its own, removed with this value.
pub struct TestDb {
    dir: PathBuf,
    file: PathBuf,
    pool: SqlitePool,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb").field("file", &self.file).finish_non_exhaustive()
    }
}

/// Creates and migrates a database file with a random name.
///
/// # Panics
/// When the file cannot be created or the migrations fail: a test cannot run without
/// its database.
pub async fn fresh_database() -> TestDb {
    let dir = std::env::temp_dir().join(format!("mediagen-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create the test database's directory");
    let file = dir.join("mediagen.sqlite");
    let db = TestDb { pool: pool_on(&file, POOL_SIZE).await, dir, file };
    migrate(&db.pool).await.expect("apply the migrations");
    db
}

async fn pool_on(file: &Path, max_connections: u32) -> SqlitePool {
    let options = connect_options(&format!("sqlite://{}", file.display())).expect("a SQLite URL");
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .expect("open the test database")
}

impl TestDb {
    /// The database file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// A URL for the database, e.g. for an app started in-process.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.file.display())
    }

    /// The shared pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A new pool of `max_connections` on the same file.
    pub async fn new_pool(&self, max_connections: u32) -> SqlitePool {
        pool_on(&self.file, max_connections).await
    }

    /// A store on the shared pool.
    pub fn store(&self) -> SqliteStore {
        SqliteStore::new(self.pool.clone())
    }

    /// A store on a pool of its own (it shares the change notifier, being in this process).
    pub async fn separate_store(&self, max_connections: u32) -> SqliteStore {
        SqliteStore::new(self.new_pool(max_connections).await)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // SQLite needs no server-side cleanup: removing the directory takes the file, its
        // WAL and its shared-memory index. Open connections keep their (unlinked) inodes.
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove test database {}: {error}", self.dir.display());
        }
    }
}
