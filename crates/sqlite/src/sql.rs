//! Every SQL statement the adapter runs, in one place, checked at run time against the
//! schema in `migrations-sqlite/` (the contract tests exercise each one).
//!
//! The statements mirror `crates/postgres/src/sql.rs` one for one. Where PostgreSQL needs
//! a lock (`FOR UPDATE`, `FOR NO KEY UPDATE`, the claim's advisory lock), SQLite needs
//! none: every transaction that writes starts with `BEGIN IMMEDIATE`, which takes the
//! database's single write lock up front, so a read-decide-write step inside it cannot
//! interleave with any other writer. Parameters are numbered (`?1`), instants are INTEGER
//! microseconds (UTC), arrays are JSON text read with `json_each`.

/// The columns of [`crate::rows::JobRow`], unqualified (SQLite's `RETURNING` takes no
/// table alias).
macro_rules! job_columns {
    () => {
        "id, user_id, chat_id, spec, state, failure, account_id, request_id, remote_model, status_url, \
         response_url, cancel_url, hold_micros, attempts, lease_owner, lease_epoch, submitted_at, created_at, updated_at, \
         helper_cost_micros"
    };
}

/// Opens every transaction that writes: takes the write lock at once (waiting up to the
/// busy timeout), so the transaction never has to upgrade a read lock, which SQLite
/// refuses with `SQLITE_BUSY` without waiting when another writer got there first.
pub(crate) const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Microseconds per UTC day.
pub(crate) const DAY_MICROS: i64 = 86_400_000_000;

// ---------------------------------------------------------------------------------------
// Users

/// $1 id, $2 language, $3 plan, $4 role, $5 settings, $6 now.
pub(crate) const UPSERT_USER: &str = "
    INSERT INTO users (id, language, plan, role, settings, created_at, updated_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
    ON CONFLICT (id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at
    RETURNING id, language, plan, role, blocked, settings";

pub(crate) const GET_USER: &str = "SELECT id, language, plan, role, blocked, settings FROM users WHERE id = ?1";

/// $1 id, $2 language, $3 plan, $4 role, $5 blocked, $6 settings, $7 now.
pub(crate) const UPDATE_USER: &str = "
    UPDATE users
    SET language = ?2, plan = ?3, role = ?4, blocked = ?5, settings = ?6, updated_at = ?7
    WHERE id = ?1";

pub(crate) const LIST_USERS: &str = "SELECT id, language, plan, role, blocked, settings FROM users ORDER BY id";

pub(crate) const USER_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)";

// ---------------------------------------------------------------------------------------
// The queue: enqueue

pub(crate) const JOB_BY_KEY: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE idempotency_key = ?1");

/// `UserUsage` in one statement: $1 user, $2 start of the UTC day, $3 start of the UTC month.
///
/// Spend is the month's charges plus the holds of every job not yet settled (a hold is
/// money at stake now, whenever it was taken; its charge will land at finish time).
pub(crate) const USER_USAGE: &str = "
    SELECT
        (SELECT count(*) FROM jobs WHERE user_id = ?1 AND created_at >= ?2) AS jobs_today,
        (SELECT coalesce(sum(amount_micros), 0) FROM ledger
            WHERE user_id = ?1 AND kind = 'charge' AND at >= ?3) AS charged_this_month,
        (SELECT coalesce(sum(hold_micros), 0) FROM jobs
            WHERE user_id = ?1 AND state IN ('queued', 'dispatching', 'submitted', 'running')) AS active_holds,
        (SELECT count(*) FROM jobs
            WHERE user_id = ?1 AND state IN ('dispatching', 'submitted', 'running')) AS in_flight,
        (SELECT count(*) FROM jobs WHERE user_id = ?1 AND state = 'queued') AS queued";

/// $1 key, $2 user, $3 chat, $4 model, $5 spec, $6 hold, $7 now.
pub(crate) const INSERT_JOB: &str = concat!(
    "INSERT INTO jobs (idempotency_key, user_id, chat_id, model, spec, state, hold_micros, enqueued_at, ",
    "created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?7, ?7) ",
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING ",
    job_columns!()
);

/// $1 job, $2 user, $3 hold, $4 now.
pub(crate) const INSERT_HOLD: &str = "
    INSERT INTO ledger (job_id, user_id, kind, amount_micros, at) VALUES (?1, ?2, 'hold', ?3, ?4)";

/// $1 job, $2 event, $3 from state, $4 to state, $5 account, $6 request id, $7 owner,
/// $8 detail, $9 when.
pub(crate) const INSERT_EVENT: &str = "
    INSERT INTO job_events (job_id, event, from_state, to_state, account_id, request_id, owner, detail, at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// The job's state, its 1-based place among queued jobs and the queue's length, in one
/// statement: FIFO by enqueue time, the same approximation of the scheduler as on
/// PostgreSQL (see there).
pub(crate) const QUEUE_POSITION: &str = "
    SELECT j.state,
        (SELECT count(*) FROM jobs q
            WHERE q.state = 'queued' AND (q.enqueued_at, q.id) <= (j.enqueued_at, j.id)) AS position,
        (SELECT count(*) FROM jobs q WHERE q.state = 'queued') AS total
    FROM jobs j WHERE j.id = ?1";

// ---------------------------------------------------------------------------------------
// The queue: claim

/// $1 a JSON array of account ids: those not stored.
pub(crate) const UNKNOWN_ACCOUNTS: &str = "
    SELECT value FROM json_each(?1) WHERE value NOT IN (SELECT id FROM accounts) ORDER BY value";

pub(crate) const IN_FLIGHT_BY_ACCOUNT: &str = "
    SELECT account_id, count(*) AS in_flight FROM jobs
    WHERE state IN ('dispatching', 'submitted', 'running')
    GROUP BY account_id ORDER BY account_id";

/// The queued jobs a claim may take, already in the scheduler's priority order.
///
/// $1 a JSON object of plan name to in-flight cap, $2 now, $3 the claim's budget (free
/// slots, bounded by `max_jobs`).
///
/// The same ranking as PostgreSQL's `CLAIM_CANDIDATES` (a user's k-th queued job comes up
/// with priority `(in_flight + k, its enqueue time, its id)` and only while
/// `in_flight + k <= cap`), so `schedule()` sees the same candidates and decides the same.
/// No row locks: the claim's `BEGIN IMMEDIATE` already excludes every other writer.
pub(crate) const CLAIM_CANDIDATES: &str = "
    WITH caps AS (
        SELECT key AS plan, value AS cap FROM json_each(?1)
    ), load AS (
        SELECT user_id, count(*) AS in_flight FROM jobs
        WHERE state IN ('dispatching', 'submitted', 'running')
        GROUP BY user_id
    ), ranked AS (
        SELECT q.id, q.user_id, q.enqueued_at,
               coalesce(l.in_flight, 0) AS in_flight,
               CASE WHEN u.role = 'admin' THEN NULL ELSE c.cap END AS cap,
               row_number() OVER (PARTITION BY q.user_id ORDER BY q.enqueued_at, q.id) AS rn
        FROM jobs q
        JOIN users u ON u.id = q.user_id
        LEFT JOIN load l ON l.user_id = q.user_id
        LEFT JOIN caps c ON c.plan = u.plan
        WHERE q.state = 'queued' AND (q.not_before IS NULL OR q.not_before <= ?2)
    )
    SELECT id, user_id, enqueued_at, in_flight, cap
    FROM ranked
    WHERE rn <= ?3 AND (cap IS NULL OR in_flight + rn <= cap)
    ORDER BY in_flight + rn, enqueued_at, id
    LIMIT ?3";

/// $1 job, $2 account, $3 owner, $4 lease end, $5 now.
pub(crate) const CLAIM_JOB: &str = concat!(
    "UPDATE jobs SET state = 'dispatching', account_id = ?2, lease_owner = ?3, lease_until = ?4, ",
    "lease_epoch = lease_epoch + 1, not_before = NULL, updated_at = ?5 WHERE id = ?1 AND state = 'queued' RETURNING ",
    job_columns!()
);

// ---------------------------------------------------------------------------------------
// The queue: state changes of one job

pub(crate) const GET_JOB: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?1");

/// $1 job, $2 request id, $3 model, $4 status URL, $5 response URL, $6 cancel URL, $7 now.
pub(crate) const MARK_SUBMITTED: &str = "
    UPDATE jobs SET state = 'submitted', request_id = ?2, remote_model = ?3, status_url = ?4,
        response_url = ?5, cancel_url = ?6, attempts = attempts + 1, submit_started_at = NULL, submitted_at = ?7,
        updated_at = ?7
    WHERE id = ?1";

/// $1 job, $2 now: the submit is about to start (see `JobQueue::mark_submitting`).
pub(crate) const MARK_SUBMITTING: &str = "UPDATE jobs SET submit_started_at = ?2, updated_at = ?2 WHERE id = ?1";

/// ?1 job, ?2 the prompt helper's cost for this attempt, ?3 now.
pub(crate) const ADD_HELPER_COST: &str =
    "UPDATE jobs SET helper_cost_micros = helper_cost_micros + ?2, updated_at = ?3 WHERE id = ?1";

/// Whether a job's submit started without its handle being stored (0 or 1).
pub(crate) const SUBMIT_STARTED: &str =
    "SELECT submit_started_at IS NOT NULL AND request_id IS NULL FROM jobs WHERE id = ?1";

/// $1 job, $2 now, $3 the deliverer's lease owner (NULL: the user's cancel), $4 its epoch:
/// the user was told; the delivery lease ends. Only finished jobs, and only under that
/// lease unless it was delivered already (repeating is a no-op).
pub(crate) const MARK_DELIVERED: &str = "
    UPDATE jobs SET delivered_at = coalesce(delivered_at, ?2), lease_owner = NULL, lease_until = NULL
    WHERE id = ?1 AND finished_at IS NOT NULL
      AND (?3 IS NULL OR delivered_at IS NOT NULL OR (lease_owner = ?3 AND lease_epoch = ?4))";

/// The settlement recorded for a job: (kind, amount) of its charge, refund and fal cost.
pub(crate) const SETTLEMENT_OF: &str = "
    SELECT kind, amount_micros FROM ledger WHERE job_id = ?1 AND kind IN ('charge', 'refund', 'fal_cost')";

pub(crate) const MARK_RUNNING: &str = "UPDATE jobs SET state = 'running', updated_at = ?2 WHERE id = ?1";

/// $1 job, $2 not before, $3 now. The enqueue time is kept: a retried job keeps its place.
pub(crate) const REQUEUE: &str = concat!(
    "UPDATE jobs SET state = 'queued', account_id = NULL, request_id = NULL, remote_model = NULL, ",
    "status_url = NULL, response_url = NULL, cancel_url = NULL, lease_owner = NULL, lease_until = NULL, ",
    "submit_started_at = NULL, submitted_at = NULL, not_before = ?2, updated_at = ?3 WHERE id = ?1 RETURNING ",
    job_columns!()
);

/// $1 job, $2 terminal state, $3 failure reason, $4 now. The account and fal handle stay
/// for the record. The lease stays too, as the delivery lease, until `MARK_DELIVERED`; a
/// job without one (canceled while queued) counts as delivered at once.
pub(crate) const FINISH: &str = concat!(
    "UPDATE jobs SET state = ?2, failure = ?3, not_before = NULL, submit_started_at = NULL, ",
    "delivered_at = CASE WHEN lease_owner IS NULL THEN ?4 END, finished_at = ?4, updated_at = ?4 ",
    "WHERE id = ?1 RETURNING ",
    job_columns!()
);

/// The settlement of a job: $1 job, $2 user, $3 charge, $4 refund, $5 the job's account,
/// $6 fal cost, $7 now. `ledger_job_kind_key` makes a second settlement impossible.
pub(crate) const SETTLE: &str = "
    INSERT INTO ledger (job_id, user_id, account_id, kind, amount_micros, at) VALUES
        (?1, ?2, NULL, 'charge', ?3, ?7),
        (?1, ?2, NULL, 'refund', ?4, ?7),
        (?1, ?2, ?5, 'fal_cost', ?6, ?7)";

// ---------------------------------------------------------------------------------------
// The queue: leases

/// $1 a JSON array of `[job id, owner, epoch]` (the leases a process holds live tasks
/// for), $2 new lease end. A lease not listed, or no longer as listed, is left alone.
pub(crate) const RENEW_LEASES: &str = "
    UPDATE jobs SET lease_until = ?2
    WHERE EXISTS (
        SELECT 1 FROM json_each(?1) AS h
        WHERE json_extract(h.value, '$[0]') = jobs.id
          AND json_extract(h.value, '$[1]') = jobs.lease_owner
          AND json_extract(h.value, '$[2]') = jobs.lease_epoch)
      AND (state IN ('dispatching', 'submitted', 'running') OR (finished_at IS NOT NULL AND delivered_at IS NULL))";

/// In-flight jobs, and finished ones not yet delivered, whose lease ended at or before $1.
pub(crate) const EXPIRED_LEASES: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE (state IN ('dispatching', 'submitted', 'running') ",
    "OR (finished_at IS NOT NULL AND delivered_at IS NULL)) AND lease_until <= ?1 ",
    "ORDER BY lease_until, id"
);

/// $1 job, $2 new owner, $3 lease end, $4 now. A new epoch fences off the old holder.
pub(crate) const TAKE_OVER: &str = concat!(
    "UPDATE jobs SET lease_owner = ?2, lease_until = ?3, lease_epoch = lease_epoch + 1, updated_at = ?4 ",
    "WHERE id = ?1 RETURNING ",
    job_columns!()
);

// ---------------------------------------------------------------------------------------
// The queue: reads

pub(crate) const RECENT_JOBS: &str =
    concat!("SELECT ", job_columns!(), " FROM jobs WHERE user_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2");

pub(crate) const QUEUED_COUNT: &str = "SELECT count(*) FROM jobs WHERE state = 'queued'";

// ---------------------------------------------------------------------------------------
// Accounts

/// $1 id, $2 key names (JSON array), $3 now. A configured account is not retired.
pub(crate) const UPSERT_ACCOUNT: &str = "
    INSERT INTO accounts (id, key_names, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
    ON CONFLICT (id) DO UPDATE SET key_names = excluded.key_names, retired_at = NULL,
        updated_at = excluded.updated_at
    RETURNING id, key_names, disabled, lock_reason, locked_since, limit_override, retired_at";

pub(crate) const LIST_ACCOUNTS: &str =
    "SELECT id, key_names, disabled, lock_reason, locked_since, limit_override, retired_at FROM accounts ORDER BY id";

/// $1 a JSON array of the configured account ids, $2 now: retires the others.
pub(crate) const RETIRE_UNLISTED: &str = "
    UPDATE accounts SET retired_at = ?2, updated_at = ?2
    WHERE retired_at IS NULL AND id NOT IN (SELECT value FROM json_each(?1))
    RETURNING id";

pub(crate) const ACCOUNT_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?1)";

/// $1 account, $2 amount, $3 when bought, $4 now.
pub(crate) const ADD_PURCHASE: &str =
    "INSERT INTO credit_purchases (account_id, amount_micros, purchased_at, recorded_at) VALUES (?1, ?2, ?3, ?4)";

pub(crate) const PURCHASES: &str = "
    SELECT amount_micros, purchased_at FROM credit_purchases WHERE account_id = ?1 ORDER BY purchased_at, id";

pub(crate) const TOTAL_SPEND: &str = "
    SELECT coalesce(sum(amount_micros), 0) FROM ledger WHERE kind = 'fal_cost' AND account_id = ?1";

/// One row per UTC day with fal spend, stamped at the day's last spend (see PostgreSQL's
/// `DAILY_SPENDS`). $2 is [`DAY_MICROS`]; the day is the floor of `at / $2`, also before 1970.
pub(crate) const DAILY_SPENDS: &str = "
    SELECT sum(amount_micros) AS amount_micros, max(at) AS spent_at FROM ledger
    WHERE kind = 'fal_cost' AND account_id = ?1 AND amount_micros > 0
    GROUP BY (at - ((at % ?2) + ?2) % ?2)
    ORDER BY spent_at";

/// $1 account, $2 reason, $3 since, $4 now.
pub(crate) const SET_LOCK: &str =
    "UPDATE accounts SET lock_reason = ?2, locked_since = ?3, updated_at = ?4 WHERE id = ?1";

/// $1 account, $2 disabled, $3 limit, $4 now.
pub(crate) const SET_ADMIN_STATE: &str =
    "UPDATE accounts SET disabled = ?2, limit_override = ?3, updated_at = ?4 WHERE id = ?1";

// ---------------------------------------------------------------------------------------
// Prompt cache and alerts

/// $1 key: the value and its expiry, expired or not.
pub(crate) const CACHE_GET: &str = "SELECT value, expires_at FROM prompt_cache WHERE key = ?1";

/// $1 key, $2 now: drops an entry found expired.
pub(crate) const CACHE_DROP_EXPIRED: &str = "DELETE FROM prompt_cache WHERE key = ?1 AND expires_at <= ?2";

/// $1 key, $2 value, $3 expiry, $4 now.
pub(crate) const CACHE_PUT: &str = "
    INSERT INTO prompt_cache (key, value, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at,
        created_at = excluded.created_at";

pub(crate) const RECORD_ALERT: &str =
    "INSERT INTO alerts (key, period, fired_at) VALUES (?1, ?2, ?3) ON CONFLICT (key, period) DO NOTHING";

// ---------------------------------------------------------------------------------------
// Media and usage

/// Inserts or completes a media record (the Telegram file id arrives after delivery).
/// $1 job, $2 URL, $3 Telegram file id, $4 size, $5 content type, $6 now.
pub(crate) const SAVE_MEDIA: &str = "
    INSERT INTO media (job_id, fal_url, telegram_file_id, size_bytes, content_type, created_at, updated_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
    ON CONFLICT (job_id, fal_url) DO UPDATE SET
        telegram_file_id = coalesce(excluded.telegram_file_id, media.telegram_file_id),
        size_bytes = coalesce(excluded.size_bytes, media.size_bytes),
        content_type = coalesce(excluded.content_type, media.content_type),
        updated_at = excluded.updated_at";

pub(crate) const MEDIA_FOR_JOB: &str = "
    SELECT job_id, fal_url, telegram_file_id, size_bytes, content_type FROM media WHERE job_id = ?1 ORDER BY id";

/// Jobs finished in [$1, $2) with their settlements, per model.
pub(crate) const USAGE_BY_MODEL: &str = "
    WITH finished AS (
        SELECT id, model, state FROM jobs WHERE finished_at >= ?1 AND finished_at < ?2
    ), money AS (
        SELECT l.job_id,
               sum(l.amount_micros) FILTER (WHERE l.kind = 'charge') AS charged,
               sum(l.amount_micros) FILTER (WHERE l.kind = 'fal_cost') AS fal_cost
        FROM ledger l JOIN finished f ON f.id = l.job_id
        GROUP BY l.job_id
    )
    SELECT f.model,
           count(*) FILTER (WHERE f.state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE f.state <> 'succeeded') AS failed,
           coalesce(sum(m.charged), 0) AS user_charged,
           coalesce(sum(m.fal_cost), 0) AS fal_cost
    FROM finished f LEFT JOIN money m ON m.job_id = f.id
    GROUP BY f.model ORDER BY f.model";

/// Jobs finished in [$1, $2) with their settlements, per user, biggest spenders first.
pub(crate) const USAGE_BY_USER: &str = "
    WITH finished AS (
        SELECT id, user_id FROM jobs WHERE finished_at >= ?1 AND finished_at < ?2
    ), money AS (
        SELECT l.job_id,
               sum(l.amount_micros) FILTER (WHERE l.kind = 'charge') AS charged,
               sum(l.amount_micros) FILTER (WHERE l.kind = 'fal_cost') AS fal_cost
        FROM ledger l JOIN finished f ON f.id = l.job_id
        GROUP BY l.job_id
    )
    SELECT f.user_id,
           count(*) AS jobs,
           coalesce(sum(m.charged), 0) AS charged,
           coalesce(sum(m.fal_cost), 0) AS fal_cost
    FROM finished f LEFT JOIN money m ON m.job_id = f.id
    GROUP BY f.user_id ORDER BY charged DESC, f.user_id";

/// Submissions to fal in [$1, $2): every accepted submit, retries included.
pub(crate) const REQUEST_COUNT: &str =
    "SELECT count(*) FROM job_events WHERE event = 'submitted' AND at >= ?1 AND at < ?2";

// ---------------------------------------------------------------------------------------
// Reports (`ReportStore`): reads only. Where rows group by UTC day, $3 is [`DAY_MICROS`]
// and a day is the floor of an instant divided by it, returned as the day's first
// microsecond (PostgreSQL: `(at AT TIME ZONE 'UTC')::date`). Text keys sort byte-wise,
// as PostgreSQL's `COLLATE "C"`.

/// Jobs finished in [$1, $2), grouped by (UTC day of the finish, user, model, account),
/// with their settlements summed per kind; accounts sort with NULL last.
pub(crate) const REPORT_USAGE_ROWS: &str = "
    WITH finished AS (
        SELECT id, user_id, model, account_id, state,
               finished_at - ((finished_at % ?3) + ?3) % ?3 AS day
        FROM jobs WHERE finished_at >= ?1 AND finished_at < ?2
    ), money AS (
        SELECT l.job_id,
               sum(l.amount_micros) FILTER (WHERE l.kind = 'charge') AS charged,
               sum(l.amount_micros) FILTER (WHERE l.kind = 'refund') AS refunded,
               sum(l.amount_micros) FILTER (WHERE l.kind = 'fal_cost') AS fal_cost
        FROM ledger l JOIN finished f ON f.id = l.job_id
        GROUP BY l.job_id
    )
    SELECT f.day, f.user_id, f.model, f.account_id,
           count(*) AS jobs,
           count(*) FILTER (WHERE f.state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE f.state = 'failed') AS failed,
           count(*) FILTER (WHERE f.state = 'canceled') AS canceled,
           coalesce(sum(m.charged), 0) AS user_charged,
           coalesce(sum(m.refunded), 0) AS user_refunded,
           coalesce(sum(m.fal_cost), 0) AS fal_cost
    FROM finished f LEFT JOIN money m ON m.job_id = f.id
    GROUP BY f.day, f.user_id, f.model, f.account_id
    ORDER BY f.day, f.user_id, f.model, f.account_id IS NULL, f.account_id";

/// Accepted submissions in [$1, $2) per UTC day.
pub(crate) const REPORT_REQUESTS_BY_DAY: &str = "
    SELECT at - ((at % ?3) + ?3) % ?3 AS day, count(*) AS count
    FROM job_events WHERE event = 'submitted' AND at >= ?1 AND at < ?2
    GROUP BY day ORDER BY day";

pub(crate) const REPORT_JOB_COUNTS: &str = "SELECT state, count(*) FROM jobs GROUP BY state";

/// Jobs whose life [enqueued_at, finished_at) overlaps [$1, $2), with their first claim.
pub(crate) const REPORT_JOB_TIMINGS: &str = "
    SELECT j.id, j.user_id, j.model, j.state, j.enqueued_at, j.finished_at,
           (SELECT min(e.at) FROM job_events e WHERE e.job_id = j.id AND e.event = 'claimed') AS first_claimed_at
    FROM jobs j
    WHERE j.enqueued_at < ?2 AND (j.finished_at IS NULL OR j.finished_at > ?1)
    ORDER BY j.enqueued_at, j.id";

/// Every `claimed` event with the job's next event that left flight (back to the queue or
/// terminal; by event order, which is commit order), kept when the interval overlaps
/// [$1, $2): claimed before $2, and still in flight or released after $1 (the same test
/// as PostgreSQL's, so both return the same intervals).
pub(crate) const REPORT_SLOT_INTERVALS: &str = "
    WITH intervals AS (
        SELECT c.id AS claim_id, c.job_id, c.account_id, c.at AS claimed_at,
               (SELECT e.id FROM job_events e
                 WHERE e.job_id = c.job_id AND e.id > c.id
                   AND e.to_state IN ('queued', 'succeeded', 'failed', 'canceled')
                 ORDER BY e.id LIMIT 1) AS release_id
        FROM job_events c
        WHERE c.event = 'claimed' AND c.at < ?2 AND c.account_id IS NOT NULL
    )
    SELECT i.job_id, i.account_id, j.model, i.claimed_at, r.at AS released_at, r.to_state AS released_to
    FROM intervals i
    JOIN jobs j ON j.id = i.job_id
    LEFT JOIN job_events r ON r.id = i.release_id
    WHERE r.id IS NULL OR r.at > ?1
    ORDER BY i.claimed_at, i.job_id, i.claim_id";
