//! The shared storage contract (`mediagen-storage-contract`), run against PostgreSQL:
//! every story on a database of its own; then what only PostgreSQL does.

use async_trait::async_trait;
use mediagen_domain::JobId;
use mediagen_ports::StorageError;
use mediagen_postgres::PgStore;
use mediagen_postgres::testing::{TestDb, fresh_database};
use mediagen_storage_contract::sql::*;
use mediagen_storage_contract::{Database, LedgerKind};

/// A fresh PostgreSQL database for one story.
struct Postgres(TestDb);

/// The one parameter of a counting probe.
enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

impl Postgres {
    /// The number a counting probe returns.
    async fn number(&self, sql: &'static str, bind: Option<Bind<'_>>) -> i64 {
        let query = sqlx::query_scalar(sql);
        let query = match bind {
            None => query,
            Some(Bind::Int(n)) => query.bind(n),
            Some(Bind::Text(text)) => query.bind(text.to_owned()),
        };
        query.fetch_one(self.0.pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
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

    async fn job_count(&self) -> i64 {
        self.number(JOB_COUNT, None).await
    }

    async fn finished_job_count(&self) -> i64 {
        self.number(FINISHED_JOB_COUNT, None).await
    }

    async fn ledger_amount(&self, job: JobId, kind: LedgerKind) -> Option<i64> {
        sqlx::query_scalar(LEDGER_AMOUNT)
            .bind(job.0)
            .bind(kind.as_str())
            .fetch_optional(self.0.pool())
            .await
            .unwrap_or_else(|e| panic!("{LEDGER_AMOUNT}: {e}"))
    }

    async fn ledger_rows_of_job(&self, job: JobId) -> i64 {
        self.number(LEDGER_ROWS_OF_JOB, Some(Bind::Int(job.0))).await
    }

    async fn ledger_rows_of_kind(&self, kind: LedgerKind) -> i64 {
        self.number(LEDGER_ROWS_OF_KIND, Some(Bind::Text(kind.as_str()))).await
    }

    async fn jobs_with_repeated_entries(&self, kind: LedgerKind) -> i64 {
        self.number(JOBS_WITH_REPEATED_ENTRIES, Some(Bind::Text(kind.as_str()))).await
    }

    async fn event_count(&self, event: &str) -> i64 {
        self.number(EVENT_COUNT, Some(Bind::Text(event))).await
    }

    async fn job_events(&self, job: JobId) -> Vec<String> {
        sqlx::query_scalar(JOB_EVENTS)
            .bind(job.0)
            .fetch_all(self.0.pool())
            .await
            .unwrap_or_else(|e| panic!("{JOB_EVENTS}: {e}"))
    }

    async fn unbalanced_jobs(&self) -> Vec<JobId> {
        let ids: Vec<i64> = sqlx::query_scalar(UNBALANCED_JOBS)
            .fetch_all(self.0.pool())
            .await
            .unwrap_or_else(|e| panic!("{UNBALANCED_JOBS}: {e}"));
        ids.into_iter().map(JobId).collect()
    }

    async fn in_flight_per_account(&self) -> Vec<i64> {
        sqlx::query_scalar(IN_FLIGHT_PER_ACCOUNT)
            .fetch_all(self.0.pool())
            .await
            .unwrap_or_else(|e| panic!("{IN_FLIGHT_PER_ACCOUNT}: {e}"))
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
