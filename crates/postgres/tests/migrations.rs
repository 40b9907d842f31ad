//! Migrations apply to an empty database and stay append-only.
//!
//! `migrations.lock` records the checksum of every migration ever merged. A migration may
//! be added (with a new line here) but never edited, renamed or removed: a database that
//! applied the old text would refuse to start.

use mediagen_postgres::MIGRATOR;
use mediagen_postgres::testing::fresh_database;
use sha2::{Digest, Sha384};
use std::path::Path;

/// `(version, file name, SHA-384)` of every file in `migrations/`, in version order.
fn files_on_disk() -> Vec<(i64, String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files: Vec<(i64, String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| !name.starts_with('.'))
        .map(|name| {
            let (version, rest) =
                name.split_once('_').unwrap_or_else(|| panic!("{name}: expected NNNN_description.sql"));
            assert!(rest.ends_with(".sql") && version.len() == 4, "{name}: expected NNNN_description.sql");
            let sql = std::fs::read(dir.join(&name)).unwrap();
            (version.parse().unwrap(), name, Sha384::digest(&sql).to_vec())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn versions_are_consecutive_from_one() {
    let versions: Vec<i64> = files_on_disk().iter().map(|(v, _, _)| *v).collect();
    assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
}

#[test]
fn merged_migrations_are_never_edited() {
    let lock = include_str!("migrations.lock");
    let locked: Vec<(&str, &str)> =
        lock.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split_once(' ').unwrap()).collect();
    let files = files_on_disk();
    for (i, (name, checksum)) in locked.iter().enumerate() {
        let (_, file, sum) = files.get(i).unwrap_or_else(|| panic!("{name} was removed"));
        assert_eq!(file, name, "migration {name} was renamed or reordered");
        assert_eq!(hex::encode(sum), *checksum, "migration {name} was edited: add a new migration instead");
    }
    let unlisted: Vec<&str> = files[locked.len()..].iter().map(|(_, name, _)| name.as_str()).collect();
    assert!(unlisted.is_empty(), "record new migrations in tests/migrations.lock: {unlisted:?}");
}

#[tokio::test]
async fn the_database_records_exactly_the_files_on_disk() {
    let db = fresh_database().await; // Migrates an empty database.
    let applied: Vec<(i64, Vec<u8>, bool)> =
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let files = files_on_disk();
    assert_eq!(applied.len(), files.len());
    for ((version, checksum, success), (file_version, name, sum)) in applied.iter().zip(&files) {
        assert!(success, "{name} did not apply cleanly");
        assert_eq!((version, checksum), (file_version, sum), "{name}: the embedded migration differs from the file");
    }
    // The embedded set is the set on disk (build.rs re-embeds on change), and rerunning is a no-op.
    let embedded: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(embedded, files.iter().map(|(v, _, _)| *v).collect::<Vec<_>>());
    mediagen_postgres::migrate(db.pool()).await.unwrap();
}
