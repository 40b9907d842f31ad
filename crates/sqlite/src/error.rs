//! From sqlx errors to the ports' [`StorageError`]: an unreachable file or a busy database
//! is `Unavailable`, and violations of the named constraints in `migrations-sqlite/`
//! become the domain error the contract promises.
//!
//! SQLite names a violated CHECK constraint in its message (`CHECK constraint failed:
//! jobs_hold_check`) but not a UNIQUE or FOREIGN KEY one, so those are told apart by the
//! columns it lists or by their kind.

use mediagen_ports::StorageError;
use sqlx::error::ErrorKind;

/// What a violated constraint means to a caller.
enum Meaning {
    /// The referenced row does not exist.
    NotFound(&'static str),
    /// The write contradicts what is stored.
    Conflict(&'static str),
}

/// CHECK constraints that callers can trip, by name (see `migrations-sqlite/`).
const CHECKS: &[(&str, Meaning)] = &[
    ("jobs_hold_check", Meaning::Conflict("a hold cannot be negative")),
    ("ledger_amount_check", Meaning::Conflict("ledger amounts cannot be negative")),
    ("media_size_check", Meaning::Conflict("a size cannot be negative")),
    ("accounts_limit_override_check", Meaning::Conflict("a limit cannot be negative")),
    ("accounts_id_check", Meaning::Conflict("an account id cannot be empty")),
];

/// UNIQUE constraints by the columns SQLite lists (`UNIQUE constraint failed: t.a, t.b`).
const UNIQUES: &[(&str, &str, Meaning)] = &[
    ("jobs.idempotency_key", "jobs_idempotency_key_key", Meaning::Conflict("idempotency key already used")),
    ("ledger.job_id, ledger.kind", "ledger_job_kind_key", Meaning::Conflict("the job's ledger entry already exists")),
];

/// Primary result codes (the low byte of an extended code) that mean "the database cannot
/// serve us right now": BUSY and LOCKED (another writer held on past the busy timeout),
/// NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
fn is_unavailable_code(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6 | 7 | 8 | 10 | 11 | 13 | 14 | 15 | 26)
}

/// Classifies any sqlx error.
pub(crate) fn classify(error: sqlx::Error) -> StorageError {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => StorageError::Unavailable(error.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().and_then(|c| c.parse::<i32>().ok());
            if code.is_some_and(is_unavailable_code) {
                return StorageError::Unavailable(db.to_string());
            }
            let message = db.message();
            let meaning = match db.kind() {
                // Every foreign key in the schema points at a row a caller names (a user, an
                // account, a job): a missing one is that row not being found.
                ErrorKind::ForeignKeyViolation => {
                    Some(("foreign key", &Meaning::NotFound("a referenced row is missing")))
                }
                ErrorKind::CheckViolation => CHECKS
                    .iter()
                    .find(|(name, _)| message.strip_prefix("CHECK constraint failed: ") == Some(*name))
                    .map(|(name, meaning)| (*name, meaning)),
                ErrorKind::UniqueViolation => UNIQUES
                    .iter()
                    .find(|(columns, _, _)| message.strip_prefix("UNIQUE constraint failed: ") == Some(*columns))
                    .map(|(_, name, meaning)| (*name, meaning)),
                _ => None,
            };
            match meaning {
                Some((name, Meaning::NotFound(what))) => StorageError::NotFound(format!("{what} ({name})")),
                Some((name, Meaning::Conflict(what))) => StorageError::Conflict(format!("{what} ({name})")),
                None => StorageError::Other(anyhow::Error::new(sqlx::Error::Database(db))),
            }
        }
        other => StorageError::Other(anyhow::Error::new(other)),
    }
}

/// A stored value the adapter cannot turn back into a domain value: corrupt data or a
/// schema the code does not know.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StorageError {
    StorageError::Other(anyhow::anyhow!("corrupt row: {what}"))
}

/// A value that cannot be encoded (JSON of a domain value): a bug, not a database problem.
pub(crate) fn encode(error: serde_json::Error) -> StorageError {
    StorageError::Other(anyhow::Error::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_are_unavailable() {
        assert!(matches!(classify(sqlx::Error::PoolTimedOut), StorageError::Unavailable(_)));
        assert!(matches!(classify(sqlx::Error::PoolClosed), StorageError::Unavailable(_)));
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        assert!(matches!(classify(sqlx::Error::Io(io)), StorageError::Unavailable(_)));
        assert!(matches!(classify(sqlx::Error::RowNotFound), StorageError::Other(_)));
    }

    #[test]
    fn result_codes() {
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT (517), SQLITE_LOCKED, SQLITE_IOERR_WRITE (778),
        // SQLITE_FULL, SQLITE_CANTOPEN.
        for code in [5, 517, 6, 778, 13, 14] {
            assert!(is_unavailable_code(code), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_ERROR, SQLITE_CONSTRAINT_CHECK (275).
        for code in [2067, 1, 275] {
            assert!(!is_unavailable_code(code), "{code}");
        }
    }
}
