//! Every SQL statement the adapter runs, in one place, checked at run time against the
//! schema in `migrations/` (the contract tests exercise each one).
//!
//! Jobs are always aliased `j` so the column list below can be shared by `SELECT`,
//! `INSERT … RETURNING` and `UPDATE … FROM … RETURNING`.

/// The columns of [`crate::rows::JobRow`], qualified with the alias `j`.
macro_rules! job_columns {
    () => {
        "j.id, j.user_id, j.chat_id, j.spec, j.state, j.failure, j.account_id, j.request_id, j.remote_model, \
         j.status_url, j.response_url, j.cancel_url, j.hold_micros, j.attempts, j.lease_owner, j.lease_epoch, \
         j.submitted_at, j.created_at, j.updated_at, j.helper_cost_micros"
    };
}

/// The NOTIFY channel for "the queue changed" (enqueue, requeue, finish, cancel).
pub(crate) const CHANNEL: &str = "mediagen_jobs";

/// The key of the transaction-level advisory lock that serializes claims ("mediagen" in
/// ASCII). See [`CLAIM_LOCK`].
pub(crate) const CLAIM_LOCK_KEY: i64 = 0x6d65_6469_6167_656e;

// ---------------------------------------------------------------------------------------
// Users

pub(crate) const UPSERT_USER: &str = "
    INSERT INTO users (id, language, plan, role, settings)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role, updated_at = now()
    RETURNING id, language, plan, role, blocked, settings";

pub(crate) const GET_USER: &str = "SELECT id, language, plan, role, blocked, settings FROM users WHERE id = $1";

pub(crate) const UPDATE_USER: &str = "
    UPDATE users
    SET language = $2, plan = $3, role = $4, blocked = $5, settings = $6, updated_at = now()
    WHERE id = $1";

pub(crate) const LIST_USERS: &str = "SELECT id, language, plan, role, blocked, settings FROM users ORDER BY id";

// ---------------------------------------------------------------------------------------
// The queue: enqueue

/// Serializes one user's enqueues, so the usage read after it is the truth until commit.
/// `NO KEY UPDATE` conflicts with itself but not with the `KEY SHARE` locks that foreign
/// keys take, so a finish or claim writing ledger rows for this user never waits on it.
pub(crate) const LOCK_USER: &str = "SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE";

pub(crate) const JOB_BY_KEY: &str = concat!("SELECT ", job_columns!(), " FROM jobs j WHERE j.idempotency_key = $1");

/// `UserUsage` in one round trip: $1 user, $2 start of the UTC day, $3 start of the UTC month.
///
/// Spend is the month's charges plus the holds of every job not yet settled (a hold is
/// money at stake now, whenever it was taken; its charge will land at finish time).
pub(crate) const USER_USAGE: &str = "
    SELECT
        (SELECT count(*) FROM jobs WHERE user_id = $1 AND created_at >= $2) AS jobs_today,
        (SELECT coalesce(sum(amount_micros), 0)::int8 FROM ledger
            WHERE user_id = $1 AND kind = 'charge' AND at >= $3) AS charged_this_month,
        (SELECT coalesce(sum(hold_micros), 0)::int8 FROM jobs
            WHERE user_id = $1 AND state IN ('queued', 'dispatching', 'submitted', 'running')) AS active_holds,
        (SELECT count(*) FROM jobs
            WHERE user_id = $1 AND state IN ('dispatching', 'submitted', 'running')) AS in_flight,
        (SELECT count(*) FROM jobs WHERE user_id = $1 AND state = 'queued') AS queued";

pub(crate) const INSERT_JOB: &str = concat!(
    "INSERT INTO jobs AS j (idempotency_key, user_id, chat_id, model, spec, state, hold_micros, enqueued_at, ",
    "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $7, $7) ",
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING ",
    job_columns!()
);

pub(crate) const INSERT_HOLD: &str = "
    INSERT INTO ledger (job_id, user_id, kind, amount_micros, at) VALUES ($1, $2, 'hold', $3, $4)";

/// $1 job, $2 event, $3 from state, $4 to state, $5 account, $6 request id, $7 owner,
/// $8 detail, $9 when.
pub(crate) const INSERT_EVENT: &str = "
    INSERT INTO job_events (job_id, event, from_state, to_state, account_id, request_id, owner, detail, at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Delivered at commit, and only if the transaction commits.
pub(crate) const NOTIFY: &str = "SELECT pg_notify('mediagen_jobs', $1)";

/// The job's state, its 1-based place among queued jobs and the queue's length, in one
/// statement. The order is FIFO by enqueue time: an approximation of the scheduler, which
/// also weighs how many jobs each user has in flight and holds back users at their cap,
/// so a light user is usually served before their position suggests and a heavy user's
/// later jobs after. Cheap, monotone as the queue drains, and good enough for "you are
/// 5th of 12".
pub(crate) const QUEUE_POSITION: &str = "
    SELECT j.state,
        (SELECT count(*) FROM jobs q
            WHERE q.state = 'queued' AND (q.enqueued_at, q.id) <= (j.enqueued_at, j.id)) AS position,
        (SELECT count(*) FROM jobs q WHERE q.state = 'queued') AS total
    FROM jobs j WHERE j.id = $1";

// ---------------------------------------------------------------------------------------
// The queue: claim

/// Taken first in every claim transaction and held until it commits.
///
/// Why one global lock: a claim reads how many jobs each account has in flight and then
/// adds to them. `FOR UPDATE SKIP LOCKED` keeps two claimers from taking the same job,
/// but not from both reading "4 of 5 in flight" and both adding one: the bound is on a
/// count of rows, which no row lock protects. Serializing the read-decide-write step
/// makes the count exact. Claims are short (two reads and one batched update), so a
/// single lock costs little, and unlike per-account locks it needs no lock ordering
/// (the scheduler looks at every account at once); unlike SERIALIZABLE it needs no
/// retry loop. Under READ COMMITTED every statement after the lock sees what the
/// previous claimer committed.
pub(crate) const CLAIM_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

pub(crate) const IN_FLIGHT_BY_ACCOUNT: &str = "
    SELECT account_id, count(*) AS in_flight FROM jobs
    WHERE state IN ('dispatching', 'submitted', 'running')
    GROUP BY account_id ORDER BY account_id";

/// The queued jobs a claim may take, already in the scheduler's priority order, locked.
///
/// $1 plan names, $2 their in-flight caps, $3 now, $4 the claim's budget (free slots,
/// bounded by `max_jobs`).
///
/// The scheduler serves, turn by turn, the user with the fewest jobs in flight, breaking
/// ties by the oldest waiting job; so a user's k-th queued job (k from 1) comes up with
/// priority `(in_flight + k, its enqueue time, its id)` and only while
/// `in_flight + k <= cap`. Sorting by that key and keeping `budget` rows gives exactly
/// the jobs the scheduler would pick from the whole queue, without loading the whole
/// queue; `schedule()` then makes the final decision and picks the accounts. Rows another
/// transaction holds (a cancel in progress) are skipped rather than waited for.
pub(crate) const CLAIM_CANDIDATES: &str = "
    WITH caps AS (
        SELECT plan, min(cap) AS cap FROM unnest($1::text[], $2::int8[]) AS c (plan, cap) GROUP BY plan
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
        WHERE q.state = 'queued' AND (q.not_before IS NULL OR q.not_before <= $3)
    )
    SELECT j.id, r.user_id, r.enqueued_at, r.in_flight, r.cap
    FROM ranked r JOIN jobs j ON j.id = r.id
    WHERE r.rn <= $4 AND (r.cap IS NULL OR r.in_flight + r.rn <= r.cap) AND j.state = 'queued'
    ORDER BY r.in_flight + r.rn, r.enqueued_at, r.id
    LIMIT $4
    FOR UPDATE OF j SKIP LOCKED";

/// $1 job ids, $2 their accounts, $3 owner, $4 lease end, $5 now.
pub(crate) const CLAIM_JOBS: &str = concat!(
    "UPDATE jobs AS j SET state = 'dispatching', account_id = a.account, lease_owner = $3, lease_until = $4, ",
    "lease_epoch = j.lease_epoch + 1, not_before = NULL, updated_at = $5 ",
    "FROM unnest($1::int8[], $2::text[]) AS a (id, account) WHERE j.id = a.id AND j.state = 'queued' RETURNING ",
    job_columns!()
);

/// $1 job ids, $2 their accounts, $3 owner, $4 now.
pub(crate) const CLAIM_EVENTS: &str = "
    INSERT INTO job_events (job_id, event, from_state, to_state, account_id, owner, at)
    SELECT a.id, 'claimed', 'queued', 'dispatching', a.account, $3, $4
    FROM unnest($1::int8[], $2::text[]) AS a (id, account)";

// ---------------------------------------------------------------------------------------
// The queue: state changes of one job

pub(crate) const GET_JOB: &str = concat!("SELECT ", job_columns!(), " FROM jobs j WHERE j.id = $1");

pub(crate) const LOCK_JOB: &str = concat!("SELECT ", job_columns!(), " FROM jobs j WHERE j.id = $1 FOR UPDATE");

/// $1 job, $2 request id, $3 model, $4 status URL, $5 response URL, $6 cancel URL, $7 now.
pub(crate) const MARK_SUBMITTED: &str = "
    UPDATE jobs SET state = 'submitted', request_id = $2, remote_model = $3, status_url = $4,
        response_url = $5, cancel_url = $6, attempts = attempts + 1, submit_started_at = NULL, submitted_at = $7,
        updated_at = $7
    WHERE id = $1";

/// $1 job, $2 now: the submit is about to start (see `JobQueue::mark_submitting`).
pub(crate) const MARK_SUBMITTING: &str = "UPDATE jobs SET submit_started_at = $2, updated_at = $2 WHERE id = $1";

/// $1 job, $2 the prompt helper's cost for this attempt, $3 now.
pub(crate) const ADD_HELPER_COST: &str =
    "UPDATE jobs SET helper_cost_micros = helper_cost_micros + $2, updated_at = $3 WHERE id = $1";

/// Whether a job's submit started without its handle being stored.
pub(crate) const SUBMIT_STARTED: &str =
    "SELECT submit_started_at IS NOT NULL AND request_id IS NULL FROM jobs WHERE id = $1";

/// $1 job, $2 now, $3 the deliverer's lease owner (NULL: the user's cancel), $4 its epoch:
/// the user was told; the delivery lease ends. Only finished jobs, and only under that
/// lease unless it was delivered already (repeating is a no-op).
pub(crate) const MARK_DELIVERED: &str = "
    UPDATE jobs SET delivered_at = coalesce(delivered_at, $2), lease_owner = NULL, lease_until = NULL
    WHERE id = $1 AND finished_at IS NOT NULL
      AND ($3::text IS NULL OR delivered_at IS NOT NULL OR (lease_owner = $3 AND lease_epoch = $4::int8))";

/// The settlement recorded for a job: (kind, amount) of its charge, refund and fal cost.
pub(crate) const SETTLEMENT_OF: &str = "
    SELECT kind, amount_micros FROM ledger WHERE job_id = $1 AND kind IN ('charge', 'refund', 'fal_cost')";

pub(crate) const MARK_RUNNING: &str = "UPDATE jobs SET state = 'running', updated_at = $2 WHERE id = $1";

/// $1 job, $2 not before, $3 now. The enqueue time is kept: a retried job keeps its place.
pub(crate) const REQUEUE: &str = concat!(
    "UPDATE jobs AS j SET state = 'queued', account_id = NULL, request_id = NULL, remote_model = NULL, ",
    "status_url = NULL, response_url = NULL, cancel_url = NULL, lease_owner = NULL, lease_until = NULL, ",
    "submit_started_at = NULL, submitted_at = NULL, not_before = $2, updated_at = $3 WHERE j.id = $1 RETURNING ",
    job_columns!()
);

/// $1 job, $2 terminal state, $3 failure reason, $4 now. The account and fal handle stay
/// for the record. The lease stays too, as the delivery lease, until `MARK_DELIVERED`; a
/// job without one (canceled while queued) counts as delivered at once.
pub(crate) const FINISH: &str = concat!(
    "UPDATE jobs AS j SET state = $2, failure = $3, not_before = NULL, submit_started_at = NULL, ",
    "delivered_at = CASE WHEN j.lease_owner IS NULL THEN $4 END, finished_at = $4, updated_at = $4 ",
    "WHERE j.id = $1 RETURNING ",
    job_columns!()
);

/// The settlement of a job: $1 job, $2 user, $3 charge, $4 refund, $5 the job's account,
/// $6 fal cost, $7 now. `ledger_job_kind_key` makes a second settlement impossible.
pub(crate) const SETTLE: &str = "
    INSERT INTO ledger (job_id, user_id, account_id, kind, amount_micros, at) VALUES
        ($1, $2, NULL, 'charge', $3, $7),
        ($1, $2, NULL, 'refund', $4, $7),
        ($1, $2, $5, 'fal_cost', $6, $7)";

// ---------------------------------------------------------------------------------------
// The queue: leases

/// $1 job ids, $2 their lease owners, $3 their epochs (the leases a process holds live
/// tasks for), $4 new lease end: in-flight jobs and finished ones not yet delivered. A
/// lease not listed, or no longer as listed, is left alone.
pub(crate) const RENEW_LEASES: &str = "
    UPDATE jobs AS j SET lease_until = $4
    FROM unnest($1::int8[], $2::text[], $3::int8[]) AS h (id, owner, epoch)
    WHERE j.id = h.id AND j.lease_owner = h.owner AND j.lease_epoch = h.epoch
      AND (j.state IN ('dispatching', 'submitted', 'running') OR (j.finished_at IS NOT NULL AND j.delivered_at IS NULL))";

/// In-flight jobs, and finished ones not yet delivered, whose lease ended at or before
/// $1, locked; rows a live transaction holds are left for the next sweep.
pub(crate) const EXPIRED_LEASES: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs j WHERE (j.state IN ('dispatching', 'submitted', 'running') ",
    "OR (j.finished_at IS NOT NULL AND j.delivered_at IS NULL)) AND j.lease_until <= $1 ",
    "ORDER BY j.lease_until, j.id FOR UPDATE SKIP LOCKED"
);

/// $1 job, $2 new owner, $3 lease end, $4 now. A new epoch fences off the old holder.
pub(crate) const TAKE_OVER: &str = concat!(
    "UPDATE jobs AS j SET lease_owner = $2, lease_until = $3, lease_epoch = j.lease_epoch + 1, updated_at = $4 ",
    "WHERE j.id = $1 RETURNING ",
    job_columns!()
);

// ---------------------------------------------------------------------------------------
// The queue: reads

pub(crate) const RECENT_JOBS: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs j WHERE j.user_id = $1 ORDER BY j.created_at DESC, j.id DESC LIMIT $2"
);

pub(crate) const QUEUED_COUNT: &str = "SELECT count(*) FROM jobs WHERE state = 'queued'";

// ---------------------------------------------------------------------------------------
// Accounts

/// $1 id, $2 key names. A configured account is not retired.
pub(crate) const UPSERT_ACCOUNT: &str = "
    INSERT INTO accounts (id, key_names) VALUES ($1, $2)
    ON CONFLICT (id) DO UPDATE SET key_names = EXCLUDED.key_names, retired_at = NULL, updated_at = now()
    RETURNING id, key_names, disabled, lock_reason, locked_since, limit_override, retired_at";

pub(crate) const LIST_ACCOUNTS: &str =
    "SELECT id, key_names, disabled, lock_reason, locked_since, limit_override, retired_at FROM accounts ORDER BY id";

/// $1 the configured account ids, $2 now: retires the others.
pub(crate) const RETIRE_UNLISTED: &str = "
    UPDATE accounts SET retired_at = $2, updated_at = $2
    WHERE retired_at IS NULL AND NOT (id = ANY($1::text[]))
    RETURNING id";

pub(crate) const ACCOUNT_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)";

pub(crate) const ADD_PURCHASE: &str =
    "INSERT INTO credit_purchases (account_id, amount_micros, purchased_at) VALUES ($1, $2, $3)";

pub(crate) const PURCHASES: &str = "
    SELECT amount_micros, purchased_at FROM credit_purchases WHERE account_id = $1 ORDER BY purchased_at, id";

pub(crate) const TOTAL_SPEND: &str = "
    SELECT coalesce(sum(amount_micros), 0)::int8 FROM ledger WHERE kind = 'fal_cost' AND account_id = $1";

/// One row per UTC day with fal spend, stamped at the day's last spend: a later stamp
/// can only make the FIFO replay of expiring credit show less balance, never more.
pub(crate) const DAILY_SPENDS: &str = "
    SELECT sum(amount_micros)::int8 AS amount_micros, max(at) AS spent_at FROM ledger
    WHERE kind = 'fal_cost' AND account_id = $1 AND amount_micros > 0
    GROUP BY date_trunc('day', at AT TIME ZONE 'UTC')
    ORDER BY spent_at";

pub(crate) const SET_LOCK: &str =
    "UPDATE accounts SET lock_reason = $2, locked_since = $3, updated_at = now() WHERE id = $1";

pub(crate) const SET_ADMIN_STATE: &str =
    "UPDATE accounts SET disabled = $2, limit_override = $3, updated_at = now() WHERE id = $1";

// ---------------------------------------------------------------------------------------
// Prompt cache and alerts

/// $1 key, $2 now. An expired entry is deleted on the way (the statement's snapshot is
/// taken before the delete, hence the expiry test in the SELECT as well).
pub(crate) const CACHE_GET: &str = "
    WITH expired AS (DELETE FROM prompt_cache WHERE key = $1 AND expires_at <= $2)
    SELECT value FROM prompt_cache WHERE key = $1 AND expires_at > $2";

pub(crate) const CACHE_PUT: &str = "
    INSERT INTO prompt_cache (key, value, expires_at) VALUES ($1, $2, $3)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, created_at = now()";

pub(crate) const RECORD_ALERT: &str =
    "INSERT INTO alerts (key, period, fired_at) VALUES ($1, $2, $3) ON CONFLICT (key, period) DO NOTHING";

// ---------------------------------------------------------------------------------------
// Media and usage

/// Inserts or completes a media record (the Telegram file id arrives after delivery).
pub(crate) const SAVE_MEDIA: &str = "
    INSERT INTO media AS m (job_id, fal_url, telegram_file_id, size_bytes, content_type)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (job_id, fal_url) DO UPDATE SET
        telegram_file_id = coalesce(EXCLUDED.telegram_file_id, m.telegram_file_id),
        size_bytes = coalesce(EXCLUDED.size_bytes, m.size_bytes),
        content_type = coalesce(EXCLUDED.content_type, m.content_type),
        updated_at = now()";

pub(crate) const MEDIA_FOR_JOB: &str = "
    SELECT job_id, fal_url, telegram_file_id, size_bytes, content_type FROM media WHERE job_id = $1 ORDER BY id";

/// Jobs finished in [$1, $2) with their settlements, per model.
pub(crate) const USAGE_BY_MODEL: &str = "
    WITH finished AS (
        SELECT id, model, state FROM jobs WHERE finished_at >= $1 AND finished_at < $2
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
           coalesce(sum(m.charged), 0)::int8 AS user_charged,
           coalesce(sum(m.fal_cost), 0)::int8 AS fal_cost
    FROM finished f LEFT JOIN money m ON m.job_id = f.id
    GROUP BY f.model ORDER BY f.model";

/// Jobs finished in [$1, $2) with their settlements, per user, biggest spenders first.
pub(crate) const USAGE_BY_USER: &str = "
    WITH finished AS (
        SELECT id, user_id FROM jobs WHERE finished_at >= $1 AND finished_at < $2
    ), money AS (
        SELECT l.job_id,
               sum(l.amount_micros) FILTER (WHERE l.kind = 'charge') AS charged,
               sum(l.amount_micros) FILTER (WHERE l.kind = 'fal_cost') AS fal_cost
        FROM ledger l JOIN finished f ON f.id = l.job_id
        GROUP BY l.job_id
    )
    SELECT f.user_id,
           count(*) AS jobs,
           coalesce(sum(m.charged), 0)::int8 AS charged,
           coalesce(sum(m.fal_cost), 0)::int8 AS fal_cost
    FROM finished f LEFT JOIN money m ON m.job_id = f.id
    GROUP BY f.user_id ORDER BY charged DESC, f.user_id";

/// Submissions to fal in [$1, $2): every accepted submit, retries included.
pub(crate) const REQUEST_COUNT: &str =
    "SELECT count(*) FROM job_events WHERE event = 'submitted' AND at >= $1 AND at < $2";
