//! The [`Database`](crate::Database) probes as SQL, for adapters that keep the twin schemas
//! of `migrations/` and `migrations-sqlite/`: each query is written once for both dialects
//! (`$1`-style parameters, portable functions, `count(*)`), and each adapter's contract test
//! binds and runs it.

/// `SELECT count(*)` of every job.
pub const JOB_COUNT: &str = "SELECT count(*) FROM jobs";

/// `SELECT count(*)` of the jobs with a finish instant.
pub const FINISHED_JOB_COUNT: &str = "SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL";

/// $1 job, $2 kind: the amount of that ledger row.
pub const LEDGER_AMOUNT: &str = "SELECT amount_micros FROM ledger WHERE job_id = $1 AND kind = $2";

/// $1 job: its ledger rows.
pub const LEDGER_ROWS_OF_JOB: &str = "SELECT count(*) FROM ledger WHERE job_id = $1";

/// $1 kind: ledger rows of that kind.
pub const LEDGER_ROWS_OF_KIND: &str = "SELECT count(*) FROM ledger WHERE kind = $1";

/// $1 kind: jobs with more than one ledger row of that kind.
pub const JOBS_WITH_REPEATED_ENTRIES: &str =
    "SELECT count(*) FROM (SELECT job_id FROM ledger WHERE kind = $1 GROUP BY job_id HAVING count(*) > 1) d";

/// $1 event name: events of that name.
pub const EVENT_COUNT: &str = "SELECT count(*) FROM job_events WHERE event = $1";

/// $1 job: its event names, oldest first.
pub const JOB_EVENTS: &str = "SELECT event FROM job_events WHERE job_id = $1 ORDER BY id";

/// Every finished job whose hold is not exactly charge + refund, by id.
pub const UNBALANCED_JOBS: &str = "
    SELECT j.id FROM jobs j
    LEFT JOIN ledger h ON h.job_id = j.id AND h.kind = 'hold'
    LEFT JOIN ledger c ON c.job_id = j.id AND c.kind = 'charge'
    LEFT JOIN ledger r ON r.job_id = j.id AND r.kind = 'refund'
    WHERE j.finished_at IS NOT NULL
      AND (h.amount_micros IS NULL OR c.amount_micros IS NULL OR r.amount_micros IS NULL
           OR h.amount_micros <> j.hold_micros OR h.amount_micros <> c.amount_micros + r.amount_micros)
    ORDER BY j.id";

/// Jobs in flight per account, ordered by account.
pub const IN_FLIGHT_PER_ACCOUNT: &str = "
    SELECT count(*) FROM jobs WHERE state IN ('dispatching', 'submitted', 'running')
    GROUP BY account_id ORDER BY account_id";
