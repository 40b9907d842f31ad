//! The shared storage contract (`mediagen-storage-contract`), run against SQLite: every
//! story on a database file of its own.

use async_trait::async_trait;
use mediagen_sqlite::SqliteStore;
use mediagen_sqlite::testing::{TestDb, fresh_database};
use mediagen_storage_contract::{Arg, Database};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, AssertSqlSafe};

/// A fresh SQLite file for one story.
struct Sqlite(TestDb);

fn arguments(args: &[Arg<'_>]) -> SqliteArguments {
    let mut out = SqliteArguments::default();
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
impl Database for Sqlite {
    type Store = SqliteStore;

    async fn fresh() -> Self {
        Sqlite(fresh_database().await)
    }

    async fn store(&self) -> SqliteStore {
        self.0.store()
    }

    async fn peer(&self) -> SqliteStore {
        self.0.separate_store(2).await
    }

    async fn connect(&self) -> SqliteStore {
        SqliteStore::connect(&self.0.url(), 2).await.expect("connect by URL")
    }

    async fn close(&self, store: &SqliteStore) {
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

mediagen_storage_contract::contract_tests!(Sqlite);
