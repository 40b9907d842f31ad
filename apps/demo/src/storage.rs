//! Where the bot keeps its data during the demo: one setting, a [`Database`].
//!
//! By default an embedded SQLite file under the workspace's `target/demo/`, so the demo
//! needs no database server; a PostgreSQL database when an admin URL is given. Either way
//! `mediagen-stack` makes it fresh at every start (the file deleted, or the database
//! dropped and created again), so each run begins clean, and removes it at the end. The
//! bot gets its URL as `DATABASE_URL`, whose scheme picks the adapter, and the demo reads
//! through the same storage ports, which answer alike on both; the little the ports do not
//! say is read by dialect-free SQL (`queries`).

use mediagen_stack::{DEFAULT_ADMIN_URL, Database, check_name};
use std::path::{Path, PathBuf};

/// The database (PostgreSQL) or file stem (SQLite) `just demo` uses.
pub const DEFAULT_DATABASE: &str = "mediagen_demo";

/// The directory of the demo's SQLite files: `target/demo/` in this workspace.
pub fn demo_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.ancestors().nth(2).unwrap_or(manifest);
    workspace.join("target").join("demo")
}

/// The SQLite file `<workspace>/target/demo/<name>.sqlite`.
///
/// # Errors
/// When `name` is not plain (lowercase letters, digits and `_`).
pub fn sqlite(name: &str) -> anyhow::Result<Database> {
    check_name(name)?;
    Ok(Database::SqliteFile(demo_dir().join(format!("{name}.sqlite"))))
}

/// PostgreSQL at `admin_url` (or the local server) with the given database name.
pub fn postgres(admin_url: Option<String>, name: impl Into<String>) -> Database {
    Database::PostgresNamed { admin_url: admin_url.unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned()), name: name.into() }
}

/// `target/demo/mediagen_demo.sqlite`.
pub fn default_database() -> Database {
    sqlite(DEFAULT_DATABASE).expect("the default name is plain")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_is_the_default_in_target_demo() {
        let Database::SqliteFile(file) = default_database() else { panic!("SQLite is the default") };
        assert!(file.ends_with("target/demo/mediagen_demo.sqlite"), "{}", file.display());
        assert!(default_database().describe().starts_with("SQLite file "));
    }

    #[test]
    fn only_plain_names_make_a_file() {
        assert!(sqlite("../../etc/passwd").is_err());
        assert!(sqlite("Demo").is_err());
        assert!(postgres(None, "d").is_postgres());
    }
}
