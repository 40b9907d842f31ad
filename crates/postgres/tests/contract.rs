//! The shared storage contract (`mediagen-storage-contract`), run against PostgreSQL:
//! every story on a database of its own; then what only PostgreSQL does.

use async_trait::async_trait;
use mediagen_ports::StorageError;
use mediagen_postgres::PgStore;
use mediagen_postgres::testing::{TestDb, fresh_database};
use mediagen_storage_contract::{Arg, Database};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, AssertSqlSafe};

/// A fresh PostgreSQL database for one story.
struct Postgres(TestDb);

fn arguments(args: &[Arg<'_>]) -> PgArguments {
    let mut out = PgArguments::default();
    for arg in args {
        match *arg {
            Arg::Int(n) => out.add(n),
            Arg::Text(s) => out.add(s.to_owned()),
        }
        .expect("bind a probe argument");
    }
    out
}

#[async_trait]
impl Database for Postgres {
    type Store = PgStore;

    async fn fresh() -> Self {
        Postgres(fresh_database().await)
    }

    async fn store(&self) -> PgStore {
        self.0.store().await
    }

    async fn peer(&self) -> PgStore {
        self.0.separate_store(3).await
    }

    async fn connect(&self) -> PgStore {
        PgStore::connect(&self.0.url(), 2).await.expect("connect by URL")
    }

    async fn close(&self, store: &PgStore) {
        store.pool().close().await;
    }

    async fn integers(&self, sql: &str, args: &[Arg<'_>]) -> Vec<i64> {
        sqlx::query_scalar_with(AssertSqlSafe(sql.to_owned()), arguments(args))
            .fetch_all(self.0.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn texts(&self, sql: &str, args: &[Arg<'_>]) -> Vec<String> {
        sqlx::query_scalar_with(AssertSqlSafe(sql.to_owned()), arguments(args))
            .fetch_all(self.0.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

mediagen_storage_contract::contract_tests!(Postgres);

/// What only the PostgreSQL adapter does: several processes on one database, a server.
mod postgres_only {
    use super::*;

    /// Two processes (pools of their own) claiming at once never exceed an account limit.
    /// PostgreSQL only: several bot processes on one database is what it is for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_claimers_never_exceed_an_account_limit() {
        let db = Postgres::fresh().await;
        mediagen_storage_contract::concurrency::two_claimers_never_exceed_an_account_limit(db).await;
    }

    #[tokio::test]
    async fn the_test_url_reaches_the_test_database() {
        let db = fresh_database().await;
        let store = PgStore::connect(&db.url(), 2).await.unwrap();
        let name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(store.pool()).await.unwrap();
        assert_eq!(name, db.name());
    }

    #[tokio::test]
    async fn a_server_out_of_reach_is_unavailable() {
        // Nothing listens on port 1: the pool gives up after its acquire timeout.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_millis(300))
            .connect_lazy("postgres://postgres@127.0.0.1:1/mediagen")
            .unwrap();
        let outcome = PgStore::new(pool).await;
        assert!(matches!(outcome, Err(StorageError::Unavailable(_))), "{outcome:?}");
    }
}
