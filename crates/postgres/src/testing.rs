//! A throwaway database per test (feature `testing`).
//!
//! [`fresh_database`] connects to the admin URL in `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), creates a database with a random name,
//! applies the migrations and hands back a [`TestDb`]; dropping the `TestDb` drops the
//! database, also when the test panics.

use crate::store::{PgStore, SessionTimeouts, migrate};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, PgConnection};
use std::str::FromStr;
use std::time::Duration;

/// The admin URL used when `TEST_DATABASE_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Connections in [`TestDb::pool`]: enough for the concurrency tests.
const POOL_SIZE: u32 = 12;

/// A migrated database of its own, dropped with this value.
pub struct TestDb {
    name: String,
    admin_url: String,
    options: PgConnectOptions,
    pool: PgPool,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Creates and migrates a database with a random name.
///
/// # Panics
/// When PostgreSQL is unreachable at the admin URL or the migrations fail: a test
/// cannot run without its database.
pub async fn fresh_database() -> TestDb {
    let admin_url = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
    let name = format!("mediagen_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at TEST_DATABASE_URL ({admin_url}): {e}"));
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).await.expect("create the test database");
    admin.close().await.ok();

    let options = PgConnectOptions::from_str(&admin_url).expect("TEST_DATABASE_URL is a URL").database(&name);
    let pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(SessionTimeouts::default().apply(options.clone()))
        .await
        .expect("connect to the test database");
    let db = TestDb { name, admin_url, options, pool };
    migrate(&db.pool).await.expect("apply the migrations");
    db
}

impl TestDb {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL for the database, e.g. for an app started in-process.
    pub fn url(&self) -> String {
        self.options.to_url_lossy().to_string()
    }

    /// The shared pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A new pool of `max_connections` on the database, as a second process would have.
    pub async fn new_pool(&self, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(SessionTimeouts::default().apply(self.options.clone()))
            .await
            .expect("connect to the test database")
    }

    /// A store on the shared pool.
    pub async fn store(&self) -> PgStore {
        PgStore::new(self.pool.clone()).await.expect("start the store")
    }

    /// A store on a pool of its own, as a second process would have.
    pub async fn separate_store(&self, max_connections: u32) -> PgStore {
        PgStore::new(self.new_pool(max_connections).await).await.expect("start the store")
    }

    /// A store on a pool of its own whose sessions have the given server-side timeouts.
    pub async fn store_with_timeouts(&self, max_connections: u32, timeouts: SessionTimeouts) -> PgStore {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(timeouts.apply(self.options.clone()))
            .await
            .expect("connect to the test database");
        PgStore::new(pool).await.expect("start the store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop is synchronous and may run inside a runtime, so the DROP runs on a thread
        // with a runtime of its own. FORCE ends the connections pools still hold.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                admin.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).await?;
                admin.close().await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test database {}: {error}", self.name),
            Err(_) => eprintln!("could not drop test database {}: the dropping thread panicked", self.name),
        }
    }
}
