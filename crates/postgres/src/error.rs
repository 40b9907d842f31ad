//! From sqlx errors to the ports' [`StorageError`]: connection trouble is `Unavailable`,
//! and violations of the named constraints in `migrations/` become the domain error
//! the contract promises.

use mediagen_ports::StorageError;
use sqlx::error::ErrorKind;

/// What a violated constraint means to a caller.
enum Meaning {
    /// The referenced row does not exist.
    NotFound(&'static str),
    /// The write contradicts what is stored.
    Conflict(&'static str),
}

/// The schema's constraints that callers can trip, by name (see `migrations/`).
///
/// Only these are expected in normal operation; any other violation is a bug in the
/// adapter and surfaces as `Other`.
const CONSTRAINTS: &[(&str, Meaning)] = &[
    ("jobs_user_id_fkey", Meaning::NotFound("unknown user")),
    ("jobs_account_id_fkey", Meaning::NotFound("unknown account")),
    ("credit_purchases_account_id_fkey", Meaning::NotFound("unknown account")),
    ("media_job_id_fkey", Meaning::NotFound("unknown job")),
    ("ledger_account_id_fkey", Meaning::NotFound("unknown account")),
    ("jobs_idempotency_key_key", Meaning::Conflict("idempotency key already used")),
    ("ledger_job_kind_key", Meaning::Conflict("the job's ledger entry already exists")),
    ("jobs_hold_check", Meaning::Conflict("a hold cannot be negative")),
    ("ledger_amount_check", Meaning::Conflict("ledger amounts cannot be negative")),
    ("media_size_check", Meaning::Conflict("a size cannot be negative")),
    ("accounts_limit_override_check", Meaning::Conflict("a limit cannot be negative")),
    ("accounts_id_check", Meaning::Conflict("an account id cannot be empty")),
];

/// SQLSTATE classes and codes that mean "the database cannot serve us right now".
fn is_unavailable_code(code: &str) -> bool {
    // 08: connection exception; 53: insufficient resources (too many connections, disk
    // full); 57P0x: the server is shutting down or starting; 58: system error.
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") || code.starts_with("58")
}

/// Classifies any sqlx error.
pub(crate) fn classify(error: sqlx::Error) -> StorageError {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => StorageError::Unavailable(error.to_string()),
        sqlx::Error::Database(db) => {
            if db.code().is_some_and(|code| is_unavailable_code(&code)) {
                return StorageError::Unavailable(db.to_string());
            }
            let meaning = db.constraint().and_then(|name| CONSTRAINTS.iter().find(|(n, _)| *n == name));
            match (meaning, db.kind()) {
                (Some((name, Meaning::NotFound(what))), _) => StorageError::NotFound(format!("{what} ({name})")),
                (Some((name, Meaning::Conflict(what))), _) => StorageError::Conflict(format!("{what} ({name})")),
                // 40001 / 40P01: a serialization failure or deadlock; the caller re-reads.
                (None, ErrorKind::Other) if db.code().is_some_and(|c| c == "40001" || c == "40P01") => {
                    StorageError::Conflict(db.to_string())
                }
                _ => StorageError::Other(anyhow::Error::new(sqlx::Error::Database(db))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_are_unavailable() {
        assert!(matches!(classify(sqlx::Error::PoolTimedOut), StorageError::Unavailable(_)));
        assert!(matches!(classify(sqlx::Error::PoolClosed), StorageError::Unavailable(_)));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(matches!(classify(sqlx::Error::Io(io)), StorageError::Unavailable(_)));
        assert!(matches!(classify(sqlx::Error::RowNotFound), StorageError::Other(_)));
    }

    #[test]
    fn sqlstate_classes() {
        for code in ["08006", "08001", "53300", "57P01", "57P03", "58000"] {
            assert!(is_unavailable_code(code), "{code}");
        }
        for code in ["23505", "40001", "42P01"] {
            assert!(!is_unavailable_code(code), "{code}");
        }
    }
}
