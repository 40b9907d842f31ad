//! Migrations apply to an empty file, stay append-only, and stay in step with PostgreSQL's.
//!
//! `migrations.lock` records the checksum of every SQLite migration ever merged. A
//! migration may be added (with a new line here) but never edited, renamed or removed: a
//! database that applied the old text would refuse to open. Every file in
//! `migrations-sqlite/` has its twin, of the same name, in `migrations/`.

use mediagen_sqlite::MIGRATOR;
use mediagen_sqlite::testing::fresh_database;
use sha2::{Digest, Sha384};
use std::path::Path;

/// `(version, file name, SHA-384)` of every file in `dir` (relative to the workspace), in
/// version order.
fn files_in(dir: &str) -> Vec<(i64, String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir);
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

fn files_on_disk() -> Vec<(i64, String, Vec<u8>)> {
    files_in("migrations-sqlite")
}

#[test]
fn versions_are_consecutive_from_one() {
    let versions: Vec<i64> = files_on_disk().iter().map(|(v, _, _)| *v).collect();
    assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
}

#[test]
fn every_migration_has_its_postgres_twin() {
    let names = |files: Vec<(i64, String, Vec<u8>)>| files.into_iter().map(|(_, name, _)| name).collect::<Vec<_>>();
    assert_eq!(
        names(files_on_disk()),
        names(files_in("migrations")),
        "migrations-sqlite/ and migrations/ must hold the same versions under the same names: \
         write each schema change in both dialects"
    );
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
    let db = fresh_database().await; // Migrates an empty file.
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
    mediagen_sqlite::migrate(db.pool()).await.unwrap();
}

#[tokio::test]
async fn both_schemas_have_the_same_tables_and_columns() {
    // The SQLite side, read from the migrated file; the PostgreSQL side, parsed from the
    // migration text (no server needed).
    let db = fresh_database().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let mut sqlite = Vec::new();
    for table in &tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
            .bind(table)
            .fetch_all(db.pool())
            .await
            .unwrap();
        sqlite.push((table.clone(), columns));
    }

    let mut postgres: Vec<(String, Vec<String>)> = Vec::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    for (_, name, _) in files_in("migrations") {
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            // Later migrations add columns: `ALTER TABLE t ADD COLUMN c TYPE;` on one line.
            if let Some((table, rest)) = line.strip_prefix("ALTER TABLE ").and_then(|r| r.split_once(" ADD COLUMN ")) {
                let column = rest.split_whitespace().next().unwrap_or_default().to_owned();
                let entry = postgres.iter_mut().find(|(t, _)| t == table);
                entry.unwrap_or_else(|| panic!("{name}: ALTER TABLE of unknown table {table}")).1.push(column);
                continue;
            }
            let Some(table) = line.strip_prefix("CREATE TABLE ").and_then(|rest| rest.strip_suffix(" (")) else {
                continue;
            };
            // A column starts its line, indented four spaces, in lower case; constraints
            // are upper case and continuations are indented deeper.
            let mut columns = Vec::new();
            for line in lines.by_ref() {
                if line.starts_with(')') {
                    break;
                }
                let column =
                    line.strip_prefix("    ").filter(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase()));
                if let Some(rest) = column {
                    columns.push(rest.split_whitespace().next().unwrap_or_default().to_owned());
                }
            }
            postgres.push((table.to_owned(), columns));
        }
    }
    postgres.sort();
    assert_eq!(postgres.len(), 9, "the parser found every table: {postgres:?}");
    assert_eq!(sqlite, postgres, "the SQLite schema must mirror the PostgreSQL one, table by table");
}
