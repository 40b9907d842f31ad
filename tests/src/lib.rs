//! The end-to-end suite's harness is `mediagen-stack`: [`Stack::start`] runs the real bot
//! in-process against the fal simulator, the fake Bot API and a fresh database of its own
//! (a SQLite file by default, or PostgreSQL). This crate re-exports it for the tests and
//! adds [`on_both_databases!`], which runs one scenario on each database.

pub use mediagen_stack::{
    ADMIN_ID, BotProcess, Database, FAL_KEY, FalAccount, FreshDb, Listen, Parts, Stack, StackOptions, bot_binary,
    ledger, tiny_png, with_pool, workspace,
};

/// Declares two tests named after the async function `$name(Database)`: `$name::on_sqlite`
/// and `$name::on_postgres`, so one scenario proves itself on both storage adapters.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name($crate::Database::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$name($crate::Database::Postgres).await
            }
        }
    };
}
