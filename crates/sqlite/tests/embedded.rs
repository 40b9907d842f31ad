//! What only the embedded adapter does: a file created on first use, WAL so readers never
//! block the writer, in-process wake-ups between stores on one file.

use mediagen_ports::{JobQueue, StorageError, UserStore};
use mediagen_sqlite::SqliteStore;
use mediagen_sqlite::testing::fresh_database;
use mediagen_storage_contract::support::{add_user, enqueue, t};
use sqlx::Connection;
use std::time::{Duration, Instant};

#[tokio::test]
async fn connect_creates_the_file_in_wal_mode_with_foreign_keys() {
    let db = fresh_database().await;
    let dir = db.file().parent().unwrap().join("new");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bot.sqlite");
    assert!(!file.exists());
    let store = SqliteStore::connect(&format!("sqlite://{}", file.display()), 2).await.unwrap();
    assert!(file.exists(), "created on first use");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(store.pool()).await.unwrap();
    assert_eq!(mode, "wal");
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(store.pool()).await.unwrap();
    assert_eq!(foreign_keys, 1);
    let busy_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(store.pool()).await.unwrap();
    assert_eq!(u128::try_from(busy_ms).unwrap(), mediagen_sqlite::BUSY_TIMEOUT.as_millis());
    // Opening it again (a restart) keeps what was stored.
    add_user(&store, 1).await;
    store.pool().close().await;
    let again = SqliteStore::connect(&format!("sqlite:{}", file.display()), 2).await.unwrap();
    assert_eq!(again.list_users().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_file_that_cannot_be_opened_is_unavailable() {
    let db = fresh_database().await;
    let missing = db.file().parent().unwrap().join("no/such/dir/bot.sqlite");
    let outcome = SqliteStore::connect(&format!("sqlite://{}", missing.display()), 1).await;
    assert!(matches!(outcome, Err(StorageError::Unavailable(_))), "{outcome:?}");
    let outcome = SqliteStore::connect("postgres://localhost/mediagen", 1).await;
    assert!(matches!(outcome, Err(StorageError::Other(_))), "not a SQLite URL: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_reader_never_blocks_the_writer() {
    let db = fresh_database().await;
    let store = db.store();
    let user = add_user(&store, 1).await;
    enqueue(&store, user, "before", t(0)).await;

    // A report holding a read transaction open on a connection of its own.
    let mut reader =
        sqlx::SqliteConnection::connect_with(&mediagen_sqlite::connect_options(&db.url()).unwrap()).await.unwrap();
    let mut read = reader.begin().await.unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&mut *read).await.unwrap();
    assert_eq!(seen, 1);

    let started = Instant::now();
    enqueue(&store, user, "during", t(1)).await;
    assert!(started.elapsed() < Duration::from_secs(2), "the writer waited for the reader: {:?}", started.elapsed());
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&mut *read).await.unwrap();
    assert_eq!(still, 1, "the reader keeps its snapshot");
    read.commit().await.unwrap();
    assert_eq!(store.queued_count().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opened_on_one_file_wake_each_other() {
    let db = fresh_database().await;
    let dispatcher = SqliteStore::connect(&db.url(), 2).await.unwrap();
    let intake = SqliteStore::connect(&db.url(), 2).await.unwrap();
    let other = fresh_database().await;
    let unrelated = other.store();
    let user = add_user(&intake, 1).await;
    add_user(&unrelated, 1).await;

    let waiting = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.wait_for_change(300).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    enqueue(&unrelated, user, "elsewhere", t(0)).await;
    assert!(!waiting.await.unwrap(), "a change in another file wakes nobody here");

    let waiting = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.wait_for_change(10_000).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    enqueue(&intake, user, "here", t(0)).await;
    assert!(waiting.await.unwrap(), "woken by the other store's enqueue");
}
